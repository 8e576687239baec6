"""Ensembles of saved predictions: ``abaw ensemble RUN_OR_NPZ... --out DIR``.

Each input is a run's submission folder (``submissions/<track>/<run>/`` with
``predictions.npz``, ``validation_predictions.npz`` and ``report.json``) or a test
``predictions.npz`` with its ``validation_predictions.npz`` beside it
(:mod:`abaw.formats.predictions`). The ensemble:

1. averages the raw arrays row by row (VA values, expression and AU probabilities), with
   equal weights, given weights, or weights **fitted on validation** per task
   (:func:`fit_weights`: the simplex grid of step 1/4, each candidate scored by the task's
   term after refitting its thresholds / biases; ties go to the most equal weights);
2. fits its own post-processing on the averaged validation predictions
   (:func:`abaw.postprocess.fit_postprocess`) and reports the validation score before and
   after and the split-half estimate;
3. writes ``predictions.npz``, ``validation_predictions.npz``, ``postprocess.json``,
   ``submission.txt`` (through the track's prediction writer, expanded to the official test
   list) and ``report.json`` into ``--out``, and validates the submission as ``abaw
   validate`` does; on the embedded data, after the file is written, also its hidden-truth
   test score.

An ensemble of one run is that run: the same arrays, the same fitted post-processing, the
same submission file.

The track says which rows are fitted and scored (:meth:`abaw.runner.Challenge.validation_set`):
MTL scores the predicted rows themselves; a per-video track predicts the frames with a face
crop and scores every frame of the validation videos, each filled from the nearest predicted
frame of its video after the post-processing (``rows``, as in :func:`abaw.postprocess.fit_postprocess`).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from abaw.errors import AbawError, FormatError
from abaw.formats.predictions import (
    VALIDATION_PREDICTIONS_FILE,
    SavedPredictions,
    load_predictions,
    save_predictions,
)
from abaw.postprocess import (
    STEPS,
    TASK_ARRAYS,
    Labels,
    PostProcess,
    evaluate,
    fit_postprocess,
    rows_within,
    scored,
    split_half,
    steps_record,
)
from abaw.vocab import PREDICTIONS_FILE

REPORT_FILE = "report.json"
POSTPROCESS_FILE = "postprocess.json"
#: the step of the weight grid fitted on validation
WEIGHT_STEP = 0.25


@dataclass
class Member:
    """One input of an ensemble: its saved test and validation predictions."""

    name: str
    test: SavedPredictions
    validation: SavedPredictions
    report: dict[str, Any]


def load_member(source: str | Path) -> Member:
    """A run's submission folder, or a test ``predictions.npz`` (its validation twin beside it)."""
    source = Path(source)
    folder = source if source.is_dir() else source.parent
    test_path = source / PREDICTIONS_FILE if source.is_dir() else source
    if test_path.name == VALIDATION_PREDICTIONS_FILE:
        raise AbawError(f"{source}: give the test predictions ({PREDICTIONS_FILE}) or the run "
                        f"folder; {VALIDATION_PREDICTIONS_FILE} is found beside them")
    report: dict[str, Any] = {}
    if (folder / REPORT_FILE).is_file():
        try:
            report = json.loads((folder / REPORT_FILE).read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise FormatError(folder / REPORT_FILE, None, f"not valid JSON: {err}") from None
        if not isinstance(report, dict):
            raise FormatError(folder / REPORT_FILE, None, "not a JSON object")
    return Member(str(source), load_predictions(test_path),
                  load_predictions(folder / VALIDATION_PREDICTIONS_FILE), report)


def average(predictions: Sequence[SavedPredictions],
            weights: Mapping[str, Sequence[float]] | None = None) -> SavedPredictions:
    """The row-wise weighted mean of each array the inputs share, in the first input's image
    order (every input must predict the same images). ``weights[key]``: one weight per input
    for that array (missing: equal weights)."""
    if not predictions:
        raise AbawError("an ensemble needs at least one input")
    first = predictions[0]
    aligned = [first] + [p.reordered(first.images, f"ensemble input {i + 2}")
                         for i, p in enumerate(predictions[1:])]
    for i, p in enumerate(predictions[1:], start=2):
        if len(p.images) != len(first.images):
            raise AbawError(f"ensemble input {i} predicts {len(p.images)} images, the first "
                            f"{len(first.images)}")
    keys = [k for k in first.arrays if all(k in p.arrays for p in aligned)]
    arrays = {}
    for key in keys:
        w = np.asarray((weights or {}).get(key, [1.0] * len(aligned)), dtype=np.float64)
        if w.shape != (len(aligned),) or (w < 0).any() or w.sum() <= 0:
            raise AbawError(f"weights of {key}: {len(aligned)} non-negative numbers, not all 0")
        if len(aligned) == 1:  # exactly the input, not x * 1.0 / 1.0 rounding games
            arrays[key] = aligned[0].arrays[key].copy()
            continue
        shape = aligned[0].arrays[key].shape
        for p in aligned:
            if p.arrays[key].shape != shape:
                raise AbawError(f"array {key} differs in shape between ensemble inputs")
        total = sum(wi * p.arrays[key] for wi, p in zip(w, aligned))
        arrays[key] = total / w.sum()
    return SavedPredictions(list(first.images), arrays)


def simplex_grid(count: int, step: float = WEIGHT_STEP) -> list[tuple[float, ...]]:
    """Weight vectors of ``count`` non-negative multiples of ``step`` summing to 1, the most
    equal first (then in lexicographic order)."""
    parts = round(1 / step)
    points = [c for c in itertools.product(range(parts + 1), repeat=count) if sum(c) == parts]
    uniform = parts / count
    points.sort(key=lambda c: (sum((x - uniform) ** 2 for x in c), [-x for x in c]))
    return [tuple(x / parts for x in c) for c in points]


def fit_weights(validation: Sequence[SavedPredictions], images: Sequence[str], truth: Labels,
                steps: Sequence[str] = STEPS, step: float = WEIGHT_STEP,
                rows: np.ndarray | None = None) -> dict[str, list[float]]:
    """Per task array (``va``, ``expr_prob``, ``au_prob``): the weights of the simplex grid
    maximising that task's validation term, after refitting its thresholds / biases (the
    non-temporal ``steps``); ties go to the most equal weights. ``validation[i]`` must hold
    the rows of ``images`` (the prediction rows; ``rows``: the truth's, as
    :func:`abaw.postprocess.fit_postprocess`)."""
    inputs = [v.reordered(list(images), f"validation input {i + 1}")
              for i, v in enumerate(validation)]
    candidates = simplex_grid(len(inputs), step)
    every = set().union(*steps.values()) if isinstance(steps, Mapping) else set(steps)
    static = [s for s in STEPS if s in every and s != "smoothing"]
    term = {"va": "va", "expr": "f1_expression", "au": "f1_au"}
    weights: dict[str, list[float]] = {}
    for task in truth.tasks:
        key = TASK_ARRAYS[task]
        if not all(key in r.arrays for r in inputs):
            continue
        only = Labels(**{f: getattr(truth, f) if t == task else None
                         for f, t in zip(("va", "expression", "aus"), TASK_ARRAYS)})
        best_score, best = -math.inf, candidates[0]
        for w in candidates:
            mixed = {key: sum(wi * r.arrays[key] for wi, r in zip(w, inputs))}
            post = fit_postprocess(images, only, mixed, static, rows=rows)
            score = evaluate(only, scored(post.decide(images, mixed), rows))[term[task]]
            if score > best_score:
                best_score, best = score, w
        weights[key] = list(best)
    return weights


def resolve_weights(validation: Sequence[SavedPredictions], images: Sequence[str],
                    truth: Labels, weights: str | Sequence[float] = "equal",
                    steps: Sequence[str] = STEPS, rows: np.ndarray | None = None
                    ) -> dict[str, list[float]]:
    """Per task array, one weight per input: ``"equal"``, ``"fit"`` on validation
    (:func:`fit_weights`), or the given numbers for every array."""
    count = len(validation)
    if isinstance(weights, str):
        if weights not in ("equal", "fit"):
            raise AbawError(f"weights must be 'equal', 'fit' or numbers, got {weights!r}")
        chosen = (fit_weights(validation, images, truth, steps, rows=rows)
                  if weights == "fit" and count > 1 else {})
    else:
        if len(weights) != count:
            raise AbawError(f"{len(weights)} weights for {count} ensemble inputs")
        chosen = {key: [float(w) for w in weights] for key in TASK_ARRAYS.values()}
    return {key: chosen.get(key, [1.0 / count] * count) for key in TASK_ARRAYS.values()}


def fit_ensemble(validation: Sequence[SavedPredictions], images: Sequence[str], truth: Labels,
                 weights: str | Sequence[float] = "equal", steps: Sequence[str] = STEPS,
                 rows: np.ndarray | None = None) -> tuple[dict[str, list[float]], PostProcess]:
    """The weights and the post-processing fitted on the inputs' validation predictions
    (each holding the rows of ``images``; ``rows``: the truth's rows, as
    :func:`abaw.postprocess.fit_postprocess`)."""
    validation = [v.reordered(list(images), f"validation input {i + 1}")
                  for i, v in enumerate(validation)]
    chosen = resolve_weights(validation, images, truth, weights, steps, rows)
    mixed = average(validation, chosen)
    return chosen, fit_postprocess(images, truth, mixed.arrays, steps, rows=rows)


def split_half_ensemble(validation: Sequence[SavedPredictions], images: Sequence[str],
                        truth: Labels, weights: str | Sequence[float] = "equal",
                        steps: Sequence[str] = STEPS, rows: np.ndarray | None = None
                        ) -> dict[str, float]:
    """:func:`abaw.postprocess.split_half` of the whole fit (weights included)."""
    names = np.asarray(images, dtype=object)
    validation = [v.reordered(list(images), f"validation input {i + 1}")
                  for i, v in enumerate(validation)]

    def fit_and_decide(fit_rows: np.ndarray, score_rows: np.ndarray) -> dict[str, np.ndarray]:
        truth_rows, local = rows_within(rows, fit_rows, len(names))
        chosen, post = fit_ensemble([v.subset(fit_rows) for v in validation],
                                    list(names[fit_rows]), truth.subset(truth_rows), weights,
                                    steps, local)
        mixed = average([v.subset(score_rows) for v in validation], chosen)
        return post.decide(mixed.images, mixed.arrays)

    return split_half(images, truth, fit_and_decide, rows)


@dataclass
class Fitted:
    """An ensemble (or one run) fitted on validation: what it writes and what it scored."""

    weights: dict[str, list[float]]
    post: PostProcess
    validation: SavedPredictions
    test: SavedPredictions
    report: dict[str, Any]


def fit_members(members: Sequence[Member], images: Sequence[str], truth: Labels,
                weights: str | Sequence[float] = "equal", steps: Sequence[str] = STEPS,
                rows: np.ndarray | None = None) -> Fitted:
    """Fit the weights and post-processing, score validation raw and post-processed and
    estimate split-half; the averaged test predictions to write. ``images`` name the
    prediction rows, ``rows`` the truth's (:meth:`abaw.runner.Challenge.validation_set`)."""
    chosen, post = fit_ensemble([m.validation for m in members], images, truth, weights, steps,
                                rows)
    validation = average([m.validation.reordered(list(images), m.name) for m in members], chosen)
    report: dict[str, Any] = {
        "inputs": [m.name for m in members], "weights": chosen,
        "steps": steps_record(steps),
        "validation_raw": evaluate(truth, scored(PostProcess().decide(images, validation.arrays),
                                                 rows)),
        "validation_tuned": evaluate(truth, scored(post.decide(images, validation.arrays), rows)),
        "postprocess": post.record()}
    try:
        report["split_half"] = split_half_ensemble([m.validation for m in members], images,
                                                   truth, weights, steps, rows)
    except AbawError as err:
        report["split_half_error"] = str(err)
    return Fitted(chosen, post, validation, average([m.test for m in members], chosen), report)


def write_submission(challenge: Any, fitted: Fitted, out: Path, data_root: Path) -> Path:
    """Write ``predictions.npz``, ``validation_predictions.npz``, ``postprocess.json`` and
    ``submission.txt`` (expanded to the official test list) into ``out`` and validate the
    submission; returns its path."""
    from abaw.formats.readers import read_expected_names
    from abaw.formats.submissions import validate_submission
    from abaw.postprocess import save_postprocess

    out.mkdir(parents=True, exist_ok=True)
    test_list = challenge.test_list_file(data_root)
    written = challenge.prediction_writer().finish(
        fitted.test.images, fitted.test.arrays, fitted.post,
        read_expected_names(test_list, challenge.name), out)
    save_predictions(out / VALIDATION_PREDICTIONS_FILE, fitted.validation.images,
                     fitted.validation.arrays)
    save_postprocess(out / POSTPROCESS_FILE, fitted.post, fitted_on=str(data_root),
                     extra={"steps": fitted.report["steps"], "weights": fitted.weights})
    submission = written.written["submission"]
    problems = validate_submission(challenge.name, submission, test_list=test_list)
    if problems:
        raise AbawError(f"{submission}:{problems[0].line}: {problems[0].message} "
                        f"({len(problems)} problems; not a valid submission)")
    fitted.report["submission"] = str(submission)
    fitted.report["predictions"] = {"validation": str(out / VALIDATION_PREDICTIONS_FILE),
                                    "test": str(written.written["predictions"])}
    return submission


def hidden_test_score(challenge: Any, submission: Path, data_root: Path) -> dict | None:
    """The official score of a written submission against the embedded data's hidden test
    truth (``None`` on real data, which has none)."""
    truth_file = challenge.test_truth_file(data_root)
    if truth_file is None or not truth_file.exists():
        return None
    return challenge.score_file(submission, truth_file).values


def auto_steps(members: Sequence[Member], images: Sequence[str], truth: Labels,
               rows: np.ndarray | None = None) -> dict[str, tuple[str, ...]]:
    """``--post auto``'s choice (:func:`abaw.postprocess.choose_steps`) on the equal-weight
    average of the members' validation predictions (``rows`` as for :func:`fit_members`)."""
    from abaw.postprocess import choose_steps

    mixed = average([m.validation.reordered(list(images), m.name) for m in members])
    return choose_steps(list(images), truth, mixed.arrays, rows=rows)[0]


def write_ensemble(challenge: Any, members: Sequence[Member], out: Path, data_root: Path,
                   weights: str | Sequence[float] = "equal",
                   steps: Sequence[str] | str = "auto") -> dict[str, Any]:
    """The whole ``abaw ensemble`` (module docstring); returns its report. ``steps``:
    the post-processing steps, or ``"auto"`` (per task, those that win on split-half)."""
    from abaw.runner import write_report

    images, truth, rows = challenge.validation_set(data_root, members[0].validation.images)
    if steps == "auto":
        steps = auto_steps(members, images, truth, rows)
    fitted = fit_members(members, images, truth, weights, steps, rows)
    submission = write_submission(challenge, fitted, out, data_root)
    report = {**fitted.report, "data": str(data_root)}
    test = hidden_test_score(challenge, submission, data_root)  # after the file is written
    if test is not None:
        report["test"] = test
    write_report(out / REPORT_FILE, report)
    return report


def data_root_of(members: Sequence[Member], given: str | None) -> Path:
    """``--data``, else the data root the first run's report names."""
    if given:
        return Path(given).expanduser()
    for member in members:
        if member.report.get("data"):
            return Path(member.report["data"])
    raise AbawError("no data root: give --data (the inputs have no report.json naming it)")


def parse_weights(text: str) -> str | list[float]:
    """``equal``, ``fit`` or comma-separated numbers."""
    if text in ("equal", "fit"):
        return text
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise AbawError(f"--weights: 'equal', 'fit' or numbers like 1,1,2, got {text!r}") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or sum(values) <= 0:
        raise AbawError(f"--weights: non-negative numbers, not all 0, got {text!r}")
    return values
