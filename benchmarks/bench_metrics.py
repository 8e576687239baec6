"""Benchmark of the official scorers on synthetic MTL frames (1,000,000; 100,000 with --quick).

Cases, all on the same seeded data with the official sentinels (-5 VA, -1 EXPR/AU):
- expression F1 (8 fixed classes) — ours vs scikit-learn's ``f1_score(labels=range(8),
  average=None, zero_division=0)`` on the labelled rows; the answers are asserted equal;
- per-AU F1 (12 columns, per-column masks) — ours vs a loop of scikit-learn binary F1;
- the full :func:`abaw.metrics.mtl_score`;
- ``abaw score mtl --json`` end to end in a subprocess, on a submission and an annotation file
  written with :mod:`abaw.formats.writers` (reading, matching by image path, scoring); its
  P_MTL is asserted equal to scoring the same files read back in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from abaw import metrics
from abaw.vocab import AU_MISSING, EXPR_MISSING, NUM_AUS, NUM_EXPRESSIONS, VA_MISSING
from benchmarks import Measurement, time_once, time_side_by_side

SEED = 20261123
FULL_FRAMES = 1_000_000
QUICK_FRAMES = 100_000


def synthetic_mtl(frames: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Truth with sentinels (about the official label rates) and correlated predictions."""
    rng = np.random.default_rng(seed)
    va_true = rng.uniform(-1, 1, (frames, 2))
    va_true[rng.random(frames) < 0.27] = VA_MISSING  # ~73% of train rows carry VA
    va_pred = np.clip(0.6 * va_true + rng.normal(0, 0.3, (frames, 2)), -1, 1)
    expr_true = rng.integers(0, NUM_EXPRESSIONS, frames)
    expr_pred = np.where(rng.random(frames) < 0.4, expr_true,
                         rng.integers(0, NUM_EXPRESSIONS, frames))
    expr_true[rng.random(frames) < 0.36] = EXPR_MISSING
    au_rates = rng.uniform(0.05, 0.6, NUM_AUS)
    au_true = (rng.random((frames, NUM_AUS)) < au_rates).astype(np.int64)
    flip = rng.random((frames, NUM_AUS)) < 0.3
    au_pred = np.where(flip, 1 - au_true, au_true)
    au_true[rng.random(frames) < 0.27] = AU_MISSING
    return {"va_true": va_true, "va_pred": va_pred, "expr_true": expr_true,
            "expr_pred": expr_pred, "au_true": au_true, "au_pred": au_pred}


def _sklearn_expression(expr_true: np.ndarray, expr_pred: np.ndarray) -> np.ndarray:
    from sklearn.metrics import f1_score

    labelled = expr_true >= 0
    return f1_score(expr_true[labelled], expr_pred[labelled], labels=range(NUM_EXPRESSIONS),
                    average=None, zero_division=0)


def _sklearn_au(au_true: np.ndarray, au_pred: np.ndarray) -> np.ndarray:
    from sklearn.metrics import f1_score

    per_au = np.zeros(NUM_AUS)
    for k in range(NUM_AUS):
        labelled = au_true[:, k] >= 0
        per_au[k] = f1_score(au_true[labelled, k], au_pred[labelled, k], zero_division=0)
    return per_au


def _cli_end_to_end(data: dict[str, np.ndarray], repeats: int) -> list[Measurement]:
    from abaw.formats import readers, submissions, writers

    frames = len(data["expr_true"])
    # sparse frame numbers as in s-Aff-Wild2, 1000 frames a video; a few images repeated
    video = np.arange(frames) // 1000
    frame = (np.arange(frames) % 1000) * 3 + 1
    images = [f"video{v}/{f:05d}.jpg" for v, f in zip(video.tolist(), frame.tolist())]
    for i in range(0, frames, 997):
        images[i] = images[max(i - 1, 0)]  # repeats: matched by k-th occurrence
    with tempfile.TemporaryDirectory(prefix="abaw-bench-") as folder:
        truth_path = Path(folder) / "validation_set_annotations.txt"
        pred_path = Path(folder) / "submission.txt"
        write_seconds, _ = time_once(lambda: (
            writers.write_mtl_annotations(truth_path, images, data["va_true"][:, 0],
                                          data["va_true"][:, 1], data["expr_true"],
                                          data["au_true"]),
            writers.write_mtl_submission(pred_path, images, data["va_pred"][:, 0],
                                         data["va_pred"][:, 1], data["expr_pred"],
                                         data["au_pred"]),
        ))
        command = [sys.executable, "-m", "abaw.cli", "score", "mtl", str(pred_path),
                   str(truth_path), "--json"]
        times = []
        for _ in range(repeats):
            seconds, completed = time_once(
                lambda: subprocess.run(command, capture_output=True, text=True, check=False))
            if completed.returncode != 0:
                raise RuntimeError(f"abaw score failed: {completed.stderr.strip()}")
            times.append(seconds)
        reported = json.loads(completed.stdout)
        truth = readers.read_mtl_annotations(truth_path)
        pred = submissions.read_mtl_submission(pred_path)
        expected = metrics.mtl_score(truth.va, np.stack([pred.valence, pred.arousal], axis=1),
                                     truth.expression, pred.expression, truth.aus, pred.aus)
        assert abs(reported["P_MTL"] - expected.P_MTL) < 1e-12, (reported, expected)
    return [
        Measurement(f"write 2 MTL files ({frames:,} rows)", write_seconds),
        Measurement(f"`abaw score mtl --json` subprocess ({frames:,} rows)",
                    float(np.median(times)), note=f"P_MTL {reported['P_MTL']:.4f}"),
    ]


def run(quick: bool = False) -> list[Measurement]:
    frames = QUICK_FRAMES if quick else FULL_FRAMES
    repeats = 3 if quick else 5
    data = synthetic_mtl(frames)
    results: list[Measurement] = []

    # (what, ours, the reference, its name): per-class F1 values must agree to 1e-12
    comparisons = [
        ("expression F1, 8 classes",
         lambda: metrics.expression_f1(data["expr_true"], data["expr_pred"])[1],
         lambda: _sklearn_expression(data["expr_true"], data["expr_pred"]), "sklearn f1_score"),
        ("per-AU F1, 12 AUs",
         lambda: metrics.au_f1(data["au_true"], data["au_pred"])[1],
         lambda: _sklearn_au(data["au_true"], data["au_pred"]), "sklearn f1_score x12"),
    ]
    for what, ours_fn, ref_fn, ref_name in comparisons:
        (ours, ref), (ours_f1, ref_f1) = time_side_by_side([ours_fn, ref_fn], repeats)
        np.testing.assert_allclose(ours_f1, ref_f1, rtol=0, atol=1e-12)
        results.append(Measurement(f"{what} ({frames:,} frames)", ours, ref_name, ref))

    (seconds,), (score,) = time_side_by_side([lambda: metrics.mtl_score(**data)], repeats)
    results.append(Measurement(f"mtl_score ({frames:,} frames)", seconds,
                               note=f"P_MTL {score.P_MTL:.4f}"))

    results.extend(_cli_end_to_end(data, repeats=1 if not quick else 2))
    return results
