"""The LSD ablation on the embedded default: ``make lsd-ablation``.

Rows: super-resolution none / compact / x4plus × hand module off / on, every row with the same
budget (``--epochs``, the same class-stratified training subset ``--train-limit``, same
seed), each through the full recipe of :mod:`challenges.lsd`. Reported: macro F1 on the
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

from abaw.fileio import atomic_write_text
from abaw.runner import attempt, ensure_synthetic_data, oracle, write_report
from abaw.synth.sizes import SIZES
from abaw.tracks.lsd import LSD


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make lsd-ablation", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=4, help="training epochs for every row")
    p.add_argument("--train-limit", type=int, default=1500,
                   help="class-stratified training subset for every row (0 = all)")
    p.add_argument("--sr", default="none,compact,x4plus", help="SR models to compare")
    p.add_argument("--hands", default="off,on", help="hand-module settings to compare")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--sr-workers", type=int, default=1)
    p.add_argument("--fresh", action="store_true")
    args = p.parse_args(argv)

    ceiling = oracle(ensure_synthetic_data(args.synth_size, 0))["lsd"]
    results: dict[str, dict] = {}
    for sr in args.sr.split(","):
        for hands in args.hands.split(","):
            run = f"ablation-e{args.epochs}-n{args.train_limit}-sr{sr}-hands{hands}"
            argv_row = ["--run", run, "--sr", sr, "--hands", hands, "--train-limit",
                        str(args.train_limit), "--synth-size", args.synth_size,
                        "--sr-workers", str(args.sr_workers), "--no-detector"]
            if args.fresh:
                argv_row.append("--fresh")
            argv_row += ["--", "--trainer.max_epochs", str(args.epochs)]
            print(f"\n##### SR {sr}, hands {hands}: python -m challenges.lsd "
                  f"{' '.join(argv_row)}", flush=True)
            status, report = attempt(LSD, argv_row)
            if report is None:
                print(f"row SR={sr} hands={hands} failed (status {status})", file=sys.stderr)
                continue
            results[f"{sr}/{hands}"] = {
                "sr": sr, "hands": hands, "validation": report["validation"]["f1"],
                "validation_with_rule": report["validation_with_rule"]["f1"],
                "test": report["test"]["f1"], "test_per_class": report["test"]["f1_per_class"],
                "sr_images_per_second": (report.get("superres") or {}).get("images_per_second"),
                "seconds": report["seconds"]}

    lines = [f"Embedded default data, {args.epochs} epochs on a class-stratified subset of "
             f"{args.train_limit or 'all'} synthetic training images per row; hand module on = "
             "pasted-hand training of the occlusion head + the reweight decision rule fitted on "
             "validation. Oracle ceiling: validation "
             f"{ceiling['validation']['oracle']:.3f}, test {ceiling['test']['oracle']:.3f}; "
             f"majority class: test {ceiling['test']['trivial_majority']:.3f}.", "",
             "| SR | hand module | val F1 (main head) | val F1 (with rule) | test F1 | test F1 Fear |",
             "|---|---|---|---|---|---|"]
    for r in results.values():
        lines.append(f"| {r['sr']} | {r['hands']} | {r['validation']:.3f} | "
                     f"{r['validation_with_rule']:.3f} | {r['test']:.3f} | "
                     f"{r['test_per_class'][2]:.3f} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    atomic_write_text(Path("submissions/lsd/ablation.md"), text)
    write_report(Path("submissions/lsd/ablation.json"), {"epochs": args.epochs,
                                                          "train_limit": args.train_limit,
                                                          "oracle": ceiling, "rows": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
