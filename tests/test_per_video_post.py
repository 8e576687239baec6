"""The last mile of the per-video tracks on tiny hand-made inputs: post-processing of the
crop-frame predictions before the nearest-frame filling, fitting on filled rows, the
split-half over videos, ``abaw ensemble --track <task>`` of one run equal to that run, and
the last-mile table's rows per track (``challenges.last_mile --track``, without TTA: the
TTA row needs a model, tested in the slow end-to-end test)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest

from abaw import vocab
from abaw.cli import main as abaw_main
from abaw.data.per_video import fill_rows
from abaw.ensemble import fit_members, load_member
from abaw.formats.predictions import load_predictions, save_predictions
from abaw.formats.readers import read_sample_file
from abaw.formats.submissions import read_per_video_submission, validate_submission
from abaw.formats.writers import write_per_video_annotation, write_sample_file
from abaw.postprocess import (
    Labels,
    PostProcess,
    choose_steps,
    evaluate,
    fit_au_thresholds,
    fit_postprocess,
    rows_within,
    split_half,
    split_half_postprocess,
)
from abaw.scoring import score
from abaw.tracks import get
from abaw.training.writer import PerVideoPredictionWriter
from challenges import last_mile

# --- smoothing before filling, by frame number, within each video --------------------------------


def test_smoothing_runs_over_the_crop_frames_before_the_filling(tmp_path):
    # video a: crops at frames 1, 2 and 10 (a gap of 8 frames), video b: one crop at frame 2
    images = ["a/00001.jpg", "a/00002.jpg", "a/00010.jpg", "b/00002.jpg"]
    valence = np.array([0.0, 0.9, 0.5, -0.6])
    arrays = {"va": np.stack([valence, -valence], axis=1)}
    post = PostProcess(smoothing={"va": 1.0})
    w = math.exp(-0.5)  # the weight of a neighbour 1 frame away at sigma 1
    smoothed = post.decide(images, arrays)["va"][:, 0]
    # frames 1 and 2 average each other; frame 10 is 8 > 3 sigma frames away: untouched;
    # b's frame 2 is never mixed with a's frame 1 or 2
    assert smoothed.tolist() == pytest.approx([0.9 * w / (1 + w), 0.9 / (1 + w), 0.5, -0.6])
    sample = [f"a/{k:05d}.jpg" for k in range(1, 13)] + [f"b/{k:05d}.jpg" for k in range(1, 4)]
    write_sample_file(tmp_path / "sample.txt", "va", sample)
    result = PerVideoPredictionWriter(task="va").finish(images, arrays, post, sample, tmp_path)
    names, values = read_per_video_submission(result.written["submission"], "va")
    assert names == sample  # every sample row exactly once, in sample order
    assert validate_submission("va", result.written["submission"],
                               sample=tmp_path / "sample.txt") == []
    # a/3..6 take the smoothed frame 2 (a/6: the tie between 2 and 10 goes to the earlier),
    # a/7..12 frame 10, b/1..3 b's only crop: smoothing first, then filling
    expected = [smoothed[0]] + [smoothed[1]] * 5 + [0.5] * 6 + [-0.6] * 3
    assert np.asarray(values)[:, 0] == pytest.approx(expected, abs=1e-6)
    # the raw arrays are saved, not the smoothed ones
    assert load_predictions(result.written["predictions"]).arrays["va"][:, 0].tolist() == \
        valence.tolist()


def test_fitting_scores_the_filled_rows():
    # 3 crop frames fill 6 frames: a threshold fitted on the filled rows counts each crop
    # frame as often as it fills frames, so the fit differs from one on the crop frames alone
    images = ["v/00001.jpg", "v/00004.jpg", "w/00001.jpg"]
    rng = np.random.default_rng(3)
    prob = rng.random((3, vocab.NUM_AUS))
    rows = np.array([0, 0, 1, 1, 1, 2])
    truth = rng.integers(0, 2, (6, vocab.NUM_AUS))
    post = fit_postprocess(images, Labels(aus=truth), {"au_prob": prob}, ("thresholds",),
                           rows=rows)
    assert post.au_thresholds.tolist() == fit_au_thresholds(truth, prob[rows]).tolist()


def test_rows_within_hand_checked():
    rows = np.array([0, 0, 1, 2, 2, 3])  # truth row -> prediction row, 4 prediction rows
    truth_rows, local = rows_within(rows, np.array([1, 3]), 4)
    assert truth_rows.tolist() == [2, 5] and local.tolist() == [0, 1]
    truth_rows, local = rows_within(None, np.array([1, 3]), 4)
    assert truth_rows.tolist() == [1, 3] and local is None


def test_split_half_with_filled_rows_scores_each_half_on_its_own_frames():
    # two videos of identical predictions and truth: each half fitted on one video and
    # scored on the other gets the same F1 as fitting and scoring one video
    images = ["a/00001.jpg", "a/00003.jpg", "b/00001.jpg", "b/00003.jpg"]
    expr_prob = np.tile(np.eye(vocab.NUM_EXPRESSIONS)[[2, 5]] * 0.6 + 0.05, (2, 1))
    rows = np.array([0, 0, 1, 1, 2, 2, 3, 3])
    truth = np.array([2, 2, 5, 1, 2, 2, 5, 1])
    labels = Labels(expression=truth)
    one = evaluate(Labels(expression=truth[:4]),
                   {"expression": PostProcess().decide(images[:2], {"expr_prob": expr_prob[:2]})
                    ["expression"][rows[:4]]})
    raw = split_half(images, labels, lambda fit, score_rows: PostProcess().decide(
        [images[i] for i in score_rows], {"expr_prob": expr_prob[score_rows]}), rows)
    assert raw["score"] == pytest.approx(one["score"])
    tuned = split_half_postprocess(images, labels, {"expr_prob": expr_prob}, ("biases",),
                                   rows=rows)
    assert tuned["score"] >= raw["score"] - 1e-12


# --- a hand-made per-video data root and runs ----------------------------------------------------

VAL_VIDEOS = {"v1": 12, "v2": 9, "v3": 10, "v4": 8}
TEST_VIDEOS = {"t1": 10, "t2": 7}


def _values(task: str, count: int, rng: np.random.Generator) -> np.ndarray:
    if task == "va":
        values = np.round(rng.uniform(-1, 1, (count, 2)), 3)
        values[0] = vocab.VA_MISSING  # an unlabelled frame
        return values
    if task == "expr":
        values = rng.integers(0, vocab.NUM_EXPRESSIONS, count)
        values[0] = vocab.EXPR_MISSING
        return values
    values = rng.integers(0, 2, (count, vocab.NUM_AUS))
    values[0] = vocab.AU_MISSING
    return values


def _data(root: Path, task: str) -> Path:
    rng = np.random.default_rng(7)
    folder = root / vocab.PER_VIDEO_FOLDERS[task][0]
    for split, videos in (("Validation_Set", VAL_VIDEOS), ("Test_Set", TEST_VIDEOS)):
        (folder / split).mkdir(parents=True)
        for video, count in videos.items():
            write_per_video_annotation(folder / split / f"{video}.txt", task,
                                       _values(task, count, rng))
    sample = [f"{v}/{k:05d}.jpg" for v, count in TEST_VIDEOS.items() for k in range(1, count + 1)]
    name = vocab.PER_VIDEO_EDITION_FILES[6][task][2]
    write_sample_file(root / vocab.PER_VIDEO_SAMPLES_DIR / name, task, sample)
    return root


def _crops(videos: dict[str, int]) -> list[str]:
    """Sparse crop frames: 1, 3, 4, 7, 8, ... (no crop for some frames, as real videos)."""
    return [f"{v}/{k:05d}.jpg" for v, count in videos.items() for k in range(1, count + 1)
            if k % 3 != 2]


def _arrays(n: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {"va": rng.uniform(-1, 1, (n, 2)), "expr_prob": rng.dirichlet(np.ones(8), n),
            "au_prob": rng.random((n, vocab.NUM_AUS))}


def _run(folder: Path, data: Path, seed: int) -> Path:
    """A run's submission folder as the runner leaves it (the saved raw predictions and
    report.json; the submission file is the ensemble's to write)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    save_predictions(folder / "validation_predictions.npz", _crops(VAL_VIDEOS),
                     _arrays(len(_crops(VAL_VIDEOS)), rng))
    save_predictions(folder / "predictions.npz", _crops(TEST_VIDEOS),
                     _arrays(len(_crops(TEST_VIDEOS)), rng))
    (folder / "report.json").write_text(json.dumps({"data": str(data)}))
    return folder


