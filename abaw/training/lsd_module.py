"""The LSD LightningModule: a 6-class expression classifier with an optional hand-occlusion head.

Components come in through typed ``__init__`` arguments (a backbone name and a local
checkpoint); everything a run needs to be reproduced is in ``self.hparams``.

Conventions:

- :class:`LsdNet` = a registry backbone (:func:`abaw.models.create_backbone`) + a 6-way
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
  :func:`abaw.metrics.lsd_f1` on every row of every rank: :class:`LsdMetric` keeps ``cat``
  states), ``val/f1_<Class>``, ``val/acc``, and when flags exist ``val/occlusion_f1`` (F1
  of the "hand" class), ``val/f1_occluded`` / ``val/f1_clear`` (expression F1 on either side);
  rank 0 saves a confusion-matrix PNG per epoch under ``<log_dir>/confusion_matrix/``;
- ``predict_step`` returns ``expr_prob`` (B, 6) softmax probabilities, ``occlusion_prob``
  (B,) and ``expr_prob_occluded`` (B, 6) when those heads are trained, and ``index``;
  :class:`LsdPredictionWriter` turns them into ``predictions.npz`` and the submission;
- optimiser: AdamW over :func:`abaw.models.param_groups_layer_decay` groups, per-step linear
  warm-up then cosine decay (:mod:`abaw.training.optim`, the MTL module's schedule); steps
  and hooks shared with the MTL module come from :class:`abaw.training.base.ChallengeModule`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from abaw.data.lsd import read_occlusion_csv
from abaw.errors import AbawError, ConfigError
from abaw.fileio import atomic_write_bytes
from abaw.formats.writers import write_lsd_submission
from abaw.lsd.occlusion import OcclusionRule
from abaw.metrics import f1_per_class, lsd_f1
from abaw.models import Backbone, ExpressionHead, create_backbone, expression_loss
from abaw.training.base import ChallengeModule
from abaw.training.callbacks import OutputDirCheck
from abaw.training.plots import save_confusion_matrix
from abaw.vocab import EXPR_MISSING, LSD_CLASSES, NUM_LSD_CLASSES

log = logging.getLogger(__name__)

__all__ = ["LsdMetric", "LsdModule", "LsdNet", "LsdPredictionWriter"]

CONFUSION_DIR = "confusion_matrix"
PREDICTIONS_FILE = "predictions.npz"
SUBMISSION_FILE = "submission.txt"


# --- the network ------------------------------------------------------------------------------


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


def occlusion_loss(logits: torch.Tensor, occluded: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over the faces with a known flag (``occluded`` 0/1; -1 = unknown).

    Divided by the number of known flags; none known gives an exact, graph-connected 0.
    """
    known = occluded >= 0
    target = torch.where(known, occluded, torch.zeros_like(occluded)).to(logits.dtype)
    per_face = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    weight = known.to(logits.dtype)
    return (per_face * weight).sum() / weight.sum().clamp(min=1.0)


# --- the metric -------------------------------------------------------------------------------


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

    def predict_step(self, batch: dict[str, torch.Tensor], batch_idx: int,
                     dataloader_idx: int = 0) -> dict[str, torch.Tensor]:
        out = self(batch["image"])
        result = {"expr_prob": torch.softmax(out["expr"].float(), dim=1), "index": batch["index"]}
        if self.occlusion_active:
            result["occlusion_prob"] = torch.sigmoid(out["occlusion"].float())
            if "expr_occluded" in out:
                result["expr_prob_occluded"] = torch.softmax(out["expr_occluded"].float(), dim=1)
        return result


# --- prediction files -------------------------------------------------------------------------


