"""The last mile, step by step: ``make last-mile RUNS="r1 r2 r3" [TRACK=va|expr|au]`` /
``python -m challenges.last_mile --runs r1 r2 r3 [--track va|expr|au]``.

Reads runs made by ``make mtl`` (or ``make va|expr|au`` with ``--track``:
``submissions/<track>/<run>/report.json`` names the checkpoint, the data and the saved raw
predictions) and writes one table of each post-processing step's effect, each row adding
one step to the row above (the steps that apply to the track's tasks):

1. raw: AU at 0.5, plain argmax, no smoothing (the first run);
2. + per-AU thresholds (MTL, AU); 3. + expression biases (MTL, EXPR); 4. + temporal
   smoothing (every track); 5. + VA calibration (MTL, VA: offset and scale per dimension)
   — all fitted on validation, :mod:`abaw.postprocess`; on a per-video track fitted on the
   crop-frame predictions and scored on every labelled frame after filling from the nearest
   predicted frame;
6. auto: per task, only the steps whose split-half estimate beats the raw decisions
   (:func:`abaw.postprocess.choose_steps`, what ``make mtl`` fits by default);
7. auto + TTA: the first run's model predicts validation and test again with a horizontal
   flip averaged in (``--no-tta`` leaves the row out; it is the only step needing the
   model; a per-video GRU run mirrors the crops under its cached backbone features,
   :func:`abaw.training.temporal.predict_saved`);
8. the N-run ensemble (:mod:`abaw.ensemble`) of every run, with TTA when row 7 is on, the
   steps chosen as in row 6 on the ensemble's validation predictions.

Columns: the validation score (fitted and scored on validation: optimistic), the split-half
estimate (fitted on half the validation videos, scored on the other half, both ways, mean)
and, on the embedded data, the hidden-truth test score of the row's submission file, read
only after every submission is written and validated. Each row's files (submission,
predictions, post-processing JSON) go to ``<out>/<row>/``; the table to ``<out>/last_mile.md``
(printed too) and the numbers to ``<out>/last_mile.json``; ``<out>`` defaults to
``submissions/<track>/last-mile``.
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
from abaw.runner import REPORT_FILE, Challenge, predict, setup_logging, write_report
from abaw.tracks import get
from abaw.vocab import PREDICTIONS_FILE

#: (label, post-processing steps, the tasks that make the row) of rows 1-5; a track's table
#: keeps the rows whose step applies to one of its tasks
STEP_ROWS: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...] = (
    ("raw", (), ("va", "expr", "au")),
    ("+ per-AU thresholds", ("thresholds",), ("au",)),
    ("+ expression biases", ("thresholds", "biases"), ("expr",)),
    ("+ temporal smoothing", ("thresholds", "biases", "smoothing"), ("va", "expr", "au")),
    ("+ VA calibration", ("thresholds", "biases", "smoothing", "calibration"), ("va",)),
)
AUTO_ROW = "auto: per task, the steps that win on split-half (make mtl's default)"
#: per track: the score's name, its key in a test score, the test columns shown beside it
COLUMNS: dict[str, tuple[str, str, tuple[tuple[str, str], ...]]] = {
    "mtl": ("P_MTL", "P_MTL", (("ccc_valence", "CCC_V"), ("ccc_arousal", "CCC_A"),
                               ("f1_expression", "F1_EXPR"), ("f1_au", "F1_AU"))),
    "va": ("VA score", "score", (("ccc_valence", "CCC_V"), ("ccc_arousal", "CCC_A"))),
    "expr": ("F1", "f1", ()),
    "au": ("F1", "f1", ()),
}


def default_out(track: str) -> Path:
    return Path("submissions") / track / "last-mile"


def step_rows(tasks: tuple[str, ...]) -> list[tuple[str, tuple[str, ...]]]:
    """Rows 1-5 for a track with ``tasks``: the raw row says what raw means for them."""
    raw = [what for task, what in (("au", "AU at 0.5"), ("expr", "argmax")) if task in tasks]
    return [(label + (f" ({', '.join(raw)})" if index == 0 and raw else ""), steps)
            for index, (label, steps, makers) in enumerate(STEP_ROWS) if set(makers) & set(tasks)]


def run_folder(run: str, track: str = "mtl") -> Path:
    """A run name (``submissions/<track>/<run>``) or a run's submission folder."""
    path = Path(run)
    folder = path if path.is_dir() else Path("submissions") / track / run
    if not (folder / REPORT_FILE).is_file():
        raise AbawError(f"{folder / REPORT_FILE}: not found (is {run!r} a run made by "
                        f"make {track}?)")
    if not (folder / VALIDATION_PREDICTIONS_FILE).is_file():
        raise AbawError(f"{folder / VALIDATION_PREDICTIONS_FILE}: not found (runs made before "
                        f"the validation predictions were saved: rerun make {track} with RUN=" +
                        f"{folder.name}, which resumes its checkpoint)")
    return folder


