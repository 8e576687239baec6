"""The MTL challenge (4th ABAW, s-Aff-Wild2) end to end: ``make mtl`` / ``abaw run mtl``.

Steps (:func:`abaw.runner.run`): embedded data (unless ``--data``) → train the config
(resuming ``last.ckpt``) → predict the validation set and score it with the official P_MTL,
AUs at 0.5 → fit the post-processing on validation (:mod:`abaw.postprocess`: per-AU
thresholds, expression biases, temporal smoothing; ``--post`` picks the steps), reported
before and after and as a split-half estimate, saved as ``<checkpoint>.postprocess.json`` →
predict the test list with it → write and validate the submission → summary table and
``report.json``; on the embedded data also the true test score and the fraction of the
oracle ceiling.

Real data: ``make mtl DATA=/path/to/abaw4_mtl`` (the folder holding
``training_set_annotations.txt``, ``validation_set_annotations.txt``,
``MTL_Challenge_test_set_release.txt`` and ``cropped_aligned/``); test crops in another folder
go with ``ARGS='--test-images /path/to/test/cropped_aligned'``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from abaw import vocab
from abaw.runner import Challenge, Run, matched, oracle
from abaw.scoring import score_mtl

TERMS = ("P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au")
#: decimals of valence/arousal in a submission file (abaw.formats.writers), so the validation
#: score on arrays is the score of the written file
VA_DECIMALS = 6


def terms(score: dict) -> list[float]:
    return [score[k] for k in TERMS]


def mtl_terms(score: dict) -> dict[str, float]:
    """:func:`abaw.postprocess.evaluate`'s scores (all three tasks) under the MTL names."""
    return {"P_MTL": score["score"], **{k: score[k] for k in TERMS[1:]}}


def _steps_label(steps: list[str] | dict[str, list[str]]) -> str:
    """``thresholds, smoothing`` or, per task, ``va: smoothing; expr: none; au: thresholds``."""
    if isinstance(steps, dict):
        return "; ".join(f"{t}: {', '.join(v) or 'none'}" for t, v in steps.items())
    return ", ".join(steps) or "none"


