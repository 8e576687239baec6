"""One runner for every challenge: a :class:`Challenge` spec in, a scored, validated submission out.

The pipeline (:func:`run`), each step a function a notebook can call on its own:

1. :func:`prepare` — the data (the embedded synthetic data unless ``--data``), the run's name
   and folders: training state in ``runs/<challenge>/<run>/``, leaderboard files and the
   report in ``submissions/<challenge>/<run>/``;
2. :func:`build` — the config parsed **once** by the challenge's LightningCLI
   (``run=False``): several ``--config`` files stack (``configs/<challenge>/base.yaml`` first,
   then the overlays), the recipe's own settings and the user's overrides after them. A
   challenge may adjust the parsed config before anything is instantiated
   (:meth:`Challenge.prepare_config`; LSD super-resolves its training images at the
   configured size there);
3. :func:`fit` — ``trainer.fit`` (resuming ``last.ckpt`` when it exists; ``--fresh`` starts
   over), returning the best checkpoint of the ``checkpoint.*`` callback;
4. :func:`predict` — ``trainer.predict`` on the validation or test split, the result back in
   memory (:class:`abaw.training.writer.Predictions`) and, for the test list, the submission;
5. the challenge's :meth:`Challenge.score_validation` (official scorer on arrays) and
   :meth:`Challenge.fit_postprocess` (fitted on validation, saved as JSON beside the
   checkpoint, which the writer loads for the test prediction);
6. :func:`validate` — ``abaw validate``'s check of the written submission;
7. :func:`finish` — on the embedded data the hidden-truth test score and the oracle ceiling;
   ``report.json``, ``report.html`` (:mod:`abaw.reports`) and a summary table. The
   validation predictions are saved with their truth beside the test predictions
   (``validation_predictions.npz``) so the report and later steps need no model.

A new track is a :class:`Challenge` subclass (see ``abaw/tracks/``) plus a LightningCLI class
(:mod:`abaw.training.cli`); ``abaw run <name>`` and ``python -m challenges.<name>`` run it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from abaw.argtypes import non_negative_int
from abaw.errors import INTERRUPTED, STOPPED, TERMINATED, AbawError, terminated
from abaw.fileio import atomic_write_text
from abaw.scoring import ScoreReport
from abaw.synth.sizes import SIZES

log = logging.getLogger("abaw.recipe")

#: where the embedded synthetic data is generated (relative to the project root); other
#: sizes get their own folder (``data/synth-tiny``) so they never overwrite each other
SYNTH_DIR = Path("data/synth")
CONFIG_DIR = Path("configs")
BASE_CONFIG = "base.yaml"
#: a run folder's record of the training seconds of all its sessions (see :func:`fit`)
TRAIN_CLOCK = "train_seconds.json"
#: the run name of a run of the base config alone
DEFAULT_RUN = "default"
REPORT_FILE = "report.json"


# --- small pieces: data, folders, timing, tables ----------------------------------------------


def synth_dir(size: str, seed: int = 0) -> Path:
    """The folder of the embedded data of one ``--synth-size`` and seed."""
    out = SYNTH_DIR if size == "default" else SYNTH_DIR.with_name(f"synth-{size}")
    return out if seed == 0 else out.with_name(f"{out.name}-seed{seed}")


def ensure_synthetic_data(size: str, seed: int, layouts: tuple[str, ...] | None = None,
                          edition: int = 6, out: Path | None = None) -> Path:
    """Generate the embedded data (or reuse a complete earlier output); returns its folder.
    ``layouts``: only these (default all); ``edition``: the per-video layout's names;
    ``out``: another folder than :func:`synth_dir`'s."""
    from abaw.synth import generate

    out = synth_dir(size, seed) if out is None else out
    manifest = generate(out, size=size, seed=seed, layouts=layouts, edition=edition)
    how = "reused" if manifest.get("reused") else f"generated in {manifest['seconds']['total']} s"
    log.info("embedded synthetic data (%s, seed %d) %s: %s", size, seed, how, out)
    return out


def oracle(out: Path, layout: str) -> dict:
    """The oracle ceiling of one layout of the embedded data (``mtl``, ``lsd``, ``per_video``:
    what a track generated), computed once and saved in ``oracle.json``."""
    from abaw.synth.oracle import layout_oracle

    return layout_oracle(out, layout)


