"""What the challenge LightningModules share: the step skeleton, evaluation hooks, optimiser.

A subclass (:class:`~abaw.training.mtl_module.MtlModule`,
:class:`~abaw.training.lsd_module.LsdModule`) provides:

- ``self.net`` — the network (``forward`` runs it on ``batch["image"]``), holding exactly one
  backbone at ``net.backbone``;
- ``self.val_metric`` / ``self.test_metric`` — its torchmetrics objects;
- :meth:`ChallengeModule.step_loss` — the total loss of a batch and the extra values logged as
  ``train/<name>``; :meth:`~ChallengeModule.update_metric` and
  :meth:`~ChallengeModule.log_metric`;
- hyper-parameters ``lr``, ``weight_decay``, ``layer_decay``, ``warmup_fraction``,
  ``min_lr_ratio`` and ``freeze_backbone_epochs`` (see :mod:`abaw.training.optim`).

``predict_step`` is shared: the subclass's :meth:`~ChallengeModule.predict_outputs` (a dict
of per-image probabilities / values) averaged over the image and its test-time views
(:data:`TTA_VIEWS`, set as ``predict_tta`` by the prediction writer's ``tta``), plus the
dataset ``index``.

A ``None`` batch (every image of it unreadable, :func:`abaw.data.loaders.collate_skip_unreadable`)
is skipped by every step. ``<prefix>/loss`` is logged per evaluation step (``sync_dist``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from torchmetrics import Metric

from abaw.training.optim import FreezeBackbone, adamw_warmup_cosine

Batch = dict[str, torch.Tensor]

#: test-time views of a normalised (B, C, H, W) image batch, by name
TTA_VIEWS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "hflip": lambda images: images.flip(-1),
}


class ChallengeModule(pl.LightningModule):
    """Base class of the challenge modules (see the module docstring for the contract)."""

    #: test-time views averaged by predict_step (names of TTA_VIEWS; set by the writer)
    predict_tta: tuple[str, ...] = ()

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.net(images)

    # -- what a subclass defines ----------------------------------------------------------------
    def step_loss(self, out: Mapping[str, torch.Tensor],
                  batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The batch's total loss and ``{name: value}`` logged as ``train/<name>`` in training."""
        raise NotImplementedError

    def update_metric(self, metric: Metric, out: Mapping[str, torch.Tensor],
                      batch: Mapping[str, torch.Tensor]) -> None:
        raise NotImplementedError

    def log_metric(self, metric: Metric, prefix: str) -> None:
        """Log ``metric``'s values as ``<prefix>/<name>`` at the end of an epoch, and reset it."""
        raise NotImplementedError

    def no_weight_decay_names(self) -> set[str]:
        """Parameter names (beyond biases, norms, embeddings) kept out of weight decay."""
        return set()

    def predict_outputs(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-image outputs of a batch, each (B, ...), that may be averaged over views."""
        raise NotImplementedError

    def predict_step(self, batch: Batch | None, batch_idx: int,
                     dataloader_idx: int = 0) -> dict[str, torch.Tensor] | None:
        if batch is None:
            return None
        images = batch["image"]
        views = [self.predict_outputs(images)]
        views += [self.predict_outputs(TTA_VIEWS[name](images)) for name in self.predict_tta]
        # float32 rows whatever the precision (bf16-mixed gives bf16 outputs, which numpy
        # cannot hold); views are averaged in float32 too
        result = {key: torch.stack([view[key].float() for view in views]).mean(dim=0)
                  for key in views[0]}
        result["index"] = batch["index"]
        return result

    # -- steps ----------------------------------------------------------------------------------
    def training_step(self, batch: Batch | None, batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable
            return None
        total, logged = self.step_loss(self(batch["image"]), batch)
        size = batch["image"].shape[0]
        self.log("train/loss", total, prog_bar=True, batch_size=size)
        for name, value in logged.items():
            self.log(f"train/{name}", value, batch_size=size)
        return total

    def _evaluate(self, batch: Batch | None, metric: Metric, prefix: str) -> None:
        if batch is None:
            return
        out = self(batch["image"])
        total, _ = self.step_loss(out, batch)
        self.log(f"{prefix}/loss", total, batch_size=batch["image"].shape[0], sync_dist=True)
        self.update_metric(metric, out, batch)

    def validation_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._evaluate(batch, self.val_metric, "val")

    def on_validation_epoch_end(self) -> None:
        self.log_metric(self.val_metric, "val")

    def test_step(self, batch: Batch | None, batch_idx: int) -> None:
        self._evaluate(batch, self.test_metric, "test")

    def on_test_epoch_end(self) -> None:
        self.log_metric(self.test_metric, "test")

    # -- optimisation ---------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer, scheduler = adamw_warmup_cosine(
            self, lr=hp.lr, weight_decay=hp.weight_decay, layer_decay=hp.layer_decay,
            warmup_fraction=hp.warmup_fraction, min_lr_ratio=hp.min_lr_ratio,
            total_steps=int(self.trainer.estimated_stepping_batches),
            no_weight_decay=self.no_weight_decay_names(),
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def configure_callbacks(self) -> list[Callback]:
        if self.hparams.freeze_backbone_epochs > 0:
            return [FreezeBackbone(self.hparams.freeze_backbone_epochs)]
        return []
