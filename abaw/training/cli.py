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

:class:`RunCLI` holds what every abaw LightningCLI shares (run folder, checkpoints, linked
``img_size``, one-line checkpoint errors); :class:`ChallengeCLI` adds the challenge check and
the prediction writer; :class:`MaeCLI` (``abaw pretrain mae``) is MAE pre-training, which
only fits, so it takes ``--ckpt_path`` without a subcommand and best ``val/loss`` is mode min.

:func:`build_cli` parses a config once without running anything (``run=False``), for the
runner (:mod:`abaw.runner`) and notebooks; :func:`run_lightning_cli` is the command line,
:func:`run_pretrain` that of pre-training.

Examples::

    abaw mtl fit --config configs/mtl/base.yaml --data.data_root data/synth/mtl
    abaw mtl fit --config configs/mtl/base.yaml --config configs/mtl/efficientnet_b0.yaml
    abaw mtl fit --config configs/mtl/base.yaml --ckpt_path last          # resume
    abaw lsd predict --config configs/lsd/base.yaml --ckpt_path best.ckpt --submission.output_dir out
    abaw mtl fit --config configs/mtl/base.yaml --print_config            # the resolved config
"""

from __future__ import annotations

import logging
import os
import re
import signal
import stat
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pytorch_lightning import LightningDataModule, LightningModule, Trainer
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.trainer.states import TrainerStatus

from abaw.data.lsd import LsdDataModule
from abaw.data.mtl import MtlDataModule
from abaw.data.per_video import PerVideoDataModule
from abaw.data.pretrain import PretrainDataModule
from abaw.errors import AbawError, ConfigError
from abaw.fileio import is_device
from abaw.log import configure_logging
from abaw.training.lsd_module import LsdModule
from abaw.training.mae_module import ENCODER_FILE, MaeModule
from abaw.training.mtl_module import MtlModule
from abaw.training.writer import (
    LsdPredictionWriter,
    MtlPredictionWriter,
    PerVideoPredictionWriter,
    PredictionWriter,
)

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
DEFAULT_SEED = 42


def checkpoint_dir(default_root_dir: str | os.PathLike[str] | None) -> str:
    """``<default_root_dir>/checkpoints`` (the working directory when unset, like Lightning)."""
    return str(Path(default_root_dir or ".") / CHECKPOINT_DIR)


def add_checkpoint_arguments(parser: LightningArgumentParser, monitor: str,
                             mode: str = "max") -> None:
    """Two ModelCheckpoint callbacks writing to ``<default_root_dir>/checkpoints``.

    ``checkpoint``: the best ``monitor`` (``mode``: max for a score, min for a loss). ``last_checkpoint``: ``last.ckpt``, rewritten
    after every epoch (and every ``every_n_train_steps`` steps if set), which
    ``--ckpt_path last`` resumes from. Lightning's own ``save_last`` only writes ``last.ckpt``
    when the best checkpoint is written too, so after an epoch that did not improve, it would
    be stale — hence a callback of its own.
    """
    parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
    parser.set_defaults({
        "checkpoint.monitor": monitor,
        "checkpoint.mode": mode,
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


#: ``--ckpt_path`` values Lightning resolves itself (not file names)
_SPECIAL_CKPT = ("last", "best", "hpc")
#: ``data.*`` sizes that must be positive integers (``None`` allowed: a default applies)
_POSITIVE = ("img_size", "batch_size", "eval_batch_size")


def check_data_sizes(data: dict) -> None:
    """Refuse a non-positive image or batch size and a negative worker count (a clear
    :class:`ConfigError` instead of a failure deep inside albumentations or a DataLoader)."""
    for key in _POSITIVE:
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
    workers = data.get("num_workers")
    if workers is not None and (not isinstance(workers, int) or workers < 0):
        raise ConfigError(f"data.num_workers must be 0 or more, got {workers!r}")


def _is_checkpoint_file(ckpt_path: object) -> bool:
    return (ckpt_path is not None and str(ckpt_path) not in _SPECIAL_CKPT
            and not str(ckpt_path).startswith("registry"))


def check_checkpoint_file(ckpt_path: object) -> None:
    """``--ckpt_path FILE`` must be an existing, non-empty regular file (checked before any
    model is built)."""
    if not _is_checkpoint_file(ckpt_path):
        return
    path = Path(str(ckpt_path))
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"--ckpt_path {path}: no such file") from None
    except OSError as err:
        raise ConfigError(f"--ckpt_path {path}: {err.strerror or err}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"--ckpt_path {path}: not a regular file")
    if info.st_size == 0:
        raise ConfigError(f"--ckpt_path {path}: the file is empty (an interrupted copy?)")


_STATE_DICT_ERROR = "Error(s) in loading state_dict"


def state_dict_mismatch(err: RuntimeError, ckpt_path: object) -> ConfigError | None:
    """torch's "Error(s) in loading state_dict" (hundreds of key names) as one line: how many
    weights are missing, unexpected or differently shaped, and what to do. ``None`` for any
    other error."""
    text = str(err)
    if _STATE_DICT_ERROR not in text:
        return None
    counts = []
    for label, pattern in (("missing", r"Missing key\(s\) in state_dict: (.*)"),
                           ("unexpected", r"Unexpected key\(s\) in state_dict: (.*)")):
        found = re.search(pattern, text)
        if found:
            counts.append(f"{found.group(1).count(chr(34)) // 2} {label}")
    reshaped = text.count("size mismatch for ")
    if reshaped:
        counts.append(f"{reshaped} differently shaped")
    return ConfigError(
        f"--ckpt_path {ckpt_path} was saved from a different model ({', '.join(counts)} "
        "weights): run with the config it was trained with (model.backbone, model.au_head, "
        "data.tasks)")


class RunCLI(LightningCLI):
    """What every abaw LightningCLI shares: checkpoints and logs in the run folder, one
    ``img_size``, a ``prepare`` hook, and one-line errors for bad checkpoints. A subclass sets
    its module and datamodule classes and the monitored value."""

    MODEL: type[LightningModule]
    DATAMODULE: type[LightningDataModule]
    MONITOR: str = ""
    MONITOR_MODE: str = "max"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        add_checkpoint_arguments(parser, monitor=self.MONITOR, mode=self.MONITOR_MODE)
        parser.link_arguments("data.img_size", "model.img_size")
        # the logger writes inside the run folder too (any logger taking ``save_dir``)
        parser.link_arguments("trainer.default_root_dir", "trainer.logger.init_args.save_dir")

    def __init__(self, *args: Any, prepare: Callable[[Any], None] | None = None,
                 **kwargs: Any) -> None:
        #: called with the parsed config before anything is instantiated (see build_cli)
        self.prepare = prepare
        super().__init__(*args, **kwargs)

    def _subcommand_config(self):
        return self.config.get(self.subcommand, self.config) if self.subcommand else self.config

    def before_instantiate_classes(self) -> None:
        config = self._subcommand_config()
        check_data_sizes(config.get("data") or {})
        if self.prepare is not None:
            self.prepare(config)
            # whatever the preparation drew from the global generators, the model starts
            # from the state the seed gives, as without it
            self._set_seed()

    def _parse_ckpt_path(self) -> None:
        # Lightning reads the checkpoint's hyper-parameters here (torch.load, weights_only): a
        # file that is not a checkpoint fails with a bare unpickling error, so say what it is
        # (and never suggest weights_only=False: unpickling arbitrary code is unsafe)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        check_checkpoint_file(ckpt_path)
        before = _as_dict(self.config[subcommand].get("model")) if ckpt_path else {}
        try:
            super()._parse_ckpt_path()
        except Exception as err:
            if isinstance(err, AbawError):
                raise
            raise ConfigError(f"--ckpt_path {ckpt_path}: not a checkpoint written by abaw fit "
                              f"(it cannot be loaded as one: {type(err).__name__})") from None
        if ckpt_path:  # Lightning replaced the model's arguments by the checkpoint's: say so
            after = _as_dict(self.config[subcommand].get("model"))
            for key in sorted(k for k in after if k in before and after[k] != before[k]):
                log.warning("--ckpt_path %s was trained with model.%s=%r: using that (the "
                            "config's %r is ignored)", ckpt_path, key, after[key], before[key])

    def _run_subcommand(self, subcommand: str) -> None:
        with lightning_errors(self.trainer, self._subcommand_config().get("ckpt_path")):
            super()._run_subcommand(subcommand)


@contextmanager
def lightning_errors(trainer: Trainer, ckpt_path: object) -> Iterator[None]:
    """A checkpoint of another model as one :class:`ConfigError` line; Ctrl-C as
    ``KeyboardInterrupt`` (exit status 130) after Lightning's graceful shutdown."""
    try:
        yield
    except RuntimeError as err:
        mismatch = state_dict_mismatch(err, ckpt_path)
        if mismatch is None:
            raise
        raise mismatch from None
    except SystemExit:
        # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown (and leaves
        # SIGINT ignored); an interrupt is exit status 130 everywhere in abaw
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt from None
        raise


