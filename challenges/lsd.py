"""The LSD challenge (4th ABAW, learning from synthetic data) end to end: ``make lsd``.

Steps: embedded data (unless ``--data``) → offline assets (Real-ESRGAN, MediaPipe) →
super-resolution of the synthetic training images (content-hash cached, names kept) → hand
detection on the real(-like) validation and test images (cached; on the embedded data its
precision/recall against the generator's recorded hands) → train (resuming ``last.ckpt``) →
predict validation, score it with the official scorer, confusion-matrix PNG → fit the
occlusion decision rule on validation (saved as JSON) → predict the test list → write and
validate the submission → summary table and ``report.json``; on the embedded data also the
true test F1 and the fraction of the oracle ceiling.

Real data: ``make lsd DATA=/path/to/abaw4_lsd`` (the folder holding
``training_set_synthetic_images/``, ``validation_set_real_images/``,
``LSD_Challenge_test_set_release.txt`` and the test images in ``test_set/`` — or name the
test folder with ``--test-images``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np

from abaw.synth.layouts import LSD_TEST_DIR, LSD_TEST_TRUTH
from abaw.synth.sizes import SIZES
from challenges.common import (
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
from challenges.mtl import lightning

DEFAULT_CONFIG = Path("configs/lsd/default.yaml")
SR_ASSETS = {"compact": "realesr-compact-x4", "x4plus": "realesrgan-x4plus"}
HAND_ASSET = "mediapipe-hand-landmarker"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="make lsd", description=__doc__.split("\n\n")[0])
    p.add_argument("--data", help="real LSD data folder (default: the embedded synthetic data)")
    p.add_argument("--test-images", help="flat folder of the test images (default: <data>/test_set)")
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="training config (YAML)")
    p.add_argument("--run", help="run name (default: <config stem>-sr<model>-hands<on|off>)")
    p.add_argument("--fresh", action="store_true", help="discard an earlier run of that name")
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
    p.add_argument("--train-limit", type=int, default=0,
                   help="train on a class-stratified subset of this many images (0 = all)")
    p.add_argument("--sr-workers", type=int, default=1, help="super-resolution processes")
    p.add_argument("--synth-size", default="default", choices=list(SIZES))
    p.add_argument("--seed", type=int, default=0, help="seed of the embedded data and subset")
    p.add_argument("overrides", nargs=argparse.REMAINDER,
                   help="after '--': LightningCLI overrides, e.g. -- --trainer.max_epochs 2")
    args = p.parse_args(argv)
    if args.overrides and args.overrides[0] == "--":
        args.overrides = args.overrides[1:]
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the recipe; errors are printed as one line (exit 2 or 3), never a traceback."""
    return run_guarded(run, parse_args(argv))


def _subset_tree(tree: Path, limit: int, seed: int, out: Path) -> Path:
    """A class-stratified subset of a class-folder tree, as hard links under ``out``."""
    import os

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


def _tag(path: Path) -> str:
    return hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]


