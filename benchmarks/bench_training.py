"""Training throughput: Lightning MTL module vs a plain PyTorch loop; data loader vs model.

``python -m benchmarks.bench_training [--quick] [--backbone NAME] [--threads N]`` (also run by
``make bench`` through :mod:`benchmarks.run`, registered as ``training``).

What is compared, and how it is kept fair:

- **Lightning vs plain PyTorch** — :class:`~abaw.training.mtl_module.MtlModule` fitted by a
  bare ``pl.Trainer`` (no logger, checkpoints, progress bar, summary or validation) against
  :class:`PlainMtl`, a hand-written loop over *deep copies of the same modules* (network,
  task weighting, class weights and AU ``pos_weight``): the same forward, the same masked
  losses and uncertainty weighting (the functions the module calls,
  :func:`~abaw.training.mtl_module.mtl_task_losses` and ``weighted_total``), backward, AdamW
  over the same parameter groups and the same warm-up/cosine schedule
  (:func:`abaw.training.optim.adamw_warmup_cosine`), with no Lightning in between. Both
  read the same :class:`~abaw.data.mtl.MtlDataset` (decoded from JPEG and augmented on the
  fly) through the same ``DataLoader`` settings (main process, a seeded sampler drawing
  ``batch_size x steps`` rows with replacement, so a round is one epoch however small the
  data), fp32 on the CPU with the same thread count.
- **Timing** — a round is one ``trainer.fit`` / one pass of the loop over a fresh loader. It
  is timed from the moment the first batch is in hand (the callback's first
  ``on_train_batch_start``; the loop's first iteration) to a timestamp after the last
  optimiser step (``on_train_batch_end``; after ``scheduler.step()``), so start-up
  (``Trainer`` creation, the first batch's loading) is excluded on both sides, while every
  per-step cost (hooks, ``self.log``, loading the next batch) is included. Each side first
  runs ``warmup_steps`` unmeasured steps (one extra round); the measured rounds then
  alternate L P, P L, L P, ... so a change in machine load favours neither side.
- **Statistics** — other processes only ever slow a round down, and on a shared machine
  they do so in bursts (rounds 5x slower than their neighbours are common), so each rate is
  reported as its best round (``timeit``'s convention, the closest to the code's own speed)
  and its median. The Lightning/plain ratio is given two ways: best round over best round,
  and the median of the per-round ratios (the two sides of a round ran back to back, under
  about the same load) with their range; when the two disagree, the machine was too busy.
- **Loader vs model** — the ``DataLoader`` alone (decode + albumentations training
  transforms + collate, no model) at each worker count, rate measured after its first batch
  (worker start-up reported apart), against the model's step rate on a batch already in
  memory: the plain loop's forward + losses + backward + optimiser time only. The loader is
  the bottleneck when it delivers fewer images/s than the model consumes (best vs best).
  With 0 workers loading is serial with the step, so it also costs its share of every
  step; with workers it overlaps the step, but on a small CPU the workers take cores from
  the step, so the rate measured alone is an upper bound.

Data: the embedded synthetic MTL training split at the ``tiny`` size (48 rows of 112 px
crops, seed 0), generated into a temporary folder in under a second; ``--data`` takes any
MTL folder instead. Throughput depends on the image size, not on the number of rows, so the
tiny split measures the same thing as the default one. ``data/synth`` is deliberately not
read: another ``make`` target may regenerate it while the benchmark runs (images vanishing
mid-measurement), and a private copy keeps every run on identical images.
"""

from __future__ import annotations

import argparse
import copy
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, RandomSampler

from benchmarks import Measurement

Result = dict[str, Any]


@dataclass(frozen=True)
class TrainingBenchConfig:
    """Sizes of one benchmark run (defaults: the full run; :data:`QUICK` for ``--quick``)."""

    backbone: str = "resnet18"
    img_size: int = 112  # the official MTL crop side
    batch_size: int = 32
    warmup_steps: int = 5  # unmeasured steps per side (one extra round) before the first round
    rounds: int = 6  # alternating rounds per side (median taken)
    steps_per_round: int = 5  # measured steps per round
    loader_batches: int = 8  # measured loader batches per worker count and round
    loader_workers: tuple[int, ...] = (0, 2)
    augment: str = "medium"  # MtlDataModule's default training augmentation
    seed: int = 0

    @property
    def measured_steps(self) -> int:
        return self.rounds * self.steps_per_round


