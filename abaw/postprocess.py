"""Post-processing fitted on validation and saved as a small JSON artefact beside a checkpoint.

Three steps turn a model's raw outputs (VA, expression probabilities, AU probabilities) into
the submission's decisions, each fitted on the labelled validation rows:

- **per-AU decision thresholds** (:func:`fit_au_thresholds`): the submission holds 0/1 AUs,
  so the threshold on each AU's probability is the submitter's choice; the F1-optimal one is
  usually far from 0.5 for rare AUs. Per AU, the grid value maximising that AU's F1 (the
  official per-AU F1 of :func:`abaw.metrics.au_f1`); ties go to the value closest to 0.5.
  A prediction is positive iff ``probability >= threshold``;
- **expression decision biases** (:func:`fit_expression_biases`): per-class offsets added to
  the log-probabilities before the argmax, fitted by coordinate ascent on a grid to maximise
  the macro F1 over the 8 classes (the official term); ties go to the offset closest to 0;
- **temporal smoothing** (:mod:`abaw.temporal`): a Gaussian over frame distance within each
  video, one ``sigma`` (frames; 0 = off) per task chosen from :data:`SIGMA_GRID`, applied to
  VA and to the probabilities before the thresholds and biases (which are refitted for each
  candidate ``sigma``, so the choice is that of the whole task's decision rule);
- **VA calibration** (:func:`fit_va_calibration`): per dimension an affine map
  ``offset + scale * v`` giving the labelled validation rows the truth's mean and standard
  deviation. For a fixed correlation r it is the map that maximises CCC (which becomes r on
  the fitted rows): a network trained on other identities predicts too narrow a range, too
  close to its training mean, and CCC charges for both. Applied after the smoothing, before
  the clip to [-1, 1] (the smoothing sigma is chosen with the calibration refitted).

:class:`PostProcess` holds the fitted numbers and applies them (:meth:`PostProcess.decide`),
for the MTL arrays and for any subset of the tasks (a per-video track fits only its own):
the arrays are ``va`` (N, 2), ``expr_prob`` (N, 8), ``au_prob`` (N, 12), keyed as
:data:`TASK_ARRAYS`; the truth a :class:`Labels`. Tuning and scoring on one split is
optimistic, so :func:`split_half` gives the honest estimate: fit on half the validation
videos, score on the other half, swap, average.

Predicted rows and scored rows may differ (the per-video tracks): the model predicts the
frames that have a face crop, the truth covers every frame of a video, and each truth row
takes the decision of the nearest predicted frame of its video. ``rows`` (truth row ->
prediction row, :func:`abaw.data.per_video.fill_rows`) says so to the fitting and the
split-half functions: the arrays are smoothed over the **predicted** frames first (the
post-processing works on the crop-frame predictions), then decided, then filled to the
truth's rows and scored. ``rows=None`` (MTL): the truth's rows are the predicted rows.

The JSON (``<checkpoint>.postprocess.json``, :func:`save_postprocess` /
:func:`load_postprocess`) is data, never code. Format version 2 adds
``expression_biases`` and ``smoothing_sigma`` to version 1's ``au_thresholds``, version 3
``va_calibration``; an older file still loads (no biases, no smoothing, no calibration), and
every entry is checked (names, ranges), a bad one reported as one line naming the file.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from abaw.errors import AbawError, FormatError
from abaw.fileio import atomic_write_text, is_device
from abaw.metrics import au_f1, expression_f1, va_ccc
from abaw.temporal import gaussian_smooth, video_frames
from abaw.vocab import AU_MISSING, AUS, EXPRESSIONS, NUM_AUS, NUM_EXPRESSIONS, VA_MISSING

#: Default AU threshold grid: 0.05, 0.10, ..., 0.95.
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: Expression bias grid (log-probability offsets): -2, -1.75, ..., 2.
BIAS_GRID: tuple[float, ...] = tuple(round(0.25 * k, 2) for k in range(-8, 9))
#: Smoothing windows tried per task (Gaussian sigma in frames; 0 = no smoothing).
SIGMA_GRID: tuple[float, ...] = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)
#: the largest sigma a post-processing file may hold (frames)
MAX_SIGMA = 1000.0
#: the bounds of a VA calibration: 0 < scale <= MAX_SCALE, |offset| <= MAX_OFFSET (a fit
#: stays inside them: a near-constant prediction is not stretched further)
MAX_SCALE = 20.0
MAX_OFFSET = 20.0
#: the VA dimensions, in the order of the ``va`` columns and of ``va_calibration``
VA_NAMES: tuple[str, str] = ("valence", "arousal")
POSTPROCESS_SUFFIX = ".postprocess.json"
FORMAT_VERSION = 3
#: task -> the array of the raw predictions it reads
TASK_ARRAYS: dict[str, str] = {"va": "va", "expr": "expr_prob", "au": "au_prob"}
log = logging.getLogger(__name__)

#: the fitted steps, in the order they build on each other
STEPS: tuple[str, ...] = ("thresholds", "biases", "smoothing", "calibration")
#: the steps that change each task's decisions
TASK_STEPS: dict[str, tuple[str, ...]] = {"va": ("smoothing", "calibration"),
                                          "expr": ("biases", "smoothing"),
                                          "au": ("thresholds", "smoothing")}
#: each task's term in :func:`evaluate`
TASK_TERMS: dict[str, str] = {"va": "va", "expr": "f1_expression", "au": "f1_au"}


def identity_calibration() -> np.ndarray:
    """The (2, 2) VA calibration that changes nothing: rows valence, arousal; columns
    offset, scale."""
    return np.array([[0.0, 1.0], [0.0, 1.0]])


def apply_va_calibration(va: np.ndarray, calibration: np.ndarray) -> np.ndarray:
    """(N, 2) ``offset + scale * va`` per column (``calibration`` as
    :func:`identity_calibration`), clipped to [-1, 1]."""
    va = np.asarray(va, dtype=np.float64)
    cal = np.asarray(calibration, dtype=np.float64)
    return np.clip(cal[:, 0] + cal[:, 1] * va, -1.0, 1.0)


def fit_va_calibration(va_true: np.ndarray, va_pred: np.ndarray) -> np.ndarray:
    """Per dimension, the offset and scale giving the predictions of the labelled rows (both
    true values > -5, the rows :func:`abaw.metrics.va_ccc` scores) the truth's mean and
    standard deviation; the scale is capped at :data:`MAX_SCALE` (and the offset at
    :data:`MAX_OFFSET`). A dimension with fewer than two labelled rows, or whose predictions
    or truth do not vary, keeps the identity."""
    truth = np.asarray(va_true, dtype=np.float64)
    pred = np.asarray(va_pred, dtype=np.float64)
    if truth.shape != pred.shape or truth.ndim != 2 or truth.shape[1] != 2:
        raise ValueError(f"va_true {truth.shape} and va_pred {pred.shape} must both be (N, 2)")
    labelled = (truth[:, 0] > VA_MISSING) & (truth[:, 1] > VA_MISSING)
    cal = identity_calibration()
    if labelled.sum() < 2:
        return cal
    for j in range(2):
        t, p = truth[labelled, j], pred[labelled, j]
        sd_t, sd_p = float(t.std()), float(p.std())
        if sd_t <= 1e-12 or sd_p <= 1e-12:
            continue
        scale = min(sd_t / sd_p, MAX_SCALE)
        offset = float(np.clip(t.mean() - scale * p.mean(), -MAX_OFFSET, MAX_OFFSET))
        cal[j] = (offset, scale)
    return cal


def apply_au_thresholds(au_prob: np.ndarray, thresholds: np.ndarray | float) -> np.ndarray:
    """(N, 12) 0/1 int64 AU decisions: 1 where ``au_prob >= threshold`` (per AU)."""
    prob = np.asarray(au_prob, dtype=np.float64)
    if prob.ndim != 2 or prob.shape[1] != NUM_AUS:
        raise ValueError(f"au_prob must be (N, {NUM_AUS}), got {prob.shape}")
    return (prob >= np.asarray(thresholds, dtype=np.float64)).astype(np.int64)


def fit_au_thresholds(au_true: np.ndarray, au_prob: np.ndarray,
                      grid: Sequence[float] = DEFAULT_GRID) -> np.ndarray:
    """Per-AU threshold from ``grid`` maximising that AU's F1 over its labelled rows.

    ``au_true`` is (N, 12) with 0/1 and ``-1`` (not labelled, per column); an AU with no
    labelled row keeps 0.5. Returns float64 (12,).
    """
    truth = np.asarray(au_true)
    prob = np.asarray(au_prob, dtype=np.float64)
    if truth.shape != prob.shape or truth.ndim != 2 or truth.shape[1] != NUM_AUS:
        raise ValueError(f"au_true {truth.shape} and au_prob {prob.shape} must both be (N, {NUM_AUS})")
    candidates = np.asarray(sorted(grid, key=lambda t: (abs(t - 0.5), t)), dtype=np.float64)
    thresholds = np.full(NUM_AUS, 0.5)
    for k in range(NUM_AUS):
        labelled = truth[:, k] != AU_MISSING
        if not labelled.any():
            continue
        t, p = truth[labelled, k], prob[labelled, k]
        positives = int((t == 1).sum())
        best_f1 = -1.0
        for threshold in candidates:  # ordered by closeness to 0.5: strict > keeps ties there
            pred = p >= threshold
            tp = int((pred & (t == 1)).sum())
            denom = positives + int(pred.sum())
            f1 = 2.0 * tp / denom if denom else 0.0
            if f1 > best_f1:
                best_f1, thresholds[k] = f1, float(threshold)
    return thresholds


def apply_expression_biases(expr_prob: np.ndarray, biases: np.ndarray | float = 0.0) -> np.ndarray:
    """(N,) int64 classes: argmax of ``log(expr_prob) + biases`` (biases (8,) or a scalar)."""
    prob = np.asarray(expr_prob, dtype=np.float64)
    if prob.ndim != 2 or prob.shape[1] != NUM_EXPRESSIONS:
        raise ValueError(f"expr_prob must be (N, {NUM_EXPRESSIONS}), got {prob.shape}")
    log_prob = np.log(np.maximum(prob, np.finfo(np.float64).tiny))
    return (log_prob + np.asarray(biases, dtype=np.float64)).argmax(axis=1).astype(np.int64)


def fit_expression_biases(expr_true: np.ndarray, expr_prob: np.ndarray,
                          grid: Sequence[float] = BIAS_GRID, rounds: int = 5) -> np.ndarray:
    """Per-class log-probability offsets from ``grid`` maximising the macro F1 (8 classes)
    over the labelled rows (``expr_true >= 0``), by coordinate ascent.

    Starting from no offset, each round sets each class's offset in turn to the grid value
    giving the best macro F1 with the other offsets fixed (ties: the value closest to 0);
    it stops after a round that changes nothing, or after ``rounds``. Returns float64 (8,).
    """
    truth = np.asarray(expr_true).reshape(-1)
    prob = np.asarray(expr_prob, dtype=np.float64)
    if prob.shape != (len(truth), NUM_EXPRESSIONS):
        raise ValueError(f"expr_true {truth.shape} and expr_prob {prob.shape} must be (N,) and "
                         f"(N, {NUM_EXPRESSIONS})")
    biases = np.zeros(NUM_EXPRESSIONS)
    labelled = truth >= 0
    if not labelled.any():
        return biases
    truth = truth[labelled]
    log_prob = np.log(np.maximum(prob[labelled], np.finfo(np.float64).tiny))
    candidates = sorted(grid, key=lambda b: (abs(b), b))
    true_count = np.bincount(truth, minlength=NUM_EXPRESSIONS)
    rows = np.arange(len(truth))
    for _ in range(rounds):
        changed = False
        for k in range(NUM_EXPRESSIONS):
            # with the other offsets fixed, a row goes to class k iff its score beats the
            # best other class (on a tie, iff k comes first: argmax keeps the first maximum)
            others = log_prob + biases
            others[:, k] = -np.inf
            other = others.argmax(axis=1)
            other_score = others[rows, other]
            best_f1, best = -1.0, biases[k]
            for value in candidates:  # ordered by closeness to 0: strict > keeps ties there
                score = log_prob[:, k] + value
                pred = np.where((score > other_score) | ((score == other_score) & (k < other)),
                                k, other)
                hits = np.bincount(truth[truth == pred], minlength=NUM_EXPRESSIONS)
                support = true_count + np.bincount(pred, minlength=NUM_EXPRESSIONS)
                f1 = float(np.divide(2.0 * hits, support, out=np.zeros(NUM_EXPRESSIONS),
                                     where=support > 0).mean())
                if f1 > best_f1:
                    best_f1, best = f1, float(value)
            changed |= best != biases[k]
            biases[k] = best
        if not changed:
            break
    return biases


# --- the truth and the scores -------------------------------------------------------------------


@dataclass(frozen=True)
class Labels:
    """Validation truth row-aligned with predictions; a task without labels is ``None``.

    ``va`` (N, 2) with -5 where missing, ``expression`` (N,) and ``aus`` (N, 12) with -1.
    """

    va: np.ndarray | None = None
    expression: np.ndarray | None = None
    aus: np.ndarray | None = None

    @classmethod
    def from_annotations(cls, annotations: Any) -> Labels:
        """From an object with ``va``, ``expression`` and ``aus`` (an MTL annotation file)."""
        return cls(np.asarray(annotations.va, dtype=np.float64),
                   np.asarray(annotations.expression), np.asarray(annotations.aus))

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(t for t, v in zip(TASK_ARRAYS, (self.va, self.expression, self.aus))
                     if v is not None)

    def subset(self, rows: np.ndarray) -> Labels:
        return Labels(*(None if v is None else v[rows]
                        for v in (self.va, self.expression, self.aus)))


def evaluate(truth: Labels, decided: Mapping[str, np.ndarray]) -> dict[str, float]:
    """The official terms of the decisions for the truth's tasks: ``ccc_valence``,
    ``ccc_arousal``, ``va`` (their mean), ``f1_expression``, ``f1_au``, and ``score``, the sum
    of the task terms (``P_MTL`` for the three MTL tasks, the challenge score for one)."""
    out: dict[str, float] = {}
    if truth.va is not None:
        out["ccc_valence"], out["ccc_arousal"] = va_ccc(truth.va, decided["va"])
        out["va"] = (out["ccc_valence"] + out["ccc_arousal"]) / 2.0
    if truth.expression is not None:
        out["f1_expression"] = expression_f1(truth.expression, decided["expression"])[0]
    if truth.aus is not None:
        out["f1_au"] = au_f1(truth.aus, decided["aus"])[0]
    out["score"] = sum(out.get(k, 0.0) for k in ("va", "f1_expression", "f1_au"))
    return out


def scored(decided: Mapping[str, np.ndarray], rows: np.ndarray | None) -> dict[str, np.ndarray]:
    """The decisions of the truth's rows: ``decided[rows]`` per column (``None``: as they are)."""
    return dict(decided) if rows is None else {k: v[rows] for k, v in decided.items()}


