"""The per-video tracks (5th ABAW on: VA, EXPR, AU on Aff-Wild2 videos): ``make va|expr|au``.

Steps (:func:`abaw.runner.run`): embedded data (the per-video layout, unless ``--data``) →
the backbone's starting point (``--init``, as LSD: the default MTL model) → train the frame
model (the MTL network with one task, ``configs/per_video/base.yaml``) → predict the
validation frames that have a crop, fill every other frame from the nearest predicted frame
of its video, score every labelled frame with the official metric → (AU) per-AU thresholds
fitted on validation → optionally a temporal head over cached backbone features of
consecutive frames (``--temporal gru``) → predict the sample file's frames, fill, write and
validate the submission → summary table and ``report.json``; on the embedded data also the
hidden-truth test score, the oracle ceiling and the trivial baselines.

Real data: ``make va DATA=/path/to/abaw`` (the folder holding ``VA_Estimation_Challenge/``,
``cropped_aligned/`` and ``test_set_examples/`` with the organisers' sample file; EXPR's
folder may be ``EXPR_Classification_Challenge`` (5th edition) or
``EXPR_Recognition_Challenge`` (6th on)); crops elsewhere go with ``--test-images``, a
renamed sample file with ``--sample``.
"""

from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from abaw import vocab
from abaw.errors import AbawError
from abaw.runner import Challenge, Run, ensure_synthetic_data, predict, synth_dir
from abaw.scoring import per_video_array_score as task_score
from abaw.scoring import score_per_video

#: how each task's score and its parts are named in the report (metric key, table columns)
SCORE_NAMES = {"va": ("score", ("score", "ccc_valence", "ccc_arousal")),
               "expr": ("f1", ("f1",)), "au": ("f1", ("f1",))}
DESCRIPTIONS = {"va": "valence-arousal estimation", "expr": "expression recognition",
                "au": "action unit detection"}


def trivial_scores(task: str, truth: np.ndarray, train: np.ndarray) -> dict[str, float]:
    """Trivial predictors on ``truth``: VA constant (CCC 0); EXPR the training majority
    class everywhere; AU the per-AU training majority and every AU on."""
    from abaw import metrics

    if task == "va":
        return {"constant": metrics.va_score(truth, np.zeros_like(truth))}
    if task == "expr":
        majority = int(np.bincount(train[train >= 0], minlength=vocab.NUM_EXPRESSIONS).argmax())
        return {"majority_class": metrics.expression_f1(truth, np.full(len(truth), majority))[0]}
    labelled = np.where(train >= 0, train, 0).sum(0) * 2 > (train >= 0).sum(0)
    return {"per_au_majority": metrics.au_f1(truth, np.tile(labelled.astype(int), (len(truth), 1)))[0],
            "all_aus_on": metrics.au_f1(truth, np.ones_like(truth))[0]}


def per_video_oracle(run: Run) -> dict:
    """The per-video oracle of the embedded data (from ``oracle.json`` when it holds it; the
    per-video tracks generate only their own layout, so the MTL/LSD parts may be missing)."""
    import json

    from abaw.synth.oracle import per_video_oracle as compute

    path = run.synth / "oracle.json"
    if path.is_file():
        saved = json.loads(path.read_text())
        if "per_video" in saved:
            return saved["per_video"]
    return compute(run.synth)


