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
  (biases/norms without weight decay; layer-wise LR decay for ViTs when ``layer_decay < 1``),
  per-step linear warm-up then cosine decay to ``min_lr_ratio · lr``;
- ``predict_step`` returns ``va`` (B, 2) in [-1, 1], ``expr_prob`` (B, 8), ``au_prob`` (B, 12)
  and the dataset ``index``. A model trained on a subset of tasks predicts neutral values for
  the others (VA 0, uniform expression, AU probability 0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning, Callback
from torch import nn

from abaw.data.mtl import MTL_TASKS, MtlLabelStats
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
    param_groups_layer_decay,
)
from abaw.models import au_pos_weight as compute_au_pos_weight
from abaw.training.metric import MtlMetric
from abaw.vocab import NUM_AUS, NUM_EXPRESSIONS

METRIC_KEYS = ("P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au")


class FreezeBackbone(BaseFinetuning):
    """Train the heads only for the first ``unfreeze_at_epoch`` epochs, then the backbone too.

    The backbone joins the optimiser as one extra group at ``lr / 10`` (Lightning's default
    ``initial_denom_lr``) and follows the same warm-up/cosine schedule from then on.
    """

    INITIAL_DENOM_LR = 10.0

    def __init__(self, unfreeze_at_epoch: int) -> None:
        super().__init__()
        self.unfreeze_at_epoch = unfreeze_at_epoch

    def freeze_before_training(self, pl_module: pl.LightningModule) -> None:
        self.freeze(pl_module.net.backbone)

    def finetune_function(self, pl_module: pl.LightningModule, epoch: int,
                          optimizer: torch.optim.Optimizer) -> None:
        if epoch != self.unfreeze_at_epoch:
            return
        self.unfreeze_and_add_param_group(pl_module.net.backbone, optimizer,
                                          initial_denom_lr=self.INITIAL_DENOM_LR)
        # BaseFinetuning derives the new group's LR from group 0's *current* (scheduled) LR;
        # restate it from the base LR so the schedule is applied exactly once
        group = optimizer.param_groups[-1]
        base = optimizer.param_groups[0].get("initial_lr", group["lr"]) / self.INITIAL_DENOM_LR
        group["initial_lr"] = group["lr"] = base
        for config in pl_module.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if scheduler.optimizer is optimizer and isinstance(scheduler, WarmupCosine):
                scheduler.base_lrs.append(base)  # one base LR per group
                group["lr"] = base * scheduler.factor(scheduler.last_epoch)


def warmup_cosine(step: int, total: int, warmup: int, min_ratio: float) -> float:
    """LR multiplier: linear warm-up over ``warmup`` steps, cosine from 1 to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine(torch.optim.lr_scheduler.LRScheduler):
    """Per-step :func:`warmup_cosine` applied to every parameter group's base LR.

    One factor for all groups (unlike ``LambdaLR``'s one function per group), so a group
    added later (:class:`FreezeBackbone`) only needs its base LR appended; the state dict holds
    the step and the base LRs, so a resumed run continues the schedule.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int,
                 min_ratio: float) -> None:
        self.total_steps = total_steps
        self.warmup_steps = warmup_steps
        self.min_ratio = min_ratio
        super().__init__(optimizer)

    def factor(self, step: int) -> float:
        return warmup_cosine(step, self.total_steps, self.warmup_steps, self.min_ratio)

    def get_lr(self) -> list[float]:
        factor = self.factor(self.last_epoch)
        return [base * factor for base in self.base_lrs]

    #: schedule shape, from the current run's configuration (not restored from a checkpoint,
    #: so resuming with a larger max_steps stretches the cosine to the new end)
    _CONFIG_KEYS = ("total_steps", "warmup_steps", "min_ratio")

    def state_dict(self) -> dict[str, Any]:
        return {k: v for k, v in super().state_dict().items() if k not in self._CONFIG_KEYS}


