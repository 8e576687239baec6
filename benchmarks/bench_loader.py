"""MTL training loader: JPEG decode + per-image albumentations vs the decoded-image cache with
batch augmentation, side by side on the same images, batch size and augmentation strength.

- **files** (``data.cache false``): ``MtlDataset`` decoding each JPEG with OpenCV and
  augmenting it with the albumentations pipeline, then ``default_collate``;
- **cached** (``data.cache true``, the default): the same dataset reading ``uint8`` rows of
  the memory-mapped decoded array (:mod:`abaw.data.cache`), collated, then one
  :class:`~abaw.data.batch_augment.BatchAugment` call per batch (what
  ``MtlDataModule.on_after_batch_transfer`` does; on a GPU it would run there).

Both loaders run in the main process (0 workers), so the figure is the cost one core pays per
image; the decode of the cache itself is timed once and reported separately (it is paid once
per split, size and file set, then reused by every epoch, run and recipe).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler

from benchmarks import Measurement, time_once, time_side_by_side
from benchmarks.bench_training import synthetic_mtl_root

STRENGTH = "medium"


def run(quick: bool = False) -> list[Measurement]:
    from abaw.data.batch_augment import BatchAugment
    from abaw.data.cache import decode_split
    from abaw.data.loaders import collate_skip_unreadable
    from abaw.data.mtl import MtlDataset, MtlLabels
    from abaw.data.transforms import train_transforms
    from abaw.formats.readers import read_mtl_annotations
    from abaw.vocab import MTL_IMAGE_DIR, MTL_TRAIN_FILE

    size, batch, batches = 112, 64, (4 if quick else 24)
    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        root = synthetic_mtl_root(scratch, "tiny" if quick else "small")
        labels = MtlLabels.from_annotations(read_mtl_annotations(root / MTL_TRAIN_FILE),
                                            ("va", "expr", "au"))
        images = [str(p) for p in labels.images]
        decode_seconds, decoded = time_once(
            lambda: decode_split(root / MTL_IMAGE_DIR, images, size, scratch / "cache"))
        files = MtlDataset(root / MTL_IMAGE_DIR, labels, train_transforms(size, STRENGTH))
        cached = MtlDataset(root / MTL_IMAGE_DIR, labels, None, decoded=decoded)
        augment = BatchAugment(STRENGTH)

        def loader(dataset: MtlDataset) -> DataLoader:
            sampler = RandomSampler(dataset, replacement=True, num_samples=batch * batches,
                                    generator=torch.Generator().manual_seed(0))
            return DataLoader(dataset, batch_size=batch, sampler=sampler,
                              collate_fn=collate_skip_unreadable)

        def from_files() -> int:
            return sum(len(b["image"]) for b in loader(files))

        def from_cache() -> int:
            return sum(len(b["image"]) for b in loader(cached))

        def from_cache_cpu_augment() -> int:
            return sum(len(augment(b["image"], train=True)) for b in loader(cached))

        (ours, augmented, reference), counts = time_side_by_side(
            [from_cache, from_cache_cpu_augment, from_files], repeats=3)
    n = batch * batches
    assert list(counts) == [n, n, n]
    files = f"JPEG decode + albumentations {STRENGTH}"
    return [
        Measurement(f"training loader: cached uint8 batches, {size} px, {n} images/round",
                    ours, files, reference,
                    f"{n / ours:,.0f} img/s vs {n / reference:,.0f} img/s (0 workers); "
                    "augmentation then runs per batch on the device"),
        Measurement(f"cached loader + BatchAugment {STRENGTH} on the CPU (no GPU)", augmented,
                    files, reference, f"{n / augmented:,.0f} img/s vs {n / reference:,.0f} img/s"),
        Measurement(f"building the cache: {len(images)} images decoded + resized once",
                    decode_seconds, note=f"{len(images) / decode_seconds:,.0f} img/s, reused "
                    "across epochs, runs and recipes"),
    ]
