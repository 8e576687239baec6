"""``report.html`` and ``abaw compare`` on finished runs built by hand (tests/report_fixtures.py).

The pages are also opened in headless Chromium (tests/browser.py: the system's, installed
from Debian's packages by the set-up when missing and possible, else the test is skipped with
the reason) to check that every plot is there and visible. The real runner writing the page
is checked in test_challenges.py.
"""

from __future__ import annotations

import base64
import html
import json
import re
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from browser import find_or_install_chromium, image_states
from report_fixtures import make_run

from abaw import cli
from abaw.reports.compare import compare_runs
from abaw.reports.files import VALIDATION_PREDICTIONS, load_run, save_validation
from abaw.reports.html import SECTIONS, write_html


def _png_sizes(page: str) -> list[tuple[int, int]]:
    """(width, height) of every embedded image, read from its PNG header."""
    sizes = []
    for data in re.findall(r'<img src="data:image/png;base64,([^"]+)"', page):
        png = base64.b64decode(data)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        sizes.append(struct.unpack(">II", png[16:24]))
    return sizes


def _titles(page: str) -> list[str]:
    return [html.unescape(t) for t in re.findall(r"<h2>(.*?)</h2>", page)]


@pytest.fixture(scope="module")
def pages(tmp_path_factory) -> dict[str, tuple[Path, list, str]]:
    """Each track's constructed run rendered once: (report.html, skipped sections, page)."""
    out = {}
    for track in ("mtl", "lsd"):
        skipped: list = []
        path = write_html(make_run(tmp_path_factory.mktemp(track), track), skipped=skipped)
        out[track] = (path, skipped, path.read_text())
    return out


@pytest.mark.parametrize("track, images", [("mtl", 7), ("lsd", 6)])
def test_report_holds_every_section_with_its_plots(pages, track, images):
    _, skipped, page = pages[track]
    assert _titles(page) == [title for title, _ in SECTIONS[track]]
    assert skipped == [] and 'class="note"' not in page
    # MTL: curves, task weights, expression bars, AU bars, confusion, VA density, timings;
    # LSD: curves, per-class bars, confusion before and after the rule, occlusion, timings
    sizes = _png_sizes(page)
    assert len(sizes) == images and all(w > 100 and h > 100 for w, h in sizes)
    # self-contained: nothing fetched from anywhere, no script
    assert not re.search(r'(src|href)="(?!data:|#)', page) and "<script" not in page
    # a report entry no section knows (another step's output) is still shown
    assert '&quot;window&quot;: 5' in page


@pytest.fixture(scope="session")
def chromium() -> str:
    path, why = find_or_install_chromium()
    if path is None:
        pytest.skip(f"no headless Chromium: {why}")
    return path


@pytest.mark.parametrize("track", ["mtl", "lsd"])
def test_every_plot_loads_and_is_visible_in_a_browser(pages, chromium, track):
    path, _, page = pages[track]
    states = image_states(chromium, path)
    expected = [html.unescape(a) for a in re.findall(r'<img src="[^"]*" alt="([^"]*)"', page)]
    assert [s["alt"] for s in states] == expected and len(expected) >= 6
    for state in states:
        assert state["complete"] and state["naturalWidth"] > 0 and state["naturalHeight"] > 0, state
        assert state["width"] > 0 and state["height"] > 0, state


def test_the_browser_check_sees_a_broken_or_hidden_image(pages, chromium, tmp_path):
    good = re.search(r'src="(data:image/png;base64,[^"]+)"', pages["lsd"][2]).group(1)
    page = tmp_path / "bad.html"
    page.write_text(f'<html><body><img src="data:image/png;base64,iVBORw0KGgo=" alt="broken">'
                    f'<img src="{good}" alt="hidden" style="display:none">'
                    f'<img src="{good}" alt="shown"></body></html>')
    states = {s["alt"]: s for s in image_states(chromium, page)}
    assert states["broken"]["naturalWidth"] == 0
    assert states["hidden"]["naturalWidth"] > 0 and states["hidden"]["width"] == 0
    assert states["shown"]["naturalWidth"] > 0 and states["shown"]["width"] > 0


