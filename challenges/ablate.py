"""The evidence table: ``make ablate`` / ``python -m challenges.ablate``.

One command trains and reads every row of the table that says which parts of the toolkit
help on the embedded default data, and writes it to ``submissions/ablations.md`` (the
numbers to ``submissions/ablations.json``). Every trained row of a section has the same
budget and runs once per seed (``--seeds``, default 42,1,2); a cell is ``mean ± std (n)``
and a verdict compares the row with its reference row on the hidden-truth test score
(:mod:`abaw.evidence`: **helps** / **hurts** only beyond two standard errors of the
difference, otherwise **no evidence**). Nothing here is a new recipe — the rows are those
of the existing tables:

- ``mtl`` (:func:`challenges.mtl_baselines.train_row`, the ``baselines`` table's rows and
  run names, ``--epochs`` by default ``make mtl``'s ``trainer.max_epochs``, 16, so the rows
  are those of ``make mtl-baselines``; ``--epochs 3`` reads the 3-epoch runs of the budget
  before 2026-11-27): multi-task vs
  single-task per term, uncertainty vs fixed weighting, AU graph vs linear head, each
  backbone family, and the MAE-initialised ViT against the random ViT at the same
  fine-tuning budget (its encoder from :func:`mae_encoder`);
- ``last-mile`` (:func:`challenges.last_mile.last_mile` over the reference row's seed runs):
  its rows (per-AU thresholds, expression biases, temporal smoothing, VA calibration, TTA,
  ... on and off), each against the row above; the ensemble of the seed runs (3 at a time)
  against one run;
- ``lsd`` (:func:`challenges.lsd_ablation.train_row`): super-resolution none / compact /
  x4plus × hand module off / on, from scratch and initialised from the MTL face model, at
  ``--lsd-img-size`` 112 px: the synthetic images are 56 px, so at the base config's 64 px
  the ×4 output is shrunk back almost to a bicubic upscale, while at 112 px (the official
  crop size, 2× the source) what super-resolution restores survives the resize.

Columns: validation (post-processing fitted and scored on validation: optimistic),
split-half (fitted on half the validation videos, scored on the other half; MTL only) and
the hidden-truth test score, plus the oracle ceiling and the trivial predictor per section.

It resumes: a run that finished (its ``submissions/<track>/<run>/report.json`` has a test
score) is read, not rerun; an interrupted run resumes from its checkpoint; the table is
rewritten after every row. ``--only SECTION`` / ``--rows SLUGS`` choose what is trained (a
row's reference row comes along); every other row that has finished runs is still read into
the table. ``--read-only`` trains nothing and rewrites the table from the finished runs.
``--quick``: the same table on the tiny data, one seed, a tiny budget (checks the table's
shape, not the numbers).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from abaw.argtypes import config_epochs, non_negative_int, positive_int
from abaw.errors import STOPPED, AbawError
from abaw.evidence import DEFAULT_SEEDS, cell, parse_seeds, slug, verdict
from abaw.fileio import atomic_write_text
from abaw.runner import ensure_synthetic_data, guarded, oracle, setup_logging, write_report
from abaw.tracks.mtl import MTL
from challenges import last_mile, lsd_ablation, mtl_baselines
from challenges.mtl_baselines import DEFAULT_ROW, TABLES

SECTIONS = ("mtl", "last-mile", "lsd")
DEFAULT_OUT = Path("submissions")

# --- the MAE encoder ------------------------------------------------------------------------

#: what ``make pretrain`` pre-trains, and the encoder it writes (official MAE format)
MAE_CONFIG = Path("configs/pretrain/default.yaml")
MAE_ENCODER = Path("runs/pretrain/default/encoder.pth")
NEEDS_PRETRAIN = "needs make pretrain"


def mae_encoder(pretrain: bool = True) -> Path:
    """The MAE encoder the MAE-initialised ViT row fine-tunes from.

    :data:`MAE_ENCODER` when it exists; otherwise (``pretrain``) it is made first by
    ``abaw pretrain mae --config configs/pretrain/default.yaml`` (what ``make pretrain``
    runs). An :class:`AbawError` starting with ``needs make pretrain`` when there is none and
    this checkout cannot make it (or ``pretrain`` is off)."""
    if MAE_ENCODER.is_file():
        return MAE_ENCODER
    from abaw.cli import COMMANDS
    from abaw.cli import main as abaw_main

    command = ["pretrain", "mae", "--config", str(MAE_CONFIG)]
    if "pretrain" not in COMMANDS or not MAE_CONFIG.is_file():
        raise AbawError(f"{NEEDS_PRETRAIN}: no {MAE_ENCODER}, and this checkout has no "
                        f"`abaw {' '.join(command)}`")
    if not pretrain:
        raise AbawError(f"{NEEDS_PRETRAIN}: no {MAE_ENCODER} (run make pretrain first)")
    status = abaw_main(command)
    if status in STOPPED:
        raise KeyboardInterrupt
    if status != 0 or not MAE_ENCODER.is_file():
        raise AbawError(f"{NEEDS_PRETRAIN}: `abaw {' '.join(command)}` ended with status "
                        f"{status} and wrote no {MAE_ENCODER}")
    return MAE_ENCODER


# --- the rows -------------------------------------------------------------------------------

VIT_ROW = "ViT (vit_tiny_mae, random init)"
MAE_ROW = "ViT (vit_tiny_mae, MAE-initialised)"
#: MTL rows: (name, reference row); the specs are ``make mtl-baselines``' (TABLES), the MAE
#: row's is the random ViT's with the encoder of :func:`mae_encoder`
MTL_ROWS: tuple[tuple[str, str | None], ...] = (
    (DEFAULT_ROW, None),
    ("VA only", DEFAULT_ROW), ("EXPR only", DEFAULT_ROW), ("AU only", DEFAULT_ROW),
    ("fixed weighting (1,1,1)", DEFAULT_ROW),
    ("AU graph head", DEFAULT_ROW),
    (VIT_ROW, DEFAULT_ROW),
    (MAE_ROW, VIT_ROW),
    ("EfficientNet-B0", DEFAULT_ROW),
    ("CNN-transformer hybrid", DEFAULT_ROW),
)
LSD_INITS = (("none", "from scratch"), ("mtl", "from the MTL model"))
LSD_SR = ("none", "compact", "x4plus")
LSD_HANDS = ("off", "on")
#: seed runs per ensemble in the last-mile section
ENSEMBLE_SIZE = 3
ENSEMBLE_ROW = f"ensemble of the seed runs, {ENSEMBLE_SIZE} at a time (with TTA)"


def lsd_row_name(init: str, sr: str, hands: str) -> str:
    return f"{dict(LSD_INITS)[init]}: SR {sr}, hands {hands}"


def lsd_rows() -> list[tuple[str, str | None, tuple[str, str, str]]]:
    """LSD rows: (name, reference row, (init, sr, hands)); each init's SR none / hands off row
    is its block's reference, and the initialised one is judged against the scratch one."""
    scratch = lsd_row_name("none", "none", "off")
    rows: list[tuple[str, str | None, tuple[str, str, str]]] = []
    for init, _ in LSD_INITS:
        base = lsd_row_name(init, "none", "off")
        for sr in LSD_SR:
            for hands in LSD_HANDS:
                name = lsd_row_name(init, sr, hands)
                reference = base if name != base else None if name == scratch else scratch
                rows.append((name, reference, (init, sr, hands)))
    return rows


