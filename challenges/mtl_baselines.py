"""The MTL quality table on the embedded default: ``make mtl-baselines``.

Every trained row gets the same budget (``--epochs``, default 3, same data, same seed, same
batch size) and goes through the full recipe of :mod:`challenges.mtl` (official validation
score, AU thresholds tuned on validation, test submission scored against the hidden truth).
Rows: the majority/mean predictor; each single-task model (scored on its own term); the
multi-task default; each of the three backbone families; fixed vs uncertainty weighting; the
AU-relation graph head vs the linear head. The oracle ceiling is printed beside them.

Output: a Markdown table on stdout and in ``submissions/mtl/baselines.md``, the numbers in
``submissions/mtl/baselines.json``. Rerunning resumes finished rows from their checkpoints.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from abaw.fileio import atomic_write_text
from abaw.runner import attempt, ensure_synthetic_data, oracle, write_report
from abaw.synth.sizes import SIZES
from abaw.tracks.mtl import MTL

#: name -> (config overlay on base.yaml, extra LightningCLI overrides, term the row is judged on)
ROWS: dict[str, tuple[str, list[str], str]] = {
    "multi-task (default)": ("configs/mtl/base.yaml", [], "P_MTL"),
    "VA only": ("configs/mtl/base.yaml", ["--data.tasks", "[va]"], "VA"),
    "EXPR only": ("configs/mtl/base.yaml", ["--data.tasks", "[expr]"], "EXPR"),
    "AU only": ("configs/mtl/base.yaml", ["--data.tasks", "[au]"], "AU"),
    "fixed weighting (1,1,1)": ("configs/mtl/base.yaml", ["--model.weighting", "fixed"], "P_MTL"),
    "AU graph head": ("configs/mtl/au_graph.yaml", [], "P_MTL"),
    "ViT (vit_tiny_mae, random init)": ("configs/mtl/vit_mae.yaml", [], "P_MTL"),
    "EfficientNet-B0": ("configs/mtl/efficientnet_b0.yaml", [], "P_MTL"),
    "CNN-transformer hybrid": ("configs/mtl/hybrid.yaml", [], "P_MTL"),
}


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")


def _terms(score: dict) -> dict[str, float]:
    return {"P_MTL": score["P_MTL"], "VA": (score["ccc_valence"] + score["ccc_arousal"]) / 2,
            "EXPR": score["f1_expression"], "AU": score["f1_au"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make mtl-baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=3, help="training epochs for every row")
    p.add_argument("--rows", help="comma-separated subset of row names (default: all)")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--fresh", action="store_true", help="retrain every row from scratch")
    args = p.parse_args(argv)
    rows = ROWS if not args.rows else {k: ROWS[k] for k in args.rows.split(",")}

    ceiling = oracle(ensure_synthetic_data(args.synth_size, 0))["mtl"]
    results: dict[str, dict] = {
        "oracle ceiling": {"validation": _terms(ceiling["validation"]["oracle"]),
                           "test": _terms(ceiling["test"]["oracle"]), "judged_on": "P_MTL"},
        "majority class / mean VA": {
            "validation": _terms(ceiling["validation"]["trivial_majority"]),
            "test": _terms(ceiling["test"]["trivial_majority"]), "judged_on": "P_MTL"},
    }
    for name, (config, overrides, judged_on) in rows.items():
        run = f"baseline-e{args.epochs}-{_slug(name)}"
        argv_row = ["--config", config, "--run", run, "--synth-size", args.synth_size]
        if args.fresh:
            argv_row.append("--fresh")
        argv_row += ["--", "--trainer.max_epochs", str(args.epochs), *overrides]
        print(f"\n##### {name}: python -m challenges.mtl {' '.join(argv_row)}", flush=True)
        status, report = attempt(MTL, argv_row)
        if report is None:
            print(f"row {name!r} failed (status {status}); continuing", file=sys.stderr)
            continue
        results[name] = {"validation": _terms(report["validation_tuned"]),
                         "test": _terms(report["test"]), "judged_on": judged_on,
                         "train_seconds": next(v for k, v in report["seconds"].items()
                                               if k.startswith("train"))}

    lines = [f"Embedded default data, {args.epochs} epochs per trained row, AU thresholds tuned "
             "on validation. Single-task rows are judged on their own term (others are blank).",
             "", "| row | val P_MTL | test P_MTL | test VA (mean CCC) | test EXPR F1 | test AU F1 "
             "| train s |", "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        t, v = r["test"], r["validation"]
        own = r["judged_on"]

        def cell(key: str, scores: dict, own: str = own) -> str:
            return f"{scores[key]:.3f}" if own in ("P_MTL", key) else "–"
        lines.append(f"| {name} | {cell('P_MTL', v)} | {cell('P_MTL', t)} | {cell('VA', t)} | "
                     f"{cell('EXPR', t)} | {cell('AU', t)} | {r.get('train_seconds', '–')} |")
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    atomic_write_text(Path("submissions/mtl/baselines.md"), text)
    write_report(Path("submissions/mtl/baselines.json"), {"epochs": args.epochs, "rows": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
