"""Unlabelled face crops for self-supervised pre-training (MAE), from any number of data roots.

Every image file under each root is used, whatever the layout (the MTL ``cropped_aligned``
tree and its test tree, LSD class folders, per-video folders, a flat folder): labels play no
part, so training, validation *and test* crops all count.

Conventions:

- images are found by a recursive walk (:data:`IMAGE_SUFFIXES`, case-insensitive; hidden
  files and folders skipped), sorted by path, and de-duplicated by **content**: files with
  the same bytes (the same crop copied into two roots, or a root given twice) are used once,
  the first path in root order kept;
- a fixed held-out subset (``val_images``, chosen by content hash, so it does not depend on
  the order of the roots) gives ``val/loss`` on fixed masks and the preview images;
- with ``cache: true`` (default) the images are decoded once at ``img_size`` into the
  decoded-image cache (:mod:`abaw.data.cache`, one entry over the roots' common folder) and
  batches are ``uint8`` tensors augmented on the device (:class:`BatchAugment`); otherwise
  each image is decoded when loaded;
- an image that cannot be decoded (truncated, not an image) is skipped and reported once
  (``unreadable: skip``, the toolkit's habit) or refused (``unreadable: error``); a missing
  root, a root that is a file, a root without images, or no readable image at all is an
  :class:`~abaw.errors.AbawError` naming the path.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset

from abaw.data.batch_augment import BatchAugment
from abaw.data.cache import DecodedImages, decode_resized, decode_split
from abaw.data.images import ImageProblems
from abaw.data.loaders import SplitDataModule
from abaw.data.mtl import _pixels
from abaw.data.transforms import AugmentStrength
from abaw.errors import AbawError, ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
UnreadablePolicy = Literal["skip", "error"]


def find_images(root: str | Path) -> list[Path]:
    """Every image file under ``root`` (recursive, following folder links once each, sorted,
    hidden entries skipped)."""
    root = Path(root).expanduser()
    if not root.exists():
        raise AbawError(f"{root}: pre-training data root not found")
    if not root.is_dir():
        raise AbawError(f"{root}: pre-training data root is not a folder")
    found = []
    visited: set[str] = set()  # real paths: a linked folder is read once, a link loop ends
    for folder, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in visited:
            dirs[:] = []
            continue
        visited.add(real)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(folder) / f for f in files
                  if not f.startswith(".") and Path(f).suffix.lower() in IMAGE_SUFFIXES]
    if not found:
        raise AbawError(f"{root}: no images found (searched recursively for "
                        f"{', '.join(IMAGE_SUFFIXES)})")
    return sorted(found)


def content_hash(path: Path) -> str:
    """SHA-1 (hex) of the file's bytes (identity, not security)."""
    return hashlib.sha1(path.read_bytes()).hexdigest()


def collect_images(roots: Sequence[str | Path]) -> tuple[list[Path], list[str], int]:
    """``(paths, content hashes, duplicates dropped)`` of the distinct images under ``roots``,
    in root order then path order."""
    if not roots:
        raise ConfigError("data.roots is empty: give at least one folder of face crops")
    seen: dict[str, Path] = {}
    duplicates = 0
    for root in roots:
        for path in find_images(root):
            digest = content_hash(path)
            if digest in seen:
                duplicates += 1
            else:
                seen[digest] = path
    return list(seen.values()), list(seen), duplicates


class PretrainImages(Dataset):
    """Items ``{"image": uint8 (3, S, S)}`` (``None`` when undecodable, dropped by the loader's
    collate); ``__getitems__`` reads a whole batch from the decoded cache at once."""

    def __init__(self, root: Path, images: Sequence[str], rows: np.ndarray, img_size: int,
                 decoded: DecodedImages | None = None,
                 unreadable: UnreadablePolicy = "skip") -> None:
        self.root = root
        self.images = list(images)  # relative to root, all of the module's images
        self.rows = np.asarray(rows, dtype=np.int64)  # this split's rows of ``images``
        self.img_size = img_size
        self.decoded = decoded
        self.unreadable = unreadable

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor] | None:
        row = int(self.rows[i])
        if self.decoded is not None:
            return {"image": _pixels(self.decoded, np.array([row]))[0]}
        image = decode_resized(self.root / self.images[row], self.img_size)
        if image is None:
            path = self.root / self.images[row]
            if self.unreadable == "error":
                raise AbawError(f"{path}: not a readable image (data.unreadable=skip trains "
                                "on the rest)")
            log.warning("unreadable image %s; skipped", path)
            return None
        return {"image": torch.from_numpy(image).permute(2, 0, 1).contiguous()}

    def __getitems__(self, indices: Sequence[int]) -> list[Any] | dict[str, torch.Tensor]:
        if self.decoded is None:
            return [self[i] for i in indices]
        return {"image": _pixels(self.decoded, self.rows[np.asarray(indices, dtype=np.int64)])}