@dataclass(frozen=True)
class Budget:
    """What every trained row of a section gets, and where its runs are named."""

    quick: bool
    seeds: tuple[int, ...]
    synth_size: str = "default"
    mtl_epochs: int = 16
    lsd_epochs: int = 4
    train_limit: int = 1500
    lsd_img_size: int = 112
    #: run-name prefixes: the default shares runs with make mtl-baselines / make lsd-ablation
    mtl_prefix: str = "baselines"
    lsd_prefix: str = "ablation"
    overrides: tuple[str, ...] = ()
    sr_workers: int = 1
    fresh: bool = False


QUICK_OVERRIDES = ("--data.batch_size", "8", "--data.num_workers", "0",
                   "--trainer.enable_progress_bar", "false")


def budget(args: argparse.Namespace, seeds: tuple[int, ...]) -> Budget:
    if args.quick:
        return Budget(True, seeds[:1], "tiny", 1, 1, 24, args.lsd_img_size, "ablate-quick",
                      "ablate-quick", QUICK_OVERRIDES, args.sr_workers, args.fresh)
    return Budget(False, seeds, "default", args.epochs, args.lsd_epochs, args.train_limit,
                  args.lsd_img_size, sr_workers=args.sr_workers, fresh=args.fresh)


@dataclass
class Row:
    """One line of the table: values per seed (each a dict metric → value) on validation,
    split-half and test; ``metric`` is what the cells show and the verdict compares."""

    section: str
    name: str
    metric: str
    reference: str | None = None
    bound: bool = False
    note: str | None = None
    seeds: list[int] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    validation: list[dict[str, float]] = field(default_factory=list)
    split_half: list[dict[str, float]] = field(default_factory=list)
    test: list[dict[str, float]] = field(default_factory=list)
    train_seconds: list[float] = field(default_factory=list)

    @property
    def slug(self) -> str:
        return slug(self.name)

    def values(self, split: str, metric: str | None = None) -> list[float]:
        key = metric or self.metric
        return [v[key] for v in getattr(self, split) if key in v]


