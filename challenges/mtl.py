"""The MTL challenge (4th ABAW, s-Aff-Wild2) end to end: ``make mtl`` / ``python -m challenges.mtl``.

Steps: embedded data (unless ``--data``) → train the config (resuming ``last.ckpt``) → predict
the validation set and score it with the official scorer (``abaw score``'s code) → fit per-AU
thresholds on validation, saved as JSON beside the checkpoint → predict the test list → write
the submission → validate it (``abaw validate``'s code) → summary table and ``report.json``;
on the embedded data also the true test score and the fraction of the oracle ceiling.

Real data: ``make mtl DATA=/path/to/abaw4_mtl`` (the folder holding
``training_set_annotations.txt``, ``validation_set_annotations.txt``,
``MTL_Challenge_test_set_release.txt`` and ``cropped_aligned/``); test crops in another folder
go with ``ARGS='--test-images /path/to/test/cropped_aligned'``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from abaw.synth.sizes import SIZES
from challenges.common import (
    SYNTH_DIR,
    Steps,
    best_checkpoint,
    ensure_synthetic_data,
    oracle,
    prepare_run,
    run_guarded,
    setup_logging,
    table,
    write_report,
)

DEFAULT_CONFIG = Path("configs/mtl/default.yaml")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make mtl", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="real MTL data folder (default: the embedded synthetic data, "
                                  f"generated under {SYNTH_DIR} if missing)")
    p.add_argument("--test-images", help="folder of the test crops (default: <data>/test/"
                                         "cropped_aligned if it exists, else <data>/cropped_aligned)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (YAML)")
    p.add_argument("--run", help="run name (default: the config's file stem)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run of that name")
    p.add_argument("--synth-size", default="default", choices=list(SIZES),
                   help="size of the embedded data (tiny: seconds, for smoke tests)")
    p.add_argument("--seed", type=int, default=0, help="seed of the embedded data")
    p.add_argument("--no-tune", action="store_true", help="keep AU thresholds at 0.5")
    p.add_argument("overrides", nargs=argparse.REMAINDER,
                   help="after '--': LightningCLI overrides, e.g. -- --trainer.max_epochs 2")
    args = p.parse_args(argv)
    if args.overrides and args.overrides[0] == "--":
        args.overrides = args.overrides[1:]
    return args


def lightning(argv: list[str]) -> None:
    """Run one LightningCLI subcommand in-process; a non-zero status stops the recipe."""
    from abaw.errors import AbawError
    from abaw.training.cli import run_lightning_cli

    status = run_lightning_cli(argv)
    if status != 0:
        raise AbawError(f"`abaw {' '.join(argv)}` failed with status {status}")


def main(argv: list[str] | None = None) -> int:
    """Run the recipe; errors are printed as one line (exit 2 or 3), never a traceback."""
    return run_guarded(run, parse_args(argv))


def run(args: argparse.Namespace) -> int:
    from abaw import vocab
    from abaw.commands.score import match_rows, score_mtl
    from abaw.errors import AbawError
    from abaw.formats.readers import read_mtl_annotations
    from abaw.formats.validate import validate_submission
    from abaw.metrics import mtl_score
    from abaw.postprocess import (
        apply_au_thresholds,
        default_postprocess_path,
        fit_au_thresholds,
        save_postprocess,
    )
    from abaw.synth.layouts import MTL_TEST_TRUTH

    setup_logging()
    steps = Steps()
    config = Path(args.config)
    if not config.is_file():
        raise AbawError(f"{config}: config file not found")
    run_name = args.run or config.stem
    synthetic = args.data is None
    if synthetic:
        with steps.step("embedded data"):
            synth = ensure_synthetic_data(args.synth_size, args.seed)
        data_root = synth / "mtl"
        run_name = run_name if args.synth_size == "default" else f"{run_name}-{args.synth_size}"
    else:
        data_root = Path(args.data).expanduser()
        for name in (vocab.MTL_TRAIN_FILE, vocab.MTL_VAL_FILE, vocab.MTL_TEST_LIST):
            if not (data_root / name).is_file():
                raise AbawError(f"{data_root / name}: not found (is --data the MTL folder?)")
    run_dir, sub_dir = prepare_run("mtl", run_name, args.fresh)

    common = ["--config", str(config), "--data.data_root", str(data_root),
              "--trainer.default_root_dir", str(run_dir),
              "--trainer.logger.init_args.save_dir", str(run_dir)]
    if args.test_images:
        common += ["--data.test_image_root", args.test_images]
    common += list(args.overrides)

    with steps.step(f"train {config} → {run_dir}"):
        resume = ["--ckpt_path", "last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
        if resume:
            print(f"resuming from {run_dir}/checkpoints/last.ckpt", flush=True)
        lightning(["fit", *common, *resume])
    ckpt = best_checkpoint(run_dir)

    with steps.step("score validation (official P_MTL)"):
        val_dir = run_dir / "validation"
        lightning(["predict", *common, "--ckpt_path", str(ckpt), "--data.predict_split", "val",
                   "--submission.output_dir", str(val_dir), "--submission.postprocess", "null",
                   "--submission.au_threshold", "0.5"])
        val_truth_path = data_root / vocab.MTL_VAL_FILE
        val_official = score_mtl(val_dir / "submission.txt", val_truth_path).values
        truth = read_mtl_annotations(val_truth_path)
        pred = np.load(val_dir / "predictions.npz", allow_pickle=False)
        rows = match_rows(list(pred["images"]), truth.images)
        va, expr, au_prob = pred["va"][rows], pred["expr_prob"][rows].argmax(1), pred["au_prob"][rows]

    with steps.step("fit per-AU thresholds on validation"):
        if args.no_tune:
            thresholds = np.full(vocab.NUM_AUS, 0.5)
        else:
            thresholds = fit_au_thresholds(truth.aus, au_prob)
        post = default_postprocess_path(ckpt)
        save_postprocess(post, thresholds, au_true=truth.aus, au_prob=au_prob,
                         fitted_on=str(val_truth_path))
        val_tuned = mtl_score(truth.va, va, truth.expression, expr, truth.aus,
                              apply_au_thresholds(au_prob, thresholds)).as_dict()
        print(f"thresholds → {post}: {np.round(thresholds, 2).tolist()}")

    with steps.step("predict the test list and write the submission"):
        lightning(["predict", *common, "--ckpt_path", str(ckpt), "--data.predict_split", "test",
                   "--submission.output_dir", str(sub_dir), "--submission.postprocess", str(post)])
        submission = sub_dir / "submission.txt"

    with steps.step("validate the submission"):
        problems = validate_submission("mtl", submission,
                                       test_list=data_root / vocab.MTL_TEST_LIST)
        for problem in problems[:20]:
            print(f"{submission}:{problem.line}: {problem.message}")
        if problems:
            raise AbawError(f"{submission}: {len(problems)} problems; not a valid submission")
        print(f"OK: {submission} would be accepted")

    report: dict = {"run": run_name, "config": str(config), "data": str(data_root),
                    "checkpoint": str(ckpt), "au_thresholds": thresholds.tolist(),
                    "validation_at_0.5": val_official, "validation_tuned": val_tuned,
                    "submission": str(submission)}
    rows_out = [["validation (AU at 0.5)", *_terms(val_official)],
                ["validation (tuned AU thresholds)", *_terms(val_tuned)]]
    if synthetic:
        with steps.step("true test score and oracle ceiling (embedded data only)"):
            test_score = score_mtl(submission, data_root / MTL_TEST_TRUTH).values
            ceiling = oracle(synth)["mtl"]
            report["test"] = test_score
            report["oracle"] = {s: ceiling[s]["oracle"]["P_MTL"] for s in ("validation", "test")}
            report["fraction_of_oracle"] = {
                "validation": val_tuned["P_MTL"] / report["oracle"]["validation"],
                "test": test_score["P_MTL"] / report["oracle"]["test"]}
            rows_out.append(["test (hidden truth)", *_terms(test_score)])
            rows_out.append(["oracle ceiling (test)", *_terms(ceiling["test"]["oracle"])])
            rows_out.append(["trivial majority / mean (test)",
                             *_terms(ceiling["test"]["trivial_majority"])])
    report["seconds"] = {**steps.seconds, "total": steps.total}
    write_report(sub_dir / "report.json", report)

    print("\n" + table(rows_out, ["MTL", "P_MTL", "CCC_V", "CCC_A", "F1_EXPR", "F1_AU"]))
    if synthetic:
        print(f"\nfraction of the oracle ceiling: validation "
              f"{report['fraction_of_oracle']['validation']:.1%}, "
              f"test {report['fraction_of_oracle']['test']:.1%}")
    print(f"\nsubmission: {submission}\nreport:     {sub_dir / 'report.json'}\n"
          f"total time: {steps.total:.0f} s")
    return 0


def _terms(score: dict) -> list[float]:
    return [score["P_MTL"], score["ccc_valence"], score["ccc_arousal"], score["f1_expression"],
            score["f1_au"]]


if __name__ == "__main__":
    sys.exit(main())
