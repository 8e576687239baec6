"""``abaw mtl|lsd fit|validate|test|predict``: one LightningCLI class per challenge.

:class:`MtlCLI` runs :class:`~abaw.training.mtl_module.MtlModule` on
:class:`~abaw.data.mtl.MtlDataModule`, :class:`LsdCLI` runs
:class:`~abaw.training.lsd_module.LsdModule` on :class:`~abaw.data.lsd.LsdDataModule`; the
command names the challenge (``abaw lsd fit --config ...``), so nothing reads argv or a YAML
file to route. A config carries ``challenge: <name>``, checked once parsed: an MTL config
handed to the LSD CLI is refused with a message, not a confusing argument error.

What both add to a plain LightningCLI (:class:`ChallengeCLI`):

- numbers stated once: ``data.img_size`` is linked into the model (MTL also ``data.tasks``
  and, at instantiation, the training-label statistics);
- a run is one folder, ``trainer.default_root_dir``: checkpoints go to
  ``<default_root_dir>/checkpoints`` (``checkpoint.*``: the best ``MONITOR``, mode max;
  ``last_checkpoint.*``: ``last.ckpt`` after every epoch), so ``--ckpt_path last`` resumes an
  interrupted run; the logger's ``save_dir`` is linked to it too, and the resolved config
  (``config.yaml``) goes to the logger's folder (one ``version_<n>`` per invocation);
- ``submission.*`` configures the challenge's prediction writer
  (:mod:`abaw.training.writer`), which turns ``predict`` into ``submission.txt`` and
  ``predictions.npz``;
- a fixed seed (``seed_everything: 42``) and the optimiser defined by the module.

:func:`build_cli` parses a config once without running anything (``run=False``), for the
runner (:mod:`abaw.runner`) and notebooks; :func:`run_lightning_cli` is the command line.

Examples::

    abaw mtl fit --config configs/mtl/base.yaml --data.data_root data/synth/mtl
    abaw mtl fit --config configs/mtl/base.yaml --config configs/mtl/efficientnet_b0.yaml
    abaw mtl fit --config configs/mtl/base.yaml --ckpt_path last          # resume
    abaw lsd predict --config configs/lsd/base.yaml --ckpt_path best.ckpt --submission.output_dir out
    abaw mtl fit --config configs/mtl/base.yaml --print_config            # the resolved config
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pytorch_lightning import LightningDataModule, LightningModule
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from abaw.data.lsd import LsdDataModule
from abaw.data.mtl import MtlDataModule
from abaw.errors import ConfigError
from abaw.log import configure_logging
from abaw.training.lsd_module import LsdModule
from abaw.training.mtl_module import MtlModule
from abaw.training.writer import LsdPredictionWriter, MtlPredictionWriter, PredictionWriter

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
    """What every challenge CLI shares (see the module docstring). A subclass sets the
    challenge name, its module and datamodule classes, the monitored metric and the writer."""

    CHALLENGE: str = ""
    MODEL: type[LightningModule]
    DATAMODULE: type[LightningDataModule]
    MONITOR: str = ""
    PREDICTION_WRITER: type[PredictionWriter]

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--challenge", type=str, default=self.CHALLENGE,
                            help="which challenge a config is for (checked once parsed)")
        add_checkpoint_arguments(parser, monitor=self.MONITOR)
        parser.add_lightning_class_args(self.PREDICTION_WRITER, "submission")
        parser.link_arguments("data.img_size", "model.img_size")
        # the logger writes inside the run folder too (any logger taking ``save_dir``)
        parser.link_arguments("trainer.default_root_dir", "trainer.logger.init_args.save_dir")

    def __init__(self, *args: Any, prepare: Callable[[Any], None] | None = None,
                 **kwargs: Any) -> None:
        #: called with the parsed config before anything is instantiated (see build_cli)
        self.prepare = prepare
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        config = self.config.get(self.subcommand, self.config) if self.subcommand else self.config
        if config.get("challenge", self.CHALLENGE) != self.CHALLENGE:
            raise ConfigError(f"this is the {self.CHALLENGE.upper()} CLI; the config says "
                              f"challenge: {config['challenge']} (use `abaw "
                              f"{config['challenge']} ...`)")
        if self.prepare is not None:
            self.prepare(config)
            # whatever the preparation drew from the global generators, the model starts
            # from the state the seed gives, as without it
            self._set_seed()

    @property
    def writer(self) -> PredictionWriter:
        """The instantiated prediction writer (``submission.*``)."""
        return next(c for c in self.trainer.callbacks if isinstance(c, PredictionWriter))

    @property
    def best_checkpoint_callback(self) -> ModelCheckpoint:
        """The ``checkpoint.*`` callback (best ``MONITOR``)."""
        return next(c for c in self.trainer.callbacks
                    if isinstance(c, ModelCheckpoint) and c.monitor == self.MONITOR)


class MtlCLI(ChallengeCLI):
    """The MTL challenge: MtlModule on MtlDataModule, best ``val/P_MTL``."""

    CHALLENGE = "mtl"
    MODEL = MtlModule
    DATAMODULE = MtlDataModule
    MONITOR = "val/P_MTL"
    PREDICTION_WRITER = MtlPredictionWriter

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.link_arguments("data.tasks", "model.tasks")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")


class LsdCLI(ChallengeCLI):
    """The LSD challenge: LsdModule on LsdDataModule, best ``val/f1``."""

    CHALLENGE = "lsd"
    MODEL = LsdModule
    DATAMODULE = LsdDataModule
    MONITOR = "val/f1"
    PREDICTION_WRITER = LsdPredictionWriter


#: challenge name -> its CLI class (``abaw <name> fit ...``)
CHALLENGE_CLIS: dict[str, type[ChallengeCLI]] = {"mtl": MtlCLI, "lsd": LsdCLI}


def _cli(cli_class: type[ChallengeCLI], args: list[str], run: bool,
         prepare: Callable[[Any], None] | None = None) -> ChallengeCLI:
    with warnings.catch_warnings():
        # Under ``abaw mtl fit ...`` sys.argv holds the same arguments as ``args``;
        # LightningCLI warns about seeing both. sys.argv must stay intact: DDP re-runs it.
        warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
        return cli_class(
            cli_class.MODEL,
            cli_class.DATAMODULE,
            args=list(args),
            run=run,
            seed_everything_default=DEFAULT_SEED,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            prepare=prepare,
        )


def build_cli(challenge: str, args: list[str],
              prepare: Callable[[Any], None] | None = None) -> ChallengeCLI:
    """Parse ``args`` (``--config`` files, then overrides) once and instantiate the trainer,
    model, datamodule and callbacks, without running anything (``run=False``).

    ``prepare(config)`` may change the parsed config (a jsonargparse Namespace) before the
    classes are instantiated; the seed is applied again after it.

    An argument error raises :class:`~abaw.errors.ConfigError` with jsonargparse's message.
    """
    configure_logging()
    try:
        return _cli(CHALLENGE_CLIS[challenge], args, run=False, prepare=prepare)
    except SystemExit:
        raise ConfigError(f"the {challenge} config or its overrides are invalid (see the "
                          f"message above): {' '.join(args)}") from None


def run_lightning_cli(challenge: str, argv: list[str]) -> int:
    """``abaw <challenge> fit|validate|test|predict ...``; returns the exit status.

    Argument errors exit through jsonargparse (status 2, its own message); toolkit errors
    (:class:`abaw.errors.AbawError`) propagate to :func:`abaw.cli.main`, which prints them.
    """
    configure_logging()
    try:
        _cli(CHALLENGE_CLIS[challenge], argv, run=True)
    except SystemExit as exit_:  # --help, --print_config, argument errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0
