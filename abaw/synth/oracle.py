"""The oracle ceiling of the stand-in, and how trivial baselines score against it.

The *oracle* predicts the noiseless latent labels (``<layout>/_latent/<split>.csv``) and is
scored against the noisy official-format labels with the official scorers
(:mod:`abaw.metrics`): no model can do better on average, because the rater noise is
independent of the pixels. Benchmarks report their results as a fraction of it.

The *trivial baselines* use only the training labels: the mean training valence/arousal
(constant, so CCC 0), the majority training expression, and per AU the majority training
label ("all-AU-majority"); also "all AUs on", which is the better constant for F1. For LSD:
the majority training class.

Everything is read back through :mod:`abaw.formats.readers`, so the oracle also checks that
the written layouts parse.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from abaw import metrics, vocab
from abaw.errors import FormatError
from abaw.fileio import atomic_write_text
from abaw.formats import readers, submissions
from abaw.synth.layouts import (
    LATENT_DIR,
    LSD_DIR,
    LSD_TEST_TRUTH,
    MTL_DIR,
    MTL_TEST_TRUTH,
    PER_VIDEO_DIR,
    PER_VIDEO_TEST_SPLIT,
)

ORACLE_FILE = "oracle.json"


def read_latent(path: str | Path) -> dict[str, dict[str, str]]:
    """A latent CSV: image -> its row (column name -> text)."""
    path = Path(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            return {row["image"]: row for row in csv.DictReader(handle)}
    except FileNotFoundError:
        raise FormatError(path, None, "latent file missing (is this `abaw synth` output?)") \
            from None


def _latent_arrays(rows: list[dict[str, str]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    va = np.array([[float(r["valence"]), float(r["arousal"])] for r in rows])
    expr = np.array([int(r["expression"]) for r in rows], dtype=np.int64)
    aus = np.array([[int(r[a]) for a in vocab.AUS] for r in rows], dtype=np.int64)
    return va, expr, aus


def _mtl_file(root: Path, split: str) -> Path:
    return root / {"train": vocab.MTL_TRAIN_FILE, "validation": vocab.MTL_VAL_FILE,
                   "test": MTL_TEST_TRUTH}[split]


def mtl_oracle(out: str | Path) -> dict[str, dict]:
    """P_MTL of the oracle and of the trivial baselines, per MTL split."""
    root = Path(out) / MTL_DIR
    train = readers.read_mtl_annotations(_mtl_file(root, "train"))
    mean_va = [float(train.valence[train.va_mask].mean()), float(train.arousal[train.va_mask].mean())]
    majority_expr = int(np.bincount(train.expression[train.expr_mask],
                                    minlength=vocab.NUM_EXPRESSIONS).argmax())
    au_rows = train.aus[train.au_row_mask]
    majority_aus = (au_rows.mean(axis=0) >= 0.5).astype(np.int64)
    result = {}
    for split in ("train", "validation", "test"):
        truth = readers.read_mtl_annotations(_mtl_file(root, split))
        latent = read_latent(root / LATENT_DIR / f"{split}.csv")
        va, expr, aus = _latent_arrays([latent[name] for name in truth.images])
        n = len(truth)
        scores = {
            "oracle": metrics.mtl_score(truth.va, va, truth.expression, expr, truth.aus, aus),
            "trivial_majority": metrics.mtl_score(
                truth.va, np.tile(mean_va, (n, 1)), truth.expression, np.full(n, majority_expr),
                truth.aus, np.tile(majority_aus, (n, 1))),
            "trivial_all_aus_on": metrics.mtl_score(
                truth.va, np.tile(mean_va, (n, 1)), truth.expression, np.full(n, majority_expr),
                truth.aus, np.ones((n, vocab.NUM_AUS), np.int64)),
        }
        result[split] = {name: s.as_dict() for name, s in scores.items()}
    return result


def lsd_oracle(out: str | Path) -> dict[str, dict]:
    """LSD macro F1 of the oracle (latent class) and of the majority training class."""
    root = Path(out) / LSD_DIR
    train = readers.read_lsd_tree(root / vocab.LSD_TRAIN_DIR)
    majority = int(np.bincount(np.asarray(train.labels),
                               minlength=vocab.NUM_LSD_CLASSES).argmax())
    result = {}
    val = readers.read_lsd_tree(root / vocab.LSD_VAL_DIR)
    val_names = [f"{vocab.LSD_VAL_DIR}/{p}" for p in val.paths]
    test_names, test_labels = submissions.read_lsd_labels(root / LSD_TEST_TRUTH)
    for split, names, labels in (("validation", val_names, np.asarray(val.labels)),
                                 ("test", test_names, np.asarray(test_labels))):
        latent = read_latent(root / LATENT_DIR / f"{split}.csv")
        pred = np.array([int(latent[name]["expression"]) for name in names])
        result[split] = {
            "oracle": metrics.lsd_f1(labels, pred)[0],
            "trivial_majority": metrics.lsd_f1(labels, np.full(len(labels), majority))[0],
        }
    return result


def per_video_oracle(out: str | Path) -> dict[str, dict]:
    """Per-task oracle scores (VA mean CCC, EXPR macro F1, AU mean F1) per split."""
    root = Path(out) / PER_VIDEO_DIR
    result: dict[str, dict] = {}
    for split, folder in (("validation", vocab.PER_VIDEO_SPLITS[1]),
                          ("test", PER_VIDEO_TEST_SPLIT)):
        latent = read_latent(root / LATENT_DIR / f"{split}.csv")
        scores = {}
        for task in vocab.PER_VIDEO_TASKS:
            if split == "test":  # truth of the test videos (synthetic-only folder)
                task_dir = readers.find_task_folder(root, task)
                names = readers.read_test_video_names(readers.find_test_video_names(root, task))
                videos = {name: readers.read_per_video_annotation(
                    task_dir / folder / f"{name}.txt", task) for name in names}
            else:
                videos = readers.read_per_video_split(root, task, folder)
            if not videos:
                continue
            truth, rows = [], []
            for video, values in videos.items():
                truth.append(values)
                rows += [latent[readers.frame_image(video, k + 1)] for k in range(len(values))]
            truth_a = np.concatenate(truth)
            va, expr, aus = _latent_arrays(rows)
            if task == "va":
                scores[task] = metrics.va_score(truth_a, va)
            elif task == "expr":
                scores[task] = metrics.expression_f1(truth_a, expr, vocab.NUM_EXPRESSIONS)[0]
            else:
                scores[task] = metrics.au_f1(truth_a, aus)[0]
        result[split] = scores
    return result


#: layout folder → its part of the oracle report
PARTS = {MTL_DIR: mtl_oracle, LSD_DIR: lsd_oracle, PER_VIDEO_DIR: per_video_oracle}


def oracle_report(out: str | Path, save: bool = True) -> dict:
    """All oracle and baseline scores; saved as ``OUT/oracle.json`` when ``save``."""
    out = Path(out)
    report = {name: part(out) for name, part in PARTS.items()}
    if save:
        _save(out, report)
    return report


def layout_oracle(out: str | Path, layout: str) -> dict:
    """One layout's part of the oracle report (``mtl``, ``lsd`` or ``per_video``): read from
    ``OUT/oracle.json`` when it holds that part, else computed and added to it. A track
    generates only its own layout, so the other parts may not exist yet; adding a layout
    regenerates nothing else but removes ``oracle.json`` (a derived file), which is then
    rebuilt part by part."""
    out = Path(out)
    if layout not in PARTS:
        raise ValueError(f"unknown layout {layout!r}; expected one of {', '.join(PARTS)}")
    path = out / ORACLE_FILE
    try:
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except ValueError:
        saved = {}
    if layout not in saved:
        saved[layout] = PARTS[layout](out)
        _save(out, saved)
    return saved[layout]


def _save(out: Path, report: dict) -> None:
    atomic_write_text(out / ORACLE_FILE, json.dumps(report, indent=2, sort_keys=True) + "\n")
    from abaw.synth.generator import record_derived

    record_derived(out, ORACLE_FILE)


def summary_lines(report: dict) -> list[str]:
    """A short human-readable summary of :func:`oracle_report`."""
    lines = []
    for split, scores in report["mtl"].items():
        o, t, t1 = (scores["oracle"], scores["trivial_majority"], scores["trivial_all_aus_on"])
        lines.append(f"MTL {split:<10} oracle P_MTL {o['P_MTL']:.3f} "
                     f"(VA {(o['ccc_valence'] + o['ccc_arousal']) / 2:.3f}, "
                     f"EXPR {o['f1_expression']:.3f}, AU {o['f1_au']:.3f}) | trivial "
                     f"{t['P_MTL']:.3f}, all-AUs-on {t1['P_MTL']:.3f}")
    for split, scores in report["lsd"].items():
        lines.append(f"LSD {split:<10} oracle F1 {scores['oracle']:.3f} | majority "
                     f"{scores['trivial_majority']:.3f}")
    for split, scores in report["per_video"].items():
        parts = ", ".join(f"{task.upper()} {value:.3f}" for task, value in scores.items())
        lines.append(f"per-video {split:<10} oracle {parts}")
    return lines
