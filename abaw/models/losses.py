"""Task losses that cope with missing labels, and the label statistics that parametrise them.

Conventions (shared by every loss here):

- a sample contributes to a task's loss only when it is labelled for that task (VA: a
  ``mask``; expression: target ``!= EXPR_MISSING`` (-1); AU: per entry ``!= AU_MISSING``);
- the sum over labelled samples (entries, for AUs) is divided by their **count**, not by a
  sum of class weights, so class weights change the balance between samples without
  changing what "one labelled sample" is worth;
- a batch with no label for a task returns exactly ``0`` that is still connected to the
  graph (``backward()`` works, gradients are zero) — never NaN. All losses are branch-free
  (no ``.item()``), so they do not force a device sync.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from abaw.errors import AbawError
from abaw.vocab import AU_MISSING, EXPR_MISSING, NUM_EXPRESSIONS


def _zero_like_graph(t: torch.Tensor) -> torch.Tensor:
    """A scalar 0 that depends on ``t`` (so backward works and yields zero gradients)."""
    return t.sum() * 0.0


def ccc_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    eps: float = 1e-8,
) -> torch.Tensor:
    """``1 - mean(CCC_valence, CCC_arousal)`` over the rows where ``mask`` is true.

    CCC = 2·cov(p, t) / (var(p) + var(t) + (mean(p) - mean(t))²) with population statistics
    (divide by n) whose means are taken over the masked rows for the prediction *and* the
    target. Fewer than 2 labelled rows give 0 (CCC is undefined on one sample).

    Args:
        pred: ``(B, 2)`` predicted valence, arousal.
        target: ``(B, 2)`` true valence, arousal (values of unlabelled rows are ignored).
        mask: ``(B,)`` bool, true where the row is labelled; ``None`` means all rows.
        eps: added to the denominator so a constant prediction on a constant target is finite.
    """
    if pred.shape != target.shape or pred.ndim != 2:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be (B, D)")
    if mask is None:
        mask = torch.ones(pred.shape[0], dtype=torch.bool, device=pred.device)
    w = mask.to(pred.dtype).unsqueeze(1)  # (B, 1)
    # Unlabelled rows may hold sentinels (-5); zero them so they cannot leak through 0·inf.
    target = torch.where(mask.unsqueeze(1), target, torch.zeros_like(target)).to(pred.dtype)
    n = w.sum()
    denom_n = n.clamp(min=1.0)
    mean_p = (w * pred).sum(0) / denom_n
    mean_t = (w * target).sum(0) / denom_n
    dp = (pred - mean_p) * w
    dt = (target - mean_t) * w
    var_p = (dp * dp).sum(0) / denom_n
    var_t = (dt * dt).sum(0) / denom_n
    cov = (dp * dt).sum(0) / denom_n
    ccc = 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)
    loss = 1.0 - ccc.mean()
    return torch.where(n >= 2, loss, _zero_like_graph(pred))


def expression_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    class_weight: torch.Tensor | np.ndarray | None = None,
    label_smoothing: float = 0.0,
) -> torch.Tensor:
    """Class-weighted cross-entropy over the samples whose target is not ``EXPR_MISSING``.

    Args:
        logits: ``(B, C)``.
        target: ``(B,)`` class indices, ``EXPR_MISSING`` (-1) where unlabelled.
        class_weight: ``(C,)`` per-class weight (e.g. :func:`expression_class_weights`).
        label_smoothing: as in :func:`torch.nn.functional.cross_entropy`.
    """
    labelled = target != EXPR_MISSING
    safe_target = torch.where(labelled, target, torch.zeros_like(target)).long()
    if class_weight is not None:
        class_weight = torch.as_tensor(class_weight, device=logits.device, dtype=logits.dtype)
    per_sample = F.cross_entropy(
        logits, safe_target, weight=class_weight, reduction="none",
        label_smoothing=label_smoothing,
    )
    w = labelled.to(logits.dtype)
    return (per_sample * w).sum() / w.sum().clamp(min=1.0)


def au_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    pos_weight: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """Binary cross-entropy per AU over the labelled entries (target ``!= AU_MISSING``).

    ``pos_weight`` (shape ``(num_aus,)``) multiplies the loss of *positive* entries only (as
    ``BCEWithLogitsLoss(pos_weight=...)``), which is what rebalances rare AUs; a per-AU
    ``weight`` would scale positives and negatives alike and leave the imbalance untouched.
    """
    if logits.shape != target.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and target {tuple(target.shape)} differ")
    labelled = target != AU_MISSING
    safe_target = torch.where(labelled, target, torch.zeros_like(target)).to(logits.dtype)
    if pos_weight is not None:
        pos_weight = torch.as_tensor(pos_weight, device=logits.device, dtype=logits.dtype)
    per_entry = F.binary_cross_entropy_with_logits(
        logits, safe_target, pos_weight=pos_weight, reduction="none"
    )
    w = labelled.to(logits.dtype)
    return (per_entry * w).sum() / w.sum().clamp(min=1.0)


def expression_class_weights(
    expression: np.ndarray, num_classes: int = NUM_EXPRESSIONS
) -> np.ndarray:
    """Inverse-frequency class weights, normalised to mean 1 over the classes present.

    ``expression`` holds class indices with ``EXPR_MISSING`` (-1) for unlabelled rows, which
    are ignored. A class absent from the labels gets weight **0**: no sample carries it, so
    its weight never enters the loss, and giving it 0 keeps it out of the normalisation (a
    large weight would only shrink every other class's weight).

    Returns ``float32`` of shape ``(num_classes,)``.
    """
    labels = np.asarray(expression).reshape(-1)
    if labels.size and not np.all(np.equal(np.mod(labels, 1), 0)):
        raise AbawError("expression labels must be integers")
    labels = labels.astype(np.int64)
    bad = labels[(labels != EXPR_MISSING) & ((labels < 0) | (labels >= num_classes))]
    if bad.size:
        raise AbawError(f"expression labels outside 0..{num_classes - 1} and {EXPR_MISSING}: "
                        f"{sorted(set(bad.tolist()))}")
    counts = np.bincount(labels[labels != EXPR_MISSING], minlength=num_classes).astype(np.float64)
    if counts.sum() == 0:
        raise AbawError("no labelled expression rows: cannot compute class weights")
    present = counts > 0
    weights = np.zeros(num_classes, dtype=np.float64)
    weights[present] = 1.0 / counts[present]
    weights[present] /= weights[present].mean()
    return weights.astype(np.float32)


def au_pos_weight(aus: np.ndarray, clip: float = 10.0) -> np.ndarray:
    """Per-AU ``pos_weight = negatives / positives`` over the labelled rows, clipped.

    ``aus`` is ``(N, num_aus)`` with 0/1 labels and ``AU_MISSING`` (-1). The ratio is clipped
    to ``[1/clip, clip]`` so an AU that is almost never (or almost always) active cannot
    dominate (or vanish from) the loss; an AU with no positive gets ``clip``, one with no
    negative ``1/clip``, one with no labelled row 1.

    Returns ``float32`` of shape ``(num_aus,)``.
    """
    if clip < 1.0:
        raise AbawError(f"clip must be >= 1, got {clip}")
    labels = np.asarray(aus)
    if labels.ndim != 2:
        raise AbawError(f"AU labels must be (N, num_aus), got shape {labels.shape}")
    if not np.isin(labels, (0, 1, AU_MISSING)).all():
        raise AbawError(f"AU labels must be 0, 1 or {AU_MISSING}")
    pos = (labels == 1).sum(0).astype(np.float64)
    neg = (labels == 0).sum(0).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(pos > 0, neg / np.maximum(pos, 1.0), clip)
    ratio = np.where((pos == 0) & (neg == 0), 1.0, ratio)
    return np.clip(ratio, 1.0 / clip, clip).astype(np.float32)


def occlusion_loss(logits: torch.Tensor, occluded: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the faces with a known flag (``occluded`` 0/1; -1 = unknown).

    Divided by the number of known flags; none known gives an exact, graph-connected 0.
    """
    known = occluded >= 0
    target = torch.where(known, occluded, torch.zeros_like(occluded)).to(logits.dtype)
    per_face = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = known.to(logits.dtype)
    return (per_face * weight).sum() / weight.sum().clamp(min=1.0)