# --- the table ------------------------------------------------------------------------------

HEADER = ("| row | judged on | validation | split-half | test | against | its test | "
          "verdict (test) | train s |")


def verdict_cell(row: Row, rows: dict[str, Row]) -> str:
    """``reference``, a verdict against the reference row (on the row's metric), ``–`` for the
    oracle and trivial rows, or why there is none."""
    if row.note:
        return row.note
    if row.bound:
        return "–"
    if not row.test:
        return "not run yet"
    if row.reference is None:
        return "reference"
    reference = rows.get(row.reference)
    if reference is None or not reference.values("test", row.metric):
        return f"no reference yet ({row.reference})"
    return verdict(row.values("test"), reference.values("test", row.metric))


def markdown(sections: dict[str, list[Row]], intro: dict[str, str], title: str) -> str:
    """The whole table: a header per section, one line per row."""
    everything = {row.name: row for rows in sections.values() for row in rows}
    lines = [title, ""]
    for section, rows in sections.items():
        lines += [f"## {section}", "", intro.get(section, ""), "", HEADER,
                  "|" + "---|" * (HEADER.count("|") - 1)]
        for row in rows:
            reference = everything.get(row.reference) if row.reference else None
            theirs = cell(reference.values("test", row.metric)) if reference else "–"
            seconds = cell(row.train_seconds, 0) if row.train_seconds else "–"
            lines.append(f"| {row.name} | {row.metric} | {cell(row.values('validation'))} | "
                         f"{cell(row.values('split_half'))} | {cell(row.values('test'))} | "
                         f"{row.reference or '–'} | {theirs} | "
                         f"{verdict_cell(row, everything)} | {seconds} |")
        lines.append("")
    return "\n".join(lines)


# --- the sections ---------------------------------------------------------------------------

def mtl_bounds(section: str, synth_size: str) -> list[Row]:
    return [Row(section, name, "P_MTL", bound=True, validation=r["validation"],
                test=r["test"]) for name, r in mtl_baselines.ceiling_rows(synth_size).items()]


