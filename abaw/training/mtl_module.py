"""The MTL LightningModule: a :class:`abaw.models.MultiTaskNet` trained on partially labelled rows.

Components come in through typed ``__init__`` arguments (a backbone name and checkpoint, or a
ready ``net``); everything a run needs to be reproduced is in ``self.hparams`` (the label
statistics and an injected ``net`` are not: they are data/objects, saved in the state dict).

Conventions:

- per-task losses from :mod:`abaw.models.losses` (each over its labelled rows only); a task
  with no label in a batch is left out of the task weighting (its zero loss is still added,
  so every parameter takes part in the graph and DDP needs no ``find_unused_parameters``);
- class weights (expression) and ``pos_weight`` (AUs) are buffers: computed from the training
  labels when the datamodule's statistics are linked in, restored from the checkpoint
  otherwise, so validate/test/predict never need the training file;
- validation and test report the *official* score through :class:`MtlMetric`
  (``val/P_MTL``, ``val/ccc_valence``, ``val/ccc_arousal``, ``val/f1_expression``,
  ``val/f1_au``; AUs at ``au_threshold``);
- optimiser AdamW with parameter groups from :func:`abaw.models.param_groups_layer_decay`
  (biases/norms and the task-weighting log variances without weight decay; layer-wise LR
  decay for ViTs when ``layer_decay < 1``), per-step linear warm-up then cosine decay to
  ``min_lr_ratio · lr`` (:mod:`abaw.training.optim`); steps and hooks shared with the LSD
  module come from :class:`abaw.training.base.ChallengeModule`;
- ``predict_step`` returns ``va`` (B, 2) in [-1, 1], ``expr_prob`` (B, 8), ``au_prob`` (B, 12)
  (each the mean over the test-time views, :class:`~abaw.training.base.ChallengeModule`)
  and the dataset ``index``. A model trained on a subset of tasks predicts neutral values for
  the others (VA 0, uniform expression, AU probability 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
from torch import nn

from abaw.data.mtl import MtlLabelStats
from abaw.errors import ConfigError
from abaw.models import (
    FixedWeighting,
    UncertaintyWeighting,
    au_cooccurrence,
    au_loss,
    build_model,
    ccc_loss,
    expression_class_weights,
    expression_loss,
)
from abaw.models import au_pos_weight as compute_au_pos_weight
from abaw.training.base import ChallengeModule
from abaw.training.metric import MtlMetric
from abaw.vocab import MTL_TASKS, NUM_AUS, NUM_EXPRESSIONS

METRIC_KEYS = ("P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au")


def mtl_task_losses(
    out: Mapping[str, torch.Tensor],
    batch: Mapping[str, torch.Tensor],
    tasks: Sequence[str],
    *,
    expr_class_weight: torch.Tensor | None,
    au_pos_weight: torch.Tensor | None,
    label_smoothing: float,
) -> tuple[dict[str, torch.Tensor], set[str]]:
    """Per-task losses of ``tasks`` and the set of tasks with at least one label in the batch.

    Each loss covers its labelled rows only (:mod:`abaw.models.losses`); a task without a
    label in the batch still gets its (exactly 0, graph-connected) loss.
    """
    losses: dict[str, torch.Tensor] = {}
    present: set[str] = set()
    if "va" in tasks:
        losses["va"] = ccc_loss(out["va"], batch["va"], batch["va_mask"])
        # CCC needs >= 2 labelled rows; with fewer the loss is a constant 0
        if int(batch["va_mask"].sum()) >= 2:
            present.add("va")
    if "expr" in tasks:
        losses["expr"] = expression_loss(out["expr"], batch["expr"], expr_class_weight,
                                         label_smoothing)
        if bool((batch["expr"] >= 0).any()):
            present.add("expr")
    if "au" in tasks:
        losses["au"] = au_loss(out["au"], batch["au"], au_pos_weight)
        if bool((batch["au"] >= 0).any()):
            present.add("au")
    return losses, present


def weighted_total(weighting: nn.Module, tasks: Sequence[str], losses: dict[str, torch.Tensor],
                   present: set[str]) -> torch.Tensor:
    """The task weighting over the present tasks, plus the absent tasks' exact-0 losses.

    Adding the zeros keeps every head in the graph, so DDP needs no ``find_unused_parameters``.
    """
    total = weighting({t: losses[t] for t in tasks if t in present})
    for task in tasks:
        if task not in present:
            total = total + losses[task]
    return total


def weighting_parameter_names(module: nn.Module) -> set[str]:
    """Names of the task-weighting parameters (log variances: not weights to shrink to 0)."""
    return {n for n, _ in module.named_parameters() if n.startswith("weighting.")}


class MtlModule(ChallengeModule):
    """Multi-task (VA, expression, AU) training on s-Aff-Wild2-style data.

    Args:
        backbone: backbone registry name (``abaw.models.list_backbones()``) or ``timm:<name>``.
        checkpoint: local backbone weights (MAE, timm or Lightning format); ``None`` = random.
        checkpoint_format: ``"auto"`` or a format name of ``abaw.models.create_backbone``.
        img_size: input side in pixels (linked from ``data.img_size`` by the CLI).
        tasks: tasks trained (linked from ``data.tasks``).
        au_head: ``"linear"`` (independent logits) or ``"graph"`` (AU-relation graph head).
        au_graph: options of the graph head (``node_dim``, ``top_k``, ``num_layers``,
            ``dropout``; see :class:`abaw.models.AUGraphHead`).
        head_dropout: dropout before each head.
        drop_path_rate: stochastic depth of the backbone.
        expr_class_weights: weight expression classes by inverse training frequency.
        au_pos_weight: BCE ``pos_weight = negatives / positives`` per AU.
        label_smoothing: expression cross-entropy label smoothing.
        weighting: ``"uncertainty"`` (learned, Kendall et al.) or ``"fixed"``.
        task_weights: fixed weights per task (``weighting="fixed"``; default 1 each).
        lr: peak learning rate (heads; the backbone's top layer with layer decay).
        weight_decay: AdamW weight decay (not on biases, norms, embeddings).
        layer_decay: layer-wise LR decay factor in (0, 1]; 1 = none.
        warmup_fraction: fraction of the total optimiser steps spent warming up.
        min_lr_ratio: final LR as a fraction of ``lr``.
        freeze_backbone_epochs: train only the heads for this many epochs (0 = never frozen).
        au_threshold: AU decision threshold used by the validation/test metric.
        label_stats: training-label statistics (linked from the datamodule by the CLI).
        net: a ready network; when given, ``backbone``/``checkpoint``/``au_head``/... are unused.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        checkpoint: str | None = None,
        checkpoint_format: str = "auto",
        img_size: int = 112,
        tasks: Sequence[str] = MTL_TASKS,
        au_head: Literal["linear", "graph"] = "linear",
        au_graph: dict[str, Any] | None = None,
        head_dropout: float = 0.1,
        drop_path_rate: float = 0.0,
        expr_class_weights: bool = True,
        au_pos_weight: bool = True,
        label_smoothing: float = 0.0,
        weighting: Literal["uncertainty", "fixed"] = "uncertainty",
        task_weights: dict[str, float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float = 1.0,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        freeze_backbone_epochs: int = 0,
        au_threshold: float = 0.5,
        label_stats: MtlLabelStats | None = None,
        net: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["label_stats", "net"])
        self.tasks = tuple(tasks)
        if not self.tasks or set(self.tasks) - set(MTL_TASKS):
            raise ConfigError(f"model.tasks must be among {MTL_TASKS}, got {list(tasks)}")
        cooccurrence = None
        if label_stats is not None and au_head == "graph" and "au" in self.tasks:
            cooccurrence = au_cooccurrence(label_stats.aus)
        if net is None:
            net = build_model(
                backbone, img_size=img_size, checkpoint=checkpoint,
                checkpoint_format=checkpoint_format, drop_path_rate=drop_path_rate,
                tasks=self.tasks, au_head=au_head, au_graph=au_graph,
                head_dropout=head_dropout, cooccurrence=cooccurrence,
            )
        self.net = net
        if weighting == "uncertainty":
            self.weighting: nn.Module = UncertaintyWeighting(self.tasks)
        elif weighting == "fixed":
            weights = dict(task_weights or {t: 1.0 for t in self.tasks})
            missing = set(self.tasks) - set(weights)
            if missing:
                raise ConfigError(f"model.task_weights lacks tasks {sorted(missing)}")
            self.weighting = FixedWeighting({t: weights[t] for t in self.tasks})
        else:
            raise ConfigError(f"model.weighting must be 'uncertainty' or 'fixed', got {weighting!r}")
        # Buffers: restored from a checkpoint when no statistics are linked in.
        self.register_buffer("expr_class_weight", torch.ones(NUM_EXPRESSIONS))
        self.register_buffer("au_pos_weight", torch.ones(NUM_AUS))
        if label_stats is not None:
            if expr_class_weights and "expr" in self.tasks:
                self.expr_class_weight.copy_(
                    torch.from_numpy(expression_class_weights(label_stats.expression)))
            if au_pos_weight and "au" in self.tasks:
                self.au_pos_weight.copy_(torch.from_numpy(compute_au_pos_weight(label_stats.aus)))
        self.val_metric = MtlMetric(au_threshold)
        self.test_metric = MtlMetric(au_threshold)

    # -- losses -------------------------------------------------------------------------------
    def task_losses(self, out: Mapping[str, torch.Tensor],
                    batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
        """Per-task losses and the set of tasks with at least one label in the batch."""
        hp = self.hparams
        return mtl_task_losses(
            out, batch, self.tasks,
            expr_class_weight=self.expr_class_weight if hp.expr_class_weights else None,
            au_pos_weight=self.au_pos_weight if hp.au_pos_weight else None,
            label_smoothing=hp.label_smoothing,
        )

    def _total(self, losses: dict[str, torch.Tensor], present: set[str]) -> torch.Tensor:
        return weighted_total(self.weighting, self.tasks, losses, present)

    def step_loss(self, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses, present = self.task_losses(out, batch)
        logged = {f"loss_{task}": losses[task] for task in sorted(present)}
        logged.update({f"weight_{task}": weight
                       for task, weight in self.weighting.current_weights().items()})
        return self._total(losses, present), logged

    # -- evaluation -----------------------------------------------------------------------------
    def _full_outputs(self, out: Mapping[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        """VA, expression logits and AU probabilities, neutral values for untrained tasks."""
        ref = next(iter(out.values()))
        va = out["va"] if "va" in out else ref.new_zeros(size, 2)
        expr = out["expr"] if "expr" in out else ref.new_zeros(size, NUM_EXPRESSIONS)
        au_prob = torch.sigmoid(out["au"]) if "au" in out else ref.new_zeros(size, NUM_AUS)
        return {"va": va, "expr": expr, "au_prob": au_prob}

    def update_metric(self, metric: MtlMetric, out: Mapping[str, torch.Tensor],
                      batch: Mapping[str, torch.Tensor]) -> None:
        full = self._full_outputs(out, batch["image"].shape[0])
        metric.update(full["va"], full["expr"], full["au_prob"], batch["va"], batch["expr"],
                      batch["au"])

    def log_metric(self, metric: MtlMetric, prefix: str) -> None:
        values = metric.compute()  # gathers every rank's rows first
        self.log(f"{prefix}/P_MTL", values["P_MTL"].float(), prog_bar=True)
        self.log_dict({f"{prefix}/{k}": values[k].float() for k in METRIC_KEYS if k != "P_MTL"})
        metric.reset()

    def predict_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self(images)
        full = self._full_outputs(out, images.shape[0])
        expr_prob = (torch.softmax(full["expr"], dim=1) if "expr" in out
                     else torch.full_like(full["expr"], 1.0 / NUM_EXPRESSIONS))
        return {"va": full["va"].clamp(-1.0, 1.0), "expr_prob": expr_prob,
                "au_prob": full["au_prob"]}

    # -- optimisation ---------------------------------------------------------------------------
    def no_weight_decay_names(self) -> set[str]:
        return weighting_parameter_names(self)
