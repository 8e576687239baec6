"""Post-processing fitted on validation and saved as a small JSON artefact beside a checkpoint.

The one step today: **per-AU decision thresholds**. The submission holds 0/1 AUs, so the
threshold on each AU's probability is the submitter's choice; the F1-optimal one is usually
far from 0.5 for rare AUs. :func:`fit_au_thresholds` picks, per AU, the grid value maximising
that AU's F1 on the labelled validation rows (the official per-AU F1 of
:func:`abaw.metrics.au_f1`); ties go to the threshold closest to 0.5 (the least-tuned choice).

Thresholds are data, never code: :func:`save_postprocess` writes them (with the F1 before and
after, and what they were fitted on) to ``<checkpoint>.postprocess.json`` by default, and
:func:`load_postprocess` reads them back, checking the AU names and the value ranges.
A prediction is positive iff ``probability >= threshold`` (as :class:`abaw.training.metric.MtlMetric`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from abaw.errors import FormatError
from abaw.fileio import atomic_write_text, is_device
from abaw.metrics import au_f1
from abaw.vocab import AU_MISSING, AUS, NUM_AUS

#: Default grid: 0.05, 0.10, ..., 0.95.
DEFAULT_GRID: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
POSTPROCESS_SUFFIX = ".postprocess.json"
FORMAT_VERSION = 1


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


def default_postprocess_path(checkpoint: str | Path) -> Path:
    """``<checkpoint>.postprocess.json`` (``best.ckpt`` -> ``best.ckpt.postprocess.json``)."""
    checkpoint = Path(checkpoint)
    return checkpoint.with_name(checkpoint.name + POSTPROCESS_SUFFIX)


def save_postprocess(path: str | Path, thresholds: np.ndarray, *,
                     au_true: np.ndarray | None = None, au_prob: np.ndarray | None = None,
                     fitted_on: str = "", extra: dict[str, Any] | None = None) -> Path:
    """Write the thresholds (and, given the data they were fitted on, F1 at 0.5 and tuned)."""
    thresholds = np.asarray(thresholds, dtype=np.float64)
    _check_thresholds(thresholds, str(path))
    record: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "au_names": list(AUS),
        "au_thresholds": [float(t) for t in thresholds],
        "fitted_on": fitted_on,
    }
    if au_true is not None and au_prob is not None:
        f1_default, per_default = au_f1(au_true, apply_au_thresholds(au_prob, 0.5))
        f1_tuned, per_tuned = au_f1(au_true, apply_au_thresholds(au_prob, thresholds))
        record["f1_au_at_0.5"] = f1_default
        record["f1_au_tuned"] = f1_tuned
        record["f1_au_per_au_at_0.5"] = [float(v) for v in per_default]
        record["f1_au_per_au_tuned"] = [float(v) for v in per_tuned]
    if extra:
        record.update(extra)
    return atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def load_postprocess(path: str | Path) -> dict[str, Any]:
    """Read a post-processing JSON; ``"au_thresholds"`` comes back as a float64 (12,) array."""
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
    if not isinstance(record, dict) or "au_thresholds" not in record:
        raise FormatError(path, None, "no 'au_thresholds' entry")
    if record.get("au_names", list(AUS)) != list(AUS):
        raise FormatError(path, None, f"au_names {record.get('au_names')} differ from {list(AUS)}")
    try:
        thresholds = np.asarray(record["au_thresholds"], dtype=np.float64)
    except (TypeError, ValueError):
        raise FormatError(path, None, "au_thresholds must be numbers") from None
    _check_thresholds(thresholds, str(path))
    record["au_thresholds"] = thresholds
    return record


def _check_thresholds(thresholds: np.ndarray, where: str) -> None:
    if thresholds.shape != (NUM_AUS,) or not np.isfinite(thresholds).all() or \
            (thresholds < 0).any() or (thresholds > 1).any():
        raise FormatError(where, None, f"au_thresholds must be {NUM_AUS} numbers in [0, 1]")
