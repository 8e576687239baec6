"""``abaw fit|validate|test|predict`` for the LSD challenge: LightningCLI over
:class:`~abaw.training.lsd_module.LsdModule` and :class:`~abaw.data.lsd.LsdDataModule`.

A config says it is an LSD config with the top-level key ``challenge: lsd`` (every file in
``configs/lsd/`` does; ``--challenge lsd`` on the command line works too).
:func:`is_lsd_command` finds it, so the one ``abaw fit`` entry point can hand LSD configs here
and everything else to the MTL CLI (:mod:`abaw.training.cli`).

Like the MTL CLI: the image size is stated once (``data.img_size`` → ``model.img_size``); a
run is one folder, ``trainer.default_root_dir``, with ``checkpoints/`` (best ``val/f1``, mode
max, and ``last.ckpt`` for ``--ckpt_path last``); ``submission.*`` configures
:class:`~abaw.training.lsd_module.LsdPredictionWriter` (``submission.rule`` = an occlusion
decision-rule JSON); seed 42; the module owns its optimiser.

Examples::

    abaw fit --config configs/lsd/default.yaml --data.data_root data/synth/lsd
    abaw predict --config configs/lsd/default.yaml --ckpt_path best.ckpt --submission.output_dir out
"""

from __future__ import annotations

from pathlib import Path

import yaml
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from abaw.data.lsd import LsdDataModule
from abaw.errors import ConfigError
from abaw.training.cli import DEFAULT_SEED, _configure_logging, checkpoint_dir
from abaw.training.lsd_module import LsdModule, LsdPredictionWriter

#: Value of the top-level ``challenge`` key that routes a config here.
LSD_CHALLENGE = "lsd"


def _config_challenge(path: Path) -> str | None:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
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


class LsdCLI(LightningCLI):
    """LightningCLI with the LSD links, checkpointing and submission writer."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--challenge", type=str, default=LSD_CHALLENGE,
                            help="which challenge a config is for (routes `abaw fit`)")
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults({
            "checkpoint.monitor": "val/f1",
            "checkpoint.mode": "max",
            "checkpoint.save_last": True,
            "checkpoint.save_top_k": 1,
            "checkpoint.filename": "best-epoch{epoch:03d}-step{step:06d}",
            "checkpoint.auto_insert_metric_name": False,
        })
        parser.link_arguments("trainer.default_root_dir", "checkpoint.dirpath",
                              compute_fn=checkpoint_dir)
        parser.add_lightning_class_args(LsdPredictionWriter, "submission")
        parser.link_arguments("data.img_size", "model.img_size")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("challenge", LSD_CHALLENGE) != LSD_CHALLENGE:
            raise ConfigError(f"this is the LSD CLI; the config says challenge: {config['challenge']}")


def run_lsd_cli(argv: list[str]) -> int:
    """Run ``fit|validate|test|predict`` on an LSD config; returns the exit status."""
    _configure_logging()
    try:
        LsdCLI(
            LsdModule,
            LsdDataModule,
            args=list(argv),
            seed_everything_default=DEFAULT_SEED,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
        )
    except SystemExit as exit_:  # --help, --print_config, argument errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0