FULL = TrainingBenchConfig()
QUICK = replace(FULL, warmup_steps=2, rounds=3, steps_per_round=2, loader_batches=4)


# --- data -------------------------------------------------------------------------------------


def synthetic_mtl_root(scratch: Path, size: str = "tiny") -> Path:
    """The embedded MTL data of ``size`` (tiny: under a second), generated into ``scratch``."""
    from abaw.synth import generate
    from abaw.synth.layouts import MTL_DIR

    generate(scratch, size=size, seed=0, progress=False, layouts=(MTL_DIR,))
    return scratch / MTL_DIR


def make_loader(dataset: Dataset, batch_size: int, batches: int, workers: int,
                seed: int) -> DataLoader:
    """Exactly ``batches`` full batches drawn with replacement (one epoch, however small the
    data), in a seeded order; the settings both training sides share."""
    from abaw.data.loaders import collate_skip_unreadable

    sampler = RandomSampler(dataset, replacement=True, num_samples=batch_size * batches,
                            generator=torch.Generator().manual_seed(seed))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=True,
                      num_workers=workers, collate_fn=collate_skip_unreadable)


# --- timing ----------------------------------------------------------------------------------


@dataclass
class TrainingRound:
    """Timestamps of one round: when its first batch was in hand (``start``), when each
    optimiser step ended, how many images each step had (unreadable ones are dropped from a
    batch, so this is counted, not assumed) and each step's own seconds."""

    start: float | None = None
    ends: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)

    def step_done(self, batch: dict[str, torch.Tensor], began: float) -> None:
        self.ends.append(time.perf_counter())
        self.images.append(len(batch["image"]))
        self.step_seconds.append(self.ends[-1] - began)

    @property
    def images_per_s(self) -> float:
        """Every step's images over ``start`` to the last step's end."""
        if self.start is None or not self.ends or self.ends[-1] <= self.start:
            raise ValueError("a round needs at least one step ending after its start")
        return sum(self.images) / (self.ends[-1] - self.start)

    @property
    def step_images_per_s(self) -> list[float]:
        """Each step's images over its own seconds (the batch already in memory)."""
        return [n / t for n, t in zip(self.images, self.step_seconds)]


# --- the plain PyTorch side -------------------------------------------------------------------