def rows_within(rows: np.ndarray | None, kept: np.ndarray, count: int
                ) -> tuple[np.ndarray, np.ndarray | None]:
    """For the prediction rows ``kept`` (indices among ``count``): the truth rows they score
    and, for each, its prediction row's position within ``kept`` (the ``rows`` of the
    subset). ``rows=None`` (truth rows are prediction rows): ``(kept, None)``."""
    if rows is None:
        return kept, None
    position = np.full(count, -1, dtype=np.int64)
    position[kept] = np.arange(len(kept))
    local = position[np.asarray(rows, dtype=np.int64)]
    truth_rows = np.flatnonzero(local >= 0)
    return truth_rows, local[truth_rows]


# --- the fitted post-processing ------------------------------------------------------------------


def _default_thresholds() -> np.ndarray:
    return np.full(NUM_AUS, 0.5)


def _default_biases() -> np.ndarray:
    return np.zeros(NUM_EXPRESSIONS)


@dataclass
class PostProcess:
    """Fitted decision rule: per-AU thresholds, expression biases, a smoothing sigma per task
    (frames; absent = 0), the VA calibration ((2, 2): offset, scale per dimension). The
    defaults are the raw decisions (AU at 0.5, argmax, no smoothing, VA as predicted)."""

    au_thresholds: np.ndarray = field(default_factory=_default_thresholds)
    expression_biases: np.ndarray = field(default_factory=_default_biases)
    smoothing: dict[str, float] = field(default_factory=dict)
    va_calibration: np.ndarray = field(default_factory=identity_calibration)

    def smoothed(self, images: Sequence[str], arrays: Mapping[str, np.ndarray]
                 ) -> dict[str, np.ndarray]:
        """``arrays`` with each task's array smoothed by its sigma (others as they are)."""
        out = dict(arrays)
        tasks = [t for t, s in self.smoothing.items() if s > 0 and TASK_ARRAYS[t] in arrays]
        if tasks:
            videos, frames = video_frames(images)
            for task in tasks:
                key = TASK_ARRAYS[task]
                out[key] = gaussian_smooth(arrays[key], videos, frames, self.smoothing[task])
        return out

    def decide(self, images: Sequence[str], arrays: Mapping[str, np.ndarray]
               ) -> dict[str, np.ndarray]:
        """The submission's columns (``va``, ``expression``, ``aus``; those whose arrays are
        present), one row per image, ``images`` naming the rows (for the smoothing)."""
        smooth = self.smoothed(images, arrays)
        decided = {}
        if "va" in smooth:
            decided["va"] = apply_va_calibration(smooth["va"], self.va_calibration)
        if "expr_prob" in smooth:
            decided["expression"] = apply_expression_biases(smooth["expr_prob"],
                                                            self.expression_biases)
        if "au_prob" in smooth:
            decided["aus"] = apply_au_thresholds(smooth["au_prob"], self.au_thresholds)
        return decided

    def record(self) -> dict[str, Any]:
        """The JSON entries of the fitted numbers."""
        return {
            "format_version": FORMAT_VERSION,
            "au_names": list(AUS),
            "au_thresholds": [float(t) for t in self.au_thresholds],
            "expression_names": list(EXPRESSIONS),
            "expression_biases": [float(b) for b in self.expression_biases],
            "smoothing_sigma": {t: float(self.smoothing.get(t, 0.0)) for t in TASK_ARRAYS},
            "va_calibration": {name: {"offset": float(o), "scale": float(k)}
                               for name, (o, k) in zip(VA_NAMES, self.va_calibration)},
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], where: str | Path = "post-processing"
                    ) -> PostProcess:
        """From a loaded JSON record (:func:`load_postprocess`)."""
        smoothing = {t: s for t, s in record.get("smoothing_sigma", {}).items() if s > 0}
        calibration = record.get("va_calibration")
        return cls(np.asarray(record["au_thresholds"], dtype=np.float64),
                   np.asarray(record.get("expression_biases", _default_biases()),
                              dtype=np.float64), smoothing,
                   identity_calibration() if calibration is None else np.array(
                       [[float(calibration[n]["offset"]), float(calibration[n]["scale"])]
                        for n in VA_NAMES]))

    @classmethod
    def load(cls, path: str | Path) -> PostProcess:
        return cls.from_record(load_postprocess(path), path)


