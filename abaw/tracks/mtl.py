"""The MTL challenge (4th ABAW, s-Aff-Wild2) end to end: ``make mtl`` / ``abaw run mtl``.

Steps (:func:`abaw.runner.run`): embedded data (unless ``--data``) → train the config
(resuming ``last.ckpt``) → predict the validation set and score it with the official P_MTL,
AUs at 0.5 → fit per-AU thresholds on validation (F1 at 0.5 and tuned both reported), saved
as ``<checkpoint>.postprocess.json`` → predict the test list with them → write and validate
the submission → summary table and ``report.json``; on the embedded data also the true test
score and the fraction of the oracle ceiling.

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
        parser.add_argument("--no-tune", action="store_true", help="keep AU thresholds at 0.5")

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
        from abaw.metrics import mtl_score
        from abaw.postprocess import (
            apply_au_thresholds,
            default_postprocess_path,
            fit_au_thresholds,
            save_postprocess,
        )

        path, truth, arrays = run.validation
        au_prob = arrays["au_prob"]
        thresholds = (np.full(vocab.NUM_AUS, 0.5) if run.args.no_tune
                      else fit_au_thresholds(truth.aus, au_prob))
        post = save_postprocess(default_postprocess_path(checkpoint), thresholds,
                                au_true=truth.aus, au_prob=au_prob, fitted_on=str(path))
        tuned = mtl_score(truth.va, arrays["va"], truth.expression, arrays["expr_prob"].argmax(1),
                          truth.aus, apply_au_thresholds(au_prob, thresholds)).as_dict()
        print(f"thresholds → {post}: {np.round(thresholds, 2).tolist()}")
        run.rows.append(["validation (tuned AU thresholds)", *terms(tuned)])
        return post, {"au_thresholds": thresholds.tolist(), "validation_tuned": tuned}

    def test_rows(self, run: Run, test: dict) -> list[list[Any]]:
        ceiling = oracle(run.synth)["mtl"]["test"]
        return [["test (hidden truth)", *terms(test)],
                ["oracle ceiling (test)", *terms(ceiling["oracle"])],
                ["trivial majority / mean (test)", *terms(ceiling["trivial_majority"])]]

    def oracle_report(self, run: Run, test: dict) -> dict:
        ceiling = oracle(run.synth)["mtl"]
        best = {s: ceiling[s]["oracle"]["P_MTL"] for s in ("validation", "test")}
        return {"oracle": best, "fraction_of_oracle": {
            "validation": run.report["validation_tuned"]["P_MTL"] / best["validation"],
            "test": test["P_MTL"] / best["test"]}}


MTL = Mtl()