class MtlModule(pl.LightningModule):
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

    # -- forward and losses ---------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images)

    def task_losses(self, out: Mapping[str, torch.Tensor],
                    batch: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], set[str]]:
        """Per-task losses and the set of tasks with at least one label in the batch."""
        hp = self.hparams
        losses: dict[str, torch.Tensor] = {}
        present: set[str] = set()
        if "va" in self.tasks:
            losses["va"] = ccc_loss(out["va"], batch["va"], batch["va_mask"])
            # CCC needs >= 2 labelled rows; with fewer the loss is a constant 0
            if int(batch["va_mask"].sum()) >= 2:
                present.add("va")
        if "expr" in self.tasks:
            weight = self.expr_class_weight if hp.expr_class_weights else None
            losses["expr"] = expression_loss(out["expr"], batch["expr"], weight,
                                             hp.label_smoothing)
            if bool((batch["expr"] >= 0).any()):
                present.add("expr")
        if "au" in self.tasks:
            pos_weight = self.au_pos_weight if hp.au_pos_weight else None
            losses["au"] = au_loss(out["au"], batch["au"], pos_weight)
            if bool((batch["au"] >= 0).any()):
                present.add("au")
        return losses, present

    def _total(self, losses: dict[str, torch.Tensor], present: set[str]) -> torch.Tensor:
        total = self.weighting({t: losses[t] for t in self.tasks if t in present})
        for task in self.tasks:
            if task not in present:  # exactly 0, keeps the head in the graph (DDP)
                total = total + losses[task]
        return total

    def training_step(self, batch: dict[str, torch.Tensor] | None, batch_idx: int):
        if batch is None:  # every image of the batch was unreadable
            return None
        out = self(batch["image"])
        losses, present = self.task_losses(out, batch)
        total = self._total(losses, present)
        size = batch["image"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        for task in sorted(present):
            self.log(f"train/loss_{task}", losses[task], batch_size=size)
        for task, weight in self.weighting.current_weights().items():
            self.log(f"train/weight_{task}", weight, batch_size=size)
        return total

    # -- evaluation -----------------------------------------------------------------------------
    def _full_outputs(self, out: Mapping[str, torch.Tensor], size: int) -> dict[str, torch.Tensor]:
        """VA, expression logits and AU probabilities, neutral values for untrained tasks."""
        ref = next(iter(out.values()))
        va = out["va"] if "va" in out else ref.new_zeros(size, 2)
        expr = out["expr"] if "expr" in out else ref.new_zeros(size, NUM_EXPRESSIONS)
        au_prob = torch.sigmoid(out["au"]) if "au" in out else ref.new_zeros(size, NUM_AUS)
        return {"va": va, "expr": expr, "au_prob": au_prob}

    def _evaluate(self, batch: dict[str, torch.Tensor] | None, metric: MtlMetric,
                  prefix: str) -> None:
        if batch is None:
            return
        out = self(batch["image"])
        size = batch["image"].shape[0]
        losses, present = self.task_losses(out, batch)
        self.log(f"{prefix}/loss", self._total(losses, present), batch_size=size, sync_dist=True)
        full = self._full_outputs(out, size)
        metric.update(full["va"], full["expr"], full["au_prob"], batch["va"], batch["expr"],
                      batch["au"])

    def _log_metric(self, metric: MtlMetric, prefix: str) -> None:
        values = metric.compute()  # gathers every rank's rows first
        self.log(f"{prefix}/P_MTL", values["P_MTL"].float(), prog_bar=True)
        self.log_dict({f"{prefix}/{k}": values[k].float() for k in METRIC_KEYS if k != "P_MTL"})
        metric.reset()

    def validation_step(self, batch: dict[str, torch.Tensor] | None, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric, "val")

    def on_validation_epoch_end(self) -> None:
        self._log_metric(self.val_metric, "val")

    def test_step(self, batch: dict[str, torch.Tensor] | None, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric, "test")

    def on_test_epoch_end(self) -> None:
        self._log_metric(self.test_metric, "test")

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int,
                     dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        out = self(batch["image"])
        full = self._full_outputs(out, batch["image"].shape[0])
        expr_prob = (torch.softmax(full["expr"], dim=1) if "expr" in out
                     else torch.full_like(full["expr"], 1.0 / NUM_EXPRESSIONS))
        return {"va": full["va"].clamp(-1.0, 1.0), "expr_prob": expr_prob,
                "au_prob": full["au_prob"], "index": batch["index"]}

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        groups = param_groups_layer_decay(self, hp.lr, hp.weight_decay, hp.layer_decay,
                                          no_weight_decay=self._no_decay_names())
        optimizer = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(hp.warmup_fraction * total)
        scheduler = WarmupCosine(optimizer, total, warmup, hp.min_lr_ratio)
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def _no_decay_names(self) -> set[str]:
        # the task-weighting log variances are not weights to shrink towards 0
        return {n for n, _ in self.named_parameters() if n.startswith("weighting.")}

    def configure_callbacks(self) -> list[Callback]:
        if self.hparams.freeze_backbone_epochs > 0:
            return [FreezeBackbone(self.hparams.freeze_backbone_epochs)]
        return []