class PretrainDataModule(SplitDataModule):
    """Every distinct image under ``roots`` for self-supervised pre-training.

    Args:
        roots: folders of face crops (any layout; searched recursively). ``None`` is not
            accepted here: ``abaw pretrain`` fills in the embedded synthetic data.
        img_size: model input side (linked to the model's); images are resized to it.
        batch_size: training batch per device.
        eval_batch_size: validation batch (``None`` = 2 x ``batch_size``).
        num_workers: loader processes (0: the decoded cache needs no more).
        augment: batch augmentation strength (:mod:`abaw.data.batch_augment`); MAE relies
            on masking, so light cropping and flipping are enough.
        val_images: held-out images for ``val/loss`` and the previews (at most a tenth of
            the images, at least 1).
        unreadable: ``skip`` (report once, train on the rest) or ``error`` (refuse).
        cache: decode once into the memory-mapped decoded-image cache.
        cache_dir: its folder (default ``$ABAW_DECODED_CACHE`` or ``~/.cache/abaw/decoded``).
    """

    def __init__(
        self,
        roots: list[str] | None = None,
        img_size: int = 64,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: AugmentStrength = "light",
        val_images: int = 256,
        unreadable: UnreadablePolicy = "skip",
        cache: bool = True,
        cache_dir: str | None = None,
    ) -> None:
        super().__init__()
        if img_size < 8:
            raise ConfigError(f"data.img_size must be at least 8 pixels, got {img_size}")
        if val_images < 1:
            raise ConfigError(f"data.val_images must be at least 1, got {val_images}")
        self.save_hyperparameters()
        self.roots = list(roots or [])
        self.img_size = img_size
        self.val_images = val_images
        self.unreadable = unreadable
        self.cache = cache
        self.cache_dir = cache_dir
        self.batch_augment = BatchAugment(augment)
        #: what setup found: distinct images, duplicates dropped, unreadable skipped
        self.counts: dict[str, int] = {}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        paths, hashes, duplicates = collect_images(self.roots)
        resolved = [p.resolve() for p in paths]
        base = Path(os.path.commonpath(resolved))
        if len(resolved) == 1 or base == resolved[0]:
            base = resolved[0].parent
        relative = [str(p.relative_to(base)) for p in resolved]
        decoded = (decode_split(base, relative, self.img_size, self.cache_dir, label="pretrain")
                   if self.cache else None)
        usable = np.ones(len(relative), dtype=bool)
        if decoded is not None and not decoded.ok.all():
            bad = decoded.unreadable
            if self.unreadable == "error":
                raise AbawError(f"{base / relative[bad[0]]}: not a readable image ({len(bad)} "
                                "unreadable; data.unreadable=skip trains on the rest)")
            problems = ImageProblems("pretrain", str(base),
                                     unreadable=[relative[i] for i in bad])
            problems.report(self._report_dir())
            usable[bad] = False
        rows = np.flatnonzero(usable)
        if len(rows) < 2:
            raise AbawError(f"{', '.join(map(str, self.roots))}: {len(rows)} readable image(s); "
                            "pre-training needs at least 2")
        # the held-out images: the lowest content hashes (independent of the roots' order)
        by_hash = sorted(rows, key=lambda i: hashes[i])
        n_val = max(1, min(self.val_images, len(rows) // 10))
        val = np.sort(np.asarray(by_hash[:n_val], dtype=np.int64))
        train = np.setdiff1d(rows, val)
        self.counts = {"images": len(relative), "duplicates": duplicates,
                       "unreadable": len(relative) - len(rows), "train": len(train),
                       "val": len(val)}
        log.info("pre-training images under %s: %d distinct (%d duplicates dropped, %d "
                 "unreadable), %d train, %d held out", ", ".join(map(str, self.roots)),
                 len(relative), duplicates, self.counts["unreadable"], len(train), len(val))
        for split, split_rows in (("train", train), ("val", val)):
            self.datasets[split] = PretrainImages(base, relative, split_rows, self.img_size,
                                                  decoded, self.unreadable)

    def _report_dir(self) -> Path | None:
        trainer = self.trainer
        return Path(trainer.log_dir) if trainer is not None and trainer.log_dir else None

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """``uint8`` batches → normalised floats, augmented while training."""
        if isinstance(batch, dict) and batch.get("image") is not None:
            training = self.trainer is not None and self.trainer.training
            batch["image"] = self.batch_augment(batch["image"], train=training)
        return batch

    def preview_batch(self, count: int) -> torch.Tensor:
        """The first ``count`` held-out images, normalised (the previews' fixed inputs)."""
        dataset = self.datasets["val"]
        images = []
        for i in range(len(dataset)):
            item = dataset[i]
            if item is not None:
                images.append(item["image"])
            if len(images) == count:
                break
        return self.batch_augment(torch.stack(images), train=False)
