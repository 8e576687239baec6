"""``abaw pretrain mae --config configs/pretrain/default.yaml [overrides]``: self-supervised
pre-training of a ViT on unlabelled face crops (:mod:`abaw.training.mae_module`).

The options after the method are LightningCLI arguments (``--config`` files stack,
``--trainer.max_epochs 2``, ``--data.roots '[a, b]'``, ``--ckpt_path last`` to resume,
``--print_config``); ``abaw pretrain mae --help`` lists them all. ``data.roots: null`` (the
default config's) means the embedded synthetic data, generated under ``data/synth`` on first
use as ``make mtl`` does.
"""

from __future__ import annotations

import argparse
from typing import Any

METHODS = ("mae",)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("method", choices=METHODS, help="pre-training method (mae: masked autoencoder)")
    parser.add_argument("options", nargs=argparse.REMAINDER,
                        help="LightningCLI arguments: --config FILE, overrides, --ckpt_path last")


def embedded_data_without_roots(config: Any) -> None:
    """``data.roots`` empty or null → the embedded synthetic data (generated if absent)."""
    data = config.get("data")
    if data is not None and not data.get("roots"):
        from abaw.runner import ensure_synthetic_data

        data["roots"] = [str(ensure_synthetic_data("default", 0))]


def run(args: argparse.Namespace) -> int:
    from abaw.training.cli import run_pretrain

    return run_pretrain(args.method, args.options, prepare=embedded_data_without_roots)