def steps_record(steps: Iterable[str] | Mapping[str, Iterable[str]]
                 ) -> list[str] | dict[str, list[str]]:
    """``steps`` as JSON holds them: a list, or a task -> list mapping (``--post auto``)."""
    if isinstance(steps, Mapping):
        return {t: list(v) for t, v in steps.items()}
    return list(steps)


def fit_postprocess(images: Sequence[str], truth: Labels, arrays: Mapping[str, np.ndarray],
                    steps: Iterable[str] | Mapping[str, Iterable[str]] = STEPS,
                    sigma_grid: Sequence[float] = SIGMA_GRID,
                    rows: np.ndarray | None = None) -> PostProcess:
    """Fit the chosen ``steps`` (:data:`STEPS`; or a task -> steps mapping, as
    :func:`choose_steps` returns) on labelled rows, for the truth's tasks.

    ``images`` name the rows of ``arrays``; ``truth`` has the same rows, or with ``rows``
    one row per entry of ``rows``, truth row ``i`` scoring prediction row ``rows[i]``
    (smoothing runs over the prediction rows, the fit and the score over the truth's). With
    ``"smoothing"``, each task's sigma is the grid value giving the best task term after
    refitting that task's thresholds / biases on the smoothed values (ties: the smaller sigma).
    """
    per_task = ({t: set(v) for t, v in steps.items()} if isinstance(steps, Mapping)
                else {t: set(steps) for t in TASK_STEPS})
    unknown = set().union(*per_task.values()) - set(STEPS)
    if unknown:
        raise AbawError(f"unknown post-processing steps {sorted(unknown)} (known: {list(STEPS)})")
    smoothing = any("smoothing" in v for v in per_task.values())
    videos, frames = video_frames(images) if smoothing and len(sigma_grid) > 1 else (None, None)
    post = PostProcess()
    for task in truth.tasks:
        key = TASK_ARRAYS[task]
        if key not in arrays:
            continue
        steps = per_task.get(task, set())
        sigmas = sorted(set(sigma_grid) | {0.0}) if "smoothing" in steps else [0.0]
        best_score = -math.inf
        for sigma in sigmas:
            values = (arrays[key] if sigma == 0
                      else gaussian_smooth(arrays[key], videos, frames, sigma))
            if rows is not None:
                values = values[rows]
            if task == "va":
                fitted = (fit_va_calibration(truth.va, values) if "calibration" in steps
                          else identity_calibration())
                score = sum(va_ccc(truth.va, apply_va_calibration(values, fitted)))
            elif task == "expr":
                fitted = (fit_expression_biases(truth.expression, values)
                          if "biases" in steps else _default_biases())
                score = expression_f1(truth.expression, apply_expression_biases(values, fitted))[0]
            else:
                fitted = (fit_au_thresholds(truth.aus, values)
                          if "thresholds" in steps else _default_thresholds())
                score = au_f1(truth.aus, apply_au_thresholds(values, fitted))[0]
            if score > best_score:
                best_score = score
                post.smoothing[task] = float(sigma)
                if task == "va":
                    post.va_calibration = fitted
                elif task == "expr":
                    post.expression_biases = fitted
                else:
                    post.au_thresholds = fitted
    post.smoothing = {t: s for t, s in post.smoothing.items() if s > 0}
    return post


