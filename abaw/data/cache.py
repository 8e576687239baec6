"""Decoded-image cache: every image of a split decoded and resized once, reused across epochs,
runs and recipes.

Decoding a JPEG and resizing it costs far more than a small model's training step at 64 px on
a CPU, and a GPU starves on it. So a split is decoded once into one ``uint8`` array of shape
``(N, S, S, 3)`` (``S`` = the model's input side) stored as a ``.npy`` file and opened as a
memory map; the loaders then only index it, and augmentation runs on batches of tensors
(:mod:`abaw.data.batch_augment`, on the GPU when there is one).

Conventions:

- the cache key is a SHA-256 over the resolved image root, the side, the resize method and,
  per image, its relative path, size in bytes and modification time (nanoseconds): editing,
  replacing or touching an image, or changing the list, makes a new entry; an unchanged split
  is never decoded twice. Entries are ``<key>.npy`` (pixels) and ``<key>.ok.npy`` (one bool
  per image: ``False`` = missing or undecodable, see :func:`abaw.data.images.load_rgb`);
- the folder is the ``cache_dir`` argument, else ``$ABAW_DECODED_CACHE``, else
  ``~/.cache/abaw/decoded``. Both files are written to a temporary name of
  :mod:`abaw.fileio`'s naming (a killed build's leftovers are removed by the next one) and
  renamed (the ``ok`` file last, so it marks a complete entry), with the umask respected; two
  processes building the same entry each write their own temporary and the later rename
  wins with identical bytes;
- images are resized with ``cv2.INTER_AREA`` (the right filter for shrinking) straight to
  ``S x S``; an image already ``S x S`` is stored as decoded.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from abaw.data.images import load_rgb
from abaw.errors import AbawError
from abaw.fileio import clean_stale_temporaries, current_umask, temporary_path

log = logging.getLogger(__name__)

CACHE_ENV = "ABAW_DECODED_CACHE"
#: bump when the stored bytes would change for the same inputs (resize method, layout)
CACHE_VERSION = 1
RESIZE = "inter_area"


def decoded_cache_dir(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The cache folder: the argument, else ``$ABAW_DECODED_CACHE``, else ``~/.cache/abaw/decoded``."""
    if cache_dir not in (None, ""):
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "abaw" / "decoded"


def cache_key(root: str | Path, images: Sequence[str], size: int) -> str:
    """SHA-256 (hex) of the root, the side, the resize method and every image's path and stamp."""
    root = Path(root).resolve()
    digest = hashlib.sha256(f"v{CACHE_VERSION}\0{root}\0{size}\0{RESIZE}\0{len(images)}".encode())
    for relative in images:
        try:
            stat = (root / relative).stat()
            stamp = f"{stat.st_size}:{stat.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        digest.update(f"\0{relative}\0{stamp}".encode())
    return digest.hexdigest()


def decode_resized(path: Path, size: int) -> np.ndarray | None:
    """One image as ``(size, size, 3)`` RGB ``uint8``; ``None`` when it cannot be read."""
    image = load_rgb(path)
    if image is None:
        return None
    if image.shape[:2] != (size, size):
        image = cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA)
    return image


@dataclass
class DecodedImages:
    """A split's decoded images: ``pixels`` ``(N, S, S, 3)`` uint8 (memory-mapped, opened
    lazily so DataLoader workers each map the file themselves) and ``ok`` ``(N,)`` bool."""

    path: Path
    ok: np.ndarray
    size: int
    _pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = np.load(self.path, mmap_mode="r")
        return self._pixels

    def __len__(self) -> int:
        return len(self.ok)

    def __getstate__(self) -> dict:  # never pickle the mapped pixels into a worker
        return {**self.__dict__, "_pixels": None}

    @property
    def unreadable(self) -> np.ndarray:
        """Indices of the images that could not be decoded."""
        return np.flatnonzero(~self.ok)


def decode_split(root: str | Path, images: Sequence[str], size: int,
                 cache_dir: str | os.PathLike[str] | None = None,
                 label: str = "images") -> DecodedImages:
    """The cached decoded array of ``images`` (relative to ``root``) at side ``size``,
    building it on first use."""
    if size < 1:
        raise AbawError(f"image size must be a positive number of pixels, got {size}")
    root = Path(root)
    folder = decoded_cache_dir(cache_dir)
    key = cache_key(root, images, size)
    data_path, ok_path = folder / f"{key}.npy", folder / f"{key}.ok.npy"
    if data_path.is_file() and ok_path.is_file():
        ok = np.load(ok_path)
        if len(ok) == len(images):
            log.info("%s: %d decoded images from the cache %s", label, len(images), data_path)
            return DecodedImages(data_path, ok, size)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise AbawError(f"cannot create the decoded-image cache folder {folder}: "
                        f"{error.strerror or error}") from error
    start = time.perf_counter()
    for path in (data_path, ok_path):  # what a killed build of this entry left behind
        clean_stale_temporaries(path)
    data_tmp, ok_tmp = temporary_path(data_path), temporary_path(ok_path)
    try:
        pixels = np.lib.format.open_memmap(data_tmp, mode="w+", dtype=np.uint8,
                                           shape=(len(images), size, size, 3))
        ok = np.zeros(len(images), dtype=bool)
        for i, relative in enumerate(images):
            image = decode_resized(root / relative, size)
            if image is not None:
                pixels[i] = image
                ok[i] = True
        pixels.flush()
        del pixels
        with open(ok_tmp, "wb") as handle:
            np.save(handle, ok)
        mode = 0o666 & ~current_umask()  # as every file the toolkit writes
        os.chmod(data_tmp, mode)
        os.chmod(ok_tmp, mode)
        os.replace(data_tmp, data_path)
        os.replace(ok_tmp, ok_path)
    except BaseException:
        for path in (data_tmp, ok_tmp):
            path.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - start
    log.info("%s: decoded %d images at %d px in %.1f s (%.0f img/s) into %s", label,
             len(images), size, seconds, len(images) / max(seconds, 1e-9), data_path)
    return DecodedImages(data_path, ok, size)
