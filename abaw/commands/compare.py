"""``abaw compare RUN_DIR... [--out FILE]``: finished runs side by side (markdown table).

Prints the table (:mod:`abaw.reports.compare`: settings and config differences, validation
and test terms, times) and, with ``--out``, also writes it to FILE.
"""

from __future__ import annotations

import argparse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN_DIR",
                        help="finished runs' submission folders (each holding report.json)")
    parser.add_argument("--out", help="also write the markdown table to this file")


def run(args: argparse.Namespace) -> int:
    from abaw.fileio import atomic_write_text
    from abaw.reports.compare import compare_runs

    table = compare_runs(args.runs)
    print(table, end="")
    if args.out:
        atomic_write_text(args.out, table)
    return 0
