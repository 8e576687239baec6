"""The evidence table (``challenges.ablate``): cells and verdicts on hand-computed rows, the
assembly of every section from (stubbed) row results, the MAE encoder's one-line refusal,
resuming finished runs, and — slow — ``--quick`` end to end on the tiny data."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from abaw import runner
from abaw.errors import AbawError
from abaw.evidence import slug
from challenges import ablate
from challenges.ablate import (
    DEFAULT_ROW,
    ENSEMBLE_ROW,
    HEADER,
    MAE_ROW,
    MTL_ROWS,
    VIT_ROW,
    Budget,
    Row,
    lsd_rows,
    markdown,
    selection,
)

ROOT = Path(__file__).resolve().parents[1]
VERDICTS = {"helps", "hurts", "no evidence", "reference", "–", "not run yet",
            "needs make pretrain", "needs 2 seeds or more", "no evidence (1 seed)"}


def _p(*values: float) -> list[dict[str, float]]:
    return [{"P_MTL": v} for v in values]


def test_markdown_cells_and_verdicts():
    rows = [
        Row("mtl", "oracle ceiling", "P_MTL", bound=True, validation=_p(2.8), test=_p(2.772)),
        Row("mtl", DEFAULT_ROW, "P_MTL", validation=_p(1.1, 1.2, 1.3),
            split_half=_p(1.0, 1.0), test=[{"P_MTL": 0.9, "VA": 0.30}, {"P_MTL": 1.0, "VA": 0.31},
                                           {"P_MTL": 1.1, "VA": 0.32}],
            train_seconds=[100.0, 110.0, 120.0]),
        # judged on VA against the default's VA: +0.20, SE sqrt(2 * 0.0001 / 3) = 0.0082
        Row("mtl", "VA only", "VA", DEFAULT_ROW, test=[{"VA": 0.50}, {"VA": 0.51},
                                                        {"VA": 0.52}]),
        # +0.05 against an SE of 0.0816: within noise
        Row("mtl", "fixed weighting (1,1,1)", "P_MTL", DEFAULT_ROW, test=_p(0.95, 1.05, 1.15)),
        # -0.6: hurts
        Row("mtl", "AU graph head", "P_MTL", DEFAULT_ROW, test=_p(0.3, 0.4, 0.5)),
        Row("mtl", VIT_ROW, "P_MTL", DEFAULT_ROW),
        Row("mtl", MAE_ROW, "P_MTL", VIT_ROW, test=_p(1.0)),
        Row("mtl", "EfficientNet-B0", "P_MTL", DEFAULT_ROW, note="needs make pretrain"),
    ]
    text = markdown({"mtl": rows}, {"mtl": "intro"}, "# title")
    lines = text.splitlines()
    assert lines[:6] == ["# title", "", "## mtl", "", "intro", ""]
    assert lines[6] == HEADER and lines[7] == "|---|---|---|---|---|---|---|---|---|"
    assert lines[8] == "| oracle ceiling | P_MTL | 2.800 (1) | – | 2.772 (1) | – | – | – | – |"
    assert lines[9] == ("| multi-task (default) | P_MTL | 1.200 ± 0.100 (3) | 1.000 ± 0.000 (2) "
                        "| 1.000 ± 0.100 (3) | – | – | reference | 110 ± 10 (3) |")
    assert lines[10] == ("| VA only | VA | – | – | 0.510 ± 0.010 (3) | multi-task (default) | "
                         "0.310 ± 0.010 (3) | helps | – |")
    assert lines[11].endswith("| 1.050 ± 0.100 (3) | multi-task (default) | "
                              "1.000 ± 0.100 (3) | no evidence | – |")
    assert lines[12].endswith("| hurts | – |")
    assert lines[13] == (f"| {VIT_ROW} | P_MTL | – | – | – | multi-task (default) | "
                         "1.000 ± 0.100 (3) | not run yet | – |")
    assert lines[14] == (f"| {MAE_ROW} | P_MTL | – | – | 1.000 (1) | {VIT_ROW} | – | "
                         f"no reference yet ({VIT_ROW}) | – |")
    assert lines[15].endswith("| needs make pretrain | – |")


def test_selection_brings_the_reference_rows():
    assert selection(["lsd"], []) == {slug(name) for name, _, _ in lsd_rows()}
    assert selection([], [slug(MAE_ROW)]) == {slug(MAE_ROW), slug(VIT_ROW), slug(DEFAULT_ROW)}
    assert selection(["last-mile"], []) == {"last-mile", slug(DEFAULT_ROW)}
    # an initialised LSD row needs its block's reference, which needs the scratch one
    assert selection([], ["from-the-mtl-model-sr-x4plus-hands-on"]) == {
        "from-the-mtl-model-sr-x4plus-hands-on", "from-the-mtl-model-sr-none-hands-off",
        "from-scratch-sr-none-hands-off"}


def test_lsd_rows_cover_sr_hands_and_init():
    rows = lsd_rows()
    assert len(rows) == 12 and len({name for name, _, _ in rows}) == 12
    assert {spec for _, _, spec in rows} == {(i, s, h) for i in ("none", "mtl")
                                             for s in ("none", "compact", "x4plus")
                                             for h in ("off", "on")}
    references = {name: reference for name, reference, _ in rows}
    assert references["from scratch: SR none, hands off"] is None
    assert references["from scratch: SR x4plus, hands on"] == "from scratch: SR none, hands off"
    assert references["from the MTL model: SR none, hands off"] == \
        "from scratch: SR none, hands off"
    assert references["from the MTL model: SR compact, hands off"] == \
        "from the MTL model: SR none, hands off"


def test_mae_encoder_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    import abaw.cli

    if "pretrain" not in abaw.cli.COMMANDS:  # this checkout cannot pre-train
        with pytest.raises(AbawError, match=r"^needs make pretrain: no runs/pretrain/default/"
                                            r"encoder\.pth, and this checkout has no `abaw "
                                            r"pretrain mae --config configs/pretrain/"
                                            r"default\.yaml`$"):
            ablate.mae_encoder()
    # a checkout that can: the command is run once, with these arguments
    calls = []

    def fake_main(argv):
        calls.append(argv)
        ablate.MAE_ENCODER.parent.mkdir(parents=True)
        ablate.MAE_ENCODER.write_bytes(b"weights")
        return 0

    monkeypatch.setitem(abaw.cli.COMMANDS, "pretrain", ("pretrain", "MAE pre-training"))
    monkeypatch.setattr(abaw.cli, "main", fake_main)
    ablate.MAE_CONFIG.parent.mkdir(parents=True)
    ablate.MAE_CONFIG.write_text("{}\n")
    with pytest.raises(AbawError, match="^needs make pretrain: no runs/pretrain/default/"
                                        "encoder.pth .run make pretrain first.$"):
        ablate.mae_encoder(pretrain=False)
    assert calls == []
    assert ablate.mae_encoder() == ablate.MAE_ENCODER
    assert calls == [["pretrain", "mae", "--config", "configs/pretrain/default.yaml"]]
    assert ablate.mae_encoder() == ablate.MAE_ENCODER and len(calls) == 1  # exists now


def test_attempt_seeds_reads_finished_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    done = tmp_path / "submissions/mtl/row-s42"
    done.mkdir(parents=True)
    (done / "report.json").write_text(json.dumps({"run": "row-s42", "test": {"P_MTL": 0.5}}))
    partial = tmp_path / "submissions/mtl/row-s1"
    partial.mkdir(parents=True)
    (partial / "report.json").write_text(json.dumps({"run": "row-s1"}))  # no test score
    ran = []

    def fake_attempt(challenge, argv):
        ran.append(argv)
        return 0, {"run": argv[argv.index("--run") + 1], "test": {"P_MTL": 0.7}}

    monkeypatch.setattr(runner, "attempt", fake_attempt)
    from abaw.tracks.mtl import MTL

    results = runner.attempt_seeds(MTL, ["--synth-size", "tiny", "--", "--x", "1"], "row",
                                   [42, 1], reuse=True)
    assert [(seed, report["test"]["P_MTL"]) for seed, _, report in results] == [(42, 0.5),
                                                                                (1, 0.7)]
    assert ran == [["--synth-size", "tiny", "--run", "row-s1", "--", "--x", "1",
                    "--seed_everything", "1"]]
    # read only: the unfinished seed is left out; --fresh reruns the finished one
    assert [s for s, _, _ in runner.attempt_seeds(MTL, [], "row", [42, 1], reuse=True,
                                                  train=False)] == [42]
    runner.attempt_seeds(MTL, ["--fresh"], "row", [42], reuse=True)
    assert ran[-1][:3] == ["--fresh", "--run", "row-s42"]


def _stub_sections(monkeypatch, trained: list[str]) -> None:
    """Every row's results from stubs: MTL test P_MTL 1.0 + 0.1 * seed index, each step of
    the last mile +0.1, LSD F1 by SR; the MAE encoder is missing."""
    def terms(p):
        return {"P_MTL": p, "VA": p / 4, "EXPR": p / 4, "AU": p / 2}

    def mtl_row(prefix, name, spec, *, epochs, seeds, synth_size, fresh, overrides, train):
        if train:
            trained.append(name)
        if name == MAE_ROW:
            return None
        shift = 0.5 if name == "EfficientNet-B0" else 0.0
        return {"seeds": list(seeds), "runs": [f"{prefix}-e{epochs}-{slug(name)}-s{s}"
                                               for s in seeds],
                "validation": [terms(1.2 + shift + 0.1 * i) for i in range(len(seeds))],
                "split_half": [terms(1.1 + shift + 0.1 * i) for i in range(len(seeds))],
                "test": [terms(1.0 + shift + 0.1 * i) for i in range(len(seeds))],
                "train_seconds": [60.0] * len(seeds)}

    def lsd_row(sr, hands, *, init, seeds, train, **_):
        if train:
            trained.append(f"{init}/{sr}/{hands}")
        f1 = {"none": 0.5, "compact": 0.5, "x4plus": 0.2}[sr]
        return {"seeds": list(seeds), "runs": [f"lsd-{sr}-{hands}-s{s}" for s in seeds],
                "validation_with_rule": [f1 + 0.01 * i for i in range(len(seeds))],
                "test": [f1 + 0.01 * i for i in range(len(seeds))],
                "seconds": [{"train x": 30.0}] * len(seeds), "train_seconds": [30.0] * len(seeds)}

    def fake_last_mile(runs, out):
        bonus = (0.3 if len(runs) > 1 else 0.0) + {"s42": 0.0, "s1": 0.01, "s2": 0.02,
                                                    "s3": 0.03}[out.name.rsplit("-", 1)[1]]
        rows = [{"label": label, "validation": {"score": 1.0 + 0.1 * i},
                 "split_half": {"score": 0.9 + 0.1 * i},
                 "test": {"P_MTL": 0.8 + 0.1 * i + bonus}}
                for i, label in enumerate(["raw", "+ thresholds", "+ TTA"])]
        out.mkdir(parents=True, exist_ok=True)
        (out / "last_mile.json").write_text(json.dumps({"runs": runs, "rows": rows}))
        return {"runs": runs, "rows": rows}

    monkeypatch.setattr(ablate.mtl_baselines, "train_row", mtl_row)
    monkeypatch.setattr(ablate.mtl_baselines, "ceiling_rows", lambda size: {
        "oracle ceiling": {"validation": [terms(2.8)], "test": [terms(2.7)]},
        "majority class / mean VA": {"validation": [terms(0.06)], "test": [terms(0.063)]}})
    monkeypatch.setattr(ablate.lsd_ablation, "train_row", lsd_row)
    monkeypatch.setattr(ablate.last_mile, "last_mile", fake_last_mile)
    monkeypatch.setattr(ablate, "ensure_synthetic_data", lambda size, seed, **kw: Path("x"))
    monkeypatch.setattr(ablate, "oracle", lambda out, layout: {"lsd": {
        "validation": {"oracle": 0.95, "trivial_majority": 0.07},
        "test": {"oracle": 1.0, "trivial_majority": 0.06}}}[layout])


def test_the_table_of_every_section(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    trained: list[str] = []
    _stub_sections(monkeypatch, trained)
    b = Budget(False, (42, 1, 2, 3))
    table = ablate.ablate(b, selection(["lsd", "last-mile"], []), tmp_path / "out")
    # only the LSD rows and the last mile's reference row were trained, the rest was read
    assert trained == [DEFAULT_ROW] + [f"{i}/{s}/{h}" for i in ("none", "mtl")
                                       for s in ("none", "compact", "x4plus")
                                       for h in ("off", "on")]
    text = (tmp_path / "out/ablations.md").read_text()
    numbers = json.loads((tmp_path / "out/ablations.json").read_text())
    assert numbers["section_order"] == ["mtl", "last-mile", "lsd"]
    assert numbers["budget"]["lsd_img_size"] == 112 and numbers["budget"]["seeds"] == [42, 1, 2, 3]
    names = [r["name"] for r in numbers["sections"]["mtl"]]
    assert names == ["oracle ceiling", "majority class / mean VA", *(n for n, _ in MTL_ROWS)]
    lines = {line.split(" | ")[0][2:]: line for line in text.splitlines()
             if line.startswith("| ") and not line.startswith("| row ")}
    # 4 seeds 1.0, 1.1, 1.2, 1.3: mean 1.15, std 0.129
    assert lines[DEFAULT_ROW] == ("| multi-task (default) | P_MTL | 1.350 ± 0.129 (4) | "
                                  "1.250 ± 0.129 (4) | 1.150 ± 0.129 (4) | – | – | reference "
                                  "| 60 ± 0 (4) |")
    assert lines["EfficientNet-B0"].endswith("| helps | 60 ± 0 (4) |")
    assert lines["VA only"].split(" | ")[1:3] == ["VA", "0.338 ± 0.032 (4)"]
    assert lines["VA only"].endswith("| no evidence | 60 ± 0 (4) |")
    assert lines[MAE_ROW] == (f"| {MAE_ROW} | P_MTL | – | – | – | {VIT_ROW} | "
                              "1.150 ± 0.129 (4) | needs make pretrain | – |")
    # last mile: per seed run, each row against the row above; one ensemble of runs 1-3
    post = {r["name"]: r for r in numbers["sections"]["last-mile"]}
    assert [r["reference"] for r in numbers["sections"]["last-mile"][2:]] == [
        None, "raw", "+ thresholds", "+ TTA"]
    assert post["+ TTA"]["seeds"] == [42, 1, 2, 3] and len(post[ENSEMBLE_ROW]["test"]) == 1
    # seeds 0.9 + (0, .01, .02, .03) against 0.8 + the same: +0.1, SE 0.009
    assert lines["+ thresholds"] == ("| + thresholds | P_MTL | 1.100 ± 0.000 (4) | "
                                     "1.000 ± 0.000 (4) | 0.915 ± 0.013 (4) | raw | "
                                     "0.815 ± 0.013 (4) | helps | – |")
    assert post[ENSEMBLE_ROW]["test"] == [{"P_MTL": pytest.approx(1.32)}]
    assert post[ENSEMBLE_ROW]["runs"] == [" + ".join(f"baselines-e16-multi-task-default-s{s}"
                                                     for s in (42, 1, 2))]
    assert lines[ENSEMBLE_ROW].endswith("| no evidence (1 seed) | – |")
    assert "| LSD oracle ceiling | F1 | 0.950 (1) | – | 1.000 (1) | – | – | – | – |" in text
    assert lines["from scratch: SR x4plus, hands on"].endswith(
        "| from scratch: SR none, hands off | 0.515 ± 0.013 (4) | hurts | 30 ± 0 (4) |")
    assert lines["from the MTL model: SR none, hands off"].endswith("| no evidence | 30 ± 0 (4) |")
    assert table["lsd"][-1].name == "from the MTL model: SR x4plus, hands on"
    # a rerun reads the saved last mile instead of computing it again
    monkeypatch.setattr(ablate.last_mile, "last_mile", lambda runs, out: pytest.fail("rerun"))
    ablate.ablate(b, set(), tmp_path / "out")
    assert (tmp_path / "out/ablations.md").read_text() == text


def test_an_interruption_stops_the_table(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    ran = []

    def interrupted(challenge, argv):
        ran.append(argv)
        return 130, None

    monkeypatch.setattr(runner, "attempt", interrupted)
    from abaw.tracks.mtl import MTL

    with pytest.raises(KeyboardInterrupt):  # not the next seed
        runner.attempt_seeds(MTL, [], "row", [42, 1])
    assert len(ran) == 1

    def stop(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(ablate, "ablate", stop)
    assert ablate.main(["--epochs", "1"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == (
        "abaw: interrupted — rerun the same command to resume from the last checkpoint")


def test_read_only_trains_nothing(monkeypatch, capsys):
    calls = []
    monkeypatch.setattr(ablate, "ablate", lambda b, selected, out: calls.append(selected))
    assert ablate.main(["--read-only"]) == 0
    assert calls == [set()]
    assert ablate.main(["--rows", "va-only"]) == 0
    assert calls[-1] == {"va-only", slug(DEFAULT_ROW)}
    with pytest.raises(SystemExit) as exit_:
        ablate.main(["--read-only", "--only", "lsd"])
    assert exit_.value.code == 2
    assert "--read-only trains nothing" in capsys.readouterr().err


def test_mtl_budget_follows_make_mtl(monkeypatch, tmp_path, capsys):
    """The MTL rows train make mtl's epochs unless --epochs says otherwise."""
    budgets = []
    monkeypatch.setattr(ablate, "ablate", lambda b, selected, out: budgets.append(b))
    config = tmp_path / "configs/mtl/base.yaml"
    config.parent.mkdir(parents=True)
    config.write_text("trainer:\n  max_epochs: 7\n", encoding="utf-8")
    monkeypatch.setattr(runner, "CONFIG_DIR", tmp_path / "configs")
    assert ablate.main(["--read-only"]) == 0
    assert ablate.main(["--read-only", "--epochs", "3"]) == 0
    assert [b.mtl_epochs for b in budgets] == [7, 3]
    assert [b.lsd_epochs for b in budgets] == [4, 4]
    config.write_text("trainer: {}\n", encoding="utf-8")
    with pytest.raises(SystemExit) as exit_:
        ablate.main(["--read-only"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"make ablate: error: {config}: cannot read trainer.max_epochs (no key 'max_epochs'); "
        "give --epochs")
    # --list reads no config: it lists the plan
    assert ablate.main(["--list"]) == 0
    assert capsys.readouterr().out.startswith("mtl: ")


def test_unknown_row_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_:
        ablate.main(["--rows", "no-such-row"])
    assert exit_.value.code == 2
    assert "unknown row 'no-such-row'" in capsys.readouterr().err


@pytest.mark.slow
def test_quick_table_has_every_row(tmp_path, monkeypatch):
    """``--quick`` on the tiny data: every required row, the columns, a verdict per row
    (22 tiny runs: 86 min once on 2 cores shared with other training jobs)."""
    monkeypatch.chdir(tmp_path)
    os.symlink(ROOT / "configs", tmp_path / "configs")
    assert ablate.main(["--quick"]) == 0
    check_quick_table(tmp_path / "submissions")


def check_quick_table(out: Path) -> None:
    """What ``make ablate ARGS=--quick`` wrote into ``out`` has the table's shape."""
    text = (out / "ablations.md").read_text()
    sections = json.loads((out / "ablations.json").read_text())["sections"]
    assert text.count(HEADER) == 3
    rows = {r["name"]: r for section in sections.values() for r in section}
    # the last mile's own step rows (raw, + thresholds, + biases, + smoothing), a TTA row
    steps = [label for label, _ in ablate.last_mile.STEP_ROWS]
    tta = [r["name"] for r in sections["last-mile"] if "TTA" in r["name"]]
    assert len(tta) == 2 and tta[-1] == ENSEMBLE_ROW, tta
    required = [name for name, _ in MTL_ROWS] + [name for name, _, _ in lsd_rows()] + steps + [
        *tta, "oracle ceiling", "majority class / mean VA", "LSD oracle ceiling",
        "LSD majority class"]
    for name in required:
        assert name in rows, name
        line = next(line for line in text.splitlines() if line.startswith(f"| {name} |"))
        cells = line.split(" | ")
        assert len(cells) == 9, line
        assert cells[7] in VERDICTS, line
        trained = name not in (MAE_ROW, ENSEMBLE_ROW) and "oracle" not in name \
            and "majority" not in name
        if trained:  # every trained row finished: one seed, a test score, a verdict
            assert len(rows[name]["test"]) == 1, name
            assert re.fullmatch(r"-?\d\.\d{3} \(1\)", cells[4]), line
            assert cells[7] in ("reference", "no evidence (1 seed)"), line
    assert rows[ENSEMBLE_ROW]["note"] == "needs 2 seeds or more"
    assert rows[MAE_ROW]["test"] or rows[MAE_ROW]["note"] == "needs make pretrain"
    # split-half where the post-processing report has it (MTL), none for LSD
    assert rows[DEFAULT_ROW]["split_half"] and not rows["from scratch: SR none, hands off"][
        "split_half"]
