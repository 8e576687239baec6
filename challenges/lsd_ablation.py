"""The LSD ablation on the embedded default: ``make lsd-ablation``.

Rows: super-resolution none / compact / x4plus × hand module off / on, every row with the same
budget (``--epochs``, by default ``make lsd``'s ``trainer.max_epochs``; the same
class-stratified training subset ``--train-limit``; the same start ``--init``: the MTL face
model by default, ``none`` for the synthetic-only table), each through the full recipe of
:mod:`challenges.lsd` once per seed (``--seeds``, default 42,1,2; cells ``mean ± std``,
verdicts against the first row as in :mod:`abaw.evidence`). Reported: macro F1 on the
real-like validation set and on the hidden-truth test set, beside the oracle ceiling.

x4plus costs seconds per image on a CPU, which is why the ablation trains on a subset by
default; super-resolved images are cached by content, so a rerun costs only the training.
Output: a Markdown table on stdout and in ``submissions/lsd/ablation.md``, the numbers in
``submissions/lsd/ablation.json``. A run that finished before is read, not rerun;
``make ablate`` (:mod:`challenges.ablate`) trains its LSD rows with :func:`train_row`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from abaw.argtypes import config_epochs, non_negative_int, positive_int
from abaw.evidence import DEFAULT_SEEDS, cell, parse_seeds, slug, verdict
from abaw.fileio import atomic_write_text
from abaw.runner import (
    attempt_seeds,
    ensure_synthetic_data,
    guarded,
    oracle,
    train_seconds,
    write_report,
)
from abaw.synth.sizes import SIZES
from abaw.tracks.lsd import LSD


def markdown(args: argparse.Namespace, ceiling: dict, results: dict[str, dict]) -> str:
    """The table: ``mean ± std (seeds)`` cells, the test verdict against the first row."""
    size = getattr(args, "img_size", None)
    lines = [f"Embedded default data, {args.epochs} epochs"
             + (f" at {size} px" if size else "") + " on a class-stratified subset of "
             f"{args.train_limit or 'all'} synthetic training images per row, init "
             f"{args.init}; hand module on = pasted-hand training of the occlusion head + the "
             "reweight decision rule fitted on validation. Cells mean ± std (seeds); a verdict "
             "needs a gain beyond two standard errors of the difference. Oracle ceiling: "
             f"validation {ceiling['validation']['oracle']:.3f}, test "
             f"{ceiling['test']['oracle']:.3f}; majority class: test "
             f"{ceiling['test']['trivial_majority']:.3f}.", "",
             "| SR | hand module | val F1 (main head) | val F1 (with rule) | test F1 | "
             "test F1 Fear | verdict (test) |", "|---|---|---|---|---|---|---|"]
    reference = next(iter(results.values()), None)
    for r in results.values():
        judged = ("reference" if r is reference
                  else verdict(r["test"], reference["test"]))
        lines.append(f"| {r['sr']} | {r['hands']} | {cell(r['validation'])} | "
                     f"{cell(r['validation_with_rule'])} | {cell(r['test'])} | "
                     f"{cell([c[2] for c in r['test_per_class']])} | {judged} |")
    return "\n".join(lines) + "\n"


def run_name(sr: str, hands: str, *, init: str, epochs: int, train_limit: int,
             img_size: int | None = None, prefix: str = "ablation") -> str:
    """The run name of one row (the seed is added by :func:`abaw.runner.attempt_seeds`)."""
    init_tag = slug(Path(init).stem if init not in ("mtl", "none") else init)
    size_tag = "" if img_size is None else f"-px{img_size}"
    return f"{prefix}-e{epochs}-n{train_limit}-{init_tag}{size_tag}-sr{sr}-hands{hands}"


def train_row(sr: str, hands: str, *, init: str, epochs: int, train_limit: int,
              seeds: Sequence[int], synth_size: str = "default", sr_workers: int = 1,
              img_size: int | None = None, fresh: bool = False, prefix: str = "ablation",
              overrides: Sequence[str] = (), train: bool = True) -> dict | None:
    """Train one row (super-resolution ``sr`` × hand module ``hands``) once per seed through
    the LSD recipe (no MediaPipe pass: the hand module's rule reads the occlusion head); a
    run that finished before is read, not rerun (unless ``fresh``); ``train=False`` only reads
    the finished runs. ``img_size``: the input
    side (default: the config's), also what the training images are super-resolved to;
    ``overrides``: LightningCLI overrides added to every seed's run. The row's results, or
    ``None`` when no seed finished."""
    run = run_name(sr, hands, init=init, epochs=epochs, train_limit=train_limit,
                   img_size=img_size, prefix=prefix)
    argv_row = ["--sr", sr, "--hands", hands, "--train-limit", str(train_limit),
                "--synth-size", synth_size, "--sr-workers", str(sr_workers),
                "--no-detector", "--init", init] + (["--fresh"] if fresh else [])
    argv_row += ["--", "--trainer.max_epochs", str(epochs), *overrides]
    if img_size is not None:
        argv_row += ["--data.img_size", str(img_size)]
    if train:
        print(f"\n##### SR {sr}, hands {hands}, init {init}: python -m challenges.lsd "
              f"{' '.join(argv_row)} (seeds {','.join(map(str, seeds))})", flush=True)
    finished = [(seed, report) for seed, _, report in attempt_seeds(
        LSD, argv_row, run, seeds, reuse=True, train=train) if report is not None]
    done = [report for _, report in finished]
    if train and len(done) < len(seeds):
        print(f"row SR={sr} hands={hands}: {len(seeds) - len(done)} seed(s) failed",
              file=sys.stderr)
    if not done:
        return None
    return {"sr": sr, "hands": hands, "init": init, "seeds": [seed for seed, _ in finished],
            "runs": [r["run"] for r in done],
            "validation": [r["validation"]["f1"] for r in done],
            "validation_with_rule": [r["validation_with_rule"]["f1"] for r in done],
            "test": [r["test"]["f1"] for r in done],
            "test_per_class": [r["test"]["f1_per_class"] for r in done],
            "sr_images_per_second": [(r.get("superres") or {}).get("images_per_second")
                                     for r in done],
            "seconds": [r["seconds"] for r in done],
            "train_seconds": [train_seconds(r) for r in done]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make lsd-ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="training epochs for every row (default: make lsd's, trainer.max_epochs "
                        "of configs/lsd/base.yaml)")
    p.add_argument("--train-limit", type=non_negative_int, default=1500,
                   help="class-stratified training subset for every row (0 = all)")
    p.add_argument("--sr", default="none,compact,x4plus", help="SR models to compare")
    p.add_argument("--hands", default="off,on", help="hand-module settings to compare")
    p.add_argument("--init", default="mtl",
                   help="what every row starts from (as make lsd --init: mtl, none or a checkpoint)")
    p.add_argument("--img-size", type=positive_int,
                   help="input side of every row, also the super-resolution target "
                        "(default: the config's, 64)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seed_everything values, one run each (default 42,1,2)")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--sr-workers", type=positive_int, default=1)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = config_epochs(p, LSD)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        p.error(str(err))

    return guarded(lambda: write_table(args, seeds))[0]


def write_table(args: argparse.Namespace, seeds: Sequence[int]) -> None:
    ceiling = oracle(ensure_synthetic_data(args.synth_size, 0, layouts=("lsd",)), "lsd")
    results: dict[str, dict] = {}
    for sr in args.sr.split(","):
        for hands in args.hands.split(","):
            row = train_row(sr, hands, init=args.init, epochs=args.epochs,
                            train_limit=args.train_limit, seeds=seeds,
                            synth_size=args.synth_size, sr_workers=args.sr_workers,
                            img_size=args.img_size, fresh=args.fresh)
            if row is not None:
                results[f"{sr}/{hands}"] = row

    text = markdown(args, ceiling, results)
    print("\n" + text)
    atomic_write_text(Path("submissions/lsd/ablation.md"), text)
    write_report(Path("submissions/lsd/ablation.json"), {"epochs": args.epochs,
                                                          "train_limit": args.train_limit,
                                                          "init": args.init,
                                                          "img_size": args.img_size,
                                                          "seeds": list(seeds),
                                                          "oracle": ceiling, "rows": results})


if __name__ == "__main__":
    sys.exit(main())
