"""A content-addressed cache for per-image results (super-resolved images, hand detections).

The key of a result is the sha256 of the input file's bytes plus everything that changes the
result (model name, output size, thresholds), so the same image is never processed twice —
whatever its file name — and an interrupted run resumes where it stopped. Entries are
written atomically (temporary file + rename), so a killed run leaves no half-written entry.

Layout: ``<root>/<namespace>/<key[:2]>/<key><suffix>``. The root is ``$ABAW_CACHE_DIR/lsd``
or ``~/.cache/abaw/lsd`` unless given.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from abaw.errors import AbawError
from abaw.fileio import (
    atomic_write_bytes,
    clean_stale_temporaries,
    ensure_folder,
    temporary_path,
)

CACHE_ENV = "ABAW_CACHE_DIR"


def default_root() -> Path:
    env = os.environ.get(CACHE_ENV)
    base = Path(env).expanduser() if env else Path.home() / ".cache" / "abaw"
    return base / "lsd"


def content_key(data: bytes, *settings: object) -> str:
    """sha256 over the input bytes and the settings (their ``repr``, separated)."""
    digest = hashlib.sha256(data)
    for setting in settings:
        digest.update(b"\x00" + repr(setting).encode())
    return digest.hexdigest()


class ResultCache:
    """Results of one kind (``namespace``) keyed by :func:`content_key`."""

    def __init__(self, namespace: str, root: str | Path | None = None) -> None:
        self.folder = Path(root) if root is not None else default_root()
        self.folder = self.folder / namespace

    def path(self, key: str, suffix: str = "") -> Path:
        return self.folder / key[:2] / f"{key}{suffix}"

    def get(self, key: str, suffix: str = "") -> bytes | None:
        path = self.path(key, suffix)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes, suffix: str = "") -> Path:
        return atomic_write_bytes(self.path(key, suffix), data)


def materialise(cached: Path, destination: Path) -> None:
    """Place the cached file at ``destination`` atomically: a hard link when the cache and the
    destination share a file system (no copy), else a copy. Replaces an existing file.

    Hard links share bytes with the cache: tools that rewrite a file by replacing it (as
    every abaw writer does) are safe; editing an output *in place* would alter the cache.
    """
    ensure_folder(destination.parent)
    clean_stale_temporaries(destination)
    tmp = temporary_path(destination)
    try:
        try:
            os.link(cached, tmp)
        except OSError:  # another file system (or no hard links): copy instead
            shutil.copyfile(cached, tmp)
        os.replace(tmp, destination)
        if os.path.lexists(tmp):
            # rename(2) does nothing when both names are links to one file (a destination
            # already linked to this cache entry): the temporary name must go
            os.unlink(tmp)
    except BaseException as err:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise AbawError(f"cannot write {destination}: {err.strerror or err}") from None
        raise
