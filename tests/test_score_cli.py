"""End-to-end tests of ``abaw score``: small files written with abaw.formats.writers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from abaw.cli import main
from abaw.errors import AbawError
from abaw.formats import writers
from abaw.scoring import JSON_KEYS, match_rows
from abaw.vocab import AUS, LSD_FOLDERS, NUM_AUS


def _score(capsys: pytest.CaptureFixture[str], *args: object) -> tuple[int, str, str]:
    status = main(["score", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def _score_json(capsys: pytest.CaptureFixture[str], task: str, pred: Path, truth: Path) -> dict:
    status, out, err = _score(capsys, task, pred, truth, "--json")
    assert status == 0, err
    values = json.loads(out)
    assert list(values) == list(JSON_KEYS[task])
    return values


def _au_rows(*rows: int) -> np.ndarray:
    return np.array([[v] * NUM_AUS for v in rows])


# --- MTL --------------------------------------------------------------------------------------

IMAGES = ["video1/00001.jpg", "video1/00008.jpg", "video2/00001.jpg", "video2/00017.jpg"]


@pytest.fixture
def mtl_files(tmp_path: Path) -> tuple[Path, Path]:
    """The hand example of tests/test_metrics.py::test_mtl_score_hand_example as files."""
    truth = writers.write_mtl_annotations(
        tmp_path / "validation_set_annotations.txt", IMAGES,
        valence=[0.5, -0.5, -5, 0.0], arousal=[0.5, -0.5, -5, 0.0],
        expression=[0, 4, -1, 4], aus=_au_rows(1, 0, 1, -1))
    pred = writers.write_mtl_submission(
        tmp_path / "submission.txt", IMAGES,
        valence=[0.5, -0.5, 0.9, 0.0], arousal=[0.0, 0.0, 0.9, 0.0],
        expression=[0, 4, 7, 5], aus=_au_rows(1, 1, 1, 1))
    return pred, truth


def test_score_mtl_json(capsys: pytest.CaptureFixture[str], mtl_files: tuple[Path, Path]) -> None:
    values = _score_json(capsys, "mtl", *mtl_files)
    # VA term 1/2 (valence exact, arousal constant), EXPR (1 + 2/3)/8 = 5/24, AU 4/5 each
    assert values["P_MTL"] == pytest.approx(0.5 + 5 / 24 + 0.8)
    assert values["ccc_valence"] == pytest.approx(1.0)
    assert values["ccc_arousal"] == 0.0
    assert values["f1_expression"] == pytest.approx(5 / 24)
    assert values["f1_expression_per_class"] == pytest.approx([1, 0, 0, 0, 2 / 3, 0, 0, 0])
    assert values["f1_au_per_au"] == pytest.approx([0.8] * 12)


def test_score_mtl_human_table(capsys: pytest.CaptureFixture[str],
                               mtl_files: tuple[Path, Path]) -> None:
    status, out, _ = _score(capsys, "mtl", *mtl_files)
    assert status == 0
    assert f"P_MTL = {0.5 + 5 / 24 + 0.8:.4f}" in out
    assert "rows matched: 4; labelled frames: VA 3, EXPR 3, AU 3\n" in out
    for name in ("CCC valence", "Neutral", "Happiness", *AUS):
        assert name in out
    assert "  AU26" in out and "0.8000" in out


def test_score_mtl_matches_kth_occurrence(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # image a appears twice in each file, labelled 1 then 2; the submission lists the rows in
    # another order but keeps a's two occurrences in order, so every row is right:
    # classes 0, 1, 2, 4 get F1 1 → 4/8. Pairing the a's the other way round would give
    # classes 1 and 2 F1 0 → 2/8.
    truth_images = ["a/00001.jpg", "b/00001.jpg", "a/00001.jpg", "c/00001.jpg"]
    truth = writers.write_mtl_annotations(
        tmp_path / "truth.txt", truth_images, valence=[-5] * 4, arousal=[-5] * 4,
        expression=[1, 4, 2, 0], aus=_au_rows(-1, -1, -1, -1))
    pred_images = ["b/00001.jpg", "a/00001.jpg", "c/00001.jpg", "a/00001.jpg"]
    pred = writers.write_mtl_submission(
        tmp_path / "pred.txt", pred_images, valence=[0] * 4, arousal=[0] * 4,
        expression=[4, 1, 0, 2], aus=_au_rows(0, 0, 0, 0))
    values = _score_json(capsys, "mtl", pred, truth)
    assert values["f1_expression_per_class"] == [1, 1, 1, 0, 1, 0, 0, 0]
    assert values["f1_expression"] == 0.5
    # no labelled VA or AU frame: those terms are 0
    assert values["P_MTL"] == 0.5


def test_score_mtl_missing_path_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mtl_files: tuple[Path, Path]
) -> None:
    _, truth = mtl_files
    pred = writers.write_mtl_submission(
        tmp_path / "short.txt", IMAGES[:2], valence=[0, 0], arousal=[0, 0], expression=[0, 0],
        aus=_au_rows(0, 0))
    status, out, err = _score(capsys, "mtl", pred, truth, "--json")
    assert status == 2 and out == ""
    assert "'video2/00001.jpg'" in err and "(and 1 more)" in err
    assert "not in the submission" in err and "Traceback" not in err


def test_score_extra_prediction_row_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, mtl_files: tuple[Path, Path]
) -> None:
    _, truth = mtl_files
    images = [*IMAGES, IMAGES[0]]  # a second occurrence the truth does not have
    pred = writers.write_mtl_submission(
        tmp_path / "long.txt", images, valence=[0] * 5, arousal=[0] * 5, expression=[0] * 5,
        aus=_au_rows(0, 0, 0, 0, 0))
    status, _, err = _score(capsys, "mtl", pred, truth)
    assert status == 2
    assert "'video1/00001.jpg' (2nd occurrence) is in the submission" in err


def test_score_missing_file_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, _, err = _score(capsys, "mtl", tmp_path / "nope.txt", tmp_path / "truth.txt")
    assert status == 2 and "nope.txt" in err and "Traceback" not in err


def test_match_rows_pairs_kth_occurrences() -> None:
    # truth row i is predicted by pred row match[i]
    match = match_rows(["b", "a", "c", "a"], ["a", "b", "a", "c"])
    assert match.tolist() == [1, 0, 3, 2]
    with pytest.raises(AbawError, match=r"'a' \(2nd occurrence\) is in the ground truth"):
        match_rows(["a", "b"], ["a", "b", "a"])


# --- LSD --------------------------------------------------------------------------------------


def test_score_lsd_labels_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    names = ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    truth = writers.write_lsd_labels(tmp_path / "truth.txt", names, [0, 3, 3, 5])
    pred = writers.write_lsd_submission(tmp_path / "pred.txt", names[::-1], [5, 4, 3, 0])
    values = _score_json(capsys, "lsd", pred, truth)
    # truth 0,3,3,5 vs pred (re-ordered) 0,4,3,5: class 0: 1; class 3: TP 1, #true 2,
    # #pred 1 → 2/3; class 4: 0; class 5: 1 → mean (1 + 2/3 + 1) / 6 = 4/9
    assert values["f1_per_class"] == pytest.approx([1, 0, 0, 2 / 3, 0, 1])
    assert values["f1"] == pytest.approx(4 / 9)


def test_score_lsd_class_folder_tree(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    # the same file name in two class folders: matched on the path relative to the tree root
    root = tmp_path / "validation_set_real_images"
    for folder, name in [(LSD_FOLDERS[0], "1.jpg"), (LSD_FOLDERS[4], "1.jpg"),
                         (LSD_FOLDERS[4], "2.jpg")]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / name).write_bytes(b"")
    names = [f"{LSD_FOLDERS[4]}/2.jpg", f"{LSD_FOLDERS[0]}/1.jpg", f"{LSD_FOLDERS[4]}/1.jpg"]
    pred = writers.write_lsd_submission(tmp_path / "pred.txt", names, [4, 0, 0])
    values = _score_json(capsys, "lsd", pred, root)
    # truth Anger, Sadness, Sadness vs pred Anger, Anger, Sadness: Anger TP 1, #true 1,
    # #pred 2 → 2/3; Sadness TP 1, #true 2, #pred 1 → 2/3 → mean (4/3) / 6 = 2/9
    assert values["f1_per_class"] == pytest.approx([2 / 3, 0, 0, 0, 2 / 3, 0])
    assert values["f1"] == pytest.approx(2 / 9)


# --- per-video tasks and CE -------------------------------------------------------------------


def _locations(video: str, frames: int) -> list[str]:
    return [f"{video}/{k:05d}.jpg" for k in range(1, frames + 1)]


def test_score_per_video_va(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "VA_Estimation_Challenge" / "Validation_Set"
    writers.write_per_video_annotation(folder / "v1.txt", "va", [[0.5, 0.2], [-5, -5]])
    writers.write_per_video_annotation(folder / "v2_left.txt", "va", [[-0.5, -0.2], [0, 0]])
    locations = _locations("v2_left", 2) + _locations("v1", 2)
    pred = writers.write_per_video_submission(
        tmp_path / "VA.txt", "va", locations, [[-0.5, 0], [0, 0], [0.5, 0], [1, 1]])
    values = _score_json(capsys, "va", pred, folder)
    # labelled frames v1#1, v2_left#1, v2_left#2: valence exact → 1; arousal constant → 0
    assert values == {"score": pytest.approx(0.5), "ccc_valence": pytest.approx(1.0),
                      "ccc_arousal": 0.0}


def test_score_per_video_expr_and_au(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    expr_folder = tmp_path / "EXPR_Recognition_Challenge" / "Validation_Set"
    writers.write_per_video_annotation(expr_folder / "v1.txt", "expr", [7, -1, 3])
    pred = writers.write_per_video_submission(
        tmp_path / "EXPR.txt", "expr", _locations("v1", 3), [7, 0, 2])
    values = _score_json(capsys, "expr", pred, expr_folder)
    # labelled frames 1 and 3: Other right (F1 1), Fear predicted as Disgust → (1) / 8
    assert values["f1"] == pytest.approx(1 / 8)
    assert values["f1_per_class"] == pytest.approx([0, 0, 0, 0, 0, 0, 0, 1])

    au_folder = tmp_path / "AU_Detection_Challenge" / "Validation_Set"
    writers.write_per_video_annotation(au_folder / "v1.txt", "au", _au_rows(1, -1, 0))
    pred = writers.write_per_video_submission(
        tmp_path / "AU.txt", "au", _locations("v1", 3), _au_rows(1, 1, 1))
    values = _score_json(capsys, "au", pred, au_folder)
    # per AU: frames 1 and 3 labelled, truth 1, 0 vs pred 1, 1 → TP 1, FP 1 → 2/3
    assert values["f1_au_per_au"] == pytest.approx([2 / 3] * 12)
    assert values["f1"] == pytest.approx(2 / 3)


def test_score_per_video_missing_frame(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = tmp_path / "EXPR_Recognition_Challenge" / "Validation_Set"
    writers.write_per_video_annotation(folder / "v1.txt", "expr", [0, 1, 2])
    pred = writers.write_per_video_submission(
        tmp_path / "EXPR.txt", "expr", _locations("v1", 2), [0, 1])
    status, _, err = _score(capsys, "expr", pred, folder)
    assert status == 2 and "'v1/00003.jpg' is in the ground truth" in err


def test_score_ce(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    locations = _locations("ce1", 3)
    truth = writers.write_per_video_submission(tmp_path / "truth.txt", "ce", locations, [0, 6, 6])
    pred = writers.write_per_video_submission(tmp_path / "pred.txt", "ce", locations, [0, 6, 1])
    values = _score_json(capsys, "ce", pred, truth)
    # class 0: 1; class 6: TP 1, #true 2, #pred 1 → 2/3; class 1: 0 → (5/3) / 7 = 5/21
    assert values["f1_per_class"] == pytest.approx([1, 0, 0, 0, 0, 0, 2 / 3])
    assert values["f1"] == pytest.approx(5 / 21)