def choose_steps(images: Sequence[str], truth: Labels, arrays: Mapping[str, np.ndarray],
                 sigma_grid: Sequence[float] = SIGMA_GRID, rows: np.ndarray | None = None
                 ) -> tuple[dict[str, tuple[str, ...]], dict[str, dict[str, float]]]:
    """``--post auto``: for each task, the steps (of :data:`TASK_STEPS`) whose split-half
    estimate (:func:`split_half_postprocess`) of that task's term is best — none when no
    step beats the raw decisions on held-out videos (ties: fewer steps). Returns the choice
    and the split-half terms of every combination tried (keyed ``"a,b"``, ``"none"``).
    ``rows``: as for :func:`fit_postprocess` (per-video tracks: truth row -> prediction row).

    The estimate of the chosen combination is optimistic by the choice itself (the best of
    at most four per task on the same halves); the hidden-test column of the last-mile table
    is the unbiased check. With a single validation video nothing can be held out: every
    step is fitted (a warning says so) and no estimate is returned."""
    import itertools

    combos = [c for r in range(len(STEPS) + 1) for c in itertools.combinations(STEPS, r)]
    try:
        estimates = {c: split_half_postprocess(images, truth, arrays, c, sigma_grid, rows)
                     for c in combos}
    except AbawError as err:  # one validation video: nothing held out, every step unchecked
        log.warning("--post auto: %s; fitting every step", err)
        return {t: TASK_STEPS[t] for t in truth.tasks if TASK_ARRAYS[t] in arrays}, {}
    chosen: dict[str, tuple[str, ...]] = {}
    for task in truth.tasks:
        if TASK_ARRAYS[task] not in arrays:
            continue
        relevant = [c for c in combos if set(c) <= set(TASK_STEPS[task])]
        term = TASK_TERMS[task]
        chosen[task] = max(relevant, key=lambda c: (estimates[c][term], -len(c)))
    return chosen, {(",".join(c) or "none"): e for c, e in estimates.items()}


