"""Argument types for the command lines: a count that makes no sense at zero or below is a
usage error (one line, exit 2) before anything runs — not an endless Lightning run
(``max_epochs -1``), an empty table or a half-made run folder."""

from __future__ import annotations

import argparse
from typing import Protocol

from abaw.errors import AbawError


class _HasBaseEpochs(Protocol):
    def base_epochs(self) -> int: ...


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def positive_int(text: str) -> int:
    """``argparse`` type: an integer ≥ 1."""
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    """``argparse`` type: an integer ≥ 0 (0 meaning "all" or "none" where the help says so)."""
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def config_epochs(parser: argparse.ArgumentParser, challenge: _HasBaseEpochs) -> int:
    """``challenge.base_epochs()`` (its recipe's ``trainer.max_epochs``) for a table command's
    ``--epochs`` default, or a one-line usage error naming the config (exit 2)."""
    try:
        return challenge.base_epochs()
    except AbawError as err:
        parser.error(f"{err}; give --epochs")