@pytest.mark.parametrize("task", ["va", "expr", "au"])
def test_an_ensemble_of_one_per_video_run_is_that_run(tmp_path, task):
    data = _data(tmp_path / "data", task)
    run = _run(tmp_path / "run", data, seed=1)
    assert abaw_main(["ensemble", str(run), "--track", task, "--out", str(tmp_path / "one")]) == 0
    member = load_member(run)
    challenge = get(task)
    images, truth, rows = challenge.validation_set(data, member.validation.images)
    # every validation frame is scored, filled from the nearest crop frame of its video
    assert len(rows) == sum(VAL_VIDEOS.values()) and len(images) == len(_crops(VAL_VIDEOS))
    arrays = member.validation.arrays  # --post auto, the default: the steps that win on split-half
    post = fit_postprocess(images, truth, arrays, choose_steps(images, truth, arrays, rows=rows)[0],
                           rows=rows)
    # what the run itself writes with that post-processing (the writer: decide, then fill)
    sample_file = challenge.test_list_file(data)
    own = PerVideoPredictionWriter(task=task).finish(
        member.test.images, member.test.arrays, post, read_sample_file(sample_file, task),
        tmp_path / "own")
    written = tmp_path / "one/submission.txt"
    assert written.read_bytes() == own.written["submission"].read_bytes()
    assert validate_submission(task, written, sample=sample_file) == []
    names, _ = read_per_video_submission(written, task)
    assert names == read_sample_file(sample_file, task)  # every sample row exactly once
    report = json.loads((tmp_path / "one/report.json").read_text())
    assert report["postprocess"] == json.loads(json.dumps(post.record()))
    assert report["validation_tuned"]["score"] == pytest.approx(
        evaluate(truth, {k: v[rows] for k, v in post.decide(images, member.validation.arrays)
                         .items()})["score"])
    truth_dir = challenge.test_truth_file(data)
    assert report["test"] == score(task, written, truth_dir).values  # the written file's score