def parse_steps(text: str, option: str = "--post") -> tuple[str, ...]:
    """A command line's steps: comma-separated names of :data:`STEPS`, or ``none``."""
    if text.strip() == "none":
        return ()
    steps = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in steps if s not in STEPS]
    if unknown:
        raise AbawError(f"{option}: unknown step {unknown[0]!r} (steps: {','.join(STEPS)}, "
                        "or none)")
    return steps


# --- the split-half estimate ----------------------------------------------------------------------


def video_halves(images: Sequence[str]) -> np.ndarray:
    """A boolean mask of half the videos: the distinct videos in name order, every other one
    (the first, third, ...) in the half marked True. Needs at least two videos."""
    videos, _ = video_frames(images)
    if len(videos) == 0 or videos.max() < 1:
        raise AbawError("the split-half estimate needs at least two validation videos")
    return videos % 2 == 0


def split_half(images: Sequence[str], truth: Labels,
               fit_and_decide: Callable[[np.ndarray, np.ndarray], Mapping[str, np.ndarray]],
               rows: np.ndarray | None = None) -> dict[str, float]:
    """The mean over the two halves of the validation videos (:func:`video_halves`) of the
    scores (:func:`evaluate`) on one half of decisions fitted on the other.

    ``images`` name the prediction rows (``rows``: as :func:`fit_postprocess`; the truth
    rows of a video belong to its half). ``fit_and_decide(fit_rows, score_rows)`` fits on
    the prediction rows ``fit_rows`` (indices; their truth: :func:`rows_within`) only and
    returns the decisions for the prediction rows ``score_rows``.
    """
    half = video_halves(images)
    scores = []
    for fit_rows, score_rows in ((half, ~half), (~half, half)):
        fit_rows, score_rows = np.flatnonzero(fit_rows), np.flatnonzero(score_rows)
        truth_rows, local = rows_within(rows, score_rows, len(half))
        scores.append(evaluate(truth.subset(truth_rows),
                               scored(fit_and_decide(fit_rows, score_rows), local)))
    return {k: (scores[0][k] + scores[1][k]) / 2.0 for k in scores[0]}


