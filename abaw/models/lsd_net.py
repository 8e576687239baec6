"""The LSD network: a backbone, a 6-way expression head and the optional occlusion heads.

The occlusion head (one logit: "a hand covers this face") and the *occluded-face* expression
head (trained only on faces flagged occluded; what the ``separate_head`` decision rule of
:mod:`abaw.lsd.occlusion` reads) exist only when asked for.
"""

from __future__ import annotations

import torch
from torch import nn

from abaw.models.backbones import Backbone
from abaw.models.heads import ExpressionHead
from abaw.vocab import NUM_LSD_CLASSES

__all__ = ["LsdNet"]


class LsdNet(nn.Module):
    """Backbone + expression head (+ occlusion head, + occluded-face expression head).

    ``forward`` returns ``{"expr": (B, 6) logits}`` plus ``"occlusion": (B,)`` logits and
    ``"expr_occluded": (B, 6)`` logits for the heads that exist.
    """

    def __init__(self, backbone: Backbone, dropout: float = 0.2, occlusion_head: bool = True,
                 occluded_expression_head: bool = False) -> None:
        super().__init__()
        self.backbone = backbone
        features = backbone.num_features
        self.expr_head = ExpressionHead(features, NUM_LSD_CLASSES, dropout)
        self.occlusion_head = nn.Linear(features, 1) if occlusion_head else None
        self.occluded_expr_head = (
            ExpressionHead(features, NUM_LSD_CLASSES, dropout) if occluded_expression_head else None
        )

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(images)
        out = {"expr": self.expr_head(features)}
        if self.occlusion_head is not None:
            out["occlusion"] = self.occlusion_head(features).squeeze(1)
        if self.occluded_expr_head is not None:
            out["expr_occluded"] = self.occluded_expr_head(features)
        return out
