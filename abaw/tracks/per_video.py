"""The per-video tracks (5th ABAW on: VA, EXPR, AU on Aff-Wild2 videos): ``make va|expr|au``.

Steps (:func:`abaw.runner.run`): embedded data (the per-video layout, unless ``--data``) →
the backbone's starting point (``--init``, as LSD: the default MTL model) → train the frame
model (the MTL network with one task, ``configs/per_video/base.yaml``) → predict the
validation frames that have a crop, fill every other frame from the nearest predicted frame
of its video, score every labelled frame with the official metric → optionally a temporal
head over cached backbone features of consecutive frames (``--temporal gru``) → the
post-processing fitted on validation (:mod:`abaw.postprocess`, ``--post``: temporal
smoothing for every task, the calibration for VA, expression biases for EXPR, per-AU
thresholds for AU), reported before and after and as a split-half estimate, saved as JSON
beside the checkpoint (or the GRU head) → predict the sample file's frames, fill, write and
validate the submission → summary table and ``report.json``; on the embedded data also the
hidden-truth test score, the oracle ceiling and the trivial baselines.

The order at predict time (the writer, :class:`abaw.training.writer.PerVideoPredictionWriter`):
the model predicts the frames that have a face crop; the post-processing works on those
predictions (smoothing by frame number within each video, then calibration / biases /
thresholds); only then is every other frame of the sample file (or of the validation
videos) filled with the decision of the nearest predicted frame of its video. The fitting
follows the same order and scores every labelled frame after filling (``rows`` of
:func:`abaw.postprocess.fit_postprocess`).

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
from abaw.postprocess import TASK_STEPS
from abaw.runner import Challenge, Run, ensure_synthetic_data, oracle, predict, synth_dir
from abaw.scoring import per_video_array_score as task_score
from abaw.scoring import score_per_video

#: how each task's score and its parts are named in the report (metric key, table columns)
SCORE_NAMES = {"va": ("score", ("score", "ccc_valence", "ccc_arousal")),
               "expr": ("f1", ("f1",)), "au": ("f1", ("f1",))}


def task_terms(task: str, evaluated: dict[str, float]) -> dict[str, float]:
    """:func:`abaw.postprocess.evaluate`'s scores of one task under the track's names."""
    if task == "va":
        return {"score": evaluated["score"], "ccc_valence": evaluated["ccc_valence"],
                "ccc_arousal": evaluated["ccc_arousal"]}
    return {"f1": evaluated["score"]}


def task_labels(task: str, truth: np.ndarray) -> Any:
    """One task's truth (per-frame values with sentinels) as :class:`abaw.postprocess.Labels`."""
    from abaw.postprocess import Labels

    field = {"va": "va", "expr": "expression", "au": "aus"}[task]
    return Labels(**{field: np.asarray(truth, dtype=np.float64 if task == "va" else np.int64)})
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
        steps = TASK_STEPS[self.name]
        p.add_argument("--post", default="auto",
                       help="post-processing steps fitted on validation: auto (the default: "
                            "those whose split-half estimate beats the raw decisions), a comma "
                            f"list of {', '.join(steps)} (the ones that apply to {self.name}), "
                            "or none")
        p.add_argument("--no-tune", action="store_true",
                       help="raw decisions: AU at 0.5, argmax, no smoothing, VA as predicted "
                            "(= --post none)")

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
        from abaw.postprocess import parse_steps

        chosen = () if run.args.post == "auto" else parse_steps(run.args.post)
        useless = set(chosen) - set(TASK_STEPS[self.name])
        if useless:
            raise AbawError(f"--post {run.args.post}: {', '.join(sorted(useless))} does not "
                            f"apply to {self.name} (steps: {', '.join(TASK_STEPS[self.name])})")
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

    def test_list_file(self, data_root: Path) -> Path:
        from abaw.formats.readers import find_sample_file

        return find_sample_file(data_root, self.name)

    def test_truth_file(self, data_root: Path) -> Path:
        from abaw.formats.readers import find_task_folder

        return find_task_folder(data_root, self.name) / "Test_Set"

    def test_truth_path(self, run: Run) -> Path:
        return self.test_truth_file(run.data_root)

    def validation_set(self, data_root: Path, predicted: Any) -> tuple[list[str], Any, Any]:
        """The predicted frames (``predicted``, those with a crop), the truth of every frame
        of the validation videos and, per frame, the predicted frame filling it."""
        from abaw.data.per_video import all_frames, fill_rows
        from abaw.formats.readers import find_task_folder, read_per_video_split

        folder = vocab.PER_VIDEO_SPLITS[1]
        videos = read_per_video_split(data_root, self.name, folder)
        locations = all_frames(videos)
        rows = fill_rows(list(predicted), locations, find_task_folder(data_root, self.name) / folder)
        return list(predicted), task_labels(self.name, np.concatenate(list(videos.values()))), rows

    def prediction_writer(self) -> Any:
        from abaw.training.writer import PerVideoPredictionWriter

        return PerVideoPredictionWriter(task=self.name)

    def _truth(self, run: Run, folder: str) -> tuple[list[str], np.ndarray]:
        from abaw.data.per_video import all_frames
        from abaw.formats.readers import read_per_video_split

        videos = read_per_video_split(run.data_root, self.name, folder)
        return all_frames(videos), np.concatenate(list(videos.values()))

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
        from abaw.data.per_video import fill_rows

        folder = vocab.PER_VIDEO_SPLITS[1]
        locations, truth = self._truth(run, folder)
        rows = fill_rows(predictions.images, locations, run.extras["task_dir"] / folder)
        arrays = {k: v[rows] for k, v in predictions.arrays.items()}
        score = task_score(self.name, truth, arrays)
        run.validation = (list(predictions.images), predictions.arrays, truth, rows)
        label = label or ("temporal head" if run.args.temporal != "none" else "frame model")
        at = " (AU at 0.5)" if self.name == "au" else ""
        run.rows.append([f"validation, {label}{at}",
                         *(score[k] for k in SCORE_NAMES[self.name][1])])
        print(f"validation: {len(predictions.images)} frames predicted, {len(locations)} scored "
              f"after filling")
        return {"validation": score}

    def fit_postprocess(self, run: Run, checkpoint: Path) -> tuple[Path, dict]:
        """The post-processing of the task fitted on the crop-frame predictions, scored on
        every labelled validation frame after filling; saved beside the checkpoint (the GRU
        head with ``--temporal gru``), where the writer finds it."""
        from abaw.postprocess import (
            choose_steps,
            default_postprocess_path,
            fit_and_estimate,
            parse_steps,
            save_postprocess,
        )

        images, arrays, truth, rows = run.validation
        labels = task_labels(self.name, truth)
        if run.args.no_tune:
            steps: tuple[str, ...] = ()
        elif run.args.post == "auto":
            steps = tuple(choose_steps(images, labels, arrays, rows=rows)[0].get(self.name, ()))
            print(f"--post auto: steps chosen by split-half: {', '.join(steps) or 'none'}")
        else:
            steps = parse_steps(run.args.post)
        fitted = fit_and_estimate(images, labels, arrays, steps, rows)
        post, tuned = fitted.post, task_terms(self.name, fitted.tuned)
        entries: dict[str, Any] = {"postprocess_steps": list(steps),
                                   "smoothing_sigma": post.smoothing.get(self.name, 0.0),
                                   "validation_tuned": tuned}
        if self.name == "au":
            entries["au_thresholds"] = post.au_thresholds.tolist()
        if self.name == "expr":
            entries["expression_biases"] = post.expression_biases.tolist()
        if self.name == "va":
            entries["va_calibration"] = post.record()["va_calibration"]
        if fitted.split_half is None:
            print(f"no split-half estimate: {fitted.why}")
        else:
            entries["split_half"] = {k: task_terms(self.name, v)
                                     for k, v in fitted.split_half.items()}
        target = checkpoint if run.args.temporal == "none" else run.extras["temporal"].head_path
        saved = save_postprocess(default_postprocess_path(target), post,
                                 fitted_on=str(run.extras["task_dir"]),
                                 extra={"steps": list(steps), **{
                                     k: entries[k] for k in ("validation_tuned", "split_half")
                                     if k in entries}})
        values = {"au": "AU thresholds " + str(np.round(post.au_thresholds, 2).tolist()),
                  "expr": f"expression biases {post.expression_biases.tolist()}",
                  "va": "VA calibration (offset, scale) "
                        + str(np.round(post.va_calibration, 3).tolist())}
        print(f"post-processing ({', '.join(steps) or 'none'}) → {saved}: smoothing sigma "
              f"{entries['smoothing_sigma']:g} frames" + (f", {values[self.name]}"
                                                           if values[self.name] else ""))
        keys = SCORE_NAMES[self.name][1]
        run.rows.append([f"validation (post-processed: {', '.join(steps) or 'none'})",
                         *(tuned[k] for k in keys)])
        if "split_half" in entries:
            for key, label in (("raw", "raw"), ("tuned", "post-processed")):
                run.rows.append([f"split-half ({label})",
                                 *(entries["split_half"][key][k] for k in keys)])
        return saved, entries

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
        ceiling = oracle(run.synth, "per_video")["test"][self.name]
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
        ceiling = oracle(run.synth, "per_video")
        key = SCORE_NAMES[self.name][0]
        best = {s: ceiling[s][self.name] for s in ("validation", "test")}
        validation = run.report.get("validation_tuned", run.report["validation"])[key]
        return {"oracle": best, "fraction_of_oracle": {
            "validation": validation / best["validation"], "test": test[key] / best["test"]}}


VA = PerVideo("va")
EXPR = PerVideo("expr")
AU = PerVideo("au")
