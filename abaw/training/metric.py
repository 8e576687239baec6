"""torchmetrics adapters of the official scores: :class:`MtlMetric` (:func:`abaw.metrics.mtl_score`)
and :class:`LsdMetric` (:func:`abaw.metrics.lsd_f1`), both with ``cat`` states.

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
from typing import Any

import numpy as np
import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from abaw.metrics import MtlScore, f1_per_class, lsd_f1, mtl_score
from abaw.vocab import LSD_CLASSES, NUM_AUS, NUM_EXPRESSIONS, NUM_LSD_CLASSES


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


class LsdMetric(Metric):
    """Official LSD macro F1 (and companions) over every row seen since the last reset.

    ``update(expr_logits, target, occlusion_prob=None, occluded=None)``; predictions are the
    argmax class, as in a submission. ``cat`` states, so DDP gathers every rank's rows before
    :func:`abaw.metrics.lsd_f1` runs on the whole set. ``compute()`` returns a dict of 0-dim
    tensors; after it, :attr:`last_rows` holds the gathered ``(y_true, y_pred)`` arrays.
    """

    full_state_update = False
    higher_is_better = True
    is_differentiable = False

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("pred", "target", "occ_pred", "occluded"):
            self.add_state(name, default=[], dist_reduce_fx="cat")
        self.last_rows: tuple[np.ndarray, np.ndarray] | None = None

    def update(self, expr_logits: torch.Tensor, target: torch.Tensor,
               occlusion_prob: torch.Tensor | None = None,
               occluded: torch.Tensor | None = None) -> None:
        if expr_logits.ndim != 2 or expr_logits.shape[1] != NUM_LSD_CLASSES:
            raise ValueError(f"expr_logits must be (B, {NUM_LSD_CLASSES}), got {tuple(expr_logits.shape)}")
        size = expr_logits.shape[0]
        self.pred.append(expr_logits.detach().argmax(dim=1).to(torch.int64))
        self.target.append(target.detach().to(torch.int64))
        # -1 marks "no occlusion prediction" / "flag unknown" so the states keep one row a face
        if occlusion_prob is None:
            self.occ_pred.append(torch.full((size,), -1, dtype=torch.int64, device=target.device))
        else:
            self.occ_pred.append((occlusion_prob.detach() > 0.5).to(torch.int64))
        if occluded is None:
            self.occluded.append(torch.full((size,), -1, dtype=torch.int64, device=target.device))
        else:
            self.occluded.append(occluded.detach().to(torch.int64))

    def compute(self) -> dict[str, torch.Tensor]:
        if isinstance(self.pred, list) and not self.pred:
            y_true = y_pred = occ_pred = occluded = np.zeros(0, np.int64)
        else:
            y_true, y_pred, occ_pred, occluded = (
                dim_zero_cat(getattr(self, n)).cpu().numpy()
                for n in ("target", "pred", "occ_pred", "occluded")
            )
        labelled = y_true >= 0
        y_true, y_pred = y_true[labelled], y_pred[labelled]
        occ_pred, occluded = occ_pred[labelled], occluded[labelled]
        self.last_rows = (y_true, y_pred)
        macro, per_class = lsd_f1(y_true, y_pred)
        result = {"f1": macro, "acc": float((y_true == y_pred).mean()) if y_true.size else 0.0}
        for name, value in zip(LSD_CLASSES, per_class):
            result[f"f1_{name}"] = float(value)
        known = occluded >= 0
        if known.any():
            hidden = occluded == 1
            result["f1_occluded"] = lsd_f1(y_true[hidden], y_pred[hidden])[0]
            result["f1_clear"] = lsd_f1(y_true[occluded == 0], y_pred[occluded == 0])[0]
            scored = known & (occ_pred >= 0)
            if scored.any():
                result["occlusion_f1"] = float(f1_per_class(occluded[scored], occ_pred[scored], 2)[1])
                result["occlusion_acc"] = float((occluded[scored] == occ_pred[scored]).mean())
        return {k: torch.tensor(float(v), dtype=torch.float64) for k, v in result.items()}
