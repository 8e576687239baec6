"""A temporal head over per-frame features: a small bidirectional GRU for one per-video task.

Input ``(B, T, D)`` features of consecutive frames (the frame model's backbone, computed once);
output ``{task: (B, T, K)}`` with the frame model's conventions: ``"va"`` in [-1, 1] (tanh),
``"expr"`` 8 logits, ``"au"`` 12 logits — so the MTL losses and writers apply unchanged.
"""

from __future__ import annotations

import torch
from torch import nn

from abaw.errors import ConfigError
from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS, PER_VIDEO_TASKS

OUTPUTS = {"va": 2, "expr": NUM_EXPRESSIONS, "au": NUM_AUS}


class TemporalHead(nn.Module):
    """LayerNorm → linear projection → bidirectional GRU → per-frame linear output.

    Args:
        in_features: the per-frame feature size ``D``.
        task: ``va``, ``expr`` or ``au``.
        hidden: GRU hidden size per direction.
        layers: GRU layers.
        dropout: dropout on the projected features and before the output.
    """

    def __init__(self, in_features: int, task: str, hidden: int = 128, layers: int = 1,
                 dropout: float = 0.2) -> None:
        super().__init__()
        if task not in PER_VIDEO_TASKS:
            raise ConfigError(f"task must be one of {PER_VIDEO_TASKS}, got {task!r}")
        self.task = task
        self.norm = nn.LayerNorm(in_features)
        self.project = nn.Sequential(nn.Linear(in_features, hidden), nn.GELU(), nn.Dropout(dropout))
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True, bidirectional=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, OUTPUTS[task]))

    def forward(self, features: torch.Tensor) -> dict[str, torch.Tensor]:
        if features.ndim != 3:
            raise ValueError(f"features must be (B, T, D), got {tuple(features.shape)}")
        hidden, _ = self.gru(self.project(self.norm(features)))
        out = self.out(hidden)
        return {self.task: torch.tanh(out) if self.task == "va" else out}
