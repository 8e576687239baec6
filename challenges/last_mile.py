"""The last mile, step by step: ``make last-mile RUNS="r1 r2 r3"`` /
``python -m challenges.last_mile --runs r1 r2 r3``.

Reads runs made by ``make mtl`` (``submissions/mtl/<run>/report.json`` names the checkpoint,
the data and the saved raw predictions) and writes one table of each post-processing
step's effect, each row adding one step to the row above:

1. raw: AU at 0.5, plain argmax, no smoothing (the first run);
2. + per-AU thresholds; 3. + expression biases; 4. + temporal smoothing (all fitted on
   validation, :mod:`abaw.postprocess`);
5. auto: per task, only the steps whose split-half estimate beats the raw decisions
   (:func:`abaw.postprocess.choose_steps`, what ``make mtl`` fits by default);
6. auto + TTA: the first run's checkpoint predicts validation and test again with a
   horizontal flip averaged in (``--no-tta`` leaves the row out; it is the only step
   needing the model);
7. the N-run ensemble (:mod:`abaw.ensemble`) of every run, with TTA when row 6 is on, the
   steps chosen as in row 5 on the ensemble's validation predictions.

Columns: the validation score (fitted and scored on validation: optimistic), the split-half
estimate (fitted on half the validation videos, scored on the other half, both ways, mean)
and, on the embedded data, the hidden-truth test score of the row's submission file, read
only after every submission is written and validated. Each row's files (submission,
predictions, post-processing JSON) go to ``<out>/<row>/``; the table to ``<out>/last_mile.md``
(printed too) and the numbers to ``<out>/last_mile.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from abaw.ensemble import (
    Member,
    auto_steps,
    fit_members,
    hidden_test_score,
    load_member,
    write_submission,
)
from abaw.errors import AbawError
from abaw.fileio import atomic_write_text
from abaw.formats.predictions import VALIDATION_PREDICTIONS_FILE, SavedPredictions, save_predictions
from abaw.runner import REPORT_FILE, predict, setup_logging, write_report
from abaw.tracks.mtl import MTL
from abaw.vocab import PREDICTIONS_FILE

DEFAULT_OUT = Path("submissions/mtl/last-mile")
#: row label -> post-processing steps (rows 1-4)
STEP_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("raw (AU at 0.5, argmax)", ()),
    ("+ per-AU thresholds", ("thresholds",)),
    ("+ expression biases", ("thresholds", "biases")),
    ("+ temporal smoothing", ("thresholds", "biases", "smoothing")),
)
ALL_STEPS = STEP_ROWS[-1][1]
AUTO_ROW = "auto: per task, the steps that win on split-half (make mtl's default)"


def run_folder(run: str) -> Path:
    """A run name (``submissions/mtl/<run>``) or a run's submission folder."""
    path = Path(run)
    folder = path if path.is_dir() else Path("submissions") / MTL.name / run
    if not (folder / REPORT_FILE).is_file():
        raise AbawError(f"{folder / REPORT_FILE}: not found (is {run!r} a run made by make mtl?)")
    if not (folder / VALIDATION_PREDICTIONS_FILE).is_file():
        raise AbawError(f"{folder / VALIDATION_PREDICTIONS_FILE}: not found (runs made before "
                        "the validation predictions were saved: rerun make mtl with RUN=" +
                        f"{folder.name}, which resumes its checkpoint)")
    return folder


def tta_member(member: Member, out: Path) -> Member:
    """The run's checkpoint predicting validation and test with a horizontal flip averaged
    in; saved under ``out`` as an ensemble input (raw arrays)."""
    from abaw.training.cli import build_cli

    report = member.report
    if "cli_arguments" not in report or "checkpoint" not in report:
        raise AbawError(f"{member.name}: its report.json does not say how to rebuild the model "
                        "(rerun make mtl for it, or use --no-tta)")
    cli = build_cli(MTL.name, [*report["cli_arguments"], "--trainer.logger", "false",
                               "--trainer.enable_progress_bar", "false"])
    checkpoint = Path(report["checkpoint"])
    out.mkdir(parents=True, exist_ok=True)
    saved = {}
    for split, name in (("val", VALIDATION_PREDICTIONS_FILE), ("test", PREDICTIONS_FILE)):
        result = predict(cli, checkpoint, split, tta=["hflip"])
        saved[split] = SavedPredictions(result.images, result.arrays)
        save_predictions(out / name, result.images, result.arrays)
    return Member(f"{member.name} + TTA", saved["test"], saved["val"], report)