def run(args: argparse.Namespace) -> int:
    from abaw import assets, vocab
    from abaw.commands.score import score_lsd
    from abaw.data.lsd import read_occlusion_csv
    from abaw.errors import AbawError
    from abaw.formats.readers import read_lsd_tree
    from abaw.formats.validate import validate_submission
    from abaw.lsd.occlusion import OcclusionRule, estimate_occluded_weights
    from abaw.metrics import lsd_f1
    from abaw.training.plots import save_confusion_matrix

    setup_logging()
    steps = Steps()
    config = Path(args.config)
    if not config.is_file():
        raise AbawError(f"{config}: config file not found")
    synthetic = args.data is None
    if synthetic:
        with steps.step("embedded data"):
            synth = ensure_synthetic_data(args.synth_size, args.seed)
        root = synth / "lsd"
    else:
        root = Path(args.data).expanduser()
        for name in (vocab.LSD_TRAIN_DIR, vocab.LSD_VAL_DIR, vocab.LSD_TEST_LIST):
            if not (root / name).exists():
                raise AbawError(f"{root / name}: not found (is --data the LSD folder?)")
    test_dir = Path(args.test_images) if args.test_images else root / LSD_TEST_DIR
    if args.no_detector and args.occlusion_source == "detector":
        raise AbawError("--occlusion-source detector needs the detector (drop --no-detector)")
    hands_on = args.hands == "on"
    run_name = args.run or (f"{config.stem}-sr{args.sr}-hands{args.hands}"
                            + (f"-n{args.train_limit}" if args.train_limit else "")
                            + ("" if args.synth_size == "default" or not synthetic
                               else f"-{args.synth_size}"))
    run_dir, sub_dir = prepare_run("lsd", run_name, args.fresh)
    work = Path("runs/lsd/_shared") / _tag(root)

    train_tree = root / vocab.LSD_TRAIN_DIR
    if args.train_limit:
        train_tree = _subset_tree(train_tree, args.train_limit, args.seed,
                                  work / f"subset-{args.train_limit}-s{args.seed}" / vocab.LSD_TRAIN_DIR)

    with steps.step("assets (offline, sha256-checked)"):
        needed = ([SR_ASSETS[args.sr]] if args.sr != "none" else []) + (
            [] if args.no_detector else [HAND_ASSET])
        for name in needed:
            print(f"{name}: {assets.fetch(name)}")

    train_images = train_tree
    sr_report = None
    if args.sr != "none":
        from abaw.lsd.superres import run_superres

        with steps.step(f"super-resolution of the training images ({args.sr})"):
            img_size = _config_img_size(config, args.overrides)
            train_images = work / f"sr-{args.sr}-{img_size}" / train_tree.name
            if args.train_limit:
                train_images = train_images.parent.parent / (
                    f"sr-{args.sr}-{img_size}-n{args.train_limit}") / train_tree.name
            sr_report = run_superres(train_tree, train_images, model=args.sr, size=img_size,
                                     workers=args.sr_workers)
            print(f"{sr_report.total} images: {sr_report.computed} computed "
                  f"({sr_report.images_per_second:.2f} img/s), {sr_report.cached} from the cache, "
                  f"{len(sr_report.failed)} failed")

    detector: dict = {}
    hands_csv: dict[str, Path] = {}
    if not args.no_detector:
        from abaw.lsd.hands import detect_folder, write_csv

        with steps.step("hand detection (MediaPipe) on validation and test images"):
            for split, folder in (("validation", root / vocab.LSD_VAL_DIR), ("test", test_dir)):
                report = detect_folder(folder)
                csv_path = write_csv(work / f"hands-{split}.csv", report.rows)
                flagged = sum(1 for _, r in report.rows if r.hand)
                detector[split] = {"images": len(report.rows), "flagged": flagged,
                                   "csv": str(csv_path)}
                hands_csv[split] = csv_path
                latent = root / "_latent" / f"{split}.csv"
                if synthetic and latent.is_file():
                    # latent names carry the tree folder (validation_set_real_images/...)
                    prefix = f"{folder.name}/"
                    truth = {n.removeprefix(prefix): v
                             for n, v in read_occlusion_csv(latent).items()}
                    found = read_occlusion_csv(csv_path)
                    names = [n for n in found if n in truth]
                    t = np.array([truth[n] for n in names], bool)
                    f = np.array([found[n] for n in names], bool)
                    tp = int((t & f).sum())
                    detector[split].update({
                        "true_hands": int(t.sum()), "true_positives": tp,
                        "precision": tp / max(1, int(f.sum())), "recall": tp / max(1, int(t.sum()))})
                print(f"{split}: {detector[split]}")

    common = ["--config", str(config), "--data.data_root", str(root),
              "--data.train_dir", str(train_tree), "--data.train_image_dir", str(train_images),
              "--data.test_dir", str(test_dir),
              "--trainer.default_root_dir", str(run_dir),
              "--trainer.logger.init_args.save_dir", str(run_dir)]
    latent_val = root / "_latent" / "validation.csv"
    if synthetic and latent_val.is_file():  # the generator's recorded hands: val/occlusion_* metrics
        common += ["--data.val_occlusion_csv", str(latent_val)]
    if not hands_on:
        common += ["--data.hand_paste", "0", "--model.occlusion_head", "false"]
    elif args.rule == "separate_head":
        common += ["--model.occluded_expression_head", "true"]
    common += list(args.overrides)

    with steps.step(f"train {config} → {run_dir}"):
        resume = ["--ckpt_path", "last"] if (run_dir / "checkpoints" / "last.ckpt").is_file() else []
        lightning(["fit", *common, *resume])
    ckpt = best_checkpoint(run_dir)

    with steps.step("score validation (official macro F1) and fit the occlusion rule"):
        val_dir = run_dir / "validation"
        lightning(["predict", *common, "--ckpt_path", str(ckpt), "--data.predict_split", "val",
                   "--submission.output_dir", str(val_dir)])
        val_tree = root / vocab.LSD_VAL_DIR
        val_plain = score_lsd(val_dir / "submission.txt", val_tree).values
        pred = np.load(val_dir / "predictions.npz", allow_pickle=False)
        truth = read_lsd_tree(val_tree)
        position = {name: i for i, name in enumerate(pred["images"].tolist())}
        rows = np.asarray([position[p] for p in truth.paths])
        labels = np.asarray(truth.labels)
        probs = pred["expr_prob"][rows]
        save_confusion_matrix(sub_dir / "confusion_matrix_validation.png", labels,
                              probs.argmax(1), list(vocab.LSD_CLASSES))
        rule = OcclusionRule()
        val_rule = val_plain
        use_detector = args.occlusion_source == "detector"
        if hands_on and ("occlusion_prob" in pred.files or use_detector):
            if use_detector:
                flags = read_occlusion_csv(hands_csv["validation"])
                occ = np.asarray([float(flags.get(p, 0)) for p in truth.paths])
            else:
                occ = pred["occlusion_prob"][rows]
            if args.rule == "reweight":
                weights = estimate_occluded_weights(probs, labels, (occ > 0.5).astype(np.int64))
                rule = OcclusionRule(rule="reweight", class_weights=weights.tolist())
            else:
                rule = OcclusionRule(rule="separate_head")
            final = rule.apply(probs, occ, pred["expr_prob_occluded"][rows]
                               if "expr_prob_occluded" in pred.files else None)
            f1, per_class = lsd_f1(labels, final.argmax(1))
            val_rule = {"f1": f1, "f1_per_class": per_class.tolist()}
        rule_path = rule.save(Path(ckpt).with_name(Path(ckpt).name + ".occlusion_rule.json"))

    with steps.step("predict the test list and write the submission"):
        detector_flags = (["--submission.occlusion_csv", str(hands_csv["test"])]
                          if hands_on and args.occlusion_source == "detector" else [])
        lightning(["predict", *common, "--ckpt_path", str(ckpt), "--data.predict_split", "test",
                   "--submission.output_dir", str(sub_dir), "--submission.rule", str(rule_path),
                   *detector_flags])
        submission = sub_dir / "submission.txt"
        problems = validate_submission("lsd", submission, test_list=root / vocab.LSD_TEST_LIST)
        for problem in problems[:20]:
            print(f"{submission}:{problem.line}: {problem.message}")
        if problems:
            raise AbawError(f"{submission}: {len(problems)} problems; not a valid submission")
        print(f"OK: {submission} would be accepted")

    report: dict = {"run": run_name, "config": str(config), "data": str(root), "sr": args.sr,
                    "hands": args.hands, "rule": rule.rule,
                    "occlusion_source": args.occlusion_source, "checkpoint": str(ckpt),
                    "train_images": str(train_images), "validation": val_plain,
                    "validation_with_rule": val_rule, "detector": detector,
                    "submission": str(submission)}
    if sr_report is not None:
        report["superres"] = {"images": sr_report.total, "computed": sr_report.computed,
                              "cached": sr_report.cached, "images_per_second":
                              sr_report.images_per_second, "failed": len(sr_report.failed)}
    rows_out = [["validation (main head)", val_plain["f1"], *val_plain["f1_per_class"]],
                [f"validation (rule: {rule.rule}, fitted here)", val_rule["f1"],
                 *val_rule["f1_per_class"]]]
    if synthetic:
        test_truth = root / LSD_TEST_TRUTH
        test_score = score_lsd(submission, test_truth).values
        ceiling = oracle(synth)["lsd"]
        report["test"] = test_score
        report["oracle"] = {s: ceiling[s]["oracle"] for s in ("validation", "test")}
        report["fraction_of_oracle"] = {"test": test_score["f1"] / ceiling["test"]["oracle"]}
        rows_out.append(["test (hidden truth)", test_score["f1"], *test_score["f1_per_class"]])
    report["seconds"] = {**steps.seconds, "total": steps.total}
    write_report(sub_dir / "report.json", report)

    print("\n" + table(rows_out, ["LSD", "macro F1", *vocab.LSD_CLASSES]))
    if synthetic:
        print(f"\noracle ceiling (test): {report['oracle']['test']:.4f}; this run reaches "
              f"{report['fraction_of_oracle']['test']:.1%} of it")
    print(f"\nsubmission: {submission}\nreport:     {sub_dir / 'report.json'}\n"
          f"total time: {steps.total:.0f} s")
    return 0


def _config_img_size(config: Path, overrides: list[str]) -> int:
    """``data.img_size`` of the config (or its command-line override): the SR output size."""
    import yaml

    for i, arg in enumerate(overrides):
        if arg == "--data.img_size" and i + 1 < len(overrides):
            return int(overrides[i + 1])
        if arg.startswith("--data.img_size="):
            return int(arg.split("=", 1)[1])
    content = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    return int((content.get("data") or {}).get("img_size", 112))


if __name__ == "__main__":
    sys.exit(main())