class PlainMtl(nn.Module):
    """What :class:`MtlModule` trains, as a plain module: use :meth:`from_module`."""

    def __init__(self, net: nn.Module, weighting: nn.Module, tasks: Sequence[str],
                 expr_class_weight: torch.Tensor | None, au_pos_weight: torch.Tensor | None,
                 hparams: dict[str, Any]) -> None:
        super().__init__()
        self.net = net
        self.weighting = weighting
        self.tasks = tuple(tasks)
        self.expr_class_weight = expr_class_weight
        self.au_pos_weight = au_pos_weight
        self.hp = hparams

    @classmethod
    def from_module(cls, module: Any) -> PlainMtl:
        """Deep copies of ``module``'s network, task weighting and loss weights (the same
        architecture and initial values), with its optimisation hyper-parameters."""
        hp = dict(module.hparams)
        expr = module.expr_class_weight.detach().clone() if hp["expr_class_weights"] else None
        pos = module.au_pos_weight.detach().clone() if hp["au_pos_weight"] else None
        return cls(copy.deepcopy(module.net), copy.deepcopy(module.weighting), module.tasks,
                   expr, pos, hp)

    def training_loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted multi-task loss; a task without a label in the batch adds its exact 0."""
        from abaw.training.mtl_module import mtl_task_losses, weighted_total

        losses, present = mtl_task_losses(
            self.net(batch["image"]), batch, self.tasks,
            expr_class_weight=self.expr_class_weight, au_pos_weight=self.au_pos_weight,
            label_smoothing=self.hp["label_smoothing"],
        )
        return weighted_total(self.weighting, self.tasks, losses, present)

    def optimiser(self, total_steps: int) -> tuple[torch.optim.Optimizer, Any]:
        """AdamW over layer-decay parameter groups and the per-step warm-up/cosine schedule."""
        from abaw.training.mtl_module import weighting_parameter_names
        from abaw.training.optim import adamw_warmup_cosine

        hp = self.hp
        return adamw_warmup_cosine(
            self, lr=hp["lr"], weight_decay=hp["weight_decay"], layer_decay=hp["layer_decay"],
            warmup_fraction=hp["warmup_fraction"], min_lr_ratio=hp["min_lr_ratio"],
            total_steps=total_steps, no_weight_decay=weighting_parameter_names(self),
        )


def plain_round(model: PlainMtl, loader: DataLoader) -> TrainingRound:
    """Train over ``loader``, timing every step (see :class:`TrainingRound`)."""
    optimiser, scheduler = model.optimiser(len(loader))
    model.train()
    timed = TrainingRound()
    for batch in loader:
        if batch is None:
            raise RuntimeError("a whole batch of benchmark images was unreadable")
        begin = time.perf_counter()
        timed.start = begin if timed.start is None else timed.start
        loss = model.training_loss(batch)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        scheduler.step()
        timed.step_done(batch, begin)
    return timed


# --- the Lightning side -----------------------------------------------------------------------


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silence Lightning's start-up banner and its small-data warnings during a fit."""
    names = ("pytorch_lightning", "lightning_fabric", "lightning.pytorch", "lightning.fabric")
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def lightning_round(module: Any, loader: DataLoader, root_dir: Path) -> TrainingRound:
    """Fit ``module`` for ``len(loader)`` steps, timing every step (see :class:`TrainingRound`;
    its step seconds include the hooks run around ``training_step``)."""
    import pytorch_lightning as pl

    class StepClock(pl.Callback):
        def __init__(self) -> None:
            self.timed = TrainingRound()
            self.begin = 0.0

        def on_train_batch_start(self, trainer: Any, module: Any, batch: Any,
                                 batch_idx: int) -> None:
            self.begin = time.perf_counter()
            if self.timed.start is None:
                self.timed.start = self.begin

        def on_train_batch_end(self, trainer: Any, module: Any, outputs: Any, batch: Any,
                               batch_idx: int) -> None:
            if batch is None:
                raise RuntimeError("a whole batch of benchmark images was unreadable")
            self.timed.step_done(batch, self.begin)

    step_clock = StepClock()
    steps = len(loader)
    with _quiet_lightning():
        trainer = pl.Trainer(
            accelerator="cpu", devices=1, precision="32-true", max_steps=steps, logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            num_sanity_val_steps=0, limit_val_batches=0, callbacks=[step_clock],
            default_root_dir=str(root_dir),
        )
        trainer.fit(module, train_dataloaders=loader)
    if trainer.global_step != steps or len(step_clock.timed.ends) != steps:
        raise RuntimeError(f"Lightning ran {trainer.global_step} optimiser steps, expected {steps}")
    return step_clock.timed


# --- measurements -----------------------------------------------------------------------------


def loader_rate(dataset: Dataset, batch_size: int, batches: int, workers: int,
                seed: int) -> tuple[float, float]:
    """(images/s of the loader alone after its first batch, seconds to the first batch)."""
    loader = make_loader(dataset, batch_size, batches + 1, workers, seed)
    start = time.perf_counter()
    iterator = iter(loader)
    next(iterator)
    first = time.perf_counter()
    images = sum(len(batch["image"]) for batch in iterator if batch is not None)
    return images / (time.perf_counter() - first), first - start


def loader_verdict(loader_images_per_s: float, step_images_per_s: float) -> tuple[bool, float]:
    """(is the loader the bottleneck, share of a serial step spent loading).

    The loader is the bottleneck when it delivers fewer images/s than the model consumes.
    The share is what loading costs when done in the main process (0 workers): time per
    image ``1/loader`` out of ``1/loader + 1/step``.
    """
    load, compute = 1.0 / loader_images_per_s, 1.0 / step_images_per_s
    return loader_images_per_s < step_images_per_s, load / (load + compute)


@contextmanager
def _torch_threads(threads: int | None) -> Iterator[int]:
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield torch.get_num_threads()
    finally:
        torch.set_num_threads(previous)


