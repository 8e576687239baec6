"""``abaw fit|validate|test|predict`` for the LSD challenge: LightningCLI over
:class:`~abaw.training.lsd_module.LsdModule` and :class:`~abaw.data.lsd.LsdDataModule`.

A config says it is an LSD config with the top-level key ``challenge: lsd`` (every file in
``configs/lsd/`` does; ``--challenge lsd`` on the command line works too).
:func:`is_lsd_command` finds it, so the one ``abaw fit`` entry point can hand LSD configs here
and everything else to the MTL CLI (:mod:`abaw.training.cli`).

Like the MTL CLI (both are :class:`abaw.training.cli.ChallengeCLI`): the image size is stated
once (``data.img_size`` → ``model.img_size``); a run is one folder,
``trainer.default_root_dir``, with ``checkpoints/`` (``checkpoint.*``: best ``val/f1``, mode
max; ``last_checkpoint.*``: ``last.ckpt`` rewritten after every epoch, what
``--ckpt_path last`` resumes); ``submission.*`` configures
:class:`~abaw.training.lsd_module.LsdPredictionWriter` (``submission.rule`` = an occlusion
decision-rule JSON); seed 42; the module owns its optimiser.

Examples::

    abaw fit --config configs/lsd/default.yaml --data.data_root data/synth/lsd
    abaw predict --config configs/lsd/default.yaml --ckpt_path best.ckpt --submission.output_dir out
"""

from __future__ import annotations

from pathlib import Path

import yaml

from abaw.data.lsd import LsdDataModule
from abaw.fileio import is_device
from abaw.training.cli import ChallengeCLI, run_cli
from abaw.training.lsd_module import LsdModule, LsdPredictionWriter

#: Value of the top-level ``challenge`` key that routes a config here.
LSD_CHALLENGE = "lsd"


def _config_challenge(path: Path) -> str | None:
    if is_device(path):
        return None  # refused by the CLI's own check of --config files
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8 text
        return None  # let the CLI itself report an unreadable config
    return content.get("challenge") if isinstance(content, dict) else None


def is_lsd_command(argv: list[str]) -> bool:
    """True when the arguments name the LSD challenge (``--challenge lsd`` or a config's key).

    The last occurrence wins, as in the CLI itself (later configs override earlier ones).
    """
    challenge = None
    args = list(argv)
    for i, arg in enumerate(args):
        value = None
        if arg in ("--config", "-c", "--challenge") and i + 1 < len(args):
            value = args[i + 1]
            key = arg
        elif arg.startswith(("--config=", "--challenge=")):
            key, value = arg.split("=", 1)
        if value is None:
            continue
        if key == "--challenge":
            challenge = value
        else:
            found = _config_challenge(Path(value))
            challenge = found if found is not None else challenge
    return challenge == LSD_CHALLENGE


class LsdCLI(ChallengeCLI):
    """LightningCLI with the LSD links, checkpointing and submission writer."""

    CHALLENGE = LSD_CHALLENGE
    MONITOR = "val/f1"
    PREDICTION_WRITER = LsdPredictionWriter


def run_lsd_cli(argv: list[str]) -> int:
    """Run ``fit|validate|test|predict`` on an LSD config; returns the exit status."""
    return run_cli(LsdCLI, LsdModule, LsdDataModule, argv)
