"""Scoring submission files against ground truth (what ``abaw score`` and the runner use).

The file-level scorers read a submission and its truth, match rows with :func:`match_rows`
and call :mod:`abaw.metrics`; the runner scores in-memory arrays with the same functions.

PRED is a file in the task's submission format. TRUTH is:

- ``mtl``: an MTL annotation file (``validation_set_annotations.txt``, 16 fields a line);
- ``lsd``: an ``image,expression`` file, or a class-folder tree (``ANGRER/``, ``DISGUST/``, ...,
  e.g. ``validation_set_real_images``). For a tree the image names matched against the
  submission's ``image`` column are the paths *relative to the tree's root*, with ``/``
  separators and the folder spelled as on disk, e.g. ``ANGRER/00012.jpg`` (file names repeat
  across class folders, so a bare file name would be ambiguous);
- ``va``, ``expr``, ``au``: a per-video annotation folder (the task's split folder, e.g.
  ``VA_Estimation_Challenge/Validation_Set``) holding ``<video>.txt`` files whose data line k
  is image ``<video>/%05d.jpg``; the submission's ``image_location`` rows are matched to those;
- ``ce``: a file in the same format as the CE submission (``image_location,<7 names>``).

Rows are matched by image path: the k-th occurrence of a path in PRED with its k-th
occurrence in TRUTH (the MTL lists repeat some images). Every row must be matched on both
sides; a path missing on either side is an error naming it and how many more are missing.
The score follows :mod:`abaw.metrics`. Nothing is left out silently: truth rows the official
metric drops although they hold a label (valence without arousal, or the reverse) are counted
in a warning on stderr, and a ground truth with nothing labelled (every VA -5, every label -1)
is an error, not a score of 0. ``--json`` prints one JSON object (keys per task in
:data:`JSON_KEYS`); otherwise a readable breakdown table.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from abaw import metrics, vocab
from abaw.errors import AbawError

TASKS = ("mtl", "lsd", "va", "expr", "au", "ce")

#: The keys of the ``--json`` object, per task, in output order.
JSON_KEYS: dict[str, tuple[str, ...]] = {
    "mtl": ("P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au",
            "f1_expression_per_class", "f1_au_per_au"),
    "lsd": ("f1", "f1_per_class"),
    "va": ("score", "ccc_valence", "ccc_arousal"),
    "expr": ("f1", "f1_per_class"),
    "au": ("f1", "f1_au_per_au"),
    "ce": ("f1", "f1_per_class"),
}


# --- row matching -----------------------------------------------------------------------------


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _occurrences(codes: np.ndarray) -> np.ndarray:
    """For each position, how many earlier positions hold the same code (0 for the first)."""
    order = np.argsort(codes, kind="stable")
    sorted_codes = codes[order]
    starts = np.r_[True, sorted_codes[1:] != sorted_codes[:-1]] if codes.size else np.zeros(0, bool)
    group_start = np.maximum.accumulate(np.where(starts, np.arange(codes.size), 0))
    occurrence = np.empty(codes.size, dtype=np.int64)
    occurrence[order] = np.arange(codes.size) - group_start
    return occurrence


def _missing_error(
    names: np.ndarray, occurrence: np.ndarray, rows: np.ndarray, present: str, absent: str
) -> AbawError:
    first = int(rows[0])
    nth = int(occurrence[first]) + 1
    which = f" ({_ordinal(nth)} occurrence)" if nth > 1 else ""
    more = f" (and {rows.size - 1} more)" if rows.size > 1 else ""
    return AbawError(f"image {names[first]!r}{which} is in {present} but not in {absent}{more}")


def match_rows(
    pred_names: Sequence[str],
    truth_names: Sequence[str],
    pred_file: str | Path = "the submission",
    truth_file: str | Path = "the ground truth",
) -> np.ndarray:
    """For each truth row, the index of its prediction row (the k-th occurrence of a path in
    one list is paired with its k-th occurrence in the other).

    Raises AbawError naming the first path present on one side only, and how many more.
    """
    pred = np.asarray(pred_names, dtype=object)
    truth = np.asarray(truth_names, dtype=object)
    if pred.shape == truth.shape and bool((pred == truth).all()):
        return np.arange(truth.size)  # the usual case: same rows in the same order
    import pandas as pd  # only when the orders differ

    codes, _ = pd.factorize(np.concatenate([pred, truth]))
    pred_codes, truth_codes = codes[: pred.size], codes[pred.size:]
    pred_occ, truth_occ = _occurrences(pred_codes), _occurrences(truth_codes)
    width = int(max(pred_occ.max(initial=0), truth_occ.max(initial=0))) + 1
    pred_keys = pred_codes.astype(np.int64) * width + pred_occ
    truth_keys = truth_codes.astype(np.int64) * width + truth_occ
    pred_of_truth = pd.Index(pred_keys).get_indexer(truth_keys)  # keys are unique per side
    unmatched_truth = np.flatnonzero(pred_of_truth < 0)
    if unmatched_truth.size:
        raise _missing_error(truth, truth_occ, unmatched_truth, f"the ground truth {truth_file}",
                             f"the submission {pred_file}")
    if pred.size != truth.size:  # every truth row matched, so the extra rows are predictions
        unmatched = np.ones(pred.size, dtype=bool)
        unmatched[pred_of_truth] = False
        raise _missing_error(pred, pred_occ, np.flatnonzero(unmatched),
                             f"the submission {pred_file}", f"the ground truth {truth_file}")
    return pred_of_truth


# --- reports ----------------------------------------------------------------------------------


@dataclass
class ScoreReport:
    """What ``abaw score`` prints: the JSON object and the lines of the human table."""

    values: dict[str, float | list[float]]
    lines: list[str] = field(default_factory=list)
    #: what the score silently depends on (rows left out): printed on stderr as warnings
    notes: list[str] = field(default_factory=list)

    def as_json(self) -> str:
        return json.dumps(self.values)


def _table(title: str, rows: Sequence[tuple[str, float]]) -> list[str]:
    width = max(len(name) for name, _ in rows)
    return [title, *(f"  {name:<{width}}  {value:.4f}" for name, value in rows)]


def _class_report(
    task: str, f1: float, per_class: np.ndarray, names: Sequence[str], rows: int, labelled: int
) -> ScoreReport:
    values = {"f1": f1, "f1_per_class": [float(v) for v in per_class]}
    lines = [f"{task} score: macro F1 over {len(names)} classes = {f1:.4f}",
             f"rows matched: {rows}, labelled: {labelled}", ""]
    lines += _table("F1 per class", list(zip(names, per_class.tolist())))
    return ScoreReport(values, lines)


def _au_lines(per_au: Sequence[float]) -> list[str]:
    return _table("F1 per AU", list(zip(vocab.AUS, per_au)))


def _nothing_to_score(truth_path: Path, what: str) -> AbawError:
    return AbawError(f"{truth_path}: no {what} in the ground truth: nothing to score")


def _half_va_note(truth_va: np.ndarray, where: Sequence[str], truth_path: Path) -> list[str]:
    """A note when truth rows label only one of valence / arousal: the official CCC keeps a
    row only when both are labelled, so the labelled half is left out too."""
    labelled = truth_va > vocab.VA_MISSING
    half = np.flatnonzero(labelled[:, 0] != labelled[:, 1])
    if not half.size:
        return []
    return [f"{truth_path}: {half.size} row(s) label only one of valence and arousal (first: "
            f"{where[int(half[0])]}); the official CCC leaves each such row out of both terms"]


# --- per task ---------------------------------------------------------------------------------


def score_mtl(pred_path: Path, truth_path: Path) -> ScoreReport:
    from abaw.formats.readers import read_mtl_annotations
    from abaw.formats.submissions import read_mtl_submission

    truth = read_mtl_annotations(truth_path)
    pred = read_mtl_submission(pred_path)
    rows = match_rows(pred.images, truth.images, pred_path, truth_path)
    labelled = {"VA": int(np.count_nonzero(truth.va_mask)),
                "EXPR": int(np.count_nonzero(truth.expr_mask)),
                "AU": int(np.count_nonzero(truth.au_mask.any(axis=1)))}
    if not any(labelled.values()):
        raise _nothing_to_score(truth_path, "labelled row (every VA is -5, every label -1)")
    notes = _half_va_note(truth.va, [f"line {n}" for n in truth.line_numbers], truth_path)
    notes += [f"{truth_path}: no {task} label in the ground truth: its term of P_MTL is 0"
              for task, count in labelled.items() if count == 0]
    va_pred = np.stack([np.asarray(pred.valence)[rows], np.asarray(pred.arousal)[rows]], axis=1)
    score = metrics.mtl_score(truth.va, va_pred, truth.expression,
                              np.asarray(pred.expression)[rows], truth.aus,
                              np.asarray(pred.aus)[rows])
    lines = [
        f"MTL score: P_MTL = {score.P_MTL:.4f} (max 3)",
        f"rows matched: {rows.size}; labelled frames: VA {labelled['VA']}, "
        f"EXPR {labelled['EXPR']}, AU {labelled['AU']}",
        "",
    ]
    lines += _table("terms", [
        ("CCC valence", score.ccc_valence),
        ("CCC arousal", score.ccc_arousal),
        ("(CCC_V + CCC_A) / 2", (score.ccc_valence + score.ccc_arousal) / 2),
        ("F1 expression (mean over 8)", score.f1_expression),
        ("F1 AU (mean over 12)", score.f1_au),
        ("P_MTL", score.P_MTL),
    ])
    lines += [""] + _table("expression F1 per class",
                           list(zip(vocab.EXPRESSIONS, score.f1_expression_per_class)))
    lines += [""] + _au_lines(score.f1_au_per_au)
    return ScoreReport(score.as_dict(), lines, notes)


def _lsd_truth(truth_path: Path) -> tuple[list[str], np.ndarray]:
    from abaw.formats.readers import read_lsd_tree
    from abaw.formats.submissions import read_lsd_labels

    if truth_path.is_dir():
        samples = read_lsd_tree(truth_path)  # paths like "ANGRER/00012.jpg"
        return samples.paths, samples.labels
    return read_lsd_labels(truth_path)


def score_lsd(pred_path: Path, truth_path: Path) -> ScoreReport:
    from abaw.formats.submissions import read_lsd_labels

    truth_names, truth_labels = _lsd_truth(truth_path)
    pred_names, pred_labels = read_lsd_labels(pred_path)
    rows = match_rows(pred_names, truth_names, pred_path, truth_path)
    if not rows.size:
        raise _nothing_to_score(truth_path, "row")
    f1, per_class = metrics.lsd_f1(truth_labels, np.asarray(pred_labels)[rows])
    return _class_report("LSD", f1, per_class, vocab.LSD_CLASSES, rows.size,
                         int(np.count_nonzero(truth_labels >= 0)))


def _per_video_truth(folder: Path, task: str) -> tuple[list[str], np.ndarray]:
    """Every frame of every ``<video>.txt`` in ``folder``: (image locations, stacked values)."""
    from abaw.formats.readers import frame_image, read_per_video_annotation

    files = sorted(p for p in folder.iterdir() if p.suffix == ".txt" and p.is_file())
    if not files:
        raise AbawError(
            f"{folder}: no <video>.txt annotation files; give the split folder itself, e.g. "
            f"{vocab.PER_VIDEO_FOLDERS[task][0]}/{vocab.PER_VIDEO_SPLITS[1]}"
        )
    locations: list[str] = []
    values = []
    for path in files:
        frames = read_per_video_annotation(path, task)
        locations.extend(frame_image(path.stem, k) for k in range(1, len(frames) + 1))
        values.append(frames)
    return locations, np.concatenate(values)


def per_video_array_score(task: str, truth: np.ndarray, arrays: dict[str, np.ndarray],
                          thresholds: np.ndarray | float = 0.5) -> dict[str, float]:
    """The official score of ``task`` for row-aligned truth (with sentinels) and arrays."""
    from abaw.postprocess import apply_au_thresholds

    if task == "va":
        valence, arousal = metrics.va_ccc(truth, arrays["va"])
        return {"score": (valence + arousal) / 2, "ccc_valence": valence, "ccc_arousal": arousal}
    if task == "expr":
        f1, per_class = metrics.expression_f1(truth, arrays["expr_prob"].argmax(1))
        return {"f1": f1, "f1_per_class": [float(v) for v in per_class]}
    f1, per_au = metrics.au_f1(truth, apply_au_thresholds(arrays["au_prob"], thresholds))
    return {"f1": f1, "f1_per_au": [float(v) for v in per_au]}


def score_per_video(task: str, pred_path: Path, truth_path: Path) -> ScoreReport:
    from abaw.formats.submissions import read_per_video_submission

    if not truth_path.is_dir():
        raise AbawError(f"{truth_path}: expected a per-video annotation folder holding "
                        f"<video>.txt files (e.g. {vocab.PER_VIDEO_FOLDERS[task][0]}/"
                        f"{vocab.PER_VIDEO_SPLITS[1]})")
    truth_locations, truth_values = _per_video_truth(truth_path, task)
    pred_locations, pred_values = read_per_video_submission(pred_path, task)
    rows = match_rows(pred_locations, truth_locations, pred_path, truth_path)
    pred_values = np.asarray(pred_values)[rows]
    if task == "va":
        labelled = int(np.count_nonzero((truth_values > vocab.VA_MISSING).all(axis=1)))
        if not labelled:
            raise _nothing_to_score(truth_path, "frame with valence and arousal labelled "
                                                "(every row holds -5)")
        valence, arousal = metrics.va_ccc(truth_values, pred_values)
        score = (valence + arousal) / 2
        lines = [f"VA score: (CCC_V + CCC_A) / 2 = {score:.4f}",
                 f"rows matched: {rows.size}, labelled: {labelled}", ""]
        lines += _table("terms", [("CCC valence", valence), ("CCC arousal", arousal),
                                  ("score", score)])
        return ScoreReport({"score": score, "ccc_valence": valence, "ccc_arousal": arousal},
                           lines, _half_va_note(truth_values, truth_locations, truth_path))
    if task == "expr":
        if not np.count_nonzero(truth_values >= 0):
            raise _nothing_to_score(truth_path, "labelled frame (every expression is -1)")
        f1, per_class = metrics.expression_f1(truth_values, pred_values)
        return _class_report("EXPR", f1, per_class, vocab.EXPRESSIONS, rows.size,
                             int(np.count_nonzero(truth_values >= 0)))
    labelled = int(np.count_nonzero((truth_values >= 0).any(axis=1)))
    if not labelled:
        raise _nothing_to_score(truth_path, "labelled frame (every AU is -1)")
    f1, per_au = metrics.au_f1(truth_values, pred_values)
    lines = [f"AU score: mean F1 over 12 AUs = {f1:.4f}",
             f"rows matched: {rows.size}, labelled: {labelled}", ""]
    lines += _au_lines(per_au.tolist())
    return ScoreReport({"f1": f1, "f1_au_per_au": [float(v) for v in per_au]}, lines)


def score_ce(pred_path: Path, truth_path: Path) -> ScoreReport:
    from abaw.formats.submissions import read_per_video_submission

    truth_locations, truth_labels = read_per_video_submission(truth_path, "ce")
    pred_locations, pred_labels = read_per_video_submission(pred_path, "ce")
    rows = match_rows(pred_locations, truth_locations, pred_path, truth_path)
    if not rows.size:
        raise _nothing_to_score(truth_path, "row")
    truth_labels = np.asarray(truth_labels)
    f1, per_class = metrics.ce_f1(truth_labels, np.asarray(pred_labels)[rows])
    return _class_report("CE", f1, per_class, vocab.COMPOUND_EXPRESSIONS, rows.size,
                         int(np.count_nonzero(truth_labels >= 0)))


def score(task: str, pred_path: Path, truth_path: Path) -> ScoreReport:
    """Score ``pred_path`` against ``truth_path`` for ``task`` (one of :data:`TASKS`)."""
    if task not in TASKS:
        raise AbawError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    for path in (pred_path, truth_path):
        try:
            path.stat()
        except FileNotFoundError:
            raise AbawError(f"{path}: no such file or folder") from None
        except OSError as err:  # a loop of symbolic links, a permission, a name too long
            raise AbawError(f"{path}: {err.strerror or err}") from None
    if task == "mtl":
        report = score_mtl(pred_path, truth_path)
    elif task == "lsd":
        report = score_lsd(pred_path, truth_path)
    elif task == "ce":
        report = score_ce(pred_path, truth_path)
    else:
        report = score_per_video(task, pred_path, truth_path)
    assert tuple(report.values) == JSON_KEYS[task]
    return report