@pytest.mark.parametrize("task, labels", [
    ("va", ["raw", "+ temporal smoothing", "+ VA calibration"]),
    ("expr", ["raw (argmax)", "+ expression biases", "+ temporal smoothing"]),
    ("au", ["raw (AU at 0.5)", "+ per-AU thresholds", "+ temporal smoothing"]),
])
def test_last_mile_table_of_a_per_video_track(tmp_path, monkeypatch, task, labels):
    monkeypatch.chdir(tmp_path)
    data = _data(tmp_path / "data", task)
    _run(tmp_path / f"submissions/{task}/r1", data, seed=1)
    _run(tmp_path / f"submissions/{task}/r2", data, seed=2)
    assert last_mile.main(["--track", task, "--runs", "r1", "r2", "--no-tta"]) == 0
    out = tmp_path / f"submissions/{task}/last-mile"
    result = json.loads((out / "last_mile.json").read_text())
    assert result["track"] == task and [row["label"] for row in result["rows"]] == [
        *labels, last_mile.AUTO_ROW, "auto, 2-run ensemble"]
    table = (out / "last_mile.md").read_text()
    name, key, _ = last_mile.COLUMNS[task]
    assert f"| step | validation {name} | split-half {name} | test {name} |" in table
    sample = get(task).test_list_file(data)
    truth_dir = get(task).test_truth_file(data)
    for row in result["rows"]:
        submission = Path(row["submission"])
        assert validate_submission(task, submission, sample=sample) == []
        # the test column is the official score of the row's written file
        assert row["test"][key] == pytest.approx(score(task, submission, truth_dir).values[key],
                                                 abs=1e-12)
        assert f"| {row['label']} | {row['validation']['score']:.4f} | " \
               f"{row['split_half']['score']:.4f} | {row['test'][key]:.4f} |" in table
    # the raw row is the first run with no post-processing: the plain decisions
    raw = result["rows"][0]
    assert raw["postprocess"] == json.loads(json.dumps(PostProcess().record()))
    # each added step fits on validation, so it never lowers the validation score
    scores = [row["validation"]["score"] for row in result["rows"][:len(labels)]]
    assert all(b >= a - 1e-12 for a, b in zip(scores, scores[1:]))


