"""Errors the toolkit raises on bad input: each names the file, the line and what is wrong.

The CLI catches :class:`AbawError` and prints its message (no traceback), exiting with 2.
"""

from __future__ import annotations

from pathlib import Path


class AbawError(Exception):
    """Base class of every error the toolkit reports to a user as a message."""


class FormatError(AbawError):
    """A file does not follow its official format.

    ``line`` is 1-based (line 1 is the header) or ``None`` when the problem is the file as a
    whole (missing, empty, unreadable).
    """

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        self.message = message
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class ConfigError(AbawError):
    """A configuration value or command-line argument is invalid."""


class AssetError(AbawError):
    """A pretrained-weights asset is missing, unknown or fails its checksum."""


#: the exit status of a command interrupted by Ctrl-C (128 + 2)
INTERRUPTED = 130
#: the exit status of a command stopped by SIGTERM (128 + 15, as a shell reports a killed one)
TERMINATED = 143
#: the statuses of a command stopped from outside (what stops a table of runs as a whole)
STOPPED = (INTERRUPTED, TERMINATED)


def terminated(err: BaseException) -> bool:
    """Whether ``err`` is Lightning's ``SIGTERMException``: a ``SystemExit`` raised inside
    ``trainer.fit`` on SIGTERM (a scheduler's pre-emption, ``kill``), which would otherwise
    end the process with status 0 as if the run had finished."""
    return type(err).__name__ == "SIGTERMException" and isinstance(err, SystemExit)