def mtl_section(b: Budget, selected: set[str]) -> Iterator[Row]:
    """The MTL rows, one at a time (trained when ``selected``, else read)."""
    yield from mtl_bounds("mtl", b.synth_size)
    rows = TABLES["baselines"]
    for name, reference in MTL_ROWS:
        train, missing = slug(name) in selected, None
        if name == MAE_ROW:
            try:
                encoder = mae_encoder(pretrain=train)
            except AbawError as err:
                encoder, missing = MAE_ENCODER, str(err)
            spec = (rows[VIT_ROW][0], ["--model.checkpoint", str(encoder),
                                       "--model.checkpoint_format", "mae"], "P_MTL")
        else:
            spec = rows[name]
        # without the encoder, runs that finished before are still read
        result = mtl_baselines.train_row(b.mtl_prefix, name, spec, epochs=b.mtl_epochs,
                                         seeds=b.seeds, synth_size=b.synth_size,
                                         fresh=b.fresh and train, overrides=b.overrides,
                                         train=train and not missing)
        row = Row("mtl", name, spec[2], reference)
        if result is not None:
            row.seeds, row.runs = result["seeds"], result["runs"]
            row.validation, row.split_half = result["validation"], result["split_half"]
            row.test, row.train_seconds = result["test"], result["train_seconds"]
        elif missing:
            row.note = NEEDS_PRETRAIN
            print(f"row {name!r}: {missing}", file=sys.stderr)
        yield row


def _last_mile(runs: list[str], out: Path, compute: bool) -> dict | None:
    """``challenges.last_mile`` over ``runs`` into ``out``, or its earlier result there."""
    path = out / "last_mile.json"
    try:
        earlier = json.loads(path.read_text(encoding="utf-8"))
        if earlier.get("runs") == runs and all("test" in r for r in earlier["rows"]):
            print(f"last mile of {', '.join(runs)}: finished before, reusing {path}")
            return earlier
    except (OSError, ValueError):
        pass
    return last_mile.last_mile(runs, out) if compute else None


def _post_value(row: dict) -> tuple[dict, dict, dict]:
    split = row.get("split_half")
    return ({"P_MTL": row["validation"]["score"]},
            {"P_MTL": split["score"]} if split else {}, {"P_MTL": row["test"]["P_MTL"]})


def last_mile_section(b: Budget, reference: Row, compute: bool) -> Iterator[Row]:
    """Each post-processing step on and off over the reference row's seed runs."""
    yield from mtl_bounds("last-mile", b.synth_size)
    if not reference.runs:
        yield Row("last-mile", "post-processing steps", "P_MTL",
                  note=f"not run yet (needs the runs of {DEFAULT_ROW!r})")
        return
    out = DEFAULT_OUT / "mtl" / f"{b.mtl_prefix}-e{b.mtl_epochs}-last-mile"
    rows: dict[str, Row] = {}
    previous = None
    for seed, run in zip(reference.seeds, reference.runs):
        try:
            result = _last_mile([run], out / run, compute)
        except AbawError as err:
            print(f"abaw: error: last mile of {run}: {err}", file=sys.stderr)
            continue
        for entry in (result or {"rows": []})["rows"]:
            label = entry["label"]
            if label not in rows:
                rows[label] = Row("last-mile", label, "P_MTL", previous)
                previous = label
            row = rows[label]
            validation, split, test = _post_value(entry)
            row.seeds.append(seed)
            row.runs.append(run)
            row.validation.append(validation)
            row.split_half += [split] if split else []
            row.test.append(test)
    yield from rows.values() or [Row("last-mile", "post-processing steps", "P_MTL",
                                     note="not run yet")]
    ensemble = Row("last-mile", ENSEMBLE_ROW, "P_MTL", previous)
    groups = [reference.runs[i:i + ENSEMBLE_SIZE]
              for i in range(0, len(reference.runs), ENSEMBLE_SIZE)]
    for group in (g for g in groups if len(g) > 1):
        try:
            result = _last_mile(group, out / ("ensemble-" + "-".join(group)), compute)
        except AbawError as err:
            print(f"abaw: error: ensemble of {', '.join(group)}: {err}", file=sys.stderr)
            continue
        if result is not None:
            validation, split, test = _post_value(result["rows"][-1])
            ensemble.runs.append(" + ".join(group))
            ensemble.validation.append(validation)
            ensemble.split_half += [split] if split else []
            ensemble.test.append(test)
    if not ensemble.test:
        ensemble.note = "needs 2 seeds or more" if len(reference.runs) < 2 else "not run yet"
    yield ensemble


