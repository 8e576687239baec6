"""Masked task losses, label statistics and task weighting, on hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from abaw.errors import AbawError, ConfigError
from abaw.models.losses import (
    au_loss,
    au_pos_weight,
    ccc_loss,
    expression_class_weights,
    expression_loss,
)
from abaw.models.weighting import FixedWeighting, UncertaintyWeighting

torch.set_num_threads(1)


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# --- CCC ------------------------------------------------------------------------------------


def test_ccc_perfect_prediction_is_zero() -> None:
    target = t([[-0.5, 0.2], [0.0, -0.3], [0.5, 0.9]])
    assert ccc_loss(target.clone(), target).item() == pytest.approx(0.0, abs=1e-6)


def test_ccc_penalises_a_constant_shift() -> None:
    # population var of [-0.5, 0, 0.5] is 1/6; a shift c gives CCC = 2v / (2v + c^2)
    target = t([[-0.5, -0.5], [0.0, 0.0], [0.5, 0.5]])
    loss = ccc_loss(target + 0.5, target)
    assert loss.item() == pytest.approx(1 - 4 / 7, abs=1e-6)


def test_ccc_masking_exactly_as_by_hand() -> None:
    # rows 0-1: valence anti-correlated (CCC -1), arousal perfect (CCC 1) -> loss 1
    pred = t([[0.0, 0.1], [1.0, 0.7], [1.0, 0.4], [0.9, 0.9]])
    target = t([[1.0, 0.1], [0.0, 0.7], [1.0, 0.4], [-5.0, -5.0]])  # row 3: VA_MISSING
    two = torch.tensor([True, True, False, False])
    assert ccc_loss(pred, target, two).item() == pytest.approx(1.0, abs=1e-6)
    # + row 2: valence p=[0,1,1], t=[1,0,1]: means 2/3, var 2/9 each, cov -1/9 -> CCC -1/2
    three = torch.tensor([True, True, True, False])
    assert ccc_loss(pred, target, three).item() == pytest.approx(0.75, abs=1e-6)
    # the masked-out row's values (even the sentinel) change nothing
    assert ccc_loss(pred, target, three).item() == ccc_loss(pred[:3], target[:3]).item()


@pytest.mark.parametrize("labelled", [0, 1])
def test_ccc_fewer_than_two_rows_is_zero_with_grad(labelled: int) -> None:
    pred = torch.randn(4, 2, requires_grad=True)
    mask = torch.zeros(4, dtype=torch.bool)
    mask[:labelled] = True
    loss = ccc_loss(pred, torch.full((4, 2), -5.0), mask)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(pred.grad, torch.zeros_like(pred))


def test_ccc_constant_prediction_and_target_is_finite() -> None:
    pred = torch.zeros(3, 2, requires_grad=True)
    loss = ccc_loss(pred, torch.zeros(3, 2))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all()


# --- expression -----------------------------------------------------------------------------


def test_expression_loss_masks_and_divides_by_count() -> None:
    logits = t([[2.0, 0.0, -1.0], [0.3, 0.3, 0.3], [0.0, 1.0, 3.0]])
    target = torch.tensor([0, -1, 2])
    logp = torch.log_softmax(logits, dim=1)
    ce0, ce2 = -logp[0, 0].item(), -logp[2, 2].item()
    assert expression_loss(logits, target).item() == pytest.approx((ce0 + ce2) / 2, abs=1e-6)
    weight = t([0.5, 1.0, 2.0])
    expected = (0.5 * ce0 + 2.0 * ce2) / 2  # by the labelled count, not by 0.5 + 2.0
    assert expression_loss(logits, target, weight).item() == pytest.approx(expected, abs=1e-6)


def test_expression_loss_label_smoothing_matches_torch_on_labelled_rows() -> None:
    logits = torch.randn(5, 8)
    target = torch.tensor([1, -1, 7, 3, -1])
    keep = target != -1
    ref = F.cross_entropy(logits[keep], target[keep], label_smoothing=0.1)
    assert expression_loss(logits, target, label_smoothing=0.1).item() == pytest.approx(
        ref.item(), abs=1e-6)


def test_expression_loss_without_labels_is_zero_with_grad() -> None:
    logits = torch.randn(3, 8, requires_grad=True)
    loss = expression_loss(logits, torch.full((3,), -1), class_weight=torch.ones(8))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_expression_class_weights_by_hand() -> None:
    w = expression_class_weights(np.array([0, 0, 0, 1, -1, 2]))
    # inverse counts 1/3, 1, 1 (mean 7/9) -> 3/7, 9/7, 9/7; absent classes 0
    np.testing.assert_allclose(w, [3 / 7, 9 / 7, 9 / 7, 0, 0, 0, 0, 0], rtol=1e-6)
    assert w.dtype == np.float32
    with pytest.raises(AbawError):
        expression_class_weights(np.array([0, 8]))
    with pytest.raises(AbawError):
        expression_class_weights(np.array([-1, -1]))


# --- AU -------------------------------------------------------------------------------------


def test_au_loss_pos_weight_by_hand_and_differs_from_weight() -> None:
    logits = torch.zeros(2, 2)  # every entry's BCE is ln 2
    target = t([[1, -1], [0, 1]])
    pos_weight = t([3.0, 1.0])
    ln2 = math.log(2)
    # labelled entries: (0,0) positive x3, (1,0) negative x1, (1,1) positive x1 -> 5 ln2 / 3
    assert au_loss(logits, target, pos_weight).item() == pytest.approx(5 * ln2 / 3, abs=1e-6)
    # a per-AU `weight` would scale the negative of AU0 too: 7 ln2 / 3
    as_weight = F.binary_cross_entropy_with_logits(
        logits, target.clamp(min=0), weight=pos_weight.expand(2, 2), reduction="none")
    as_weight = (as_weight * (target != -1)).sum() / 3
    assert as_weight.item() == pytest.approx(7 * ln2 / 3, abs=1e-6)
    assert au_loss(logits, target).item() == pytest.approx(ln2, abs=1e-6)


def test_au_loss_without_labels_is_zero_with_grad() -> None:
    logits = torch.randn(2, 12, requires_grad=True)
    loss = au_loss(logits, torch.full((2, 12), -1.0), torch.ones(12))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_au_pos_weight_by_hand() -> None:
    aus = np.array([
        [1, 0, 1, -1, 1],
        [0, 0, 1, -1, 0],
        [0, 0, 1, -1, 0],
        [-1, 0, 1, -1, 0],
    ])
    aus = np.vstack([aus, np.tile([0, 0, 1, -1, 0], (30, 1))])
    # AU0: 1 pos / 32 neg -> 32 clipped to 10; AU1: no positive -> 10; AU2: no negative ->
    # 1/10; AU3: unlabelled -> 1; AU4: 1 pos / 33 neg -> clipped 10
    np.testing.assert_allclose(au_pos_weight(aus), [10, 10, 0.1, 1, 10], rtol=1e-6)
    np.testing.assert_allclose(au_pos_weight(np.array([[1], [0], [0], [-1]])), [2.0])
    with pytest.raises(AbawError):
        au_pos_weight(np.array([[2, 0]]))


# --- task weighting -------------------------------------------------------------------------


def test_uncertainty_weighting_by_hand() -> None:
    weighting = UncertaintyWeighting(["va", "expr", "au"])
    losses = {"va": t(0.5), "expr": t(3.0)}  # "au" absent from this batch: skipped
    total = weighting(losses)
    assert total.item() == pytest.approx(3.5)
    total.backward()
    # d/ds (exp(-s) L + s) = 1 - exp(-s) L at s = 0
    assert weighting.log_vars["expr"].grad.item() == pytest.approx(-2.0)
    assert weighting.log_vars["va"].grad.item() == pytest.approx(0.5)
    assert weighting.log_vars["au"].grad is None or weighting.log_vars["au"].grad.item() == 0
    with torch.no_grad():
        weighting.log_vars["va"].fill_(math.log(2.0))
    assert weighting({"va": t(0.5)}).item() == pytest.approx(0.25 + math.log(2.0))
    assert weighting.current_weights() == pytest.approx({"va": 0.5, "expr": 1.0, "au": 1.0})
    with pytest.raises(ConfigError):
        weighting({"lsd": t(1.0)})


def test_fixed_weighting() -> None:
    weighting = FixedWeighting({"va": 2.0, "expr": 1.0, "au": 0.5})
    assert weighting({"va": t(1.0), "au": t(4.0)}).item() == pytest.approx(4.0)
    assert weighting({}).item() == 0.0
    assert weighting.current_weights() == {"va": 2.0, "expr": 1.0, "au": 0.5}
    with pytest.raises(ConfigError):
        FixedWeighting({"va": -1.0})
