"""torchmetrics adapter of the official MTL score (:func:`abaw.metrics.mtl_score`).

:class:`MtlMetric` only *accumulates* (predictions and targets as ``"cat"`` states, so DDP
gathers every rank's rows) and then calls the numpy scorer on the whole set — the very
function ``abaw score`` uses. Validation numbers are therefore the official ones, provided
the predictions are the ones a submission would hold, which this class makes them:

- valence/arousal clipped to [-1, 1] (the submission writer clips too) and kept in float64;
- expression = argmax of the logits (or probabilities: the argmax is the same);
- AU = 1 where the probability is >= ``au_threshold`` (0.5 by default; a per-AU vector for
  tuned thresholds, see :mod:`abaw.postprocess`).

The only remaining difference from scoring a written file is the file's 6-decimal rounding of
valence and arousal (``round_va=6`` reproduces it exactly).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from abaw.metrics import MtlScore, mtl_score
from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS


class MtlMetric(Metric):
    """P_MTL and its terms over every row seen since the last reset (official conventions).

    ``update(va_pred, expr_logits, au_prob, va_true, expr_true, au_true)``: predictions
    ``(B, 2)``, ``(B, 8)``, ``(B, 12)`` (AU *probabilities*), targets with the ``-5`` / ``-1``
    sentinels. ``compute()`` returns a dict of 0-dim tensors (``P_MTL``, ``ccc_valence``,
    ``ccc_arousal``, ``f1_expression``, ``f1_au``); :meth:`score` returns the full
    :class:`abaw.metrics.MtlScore` (with per-class / per-AU F1).
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, au_threshold: float | Sequence[float] = 0.5, round_va: int | None = None,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        threshold = torch.as_tensor(au_threshold, dtype=torch.float64)
        if threshold.ndim not in (0, 1) or (threshold.ndim == 1 and threshold.numel() != NUM_AUS):
            raise ValueError(f"au_threshold must be a number or {NUM_AUS} numbers")
        self.register_buffer("au_threshold", threshold.expand(NUM_AUS).clone(), persistent=False)
        self.round_va = round_va
        for name in ("va_pred", "va_true", "expr_pred", "expr_true", "au_pred", "au_true"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, va_pred: torch.Tensor, expr_logits: torch.Tensor, au_prob: torch.Tensor,
               va_true: torch.Tensor, expr_true: torch.Tensor, au_true: torch.Tensor) -> None:
        if expr_logits.ndim != 2 or expr_logits.shape[1] != NUM_EXPRESSIONS:
            raise ValueError(f"expr_logits must be (B, {NUM_EXPRESSIONS}), got {tuple(expr_logits.shape)}")
        va = va_pred.detach().to(torch.float64).clamp(-1.0, 1.0)
        if self.round_va is not None:
            va = torch.round(va, decimals=self.round_va)
        self.va_pred.append(va)
        self.va_true.append(va_true.detach().to(torch.float64))
        self.expr_pred.append(expr_logits.detach().argmax(dim=1).to(torch.int64))
        self.expr_true.append(expr_true.detach().to(torch.int64))
        threshold = self.au_threshold.to(au_prob.device)
        self.au_pred.append((au_prob.detach().to(torch.float64) >= threshold).to(torch.int64))
        self.au_true.append(au_true.detach().to(torch.int64))

    def score(self) -> MtlScore:
        """The official :class:`MtlScore` of the accumulated (all-rank) rows."""
        names = ("va_true", "va_pred", "expr_true", "expr_pred", "au_true", "au_pred")
        if isinstance(self.va_true, list) and not self.va_true:  # nothing seen: every term 0
            empty = {2: np.zeros((0, 2)), 1: np.zeros(0, np.int64), 12: np.zeros((0, 12), np.int64)}
            return mtl_score(empty[2], empty[2], empty[1], empty[1], empty[12], empty[12])
        arrays = [dim_zero_cat(getattr(self, name)).cpu().numpy() for name in names]
        return mtl_score(*arrays)

    def compute(self) -> dict[str, torch.Tensor]:
        result = self.score()
        return {key: torch.tensor(getattr(result, key), dtype=torch.float64)
                for key in ("P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au")}
