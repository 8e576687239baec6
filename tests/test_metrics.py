"""Tests of abaw.metrics: hand-computed values on tiny arrays, then agreement with scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest

from abaw import metrics
from abaw.errors import AbawError
from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS

# --- CCC --------------------------------------------------------------------------------------


def test_ccc_identical_series_is_one() -> None:
    assert metrics.ccc([0.1, -0.4, 0.7], [0.1, -0.4, 0.7]) == pytest.approx(1.0)


def test_ccc_penalises_a_constant_shift() -> None:
    # x = 1,2,3; y = x + 1. var_x = var_y = cov = 2/3 (population), (mean_x - mean_y)^2 = 1
    # CCC = 2·(2/3) / (2/3 + 2/3 + 1) = (4/3) / (7/3) = 4/7, although Pearson's r is 1.
    assert metrics.ccc([1, 2, 3], [2, 3, 4]) == pytest.approx(4 / 7)


def test_ccc_uses_population_variance() -> None:
    # x = 0,2; y = 0,1. Population: var_x = 1, var_y = 1/4, cov = 1/2, (1 - 1/2)^2 = 1/4
    # CCC = 1 / (1 + 1/4 + 1/4) = 2/3.  With ddof=1: var_x = 2, var_y = 1/2, cov = 1,
    # CCC = 2 / (2 + 1/2 + 1/4) = 8/11 — a different number.
    assert metrics.ccc([0, 2], [0, 1]) == pytest.approx(2 / 3)
    assert metrics.ccc([0, 2], [0, 1]) != pytest.approx(8 / 11)


def test_ccc_of_a_constant_prediction_is_zero_not_nan() -> None:
    # cov = 0 and the denominator is > 0 → 0
    assert metrics.ccc([1, 2, 3], [5, 5, 5]) == 0.0
    # both constant and equal: the denominator is 0 → defined as 0, not NaN
    assert metrics.ccc([0.3, 0.3], [0.3, 0.3]) == 0.0
    assert metrics.ccc([], []) == 0.0


def test_ccc_rejects_nan_and_mismatched_lengths() -> None:
    with pytest.raises(AbawError, match="NaN"):
        metrics.ccc([1.0, 2.0], [1.0, float("nan")])
    with pytest.raises(AbawError, match="lengths differ"):
        metrics.ccc([1.0, 2.0], [1.0])


def test_va_ccc_masks_the_prediction_with_the_truth_rows() -> None:
    # rows 1 (both -5) and 3 (only valence -5) are not labelled: their predictions (wild
    # values) must not count. Left: V true (0.5, -0.5, 0), pred equal → 1; A true (0.2, -0.2,
    # 0), pred (0, 0, 0) constant → 0.
    va_true = np.array([[0.5, 0.2], [-5, -5], [-0.5, -0.2], [-5, 0.9], [0.0, 0.0]])
    va_pred = np.array([[0.5, 0.0], [9.0, 9.0], [-0.5, 0.0], [-9.0, -9.0], [0.0, 0.0]])
    valence, arousal = metrics.va_ccc(va_true, va_pred)
    assert valence == pytest.approx(1.0)
    assert arousal == 0.0
    assert metrics.va_score(va_true, va_pred) == pytest.approx(0.5)


# --- F1 ---------------------------------------------------------------------------------------


def test_expression_f1_divides_by_all_eight_classes() -> None:
    # truth 0,0,1,1 / pred 0,0,1,0 (row 4 unlabelled, its prediction ignored)
    # class 0: TP 2, #true 2, #pred 3 → 4/5; class 1: TP 1, #true 2, #pred 1 → 2/3
    # classes 2..7 absent from truth and prediction → 0. Mean over 8 = (4/5 + 2/3) / 8 = 11/60
    # (a macro average over the two present classes would give 11/15).
    mean, per_class = metrics.expression_f1([0, 0, 1, 1, -1], [0, 0, 1, 0, 5])
    np.testing.assert_allclose(per_class, [4 / 5, 2 / 3, 0, 0, 0, 0, 0, 0])
    assert mean == pytest.approx(11 / 60)
    assert per_class.shape == (NUM_EXPRESSIONS,)


def test_expression_f1_with_no_labelled_row_is_zero() -> None:
    mean, per_class = metrics.expression_f1([-1, -1], [3, 4])
    assert mean == 0.0 and not per_class.any()


def test_expression_f1_rejects_bad_labels() -> None:
    with pytest.raises(AbawError, match="y_pred holds label 8"):
        metrics.expression_f1([0, 1], [0, 8])
    with pytest.raises(AbawError, match="non-integer"):
        metrics.expression_f1([0, 1], [0.0, 1.5])
    with pytest.raises(AbawError, match="NaN"):
        metrics.expression_f1([0, 1], [0.0, float("nan")])
    with pytest.raises(AbawError, match="lengths differ"):
        metrics.expression_f1([0, 1, 2], [0, 1])


def test_f1_per_class_absent_class_is_zero() -> None:
    # class 2 never appears: F1 0 (zero_division=0), not NaN
    np.testing.assert_allclose(metrics.f1_per_class([0, 1], [1, 1], 3), [0, 2 / 3, 0])


def test_lsd_and_ce_use_six_and_seven_classes() -> None:
    # LSD: classes 0 and 5 right, 1 wrong (pred 2): per class 1,0,0,0,0,1 → 2/6
    mean, per_class = metrics.lsd_f1([0, 5, 1], [0, 5, 2])
    assert per_class.shape == (6,) and mean == pytest.approx(2 / 6)
    mean, per_class = metrics.ce_f1([0, 6], [0, 6])
    assert per_class.shape == (7,) and mean == pytest.approx(2 / 7)
    with pytest.raises(AbawError, match="outside"):
        metrics.lsd_f1([0, 6], [0, 1])


def _au_rows(*rows: object) -> np.ndarray:
    return np.array([[v] * NUM_AUS if np.isscalar(v) else v for v in rows])


def test_au_f1_masks_each_column_separately() -> None:
    au_true = _au_rows(1, 0, 1, 0)
    au_pred = _au_rows(1, 1, 0, 0)
    # AU1: truth 1, -1, 0, 1 and pred 1, 1, 1, 0: labelled rows 0, 2, 3 → truth 1, 0, 1,
    # pred 1, 1, 0 → TP 1, FP 1, FN 1 → F1 2/4 = 1/2 (row 1's prediction is not an FP,
    # otherwise 2/5).
    au_true[:, 0] = [1, -1, 0, 1]
    au_pred[:, 0] = [1, 1, 1, 0]
    # AU2 labelled in row 1 only, true 0, pred 1 → TP 0 → F1 0
    au_true[:, 1] = [-1, 0, -1, -1]
    # the other AUs: truth 1, 0, 1, 0 vs pred 1, 1, 0, 0 → TP 1, FP 1, FN 1 → 1/2
    mean, per_au = metrics.au_f1(au_true, au_pred)
    expected = [0.5, 0.0] + [0.5] * 10
    np.testing.assert_allclose(per_au, expected)
    assert mean == pytest.approx(sum(expected) / 12)


def test_au_f1_rejects_bad_shapes_and_values() -> None:
    with pytest.raises(AbawError, match=r"shape \(N, 12\)"):
        metrics.au_f1(np.zeros((2, 11)), np.zeros((2, 11)))
    with pytest.raises(AbawError, match="au_pred holds label 2"):
        metrics.au_f1(np.zeros((1, 12)), np.full((1, 12), 2))
    with pytest.raises(AbawError, match="au_pred holds label -1"):
        metrics.au_f1(np.zeros((1, 12)), np.full((1, 12), -1))


# --- 1st/2nd editions -------------------------------------------------------------------------


def test_expr_score_abaw2() -> None:
    # labelled rows: truth 0,1,2 vs pred 0,1,1 → F1 1, 2/3, 0 (+ 4 absent classes) → 5/21
    # over 7 classes; accuracy 2/3. Score = 0.67·5/21 + 0.33·2/3.
    score = metrics.expr_score_abaw2([0, 1, 2, -1], [0, 1, 1, 3])
    assert score == pytest.approx(0.67 * 5 / 21 + 0.33 * 2 / 3)
    with pytest.raises(AbawError, match="outside"):
        metrics.expr_score_abaw2([7], [0])  # only 7 classes in the 2nd edition


def test_au_score_abaw2() -> None:
    # every AU: truth 1, 0, 1 (row 3 unlabelled), pred 1, 1, 1 → TP 2, FP 1 → F1 4/5;
    # accuracy over the 36 labelled entries: 12 wrong → 24/36. Score = 0.5·4/5 + 0.5·2/3.
    au_true = _au_rows(1, 0, 1, -1)
    au_pred = _au_rows(1, 1, 1, 1)
    assert metrics.au_score_abaw2(au_true, au_pred) == pytest.approx(0.5 * 0.8 + 0.5 * 2 / 3)


# --- P_MTL ------------------------------------------------------------------------------------


def _hand_mtl_example() -> tuple[np.ndarray, ...]:
    va_true = np.array([[0.5, 0.5], [-0.5, -0.5], [-5, -5], [0.0, 0.0]])
    va_pred = np.array([[0.5, 0.0], [-0.5, 0.0], [0.9, 0.9], [0.0, 0.0]])
    expr_true = np.array([0, 4, -1, 4])
    expr_pred = np.array([0, 4, 7, 5])
    au_true = _au_rows(1, 0, 1, -1)
    au_pred = _au_rows(1, 1, 1, 1)
    return va_true, va_pred, expr_true, expr_pred, au_true, au_pred


def test_mtl_score_hand_example() -> None:
    # VA (rows 0, 1, 3): valence predicted exactly → 1; arousal constant 0 → 0; term 1/2.
    # EXPR (rows 0, 1, 3): truth 0,4,4 vs pred 0,4,5 → class 0: 1, class 4: 2/3, class 5: 0
    # → (5/3)/8 = 5/24. AU: every AU F1 4/5 (see test_au_score_abaw2) → 4/5.
    # P_MTL = 1/2 + 5/24 + 4/5
    score = metrics.mtl_score(*_hand_mtl_example())
    assert score.ccc_valence == pytest.approx(1.0)
    assert score.ccc_arousal == 0.0
    assert score.f1_expression == pytest.approx(5 / 24)
    assert score.f1_au == pytest.approx(0.8)
    assert score.P_MTL == pytest.approx(0.5 + 5 / 24 + 0.8)
    assert score.f1_expression_per_class == pytest.approx((1, 0, 0, 0, 2 / 3, 0, 0, 0))
    assert len(score.f1_au_per_au) == 12


def test_mtl_score_as_dict_is_json_ready_with_exact_keys() -> None:
    as_dict = metrics.mtl_score(*_hand_mtl_example()).as_dict()
    assert list(as_dict) == ["P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au",
                             "f1_expression_per_class", "f1_au_per_au"]
    decoded = json.loads(json.dumps(as_dict))
    assert len(decoded["f1_expression_per_class"]) == 8 and len(decoded["f1_au_per_au"]) == 12


def test_mtl_score_rejects_misaligned_arrays() -> None:
    va_true, va_pred, expr_true, expr_pred, au_true, au_pred = _hand_mtl_example()
    with pytest.raises(AbawError, match="same number of rows"):
        metrics.mtl_score(va_true, va_pred, expr_true[:3], expr_pred[:3], au_true, au_pred)


# --- agreement with scikit-learn on random data -----------------------------------------------


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261123)


def test_expression_f1_agrees_with_sklearn(rng: np.random.Generator) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    n = 3000
    # classes 6 and 7 absent from the truth; class 7 also never predicted; -1 sentinels
    truth = rng.integers(0, 6, n)
    truth[rng.random(n) < 0.3] = -1
    pred = rng.integers(0, 7, n)
    mean, per_class = metrics.expression_f1(truth, pred)
    labelled = truth >= 0
    expected = sklearn_metrics.f1_score(truth[labelled], pred[labelled], labels=range(8),
                                        average=None, zero_division=0)
    np.testing.assert_allclose(per_class, expected, rtol=0, atol=1e-12)
    assert mean == pytest.approx(expected.mean(), abs=1e-12)
    # a constant prediction
    constant = np.full(n, 4)
    _, per_class = metrics.expression_f1(truth, constant)
    expected = sklearn_metrics.f1_score(truth[labelled], constant[labelled], labels=range(8),
                                        average=None, zero_division=0)
    np.testing.assert_allclose(per_class, expected, rtol=0, atol=1e-12)


def test_au_f1_agrees_with_sklearn(rng: np.random.Generator) -> None:
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    n = 2000
    truth = (rng.random((n, NUM_AUS)) < rng.random(NUM_AUS)).astype(int)
    truth[rng.random((n, NUM_AUS)) < 0.2] = -1  # per-entry sentinels: mixed rows
    truth[:, 3] = 0  # an AU that is never positive
    pred = (rng.random((n, NUM_AUS)) < 0.4).astype(int)
    pred[:, 3] = 0  # ... nor predicted: F1 0
    pred[:, 5] = 1  # a constant prediction
    _, per_au = metrics.au_f1(truth, pred)
    for k in range(NUM_AUS):
        labelled = truth[:, k] >= 0
        expected = sklearn_metrics.f1_score(truth[labelled, k], pred[labelled, k],
                                            zero_division=0)
        assert per_au[k] == pytest.approx(expected, abs=1e-12), f"AU column {k}"


def test_ccc_agrees_with_its_definition(rng: np.random.Generator) -> None:
    x = rng.uniform(-1, 1, 500)
    y = 0.6 * x + rng.normal(0, 0.3, 500) + 0.1
    cov = np.cov(x, y, ddof=0)[0, 1]
    expected = 2 * cov / (x.var() + y.var() + (x.mean() - y.mean()) ** 2)
    assert metrics.ccc(x, y) == pytest.approx(expected, abs=1e-12)
