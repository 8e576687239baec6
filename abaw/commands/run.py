"""``abaw run {mtl,lsd} [recipe options] [-- LightningCLI overrides]``: a challenge end to end.

The same pipeline as ``make mtl`` / ``make lsd`` (:func:`abaw.runner.run`);
``abaw run mtl --help`` lists the recipe's options.
"""

from __future__ import annotations

import argparse

from abaw.tracks import TRACKS, get


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("challenge", choices=sorted(TRACKS), help="which challenge")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="the recipe's options (abaw run <challenge> --help)")


def run(args: argparse.Namespace) -> int:
    from abaw.runner import main

    return main(get(args.challenge), args.options)
