"""The official ABAW scorers, in vectorised numpy (no scikit-learn at run time).

Conventions (see ``shared/ABAW_FORMATS.md`` §1-§3; every function below keeps them):

- **CCC** (valence, arousal): ``2·cov / (var_x + var_y + (mean_x − mean_y)²)`` with
  *population* statistics (ddof=0), computed in float64. When it is undefined (empty input,
  or both series constant and equal, so the denominator is 0) it is ``0.0``, never NaN. A
  constant prediction therefore scores 0.
- **F1 per class** is taken over the FIXED labels ``0..num_classes-1``; a class absent from
  both truth and prediction has F1 0 (scikit-learn's ``zero_division=0``), and the macro
  average divides by *all* ``num_classes`` (scikit-learn's ``average="macro"`` without
  ``labels=`` would average only over the labels present — a different number).
- **AU F1**: binary F1 of the positive class (1) per AU column, mean over the 12 AUs.
- **Masks**: each term is computed over the frames labelled for that task only, and the
  *prediction is masked with the truth's mask* (the same rows are dropped from both):
  VA rows count iff both true values are > -5; an expression row iff its label is >= 0; an
  AU entry iff that column's label is >= 0 (per column, so mixed rows are handled).
  A task with no labelled frame scores 0.
- **Editions**: the 3rd edition on (and the 4th-ABAW MTL/LSD challenges) use plain F1 and
  CCC as above. The 1st/2nd editions mixed in accuracy; their formulas live in
  :func:`expr_score_abaw2` and :func:`au_score_abaw2` and are never mixed with the others.

Inputs are validated: mismatched lengths, NaN/inf values, non-integer or out-of-range labels
raise :class:`abaw.errors.AbawError` with a message naming the argument.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abaw.errors import AbawError
from abaw.vocab import (
    AU_MISSING,
    EXPR_MISSING,
    NUM_AUS,
    NUM_COMPOUND,
    NUM_EXPRESSIONS,
    NUM_LSD_CLASSES,
    VA_MISSING,
)

__all__ = [
    "MtlScore",
    "au_f1",
    "au_score_abaw2",
    "ccc",
    "ce_f1",
    "expr_score_abaw2",
    "expression_f1",
    "f1_per_class",
    "lsd_f1",
    "mtl_score",
    "va_ccc",
    "va_score",
]

#: 1st/2nd-edition expression challenge: 7 classes (no ``Other``) and these weights.
ABAW2_EXPR_CLASSES = 7
ABAW2_EXPR_WEIGHTS = (0.67, 0.33)  # (macro F1, accuracy)
ABAW2_AU_WEIGHTS = (0.5, 0.5)  # (mean F1 over the AUs, accuracy)


# --- input checking ---------------------------------------------------------------------------


def _as_float(values: object, name: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(array)
    if not finite.all():
        # report the first bad row (0-based): the caller's arrays are row-aligned
        row = int(np.argwhere(~finite)[0][0]) if array.ndim else 0
        raise AbawError(f"{name} holds NaN or infinite values (first at row {row})")
    return array


def _as_labels(values: object, name: str) -> np.ndarray:
    """Integer labels as int64; floats are accepted when they are whole numbers."""
    array = np.asarray(values)
    if array.dtype == bool:
        return array.astype(np.int64)
    if array.dtype.kind in "iu":
        return array.astype(np.int64, copy=False)
    if array.dtype.kind != "f":
        raise AbawError(f"{name} must hold integer labels, got dtype {array.dtype}")
    array = _as_float(array, name)
    rounded = np.rint(array)
    if not np.array_equal(rounded, array):
        raise AbawError(f"{name} must hold integer labels, found non-integer values")
    return rounded.astype(np.int64)


def _check_same_length(a: np.ndarray, b: np.ndarray, names: str) -> None:
    if a.shape[0] != b.shape[0]:
        raise AbawError(f"{names}: lengths differ ({a.shape[0]} vs {b.shape[0]} rows)")


def _check_range(labels: np.ndarray, low: int, num_classes: int, name: str) -> None:
    """Every label must be ``low`` (a sentinel, or 0) .. ``num_classes - 1``."""
    if labels.size == 0:
        return
    lo, hi = int(labels.min()), int(labels.max())
    if lo < low or hi >= num_classes:
        bad = lo if lo < low else hi
        allowed = f"{low}..{num_classes - 1}"
        raise AbawError(f"{name} holds label {bad}, outside {allowed}")


def _check_columns(array: np.ndarray, columns: int, name: str) -> None:
    if array.ndim != 2 or array.shape[1] != columns:
        raise AbawError(f"{name} must have shape (N, {columns}), got {array.shape}")


# --- CCC --------------------------------------------------------------------------------------


def _ccc(x: np.ndarray, y: np.ndarray) -> float:
    """CCC of two finite, contiguous float64 1-D arrays of one length; 0 where undefined."""
    n = x.size
    if n == 0:
        return 0.0
    mean_x, mean_y = x.mean(), y.mean()
    dx, dy = x - mean_x, y - mean_y
    # elementwise products and numpy's pairwise sum: accurate, and no BLAS thread start-up
    covariance = float((dx * dy).sum()) / n
    denominator = float((dx * dx).sum() + (dy * dy).sum()) / n + float(mean_x - mean_y) ** 2
    if denominator <= 0.0:
        return 0.0
    return 2.0 * covariance / denominator


def ccc(x: object, y: object) -> float:
    """Concordance correlation coefficient of two 1-D series (population statistics, ddof=0).

    Symmetric in ``x`` and ``y``. ``0.0`` when undefined (empty input, or a zero denominator:
    both series constant and equal). NaN/inf or different lengths raise AbawError.
    """
    x = _as_float(x, "ccc x").ravel()
    y = _as_float(y, "ccc y").ravel()
    _check_same_length(x, y, "ccc")
    return _ccc(np.ascontiguousarray(x), np.ascontiguousarray(y))


def va_ccc(va_true: object, va_pred: object) -> tuple[float, float]:
    """(CCC of valence, CCC of arousal) over rows whose two true values are both > -5.

    ``va_true`` and ``va_pred`` are (N, 2) arrays, columns valence then arousal; the
    prediction is masked with the truth's rows.
    """
    truth = _as_float(va_true, "va_true")
    pred = _as_float(va_pred, "va_pred")
    _check_columns(truth, 2, "va_true")
    _check_columns(pred, 2, "va_pred")
    _check_same_length(truth, pred, "va_true/va_pred")
    # column by column on contiguous copies: reductions along a strided axis are slow
    labelled = (truth[:, 0] > VA_MISSING) & (truth[:, 1] > VA_MISSING)
    valence = _ccc(truth[labelled, 0], pred[labelled, 0])
    arousal = _ccc(truth[labelled, 1], pred[labelled, 1])
    return valence, arousal


def va_score(va_true: object, va_pred: object) -> float:
    """Per-video VA challenge score: the mean of the valence and arousal CCCs (max 1)."""
    valence, arousal = va_ccc(va_true, va_pred)
    return (valence + arousal) / 2.0


# --- F1 ---------------------------------------------------------------------------------------


def f1_per_class(y_true: object, y_pred: object, num_classes: int) -> np.ndarray:
    """Per-class F1 over the fixed labels ``0..num_classes-1`` (float64 array of that length).

    Every label must already be in range (no sentinels: mask them first). F1 of a class with
    no true and no predicted sample is 0 (``zero_division=0``).
    """
    truth = _as_labels(y_true, "y_true").ravel()
    pred = _as_labels(y_pred, "y_pred").ravel()
    _check_same_length(truth, pred, "y_true/y_pred")
    _check_range(truth, 0, num_classes, "y_true")
    _check_range(pred, 0, num_classes, "y_pred")
    true_positive = np.bincount(truth[truth == pred], minlength=num_classes)
    # F1 = 2TP / (2TP + FP + FN) = 2TP / (#true + #predicted)
    support = np.bincount(truth, minlength=num_classes) + np.bincount(pred, minlength=num_classes)
    return _safe_ratio(2.0 * true_positive, support)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator = np.asarray(numerator, dtype=np.float64)
    denominator = np.asarray(denominator, dtype=np.float64)
    out = np.zeros(np.broadcast(numerator, denominator).shape, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def _labelled_classes(
    y_true: object, y_pred: object, num_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose true label is >= 0 (``-1`` = not annotated), truth and prediction alike."""
    truth = _as_labels(y_true, "y_true").ravel()
    pred = _as_labels(y_pred, "y_pred").ravel()
    _check_same_length(truth, pred, "y_true/y_pred")
    _check_range(truth, EXPR_MISSING, num_classes, "y_true")
    _check_range(pred, 0, num_classes, "y_pred")
    labelled = truth >= 0
    return truth[labelled], pred[labelled]