def split_half_postprocess(images: Sequence[str], truth: Labels,
                           arrays: Mapping[str, np.ndarray],
                           steps: Iterable[str] | Mapping[str, Iterable[str]] = STEPS,
                           sigma_grid: Sequence[float] = SIGMA_GRID,
                           rows: np.ndarray | None = None) -> dict[str, float]:
    """:func:`split_half` of :func:`fit_postprocess` with ``steps``."""
    names = np.asarray(images, dtype=object)
    steps = steps if isinstance(steps, Mapping) else tuple(steps)

    def fit_and_decide(fit_rows: np.ndarray, score_rows: np.ndarray) -> dict[str, np.ndarray]:
        truth_rows, local = rows_within(rows, fit_rows, len(names))
        post = fit_postprocess(list(names[fit_rows]), truth.subset(truth_rows),
                               {k: v[fit_rows] for k, v in arrays.items()}, steps, sigma_grid,
                               local)
        return post.decide(list(names[score_rows]), {k: v[score_rows] for k, v in arrays.items()})

    return split_half(images, truth, fit_and_decide, rows)


def raw_split_half(images: Sequence[str], truth: Labels, arrays: Mapping[str, np.ndarray],
                   rows: np.ndarray | None = None) -> dict[str, float]:
    """:func:`split_half` of the raw decisions (nothing fitted): each half's own score."""
    def decide(fit_rows: np.ndarray, score_rows: np.ndarray) -> dict[str, np.ndarray]:
        return PostProcess().decide([images[i] for i in score_rows],
                                    {k: v[score_rows] for k, v in arrays.items()})

    return split_half(images, truth, decide, rows)


