"""File-writing helpers shared by every writer: atomic text writes.

An interrupted run must never leave a partial submission or annotation file, so every writer
goes through :func:`atomic_write_text`: it writes a temporary file in the destination folder,
flushes and fsyncs it, then renames it over the destination (atomic on POSIX).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path


def atomic_write_text(path: str | Path, text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string or an iterable of string chunks) to ``path`` atomically, UTF-8.

    Line endings are written exactly as given (no newline translation).
    """
    if not isinstance(text, str):
        text = "".join(text)
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path