def benchmark(config: TrainingBenchConfig = FULL, data_root: str | Path | None = None,
              threads: int | None = None) -> Result:
    """Run every measurement of the module docstring; a flat dict of the numbers.

    ``data_root`` is an MTL folder in the official layout (default: the embedded synthetic
    data, see :func:`synthetic_mtl_root`); ``threads`` the torch intra-op threads of both
    sides (default: the current setting).
    """
    from abaw.data.mtl import MtlDataModule
    from abaw.training.mtl_module import MtlModule

    cfg = config
    with tempfile.TemporaryDirectory(prefix="abaw-bench-training-") as folder, \
            _torch_threads(threads) as n_threads:
        scratch = Path(folder)
        root = Path(data_root) if data_root is not None else synthetic_mtl_root(scratch / "data")
        data = MtlDataModule(data_root=str(root), img_size=cfg.img_size, cache=False,
                             batch_size=cfg.batch_size, num_workers=0, augment=cfg.augment)
        data.setup("fit")
        dataset = data.datasets["train"]

        torch.manual_seed(cfg.seed)
        module = MtlModule(backbone=cfg.backbone, img_size=cfg.img_size,
                           label_stats=data.label_stats)
        plain = PlainMtl.from_module(module)

        def lightning(steps: int, seed: int) -> float:
            loader = make_loader(dataset, cfg.batch_size, steps, 0, seed)
            timed = lightning_round(module, loader, scratch / "lightning")
            if torch.get_num_threads() != n_threads:
                raise RuntimeError(f"Lightning changed torch threads to {torch.get_num_threads()}")
            return timed.images_per_s

        # the model's own step rate: the plain loop's steps minus loading (Lightning's step
        # hooks run inside its step, so its steps are not a clean model-only time)
        step_rates: list[float] = []

        def plain_loop(steps: int, seed: int) -> float:
            timed = plain_round(plain, make_loader(dataset, cfg.batch_size, steps, 0, seed))
            step_rates.extend(timed.step_images_per_s)
            return timed.images_per_s

        sides = {"lightning": lightning, "plain": plain_loop}
        if cfg.warmup_steps:
            for side in sides.values():
                side(cfg.warmup_steps, cfg.seed + cfg.rounds)
            step_rates.clear()
        rates: dict[str, list[float]] = {name: [] for name in sides}
        for r in range(cfg.rounds):
            order = ("lightning", "plain") if r % 2 == 0 else ("plain", "lightning")
            for name in order:  # L P, P L, L P, ...: drifting load favours neither side
                rates[name].append(sides[name](cfg.steps_per_round, cfg.seed + r))

        loader_rates: dict[int, list[float]] = {w: [] for w in cfg.loader_workers}
        startup: dict[int, list[float]] = {w: [] for w in cfg.loader_workers}
        for r in range(cfg.rounds):
            for workers in cfg.loader_workers:
                rate, first = loader_rate(dataset, cfg.batch_size, cfg.loader_batches, workers,
                                          cfg.seed + r)
                loader_rates[workers].append(rate)
                startup[workers].append(first)

    result: Result = {
        **{k: v for k, v in asdict(cfg).items() if k != "loader_workers"},
        "measured_steps": cfg.measured_steps,
        "threads": n_threads,
        "data_root": str(root),
        "train_rows": len(dataset),
        "loader_workers": list(cfg.loader_workers),
    }
    for name, per_round in rates.items():
        result[f"{name}_images_per_s"] = max(per_round)
        result[f"{name}_images_per_s_median"] = statistics.median(per_round)
        result[f"{name}_rounds_images_per_s"] = per_round
    result["lightning_over_plain_best"] = max(rates["lightning"]) / max(rates["plain"])
    # paired: each round's two sides ran back to back, under about the same machine load
    paired = [lr / pr for lr, pr in zip(rates["lightning"], rates["plain"])]
    result["lightning_over_plain_paired"] = statistics.median(paired)
    result["lightning_over_plain_paired_min"] = min(paired)
    result["lightning_over_plain_paired_max"] = max(paired)
    step_rate = max(step_rates)
    result["step_images_per_s"] = step_rate
    result["step_images_per_s_median"] = statistics.median(step_rates)
    for workers in cfg.loader_workers:
        key = f"loader_w{workers}"
        rate = max(loader_rates[workers])
        bottleneck, share = loader_verdict(rate, step_rate)
        result[f"{key}_images_per_s"] = rate
        result[f"{key}_images_per_s_median"] = statistics.median(loader_rates[workers])
        result[f"{key}_first_batch_s"] = statistics.median(startup[workers])
        result[f"{key}_bottleneck"] = bottleneck
        result[f"{key}_serial_share"] = share
    return result


# --- reporting --------------------------------------------------------------------------------