def tta_member(member: Member, out: Path, track: str = "mtl") -> Member:
    """The run's model predicting validation and test with a horizontal flip averaged in;
    saved under ``out`` as an ensemble input (raw arrays)."""
    from abaw.training.cli import build_cli

    report = member.report
    if "cli_arguments" not in report or "checkpoint" not in report:
        raise AbawError(f"{member.name}: its report.json does not say how to rebuild the model "
                        f"(rerun make {track} for it, or use --no-tta)")
    cli = build_cli(track, [*report["cli_arguments"], "--trainer.logger", "false",
                            "--trainer.enable_progress_bar", "false"])
    checkpoint = Path(report["checkpoint"])
    out.mkdir(parents=True, exist_ok=True)
    if report.get("temporal", "none") != "none":  # a GRU run: the head over mirrored features
        from abaw.training.temporal import predict_saved

        predicted = predict_saved(cli, checkpoint, Path(report["temporal_head"]["path"]), track,
                                  Path(report["sample_file"]), ("hflip",))
    else:
        predicted = {}
        for split in ("val", "test"):
            result = predict(cli, checkpoint, split, tta=["hflip"])
            predicted[split] = (result.images, result.arrays)
    saved = {}
    for split, name in (("val", VALIDATION_PREDICTIONS_FILE), ("test", PREDICTIONS_FILE)):
        images, arrays = predicted[split]
        saved[split] = SavedPredictions(list(images), arrays)
        save_predictions(out / name, list(images), arrays)
    return Member(f"{member.name} + TTA", saved["test"], saved["val"], report)


def _slug(index: int, label: str) -> str:
    words = "".join(c if c.isalnum() else "-" for c in label.lower()).split("-")
    return f"{index}-" + "-".join(w for w in words if w)


def markdown(rows: list[dict[str, Any]], tested: bool, track: str = "mtl") -> str:
    name, key, extra = COLUMNS[track]
    header = f"| step | validation {name} | split-half {name} | test {name} |"
    header += "".join(f" test {label} |" for _, label in extra) if tested else ""
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for row in rows:
        split = row["split_half"]
        test = row.get("test")
        cells = [row["label"], f"{row['validation']['score']:.4f}",
                 "–" if split is None else f"{split['score']:.4f}",
                 "–" if test is None else f"{test[key]:.4f}"]
        if tested:
            cells += ["–" if test is None else f"{test[k]:.4f}" for k, _ in extra]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def last_mile(runs: list[str], out: Path | None = None, tta: bool = True,
              weights: str = "equal", track: str = "mtl") -> dict[str, Any]:
    """Fit, write and validate every row's submission, then score them (module docstring)."""
    challenge: Challenge = get(track)
    out = default_out(track) if out is None else out
    members = [load_member(run_folder(run, track)) for run in runs]
    data_root = Path(members[0].report.get("data", ""))
    images, truth, fill = challenge.validation_set(data_root, members[0].validation.images)
    plan: list[tuple[str, list[Member], Any, str]] = [
        (label, members[:1], steps, "equal") for label, steps in step_rows(truth.tasks)]
    plan.append((AUTO_ROW, members[:1], auto_steps(members[:1], images, truth, fill), "equal"))
    if tta:
        tta_members = [tta_member(m, out / "tta" / Path(m.name).name, track) for m in members]
        plan.append(("auto + TTA (horizontal flip)", tta_members[:1],
                     auto_steps(tta_members[:1], images, truth, fill), "equal"))
    pool = tta_members if tta else members
    if len(pool) > 1:
        plan.append((f"auto, {len(pool)}-run ensemble" + (" (with TTA)" if tta else "") +
                     (", weights fitted" if weights == "fit" else ""), pool,
                     auto_steps(pool, images, truth, fill), weights))
    rows: list[dict[str, Any]] = []
    for index, (label, group, steps, how) in enumerate(plan, start=1):
        print(f"\n=== {label}: {', '.join(m.name for m in group)}", flush=True)
        fitted = fit_members(group, images, truth, how, steps, fill)
        submission = write_submission(challenge, fitted, out / _slug(index, label), data_root)
        print(f"OK: {submission} would be accepted", flush=True)
        rows.append({"label": label, "validation": fitted.report["validation_tuned"],
                     "split_half": fitted.report.get("split_half"), **fitted.report})
    # the hidden test truth is read only now, after every submission is written
    for row in rows:
        test = hidden_test_score(challenge, Path(row["submission"]), data_root)
        if test is not None:
            row["test"] = test
    tested = any("test" in row for row in rows)
    text = (f"Track: {track}. Runs: {', '.join(runs)} (data: {data_root}). Validation: fitted and scored on "
            "the validation set; split-half: fitted on half the validation videos, scored on "
            "the other half (mean of both ways)" + ("; test: the hidden truth of the embedded "
                                                     "data." if tested else ".") + "\n\n")
    text += markdown(rows, tested, track)
    atomic_write_text(out / "last_mile.md", text)
    result = {"track": track, "runs": runs, "data": str(data_root), "rows": rows}
    write_report(out / "last_mile.json", result)
    print("\n" + text + f"\ntable: {out / 'last_mile.md'}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make last-mile", description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", nargs="+", required=True,
                   help="run names (submissions/<track>/<run>) or run folders; the first is "
                        "the single-run rows' run, all of them make the ensemble")
    p.add_argument("--track", default="mtl", choices=sorted(COLUMNS),
                   help="the challenge of the runs (default: mtl)")
    p.add_argument("--out", type=Path, default=None,
                   help="default submissions/<track>/last-mile")
    p.add_argument("--no-tta", action="store_true",
                   help="leave out test-time augmentation (the row that needs the model)")
    p.add_argument("--weights", choices=("equal", "fit"), default="equal",
                   help="ensemble weights: equal, or fitted per task on validation")
    args = p.parse_args(argv)
    setup_logging()
    try:
        last_mile(args.runs, args.out, not args.no_tta, args.weights, args.track)
    except AbawError as err:
        print(f"abaw: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
