"""Task heads on top of pooled backbone features ``(B, in_features)``.

Conventions: every head returns raw per-task outputs for a batch — valence/arousal already
bounded to [-1, 1] (tanh), expression logits over the 8 ABAW classes, AU logits (sigmoid is
applied by the loss and at prediction time, never inside the head).
"""

from __future__ import annotations

import torch
from torch import nn

from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS


class VAHead(nn.Module):
    """Valence and arousal: a small MLP ending in tanh, so outputs lie in [-1, 1]."""

    def __init__(self, in_features: int, hidden: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(in_features, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 2),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.net(features))


class ExpressionHead(nn.Module):
    """Expression classification logits (8 classes by default)."""

    def __init__(
        self, in_features: int, num_classes: int = NUM_EXPRESSIONS, dropout: float = 0.1
    ) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_classes)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))


class AULinearHead(nn.Module):
    """Independent per-AU logits from one linear layer (the baseline against the AU graph)."""

    def __init__(self, in_features: int, num_aus: int = NUM_AUS, dropout: float = 0.1) -> None:
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(in_features, num_aus)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(features))