def expression_f1(
    y_true: object, y_pred: object, num_classes: int = NUM_EXPRESSIONS
) -> tuple[float, np.ndarray]:
    """(macro F1, per-class F1) over rows with ``y_true >= 0``, averaged over ALL classes.

    The MTL expression term and the per-video EXPR challenge score (8 classes). Truth may hold
    -1 (not annotated); predictions must be in ``0..num_classes-1``.
    """
    truth, pred = _labelled_classes(y_true, y_pred, num_classes)
    per_class = f1_per_class(truth, pred, num_classes)
    return float(per_class.mean()), per_class


def lsd_f1(y_true: object, y_pred: object) -> tuple[float, np.ndarray]:
    """LSD challenge score: (macro F1 over the 6 fixed classes, per-class F1)."""
    return expression_f1(y_true, y_pred, NUM_LSD_CLASSES)


def ce_f1(y_true: object, y_pred: object) -> tuple[float, np.ndarray]:
    """Compound-expression challenge score: (macro F1 over the 7 fixed classes, per-class F1)."""
    return expression_f1(y_true, y_pred, NUM_COMPOUND)


def _au_counts(
    au_true: object, au_pred: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per-AU (true positives, false positives, false negatives, labelled entries)."""
    truth = _as_labels(au_true, "au_true")
    pred = _as_labels(au_pred, "au_pred")
    _check_columns(truth, NUM_AUS, "au_true")
    _check_columns(pred, NUM_AUS, "au_pred")
    _check_same_length(truth, pred, "au_true/au_pred")
    _check_range(truth, AU_MISSING, 2, "au_true")
    _check_range(pred, 0, 2, "au_pred")
    # one pass: count every (truth -1/0/1, prediction 0/1, AU column) combination; int8 is
    # enough (at most 5 · 12 + 11 = 71) and moves an eighth of the memory of int64
    combination = ((truth.astype(np.int8) + 1) * 2 + pred.astype(np.int8)) * np.int8(NUM_AUS)
    combination += np.arange(NUM_AUS, dtype=np.int8)
    counts = np.bincount(combination.ravel(), minlength=3 * 2 * NUM_AUS).reshape(3, 2, NUM_AUS)
    # counts[truth + 1, pred, au]; rows with truth -1 (counts[0]) are dropped for both sides
    true_positive, false_positive, false_negative = counts[2, 1], counts[1, 1], counts[2, 0]
    return true_positive, false_positive, false_negative, counts[1:].sum(axis=(0, 1))


def au_f1(au_true: object, au_pred: object) -> tuple[float, np.ndarray]:
    """(mean F1 over the 12 AUs, per-AU F1) for (N, 12) arrays of 0/1 (truth may hold -1).

    Per column only the rows whose true value is >= 0 count; F1 is that of the positive
    class, 0 when an AU has no true and no predicted positive.
    """
    true_positive, false_positive, false_negative, _ = _au_counts(au_true, au_pred)
    per_au = _safe_ratio(2.0 * true_positive, 2 * true_positive + false_positive + false_negative)
    return float(per_au.mean()), per_au


# --- 1st/2nd editions (kept apart) ------------------------------------------------------------


def expr_score_abaw2(y_true: object, y_pred: object) -> float:
    """1st/2nd-edition EXPR score: ``0.67 · macroF1(7 classes) + 0.33 · accuracy``.

    Over rows with ``y_true >= 0``; the macro F1 divides by all 7 classes; 0 when no row is
    labelled.
    """
    truth, pred = _labelled_classes(y_true, y_pred, ABAW2_EXPR_CLASSES)
    if truth.size == 0:
        return 0.0
    macro_f1 = float(f1_per_class(truth, pred, ABAW2_EXPR_CLASSES).mean())
    accuracy = float(np.count_nonzero(truth == pred)) / truth.size
    w_f1, w_acc = ABAW2_EXPR_WEIGHTS
    return w_f1 * macro_f1 + w_acc * accuracy


def au_score_abaw2(au_true: object, au_pred: object) -> float:
    """1st/2nd-edition AU score: ``0.5 · mean F1(12 AUs) + 0.5 · accuracy``.

    The accuracy is over all labelled AU entries pooled (every (row, AU) whose truth is >= 0);
    0 when none is labelled.
    """
    true_positive, false_positive, false_negative, labelled = _au_counts(au_true, au_pred)
    total = int(labelled.sum())
    if total == 0:
        return 0.0
    per_au = _safe_ratio(2.0 * true_positive, 2 * true_positive + false_positive + false_negative)
    wrong = int(false_positive.sum() + false_negative.sum())
    accuracy = (total - wrong) / total
    w_f1, w_acc = ABAW2_AU_WEIGHTS
    return w_f1 * float(per_au.mean()) + w_acc * accuracy


# --- the MTL challenge ------------------------------------------------------------------------


@dataclass(frozen=True)
class MtlScore:
    """The 4th-ABAW MTL score and its terms.

    ``P_MTL = (ccc_valence + ccc_arousal) / 2 + f1_expression + f1_au`` (max 3).
    """

    P_MTL: float
    ccc_valence: float
    ccc_arousal: float
    f1_expression: float
    f1_au: float
    f1_expression_per_class: tuple[float, ...]  # 8 values, classes 0..7 (abaw.vocab.EXPRESSIONS)
    f1_au_per_au: tuple[float, ...]  # 12 values in abaw.vocab.AUS order

    def as_dict(self) -> dict[str, float | list[float]]:
        """JSON-ready dict with exactly the field names as keys (tuples become lists)."""
        return {
            "P_MTL": self.P_MTL,
            "ccc_valence": self.ccc_valence,
            "ccc_arousal": self.ccc_arousal,
            "f1_expression": self.f1_expression,
            "f1_au": self.f1_au,
            "f1_expression_per_class": list(self.f1_expression_per_class),
            "f1_au_per_au": list(self.f1_au_per_au),
        }


def mtl_score(
    va_true: object,
    va_pred: object,
    expr_true: object,
    expr_pred: object,
    au_true: object,
    au_pred: object,
) -> MtlScore:
    """P_MTL of aligned predictions: (N, 2) VA, (N,) expression, (N, 12) AUs, truth with sentinels.

    Each term is over the frames labelled for its task (a task with no labelled frame adds 0).
    """
    lengths = {np.shape(a)[0] if np.ndim(a) else 0 for a in (va_true, va_pred, expr_true,
                                                             expr_pred, au_true, au_pred)}
    if len(lengths) != 1:
        raise AbawError(f"mtl_score: the six arrays must have the same number of rows, got "
                        f"{sorted(lengths)}")
    ccc_valence, ccc_arousal = va_ccc(va_true, va_pred)
    f1_expression, per_class = expression_f1(expr_true, expr_pred, NUM_EXPRESSIONS)
    f1_au, per_au = au_f1(au_true, au_pred)
    return MtlScore(
        P_MTL=(ccc_valence + ccc_arousal) / 2.0 + f1_expression + f1_au,
        ccc_valence=ccc_valence,
        ccc_arousal=ccc_arousal,
        f1_expression=f1_expression,
        f1_au=f1_au,
        f1_expression_per_class=tuple(float(v) for v in per_class),
        f1_au_per_au=tuple(float(v) for v in per_au),
    )