class PerVideo(Challenge):
    """One per-video task; ``name`` is the task (va, expr, au)."""

    synth_subdir = "per_video"
    config_dir = "per_video"

    def __init__(self, task: str) -> None:
        self.name = task
        self.description = (f"The per-video {task.upper()} challenge (5th ABAW on, "
                            f"{DESCRIPTIONS[task]}) end to end: make {task}.")
        self.score_file = partial(score_per_video, task)
        self.table_header = (task.upper(), *SCORE_NAMES[task][1])

    # -- options -------------------------------------------------------------------------------
    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--init", default="mtl", metavar="mtl|none|CHECKPOINT",
                       help="backbone initialisation: mtl = the best checkpoint of the default "
                            "MTL run (trained first on the embedded data when missing), none = "
                            "random, or a checkpoint file (Lightning, timm or MAE)")
        p.add_argument("--edition", type=int, choices=vocab.PER_VIDEO_EDITIONS, default=6,
                       help="embedded data only: the edition whose folder and sample-file names "
                            "the per-video layout uses (5: EXPR_Classification_Challenge, "
                            "6: EXPR_Recognition_Challenge)")
        p.add_argument("--sample", help="the test sample file (default: found under the data "
                                        "folder, 5th or 6th edition name)")
        p.add_argument("--temporal", default="none", choices=["none", "gru"],
                       help="gru: a GRU head over cached backbone features of consecutive "
                            "frames, trained after the frame model; its predictions make the "
                            "submission (the frame model's scores are reported beside them)")
        if self.name == "au":
            p.add_argument("--no-tune", action="store_true", help="keep AU thresholds at 0.5")

    def default_run_name(self, args: argparse.Namespace, stem: str) -> str:
        init = {"mtl": "", "none": "-scratch"}.get(args.init, "-init")
        temporal = "" if args.temporal == "none" else f"-{args.temporal}"
        edition = "-ed5" if args.edition == 5 and args.data is None else ""
        return f"{stem}{init}{temporal}{edition}"

    def synthetic_data(self, args: argparse.Namespace) -> Path:
        out = synth_dir(args.synth_size, args.seed)
        if args.edition != 6:
            out = out.with_name(f"{out.name}-ed{args.edition}")
        return ensure_synthetic_data(args.synth_size, args.seed, layouts=(self.synth_subdir,),
                                     edition=args.edition, out=out)

    # -- the pipeline --------------------------------------------------------------------------
    def check(self, run: Run) -> None:
        from abaw.formats.readers import find_sample_file, find_task_folder
        from abaw.tracks.lsd import init_checkpoint

        run.extras["task_dir"] = find_task_folder(run.data_root, self.name)
        run.extras["sample"] = (Path(run.args.sample) if run.args.sample
                                else find_sample_file(run.data_root, self.name))
        if not run.extras["sample"].is_file():
            raise AbawError(f"--sample {run.args.sample}: no such file")
        run.extras["init"] = init_checkpoint(run)
        run.report.update({"task": self.name, "temporal": run.args.temporal,
                           "sample_file": str(run.extras["sample"]),
                           "init": str(run.extras["init"]) if run.extras["init"] else None})

    def cli_arguments(self, run: Run) -> list[str]:
        out = ["--data.sample_file", str(run.extras["sample"])]
        if run.args.test_images:
            out += ["--data.image_root", run.args.test_images]
        if run.extras.get("init"):
            out += ["--model.checkpoint", str(run.extras["init"])]
        return out

    def test_list_path(self, run: Run) -> Path:
        return run.extras["sample"]

    def test_truth_path(self, run: Run) -> Path:
        return run.extras["task_dir"] / "Test_Set"

    def _truth(self, run: Run, folder: str) -> tuple[list[str], np.ndarray]:
        from abaw.data.per_video import all_frames
        from abaw.formats.readers import read_per_video_split

        videos = read_per_video_split(run.data_root, self.name, folder)
        return all_frames(videos), np.concatenate(list(videos.values()))

    def _filled(self, predictions: Any, wanted: list[str], source: Path) -> dict[str, np.ndarray]:
        from abaw.data.per_video import fill_rows

        rows = fill_rows(predictions.images, wanted, source)
        return {k: v[rows] for k, v in predictions.arrays.items()}

    def predict_validation(self, run: Run, cli: Any, checkpoint: Path) -> Any:
        frame = predict(cli, checkpoint, "val", run.run_dir / "validation")
        if run.args.temporal == "none":
            return frame
        from abaw.training.temporal import TemporalRun

        # the frame model's own validation score, then the temporal head's predictions
        run.report["frame_model"] = {"validation": self.score_validation(run, frame, "frame model")}
        run.extras["temporal"] = TemporalRun(run, cli, checkpoint)
        return run.extras["temporal"].fit_and_predict_validation()

    def score_validation(self, run: Run, predictions: Any, label: str = "") -> dict:
        folder = vocab.PER_VIDEO_SPLITS[1]
        locations, truth = self._truth(run, folder)
        arrays = self._filled(predictions, locations, run.extras["task_dir"] / folder)
        score = task_score(self.name, truth, arrays)
        run.validation = (truth, arrays)
        label = label or ("temporal head" if run.args.temporal != "none" else "frame model")
        at = " (AU at 0.5)" if self.name == "au" else ""
        run.rows.append([f"validation, {label}{at}",
                         *(score[k] for k in SCORE_NAMES[self.name][1])])
        print(f"validation: {len(predictions.images)} frames predicted, {len(locations)} scored "
              f"after filling")
        return {"validation": score}

    def fit_postprocess(self, run: Run, checkpoint: Path) -> tuple[Path | None, dict]:
        if self.name != "au":
            return None, {}
        from abaw.postprocess import default_postprocess_path, fit_au_thresholds, save_postprocess

        truth, arrays = run.validation
        thresholds = (np.full(vocab.NUM_AUS, 0.5) if run.args.no_tune
                      else fit_au_thresholds(truth, arrays["au_prob"]))
        target = checkpoint if run.args.temporal == "none" else run.extras["temporal"].head_path
        post = save_postprocess(default_postprocess_path(target), thresholds, au_true=truth,
                                au_prob=arrays["au_prob"], fitted_on=str(run.extras["task_dir"]))
        tuned = task_score("au", truth, arrays, thresholds)
        print(f"thresholds → {post}: {np.round(thresholds, 2).tolist()}")
        run.rows.append(["validation (tuned AU thresholds)", tuned["f1"]])
        return post, {"au_thresholds": thresholds.tolist(), "validation_tuned": tuned}

    def predict_test(self, run: Run, cli: Any, checkpoint: Path, post: Path | None) -> Any:
        if run.args.temporal == "none":
            return predict(cli, checkpoint, "test", run.sub_dir, post)
        temporal = run.extras["temporal"]
        if run.synthetic:  # the frame model's own submission, scored beside the temporal one
            frame_dir = run.sub_dir / "frame_model"
            frame_dir.mkdir(exist_ok=True)
            frame = predict(cli, checkpoint, "test", frame_dir)
            run.report["frame_model"]["test"] = self.score_file(
                frame.written["submission"], self.test_truth_path(run)).values
        return temporal.predict_test(post)

    def test_rows(self, run: Run, test: dict) -> list[list[Any]]:
        keys = SCORE_NAMES[self.name][1]
        ceiling = per_video_oracle(run)["test"][self.name]
        _, truth = self._truth_test(run)
        _, train = self._truth(run, vocab.PER_VIDEO_SPLITS[0])
        trivial = trivial_scores(self.name, truth, train)
        run.report["trivial_test"] = trivial
        rows = []
        if "frame_model" in run.report and "test" in run.report["frame_model"]:
            frame = run.report["frame_model"]["test"]
            rows.append(["test (hidden truth), frame model", *(frame[k] for k in keys)])
        label = "temporal head" if run.args.temporal != "none" else "frame model"
        rows.append([f"test (hidden truth), {label}", *(test[k] for k in keys)])
        rows.append(["oracle ceiling (test)", ceiling, *([""] * (len(keys) - 1))])
        rows += [[f"trivial: {name} (test)", value, *([""] * (len(keys) - 1))]
                 for name, value in trivial.items()]
        return rows

    def _truth_test(self, run: Run) -> tuple[list[str], np.ndarray]:
        from abaw.scoring import _per_video_truth

        return _per_video_truth(self.test_truth_path(run), self.name)

    def oracle_report(self, run: Run, test: dict) -> dict:
        ceiling = per_video_oracle(run)
        key = SCORE_NAMES[self.name][0]
        best = {s: ceiling[s][self.name] for s in ("validation", "test")}
        validation = run.report.get("validation_tuned", run.report["validation"])[key]
        return {"oracle": best, "fraction_of_oracle": {
            "validation": validation / best["validation"], "test": test[key] / best["test"]}}


VA = PerVideo("va")
EXPR = PerVideo("expr")
AU = PerVideo("au")
