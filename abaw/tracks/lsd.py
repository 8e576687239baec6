"""The LSD challenge (4th ABAW, learning from synthetic data) end to end: ``make lsd``.

Steps: embedded data (unless ``--data``) → offline assets (Real-ESRGAN, MediaPipe) →
super-resolution of the synthetic training images at the configured ``data.img_size``
(content-hash cached, names kept) → hand detection on the real(-like) validation and test
images (cached; on the embedded data its precision/recall against the generator's recorded
hands) → train (resuming ``last.ckpt``) → predict validation, score it with the official
macro F1, confusion-matrix PNG → fit the occlusion decision rule on validation, saved as
``<checkpoint>.occlusion_rule.json`` → predict the test list with it → write and validate the
submission → summary table and ``report.json``; on the embedded data also the true test F1
and the fraction of the oracle ceiling.

Real data: ``make lsd DATA=/path/to/abaw4_lsd`` (the folder holding
``training_set_synthetic_images/``, ``validation_set_real_images/``,
``LSD_Challenge_test_set_release.txt`` and the test images in ``test_set/`` — or name the
test folder with ``--test-images``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from abaw import vocab
from abaw.argtypes import non_negative_int, positive_int
from abaw.errors import AbawError
from abaw.runner import DEFAULT_RUN, REPORT_FILE, Challenge, Run, matched, oracle
from abaw.scoring import score_lsd

SR_ASSETS = {"compact": "realesr-compact-x4", "x4plus": "realesrgan-x4plus"}
HAND_ASSET = "mediapipe-hand-landmarker"
#: where the LSD steps shared by every run of one data folder go (SR copies, hand CSVs, subsets)
SHARED_DIR = Path("runs/lsd/_shared")


def subset_tree(tree: Path, limit: int, seed: int, out: Path) -> Path:
    """A class-stratified subset of a class-folder tree, as hard links under ``out``."""
    from abaw.formats.readers import read_lsd_tree

    samples = read_lsd_tree(tree)
    labels = np.asarray(samples.labels)
    rng = np.random.default_rng(seed)
    share = limit / len(labels)
    keep: list[int] = []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keep += rng.choice(idx, max(1, round(len(idx) * share)), replace=False).tolist()
    marker = out / ".complete"
    if marker.is_file() and marker.read_text() == f"{limit},{seed},{len(keep)}":
        return out
    for i in sorted(keep):
        rel = samples.paths[i]
        target = out / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            os.link(tree / rel, target)
    marker.write_text(f"{limit},{seed},{len(keep)}")
    return out


def detector_quality(found_csv: Path, latent_csv: Path, folder_name: str) -> dict[str, float]:
    """Precision and recall of the detector's flags against the generator's recorded hands
    (whose names carry the tree folder, ``validation_set_real_images/...``)."""
    from abaw.formats.readers import read_occlusion_csv

    prefix = f"{folder_name}/"
    truth = {n.removeprefix(prefix): v for n, v in read_occlusion_csv(latent_csv).items()}
    found = read_occlusion_csv(found_csv)
    names = [n for n in found if n in truth]
    t = np.array([truth[n] for n in names], bool)
    f = np.array([found[n] for n in names], bool)
    tp = int((t & f).sum())
    return {"true_hands": int(t.sum()), "true_positives": tp,
            "precision": tp / max(1, int(f.sum())), "recall": tp / max(1, int(t.sum()))}


def _tag(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


def init_checkpoint(run: Run) -> Path | None:
    """The checkpoint the LSD backbone starts from (``--init``); ``None`` = random.

    ``mtl``: the best checkpoint of the default MTL run (its ``report.json`` names it). On
    the embedded data a missing run is trained first (``make mtl`` with the same data size
    and seed); on real data it must exist — the MTL crops are another folder — or be named.
    """
    from abaw.tracks.mtl import MTL

    init = run.args.init
    if init == "none":
        return None
    if init != "mtl":
        path = Path(init).expanduser()
        if not path.is_file():
            raise AbawError(f"--init {init}: no such checkpoint file")
        return path
    name = DEFAULT_RUN + ("" if run.synth is None or run.args.synth_size == "default"
                          else f"-{run.args.synth_size}")
    report_path = Path("submissions") / MTL.name / name / REPORT_FILE
    checkpoint = _reported_checkpoint(report_path)
    if checkpoint is None:
        if run.synth is None:
            raise AbawError(f"--init mtl: no trained MTL run ({report_path} names no checkpoint)"
                            ": run `make mtl DATA=<the MTL folder>` first, or pass --init "
                            "CHECKPOINT (a face model the challenge rules allow) or --init none")
        from abaw.runner import parse_args
        from abaw.runner import run as run_challenge

        with run.steps.step("train the default MTL model (the LSD backbone's initialisation)"):
            mtl_base = run.configs[0].parent.parent / MTL.name / run.configs[0].name
            argv = ["--config", str(mtl_base), "--synth-size", run.args.synth_size,
                    "--seed", str(run.args.seed)]
            run_challenge(MTL, parse_args(MTL, argv))
        checkpoint = _reported_checkpoint(report_path)
        if checkpoint is None:
            raise AbawError(f"--init mtl: the MTL run wrote no checkpoint ({report_path})")
    print(f"{run.challenge.name.upper()} backbone initialised from {checkpoint}")
    return checkpoint


def _reported_checkpoint(report_path: Path) -> Path | None:
    import json

    try:
        checkpoint = json.loads(report_path.read_text(encoding="utf-8")).get("checkpoint")
    except (OSError, ValueError):
        return None
    return Path(checkpoint) if checkpoint and Path(checkpoint).is_file() else None


class Lsd(Challenge):
    name = "lsd"
    description = __doc__.split("\n\n")[0]
    required = (vocab.LSD_TRAIN_DIR, vocab.LSD_VAL_DIR, vocab.LSD_TEST_LIST)
    test_list = vocab.LSD_TEST_LIST
    test_truth = vocab.LSD_TEST_TRUTH
    synth_subdir = "lsd"
    score_file = staticmethod(score_lsd)
    table_header = ("LSD", "macro F1", *vocab.LSD_CLASSES)

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--sr", default="compact", choices=["none", "compact", "x4plus"],
                       help="super-resolve the synthetic training images with this Real-ESRGAN model")
        p.add_argument("--hands", default="on", choices=["on", "off"],
                       help="hand module: pasted-hand training of the occlusion head + decision rule")
        p.add_argument("--rule", default="reweight", choices=["reweight", "separate_head"],
                       help="occlusion decision rule fitted on validation (with --hands on)")
        p.add_argument("--occlusion-source", default="head", choices=["head", "detector"],
                       help="what the decision rule reads: the learned occlusion head, or the "
                            "MediaPipe detector's flags")
        p.add_argument("--no-detector", action="store_true",
                       help="skip the MediaPipe hand detector pass (needs --occlusion-source head)")
        p.add_argument("--train-limit", type=non_negative_int, default=0,
                       help="train on a class-stratified subset of this many images (0 = all)")
        p.add_argument("--sr-workers", type=positive_int, default=1, help="super-resolution processes")
        p.add_argument("--adabn", default="none", choices=["none", "target"],
                       help="target = recompute the BatchNorm statistics on the (unlabelled) "
                            "validation and test images after training (AdaBN)")
        p.add_argument("--init", default="mtl", metavar="mtl|none|CHECKPOINT",
                       help="backbone initialisation: mtl = the best checkpoint of the default "
                            "MTL run (`make mtl`; trained first on the embedded data when "
                            "missing), none = random (the synthetic-only setting), or a "
                            "checkpoint file (Lightning, timm or MAE)")

    def default_run_name(self, args: argparse.Namespace, stem: str) -> str:
        init = {"mtl": "", "none": "-scratch"}.get(args.init, "-init")
        return (f"{stem}-sr{args.sr}-hands{args.hands}{init}"
                + (f"-n{args.train_limit}" if args.train_limit else "")
                + ("-adabn" if args.adabn == "target" else ""))

    def check(self, run: Run) -> None:
        args = run.args
        if args.no_detector and args.occlusion_source == "detector":
            raise AbawError("--occlusion-source detector needs the detector (drop --no-detector)")
        run.extras["work"] = SHARED_DIR / _tag(run.data_root)
        run.extras["test_dir"] = (Path(args.test_images) if args.test_images
                                  else run.data_root / vocab.LSD_TEST_DIR)
        tree = run.data_root / vocab.LSD_TRAIN_DIR
        if args.train_limit:
            tree = subset_tree(tree, args.train_limit, args.seed, run.extras["work"]
                               / f"subset-{args.train_limit}-s{args.seed}" / vocab.LSD_TRAIN_DIR)
        run.extras["train_tree"] = tree
        run.extras["init"] = init_checkpoint(run)
        run.report.update({"sr": args.sr, "hands": args.hands, "detector": {},
                           "occlusion_source": args.occlusion_source,
                           "init": str(run.extras["init"]) if run.extras["init"] else None})

    def cli_arguments(self, run: Run) -> list[str]:
        tree = str(run.extras["train_tree"])
        out = ["--data.train_dir", tree, "--data.train_image_dir", tree,
               "--data.test_dir", str(run.extras["test_dir"])]
        latent_val = run.data_root / "_latent" / "validation.csv"
        if run.synthetic and latent_val.is_file():  # the generator's hands: val/occlusion_*
            out += ["--data.val_occlusion_csv", str(latent_val)]
        if run.extras.get("init"):
            out += ["--model.checkpoint", str(run.extras["init"])]
        if run.args.hands == "off":
            out += ["--data.hand_paste", "0", "--model.occlusion_head", "false"]
        elif run.args.rule == "separate_head":
            out += ["--model.occluded_expression_head", "true"]
        return out

    # -- the LSD steps: assets, super-resolution, hand detection --------------------------------
    def prepare_config(self, run: Run, config: Any) -> None:
        from abaw import assets

        args = run.args
        with run.steps.step("assets (offline, sha256-checked)"):
            needed = ([SR_ASSETS[args.sr]] if args.sr != "none" else []) + (
                [] if args.no_detector else [HAND_ASSET])
            for name in needed:
                print(f"{name}: {assets.fetch(name)}")
        train_images = run.extras["train_tree"]
        if args.sr != "none":
            train_images = self.superres(run, int(config.data.img_size))
            config.data.train_image_dir = str(train_images)
        run.report["train_images"] = str(train_images)
        if not args.no_detector:
            self.detect_hands(run)

    def superres(self, run: Run, img_size: int) -> Path:
        """Super-resolve the training tree at the training size (cached); its output folder."""
        from abaw.lsd.superres import run_superres

        args, tree, work = run.args, run.extras["train_tree"], run.extras["work"]
        with run.steps.step(f"super-resolution of the training images ({args.sr})"):
            folder = f"sr-{args.sr}-{img_size}" + (f"-n{args.train_limit}" if args.train_limit else "")
            out = work / folder / tree.name
            report = run_superres(tree, out, model=args.sr, size=img_size, workers=args.sr_workers)
            print(f"{report.total} images: {report.computed} computed "
                  f"({report.rate_text}), {report.cached} from the cache, "
                  f"{len(report.failed)} failed")
        run.report["superres"] = {"images": report.total, "computed": report.computed,
                                  "cached": report.cached, "failed": len(report.failed),
                                  "images_per_second": report.images_per_second}
        return out

    def detect_hands(self, run: Run) -> None:
        """MediaPipe hand flags of the validation and test images (cached), as CSVs."""
        from abaw.lsd.hands import detect_folder, write_csv

        detector: dict[str, dict] = {}
        with run.steps.step("hand detection (MediaPipe) on validation and test images"):
            for split, folder in (("validation", run.data_root / vocab.LSD_VAL_DIR),
                                  ("test", run.extras["test_dir"])):
                found = detect_folder(folder)
                csv_path = write_csv(run.extras["work"] / f"hands-{split}.csv", found.rows)
                detector[split] = {"images": len(found.rows),
                                   "flagged": sum(1 for _, r in found.rows if r.hand),
                                   "csv": str(csv_path)}
                latent = run.data_root / "_latent" / f"{split}.csv"
                if run.synthetic and latent.is_file():
                    detector[split].update(detector_quality(csv_path, latent, folder.name))
                print(f"{split}: {detector[split]}")
        run.report["detector"] = detector

    def adapt_checkpoint(self, run: Run, cli: Any, checkpoint: Path) -> Path:
        if run.args.adabn == "none":
            return checkpoint
        from abaw.lsd.adabn import adapt_checkpoint

        with run.steps.step("AdaBN: BatchNorm statistics of the validation and test images"):
            adapted, seen = adapt_checkpoint(cli, checkpoint)
            print(f"BatchNorm statistics from {seen} unlabelled validation + test images → "
                  f"{adapted}")
        run.report["adabn"] = {"images": seen, "checkpoint": str(adapted),
                               "trained_checkpoint": str(checkpoint)}
        return adapted

    # -- scoring and the occlusion rule ---------------------------------------------------------
    def score_validation(self, run: Run, predictions: Any) -> dict:
        from abaw.formats.readers import read_lsd_tree
        from abaw.metrics import lsd_f1
        from abaw.training.plots import save_confusion_matrix

        tree = run.data_root / vocab.LSD_VAL_DIR
        truth = read_lsd_tree(tree)
        arrays = matched(predictions, truth.paths, tree)
        labels = np.asarray(truth.labels)
        probs = arrays["expr_prob"]
        save_confusion_matrix(run.sub_dir / "confusion_matrix_validation.png", labels,
                              probs.argmax(1), list(vocab.LSD_CLASSES))
        f1, per_class = lsd_f1(labels, probs.argmax(1))
        score = {"f1": f1, "f1_per_class": [float(v) for v in per_class]}
        run.validation = (truth, labels, arrays)
        run.rows.append(["validation (main head)", score["f1"], *score["f1_per_class"]])
        return {"validation": score}

    def fit_postprocess(self, run: Run, checkpoint: Path) -> tuple[Path, dict]:
        from abaw.formats.readers import read_occlusion_csv
        from abaw.lsd.occlusion import OcclusionRule, estimate_occluded_weights
        from abaw.metrics import lsd_f1
        from abaw.training.writer import LsdPredictionWriter

        args = run.args
        truth, labels, arrays = run.validation
        probs = arrays["expr_prob"]
        rule = OcclusionRule()
        score = run.report["validation"]
        use_detector = args.occlusion_source == "detector"
        if args.hands == "on" and ("occlusion_prob" in arrays or use_detector):
            if use_detector:
                flags = read_occlusion_csv(run.report["detector"]["validation"]["csv"])
                occ = np.asarray([float(flags.get(p, 0)) for p in truth.paths])
            else:
                occ = arrays["occlusion_prob"]
            if args.rule == "reweight":
                weights = estimate_occluded_weights(probs, labels, (occ > 0.5).astype(np.int64))
                rule = OcclusionRule(rule="reweight", class_weights=weights.tolist())
            else:
                rule = OcclusionRule(rule="separate_head")
            final = rule.apply(probs, occ, arrays.get("expr_prob_occluded"))
            f1, per_class = lsd_f1(labels, final.argmax(1))
            score = {"f1": f1, "f1_per_class": per_class.tolist()}
        path = rule.save(checkpoint.with_name(checkpoint.name
                                              + LsdPredictionWriter.POSTPROCESS_SUFFIX))
        run.rows.append([f"validation (rule: {rule.rule}, fitted here)", score["f1"],
                         *score["f1_per_class"]])
        return path, {"rule": rule.rule, "validation_with_rule": score}

    def writer_settings(self, run: Run) -> dict[str, Any]:
        detector = run.args.hands == "on" and run.args.occlusion_source == "detector"
        return {"occlusion_csv": run.report["detector"]["test"]["csv"] if detector else None}

    def test_rows(self, run: Run, test: dict) -> list[list[Any]]:
        return [["test (hidden truth)", test["f1"], *test["f1_per_class"]]]

    def oracle_report(self, run: Run, test: dict) -> dict:
        ceiling = oracle(run.synth, "lsd")
        return {"oracle": {s: ceiling[s]["oracle"] for s in ("validation", "test")},
                "fraction_of_oracle": {"test": test["f1"] / ceiling["test"]["oracle"]}}


LSD = Lsd()
