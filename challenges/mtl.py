"""The MTL challenge end to end: ``make mtl`` / ``python -m challenges.mtl [options]``.

The spec and its steps live in :mod:`abaw.tracks.mtl`, the pipeline in :mod:`abaw.runner`
(``abaw run mtl`` is the same command).
"""

from __future__ import annotations

import sys

from abaw.runner import main as run_challenge
from abaw.tracks.mtl import MTL


def main(argv: list[str] | None = None) -> int:
    return run_challenge(MTL, argv)


if __name__ == "__main__":
    sys.exit(main())
