"""The LSD LightningModule: a 6-class expression classifier with an optional hand-occlusion head.

Components come in through typed ``__init__`` arguments (a backbone name and a local
checkpoint); everything a run needs to be reproduced is in ``self.hparams``.

Conventions:

- :class:`~abaw.models.lsd_net.LsdNet` = a registry backbone (:func:`abaw.models.create_backbone`) + a 6-way
  :class:`abaw.models.ExpressionHead`, and optionally an occlusion head (one logit: "a hand
  covers this face") and an *occluded-face* expression head trained only on faces flagged
  occluded (what the ``separate_head`` decision rule of :mod:`abaw.lsd.occlusion` uses);
- losses: class-weighted cross-entropy (:func:`abaw.models.expression_loss`; the weights are
  a buffer, 1 unless the datamodule balances by loss), BCE on the occlusion logit masked to
  faces with a known flag, and the occluded-face head's cross-entropy masked to occluded
  faces. A batch without such labels adds an exact 0 still connected to the graph, so DDP
  needs no ``find_unused_parameters``;
- occlusion supervision is on only when the training data carries occlusion labels
  (:attr:`abaw.data.lsd.LsdDataModule.has_occlusion_labels`); otherwise the heads exist but
  are reported untrained (one log line) and ``predict_step`` leaves their outputs out. The
  ``occlusion_trained`` buffer travels with the checkpoint;
- validation logs the official metric, ``val/f1`` (macro F1 over the 6 fixed classes, via
  :func:`abaw.metrics.lsd_f1` on every row of every rank:
  :class:`~abaw.training.metric.LsdMetric` keeps ``cat``
  states), ``val/f1_<Class>``, ``val/acc``, and when flags exist ``val/occlusion_f1`` (F1
  of the "hand" class), ``val/f1_occluded`` / ``val/f1_clear`` (expression F1 on either side);
  rank 0 saves a confusion-matrix PNG per epoch under ``<log_dir>/confusion_matrix/``;
- ``predict_step`` returns ``expr_prob`` (B, 6) softmax probabilities, ``occlusion_prob``
  (B,) and ``expr_prob_occluded`` (B, 6) when those heads are trained, and ``index``;
  :class:`~abaw.training.writer.LsdPredictionWriter` turns them into ``predictions.npz`` and the submission;
- optimiser: AdamW over :func:`abaw.models.param_groups_layer_decay` groups, per-step linear
  warm-up then cosine decay (:mod:`abaw.training.optim`, the MTL module's schedule); steps
  and hooks shared with the MTL module come from :class:`abaw.training.base.ChallengeModule`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from abaw.errors import ConfigError
from abaw.models import create_backbone, expression_loss
from abaw.models.losses import occlusion_loss
from abaw.models.lsd_net import LsdNet
from abaw.training.base import ChallengeModule
from abaw.training.metric import LsdMetric
from abaw.training.plots import save_confusion_matrix
from abaw.vocab import EXPR_MISSING, LSD_CLASSES, NUM_LSD_CLASSES

log = logging.getLogger(__name__)

__all__ = ["LsdModule"]

CONFUSION_DIR = "confusion_matrix"


# --- the module -------------------------------------------------------------------------------


class LsdModule(ChallengeModule):
    """LSD training: 6 expression classes, optional hand-occlusion heads.

    Args:
        backbone: backbone registry name (``abaw.models.list_backbones()``) or ``timm:<name>``.
        checkpoint: local backbone weights (MAE, timm or Lightning format); ``None`` = random.
        checkpoint_format: ``"auto"`` or a format name of ``abaw.models.create_backbone``.
        img_size: input side in pixels (keep equal to ``data.img_size``).
        drop_path_rate: stochastic depth of the backbone.
        head_dropout: dropout before the expression heads.
        occlusion_head: add the binary hand-occlusion head.
        occluded_expression_head: add an expression head trained on occluded faces only.
        occlusion_weight: weight of the occlusion BCE in the total loss.
        occluded_expression_weight: weight of the occluded-face head's cross-entropy.
        label_smoothing: expression cross-entropy label smoothing.
        class_weight: explicit per-class loss weights (6 numbers); default: the datamodule's
            (``data.balance: loss``) or none.
        lr: peak learning rate.
        weight_decay: AdamW weight decay (not on biases, norms, embeddings).
        layer_decay: layer-wise LR decay in (0, 1]; 1 = none.
        warmup_fraction: fraction of the optimiser steps spent warming up.
        min_lr_ratio: final LR as a fraction of ``lr``.
        freeze_backbone_epochs: train the heads only for this many epochs (0 = never frozen).
        confusion_matrix: save a validation confusion-matrix PNG per epoch (rank 0).
    """

    def __init__(
        self,
        backbone: str = "convnext_atto",
        checkpoint: str | None = None,
        checkpoint_format: str = "auto",
        img_size: int = 112,
        drop_path_rate: float = 0.0,
        head_dropout: float = 0.2,
        occlusion_head: bool = True,
        occluded_expression_head: bool = False,
        occlusion_weight: float = 0.5,
        occluded_expression_weight: float = 0.5,
        label_smoothing: float = 0.1,
        class_weight: list[float] | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        layer_decay: float = 1.0,
        warmup_fraction: float = 0.05,
        min_lr_ratio: float = 0.01,
        freeze_backbone_epochs: int = 0,
        confusion_matrix: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if class_weight is not None and len(class_weight) != NUM_LSD_CLASSES:
            raise ConfigError(f"model.class_weight needs {NUM_LSD_CLASSES} numbers, got {len(class_weight)}")
        if occluded_expression_head and not occlusion_head:
            # the occluded-face head is only usable when something says which face is occluded
            raise ConfigError("model.occluded_expression_head needs model.occlusion_head: true")
        self.net = LsdNet(
            create_backbone(backbone, img_size=img_size, checkpoint=checkpoint,
                            checkpoint_format=checkpoint_format, drop_path_rate=drop_path_rate),
            head_dropout, occlusion_head, occluded_expression_head,
        )
        weights = torch.ones(NUM_LSD_CLASSES) if class_weight is None else torch.tensor(class_weight)
        self.register_buffer("class_weight", weights.float())
        self.register_buffer("occlusion_trained", torch.tensor(False))
        self.val_metric = LsdMetric()
        self.test_metric = LsdMetric()

    # --- data-dependent set-up ---

    def setup(self, stage: str) -> None:
        if stage != "fit":
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        if self.hparams.class_weight is None and datamodule is not None:
            weights = getattr(datamodule, "loss_class_weights", lambda: None)()
            if weights is not None:
                self.class_weight.copy_(weights.to(self.class_weight))
                log.info("class-weighted loss: %s", [round(float(w), 3) for w in weights])
        if self.net.occlusion_head is None:
            return
        labelled = bool(getattr(datamodule, "has_occlusion_labels", False))
        self.occlusion_trained.fill_(labelled)
        if not labelled:
            log.warning("no occlusion labels in the training data (data.occlusion_csv): the "
                        "occlusion head(s) are not trained and predictions leave them out")

    @property
    def occlusion_active(self) -> bool:
        return self.net.occlusion_head is not None and bool(self.occlusion_trained)

    # --- loss ---

    def losses(self, out: Mapping[str, torch.Tensor],
               batch: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        hp = self.hparams
        losses = {"expr": expression_loss(out["expr"], batch["label"], self.class_weight,
                                          hp.label_smoothing)}
        if "occlusion" in out:
            occluded = batch["occluded"]
            losses["occlusion"] = occlusion_loss(out["occlusion"], occluded)
            if "expr_occluded" in out:
                # only faces flagged occluded teach this head; the rest count as unlabelled
                target = torch.where(occluded == 1, batch["label"],
                                     torch.full_like(batch["label"], EXPR_MISSING))
                losses["expr_occluded"] = expression_loss(
                    out["expr_occluded"], target, self.class_weight, hp.label_smoothing)
        return losses

    def _total(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        hp = self.hparams
        total = losses["expr"]
        if "occlusion" in losses:
            total = total + hp.occlusion_weight * losses["occlusion"]
        if "expr_occluded" in losses:
            total = total + hp.occluded_expression_weight * losses["expr_occluded"]
        return total

    def step_loss(self, out: Mapping[str, torch.Tensor], batch: Mapping[str, torch.Tensor]
                  ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        losses = self.losses(out, batch)
        logged = {f"loss_{name}": value for name, value in losses.items()
                  # an untrained head's loss is a constant 0
                  if name == "expr" or self.occlusion_active}
        return self._total(losses), logged

    # --- evaluation ---

    def update_metric(self, metric: LsdMetric, out: Mapping[str, torch.Tensor],
                      batch: Mapping[str, torch.Tensor]) -> None:
        occlusion = torch.sigmoid(out["occlusion"]) if self.occlusion_active else None
        metric.update(out["expr"], batch["label"], occlusion, batch["occluded"])

    def log_metric(self, metric: LsdMetric, prefix: str) -> None:
        values = metric.compute()  # gathers every rank's rows first: identical on all ranks
        self.log(f"{prefix}/f1", values.pop("f1").float(), prog_bar=True)
        self.log_dict({f"{prefix}/{k}": v.float() for k, v in values.items()})
        rows = metric.last_rows
        metric.reset()
        if (self.hparams.confusion_matrix and rows is not None and rows[0].size
                and self.trainer.is_global_zero and not self.trainer.sanity_checking
                and self.trainer.log_dir):
            path = Path(self.trainer.log_dir) / CONFUSION_DIR / (
                f"{prefix}_epoch{self.current_epoch:03d}.png")
            save_confusion_matrix(path, rows[0], rows[1], LSD_CLASSES,
                                  title=f"{prefix} epoch {self.current_epoch}")

    def predict_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self(images)
        result = {"expr_prob": torch.softmax(out["expr"].float(), dim=1)}
        if self.occlusion_active:
            result["occlusion_prob"] = torch.sigmoid(out["occlusion"].float())
            if "expr_occluded" in out:
                result["expr_prob_occluded"] = torch.softmax(out["expr_occluded"].float(), dim=1)
        return result


