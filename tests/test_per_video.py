"""The per-video tracks (``make va|expr|au``): nearest-frame filling, the generator's
editions, and each track end to end through the runner on ``--synth-size tiny`` data."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from abaw import vocab
from abaw.data.per_video import fill_rows, nearest_frame_rows, parse_location
from abaw.errors import AbawError
from abaw.formats import readers
from abaw.formats.submissions import read_per_video_submission, validate_submission
from abaw.models.temporal import TemporalHead
from abaw.postprocess import PostProcess
from abaw.scoring import score
from abaw.synth.layouts import plan_per_video
from abaw.synth.sizes import SIZES
from abaw.training.writer import PerVideoPredictionWriter
from challenges import per_video

ROOT = Path(__file__).resolve().parents[1]
FAST = ["--trainer.max_epochs", "1", "--data.batch_size", "8", "--data.train_stride", "1",
        "--trainer.enable_progress_bar", "false"]


# --- filling ------------------------------------------------------------------------------------


def test_nearest_frame_hand_checked():
    predicted = ["a/00002.jpg", "a/00005.jpg", "a/00009.jpg", "b/00001.jpg"]
    wanted = [f"a/{k:05d}.jpg" for k in range(1, 12)] + ["b/00001.jpg", "b/00004.jpg"]
    rows = nearest_frame_rows(predicted, wanted)
    # a/1→2, a/2→2, a/3→2 (tie 2|5? no: |3-2|=1 < |5-3|=2), a/4→5, a/5→5, a/6→5, a/7→5 (tie
    # 5|9 goes to the earlier), a/8→9, a/9..11→9; b only from b
    assert rows.tolist() == [0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3]


def test_filling_covers_every_row_once_and_never_crosses_videos():
    rng = np.random.default_rng(0)
    wanted, predicted = [], []
    for video in ("v1", "v2_left", "v2_right"):
        frames = [f"{video}/{k:05d}.jpg" for k in range(1, 41)]
        wanted += frames
        predicted += [f for f in frames if rng.random() < 0.3]
    order = rng.permutation(len(predicted))
    predicted = [predicted[i] for i in order]  # any order
    rows = fill_rows(predicted, wanted, "sample")
    assert len(rows) == len(wanted)  # one prediction per sample row, in sample order
    for location, row in zip(wanted, rows):
        video, frame = parse_location(location)
        source_video, source_frame = parse_location(predicted[row])
        assert source_video == video
        own = [parse_location(p)[1] for p in predicted if parse_location(p)[0] == video]
        assert abs(source_frame - frame) == min(abs(f - frame) for f in own)
        if location in predicted:
            assert predicted[row] == location


def test_a_video_without_any_crop_is_refused():
    with pytest.raises(AbawError, match="no frame of video b has a face crop"):
        fill_rows(["a/00001.jpg"], ["a/00001.jpg", "b/00001.jpg"], "sample.txt")
    assert nearest_frame_rows(["a/00001.jpg"], ["b/00003.jpg"]).tolist() == [-1]


def test_writer_fills_and_writes_a_valid_file(tmp_path):
    sample = tmp_path / "sample.txt"
    wanted = [f"v/{k:05d}.jpg" for k in range(1, 6)]
    sample.write_text("image_location," + ",".join(vocab.EXPRESSIONS) + "\n"
                      + "".join(f"{w},\n" for w in wanted))
    writer = PerVideoPredictionWriter(task="expr")
    probs = np.eye(vocab.NUM_EXPRESSIONS)[[3, 6]]  # frame 2 → Fear, frame 5 → Surprise
    arrays = {"va": np.zeros((2, 2)), "expr_prob": probs, "au_prob": np.zeros((2, 12))}
    result = writer.finish(["v/00002.jpg", "v/00005.jpg"], arrays, PostProcess(), wanted,
                           tmp_path)
    names, labels = read_per_video_submission(result.written["submission"], "expr")
    assert names == wanted and list(labels) == [3, 3, 3, 6, 6]  # frame 3 is nearer to 2
    assert validate_submission("expr", result.written["submission"], sample=sample) == []


# --- the generator's editions -------------------------------------------------------------------


@pytest.mark.parametrize("edition", vocab.PER_VIDEO_EDITIONS)
def test_per_video_layout_uses_the_editions_names(tmp_path, edition):
    plan = plan_per_video(SIZES["tiny"], 0, edition=edition)
    other = plan_per_video(SIZES["tiny"], 0, edition=11 - edition)
    # the same frames and labels: only folder and file names differ between editions
    assert [j.path for j in plan.jobs] == [j.path for j in other.jobs]
    assert [j.key for j in plan.jobs] == [j.key for j in other.jobs]
    for spec in plan.files:
        if spec.writer is not None:
            (tmp_path / spec.path).parent.mkdir(parents=True, exist_ok=True)
            spec.writer(tmp_path / spec.path, *spec.args)
    root = tmp_path / "per_video"
    expr_folder = {5: "EXPR_Classification_Challenge", 6: "EXPR_Recognition_Challenge"}[edition]
    expr_sample = {5: "CVPR_5th_ABAW_EXPR_test_set_example.txt",
                   6: "CVPR_6th_ABAW_Expr_test_set_example.txt"}[edition]
    assert readers.find_task_folder(root, "expr") == root / expr_folder
    assert readers.find_sample_file(root, "expr") == root / "test_set_examples" / expr_sample
    assert readers.find_test_video_names(root, "expr").name == (
        f"Expression_{'Classification' if edition == 5 else 'Recognition'}"
        "_Challenge_test_set_release.txt")
    for task in vocab.PER_VIDEO_TASKS:
        sample = readers.read_sample_file(readers.find_sample_file(root, task), task)
        names = readers.read_test_video_names(readers.find_test_video_names(root, task))
        assert [parse_location(s)[0] for s in sample[:1]] == names[:1]
        assert readers.read_per_video_split(root, task, "Train_Set")


def test_sample_file_renamed_sample_is_found(tmp_path):
    folder = tmp_path / "test_set_examples"
    folder.mkdir()
    (folder / "CVPR_6th_ABAW_AU_test_set_sample.txt").write_text(
        vocab.PER_VIDEO_SUBMISSION_HEADERS["au"] + "\nv/00001.jpg,\n")
    assert readers.find_sample_file(tmp_path, "au").name == "CVPR_6th_ABAW_AU_test_set_sample.txt"
    with pytest.raises(AbawError, match="no VA test sample file"):
        readers.find_sample_file(tmp_path, "va")


def test_temporal_head_shapes():
    head = TemporalHead(16, "va", hidden=8)
    out = head(torch.randn(3, 7, 16))["va"]
    assert out.shape == (3, 7, 2) and float(out.abs().max()) <= 1.0
    assert TemporalHead(16, "au", hidden=8)(torch.randn(1, 5, 16))["au"].shape == (1, 5, 12)


# --- each track end to end (tiny data) ----------------------------------------------------------




def _check_run(tmp_path: Path, task: str, run: str, edition: int = 6) -> dict:
    out = tmp_path / f"submissions/{task}/{run}"
    report = json.loads((out / "report.json").read_text())
    data = tmp_path / ("data/synth-tiny" + ("-ed5" if edition == 5 else "")) / "per_video"
    sample = readers.find_sample_file(data, task)
    assert validate_submission(task, out / "submission.txt", sample=sample) == []
    truth = readers.find_task_folder(data, task) / "Test_Set"
    rescored = score(task, out / "submission.txt", truth).values
    key = "score" if task == "va" else "f1"
    assert rescored[key] == pytest.approx(report["test"][key], abs=1e-9)
    return report


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("task", ["va", "au"])
def test_frame_model_tracks_end_to_end(tmp_path, monkeypatch, task):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "configs/per_video/base.yaml")
    assert per_video.main([task, "--config", config, "--synth-size", "tiny", "--init", "none",
                           "--run", "t", "--", *FAST]) == 0
    report = _check_run(tmp_path, task, "t")
    if task == "au":
        assert len(report["au_thresholds"]) == vocab.NUM_AUS
        assert list((tmp_path / "runs/au/t/checkpoints").glob("*.postprocess.json"))


@pytest.mark.usefixtures("one_thread")
def test_expr_track_with_the_temporal_head_on_the_5th_edition(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = str(ROOT / "configs/per_video/base.yaml")
    assert per_video.main(["expr", "--config", config, "--synth-size", "tiny", "--init", "none",
                           "--edition", "5", "--temporal", "gru", "--run", "t", "--",
                           *FAST]) == 0
    report = _check_run(tmp_path, "expr", "t", edition=5)
    assert (tmp_path / "data/synth-tiny-ed5/per_video/EXPR_Classification_Challenge").is_dir()
    assert report["temporal_head"]["kept_epoch"] >= 1
    assert set(report["frame_model"]) == {"validation", "test"}
    assert (tmp_path / "runs/expr/t/temporal/gru.pt").is_file()
    assert list((tmp_path / "runs/expr/t/temporal").glob("features-train-*.npy"))