def test_report_numbers_come_from_the_saved_files(pages):
    page = pages["mtl"][2]
    # predictions equal to the truth on the 10 labelled rows; the 2 rows at -5 do not count
    assert "valence: CCC 1.000, 10 frames; arousal: CCC 1.000, 10 frames" in page
    # post-processing before/after: validation_at_0.5 → validation_tuned, P_MTL 1.0 → 1.02
    assert ("<td>P_MTL</td><td>1.0000</td><td>1.0200</td><td>+0.0200</td>" in page)
    assert "AU1 0.50" in page and "AU26 0.40" in page  # the tuned thresholds, per AU
    # the checkpoint's post-processing artefact and the resolved config, verbatim
    assert "best.ckpt.postprocess.json" in page and "backbone: resnet18" in page
    assert "<td>train configs/mtl/base.yaml → runs/mtl/a</td><td>12.0</td><td>85.7%</td>" in page


def test_missing_inputs_are_visible_notes_never_a_crash(tmp_path, capsys):
    sub = make_run(tmp_path, "mtl")
    shutil.rmtree(tmp_path / "runs")
    (sub / VALIDATION_PREDICTIONS).unlink()
    assert cli.main(["report", str(sub)]) == 0
    page = (sub / "report.html").read_text()
    assert _titles(page) == [title for title, _ in SECTIONS["mtl"]]
    notes = re.findall(r'<p class="note">Skipped: (.*?)</p>', page)
    skipped = {t for t in ("Training curves", "Learned task weights", "Resolved config",
                           "Expression confusion matrix (validation)",
                           "Valence and arousal: predicted vs true (validation)")}
    assert len(notes) == len(skipped)
    assert any("training folder" in n for n in notes)
    assert any(VALIDATION_PREDICTIONS in n for n in notes)
    err = capsys.readouterr().err
    assert {re.search(r"section '(.*?)' skipped", line).group(1)
            for line in err.splitlines()} == skipped
    assert _png_sizes(page)  # the bars and timings still drawn from report.json alone


def test_metrics_of_every_version_in_numeric_order(tmp_path):
    sub = make_run(tmp_path, "mtl")
    logs = tmp_path / "runs/mtl/a/logs"
    first = (logs / "version_0/metrics.csv").read_text().splitlines()
    # a resumed run: version_2 continues (its step 100), version_10 continues further
    (logs / "version_2").mkdir()
    (logs / "version_2/metrics.csv").write_text(first[0] + "\n" + re.sub(
        r"^\d+,\d+,", "2,100,", first[1]) + "\n")
    (logs / "version_10").mkdir()
    (logs / "version_10/metrics.csv").write_text(first[0] + "\n" + re.sub(
        r"^\d+,\d+,", "3,200,", first[1]) + "\n")
    (logs / "version_10/config.yaml").write_text("model:\n  backbone: convnext\n")
    run = load_run(sub)
    assert [p.parent.name for p in run.metrics_files] == ["version_0", "version_2", "version_10"]
    assert run.metrics["step"].tolist()[-2:] == [100, 200]
    assert run.config_file.parent.name == "version_10"


