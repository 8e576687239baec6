"""Optimisation shared by the challenge modules: AdamW, the warm-up/cosine schedule, freezing.

Conventions:

- AdamW over :func:`abaw.models.param_groups_layer_decay` groups (biases, norms and the names
  a module adds get no weight decay; layer-wise LR decay for ViTs when ``layer_decay < 1``);
- the LR follows :func:`warmup_cosine` *per optimiser step*: linear warm-up over
  ``warmup_fraction`` of the steps, then cosine decay to ``min_lr_ratio · lr``
  (:class:`WarmupCosine`, one factor for every parameter group);
- :class:`FreezeBackbone` trains the heads alone for the first epochs, then adds the
  backbone as one more group on the same schedule.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BaseFinetuning
from torch import nn

from abaw.models import param_groups_layer_decay

__all__ = ["FreezeBackbone", "WarmupCosine", "adamw_warmup_cosine", "warmup_cosine"]


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


def adamw_warmup_cosine(
    module: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float,
    warmup_fraction: float,
    min_lr_ratio: float,
    total_steps: int,
    no_weight_decay: Iterable[str] = (),
    betas: tuple[float, float] = (0.9, 0.999),
) -> tuple[torch.optim.AdamW, WarmupCosine]:
    """AdamW over ``module``'s layer-decay parameter groups and its per-step schedule.

    ``module`` must hold exactly one :class:`abaw.models.Backbone`; ``no_weight_decay`` names
    further parameters (as in ``module.named_parameters()``) kept out of weight decay.
    ``total_steps`` is clamped to at least 1; the warm-up is ``int(warmup_fraction · total)``.
    ``betas``: AdamW's (MAE pre-training uses ``(0.9, 0.95)``).
    """
    groups = param_groups_layer_decay(module, lr, weight_decay, layer_decay,
                                      no_weight_decay=no_weight_decay)
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, betas=betas)
    total = max(1, int(total_steps))
    scheduler = WarmupCosine(optimizer, total, int(warmup_fraction * total), min_lr_ratio)
    return optimizer, scheduler


class FreezeBackbone(BaseFinetuning):
    """Train the heads only for the first ``unfreeze_at_epoch`` epochs, then the backbone too.

    The backbone (``pl_module.net.backbone``) joins the optimiser as one extra group at
    ``lr / 10`` (Lightning's default ``initial_denom_lr``) and follows the same warm-up/cosine
    schedule from then on.
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