class LsdPredictionWriter(OutputDirCheck, BasePredictionWriter):
    """Write ``predictions.npz`` and ``submission.txt`` after ``trainer.predict``.

    Rows are gathered from every rank (DDP), put back in dataset order by ``index``, and the
    class of each image is the argmax of the probabilities after the occlusion decision rule
    (``rule``: a JSON written by :meth:`abaw.lsd.occlusion.OcclusionRule.save`; none = the
    main head). With ``predict_split="test"`` the submission follows the test list (list
    order, repeats kept); with ``"val"`` it covers the validation images, for ``abaw score``.

    The rule's occlusion input is the model's occlusion head or, with ``occlusion_csv``, a
    hand detector's flags for the predicted images (``abaw lsd hands`` output, ``image,hand``
    with names relative to the predicted folder); an image the CSV does not name counts as
    not occluded.

    Args:
        output_dir: folder for the two files (default: the trainer's log directory).
        rule: occlusion decision-rule JSON (default: none).
        occlusion_csv: detector flags replacing the occlusion head's probabilities.
    """

    def __init__(self, output_dir: str | None = None, rule: str | None = None,
                 occlusion_csv: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.output_dir = output_dir
        self.rule = rule
        self.occlusion_csv = occlusion_csv
        #: paths written by the last prediction run
        self.written: dict[str, Path] = {}

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Any, batch_indices: Any) -> None:
        batches = predictions[0] if predictions and isinstance(predictions[0], list) else predictions
        batches = [b for b in batches if b is not None]
        if not batches:
            raise AbawError("prediction produced no rows")
        local = {k: torch.cat([b[k] for b in batches]) for k in batches[0]}
        if trainer.world_size > 1:  # DistributedSampler gives every rank the same row count
            local = {k: pl_module.all_gather(v).reshape(-1, *v.shape[1:]) for k, v in local.items()}
        if not trainer.is_global_zero:
            return
        arrays = {k: v.detach().cpu().numpy() for k, v in local.items()}
        # a padded DistributedSampler repeats some rows: keep the first of each index
        index, first = np.unique(arrays.pop("index"), return_index=True)
        arrays = {k: v[first].astype(np.float64) for k, v in arrays.items()}
        datamodule = trainer.datamodule
        all_images = datamodule.predict_images
        if len(index) != len(all_images):
            raise AbawError(f"predicted {len(index)} of {len(all_images)} images (some could "
                            "not be read); no submission written")
        images = [all_images[i] for i in index]
        if self.occlusion_csv:
            flags = read_occlusion_csv(self.occlusion_csv)
            arrays["occlusion_prob"] = np.asarray([float(flags.get(n, 0)) for n in images])
            log.info("occlusion from %s: %d of %d predicted images flagged", self.occlusion_csv,
                     int(arrays["occlusion_prob"].sum()), len(images))
        rule = OcclusionRule.load(self.rule) if self.rule else OcclusionRule()
        self.written = self.write(Path(self.output_dir or trainer.log_dir or trainer.default_root_dir),
                                  images, arrays, rule, datamodule.predict_test_list)

    @staticmethod
    def write(output_dir: Path, images: list[str], arrays: dict[str, np.ndarray],
              rule: OcclusionRule, test_list: list[str] | None) -> dict[str, Path]:
        """Write the probabilities (npz) and the submission (classes after ``rule``)."""
        probs = rule.apply(arrays["expr_prob"], arrays.get("occlusion_prob"),
                           arrays.get("expr_prob_occluded"))
        buffer = io.BytesIO()
        np.savez_compressed(buffer, images=np.asarray(images, dtype=str), final_prob=probs,
                            **arrays)
        npz = atomic_write_bytes(output_dir / PREDICTIONS_FILE, buffer.getvalue())
        classes = probs.argmax(axis=1)
        names = images
        if test_list is not None:
            position = {name: i for i, name in enumerate(images)}
            classes = classes[np.asarray([position[n] for n in test_list], dtype=np.int64)]
            names = list(test_list)
        submission = write_lsd_submission(output_dir / SUBMISSION_FILE, names, classes,
                                          test_list=test_list)
        log.info("wrote %s (%d rows, occlusion rule %r) and %s", submission, len(names),
                 rule.rule, npz)
        return {"predictions": npz, "submission": submission}
