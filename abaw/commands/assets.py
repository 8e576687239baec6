"""``abaw assets list`` / ``abaw assets fetch NAME|all``: the offline pretrained-weight cache."""

from __future__ import annotations

import argparse
import sys

from abaw import assets


def configure(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="each asset: name, status (cached/local/missing), size, licence, source")
    fetch = sub.add_parser("fetch", help="build (once) and verify an asset, print its path")
    fetch.add_argument("name", choices=[*assets.REGISTRY, "all"], metavar="NAME|all")


def format_table() -> str:
    """The ``list`` table (status comes from the files present; no hashing)."""
    rows = [("NAME", "STATUS", "SIZE", "LICENCE", "SOURCE")]
    for name, asset in assets.REGISTRY.items():
        state, path = assets.status(name)
        size = f"{path.stat().st_size / 1e6:.1f} MB" if path is not None and path.exists() else "-"
        rows.append((name, state, size, asset.licence, asset.source.describe()))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + "  " + row[4] for row in rows
    )


def run(args: argparse.Namespace) -> int:
    if args.action == "list":
        print(format_table())
        print(f"cache: {assets.cache_dir()}")
        return 0
    names = list(assets.REGISTRY) if args.name == "all" else [args.name]
    for name in names:
        print(f"{name}\t{assets.fetch(name)}")
        sys.stdout.flush()
    return 0
