"""``abaw report RUN_DIR... [--out FILE]``: (re)build ``report.html`` of finished runs.

RUN_DIR is a run's submission folder (``submissions/<track>/<run>``, the one holding
``report.json``) or the ``report.json`` itself; the page is built from the run's saved files
only (:mod:`abaw.reports.html`). A section whose inputs are missing is a note on the page
and a line on stderr, never an error.
"""

from __future__ import annotations

import argparse
import sys

from abaw.errors import ConfigError


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="a finished run's submission folder (holding report.json)")
    parser.add_argument("--out", help="write the page here (one run only; default: "
                                      "report.html beside report.json)")


def run(args: argparse.Namespace) -> int:
    from abaw.reports.html import write_html

    if args.out and len(args.runs) > 1:
        raise ConfigError("--out takes one RUN_DIR; without it each report.html is written "
                          "beside its report.json")
    for given in args.runs:
        skipped: list[tuple[str, str]] = []
        path = write_html(given, args.out, skipped)
        for title, why in skipped:
            print(f"abaw: note: {path}: section {title!r} skipped: {why}", file=sys.stderr)
        print(path)
    return 0