def test_validation_predictions_are_saved_raw_and_read_back_in_truth_order(tmp_path):
    from mtl_fixtures import make_mtl_data

    from abaw.formats.predictions import load_predictions
    from abaw.formats.readers import read_mtl_annotations
    from abaw.reports.files import aligned_to_truth
    from abaw.vocab import MTL_VAL_FILE

    root = make_mtl_data(tmp_path / "data", n_val=6)
    val_file = root / MTL_VAL_FILE
    lines = val_file.read_text().splitlines()
    val_file.write_text("\n".join([*lines, lines[2]]) + "\n")  # a repeated row, as in the real file
    truth = read_mtl_annotations(val_file)
    distinct = list(dict.fromkeys(truth.images))
    assert len(distinct) == len(truth) - 1
    order = np.arange(len(distinct))[::-1]  # predictions in another order than the file
    images = [distinct[i] for i in order]
    first_row = {name: i for i, name in reversed(list(enumerate(truth.images)))}
    va = np.stack([truth.va[first_row[n]] for n in images]).astype(np.float64) + 0.25
    path = save_validation(tmp_path / "sub", "mtl", root, images, {"va": va})
    saved = load_predictions(path)  # what ensembles read: distinct rows, no truth
    assert saved.images == images and list(saved.arrays) == ["va"]
    np.testing.assert_array_equal(saved.arrays["va"], va)
    with np.load(path) as archive:
        aligned = aligned_to_truth({k: archive[k] for k in archive.files}, path)
    assert aligned["images"].tolist() == list(truth.images)
    np.testing.assert_allclose(aligned["va"], truth.va + 0.25, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(aligned["truth_expression"], truth.expression)
    np.testing.assert_array_equal(aligned["truth_aus"], truth.aus)


# --- abaw compare -----------------------------------------------------------------------------


def _second_run(tmp_path: Path) -> Path:
    """Run "b": another backbone and epoch count, higher tuned scores, a slower training."""
    other = tmp_path / "other"
    sub = make_run(other, "mtl")
    report = json.loads((sub / "report.json").read_text())
    report["run"] = "b"
    report["validation_tuned"]["P_MTL"] = 1.25
    report["seconds"] = {"train configs/mtl/base.yaml → runs/mtl/b": 30.5, "total": 31.0}
    (sub / "report.json").write_text(json.dumps(report))
    config = other / "runs/mtl/a/logs/version_0/config.yaml"
    config.write_text(config.read_text().replace("resnet18", "convnext_atto")
                      .replace("max_epochs: 2", "max_epochs: 5"))
    return sub


def test_compare_two_runs_exact_markdown(tmp_path, capsys):
    first, second = make_run(tmp_path, "mtl"), _second_run(tmp_path)
    out = tmp_path / "compare.md"
    assert cli.main(["compare", str(first), str(second), "--out", str(out)]) == 0
    expected = """\
| run                              | a                     | b                     |
| -------------------------------- | --------------------- | --------------------- |
| track                            | mtl                   | mtl                   |
| config                           | configs/mtl/base.yaml | configs/mtl/base.yaml |
| data                             | data/synth-tiny/mtl   | data/synth-tiny/mtl   |
| config model.backbone            | resnet18              | convnext_atto         |
| config data.img_size             | 64                    | 64                    |
| config trainer.max_epochs        | 2                     | 5                     |
| validation_at_0.5 P_MTL          | 1.0000                | 1.0000                |
| validation_at_0.5 ccc_valence    | 0.4000                | 0.4000                |
| validation_at_0.5 ccc_arousal    | 0.3000                | 0.3000                |
| validation_at_0.5 f1_expression  | 0.2000                | 0.2000                |
| validation_at_0.5 f1_au          | 0.1000                | 0.1000                |
| validation_tuned P_MTL           | 1.0200                | 1.2500                |
| validation_tuned ccc_valence     | 0.4000                | 0.4000                |
| validation_tuned ccc_arousal     | 0.3000                | 0.3000                |
| validation_tuned f1_expression   | 0.2200                | 0.2200                |
| validation_tuned f1_au           | 0.1200                | 0.1200                |
| test P_MTL                       | 0.9000                | 0.9000                |
| test ccc_valence                 | 0.4000                | 0.4000                |
| test ccc_arousal                 | 0.3000                | 0.3000                |
| test f1_expression               | 0.1000                | 0.1000                |
| test f1_au                       | 0.0000                | 0.0000                |
| fraction of oracle (validation)  | 0.4000                | 0.4000                |
| fraction of oracle (test)        | 0.3750                | 0.3750                |
| seconds: embedded data           | 1.5                   | —                     |
| seconds: train                   | 12.0                  | 30.5                  |
| seconds: validate the submission | 0.0                   | —                     |
| seconds: total                   | 14.0                  | 31.0                  |
"""
    assert out.read_text() == expected
    assert capsys.readouterr().out == expected
    assert compare_runs([first, second]) == expected


def test_compare_bad_input_is_one_line_naming_the_file(tmp_path, capsys):
    good = make_run(tmp_path, "mtl")
    assert cli.main(["compare", str(good), str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"abaw: error: {tmp_path / 'nowhere' / 'report.json'}: not found")
    assert err.count("\n") == 1
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "report.json").write_text('{\n  "run": "x",\n  "test": {P_MTL: 1}\n}\n')
    assert cli.main(["compare", str(good), str(broken)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"abaw: error: {broken / 'report.json'}:3: not valid JSON")
    assert err.count("\n") == 1 and "Traceback" not in err
    (broken / "report.json").write_text("[1, 2]\n")
    assert cli.main(["report", str(broken)]) == 2
    assert capsys.readouterr().err == (f"abaw: error: {broken / 'report.json'}:1: not a JSON "
                                       "object (a list)\n")
