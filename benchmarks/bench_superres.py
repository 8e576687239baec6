"""Benchmark of Real-ESRGAN super-resolution on this CPU: images/s for both models.

Inputs are crops of matplotlib's real photo (``grace_hopper.jpg``) at the training size
(112 px) and at a low LSD-synthetic size (56 px); every output is resized to 112 px, as
``abaw lsd superres --size 112`` does. Cases:

- model throughput (decoded images in memory, batches of 16, all torch threads): compact vs
  x4plus at each input size — the reference column is x4plus, so ``ref/ours`` is the compact
  model's speed-up. x4plus is timed once on a few images (about 2 s each on an idle 2-core
  machine). The note gives the load average: on a shared machine it explains the spread;
- the end-to-end folder run (decode, super-resolve, encode, cache, link) with one process
  using all torch threads vs a pool of one-thread processes (``--workers``), same images —
  which parallelism wins on this machine;
- a fully cached rerun of the same folder (no model call).

The weights are built into a temporary asset cache first (not timed).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from benchmarks import Measurement, time_once, time_side_by_side

TRAIN_SIZE = 112
LOW_SIZE = 56


def _crops(count: int, side: int, seed: int = 0) -> list[np.ndarray]:
    """``count`` RGB crops of the real photo, resized to ``side`` pixels."""
    from matplotlib import cbook
    from PIL import Image

    with Image.open(cbook.get_sample_data("grace_hopper.jpg")) as photo:
        photo = photo.convert("RGB")
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(count):
        x, y, s = int(rng.integers(0, 200)), int(rng.integers(0, 250)), int(rng.integers(220, 300))
        crops.append(np.asarray(photo.crop((x, y, x + s, y + s)).resize((side, side), Image.BICUBIC)))
    return crops


def _load() -> str:
    return f"load avg {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs"


def _throughput(descriptor, images: list[np.ndarray], batch: int = 16) -> None:
    from abaw.lsd.superres import superresolve

    for start in range(0, len(images), batch):
        superresolve(descriptor, images[start : start + batch], TRAIN_SIZE)


def run(quick: bool = False) -> list[Measurement]:
    import torch
    from PIL import Image

    from abaw.lsd.superres import load_upscaler, run_superres

    threads = torch.get_num_threads()
    compact_count, x4plus_count = (16, 1) if quick else (32, 2)
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        previous = os.environ.get("ABAW_CACHE_DIR")
        os.environ["ABAW_CACHE_DIR"] = str(Path(tmp) / "cache")
        try:
            compact, x4plus = load_upscaler("compact"), load_upscaler("x4plus")
            for side in (TRAIN_SIZE, LOW_SIZE):
                images = _crops(compact_count, side)
                few = images[:x4plus_count]
                _throughput(compact, images[:2])  # warm-up (allocator, kernels)
                _throughput(x4plus, [images[0][:16, :16]])
                (ours,), _ = time_side_by_side([lambda images=images: _throughput(compact, images)],
                                               repeats=1 if quick else 2)
                ref = time_once(lambda few=few: _throughput(x4plus, few))[0]  # ~2 s/image idle
                per_compact, per_x4 = ours / len(images), ref / len(few)
                results.append(Measurement(
                    f"{side}px -> {TRAIN_SIZE}px, per image ({threads} threads)", per_compact,
                    "x4plus", per_x4,
                    f"compact {1 / per_compact:.1f} img/s, x4plus {1 / per_x4:.2f} img/s ({_load()})",
                ))
            # end-to-end folder run: one process (all threads) vs one-thread worker processes
            src = Path(tmp) / "src"
            for i, image in enumerate(_crops(compact_count, TRAIN_SIZE, seed=1)):
                (src / f"d{i % 4}").mkdir(parents=True, exist_ok=True)
                Image.fromarray(image).save(src / f"d{i % 4}" / f"{i:04d}.jpg", quality=95)
            workers = max(2, threads)

            def folder(k: int, tag: str):
                return run_superres(src, Path(tmp) / f"out-{tag}", "compact", TRAIN_SIZE, 16,
                                    workers=k, cache_root=Path(tmp) / f"sr-{tag}", progress=False)

            one, pool = time_once(lambda: folder(1, "one"))[0], time_once(lambda: folder(workers, "pool"))[0]
            results.append(Measurement(
                f"folder of {compact_count} x {TRAIN_SIZE}px, compact, {workers} processes x 1 thread",
                pool, f"1 process x {threads} threads", one,
                f"pool {compact_count / pool:.1f} img/s (incl. spawning), one process "
                f"{compact_count / one:.1f} img/s ({_load()})",
            ))
            cached, report = time_once(lambda: folder(1, "one"))
            assert report.cached == compact_count and report.computed == 0
            results.append(Measurement(
                f"cached rerun of the {compact_count}-image folder", cached, note=f"{compact_count / cached:.0f} img/s",
            ))
        finally:
            if previous is None:
                os.environ.pop("ABAW_CACHE_DIR", None)
            else:
                os.environ["ABAW_CACHE_DIR"] = previous
    return results
