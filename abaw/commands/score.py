"""``abaw score {mtl,lsd,va,expr,au,ce} PRED TRUTH [--json]``: the argparse shell over
:func:`abaw.scoring.score` (truth formats and row matching are described there)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abaw.scoring import TASKS, score


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("task", choices=TASKS, help="which challenge's metric")
    parser.add_argument("pred", type=Path, help="the submission file")
    parser.add_argument(
        "truth", type=Path,
        help="ground truth: MTL annotation file (mtl); image,expression file or class-folder "
             "tree (lsd); per-video annotation folder (va, expr, au); a file in the "
             "submission format (ce)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def run(args: argparse.Namespace) -> int:
    report = score(args.task, args.pred, args.truth)
    for note in report.notes:
        print(f"abaw: warning: {note}", file=sys.stderr)
    print(report.as_json() if args.json else "\n".join(report.lines))
    return 0
