"""The LSD challenge end to end: ``make lsd`` / ``python -m challenges.lsd [options]``.

The spec and its steps live in :mod:`abaw.tracks.lsd`, the pipeline in :mod:`abaw.runner`
(``abaw run lsd`` is the same command).
"""

from __future__ import annotations

import sys

from abaw.runner import main as run_challenge
from abaw.tracks.lsd import LSD


def main(argv: list[str] | None = None) -> int:
    return run_challenge(LSD, argv)


if __name__ == "__main__":
    sys.exit(main())
