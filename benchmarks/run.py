"""Run the registered benchmarks and print one table: ``python -m benchmarks.run [--only NAME] [--quick]``.

To add a benchmark, write a module with ``run(quick: bool) -> list[benchmarks.Measurement]``
and append ``(name, module)`` to :data:`BENCHMARKS`. Modules are imported only when run, so
a benchmark's heavy imports (torch, scikit-learn) cost nothing to the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from benchmarks import Measurement

#: (name, module exposing ``run(quick: bool) -> list[Measurement]``)
BENCHMARKS: list[tuple[str, str]] = [
    ("metrics", "benchmarks.bench_metrics"),
    ("superres", "benchmarks.bench_superres"),
    ("training", "benchmarks.bench_training"),
    ("loader", "benchmarks.bench_loader"),
    ("pretrain", "benchmarks.bench_pretrain"),
]


def _format_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def format_table(rows: list[tuple[str, Measurement]]) -> str:
    """A plain-text table: benchmark, case, ours, reference (name and time), ratio, note."""
    header = ("benchmark", "case", "ours", "reference", "ref time", "ref/ours", "note")
    cells = [header]
    for name, m in rows:
        ratio = m.ratio
        cells.append((
            name,
            m.case,
            _format_seconds(m.seconds),
            m.reference or "-",
            _format_seconds(m.reference_seconds),
            f"{ratio:.1f}x" if ratio is not None else "-",
            m.note,
        ))
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__)
    names = [name for name, _ in BENCHMARKS]
    parser.add_argument("--only", choices=names, action="append",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--quick", action="store_true", help="smaller inputs, fewer repeats")
    args = parser.parse_args(argv)
    rows: list[tuple[str, Measurement]] = []
    for name, module_name in BENCHMARKS:
        if args.only and name not in args.only:
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        module = importlib.import_module(module_name)
        rows.extend((name, m) for m in module.run(quick=args.quick))
    print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