class ChallengeCLI(RunCLI):
    """What every challenge CLI shares (see the module docstring). A subclass sets the
    challenge name, its module and datamodule classes, the monitored metric and the writer."""

    CHALLENGE: str = ""
    PREDICTION_WRITER: type[PredictionWriter]

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--challenge", type=str, default=self.CHALLENGE,
                            help="which challenge a config is for (checked once parsed)")
        super().add_arguments_to_parser(parser)
        parser.add_lightning_class_args(self.PREDICTION_WRITER, "submission")

    def before_instantiate_classes(self) -> None:
        config = self._subcommand_config()
        if config.get("challenge", self.CHALLENGE) != self.CHALLENGE:
            raise ConfigError(f"this is the {self.CHALLENGE.upper()} CLI; the config says "
                              f"challenge: {config['challenge']} (use `abaw "
                              f"{config['challenge']} ...`)")
        super().before_instantiate_classes()

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


def _as_dict(namespace: object) -> dict:
    if namespace is None:
        return {}
    as_dict = getattr(namespace, "as_dict", None)
    return dict(as_dict()) if callable(as_dict) else dict(namespace)  # type: ignore[call-overload]


def _config_arguments(argv: list[str]) -> list[str]:
    """The values of ``--config X`` / ``-c X`` / ``--config=X`` in ``argv``."""
    values = []
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            values.append(argv[i + 1])
        elif arg.startswith("--config="):
            values.append(arg.split("=", 1)[1])
    return values


