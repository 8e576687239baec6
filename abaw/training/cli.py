"""``abaw fit|validate|test|predict``: the LightningCLI over :class:`MtlModule` and
:class:`MtlDataModule` (configs with ``challenge: lsd`` are handed to :mod:`abaw.training.lsd_cli`).

What it adds to a plain LightningCLI:

- numbers stated once: ``data.img_size`` and ``data.tasks`` are linked into the model; the
  training-label statistics (class weights, AU ``pos_weight``, AU-graph initialisation) are
  linked from the instantiated datamodule (``apply_on="instantiate"``);
- a run is one folder, ``trainer.default_root_dir``: checkpoints go to
  ``<default_root_dir>/checkpoints`` (``checkpoint.*``: best ``val/P_MTL``, mode max;
  ``last_checkpoint.*``: ``last.ckpt`` after every epoch), so ``--ckpt_path last`` resumes an
  interrupted run; the logger's
  ``save_dir`` is linked to it too, and the resolved config (``config.yaml``, Lightning's
  SaveConfigCallback) goes to the logger's folder (one ``version_<n>`` per invocation);
- ``submission.*`` configures :class:`~abaw.training.callbacks.MtlPredictionWriter`, which
  turns ``abaw predict`` into ``submission.txt`` and ``predictions.npz``;
- a fixed seed (``seed_everything: 42``) and the optimiser defined by the module (no
  ``--optimizer`` options: the module owns AdamW, layer decay and the schedule).

Examples::

    abaw fit --config configs/mtl/default.yaml --data.data_root data/synth/mtl
    abaw fit --config configs/mtl/default.yaml --ckpt_path last          # resume
    abaw validate --config configs/mtl/default.yaml --ckpt_path runs/mtl/default/checkpoints/last.ckpt
    abaw predict --config configs/mtl/default.yaml --ckpt_path best.ckpt --submission.output_dir out
    abaw fit --config configs/mtl/default.yaml --print_config            # the resolved config
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from abaw.data.mtl import MtlDataModule
from abaw.errors import ConfigError
from abaw.log import configure_logging
from abaw.training.callbacks import MtlPredictionWriter
from abaw.training.mtl_module import MtlModule

#: Value of the top-level ``challenge`` key of an MTL config (``challenge: lsd`` goes to
#: :mod:`abaw.training.lsd_cli`).
MTL_CHALLENGE = "mtl"
CHECKPOINT_DIR = "checkpoints"
DEFAULT_SEED = 42


def checkpoint_dir(default_root_dir: str | os.PathLike[str] | None) -> str:
    """``<default_root_dir>/checkpoints`` (the working directory when unset, like Lightning)."""
    return str(Path(default_root_dir or ".") / CHECKPOINT_DIR)


def add_checkpoint_arguments(parser: LightningArgumentParser, monitor: str) -> None:
    """Two ModelCheckpoint callbacks writing to ``<default_root_dir>/checkpoints``.

    ``checkpoint``: the best ``monitor`` (mode max). ``last_checkpoint``: ``last.ckpt``, rewritten
    after every epoch (and every ``every_n_train_steps`` steps if set), which
    ``--ckpt_path last`` resumes from. Lightning's own ``save_last`` only writes ``last.ckpt``
    when the best checkpoint is written too, so after an epoch that did not improve, it would
    be stale — hence a callback of its own.
    """
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.set_defaults({
        "checkpoint.monitor": monitor,
        "checkpoint.mode": "max",
        "checkpoint.save_top_k": 1,
        "checkpoint.filename": "best-epoch{epoch:03d}-step{step:06d}",
        "checkpoint.auto_insert_metric_name": False,
    })
    parser.add_lightning_class_args(ModelCheckpoint, "last_checkpoint")
    parser.set_defaults({
        "last_checkpoint.monitor": None,
        "last_checkpoint.save_top_k": 1,
        "last_checkpoint.filename": ModelCheckpoint.CHECKPOINT_NAME_LAST,
        "last_checkpoint.enable_version_counter": False,
        "last_checkpoint.auto_insert_metric_name": False,
    })
    for name in ("checkpoint", "last_checkpoint"):
        parser.link_arguments("trainer.default_root_dir", f"{name}.dirpath",
                              compute_fn=checkpoint_dir)


class ChallengeCLI(LightningCLI):
    """What the MTL and LSD CLIs share: the ``--challenge`` key (a config for another challenge
    is refused), the best/last checkpoints (:func:`add_checkpoint_arguments` on ``MONITOR``),
    ``submission.*`` (the ``PREDICTION_WRITER`` callback) and ``data.img_size`` →
    ``model.img_size``. Subclasses set the three class attributes."""

    CHALLENGE: str = ""
    MONITOR: str = ""
    PREDICTION_WRITER: type[Callback]

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--challenge", type=str, default=self.CHALLENGE,
                            help="which challenge a config is for (routes `abaw fit`)")
        add_checkpoint_arguments(parser, monitor=self.MONITOR)
        parser.add_lightning_class_args(self.PREDICTION_WRITER, "submission")
        parser.link_arguments("data.img_size", "model.img_size")

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("challenge", self.CHALLENGE) != self.CHALLENGE:
            raise ConfigError(f"this is the {self.CHALLENGE.upper()} CLI; the config says "
                              f"challenge: {config['challenge']}")


class MtlCLI(ChallengeCLI):
    """LightningCLI with the links, checkpointing and submission writer described above."""

    CHALLENGE = MTL_CHALLENGE
    MONITOR = "val/P_MTL"
    PREDICTION_WRITER = MtlPredictionWriter

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        # the logger writes inside the run folder too (any logger taking ``save_dir``)
        parser.link_arguments("trainer.default_root_dir", "trainer.logger.init_args.save_dir")
        parser.link_arguments("data.tasks", "model.tasks")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")


def run_cli(cli_class: type[ChallengeCLI], model_class: type[LightningModule],
            datamodule_class: type[LightningDataModule], argv: list[str]) -> int:
    """Run ``cli_class`` over the two classes on ``argv``; returns the exit status.

    Argument errors exit through jsonargparse (status 2, its own message); toolkit errors
    (:class:`abaw.errors.AbawError`) propagate to :func:`abaw.cli.main`, which prints them.
    """
    configure_logging()
    try:
        with warnings.catch_warnings():
            # Under ``abaw fit ...`` sys.argv holds the same arguments as ``argv``; LightningCLI
            # warns about seeing both. sys.argv must stay intact: DDP re-runs the command.
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
            cli_class(
                model_class,
                datamodule_class,
                args=list(argv),
                seed_everything_default=DEFAULT_SEED,
                save_config_kwargs={"overwrite": True},
                auto_configure_optimizers=False,
            )
    except SystemExit as exit_:  # --help, --print_config, argument errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0


def run_lightning_cli(argv: list[str]) -> int:
    """Run ``fit|validate|test|predict`` with LightningCLI; returns the exit status.

    A config with ``challenge: lsd`` (or ``--challenge lsd``) goes to the LSD CLI; everything
    else is an MTL run (see :func:`run_cli` for the exit status and errors).
    """
    from abaw.training.lsd_cli import is_lsd_command, run_lsd_cli  # it imports this module

    if is_lsd_command(argv):
        return run_lsd_cli(argv)
    return run_cli(MtlCLI, MtlModule, MtlDataModule, argv)
