"""Seeded tables: summaries, cells and verdicts on hand-computed cases."""

from __future__ import annotations

import math

import pytest

from abaw.evidence import cell, parse_seeds, summarise, verdict
from challenges.mtl_baselines import DEFAULT_ROW, markdown


def test_summary_is_mean_and_sample_std():
    s = summarise([0.9, 1.0, 1.1])
    assert s.n == 3 and s.mean == pytest.approx(1.0)
    assert s.std == pytest.approx(0.1)  # sqrt((0.01 + 0 + 0.01) / 2)
    assert s.sem == pytest.approx(0.1 / math.sqrt(3))
    assert summarise([2.5]).std == 0.0
    with pytest.raises(ValueError):
        summarise([])


def test_cell_text():
    assert cell([0.9, 1.0, 1.1]) == "1.000 ± 0.100 (3)"
    assert cell([0.25]) == "0.250 (1)"
    assert cell([]) == "–"
    assert cell([100.4, 99.6], 0) == "100 ± 1 (2)"


def test_verdict_needs_two_standard_errors():
    ref = [0.5, 0.6, 0.7]  # mean 0.6, std 0.1; SE of the difference with the rows below 0.0816
    assert verdict([1.0, 1.1, 1.2], ref) == "helps"      # +0.5
    assert verdict([0.0, 0.1, 0.2], ref) == "hurts"      # -0.5
    assert verdict([0.7, 0.8, 0.9], ref) == "helps"      # +0.2 > 0.163
    assert verdict([0.65, 0.75, 0.85], ref) == "no evidence"  # +0.15 < 0.163
    assert verdict([5.0], ref) == "no evidence (1 seed)"


def test_parse_seeds():
    assert parse_seeds("42,1,2") == (42, 1, 2)
    with pytest.raises(ValueError, match="integers"):
        parse_seeds("42,x")
    with pytest.raises(ValueError, match="repeat"):
        parse_seeds("1,1")


def test_table_rows_and_verdicts():
    def terms(p, va, expr, au):
        return {"P_MTL": p, "VA": va, "EXPR": expr, "AU": au}
    results = {
        "majority class / mean VA": {"validation": [terms(0.06, 0, 0.06, 0)],
                                     "test": [terms(0.063, 0, 0.063, 0)], "judged_on": "P_MTL"},
        DEFAULT_ROW: {"seeds": [42, 1], "judged_on": "P_MTL", "train_seconds": [100.0, 110.0],
                      "validation": [terms(1.0, .4, .3, .5), terms(1.2, .5, .3, .5)],
                      "test": [terms(0.9, .4, .2, .4), terms(1.1, .4, .2, .4)]},
        "EXPR only": {"seeds": [42, 1], "judged_on": "EXPR", "train_seconds": [50.0, 50.0],
                      "validation": [terms(.3, 0, .3, 0), terms(.3, 0, .3, 0)],
                      "test": [terms(.3, 0, .5, 0), terms(.3, 0, .6, 0)]},
    }
    lines = markdown("baselines", 3, results).splitlines()
    assert lines[4] == "| majority class / mean VA | 0.060 (1) | 0.063 (1) | 0.000 (1) | " \
                       "0.063 (1) | 0.000 (1) | – |  |"
    assert lines[5] == "| multi-task (default) | 1.100 ± 0.141 (2) | 1.000 ± 0.141 (2) | " \
                       "0.400 ± 0.000 (2) | 0.200 ± 0.000 (2) | 0.400 ± 0.000 (2) | " \
                       "105 ± 7 (2) | reference |"
    # judged on its own term: EXPR 0.55 vs the default's 0.20, spread 0.07 -> helps
    assert lines[6] == "| EXPR only | – | – | – | 0.550 ± 0.071 (2) | – | 50 ± 0 (2) | helps |"