def format_report(result: Result) -> str:
    """The numbers of :func:`benchmark` as a plain-text table with a verdict per worker count."""
    setting = (f"{result['backbone']}, {result['img_size']} px, batch {result['batch_size']}, "
               f"fp32 CPU, {result['threads']} threads, {result['measured_steps']} measured steps "
               f"after {result['warmup_steps']} warm-up ({result['rounds']} alternating rounds), "
               f"data {result['data_root']} ({result['train_rows']} train rows)")

    def rate_row(what: str, key: str, note: str) -> tuple[str, str, str, str]:
        return what, f"{result[key]:.1f}", f"{result[key + '_median']:.1f}", note

    def per_round(key: str) -> str:
        return "rounds " + ", ".join(f"{v:.1f}" for v in result[key])

    low = result["lightning_over_plain_paired_min"]
    high = result["lightning_over_plain_paired_max"]
    rows = [("images/s", "best", "median", "note"),
            rate_row("Lightning MtlModule (pl.Trainer)", "lightning_images_per_s",
                     per_round("lightning_rounds_images_per_s")),
            rate_row("plain PyTorch loop", "plain_images_per_s",
                     per_round("plain_rounds_images_per_s")),
            ("ratio Lightning / plain", f"{result['lightning_over_plain_best']:.3f}",
             f"{result['lightning_over_plain_paired']:.3f}",
             f"best: of best rounds; median: of per-round pairs ({low:.2f}-{high:.2f}); "
             "1 = no overhead"),
            rate_row("model train step, batch in memory", "step_images_per_s",
                     "forward + losses + backward + AdamW")]
    for workers in result["loader_workers"]:
        key = f"loader_w{workers}"
        verdict = "BOTTLENECK" if result[f"{key}_bottleneck"] else "not the bottleneck"
        note = f"{verdict} (best vs best); first batch {result[f'{key}_first_batch_s']:.2f} s"
        if workers == 0:
            note += f"; {100 * result[f'{key}_serial_share']:.0f}% of each serial step"
        rows.append(rate_row(f"DataLoader alone, {workers} workers", f"{key}_images_per_s", note))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join([f"training throughput: {setting}", *lines])


def measurements(result: Result) -> list[Measurement]:
    """The run.py rows, from the best rounds: seconds per batch; ``ref/ours`` is then
    Lightning/plain images/s, and loader/model images/s for the loader rows (< 1: the loader
    is the bottleneck)."""
    batch = result["batch_size"]
    where = f"{result['backbone']}, batch {batch}, {result['threads']} threads"
    lightning, plain = result["lightning_images_per_s"], result["plain_images_per_s"]
    low = result["lightning_over_plain_paired_min"]
    high = result["lightning_over_plain_paired_max"]
    rows = [Measurement(
        f"train step, Lightning MtlModule ({where})", batch / lightning,
        "plain PyTorch loop", batch / plain,
        f"best rounds: Lightning {lightning:.1f} img/s, plain {plain:.1f} img/s; paired median "
        f"ratio {result['lightning_over_plain_paired']:.2f} ({low:.2f}-{high:.2f})",
    )]
    step = result["step_images_per_s"]
    for workers in result["loader_workers"]:
        key = f"loader_w{workers}"
        verdict = "BOTTLENECK" if result[f"{key}_bottleneck"] else "not the bottleneck"
        rows.append(Measurement(
            f"DataLoader alone, {workers} workers (batch {batch})",
            batch / result[f"{key}_images_per_s"], "model step, batch in memory", batch / step,
            f"loader {result[f'{key}_images_per_s']:.0f} img/s vs model {step:.1f} img/s: "
            f"{verdict}",
        ))
    return rows


def run(quick: bool = False) -> list[Measurement]:
    """The :mod:`benchmarks.run` entry point: prints the detailed table, returns its rows."""
    result = benchmark(QUICK if quick else FULL)
    print(format_report(result), file=sys.stderr, flush=True)
    return measurements(result)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_training",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps (about 30 s)")
    parser.add_argument("--backbone", default=FULL.backbone, help="backbone registry name")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of both sides (default: torch's setting)")
    parser.add_argument("--data", default=None,
                        help="MTL data folder (default: the embedded synthetic data)")
    args = parser.parse_args(argv)
    config = replace(QUICK if args.quick else FULL, backbone=args.backbone)
    print(format_report(benchmark(config, args.data, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