def lsd_section(b: Budget, selected: set[str]) -> Iterator[Row]:
    """The LSD rows (super-resolution × hand module × initialisation)."""
    ceiling = oracle(ensure_synthetic_data(b.synth_size, 0, layouts=("lsd",)), "lsd")
    for name, key in (("oracle ceiling", "oracle"), ("majority class", "trivial_majority")):
        yield Row("lsd", f"LSD {name}", "F1", bound=True,
                  validation=[{"F1": ceiling["validation"][key]}],
                  test=[{"F1": ceiling["test"][key]}])
    for name, reference, (init, sr, hands) in lsd_rows():
        train = slug(name) in selected  # --fresh retrains only these; the others are read
        result = lsd_ablation.train_row(
            sr, hands, init=init, epochs=b.lsd_epochs, train_limit=b.train_limit,
            seeds=b.seeds, synth_size=b.synth_size, sr_workers=b.sr_workers,
            img_size=b.lsd_img_size, fresh=b.fresh and train, prefix=b.lsd_prefix,
            overrides=b.overrides, train=train)
        row = Row("lsd", name, "F1", reference)
        if result is not None:
            row.seeds, row.runs = result["seeds"], result["runs"]
            row.validation = [{"F1": v} for v in result["validation_with_rule"]]
            row.test = [{"F1": v} for v in result["test"]]
            row.train_seconds = result["train_seconds"]
        yield row


def _epochs(n: int) -> str:
    return f"{n} epoch" + ("" if n == 1 else "s")


def intros(b: Budget) -> dict[str, str]:
    data = "tiny (--quick: shape only, the numbers mean nothing)" if b.quick else "default"
    seeds = ",".join(map(str, b.seeds))
    return {
        "mtl": f"Embedded {data} data, {_epochs(b.mtl_epochs)} per row, seeds {seeds}; the "
               "post-processing that `make mtl` fits on validation by default. Single-task "
               "rows are judged on their own term against the multi-task default's same term; "
               "the MAE-initialised ViT against the random ViT (same config, same fine-tuning "
               "budget).",
        "last-mile": "Over the seed runs of the multi-task default (`challenges.last_mile`, "
                     "one run at a time): each row adds one step to the row above and is "
                     f"judged against it; the ensemble averages {ENSEMBLE_SIZE} seed runs "
                     "(one value per group of seeds) and is judged against one run with TTA.",
        "lsd": f"Embedded {data} data, {_epochs(b.lsd_epochs)} at {b.lsd_img_size} px (the "
               "synthetic images are 56 px: at 112 px what super-resolution restores survives "
               "the resize, at 64 px it is shrunk away), a class-stratified subset of "
               f"{b.train_limit or 'all'} training images, seeds {seeds}. Hand module on = "
               "pasted-hand training of the occlusion head + the reweight rule fitted on "
               "validation; validation F1 is with that rule. Each block is judged against its "
               "SR none / hands off row, the initialised block's against the scratch one.",
    }


# --- the command ----------------------------------------------------------------------------


def plan() -> dict[str, list[str]]:
    """The trainable row slugs of each section (the last-mile section has one unit)."""
    return {"mtl": [slug(name) for name, _ in MTL_ROWS],
            "last-mile": ["last-mile"],
            "lsd": [slug(name) for name, _, _ in lsd_rows()]}


def selection(only: Sequence[str], rows: Sequence[str]) -> set[str]:
    """The slugs to train: the chosen sections' rows (or ``rows``), with their references."""
    planned = plan()
    chosen = set(rows) if rows else {s for section in only for s in planned[section]}
    references = {slug(n): slug(r) for n, r in MTL_ROWS if r}
    references |= {slug(n): slug(r) for n, r, _ in lsd_rows() if r}
    references["last-mile"] = slug(DEFAULT_ROW)
    while True:
        more = {references[s] for s in chosen if s in references} - chosen
        if not more:
            return chosen
        chosen |= more


