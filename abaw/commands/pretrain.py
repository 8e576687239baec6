"""``abaw pretrain mae --config configs/pretrain/default.yaml [overrides]``: self-supervised
pre-training of a ViT on unlabelled face crops (:mod:`abaw.training.mae_module`).

The options after the method are LightningCLI arguments (``--config`` files stack,
``--trainer.max_epochs 2``, ``--data.roots '[a, b]'``, ``--ckpt_path last`` to resume,
``--print_config``); ``abaw pretrain mae --help`` lists them all.
"""

from __future__ import annotations

import argparse

METHODS = ("mae",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=METHODS, help="pre-training method (mae: masked autoencoder)")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="LightningCLI arguments: --config FILE, overrides, --ckpt_path last")


def run(args: argparse.Namespace) -> int:
    from abaw.training.cli import run_pretrain

    return run_pretrain(args.method, args.options)