@dataclass
class FittedPost:
    """A post-processing fitted on validation with its scores: ``tuned`` (:func:`evaluate`
    after it, on the fitted rows), ``split_half`` (``raw`` and ``tuned`` estimates; ``None``
    with a single validation video, ``why`` says so)."""

    post: PostProcess
    tuned: dict[str, float]
    split_half: dict[str, dict[str, float]] | None
    why: str = ""


def fit_and_estimate(images: Sequence[str], truth: Labels, arrays: Mapping[str, np.ndarray],
                     steps: Iterable[str] | Mapping[str, Iterable[str]] = STEPS,
                     rows: np.ndarray | None = None) -> FittedPost:
    """What a run fits and reports: :func:`fit_postprocess`, the validation score after it
    and the split-half estimates of the raw and the post-processed decisions."""
    steps = steps if isinstance(steps, Mapping) else tuple(steps)
    post = fit_postprocess(images, truth, arrays, steps, rows=rows)
    tuned = evaluate(truth, scored(post.decide(images, arrays), rows))
    try:
        return FittedPost(post, tuned, {
            "raw": raw_split_half(images, truth, arrays, rows),
            "tuned": split_half_postprocess(images, truth, arrays, steps, rows=rows)})
    except AbawError as err:  # a single validation video
        return FittedPost(post, tuned, None, str(err))


# --- the JSON artefact ----------------------------------------------------------------------------


def default_postprocess_path(checkpoint: str | Path) -> Path:
    """``<checkpoint>.postprocess.json`` (``best.ckpt`` -> ``best.ckpt.postprocess.json``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + POSTPROCESS_SUFFIX)


def save_postprocess(path: str | Path, thresholds: np.ndarray | PostProcess, *,
                     au_true: np.ndarray | None = None, au_prob: np.ndarray | None = None,
                     fitted_on: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write the post-processing (a :class:`PostProcess`, or per-AU thresholds alone) and,
    given the AU data the thresholds were fitted on, the AU F1 at 0.5 and tuned."""
    post = thresholds if isinstance(thresholds, PostProcess) else PostProcess(
        np.asarray(thresholds, dtype=np.float64))
    record = post.record()
    _check_record(dict(record), str(path))
    record["fitted_on"] = fitted_on
    if au_true is not None and au_prob is not None:
        f1_default, per_default = au_f1(au_true, apply_au_thresholds(au_prob, 0.5))
        f1_tuned, per_tuned = au_f1(au_true, apply_au_thresholds(au_prob, post.au_thresholds))
        record["f1_au_at_0.5"] = f1_default
        record["f1_au_tuned"] = f1_tuned
        record["f1_au_per_au_at_0.5"] = [float(v) for v in per_default]
        record["f1_au_per_au_tuned"] = [float(v) for v in per_tuned]
    if extra:
        record.update(extra)
    return atomic_write_text(path, json.dumps(record, indent=2, default=float) + "\n")