def ablate(b: Budget, selected: set[str], out: Path = DEFAULT_OUT) -> dict[str, list[Row]]:
    """Train the ``selected`` rows, read every other row's finished runs; the table is
    rewritten after every row. Returns the rows of each section."""
    table: dict[str, list[Row]] = {}
    title = ("# Evidence table (`make ablate" + (" ARGS=--quick" if b.quick else "") + "`)\n\n"
             "Cells: mean ± std (seeds). Verdict (test): **helps** / **hurts** only when the "
             "mean gain over the row named under *against* exceeds two standard errors of the "
             "difference (Welch), otherwise **no evidence**; *its test* is that row's test "
             "score on the same metric.")

    def write() -> None:
        text = markdown(table, intros(b), title)
        atomic_write_text(out / "ablations.md", text)
        write_report(out / "ablations.json", {
            "budget": asdict(b), "section_order": list(table),
            "sections": {s: [{**asdict(r), "slug": r.slug} for r in rows]
                         for s, rows in table.items()}})

    for section in SECTIONS:
        table[section] = []
        if section == "mtl":
            rows = mtl_section(b, selected)
        elif section == "last-mile":
            reference = next(r for r in table["mtl"] if r.name == DEFAULT_ROW)
            rows = last_mile_section(b, reference, "last-mile" in selected)
        else:
            rows = lsd_section(b, selected)
        for row in rows:
            table[section].append(row)
            write()
    text = markdown(table, intros(b), title)
    print("\n" + text + f"\ntable: {out / 'ablations.md'} (numbers: {out / 'ablations.json'})")
    return table


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make ablate", description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", choices=SECTIONS,
                   help="train only this section's rows (repeatable; default: all); the "
                        "finished runs of the others are still read into the table")
    p.add_argument("--rows", help="train only these rows: comma-separated slugs (--list)")
    p.add_argument("--list", action="store_true", help="print each section's row slugs")
    p.add_argument("--read-only", action="store_true",
                   help="train nothing: read every finished run and rewrite the table")
    p.add_argument("--quick", action="store_true",
                   help="the same table on the tiny data, one seed, a tiny budget (shape only)")
    p.add_argument("--seeds", default=",".join(map(str, DEFAULT_SEEDS)),
                   help="comma-separated seed_everything values, one run each (default 42,1,2)")
    p.add_argument("--epochs", type=positive_int, default=None,
                   help="MTL training epochs per row (default: make mtl's, trainer.max_epochs "
                        "of configs/mtl/base.yaml)")
    p.add_argument("--lsd-epochs", type=positive_int, default=4, help="LSD training epochs per row")
    p.add_argument("--train-limit", type=non_negative_int, default=1500,
                   help="LSD class-stratified training subset per row (0 = all)")
    p.add_argument("--lsd-img-size", type=positive_int, default=112,
                   help="LSD input side, also the super-resolution target (default 112)")
    p.add_argument("--sr-workers", type=positive_int, default=1, help="super-resolution processes")
    p.add_argument("--fresh", action="store_true", help="retrain every selected row")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT,
                   help=f"folder of ablations.md and ablations.json (default {DEFAULT_OUT})")
    args = p.parse_args(argv)
    if args.list:
        for section, slugs in plan().items():
            print(f"{section}: {', '.join(slugs)}")
        return 0
    if args.epochs is None:
        args.epochs = config_epochs(p, MTL)
    try:
        seeds = parse_seeds(args.seeds)
    except ValueError as err:
        p.error(str(err))
    known = {s for slugs in plan().values() for s in slugs}
    rows = [s.strip() for s in args.rows.split(",")] if args.rows else []
    unknown = [s for s in rows if s not in known]
    if unknown:
        p.error(f"unknown row {unknown[0]!r}; rows: {', '.join(sorted(known))}")
    if args.read_only and (args.only or rows):
        p.error("--read-only trains nothing: it takes no --only or --rows")
    selected = set() if args.read_only else selection(args.only or SECTIONS, rows)
    setup_logging()
    return guarded(lambda: ablate(budget(args, seeds), selected, args.out))[0]


if __name__ == "__main__":
    sys.exit(main())