def test_fit_members_of_one_run_matches_the_direct_fit(tmp_path):
    data = _data(tmp_path / "data", "au")
    member = load_member(_run(tmp_path / "run", data, seed=4))
    images, truth, rows = get("au").validation_set(data, member.validation.images)
    fitted = fit_members([member], images, truth, rows=rows)
    direct = fit_postprocess(images, truth, member.validation.arrays, rows=rows)
    assert fitted.post.record() == direct.record()
    assert fitted.report["validation_raw"]["f1_au"] == pytest.approx(
        evaluate(truth, {"aus": (member.validation.arrays["au_prob"] >= 0.5)
                         .astype(np.int64)[rows]})["f1_au"])
    assert rows.tolist() == fill_rows(images, [f"{v}/{k:05d}.jpg" for v, c in VAL_VIDEOS.items()
                                               for k in range(1, c + 1)], "val").tolist()


def test_last_mile_refuses_an_unknown_run_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert last_mile.main(["--track", "expr", "--runs", "missing", "--no-tta"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("abaw: error: ") and "submissions/expr/missing/report.json" in err
    assert "\n" not in err
    shutil.rmtree(tmp_path / "submissions", ignore_errors=True)


# --- end to end: two tiny per-video runs, the last mile with TTA (slow) ---------------------------

FAST = ["--trainer.max_epochs", "1", "--data.batch_size", "8", "--data.train_stride", "1",
        "--trainer.enable_progress_bar", "false"]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_last_mile_of_a_frame_run_and_a_gru_run_with_tta(tmp_path, monkeypatch):
    from challenges import per_video

    monkeypatch.chdir(tmp_path)
    config = str(Path(__file__).resolve().parents[1] / "configs/per_video/base.yaml")
    for run, extra in (("frame", []), ("gru", ["--temporal", "gru"])):
        assert per_video.main(["expr", "--config", config, "--synth-size", "tiny", "--init",
                               "none", "--run", run, *extra, "--", *FAST]) == 0
    report = json.loads((tmp_path / "submissions/expr/frame/report.json").read_text())
    # the runner fitted and saved the track's post-processing (the tiny data has one
    # validation video: no split-half estimate, said in one line instead)
    assert report["postprocess_steps"] == ["biases", "smoothing"]
    assert "split_half" not in report
    saved = json.loads(Path(report["checkpoint"] + ".postprocess.json").read_text())
    assert saved["smoothing_sigma"]["expr"] == report["smoothing_sigma"]
    assert last_mile.main(["--track", "expr", "--runs", "frame", "gru"]) == 0
    out = tmp_path / "submissions/expr/last-mile"
    rows = json.loads((out / "last_mile.json").read_text())["rows"]
    assert [row["label"] for row in rows] == [
        "raw (argmax)", "+ expression biases", "+ temporal smoothing", last_mile.AUTO_ROW,
        "auto + TTA (horizontal flip)", "auto, 2-run ensemble (with TTA)"]
    # the run's own submission is the "auto" row's file (one validation video: auto fits every
    # step, so it is also the "+ temporal smoothing" row's)
    assert Path(rows[3]["submission"]).read_bytes() == Path(rows[2]["submission"]).read_bytes()
    assert Path(rows[3]["submission"]).read_bytes() == \
        (tmp_path / "submissions/expr/frame/submission.txt").read_bytes()
    raw = load_predictions(out / "3-temporal-smoothing/validation_predictions.npz").arrays
    flipped = load_predictions(out / "5-auto-tta-horizontal-flip/validation_predictions.npz").arrays
    assert not np.allclose(raw["expr_prob"], flipped["expr_prob"])
    gru = load_predictions(out / "tta/gru/validation_predictions.npz")
    plain = load_predictions(tmp_path / "submissions/expr/gru/validation_predictions.npz")
    assert gru.images == plain.images and not np.allclose(gru.arrays["expr_prob"],
                                                          plain.arrays["expr_prob"])
    data = tmp_path / "data/synth-tiny/per_video"
    for row in rows:
        assert validate_submission("expr", Path(row["submission"]),
                                   sample=get("expr").test_list_file(data)) == []