def load_postprocess(path: str | Path) -> dict[str, Any]:
    """Read a post-processing JSON (format version 1 to 3). ``"au_thresholds"`` comes back
    as a float64 (12,) array, ``"expression_biases"`` as float64 (8,) (zeros in version 1),
    ``"smoothing_sigma"`` as ``{task: sigma}`` for the three tasks (0 in version 1),
    ``"va_calibration"`` as ``{dimension: {"offset": o, "scale": s}}`` (the identity before
    version 3)."""
    path = Path(path)
    if is_device(path):
        raise FormatError(path, None, "is a device, not a file")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FormatError(path, None, "post-processing file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise FormatError(path, getattr(err, "lineno", None), f"not valid JSON: {err}") from None
    except RecursionError:
        raise FormatError(path, None, "not valid JSON: nested too deeply") from None
    if not isinstance(record, dict):
        raise FormatError(path, None, "not a JSON object")
    _check_record(record, path)
    return record


def _numbers(record: dict, key: str, count: int, where: str | Path) -> np.ndarray:
    value = record[key]
    try:
        if isinstance(value, (str, bytes)) or not isinstance(value, list) or \
                any(isinstance(v, bool) for v in value):
            raise TypeError
        numbers = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise FormatError(where, None, f"{key} must be {count} numbers") from None
    if numbers.shape != (count,) or not np.isfinite(numbers).all():
        raise FormatError(where, None, f"{key} must be {count} numbers, all finite")
    return numbers


def _check_record(record: dict, where: str | Path) -> None:
    """Check ``record`` in place and normalise its entries (see :func:`load_postprocess`)."""
    version = record.get("format_version", 1)
    if isinstance(version, bool) or version not in range(1, FORMAT_VERSION + 1):
        raise FormatError(where, None, f"format_version {version!r} is not one this abaw reads "
                                       f"(1 to {FORMAT_VERSION})")
    if version == 1 and "au_thresholds" not in record:
        raise FormatError(where, None, "no 'au_thresholds' entry")
    if record.get("au_names", list(AUS)) != list(AUS):
        raise FormatError(where, None, f"au_names {record.get('au_names')} differ from {list(AUS)}")
    if record.get("expression_names", list(EXPRESSIONS)) != list(EXPRESSIONS):
        raise FormatError(where, None, f"expression_names {record.get('expression_names')} "
                                       f"differ from {list(EXPRESSIONS)}")
    record.setdefault("au_thresholds", [0.5] * NUM_AUS)
    thresholds = _numbers(record, "au_thresholds", NUM_AUS, where)
    if (thresholds < 0).any() or (thresholds > 1).any():
        raise FormatError(where, None, f"au_thresholds must be {NUM_AUS} numbers in [0, 1]")
    record["au_thresholds"] = thresholds
    record.setdefault("expression_biases", [0.0] * NUM_EXPRESSIONS)
    record["expression_biases"] = _numbers(record, "expression_biases", NUM_EXPRESSIONS, where)
    sigmas = record.setdefault("smoothing_sigma", {})
    if not isinstance(sigmas, dict) or set(sigmas) - set(TASK_ARRAYS) or not all(
            isinstance(s, (int, float)) and not isinstance(s, bool) and 0 <= s <= MAX_SIGMA
            for s in sigmas.values()):
        raise FormatError(where, None, f"smoothing_sigma must map tasks among "
                                       f"{list(TASK_ARRAYS)} to frames in [0, {MAX_SIGMA:g}]")
    record["smoothing_sigma"] = {t: float(sigmas.get(t, 0.0)) for t in TASK_ARRAYS}
    calibration = record.setdefault("va_calibration", {n: {"offset": 0.0, "scale": 1.0}
                                                       for n in VA_NAMES})
    message = (f"va_calibration must map {' and '.join(VA_NAMES)} to an offset within "
               f"±{MAX_OFFSET:g} and a scale in (0, {MAX_SCALE:g}]")
    if not isinstance(calibration, dict) or set(calibration) != set(VA_NAMES):
        raise FormatError(where, None, message)
    for entry in calibration.values():
        if not (isinstance(entry, dict) and set(entry) == {"offset", "scale"} and all(
                isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                for v in entry.values())
                and 0 < entry["scale"] <= MAX_SCALE and abs(entry["offset"]) <= MAX_OFFSET):
            raise FormatError(where, None, message)