def test_lsd_ablation_table():
    import argparse

    from challenges.lsd_ablation import markdown as lsd_markdown
    args = argparse.Namespace(epochs=4, train_limit=1500, init="mtl")
    ceiling = {"validation": {"oracle": 0.931}, "test": {"oracle": 0.951, "trivial_majority": 0.068}}
    per_class = [0.7, 0.5, 0.3, 0.8, 0.7, 0.6]
    results = {
        "none/off": {"sr": "none", "hands": "off", "validation": [0.6, 0.62, 0.64],
                     "validation_with_rule": [0.6, 0.62, 0.64], "test": [0.64, 0.65, 0.66],
                     "test_per_class": [per_class] * 3},
        "compact/on": {"sr": "compact", "hands": "on", "validation": [0.5, 0.5, 0.5],
                       "validation_with_rule": [0.52, 0.52, 0.52], "test": [0.54, 0.55, 0.56],
                       "test_per_class": [per_class] * 3},
    }
    lines = lsd_markdown(args, ceiling, results).splitlines()
    assert lines[4] == "| none | off | 0.620 ± 0.020 (3) | 0.620 ± 0.020 (3) | " \
                       "0.650 ± 0.010 (3) | 0.300 ± 0.000 (3) | reference |"
    assert lines[5] == "| compact | on | 0.500 ± 0.000 (3) | 0.520 ± 0.000 (3) | " \
                       "0.550 ± 0.010 (3) | 0.300 ± 0.000 (3) | hurts |"


def test_slug():
    from abaw.evidence import slug
    assert slug("EMA of weights (0.99)") == "ema-of-weights-0-99"


@pytest.mark.parametrize("track, module, argv", [
    ("mtl", "mtl_baselines", ["--rows", DEFAULT_ROW]),
    ("lsd", "lsd_ablation", ["--sr", "none"]),
])
def test_tables_default_to_their_recipes_own_epochs(monkeypatch, tmp_path, track, module, argv):
    # the tables are "at make mtl's / make lsd's budget": without --epochs a row trains as
    # many epochs as configs/<track>/base.yaml does, read from the file (here a copy set to 7)
    import importlib
    from pathlib import Path

    table = importlib.import_module(f"challenges.{module}")
    root = Path(__file__).resolve().parents[1]
    base = tmp_path / f"configs/{track}/base.yaml"
    base.parent.mkdir(parents=True)
    text = (root / "configs" / track / "base.yaml").read_text()
    assert "  max_epochs: " in text
    base.write_text("\n".join(("  max_epochs: 7" if line.startswith("  max_epochs: ") else line)
                              for line in text.splitlines()) + "\n")
    monkeypatch.chdir(tmp_path)
    seen = []
    monkeypatch.setattr(table, "write_table", lambda args, *rest: seen.append(args))
    assert table.main(argv) == 0
    assert table.main([*argv, "--epochs", "2"]) == 0
    assert [a.epochs for a in seen] == [7, 2]


def test_mtl_table_rows_are_chosen_by_name_even_with_commas_or_by_slug():
    # regression: --rows split on every comma, so "fixed weighting (1,1,1)" could not be chosen
    from challenges.mtl_baselines import TABLES, select_rows

    rows = TABLES["baselines"]
    assert list(select_rows("fixed weighting (1,1,1)", rows)) == ["fixed weighting (1,1,1)"]
    assert list(select_rows("fixed weighting (1,1,1),AU graph head, VA only", rows)) == [
        "fixed weighting (1,1,1)", "AU graph head", "VA only"]
    assert list(select_rows("ViT (vit_tiny_mae,random init)", rows)) == [
        "ViT (vit_tiny_mae, random init)"]
    assert list(select_rows("fixed-weighting-1-1-1,au-graph-head", rows)) == [
        "fixed weighting (1,1,1)", "AU graph head"]
    with pytest.raises(KeyError, match="no such row"):
        select_rows("AU graph head,no such row", rows)


def test_mtl_table_of_chosen_rows_keeps_the_default_row_as_reference(monkeypatch):
    # regression: --rows "AU graph head" wrote a table without the default row, so its verdict
    # column was blank
    from challenges import mtl_baselines

    seen = []
    monkeypatch.setattr(mtl_baselines, "write_table", lambda args, rows, seeds: seen.append(rows))
    assert mtl_baselines.main(["--rows", "AU graph head", "--epochs", "2"]) == 0
    assert mtl_baselines.main(["--rows", f"VA only,{DEFAULT_ROW}", "--epochs", "2"]) == 0
    assert mtl_baselines.main(["--table", "sweep", "--rows", "80 px", "--epochs", "2"]) == 0
    assert [list(rows) for rows in seen] == [[DEFAULT_ROW, "AU graph head"],
                                             [DEFAULT_ROW, "VA only"], [DEFAULT_ROW, "80 px"]]