def check_config_files(argv: list[str]) -> None:
    """Each ``--config`` file must be readable UTF-8 text (jsonargparse would fail with a bare
    decoding error on a binary file, or read a device forever)."""
    for value in _config_arguments(argv):
        path = Path(value)
        if is_device(path):
            raise ConfigError(f"--config {value}: is a device, not a file")
        try:
            data = path.read_bytes()
        except OSError:
            continue  # jsonargparse reports a missing or unreadable config itself
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data.count(b"\n", 0, err.start) + 1
            raise ConfigError(f"{value}:{line}: not a YAML text file (byte "
                              f"0x{data[err.start]:02x} is not UTF-8)") from None


class LsdCLI(ChallengeCLI):
    """The LSD challenge: LsdModule on LsdDataModule, best ``val/f1``."""

    CHALLENGE = "lsd"
    MODEL = LsdModule
    DATAMODULE = LsdDataModule
    MONITOR = "val/f1"
    PREDICTION_WRITER = LsdPredictionWriter


def task_list(task: str) -> list[str]:
    """``data.task`` as the one-task ``model.tasks`` list."""
    return [task]


class PerVideoCLI(ChallengeCLI):
    """A per-video task (VA, EXPR, AU; 5th ABAW on): the MTL module with one task on
    :class:`~abaw.data.per_video.PerVideoDataModule`. ``val/P_MTL`` of a one-task model is
    that task's official score (the other terms add 0)."""

    MODEL = MtlModule
    DATAMODULE = PerVideoDataModule
    MONITOR = "val/P_MTL"
    PREDICTION_WRITER = PerVideoPredictionWriter

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.set_defaults({"data.task": self.CHALLENGE})
        parser.link_arguments("data.task", "model.tasks", compute_fn=task_list)
        parser.link_arguments("data.task", "submission.task")
        parser.link_arguments("data.label_stats", "model.label_stats", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        task = (self._subcommand_config().get("data") or {}).get("task", self.CHALLENGE)
        if task != self.CHALLENGE:
            raise ConfigError(f"this is the {self.CHALLENGE.upper()} CLI; data.task is {task!r}")
        super().before_instantiate_classes()


class VaCLI(PerVideoCLI):
    CHALLENGE = "va"


class ExprCLI(PerVideoCLI):
    CHALLENGE = "expr"


class AuCLI(PerVideoCLI):
    CHALLENGE = "au"


#: challenge name -> its CLI class (``abaw <name> fit ...``)
CHALLENGE_CLIS: dict[str, type[ChallengeCLI]] = {"mtl": MtlCLI, "lsd": LsdCLI, "va": VaCLI,
                                                  "expr": ExprCLI, "au": AuCLI}


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
    check_config_files(argv)
    try:
        _cli(CHALLENGE_CLIS[challenge], argv, run=True)
    except SystemExit as exit_:  # --help, --print_config, argument errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    return 0


# --- self-supervised pre-training: ``abaw pretrain mae --config ...`` --------------------------


class MaeCLI(RunCLI):
    """MAE pre-training: :class:`~abaw.training.mae_module.MaeModule` on
    :class:`~abaw.data.pretrain.PretrainDataModule`, best ``val/loss`` (mode min). There is
    one thing to do, fit, so no subcommand: ``--ckpt_path`` (``last`` resumes) is an argument
    of its own. ``abaw pretrain`` reads ``data.roots: null`` as the embedded synthetic data
    (its ``prepare`` hook)."""

    MODEL = MaeModule
    DATAMODULE = PretrainDataModule
    MONITOR = "val/loss"
    MONITOR_MODE = "min"

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        super().add_arguments_to_parser(parser)
        parser.add_argument("--ckpt_path", type=str | None, default=None,
                            help="resume from this checkpoint; 'last' = <run>/checkpoints/"
                                 "last.ckpt when there is one")


#: pre-training method -> its CLI class (``abaw pretrain <method> ...``)
PRETRAIN_CLIS: dict[str, type[RunCLI]] = {"mae": MaeCLI}


def run_pretrain(method: str, argv: list[str],
                 prepare: Callable[[Any], None] | None = None) -> int:
    """``abaw pretrain <method> --config ... [overrides]``: fit; returns the exit status.

    ``prepare(config)`` may change the parsed config before instantiation (as in
    :func:`build_cli`). Errors as in :func:`run_lightning_cli`; the encoder is left in the run
    folder (:data:`abaw.training.mae_module.ENCODER_FILE`).
    """
    configure_logging()
    check_config_files(argv)
    cli_class = PRETRAIN_CLIS[method]
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
            cli = cli_class(cli_class.MODEL, cli_class.DATAMODULE, args=list(argv), run=False,
                            seed_everything_default=DEFAULT_SEED,
                            save_config_kwargs={"overwrite": True},
                            auto_configure_optimizers=False, prepare=prepare)
    except SystemExit as exit_:  # --help, --print_config, argument errors
        code = exit_.code
        return code if isinstance(code, int) else (0 if code is None else 2)
    ckpt_path = cli.config.get("ckpt_path")
    check_checkpoint_file(ckpt_path)
    with lightning_errors(cli.trainer, ckpt_path):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt_path)
    encoder = Path(cli.trainer.default_root_dir) / ENCODER_FILE
    if encoder.is_file():
        print(f"encoder: {encoder} (fine-tune with --model.checkpoint {encoder} "
              "--model.checkpoint_format mae)")
    return 0
