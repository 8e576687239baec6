"""The MTL tables on the embedded default: ``make mtl-baselines`` and ``make mtl-sweep``.

Every trained row gets the same budget (``--epochs``, default ``make mtl``'s own:
``trainer.max_epochs`` of ``configs/mtl/base.yaml``; same data, same batch size)
and goes through the full recipe of :mod:`challenges.mtl` (official validation score, AU
thresholds tuned on validation, test submission scored against the hidden truth), once per
seed (``--seeds``, default 42,1,2). A cell is ``mean ± std (seeds)``; the verdict compares a
row with the default row (:mod:`abaw.evidence`: helps / hurts only beyond two standard errors
of the difference, otherwise no evidence).

Tables (``--table``):

- ``baselines``: the majority/mean predictor; each single-task model (judged on its own term
  against the multi-task default's same term); the multi-task default; each of the three
  backbone families; fixed vs uncertainty weighting; the AU-relation graph head.
- ``sweep``: how the default was chosen — resolution, backbone, learning rate, epochs,
  augmentation, task weighting and EMA of weights, one change from the default per row.

Output: a Markdown table on stdout and in ``submissions/mtl/<table>.md``, the numbers in
``submissions/mtl/<table>.json``. Rerunning reads the runs that finished (their
``report.json``) and resumes the others from their checkpoints, so ``--rows`` and ``--seeds``
can grow a table a piece at a time; ``make ablate`` (:mod:`challenges.ablate`) trains its MTL
rows with :func:`train_row` under the same run names.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from abaw.argtypes import config_epochs, positive_int
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
from abaw.tracks.mtl import MTL

DEFAULT_ROW = "multi-task (default)"
BASE = "configs/mtl/base.yaml"

#: table -> row name -> (config overlay, extra LightningCLI overrides, term the row is judged on)
TABLES: dict[str, dict[str, tuple[str, list[str], str]]] = {
    "baselines": {
        DEFAULT_ROW: (BASE, [], "P_MTL"),
        "VA only": (BASE, ["--data.tasks", "[va]"], "VA"),
        "EXPR only": (BASE, ["--data.tasks", "[expr]"], "EXPR"),
        "AU only": (BASE, ["--data.tasks", "[au]"], "AU"),
        "fixed weighting (1,1,1)": (BASE, ["--model.weighting", "fixed"], "P_MTL"),
        "AU graph head": ("configs/mtl/au_graph.yaml", [], "P_MTL"),
        "ViT (vit_tiny_mae, random init)": ("configs/mtl/vit_mae.yaml", [], "P_MTL"),
        "EfficientNet-B0": ("configs/mtl/efficientnet_b0.yaml", [], "P_MTL"),
        "CNN-transformer hybrid": ("configs/mtl/hybrid.yaml", [], "P_MTL"),
    },
    "sweep": {
        DEFAULT_ROW: (BASE, [], "P_MTL"),
        "80 px": (BASE, ["--data.img_size", "80"], "P_MTL"),
        "96 px": (BASE, ["--data.img_size", "96"], "P_MTL"),
        "ResNet-10-T": (BASE, ["--model.backbone", "timm:resnet10t"], "P_MTL"),
        "RegNetX-200MF": (BASE, ["--model.backbone", "timm:regnetx_002"], "P_MTL"),
        "lr 0.001": (BASE, ["--model.lr", "0.001"], "P_MTL"),
        "lr 0.004": (BASE, ["--model.lr", "0.004"], "P_MTL"),
        "augment none": (BASE, ["--data.augment", "none"], "P_MTL"),
        "augment medium": (BASE, ["--data.augment", "medium"], "P_MTL"),
        "fixed weighting (1,1,1)": (BASE, ["--model.weighting", "fixed"], "P_MTL"),
        "EMA of weights (0.99)": ("configs/mtl/ema.yaml", [], "P_MTL"),
    },
}


def select_rows(text: str, rows: dict[str, tuple]) -> dict[str, tuple]:
    """The rows named in ``text``: comma-separated row names or their slugs. A name may hold
    commas itself ("fixed weighting (1,1,1)"), so the longest run of comma-separated pieces
    that names a row is taken first; spaces around the commas do not matter. An unknown
    piece raises ``KeyError`` with it."""
    import re

    def norm(name: str) -> str:
        return re.sub(r"\s*,\s*", ",", name.strip())

    known = {norm(name): name for name in rows} | {slug(name): name for name in rows}
    pieces = text.split(",")
    chosen: list[str] = []
    start = 0
    while start < len(pieces):
        for end in range(len(pieces), start, -1):
            name = known.get(norm(",".join(pieces[start:end])))
            if name is not None:
                chosen.append(name)
                start = end
                break
        else:
            raise KeyError(pieces[start].strip())
    return {name: rows[name] for name in chosen}


def _terms(score: dict) -> dict[str, float]:
    return {"P_MTL": score["P_MTL"], "VA": (score["ccc_valence"] + score["ccc_arousal"]) / 2,
            "EXPR": score["f1_expression"], "AU": score["f1_au"]}


def markdown(table: str, epochs: int, results: dict[str, dict]) -> str:
    """The table: one line per row, ``mean ± std (n)`` cells, the verdict against the default."""
    lines = [f"Embedded default data, {epochs} epochs per trained row (unless the row changes "
             "them), AU thresholds tuned on validation, cells mean ± std (seeds). Single-task "
             "rows are judged on their own term against the default's same term (others are "
             "blank); a verdict needs a gain beyond two standard errors of the difference.",
             "", "| row | val P_MTL | test P_MTL | test VA (mean CCC) | test EXPR F1 | "
             "test AU F1 | train s | verdict (test) |", "|---|---|---|---|---|---|---|---|"]
    reference = results.get(DEFAULT_ROW)
    for name, r in results.items():
        own = r["judged_on"]

        def col(key: str, split: str, own: str = own, r: dict = r) -> str:
            return cell([s[key] for s in r[split]]) if own in ("P_MTL", key) else "–"
        if "seeds" not in r or name == DEFAULT_ROW or reference is None:
            judged = "reference" if name == DEFAULT_ROW else ""
        else:
            judged = verdict([s[own] for s in r["test"]], [s[own] for s in reference["test"]])
        seconds = cell(r["train_seconds"], 0) if r.get("train_seconds") else "–"
        lines.append(f"| {name} | {col('P_MTL', 'validation')} | {col('P_MTL', 'test')} | "
                     f"{col('VA', 'test')} | {col('EXPR', 'test')} | {col('AU', 'test')} | "
                     f"{seconds} | {judged} |")
    return "\n".join(lines) + "\n"


def ceiling_rows(synth_size: str) -> dict[str, dict]:
    """The oracle-ceiling and trivial-predictor rows of the embedded data (one value each)."""
    ceiling = oracle(ensure_synthetic_data(synth_size, 0, layouts=("mtl",)), "mtl")
    return {name: {"validation": [_terms(ceiling["validation"][key])],
                   "test": [_terms(ceiling["test"][key])], "judged_on": "P_MTL"}
            for name, key in (("oracle ceiling", "oracle"),
                              ("majority class / mean VA", "trivial_majority"))}


def train_row(prefix: str, name: str, spec: tuple[str, list[str], str], *, epochs: int,
              seeds: Sequence[int], synth_size: str = "default", fresh: bool = False,
              overrides: Sequence[str] = (), train: bool = True) -> dict | None:
    """Train one row (``spec`` as in :data:`TABLES`) once per seed through the MTL recipe, as
    runs ``<prefix>-e<epochs>-<slug(name)>-s<seed>``; a run that finished before is read, not
    rerun (unless ``fresh``); ``train=False`` only reads the finished runs. ``overrides``:
    LightningCLI overrides added to every seed's run.
    The row's results (per seed: the terms on validation, split-half and test, training
    seconds), or ``None`` when no seed finished."""
    config, row_overrides, judged_on = spec
    recipe = ["--config", config, "--synth-size", synth_size] + (["--fresh"] if fresh else [])
    epoch_args = [] if "--trainer.max_epochs" in row_overrides else ["--trainer.max_epochs",
                                                                     str(epochs)]
    row_argv = [*recipe, "--", *epoch_args, *overrides, *row_overrides]
    if train:
        print(f"\n##### {name}: python -m challenges.mtl {' '.join(row_argv)} "
              f"(seeds {','.join(map(str, seeds))})", flush=True)
    done = [(seed, report) for seed, status, report in
            attempt_seeds(MTL, row_argv, f"{prefix}-e{epochs}-{slug(name)}", seeds, reuse=True,
                          train=train) if report is not None]
    if train and len(done) < len(seeds):
        print(f"row {name!r}: {len(seeds) - len(done)} seed(s) failed; continuing",
              file=sys.stderr)
    if not done:
        return None
    return {"seeds": [seed for seed, _ in done], "judged_on": judged_on,
            "runs": [r["run"] for _, r in done],
            "validation": [_terms(r["validation_tuned"]) for _, r in done],
            "split_half": [_terms(r["split_half"]["tuned"]) for _, r in done
                           if "split_half" in r],
            "test": [_terms(r["test"]) for _, r in done],
            "train_seconds": [train_seconds(r) for _, r in done]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make mtl-baselines", description=__doc__.split("\n\n")[0])
    p.add_argument("--table", default="baselines", choices=list(TABLES))
    p.add_argument("--epochs", type=positive_int, default=None,
                   help=f"training epochs for every row (default: make mtl's, trainer.max_epochs "
                        f"of {BASE})")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seed_everything values, one run each (default 42,1,2)")
    p.add_argument("--rows", help="comma-separated subset of row names or slugs (default: all), "
                                  "e.g. 'fixed weighting (1,1,1),AU graph head'; the default "
                                  "row comes along (the verdicts' reference; its finished runs "
                                  "are read, not rerun)")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--fresh", action="store_true", help="retrain every row from scratch")
    args = p.parse_args(argv)
    if args.epochs is None:
        args.epochs = config_epochs(p, MTL)
    rows = TABLES[args.table]
    try:
        seeds = parse_seeds(args.seeds)
        if args.rows:  # the default row comes along: the verdicts' reference
            rows = {DEFAULT_ROW: rows[DEFAULT_ROW]} | select_rows(args.rows, rows)
    except ValueError as err:
        p.error(str(err))
    except KeyError as err:
        p.error(f"unknown row {err}; rows of --table {args.table}: {', '.join(TABLES[args.table])}")

    return guarded(lambda: write_table(args, rows, seeds))[0]


def write_table(args: argparse.Namespace, rows: dict, seeds: Sequence[int]) -> None:
    results = ceiling_rows(args.synth_size)
    prefix = args.table + ("" if args.synth_size == "default" else f"-{args.synth_size}")
    for name, spec in rows.items():
        row = train_row(prefix, name, spec, epochs=args.epochs, seeds=seeds,
                        synth_size=args.synth_size, fresh=args.fresh)
        if row is not None:
            results[name] = row

    text = markdown(args.table, args.epochs, results)
    print("\n" + text)
    atomic_write_text(Path(f"submissions/mtl/{args.table}.md"), text)
    write_report(Path(f"submissions/mtl/{args.table}.json"),
                 {"table": args.table, "epochs": args.epochs, "seeds": list(seeds),
                  "rows": results})


if __name__ == "__main__":
    sys.exit(main())
