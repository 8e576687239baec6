"""The MAE pre-training LightningModule: reconstruct masked patches, save the encoder.

Conventions:

- the network is :class:`abaw.models.mae.MaskedAutoencoder` (its encoder is the registry
  ViT the MTL backbone uses); ``train/loss`` is the normalised-pixel MSE on masked patches
  of randomly masked, lightly augmented images; ``val/loss`` the same on the held-out images
  with **fixed** masks (one seeded generator per validation pass), so epochs compare;
- after every training epoch, rank 0 writes into the run folder
  (``trainer.default_root_dir``):

  - ``encoder.pth`` (:data:`ENCODER_FILE`): ``{"model": state_dict}`` in the official MAE
    layout (:meth:`MaskedAutoencoder.mae_state_dict`), written atomically; the MTL backbone
    loads it with ``--model.checkpoint <run>/encoder.pth --model.checkpoint_format mae``;
  - ``previews/epoch_<NNN>.png`` (:data:`PREVIEW_DIR`): fixed held-out images in three rows,
    masked input / reconstruction (visible patches pasted back) / original;
- optimiser: AdamW with MAE's ``betas=(0.9, 0.95)`` and weight decay 0.05 (none on biases,
  norms, the class and mask tokens), per-step linear warm-up then cosine decay
  (:func:`abaw.training.optim.adamw_warmup_cosine`, the challenge modules' schedule); the
  fixed position embeddings are not trained.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytorch_lightning as pl
import torch

from abaw.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from abaw.fileio import atomic_write_bytes
from abaw.models.mae import MaskedAutoencoder
from abaw.training.optim import adamw_warmup_cosine

log = logging.getLogger(__name__)

__all__ = ["ENCODER_FILE", "PREVIEW_DIR", "MaeModule", "save_encoder"]

ENCODER_FILE = "encoder.pth"
PREVIEW_DIR = "previews"
#: seed of the masks of val/loss and the previews (the same masks every epoch)
FIXED_MASK_SEED = 0
MAE_BETAS = (0.9, 0.95)


def save_encoder(net: MaskedAutoencoder, path: str | Path) -> Path:
    """Write ``{"model": net.mae_state_dict()}`` to ``path`` atomically (official MAE format)."""
    buffer = io.BytesIO()
    torch.save({"model": {k: v.cpu() for k, v in net.mae_state_dict().items()}}, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def preview_grid(rows: list[torch.Tensor], scale: int = 1, gap: int = 2) -> np.ndarray:
    """RGB ``uint8`` grid of normalised image batches: one row per batch, one column per
    image, ``gap`` white pixels between cells, each cell upscaled ``scale`` times."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    cells = [((batch.float().cpu() * std + mean).clamp(0, 1) * 255).round().byte()
             for batch in rows]
    n, _, h, w = cells[0].shape
    h, w = h * scale, w * scale
    grid = np.full((len(cells) * (h + gap) + gap, n * (w + gap) + gap, 3), 255, np.uint8)
    for r, batch in enumerate(cells):
        for c in range(n):
            image = batch[c].permute(1, 2, 0).numpy()
            if scale > 1:
                image = cv2.resize(image, (w, h), interpolation=cv2.INTER_NEAREST)
            top, left = gap + r * (h + gap), gap + c * (w + gap)
            grid[top:top + h, left:left + w] = image
    return grid


class MaeModule(pl.LightningModule):
    """Masked-autoencoder pre-training of a registry ViT.

    Args:
        backbone: ViT name of the backbone registry (the encoder; ``vit_tiny_mae``,
            ``vit_small_mae``, ``vit_base_mae``; ``vit_test`` in tests).
        img_size: input side in pixels (linked from ``data.img_size``).
        mask_ratio: share of each image's patches hidden from the encoder.
        decoder_embed_dim: decoder width.
        decoder_depth: decoder transformer blocks.
        decoder_num_heads: decoder attention heads.
        norm_pix_loss: reconstruct per-patch normalised pixels.
        lr: peak learning rate.
        weight_decay: AdamW weight decay.
        warmup_fraction: share of all optimiser steps spent warming up.
        min_lr_ratio: the cosine schedule ends at ``lr * min_lr_ratio``.
        preview_images: images per preview PNG (0 = no previews).
    """

    def __init__(
        self,
        backbone: str = "vit_tiny_mae",
        img_size: int = 64,
        mask_ratio: float = 0.75,
        decoder_embed_dim: int = 128,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        norm_pix_loss: bool = True,
        lr: float = 1.5e-3,
        weight_decay: float = 0.05,
        warmup_fraction: float = 0.1,
        min_lr_ratio: float = 0.01,
        preview_images: int = 8,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = MaskedAutoencoder(backbone, img_size, mask_ratio, decoder_embed_dim,
                                     decoder_depth, decoder_num_heads, norm_pix_loss)
        self._val_generator: torch.Generator | None = None

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.net(images)

    def training_step(self, batch: dict[str, torch.Tensor] | None,
                      batch_idx: int) -> torch.Tensor | None:
        if batch is None:  # every image of the batch was unreadable
            return None
        loss, _, _ = self.net(batch["image"])
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["image"]))
        return loss

    def _fixed_generator(self) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(FIXED_MASK_SEED)

    def on_validation_epoch_start(self) -> None:
        self._val_generator = self._fixed_generator()

    def validation_step(self, batch: dict[str, torch.Tensor] | None, batch_idx: int) -> None:
        if batch is None:
            return
        loss, _, _ = self.net(batch["image"], generator=self._val_generator)
        self.log("val/loss", loss, prog_bar=True, batch_size=len(batch["image"]),
                 sync_dist=True)

    # -- what each epoch leaves in the run folder ------------------------------------------------
    @property
    def run_dir(self) -> Path:
        return Path(self.trainer.default_root_dir)

    def on_train_epoch_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        path = save_encoder(self.net, self.run_dir / ENCODER_FILE)
        log.info("epoch %d: encoder written to %s", self.current_epoch, path)
        if self.hparams.preview_images > 0:
            self.write_preview()

    @torch.no_grad()
    def write_preview(self) -> Path:
        """``previews/epoch_<NNN>.png`` of the current weights (see the module docstring)."""
        images = self.trainer.datamodule.preview_batch(self.hparams.preview_images)
        images = images.to(self.device)
        training = self.net.training
        self.net.eval()
        try:
            _, prediction, mask = self.net(images, generator=self._fixed_generator())
            masked, reconstruction = self.net.reconstruct(images, prediction.float(), mask)
        finally:
            self.net.train(training)
        scale = max(1, 128 // images.shape[-1])
        grid = preview_grid([masked, reconstruction, images], scale=scale)
        ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
        if not ok:  # pragma: no cover - OpenCV always encodes a uint8 RGB array
            raise RuntimeError("OpenCV could not encode the preview PNG")
        path = self.run_dir / PREVIEW_DIR / f"epoch_{self.current_epoch:03d}.png"
        return atomic_write_bytes(path, png.tobytes())

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self) -> dict[str, Any]:
        hp = self.hparams
        optimizer, scheduler = adamw_warmup_cosine(
            self, lr=hp.lr, weight_decay=hp.weight_decay, layer_decay=1.0,
            warmup_fraction=hp.warmup_fraction, min_lr_ratio=hp.min_lr_ratio,
            total_steps=int(self.trainer.estimated_stepping_batches),
            no_weight_decay={"net.mask_token"}, betas=MAE_BETAS,
        )
        return {"optimizer": optimizer,
                "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
