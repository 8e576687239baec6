"""The per-video tracks end to end: ``make va|expr|au`` / ``python -m challenges.per_video
{va,expr,au} [options]``.

The spec lives in :mod:`abaw.tracks.per_video`, the pipeline in :mod:`abaw.runner`
(``abaw run va|expr|au`` is the same command).
"""

from __future__ import annotations

import sys

from abaw.runner import main as run_challenge
from abaw.tracks.per_video import AU, EXPR, VA

SPECS = {spec.name: spec for spec in (VA, EXPR, AU)}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in SPECS:
        print(f"usage: python -m challenges.per_video {{{','.join(SPECS)}}} [options]",
              file=sys.stderr)
        return 2
    return run_challenge(SPECS[argv[0]], argv[1:])


if __name__ == "__main__":
    sys.exit(main())
