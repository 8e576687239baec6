"""The LSD ablation on the embedded default: ``make lsd-ablation``.

Rows: super-resolution none / compact / x4plus × hand module off / on, every row with the same
budget (``--epochs``, the same class-stratified training subset ``--train-limit``, the same
start ``--init``: the MTL face model by default, ``none`` for the synthetic-only table), each
through the full recipe of :mod:`challenges.lsd` once per seed (``--seeds``, default 42,1,2;
cells ``mean ± std``, verdicts against the first row as in :mod:`abaw.evidence`). Reported: macro F1 on the
real-like validation set and on the hidden-truth test set, beside the oracle ceiling.

x4plus costs seconds per image on a CPU, which is why the ablation trains on a subset by
default; super-resolved images are cached by content, so a rerun costs only the training.
Output: a Markdown table on stdout and in ``submissions/lsd/ablation.md``, the numbers in
``submissions/lsd/ablation.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abaw.evidence import DEFAULT_SEEDS, cell, parse_seeds, slug, verdict
from abaw.fileio import atomic_write_text
from abaw.runner import attempt_seeds, ensure_synthetic_data, oracle, write_report
from abaw.synth.sizes import SIZES
from abaw.tracks.lsd import LSD


def markdown(args: argparse.Namespace, ceiling: dict, results: dict[str, dict]) -> str:
    """The table: ``mean ± std (seeds)`` cells, the test verdict against the first row."""
    lines = [f"Embedded default data, {args.epochs} epochs on a class-stratified subset of "
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make lsd-ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="training epochs for every row")
    p.add_argument("--train-limit", type=int, default=1500,
                   help="class-stratified training subset for every row (0 = all)")
    p.add_argument("--sr", default="none,compact,x4plus", help="SR models to compare")
    p.add_argument("--hands", default="off,on", help="hand-module settings to compare")
    p.add_argument("--init", default="mtl",
                   help="what every row starts from (as make lsd --init: mtl, none or a checkpoint)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seed_everything values, one run each (default 42,1,2)")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--sr-workers", type=int, default=1)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        p.error(str(err))

    ceiling = oracle(ensure_synthetic_data(args.synth_size, 0))["lsd"]
    results: dict[str, dict] = {}
    init = slug(Path(args.init).stem if args.init not in ("mtl", "none") else args.init)
    for sr in args.sr.split(","):
        for hands in args.hands.split(","):
            run = f"ablation-e{args.epochs}-n{args.train_limit}-{init}-sr{sr}-hands{hands}"
            argv_row = ["--sr", sr, "--hands", hands, "--train-limit", str(args.train_limit),
                        "--synth-size", args.synth_size, "--sr-workers", str(args.sr_workers),
                        "--no-detector", "--init", args.init]
            if args.fresh:
                argv_row.append("--fresh")
            argv_row += ["--", "--trainer.max_epochs", str(args.epochs)]
            print(f"\n##### SR {sr}, hands {hands}: python -m challenges.lsd "
                  f"{' '.join(argv_row)} (seeds {args.seeds})", flush=True)
            done = [report for _, _, report in attempt_seeds(LSD, argv_row, run, seeds)
                    if report is not None]
            if len(done) < len(seeds):
                print(f"row SR={sr} hands={hands}: {len(seeds) - len(done)} seed(s) failed",
                      file=sys.stderr)
            if not done:
                continue
            results[f"{sr}/{hands}"] = {
                "sr": sr, "hands": hands,
                "validation": [r["validation"]["f1"] for r in done],
                "validation_with_rule": [r["validation_with_rule"]["f1"] for r in done],
                "test": [r["test"]["f1"] for r in done],
                "test_per_class": [r["test"]["f1_per_class"] for r in done],
                "sr_images_per_second": [(r.get("superres") or {}).get("images_per_second")
                                         for r in done],
                "seconds": [r["seconds"] for r in done]}

    text = markdown(args, ceiling, results)
    print("\n" + text)
    atomic_write_text(Path("submissions/lsd/ablation.md"), text)
    write_report(Path("submissions/lsd/ablation.json"), {"epochs": args.epochs,
                                                          "train_limit": args.train_limit,
                                                          "init": args.init, "seeds": list(seeds),
                                                          "oracle": ceiling, "rows": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
