"""The end-to-end recipes (``make mtl`` / ``make lsd``) on ``--synth-size tiny`` data.

Each test runs the real recipe in a temporary working directory (data, runs and submissions
are written there) with one short epoch, and checks the files a participant relies on: a
submission that ``abaw validate`` accepts, a report with the official scores, and the saved
post-processing beside the checkpoint.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from abaw import cli
from abaw.errors import AbawError
from abaw.formats.readers import read_mtl_annotations
from abaw.formats.submissions import validate_submission
from abaw.reports.files import VALIDATION_PREDICTIONS
from abaw.reports.html import SECTIONS
from abaw.runner import config_files, train_seconds
from abaw.scoring import score
from abaw.tracks.mtl import MTL
from abaw.vocab import LSD_TEST_LIST, LSD_TEST_TRUTH, MTL_TEST_LIST, MTL_TEST_TRUTH, MTL_VAL_FILE
from challenges import lsd, mtl

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs", "1", "--data.batch_size", "8", "--data.num_workers", "0",
        "--data.img_size", "64"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_mtl_recipe_single_task_writes_a_valid_submission(tmp_path, monkeypatch):
    # a single-task run exercises the validation prediction over every row (regression:
    # rows unlabelled for the task once broke the validation file)
    monkeypatch.chdir(tmp_path)
    status = mtl.main(["--config", str(ROOT / "configs/mtl/base.yaml"), "--synth-size",
                       "tiny", "--run", "t", "--", *FAST, "--data.tasks", "[expr]"])
    assert status == 0
    out = tmp_path / "submissions/mtl/t"
    report = json.loads((out / "report.json").read_text())
    assert set(report["validation_tuned"]) >= {"P_MTL", "f1_expression", "f1_au"}
    # the reported test score is what `abaw score` gives the written file and the hidden truth
    truth = tmp_path / "data/synth-tiny/mtl" / MTL_TEST_TRUTH
    rescored = score("mtl", out / "submission.txt", truth).values
    assert rescored["P_MTL"] == pytest.approx(report["test"]["P_MTL"], abs=1e-9)
    test_list = tmp_path / "data/synth-tiny/mtl" / MTL_TEST_LIST
    assert validate_submission("mtl", out / "submission.txt", test_list=test_list) == []
    assert list((tmp_path / "runs/mtl/t/checkpoints").glob("*.postprocess.json"))
    # report.html beside report.json, and the validation predictions with their truth
    page = (out / "report.html").read_text()
    assert all(f"<h2>{html.escape(title)}</h2>" in page for title, _ in SECTIONS["mtl"])
    assert page.count('<img src="data:image/png;base64,') >= 4
    val = read_mtl_annotations(tmp_path / "data/synth-tiny/mtl" / MTL_VAL_FILE)
    with np.load(out / VALIDATION_PREDICTIONS) as saved:
        assert saved["images"].tolist() == list(val.images)
        np.testing.assert_array_equal(saved["truth_expression"], val.expression)
        assert saved["expr_prob"].shape == (len(val), 8)
    # rerunning the finished run resumes from last.ckpt instead of retraining, and its report
    # keeps what the training cost (regression: the rerun's report said 0 s of training)
    trained = report["train_seconds_all_sessions"]
    step = next(v for k, v in report["seconds"].items() if k.startswith("train"))
    assert trained == step > 0
    assert mtl.main(["--config", str(ROOT / "configs/mtl/base.yaml"), "--synth-size",
                     "tiny", "--run", "t", "--", *FAST, "--data.tasks", "[expr]"]) == 0
    again = json.loads((out / "report.json").read_text())
    step = next(v for k, v in again["seconds"].items() if k.startswith("train"))
    assert again["train_seconds_all_sessions"] == pytest.approx(trained + step, abs=0.11)
    assert train_seconds(again) == again["train_seconds_all_sessions"]


def test_mtl_recipe_with_ema_predicts_with_the_averaged_weights(tmp_path, monkeypatch):
    # regression: after fit, Lightning's EMA callback reloaded the raw training weights
    # ("current_model_state") over the averaged ones when the recipe predicted, so an EMA run
    # validated and selected the average but scored and submitted the raw weights
    monkeypatch.chdir(tmp_path)
    ema = tmp_path / "ema.yaml"
    ema.write_text("trainer:\n  callbacks:\n"
                   "    - class_path: pytorch_lightning.callbacks.EMAWeightAveraging\n"
                   "      init_args:\n        decay: 0.5\n")
    tiny = ["--", *FAST, "--data.tasks", "[expr]"]
    assert mtl.main(["--config", str(ROOT / "configs/mtl/base.yaml"), "--config", str(ema),
                     "--synth-size", "tiny", "--run", "e", *tiny]) == 0
    best = json.loads((tmp_path / "submissions/mtl/e/report.json").read_text())["checkpoint"]
    ckpt = torch.load(best, map_location="cpu", weights_only=False)
    assert any(not torch.equal(v, ckpt["current_model_state"][k])
               for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    # a separate `abaw mtl predict` loads the checkpoint's state_dict: the average
    out = tmp_path / "alone"
    assert cli.main(["mtl", "predict", "--config", str(ROOT / "configs/mtl/base.yaml"),
                     "--data.data_root", str(tmp_path / "data/synth-tiny/mtl"),
                     "--ckpt_path", best, "--data.predict_split", "val",
                     "--submission.output_dir", str(out), "--submission.auto_postprocess",
                     "false", *tiny[1:]]) == 0
    with np.load(out / "predictions.npz") as alone, \
            np.load(tmp_path / "submissions/mtl/e" / VALIDATION_PREDICTIONS) as recipe:
        rows = {name: i for i, name in enumerate(alone["images"].tolist())}
        order = [rows[name] for name in recipe["images"].tolist()]
        np.testing.assert_allclose(recipe["expr_prob"], alone["expr_prob"][order], atol=1e-5)


def test_lsd_recipe_starts_from_the_mtl_model_and_writes_a_valid_submission(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status = lsd.main(["--config", str(ROOT / "configs/lsd/base.yaml"), "--synth-size",
                       "tiny", "--sr", "none", "--no-detector", "--run", "t", "--", *FAST])
    assert status == 0
    out = tmp_path / "submissions/lsd/t"
    report = json.loads((out / "report.json").read_text())
    # --init mtl (the default): the default MTL run was trained first, and its best
    # checkpoint is what the LSD backbone started from
    mtl_report = json.loads((tmp_path / "submissions/mtl/default-tiny/report.json").read_text())
    assert report["init"] == mtl_report["checkpoint"]
    start = torch.load(mtl_report["checkpoint"], map_location="cpu", weights_only=True)
    conv = start["state_dict"]["net.backbone.model.conv1.weight"]
    first = torch.load(next((tmp_path / "runs/lsd/t/checkpoints").glob("best*.ckpt")),
                       map_location="cpu", weights_only=True)["state_dict"]
    trained = next(v for k, v in first.items() if k.endswith("conv1.weight"))
    assert not torch.equal(conv, torch.zeros_like(conv))
    assert torch.corrcoef(torch.stack([conv.flatten(), trained.flatten()]))[0, 1] > 0.5
    truth = tmp_path / "data/synth-tiny/lsd" / LSD_TEST_TRUTH
    rescored = score("lsd", out / "submission.txt", truth).values
    assert rescored["f1"] == pytest.approx(report["test"]["f1"], abs=1e-9)
    assert (out / "confusion_matrix_validation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (out / "report.html").read_text()
    assert all(f"<h2>{html.escape(title)}</h2>" in page for title, _ in SECTIONS["lsd"])
    assert page.count('<img src="data:image/png;base64,') >= 4
    test_list = tmp_path / "data/synth-tiny/lsd" / LSD_TEST_LIST
    assert validate_submission("lsd", out / "submission.txt", test_list=test_list) == []


def test_recipes_report_bad_data_in_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the recipes find configs/<challenge>/base.yaml from the root
    assert mtl.main(["--data", str(tmp_path / "nowhere")]) == 2
    assert lsd.main(["--data", str(tmp_path / "nowhere")]) == 2
    assert cli.main(["run", "mtl", "--data", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert err.count("nowhere") == 3 and "Traceback" not in err


def test_configs_stack_on_the_track_base(monkeypatch, tmp_path):
    monkeypatch.chdir(ROOT)
    base = Path("configs/mtl/base.yaml")
    assert config_files(MTL, None) == [base]
    assert config_files(MTL, [str(base)]) == [base]
    assert config_files(MTL, ["configs/mtl/hybrid.yaml"]) == [base, Path("configs/mtl/hybrid.yaml")]
    with pytest.raises(AbawError, match="no_such.yaml: config file not found"):
        config_files(MTL, ["configs/mtl/no_such.yaml"])
    own = tmp_path / "my_ema.yaml"  # a user's overlay outside configs/: the track's base first
    own.write_text("trainer:\n  max_epochs: 2\n")
    assert config_files(MTL, [str(own)]) == [base, own]
    with pytest.raises(AbawError, match="missing.yaml: config file not found"):
        config_files(MTL, [str(tmp_path / "missing.yaml")])
