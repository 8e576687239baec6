"""The one prediction writer: padding gather, de-duplication, expansion to the test list, the
post-processing found beside the checkpoint — and, for both challenges, predict on 2 gloo CPU
processes over an uneven row count writes the file that 1 process writes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from abaw.cli import main
from abaw.errors import AbawError
from abaw.formats.submissions import read_lsd_labels, read_mtl_submission
from abaw.lsd.occlusion import OcclusionRule
from abaw.postprocess import PostProcess, default_postprocess_path, save_postprocess
from abaw.training.writer import LsdPredictionWriter, MtlPredictionWriter, order_rows
from abaw.vocab import NUM_AUS, SUBMISSION_FILE
from tests.lsd_fixtures import TEST_DIR, TEST_SIZE, make_lsd_data
from tests.mtl_fixtures import make_mtl_data

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def test_order_rows_drops_padding_and_repeats_and_sorts() -> None:
    arrays = {"index": np.array([2, 0, -1, 1, 2, -1]),
              "x": np.array([[20.0], [0.0], [9.0], [10.0], [21.0], [9.0]], dtype=np.float32)}
    images, ordered = order_rows(arrays, ["a", "b", "c"])
    assert images == ["a", "b", "c"]
    assert ordered["x"].ravel().tolist() == [0.0, 10.0, 20.0]  # index 2 keeps its first row
    assert ordered["x"].dtype == np.float64
    with pytest.raises(AbawError, match="predicted 3 of 4 images"):
        order_rows({"index": np.array([0, 1, 2]), "x": np.zeros(3)}, ["a", "b", "c", "d"])


def test_mtl_writer_expands_to_the_test_list_with_repeats(tmp_path: Path) -> None:
    images = ["v/1.jpg", "v/2.jpg"]
    arrays = {"va": np.array([[0.25, -0.5], [1.0, 0.0]]),
              "expr_prob": np.eye(8)[[3, 5]],
              "au_prob": np.tile([[0.2], [0.7]], (1, NUM_AUS))}
    thresholds = np.full(NUM_AUS, 0.5)
    thresholds[0] = 0.1  # AU1 on for both images
    result = MtlPredictionWriter().finish(images, arrays, PostProcess(thresholds),
                                          ["v/2.jpg", "v/1.jpg", "v/2.jpg"], tmp_path)
    sub = read_mtl_submission(result.written["submission"])
    assert sub.images == ["v/2.jpg", "v/1.jpg", "v/2.jpg"]
    assert sub.valence.tolist() == [1.0, 0.25, 1.0] and sub.expression.tolist() == [5, 3, 5]
    assert sub.aus[:, 0].tolist() == [1, 1, 1] and sub.aus[:, 1].tolist() == [1, 0, 1]
    saved = np.load(result.written["predictions"])
    assert saved["images"].tolist() == images  # the npz holds each image once


def test_the_postprocessing_beside_the_checkpoint_is_found(tmp_path: Path) -> None:
    ckpt = tmp_path / "best.ckpt"
    mtl, lsd = MtlPredictionWriter(), LsdPredictionWriter()
    assert mtl.postprocess_path(ckpt) is None and lsd.postprocess_path(ckpt) is None
    save_postprocess(default_postprocess_path(ckpt), np.full(NUM_AUS, 0.3))
    OcclusionRule("separate_head").save(tmp_path / "best.ckpt.occlusion_rule.json")
    assert mtl.postprocess_path(ckpt) == tmp_path / "best.ckpt.postprocess.json"
    assert lsd.postprocess_path(ckpt) == tmp_path / "best.ckpt.occlusion_rule.json"
    assert lsd.load_postprocess(lsd.postprocess_path(ckpt)).rule == "separate_head"
    assert MtlPredictionWriter(auto_postprocess=False).postprocess_path(ckpt) is None
    assert MtlPredictionWriter(postprocess="x.json").postprocess_path(ckpt) == Path("x.json")


# --- 2 gloo processes == 1 process, for both challenges ------------------------------------------


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


def _common(challenge: str, data: Path, run: Path, backbone: str) -> list[str]:
    args = ["--config", str(CONFIGS / challenge / "base.yaml"),
            "--data.data_root", str(data), "--data.img_size", "32", "--data.batch_size", "2",
            "--data.eval_batch_size", "2", "--data.num_workers", "0",
            "--model.backbone", backbone, "--trainer.default_root_dir", str(run),
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
            "--trainer.accelerator", "cpu"]
    if challenge == "lsd":
        args += ["--data.test_dir", str(data / TEST_DIR)]
    return args


@pytest.mark.parametrize(("challenge", "backbone"), [("mtl", "vit_test"),
                                                     ("lsd", "efficientnet_test")])
def test_two_gloo_processes_write_the_one_process_file(challenge: str, backbone: str,
                                                       tmp_path: Path) -> None:
    if challenge == "mtl":  # 5 distinct test images (+1 repeat): 3 and 2 rows on 2 ranks
        data = make_mtl_data(tmp_path / "data", n_train=4, n_val=4, n_test=5)
    else:
        data = make_lsd_data(tmp_path / "data")
        assert TEST_SIZE % 2 == 1
    run = tmp_path / "run"
    fit = _common(challenge, data, run, backbone)
    assert main([challenge, "fit", *fit, "--trainer.max_steps", "1",
                 "--trainer.limit_val_batches", "0", "--trainer.devices", "1"]) == 0
    ckpt = str(run / "checkpoints" / "last.ckpt")
    one = tmp_path / "one"
    predict = [*_common(challenge, data, tmp_path / "p", backbone), "--ckpt_path", ckpt]
    assert main([challenge, "predict", *predict, "--trainer.devices", "1",
                 "--submission.output_dir", str(one)]) == 0
    two = tmp_path / "two"
    done = subprocess.run(
        [sys.executable, "-m", "abaw.cli", challenge, "predict", *predict,
         "--trainer.devices", "2", "--trainer.strategy", "ddp",
         "--submission.output_dir", str(two)],
        env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    if challenge == "mtl":
        a, b = read_mtl_submission(one / SUBMISSION_FILE), read_mtl_submission(two / SUBMISSION_FILE)
        assert a.images == b.images and len(a.images) == 6
        assert np.array_equal(a.expression, b.expression) and np.array_equal(a.aus, b.aus)
        np.testing.assert_allclose(b.valence, a.valence, atol=1e-4)
        np.testing.assert_allclose(b.arousal, a.arousal, atol=1e-4)
    else:
        (names_a, classes_a), (names_b, classes_b) = (
            read_lsd_labels(one / SUBMISSION_FILE), read_lsd_labels(two / SUBMISSION_FILE))
        assert names_a == names_b and len(names_a) == TEST_SIZE + 1
        assert classes_a.tolist() == classes_b.tolist()
        probs = [np.load(d / "predictions.npz")["expr_prob"] for d in (one, two)]
        np.testing.assert_allclose(probs[1], probs[0], atol=1e-4)
    assert torch.get_num_threads() >= 1
