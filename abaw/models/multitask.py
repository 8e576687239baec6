"""The multi-task network: one shared backbone, one head per enabled task.

Task names are ``MTL_TASKS`` = ``("va", "expr", "au")``; :meth:`MultiTaskNet.forward` returns
a dict with the enabled ones: ``"va"`` ``(B, 2)`` in [-1, 1], ``"expr"`` ``(B, 8)`` logits,
``"au"`` ``(B, 12)`` logits. A single-task model is a ``MultiTaskNet`` with one task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from abaw.errors import ConfigError
from abaw.models.au_graph import AUGraphHead
from abaw.models.backbones import Backbone, create_backbone
from abaw.models.heads import AULinearHead, ExpressionHead, VAHead
from abaw.vocab import MTL_TASKS, NUM_AUS, NUM_EXPRESSIONS

AU_HEADS: tuple[str, ...] = ("linear", "graph")


class MultiTaskNet(nn.Module):
    """Backbone + heads.

    Args:
        backbone: the shared feature extractor.
        tasks: enabled tasks, a non-empty subset of ``MTL_TASKS`` (order is kept).
        au_head: ``"linear"`` (:class:`AULinearHead`) or ``"graph"`` (:class:`AUGraphHead`).
        au_graph: keyword arguments of :class:`AUGraphHead` (``node_dim``, ``top_k``,
            ``num_layers``, ``dropout`` — default ``head_dropout``); unknown keys are rejected.
        head_dropout: dropout of the VA / expression / linear AU heads.
        cooccurrence: ``(12, 12)`` AU co-occurrence initialising the graph head's adjacency.
    """

    def __init__(
        self,
        backbone: Backbone,
        tasks: Sequence[str] = MTL_TASKS,
        au_head: str = "linear",
        au_graph: Mapping[str, Any] | None = None,
        head_dropout: float = 0.1,
        cooccurrence: np.ndarray | None = None,
    ) -> None:
        super().__init__()
        tasks = tuple(tasks)
        unknown = [t for t in tasks if t not in MTL_TASKS]
        if not tasks or unknown or len(set(tasks)) != len(tasks):
            raise ConfigError(f"tasks must be distinct names among {MTL_TASKS}, got {tasks}")
        if au_head not in AU_HEADS:
            raise ConfigError(f"au_head must be one of {AU_HEADS}, got {au_head!r}")
        self.backbone = backbone
        self.tasks = tasks
        self.au_head = au_head
        n = backbone.num_features
        heads: dict[str, nn.Module] = {}
        if "va" in tasks:
            heads["va"] = VAHead(n, dropout=head_dropout)
        if "expr" in tasks:
            heads["expr"] = ExpressionHead(n, NUM_EXPRESSIONS, dropout=head_dropout)
        if "au" in tasks:
            if au_head == "graph":
                graph_kwargs = {"dropout": head_dropout, **(au_graph or {})}
                allowed = {"node_dim", "top_k", "num_layers", "dropout"}
                extra = sorted(set(graph_kwargs) - allowed)
                if extra:
                    raise ConfigError(f"unknown au_graph keys {extra}; allowed {sorted(allowed)}")
                heads["au"] = AUGraphHead(n, NUM_AUS, cooccurrence=cooccurrence, **graph_kwargs)
            else:
                if au_graph:
                    raise ConfigError("au_graph options given but au_head is 'linear'")
                heads["au"] = AULinearHead(n, NUM_AUS, dropout=head_dropout)
        self.heads = nn.ModuleDict(heads)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.backbone(x)
        return {task: head(features) for task, head in self.heads.items()}


def build_model(
    backbone: str,
    *,
    img_size: int = 112,
    checkpoint: str | Path | None = None,
    checkpoint_format: str = "auto",
    drop_path_rate: float = 0.0,
    tasks: Sequence[str] = MTL_TASKS,
    au_head: str = "linear",
    au_graph: Mapping[str, Any] | None = None,
    head_dropout: float = 0.1,
    cooccurrence: np.ndarray | None = None,
    backbone_kwargs: Mapping[str, Any] | None = None,
) -> MultiTaskNet:
    """Create the named backbone (see :func:`create_backbone`) and wrap it in heads."""
    net = create_backbone(
        backbone, img_size=img_size, checkpoint=checkpoint,
        checkpoint_format=checkpoint_format, drop_path_rate=drop_path_rate,
        **dict(backbone_kwargs or {}),
    )
    return MultiTaskNet(net, tasks=tasks, au_head=au_head, au_graph=au_graph,
                        head_dropout=head_dropout, cooccurrence=cooccurrence)