class Mtl(Challenge):
    name = "mtl"
    description = __doc__.split("\n\n")[0]
    required = (vocab.MTL_TRAIN_FILE, vocab.MTL_VAL_FILE, vocab.MTL_TEST_LIST)
    test_list = vocab.MTL_TEST_LIST
    test_truth = vocab.MTL_TEST_TRUTH
    synth_subdir = "mtl"
    score_file = staticmethod(score_mtl)
    table_header = ("MTL", "P_MTL", "CCC_V", "CCC_A", "F1_EXPR", "F1_AU")

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--post", default="auto",
                            help="post-processing steps fitted on validation: auto (per task, "
                                 "the steps whose split-half estimate beats the raw decisions; "
                                 "the default), a comma list of thresholds (per AU), biases "
                                 "(expression), smoothing (per task, within videos), "
                                 "calibration (VA: offset and scale per dimension), or none")
        parser.add_argument("--no-tune", action="store_true",
                            help="raw decisions: AU at 0.5, argmax, no smoothing, VA as predicted "
                                 "(= --post none)")

    def check(self, run: Run) -> None:
        from abaw.postprocess import parse_steps

        if run.args.post != "auto":
            parse_steps(run.args.post)

    def cli_arguments(self, run: Run) -> list[str]:
        if run.args.test_images:
            return ["--data.test_image_root", run.args.test_images]
        return []

    def score_validation(self, run: Run, predictions: Any) -> dict:
        from abaw.formats.readers import read_mtl_annotations
        from abaw.metrics import mtl_score

        path = run.data_root / vocab.MTL_VAL_FILE
        truth = read_mtl_annotations(path)
        arrays = matched(predictions, truth.images, path)
        # AUs at 0.5 and VA as the file holds it: the official score of the validation file
        score = mtl_score(truth.va, np.round(arrays["va"], VA_DECIMALS), truth.expression,
                          arrays["expr_prob"].argmax(1), truth.aus,
                          (arrays["au_prob"] >= 0.5).astype(np.int64)).as_dict()
        run.validation = (path, truth, arrays)
        run.rows.append(["validation (AU at 0.5)", *terms(score)])
        return {"validation_at_0.5": score}

    def fit_postprocess(self, run: Run, checkpoint: Path) -> tuple[Path, dict]:
        from abaw.postprocess import (
            Labels,
            choose_steps,
            default_postprocess_path,
            fit_and_estimate,
            parse_steps,
            save_postprocess,
            steps_record,
        )

        path, truth, arrays = run.validation
        images, labels = list(truth.images), Labels.from_annotations(truth)
        entries: dict[str, Any] = {}
        steps: Any
        if run.args.no_tune or run.args.post != "auto":
            steps = () if run.args.no_tune else parse_steps(run.args.post)
        else:
            steps, entries["split_half_per_combination"] = choose_steps(images, labels, arrays)
        shown = steps_record(steps)
        label = _steps_label(shown)
        if run.args.post == "auto" and not run.args.no_tune:
            print(f"--post auto: steps chosen per task by split-half: {label}")
        fitted = fit_and_estimate(images, labels, arrays, steps)
        post, tuned = fitted.post, mtl_terms(fitted.tuned)
        record = post.record()
        entries.update({
            "postprocess_steps": shown, "au_thresholds": post.au_thresholds.tolist(),
            "expression_biases": post.expression_biases.tolist(),
            "smoothing_sigma": record["smoothing_sigma"],
            "va_calibration": record["va_calibration"], "validation_tuned": tuned})
        if fitted.split_half is None:
            print(f"no split-half estimate: {fitted.why}")
        else:
            entries["split_half"] = {k: mtl_terms(v) for k, v in fitted.split_half.items()}
        saved = save_postprocess(default_postprocess_path(checkpoint), post, fitted_on=str(path),
                                 extra={"steps": shown, **{
                                     k: entries[k] for k in ("validation_tuned", "split_half")
                                     if k in entries}})
        print(f"post-processing ({label}) → {saved}: AU thresholds "
              f"{np.round(post.au_thresholds, 2).tolist()}, expression biases "
              f"{post.expression_biases.tolist()}, smoothing sigma {post.smoothing or 'none'}, "
              f"VA calibration (offset, scale) {np.round(post.va_calibration, 3).tolist()}")
        run.rows.append([f"validation (post-processed: {label})",
                         *terms(tuned)])
        if "split_half" in entries:
            run.rows.append(["split-half (AU at 0.5)", *terms(entries["split_half"]["raw"])])
            run.rows.append(["split-half (post-processed)",
                             *terms(entries["split_half"]["tuned"])])
        return saved, entries

    def validation_truth(self, data_root: Path) -> tuple[list[str], Any]:
        from abaw.formats.readers import read_mtl_annotations
        from abaw.postprocess import Labels

        truth = read_mtl_annotations(data_root / vocab.MTL_VAL_FILE)
        return list(truth.images), Labels.from_annotations(truth)

    def prediction_writer(self) -> Any:
        from abaw.training.writer import MtlPredictionWriter

        return MtlPredictionWriter()

    def test_rows(self, run: Run, test: dict) -> list[list[Any]]:
        ceiling = oracle(run.synth, "mtl")["test"]
        return [["test (hidden truth)", *terms(test)],
                ["oracle ceiling (test)", *terms(ceiling["oracle"])],
                ["trivial majority / mean (test)", *terms(ceiling["trivial_majority"])]]

    def oracle_report(self, run: Run, test: dict) -> dict:
        ceiling = oracle(run.synth, "mtl")
        best = {s: ceiling[s]["oracle"]["P_MTL"] for s in ("validation", "test")}
        return {"oracle": best, "fraction_of_oracle": {
            "validation": run.report["validation_tuned"]["P_MTL"] / best["validation"],
            "test": test["P_MTL"] / best["test"]}}


MTL = Mtl()