def _slug(index: int, label: str) -> str:
    words = "".join(c if c.isalnum() else "-" for c in label.lower()).split("-")
    return f"{index}-" + "-".join(w for w in words if w)


def markdown(rows: list[dict[str, Any]], tested: bool) -> str:
    header = "| step | validation P_MTL | split-half P_MTL | test P_MTL |"
    header += " test CCC_V | test CCC_A | test F1_EXPR | test F1_AU |" if tested else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        split = row["split_half"]
        test = row.get("test")
        cells = [row["label"], f"{row['validation']['score']:.4f}",
                 "–" if split is None else f"{split['score']:.4f}",
                 "–" if test is None else f"{test['P_MTL']:.4f}"]
        if tested:
            cells += ["–" if test is None else f"{test[k]:.4f}"
                      for k in ("ccc_valence", "ccc_arousal", "f1_expression", "f1_au")]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def last_mile(runs: list[str], out: Path = DEFAULT_OUT, tta: bool = True,
              weights: str = "equal") -> dict[str, Any]:
    """Fit, write and validate every row's submission, then score them (module docstring)."""
    members = [load_member(run_folder(run)) for run in runs]
    data_root = Path(members[0].report.get("data", ""))
    images, truth = MTL.validation_truth(data_root)
    plan: list[tuple[str, list[Member], Any, str]] = [
        (label, members[:1], steps, "equal") for label, steps in STEP_ROWS]
    plan.append((AUTO_ROW, members[:1], auto_steps(members[:1], images, truth), "equal"))
    if tta:
        tta_members = [tta_member(m, out / "tta" / Path(m.name).name) for m in members]
        plan.append(("auto + TTA (horizontal flip)", tta_members[:1],
                     auto_steps(tta_members[:1], images, truth), "equal"))
    pool = tta_members if tta else members
    if len(pool) > 1:
        plan.append((f"auto, {len(pool)}-run ensemble" + (" (with TTA)" if tta else "") +
                     (", weights fitted" if weights == "fit" else ""), pool,
                     auto_steps(pool, images, truth), weights))
    rows: list[dict[str, Any]] = []
    for index, (label, group, steps, how) in enumerate(plan, start=1):
        print(f"\n=== {label}: {', '.join(m.name for m in group)}", flush=True)
        fitted = fit_members(group, images, truth, how, steps)
        submission = write_submission(MTL, fitted, out / _slug(index, label), data_root)
        print(f"OK: {submission} would be accepted", flush=True)
        rows.append({"label": label, "validation": fitted.report["validation_tuned"],
                     "split_half": fitted.report.get("split_half"), **fitted.report})
    # the hidden test truth is read only now, after every submission is written
    for row in rows:
        test = hidden_test_score(MTL, Path(row["submission"]), data_root)
        if test is not None:
            row["test"] = test
    tested = any("test" in row for row in rows)
    text = (f"Runs: {', '.join(runs)} (data: {data_root}). Validation: fitted and scored on "
            "the validation set; split-half: fitted on half the validation videos, scored on "
            "the other half (mean of both ways)" + ("; test: the hidden truth of the embedded "
                                                     "data." if tested else ".") + "\n\n")
    text += markdown(rows, tested)
    atomic_write_text(out / "last_mile.md", text)
    result = {"runs": runs, "data": str(data_root), "rows": rows}
    write_report(out / "last_mile.json", result)
    print("\n" + text + f"\ntable: {out / 'last_mile.md'}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make last-mile", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True,
                   help="MTL run names (submissions/mtl/<run>) or run folders; the first is "
                        "the single-run rows' run, all of them make the ensemble")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"default {DEFAULT_OUT}")
    p.add_argument("--no-tta", action="store_true",
                   help="leave out test-time augmentation (the row that needs the model)")
    p.add_argument("--weights", choices=("equal", "fit"), default="equal",
                   help="ensemble weights: equal, or fitted per task on validation")
    args = p.parse_args(argv)
    setup_logging()
    try:
        last_mile(args.runs, args.out, not args.no_tta, args.weights)
    except AbawError as err:
        print(f"abaw: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
