"""The last mile end to end on ``--synth-size tiny`` data: a tiny MTL run (1 epoch), then
``challenges.last_mile`` (every step, TTA re-predicted from the checkpoint, a 2-run
ensemble) writes its table, and ``abaw ensemble`` of the one run writes that run's file."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from abaw.cli import main as abaw_main
from abaw.formats.predictions import load_predictions
from abaw.formats.submissions import validate_submission
from abaw.scoring import score
from abaw.training.base import ChallengeModule
from abaw.vocab import MTL_TEST_LIST, MTL_TEST_TRUTH
from challenges import last_mile, mtl

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs", "1", "--data.batch_size", "8", "--data.num_workers", "0",
        "--data.img_size", "64"]


class _FirstColumn(ChallengeModule):
    """Predicts each image's top-left and top-right pixels: a flip swaps them."""

    def predict_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p": torch.stack([images[:, 0, 0, 0], images[:, 0, 0, -1]], dim=1)}


def test_tta_averages_the_flipped_view() -> None:
    module = _FirstColumn()
    images = torch.zeros(2, 3, 4, 4)
    images[:, 0, 0, 0] = torch.tensor([1.0, 3.0])
    batch = {"image": images, "index": torch.tensor([5, 6])}
    plain = module.predict_step(batch, 0)
    assert plain["p"].tolist() == [[1.0, 0.0], [3.0, 0.0]] and plain["index"].tolist() == [5, 6]
    module.predict_tta = ("hflip",)
    assert module.predict_step(batch, 0)["p"].tolist() == [[0.5, 0.5], [1.5, 1.5]]
    assert module.predict_step(None, 0) is None


class _Half(ChallengeModule):
    """Outputs in bfloat16, as a bf16-mixed (GPU config) run's heads do."""

    def predict_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"p": (images[:, 0, 0, 0] / 3).to(torch.bfloat16)}


def test_bf16_outputs_become_float32_rows() -> None:
    # the writer turns rows into numpy arrays, which have no bfloat16: a bf16-mixed run used to
    # train, then stop at its first prediction ("Got unsupported ScalarType BFloat16")
    module = _Half()
    images = torch.zeros(2, 3, 4, 4)
    images[:, 0, 0, 0] = torch.tensor([1.0, 3.0])
    rows = module.predict_step({"image": images, "index": torch.tensor([0, 1])}, 0)
    assert rows["p"].dtype == torch.float32
    assert rows["p"].numpy().tolist() == [torch.tensor(1 / 3).to(torch.bfloat16).item(), 1.0]


@pytest.mark.usefixtures("one_thread")
def test_last_mile_writes_its_table(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert mtl.main(["--config", str(ROOT / "configs/mtl/base.yaml"), "--synth-size",
                     "tiny", "--run", "r1", "--", *FAST]) == 0
    run = tmp_path / "submissions/mtl/r1"
    report = json.loads((run / "report.json").read_text())
    # the runner saved the raw validation predictions beside the test ones
    validation = load_predictions(run / "validation_predictions.npz")
    assert set(validation.arrays) == {"va", "expr_prob", "au_prob"}
    assert report["predictions"]["validation"] == "submissions/mtl/r1/validation_predictions.npz"
    # an ensemble of one run is that run: the same submission, byte for byte
    assert abaw_main(["ensemble", str(run), "--out", str(tmp_path / "one")]) == 0
    assert (tmp_path / "one/submission.txt").read_bytes() == \
        (run / "submission.txt").read_bytes()
    shutil.copytree(run, tmp_path / "submissions/mtl/r2")  # a second member
    assert last_mile.main(["--runs", "r1", "r2"]) == 0
    out = tmp_path / "submissions/mtl/last-mile"
    table = (out / "last_mile.md").read_text()
    labels = [row["label"] for row in json.loads((out / "last_mile.json").read_text())["rows"]]
    assert labels == ["raw (AU at 0.5, argmax)", "+ per-AU thresholds", "+ expression biases",
                      "+ temporal smoothing", "+ VA calibration", last_mile.AUTO_ROW,
                      "auto + TTA (horizontal flip)",
                      "auto, 2-run ensemble (with TTA)"]
    assert all(f"| {label} |" in table for label in labels)
    data = tmp_path / "data/synth-tiny/mtl"
    rows = json.loads((out / "last_mile.json").read_text())["rows"]
    for row in rows:
        submission = Path(row["submission"])
        assert validate_submission("mtl", submission, test_list=data / MTL_TEST_LIST) == []
        # the test column is the official score of the row's written file
        assert row["test"]["P_MTL"] == pytest.approx(
            score("mtl", submission, data / MTL_TEST_TRUTH).values["P_MTL"], abs=1e-12)
        assert f"{row['test']['P_MTL']:.4f}" in table
    # the run's own test score is the "auto" row (the runner's default, --post auto)
    assert rows[5]["test"]["P_MTL"] == pytest.approx(report["test"]["P_MTL"], abs=1e-12)
    assert rows[5]["steps"] == report["postprocess_steps"]
    # TTA changed the model's outputs; the ensemble of a run with its copy is that run
    raw = load_predictions(out / "6-auto-per-task-the-steps-that-win-on-split-half-make-mtl-s-default/predictions.npz").arrays["va"]
    flipped = load_predictions(out / "7-auto-tta-horizontal-flip/predictions.npz").arrays["va"]
    assert not np.allclose(raw, flipped)
    both = load_predictions(out / "8-auto-2-run-ensemble-with-tta/predictions.npz").arrays["va"]
    assert np.allclose(both, flipped, atol=1e-12)


@pytest.mark.usefixtures("one_thread")
def test_the_gpu_overlay_runs_end_to_end_in_bf16(tmp_path, monkeypatch):
    # configs/mtl/gpu.yaml trains in bf16-mixed; on a CPU the same precision runs, so its
    # whole recipe (train, predict validation and test, post-process, write) is checked here
    monkeypatch.chdir(tmp_path)
    assert mtl.main(["--config", str(ROOT / "configs/mtl/gpu.yaml"), "--synth-size", "tiny",
                     "--run", "bf16", "--", "--trainer.accelerator", "cpu",
                     "--trainer.max_epochs", "1", "--data.batch_size", "16",
                     "--data.img_size", "64"]) == 0
    run = tmp_path / "submissions/mtl/bf16"
    config = json.loads((run / "report.json").read_text())["config"]
    assert "gpu.yaml" in str(config)
    validation = load_predictions(run / "validation_predictions.npz")
    assert all(array.dtype == np.float64 and np.isfinite(array).all()
               for array in validation.arrays.values())
    data = tmp_path / "data/synth-tiny/mtl"
    assert validate_submission("mtl", run / "submission.txt", test_list=data / MTL_TEST_LIST) == []
