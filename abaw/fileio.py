"""File-writing helpers shared by every writer: atomic writes, output checks, user-file reads.

An interrupted run must never leave a partial submission or annotation file, so every writer
goes through :func:`atomic_write_text` / :func:`atomic_write_bytes`: they write a temporary
file in the destination folder, flush and fsync it, then rename it over the destination
(atomic on POSIX). Conventions:

- the result has the mode a plain ``open(path, "w")`` would give: an existing file keeps its
  permission bits, a new one gets ``0o666`` minus the umask (``mkstemp`` alone makes 0600);
- temporaries are named ``.<name>.<pid>-<random>.tmp``; a run killed mid-write leaves one
  behind, and the next write into that folder removes every such temporary of the same target
  whose process is gone (:func:`clean_stale_temporaries`);
- a destination that cannot be written (a folder, read-only, under a file, disk full) is an
  :class:`~abaw.errors.AbawError` naming the path, never a bare ``OSError``.
"""

from __future__ import annotations

import errno
import os
import re
import secrets
import stat
import threading
from collections.abc import Iterable
from pathlib import Path

from abaw.errors import AbawError

_TMP_SUFFIX = ".tmp"
#: ``.<name>.<pid>-<16 hex>.tmp``: the pid tells a live writer's temporary from a stale one
_TMP_TAIL = re.compile(r"\.([0-9]+)-[0-9a-f]{16}\.tmp")
_UMASK_LOCK = threading.Lock()


def current_umask() -> int:
    """The process umask (read by setting and restoring it, under a lock)."""
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def temporary_path(path: str | Path) -> Path:
    """A fresh temporary name beside ``path`` in this module's naming (see the docstring)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(8)}{_TMP_SUFFIX}")


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporaries of ``path`` left by writers that no longer run; returns them.

    Only names of this module's exact form are touched (``.<name>.<pid>-<16 hex>.tmp`` whose
    pid is not a running process), so a user's file is never removed.
    """
    path = Path(path)
    prefix = f".{path.name}"
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = _TMP_TAIL.fullmatch(entry.name[len(prefix):])
        if match is None or _pid_alive(int(match.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _write_error(path: Path, err: OSError) -> AbawError:
    reason = err.strerror or str(err)
    if isinstance(err, IsADirectoryError) or path.is_dir():
        reason = "is a folder; give a file name"
    elif isinstance(err, (NotADirectoryError, FileExistsError)) or err.errno == errno.ENOTDIR:
        reason = "a parent of it is a file, not a folder"
    return AbawError(f"cannot write {path}: {reason}")


def ensure_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and parents) or raise an :class:`AbawError` saying why it cannot be."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise AbawError(f"cannot write into {folder}: it is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise AbawError(f"cannot write into {folder}: a parent of it is a file, not a "
                        "folder") from None
    except OSError as err:
        raise _write_error(folder, err) from None
    return folder


def check_writable_folder(folder: str | Path) -> Path:
    """Fail early (before hours of work) when files cannot be written into ``folder``.

    The folder is created if needed; a folder that exists but is not writable, or a file in
    its place, raises :class:`AbawError`.
    """
    folder = ensure_folder(folder)
    if not os.access(folder, os.W_OK | os.X_OK):
        raise AbawError(f"cannot write into {folder}: permission denied (read-only)")
    return folder


def atomic_write_text(path: str | Path, text: str | Iterable[str]) -> Path:
    """Write ``text`` (a string or an iterable of string chunks) to ``path`` atomically, UTF-8.

    Line endings are written exactly as given (no newline translation).
    """
    if not isinstance(text, str):
        text = "".join(text)
    return atomic_write_bytes(path, text.encode("utf-8"))


def _target_mode(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~current_umask()


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically: temporary file in the same folder, fsync, rename.

    The file gets the existing file's mode, or ``0o666`` minus the umask when it is new.
    """
    path = Path(path)
    if path.is_dir():
        raise AbawError(f"cannot write {path}: is a folder; give a file name")
    ensure_folder(path.parent)
    clean_stale_temporaries(path)
    tmp = temporary_path(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), _target_mode(path))
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        if isinstance(err, OSError):
            raise _write_error(path, err) from None
        raise
    return path


def is_device(path: str | Path) -> bool:
    """True for a character or block device (``/dev/zero``, a disk) given where a file is
    read: reading it whole would never end or would exhaust memory. Pipes and files: False."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False  # the reader reports a missing or unreadable file in its own words
    return stat.S_ISCHR(mode) or stat.S_ISBLK(mode)


def describe_os_error(err: OSError) -> str:
    """``<path>: <reason>`` for an OSError about a file (ELOOP, EACCES, ENOENT...)."""
    where = err.filename if err.filename is not None else "?"
    return f"{where}: {err.strerror or err}"
