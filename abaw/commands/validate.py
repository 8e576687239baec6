"""``abaw validate {mtl,lsd,va,expr,au,ce} SUBMISSION (--test-list LIST | --sample FILE)``.

Checks a submission file before it is uploaded (see :mod:`abaw.formats.submissions`). MTL and
LSD submissions are matched against their test list, the per-video tasks against their sample
file. Exit status: 0 accepted, 1 problems found (each printed as ``path:line: message``),
2 usage error or an unreadable test list / sample file.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from abaw.errors import ConfigError
from abaw.formats.submissions import KINDS, Problem, count_rows, validate_submission

#: problems printed before the rest are summarised as a count
MAX_SHOWN = 50
_LIST_KINDS = ("mtl", "lsd")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=KINDS, help="submission format")
    parser.add_argument("submission", type=Path, help="the submission file to check")
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--test-list", type=Path, metavar="LIST",
                       help="the official test list (mtl, lsd)")
    group.add_argument("--sample", type=Path, metavar="FILE",
                       help="the official sample file (va, expr, au, ce)")


def _format(path: Path, problem: Problem) -> str:
    where = f"{path}:{problem.line}" if problem.line is not None else str(path)
    return f"{where}: {problem.message}"


def run(args: argparse.Namespace) -> int:
    kind: str = args.kind
    if kind in _LIST_KINDS:
        if args.sample is not None or args.test_list is None:
            raise ConfigError(f"abaw validate {kind} needs --test-list LIST (not --sample)")
        reference = args.test_list
    else:
        if args.test_list is not None or args.sample is None:
            raise ConfigError(f"abaw validate {kind} needs --sample FILE (not --test-list)")
        reference = args.sample
    # read the reference first: a broken test list is a usage error, not a submission problem
    from abaw.formats import readers

    if kind == "mtl":
        expected = readers.read_mtl_test_list(reference)
    elif kind == "lsd":
        expected = readers.read_lsd_test_list(reference)
    else:
        expected = readers.read_sample_file(reference, kind)
    if kind in _LIST_KINDS:
        problems = validate_submission(kind, args.submission, test_list=expected)
    else:
        problems = validate_submission(kind, args.submission, sample=expected)
    if not problems:
        rows = count_rows(kind, args.submission)
        print(f"OK: {args.submission} ({rows} rows) would be accepted")
        return 0
    for problem in problems[:MAX_SHOWN]:
        print(_format(args.submission, problem))
    if len(problems) > MAX_SHOWN:
        print(f"... and {len(problems) - MAX_SHOWN} more problems")
    print(f"{len(problems)} problem(s): {args.submission} would be rejected")
    return 1
