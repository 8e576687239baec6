"""Pieces every recipe shares: the embedded data, run folders, timed steps, the summary table.

Conventions: a run is named ``<config stem>`` unless ``--run`` says otherwise; its training
state lives in ``runs/<challenge>/<run>/`` (checkpoints, logs, resolved config) and its
leaderboard files and report in ``submissions/<challenge>/<run>/``. Rerunning the same run
resumes from ``last.ckpt`` (a finished run is not retrained); ``--fresh`` starts over.
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
from pathlib import Path

from abaw.fileio import atomic_write_text

#: where the embedded synthetic data is generated (relative to the project root); other
#: sizes get their own folder (``data/synth-tiny``) so they never overwrite each other
SYNTH_DIR = Path("data/synth")


def synth_dir(size: str) -> Path:
    """The folder of the embedded data of one ``--synth-size``."""
    return SYNTH_DIR if size == "default" else SYNTH_DIR.with_name(f"synth-{size}")

log = logging.getLogger("abaw.recipe")


def setup_logging() -> None:
    """Recipe messages on stderr as ``abaw: ...`` (Lightning keeps its own format)."""
    from abaw.log import configure_logging

    configure_logging()
    # The recipes call the LightningCLI in-process on purpose; its "args and sys.argv" notice
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


def ensure_synthetic_data(size: str, seed: int) -> Path:
    """Generate the embedded data (or reuse a complete earlier output); returns its folder."""
    from abaw.synth import generate

    out = synth_dir(size) if seed == 0 else synth_dir(size).with_name(
        f"{synth_dir(size).name}-seed{seed}")
    manifest = generate(out, size=size, seed=seed)
    how = "reused" if manifest.get("reused") else f"generated in {manifest['seconds']['total']} s"
    log.info("embedded synthetic data (%s, seed %d) %s: %s", size, seed, how, out)
    return out


def oracle(out: Path) -> dict:
    """The oracle ceiling of the embedded data (computed once, saved as oracle.json)."""
    from abaw.synth.oracle import oracle_report

    path = out / "oracle.json"
    if path.is_file():
        return json.loads(path.read_text())
    return oracle_report(out, save=True)


def prepare_run(challenge: str, run: str, fresh: bool) -> tuple[Path, Path]:
    """``runs/<challenge>/<run>`` and ``submissions/<challenge>/<run>``; wiped with ``fresh``."""
    run_dir = Path("runs") / challenge / run
    sub_dir = Path("submissions") / challenge / run
    if fresh:
        for folder in (run_dir, sub_dir):
            if folder.exists():
                shutil.rmtree(folder)
    run_dir.mkdir(parents=True, exist_ok=True)
    sub_dir.mkdir(parents=True, exist_ok=True)
    return run_dir, sub_dir


def best_checkpoint(run_dir: Path) -> Path:
    """The best checkpoint ModelCheckpoint kept (falls back to last.ckpt)."""
    ckpts = sorted((run_dir / "checkpoints").glob("best-*.ckpt"), key=os.path.getmtime)
    if ckpts:
        return ckpts[-1]
    return run_dir / "checkpoints" / "last.ckpt"


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


def run_guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Call a recipe: toolkit errors exit 2, anything unexpected exits 3, both as one line
    (``ABAW_DEBUG=1`` re-raises); an interruption says how to resume."""
    from abaw.errors import AbawError

    try:
        return run(args)
    except AbawError as err:
        print(f"abaw: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("abaw: interrupted — rerun the same command to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    except Exception as err:  # a recipe never ends in a bare traceback
        if os.environ.get("ABAW_DEBUG"):
            raise
        print(f"abaw: internal error: {type(err).__name__}: {err}\n"
              "(set ABAW_DEBUG=1 to see the traceback, and please report it)", file=sys.stderr)
        return 3