def setup_logging() -> None:
    """Recipe messages on stderr as ``abaw: ...`` (Lightning keeps its own format)."""
    from abaw.log import configure_logging

    configure_logging()
    # The runner calls the LightningCLI in-process on purpose; its "args and sys.argv" notice
    # and a pytree deprecation inside Lightning are noise to a user.
    warnings.filterwarnings("ignore", message=".*LightningCLI's args parameter")
    warnings.filterwarnings("ignore", message=".*isinstance\\(treespec, LeafSpec\\)")
    for name in ("lightning.pytorch.utilities.rank_zero", "pytorch_lightning.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)


class Steps:
    """Times the recipe's steps and prints a banner per step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        print(f"\n=== {name}", flush=True)
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(time.perf_counter() - start, 1)
            print(f"=== {name}: {self.seconds[name]:.1f} s", flush=True)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self._start, 1)


def table(rows: Sequence[Sequence[object]], header: Sequence[str]) -> str:
    """A plain fixed-width text table (floats with 4 decimals)."""
    def cell(value: object) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    cells = [[cell(v) for v in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h)
              for i, h in enumerate(header)]
    line = "  ".join(h.ljust(w) for h, w in zip(header, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def write_report(path: Path, report: dict) -> None:
    atomic_write_text(path, json.dumps(report, indent=2, sort_keys=True, default=float) + "\n")


# --- the spec ---------------------------------------------------------------------------------


@dataclass
class Run:
    """One run of a challenge: where everything is, and what it has produced so far."""

    challenge: Challenge
    args: argparse.Namespace
    configs: list[Path]
    name: str
    data_root: Path
    synth: Path | None  # the embedded data's folder; None on the real data
    run_dir: Path
    sub_dir: Path
    steps: Steps = field(default_factory=Steps)
    #: what goes into report.json
    report: dict[str, Any] = field(default_factory=dict)
    #: rows of the summary table
    rows: list[list[Any]] = field(default_factory=list)
    #: what the challenge's validation scoring keeps for fitting the post-processing
    validation: Any = None
    #: the challenge's own intermediate results (LSD: the hand-detector CSVs, SR report)
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return self.synth is not None

    @property
    def checkpoint_dir(self) -> Path:
        from abaw.training.cli import CHECKPOINT_DIR

        return self.run_dir / CHECKPOINT_DIR


class Challenge:
    """What the runner needs to know about one track. Subclasses set the class attributes and
    implement what is marked *required*; the others have working defaults."""

    #: the name (``abaw run <name>``, ``runs/<name>/``, the LightningCLI in abaw.training.cli)
    name: str = ""
    #: one line for ``--help``
    description: str = ""
    #: files/folders that must exist under ``--data`` (the official names)
    required: tuple[str, ...] = ()
    #: the official test list under the data root, and the submission kind of abaw validate
    test_list: str = ""
    #: the hidden test truth the embedded data ships (scored with :attr:`score_file`)
    test_truth: str = ""
    #: the embedded data's sub-folder for this track
    synth_subdir: str = ""
    #: the folder under ``configs/`` holding the track's ``base.yaml`` (default: the name)
    config_dir: str = ""
    #: the summary table's header
    table_header: tuple[str, ...] = ()
    #: *required*: the official score of a submission file against a truth file
    #: (a file-level scorer of :mod:`abaw.scoring`, e.g. ``staticmethod(score_mtl)``)
    score_file: Callable[[Path, Path], ScoreReport]

    # -- options -------------------------------------------------------------------------------
    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """The track's own recipe options (beyond the common ones of :func:`parser`)."""

    def default_run_name(self, args: argparse.Namespace, stem: str) -> str:
        return stem

    @property
    def base_config(self) -> Path:
        """The track's ``configs/<config_dir or name>/base.yaml``."""
        return CONFIG_DIR / (self.config_dir or self.name) / BASE_CONFIG

    def base_epochs(self) -> int:
        """The training length of the track's recipe: ``trainer.max_epochs`` of its
        :attr:`base_config` (what the evidence tables train by default). An unreadable
        config, or a value that is not a whole number ≥ 1, raises :class:`AbawError` naming
        the file."""
        import yaml

        try:
            text = self.base_config.read_text(encoding="utf-8")
            value = yaml.safe_load(text)["trainer"]["max_epochs"]
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            raise AbawError(f"{self.base_config}: cannot read trainer.max_epochs "
                            f"({type(err).__name__})") from None
        except KeyError as err:
            raise AbawError(f"{self.base_config}: cannot read trainer.max_epochs "
                            f"(no key {err})") from None
        except TypeError:
            raise AbawError(f"{self.base_config}: cannot read trainer.max_epochs "
                            "(not a mapping)") from None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AbawError(f"{self.base_config}: trainer.max_epochs must be a whole number "
                            f"≥ 1, got {value!r}")
        return value

    def synthetic_data(self, args: argparse.Namespace) -> Path:
        """Generate (or reuse) the embedded data; its folder. Only the track's own layout
        (``synth_subdir``) is generated: ``make mtl`` renders no LSD or per-video images."""
        layouts = (self.synth_subdir,) if self.synth_subdir else None
        return ensure_synthetic_data(args.synth_size, args.seed, layouts=layouts)

    def test_list_file(self, data_root: Path) -> Path:
        """The official test list (or sample file) under a data root."""
        return data_root / self.test_list

    def test_truth_file(self, data_root: Path) -> Path | None:
        """The hidden test truth under a data root (the embedded data's; ``None``: the
        track names none)."""
        return data_root / self.test_truth if self.test_truth else None

    def test_list_path(self, run: Run) -> Path:
        """The official test list (or sample file) the submission must follow."""
        return self.test_list_file(run.data_root)

    def test_truth_path(self, run: Run) -> Path:
        """The hidden test truth of the embedded data (scored with :attr:`score_file`)."""
        return run.data_root / self.test_truth

    def adapt_checkpoint(self, run: Run, cli: Any, checkpoint: Path) -> Path:
        """The checkpoint every later step uses (default: the trained one, unchanged)."""
        return checkpoint

    def predict_validation(self, run: Run, cli: Any, checkpoint: Path) -> Any:
        """The validation predictions :meth:`score_validation` scores (default: the trained
        model's, written under the run folder)."""
        return predict(cli, checkpoint, "val", run.run_dir / "validation")

    def predict_test(self, run: Run, cli: Any, checkpoint: Path, post: Path | None) -> Any:
        """The test predictions, the submission written into ``run.sub_dir``."""
        return predict(cli, checkpoint, "test", run.sub_dir, post, **self.writer_settings(run))

    # -- the pipeline ----------------------------------------------------------------------------
    def check(self, run: Run) -> None:
        """Refuse option combinations before anything runs."""

    def cli_arguments(self, run: Run) -> list[str]:
        """Overrides the recipe adds after the configs (before the user's)."""
        return []

    def prepare_config(self, run: Run, config: Any) -> None:
        """Adjust the parsed config (a jsonargparse Namespace) before instantiation."""

    def score_validation(self, run: Run, predictions: Any) -> dict:
        """*Required*: score the validation predictions (arrays) with the official metric;
        store what :meth:`fit_postprocess` needs on ``run``; return the report entries."""
        raise NotImplementedError

    def fit_postprocess(self, run: Run, checkpoint: Path) -> tuple[Path, dict]:
        """*Required*: fit the post-processing on validation, save it beside ``checkpoint``
        (the writer's ``POSTPROCESS_SUFFIX``); return its path and the report entries."""
        raise NotImplementedError

    def writer_settings(self, run: Run) -> dict[str, Any]:
        """Extra attributes of the prediction writer for the test prediction."""
        return {}

    def test_rows(self, run: Run, test: dict) -> list[list[Any]]:
        """Summary-table rows of the hidden-truth test score (embedded data only)."""
        return []

    def oracle_report(self, run: Run, test: dict) -> dict:
        """Report entries comparing the run with the oracle ceiling (embedded data only)."""
        return {}

    # -- saved predictions (abaw ensemble, challenges.last_mile) ---------------------------------
    def validation_truth(self, data_root: Path) -> tuple[list[str], Any]:
        """The validation images and their :class:`abaw.postprocess.Labels` (row-aligned),
        which the post-processing of saved predictions is fitted on."""
        raise AbawError(f"the {self.name} track has no post-processing of saved predictions")

    def validation_set(self, data_root: Path, predicted: Sequence[str]
                       ) -> tuple[list[str], Any, Any]:
        """What saved validation predictions of the images ``predicted`` are fitted and
        scored on: the prediction rows' images, the truth (:class:`abaw.postprocess.Labels`)
        and, for each truth row, its prediction row (``None``: the truth's rows are the
        prediction rows, in the order of the images returned). Default:
        :meth:`validation_truth`."""
        images, truth = self.validation_truth(data_root)
        return images, truth, None

    def prediction_writer(self) -> Any:
        """A prediction writer (:mod:`abaw.training.writer`) to write saved predictions."""
        raise AbawError(f"the {self.name} track has no post-processing of saved predictions")


# --- the steps --------------------------------------------------------------------------------


def parser(challenge: Challenge) -> argparse.ArgumentParser:
    """The recipe's command line: the common options, then the track's own."""
    p = argparse.ArgumentParser(prog=f"make {challenge.name}", description=challenge.description)
    p.add_argument("--data", help=f"real {challenge.name.upper()} data folder (default: the "
                                  f"embedded synthetic data, generated under {SYNTH_DIR})")
    p.add_argument("--test-images", help="folder of the test images (default: under --data)")
    p.add_argument("--config", action="append", default=None,
                   help=f"training config (YAML): an overlay stacked on the {BASE_CONFIG} in its "
                        f"folder (or the track's, when its folder has none); repeat to stack "
                        f"more (default: {challenge.base_config} alone)")
    p.add_argument("--run", help="run name (default: the last config's stem, 'default' for "
                                 "the base config, plus the embedded data size if not default)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run of that name")
    p.add_argument("--synth-size", default="default", choices=list(SIZES),
                   help="size of the embedded data (tiny: seconds, for smoke tests)")
    p.add_argument("--seed", type=non_negative_int, default=0,
                   help="seed of the embedded data (0 or more)")
    challenge.add_arguments(p)
    p.add_argument("overrides", nargs=argparse.REMAINDER,
                   help="after '--': LightningCLI overrides, e.g. -- --trainer.max_epochs 2")
    return p


def parse_args(challenge: Challenge, argv: Sequence[str] | None) -> argparse.Namespace:
    args = parser(challenge).parse_args(None if argv is None else list(argv))
    if args.overrides and args.overrides[0] == "--":
        args.overrides = args.overrides[1:]
    return args


def config_files(challenge: Challenge, given: Sequence[str] | None) -> list[Path]:
    """The stacked configs: a track's ``base.yaml``, then the given overlays (each must exist).

    No config given: ``configs/<challenge>/base.yaml``. Otherwise the base is the
    ``base.yaml`` beside the first overlay, put first unless the first file is a base itself;
    an overlay kept elsewhere (a folder without a ``base.yaml``, e.g. the user's own) stacks on
    ``configs/<challenge>/base.yaml``.
    """
    track_base = challenge.base_config
    files = [Path(c) for c in (given or [])] or [track_base]
    if files[0].name != BASE_CONFIG:
        beside = files[0].with_name(BASE_CONFIG)
        files.insert(0, beside if beside.is_file() else track_base)
    for path in files:
        if not path.is_file():
            raise AbawError(f"{path}: config file not found")
    return files


def prepare(challenge: Challenge, args: argparse.Namespace) -> Run:
    """Check the options, find or generate the data, name the run, make its folders."""
    configs = config_files(challenge, args.config)
    steps = Steps()
    synth = None
    if args.data is None:
        with steps.step("embedded data"):
            synth = challenge.synthetic_data(args)
        data_root = synth / challenge.synth_subdir
    else:
        data_root = Path(args.data).expanduser()
        for name in challenge.required:
            if not (data_root / name).exists():
                raise AbawError(f"{data_root / name}: not found (is --data the "
                                f"{challenge.name.upper()} folder?)")
    stem = DEFAULT_RUN if len(configs) == 1 else configs[-1].stem
    name = args.run
    if not name:
        name = challenge.default_run_name(args, stem)
        if synth is not None and args.synth_size != "default":
            name = f"{name}-{args.synth_size}"
    run_dir = Path("runs") / challenge.name / name
    sub_dir = Path("submissions") / challenge.name / name
    if args.fresh:
        for folder in (run_dir, sub_dir):
            if folder.exists():
                shutil.rmtree(folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    sub_dir.mkdir(parents=True, exist_ok=True)
    run = Run(challenge, args, configs, name, data_root, synth, run_dir, sub_dir, steps)
    run.report.update({"run": name, "challenge": challenge.name, "run_dir": str(run_dir),
                       "config": " + ".join(map(str, configs)), "data": str(data_root)})
    challenge.check(run)
    return run


def build(run: Run) -> Any:
    """Parse the stacked configs and overrides once; the instantiated LightningCLI."""
    from abaw.training.cli import build_cli

    args = [a for c in run.configs for a in ("--config", str(c))]
    args += ["--data.data_root", str(run.data_root),
             "--trainer.default_root_dir", str(run.run_dir)]
    args += run.challenge.cli_arguments(run) + list(run.args.overrides)
    run.report["cli_arguments"] = args  # rebuilds the model later (challenges.last_mile)
    return build_cli(run.challenge.name, args,
                     prepare=lambda config: run.challenge.prepare_config(run, config))


def earlier_train_seconds(run_dir: Path) -> float:
    """The training seconds of a run's earlier sessions (:data:`TRAIN_CLOCK`; 0 if none)."""
    try:
        return float(json.loads((run_dir / TRAIN_CLOCK).read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def train_seconds(report: dict) -> float:
    """The training seconds in a run's ``report.json``: of all its sessions where recorded
    (:func:`fit`), else of its training step."""
    if "train_seconds_all_sessions" in report:
        return report["train_seconds_all_sessions"]
    return next(v for k, v in report["seconds"].items() if k.startswith("train"))


def fit(run: Run, cli: Any) -> Path:
    """``trainer.fit`` (resuming ``last.ckpt``); the best checkpoint (else ``last.ckpt``).

    The training seconds of every session of the run add up in ``<run>/train_seconds.json``
    and go to the report as ``train_seconds_all_sessions``: a run resumed after an
    interruption, or rerun after it finished (which only predicts again), still reports what
    its training cost."""
    last = run.checkpoint_dir / "last.ckpt"
    name = f"train {run.report['config']} → {run.run_dir}"
    earlier = earlier_train_seconds(run.run_dir)
    try:
        with run.steps.step(name):
            resume = str(last) if last.is_file() else None
            if resume:
                print(f"resuming from {last}", flush=True)
            cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=resume)
    finally:
        total = round(earlier + run.steps.seconds.get(name, 0.0), 1)
        run.report["train_seconds_all_sessions"] = total
        if run.run_dir.is_dir():
            atomic_write_text(run.run_dir / TRAIN_CLOCK, json.dumps({"seconds": total}) + "\n")
    best = cli.best_checkpoint_callback.best_model_path
    return Path(best) if best and Path(best).is_file() else last


def predict(cli: Any, checkpoint: Path, split: str, output_dir: Path | None = None,
            postprocess: Path | None = None, **writer_settings: Any) -> Any:
    """``trainer.predict`` of ``split`` ("val" or "test") with ``checkpoint``'s weights.

    The result comes back in memory (:class:`abaw.training.writer.Predictions`); with
    ``output_dir`` the writer also writes ``predictions.npz`` and ``submission.txt`` there.
    ``postprocess``: the JSON the writer applies (none: raw decisions, nothing guessed).
    """
    from pytorch_lightning.callbacks import WeightAveraging

    writer = cli.writer
    writer.output_dir = "" if output_dir is None else str(output_dir)
    writer.postprocess = None if postprocess is None else str(postprocess)
    writer.auto_postprocess = False
    for key, value in writer_settings.items():
        setattr(writer, key, value)
    cli.datamodule.predict_split = split
    # After fit, a weight-averaging callback (EMA, configs/mtl/ema.yaml) would reload the raw
    # training weights ("current_model_state") over the averaged ones the checkpoint holds as
    # its state_dict; predictions must come from the weights that were validated and selected.
    trainer = cli.trainer
    kept = trainer.callbacks
    trainer.callbacks = [c for c in kept if not isinstance(c, WeightAveraging)]
    try:
        trainer.predict(cli.model, datamodule=cli.datamodule, ckpt_path=str(checkpoint),
                        return_predictions=False)
    finally:
        trainer.callbacks = kept
    if writer.result is None:
        raise AbawError(f"predicting {split} gave no result")
    return writer.result


def matched(predictions: Any, truth_names: Sequence[str], truth_path: Path) -> dict[str, Any]:
    """The prediction arrays in the truth's row order (:func:`abaw.scoring.match_rows`)."""
    from abaw.scoring import match_rows

    rows = match_rows(predictions.images, truth_names, "the validation predictions", truth_path)
    return {k: v[rows] for k, v in predictions.arrays.items()}


def save_validation_predictions(run: Run, validation: Any, test: Any) -> dict[str, str]:
    """The raw validation predictions saved beside the test ones, with the validation truth
    row for row where the data hold it (``abaw ensemble``, the post-processing of saved
    predictions and ``report.html`` need no model then); returns both paths."""
    from abaw.reports.files import save_validation

    path = save_validation(run.sub_dir, run.challenge.name, run.data_root, validation.images,
                           validation.arrays)
    return {"validation": str(path), "test": str(test.written["predictions"])}


def validate(run: Run, submission: Path) -> None:
    """``abaw validate``'s check against the official test list; problems stop the run."""
    from abaw.formats.submissions import validate_submission

    problems = validate_submission(run.challenge.name, submission,
                                   test_list=run.challenge.test_list_path(run))
    for problem in problems[:20]:
        print(f"{submission}:{problem.line}: {problem.message}")
    if problems:
        raise AbawError(f"{submission}: {len(problems)} problems; not a valid submission")
    print(f"OK: {submission} would be accepted")


def write_html_report(sub_dir: Path) -> Path | None:
    """``report.html`` beside ``report.json`` (:mod:`abaw.reports.html`); a failure is a
    warning, never the end of a finished run (``abaw report`` rebuilds it)."""
    from abaw.reports.html import write_html

    try:
        return write_html(sub_dir)
    except (AbawError, OSError) as err:
        log.warning("report.html not written: %s (rebuild it with `abaw report %s`)",
                    err, sub_dir)
        return None


def finish(run: Run, submission: Path) -> dict:
    """Hidden-truth test score and oracle (embedded data), ``report.json``, summary table."""
    challenge = run.challenge
    if run.synthetic:
        with run.steps.step("true test score and oracle ceiling (embedded data only)"):
            test = challenge.score_file(submission, challenge.test_truth_path(run)).values
            run.report["test"] = test
            run.report.update(challenge.oracle_report(run, test))
            run.rows += challenge.test_rows(run, test)
    run.report["submission"] = str(submission)
    run.report["seconds"] = {**run.steps.seconds, "total": run.steps.total}
    write_report(run.sub_dir / REPORT_FILE, run.report)
    html = write_html_report(run.sub_dir)
    print("\n" + table(run.rows, challenge.table_header))
    fraction = run.report.get("fraction_of_oracle")
    if fraction:
        print("\nfraction of the oracle ceiling: " + ", ".join(
            f"{split} {value:.1%}" for split, value in fraction.items()))
    print(f"\nsubmission: {submission}\nreport:     {run.sub_dir / REPORT_FILE}"
          + (f"\n            {html}" if html else "") + f"\ntotal time: {run.steps.total:.0f} s")
    return run.report


def run(challenge: Challenge, args: argparse.Namespace) -> dict:
    """The whole pipeline (module docstring); returns the report (also ``report.json``)."""
    setup_logging()
    run_ = prepare(challenge, args)
    cli = build(run_)
    checkpoint = challenge.adapt_checkpoint(run_, cli, fit(run_, cli))
    run_.report["checkpoint"] = str(checkpoint)
    with run_.steps.step("score validation (official metric)"):
        validation = challenge.predict_validation(run_, cli, checkpoint)
        run_.report.update(challenge.score_validation(run_, validation))
    with run_.steps.step("fit the post-processing on validation"):
        post, entries = challenge.fit_postprocess(run_, checkpoint)
        run_.report.update(entries)
    with run_.steps.step("predict the test list and write the submission"):
        test = challenge.predict_test(run_, cli, checkpoint, post)
        submission = test.written["submission"]
        run_.report["postprocess"] = str(post)
        run_.report["predictions"] = save_validation_predictions(run_, validation, test)
    with run_.steps.step("validate the submission"):
        validate(run_, submission)
    return finish(run_, submission)


def guarded(body: Callable[[], Any]) -> tuple[int, Any]:
    """``(0, body())``, or the exit status and ``None`` after printing one line — toolkit
    errors 2, anything unexpected 3 (``ABAW_DEBUG=1`` re-raises); an interruption (130) or a
    SIGTERM (143, never 0) says how to resume. What a recipe or a table of recipes runs in."""
    try:
        return 0, body()
    except AbawError as err:
        print(f"abaw: error: {err}", file=sys.stderr)
        return 2, None
    except KeyboardInterrupt:
        print("abaw: interrupted — rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return INTERRUPTED, None
    except SystemExit as err:  # SIGTERM inside Lightning: not a success
        if not terminated(err):
            raise
        print("abaw: terminated (SIGTERM) — rerun the same command to resume from the last "
              "checkpoint", file=sys.stderr)
        return TERMINATED, None
    except Exception as err:  # a recipe never ends in a bare traceback
        if os.environ.get("ABAW_DEBUG"):
            raise
        print(f"abaw: internal error: {type(err).__name__}: {err}\n"
              "(set ABAW_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return 3, None


def attempt(challenge: Challenge, argv: Sequence[str] | None = None) -> tuple[int, dict | None]:
    """Parse the recipe's options and run it (:func:`guarded`): ``(0, report)``, or the exit
    status and ``None`` after printing one line."""
    return guarded(lambda: run(challenge, parse_args(challenge, argv)))


def finished_report(challenge: Challenge, run: str) -> dict | None:
    """The ``report.json`` of a finished run of the embedded data (one with a hidden-truth
    test score) under ``submissions/<challenge>/<run>/``; ``None`` otherwise."""
    path = Path("submissions") / challenge.name / run / REPORT_FILE
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return report if isinstance(report, dict) and report.get("test") else None


def attempt_seeds(challenge: Challenge, argv: Sequence[str], run: str,
                  seeds: Sequence[int], reuse: bool = False,
                  train: bool = True) -> list[tuple[int, int, dict | None]]:
    """:func:`attempt` once per seed: run ``<run>-s<seed>`` with ``--seed_everything <seed>``.

    ``argv`` is a recipe command line without ``--run`` (recipe options, then optionally
    ``--`` and LightningCLI overrides). Returns ``(seed, status, report)`` per seed; a seed
    whose run was interrupted resumes from its checkpoint, so a rerun of a table costs only
    the seeds that did not finish; an interruption stops every seed (``KeyboardInterrupt``
    again, after :func:`attempt`'s line). ``reuse``: a seed whose run finished
    (:func:`finished_report`) is not run again, its report is read (never with ``--fresh``);
    ``train=False`` (with ``reuse``): only finished runs are read, the others are left out.
    """
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    recipe, overrides = argv[:split], argv[split + 1:]
    results = []
    for seed in seeds:
        name = f"{run}-s{seed}"
        report = finished_report(challenge, name) if reuse and "--fresh" not in recipe else None
        if report is not None:
            print(f"{name}: finished before, reusing submissions/{challenge.name}/{name}/"
                  f"{REPORT_FILE}", flush=True)
            results.append((seed, 0, report))
            continue
        if not train:
            continue
        status, report = attempt(challenge, [*recipe, "--run", name, "--",
                                             *overrides, "--seed_everything", str(seed)])
        if status in STOPPED:
            raise KeyboardInterrupt
        results.append((seed, status, report))
    return results


def main(challenge: Challenge, argv: Sequence[str] | None = None) -> int:
    """The recipe's exit status (see :func:`attempt`)."""
    return attempt(challenge, argv)[0]


__all__ = ["Challenge", "Run", "Steps", "attempt", "attempt_seeds", "build", "ensure_synthetic_data",
           "finish", "finished_report", "fit", "guarded", "main", "matched", "oracle", "parse_args",
           "predict", "prepare", "run", "save_validation_predictions", "table", "train_seconds",
           "validate", "write_html_report", "write_report"]
