"""Finished runs built by hand, in the layout :mod:`abaw.runner` leaves, for the report tests.

``make_run(root, "mtl")`` / ``make_run(root, "lsd")`` write under ``root``:
``submissions/<track>/a/report.json`` and ``validation_predictions.npz``,
``runs/<track>/a/logs/version_0/{metrics.csv,config.yaml}`` and a checkpoint with its
post-processing JSON. The numbers are chosen so some results are known by hand: the MTL
validation valence/arousal predictions equal the truth on the 10 labelled rows (CCC 1), and
the expression probabilities put the most mass on the true class (a diagonal confusion
matrix).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from abaw import vocab
from abaw.lsd.occlusion import OcclusionRule
from abaw.reports.files import VALIDATION_PREDICTIONS

RUN = "a"


def _scores_mtl(shift: float) -> dict:
    return {"P_MTL": 1.0 + shift, "ccc_valence": 0.4, "ccc_arousal": 0.3,
            "f1_expression": 0.2 + shift, "f1_au": 0.1 + shift,
            "f1_expression_per_class": [0.1 * i for i in range(8)],
            "f1_au_per_au": [0.05 * i + shift for i in range(12)]}


def _scores_lsd(shift: float) -> dict:
    return {"f1": 0.5 + shift, "f1_per_class": [0.1 * i + shift for i in range(6)]}


def _write_csv(path: Path, header: list[str], rows: list[list[object]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    path.write_text(buffer.getvalue())


def _metrics(track: str) -> tuple[list[str], list[list[object]]]:
    """Lightning CSVLogger rows: training rows every 10 steps, one validation row per epoch."""
    if track == "mtl":
        train = ["train/loss", "train/loss_au", "train/loss_expr", "train/loss_va",
                 "train/weight_au", "train/weight_expr", "train/weight_va"]
        val = ["val/P_MTL", "val/ccc_arousal", "val/ccc_valence", "val/f1_au",
               "val/f1_expression", "val/loss"]
    else:
        train = ["train/loss", "train/loss_expr", "train/loss_occlusion"]
        val = ["val/acc", "val/f1", "val/f1_Anger", "val/loss", "val/occlusion_f1"]
    rows: list[list[object]] = []
    for epoch in range(2):
        for k in range(3):
            step = epoch * 30 + 10 * k + 9
            rows.append([epoch, step, *(round(3.0 / (1 + step / 30) + 0.1 * j, 4)
                                        for j in range(len(train))), *[""] * len(val)])
        rows.append([epoch, epoch * 30 + 29, *[""] * len(train),
                     *(round(0.3 + 0.2 * epoch + 0.01 * j, 4) for j in range(len(val)))])
    return ["epoch", "step", *train, *val], rows


def _validation_mtl(rng: np.random.Generator) -> dict[str, np.ndarray]:
    n = 12
    truth_va = np.full((n, 2), vocab.VA_MISSING)
    truth_va[:10] = np.stack([np.linspace(-0.9, 0.9, 10), np.linspace(0.8, -0.5, 10)], 1)
    va = truth_va.copy()
    va[10:] = rng.uniform(-1, 1, (2, 2))  # unlabelled rows: anything, they must not count
    truth_expression = np.array([0, 1, 2, 3, 4, 5, 6, 7, 0, 1, -1, -1])
    expr_prob = np.full((n, 8), 0.05)
    expr_prob[np.arange(n), np.maximum(truth_expression, 0)] = 0.65
    truth_aus = rng.integers(0, 2, (n, 12))
    return {"images": np.array([f"v{i % 3}/{i + 1:05d}.jpg" for i in range(n)]),
            "va": va, "expr_prob": expr_prob, "au_prob": rng.uniform(0, 1, (n, 12)),
            "truth_va": truth_va, "truth_expression": truth_expression, "truth_aus": truth_aus}


def _validation_lsd(rng: np.random.Generator) -> dict[str, np.ndarray]:
    truth = np.repeat(np.arange(6), 3)
    expr_prob = np.full((truth.size, 6), 0.06)
    expr_prob[np.arange(truth.size), truth] = 0.7
    return {"images": np.array([f"{vocab.LSD_FOLDERS[c]}/{i}.jpg" for i, c in enumerate(truth)]),
            "expr_prob": expr_prob, "occlusion_prob": rng.uniform(0, 1, truth.size),
            "final_prob": expr_prob.copy(), "truth_expression": truth}


def make_run(root: Path, track: str, seed: int = 0) -> Path:
    """A finished run of ``track`` under ``root`` (see the module docstring); its
    submission folder."""
    rng = np.random.default_rng(seed)
    sub_dir = root / "submissions" / track / RUN
    run_dir = root / "runs" / track / RUN
    checkpoint = run_dir / "checkpoints" / "best.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(b"")
    sub_dir.mkdir(parents=True)
    report: dict = {"run": RUN, "challenge": track, "run_dir": f"runs/{track}/{RUN}",
                    "config": f"configs/{track}/base.yaml", "data": f"data/synth-tiny/{track}",
                    "checkpoint": f"runs/{track}/{RUN}/checkpoints/best.ckpt",
                    "submission": f"submissions/{track}/{RUN}/submission.txt",
                    "seconds": {"embedded data": 1.5, f"train configs/{track}/base.yaml → "
                                f"runs/{track}/{RUN}": 12.0, "validate the submission": 0.0,
                                "total": 14.0},
                    "smoothing": {"window": 5}}
    if track == "mtl":
        report.update({"validation_at_0.5": _scores_mtl(0.0), "validation_tuned": _scores_mtl(0.02),
                       "test": _scores_mtl(-0.1), "au_thresholds": [0.5] * 6 + [0.4] * 6,
                       "oracle": {"validation": 2.5, "test": 2.4},
                       "fraction_of_oracle": {"validation": 0.4, "test": 0.375}})
        Path(f"{checkpoint}.postprocess.json").write_text(
            json.dumps({"au_thresholds": report["au_thresholds"]}))
        validation = _validation_mtl(rng)
    else:
        report.update({"validation": _scores_lsd(0.0), "validation_with_rule": _scores_lsd(0.01),
                       "test": _scores_lsd(0.05), "sr": "compact", "hands": "on",
                       "rule": "reweight", "occlusion_source": "head", "init": None,
                       "superres": {"images": 40, "computed": 40, "cached": 0, "failed": 0,
                                    "images_per_second": 8.0},
                       "detector": {s: {"images": 18, "flagged": 3, "csv": f"hands-{s}.csv",
                                        "precision": 0.5, "recall": 0.25}
                                    for s in ("validation", "test")}})
        OcclusionRule(rule="reweight", class_weights=[1.0, 1.2, 0.8, 1.0, 1.0, 1.0]).save(
            f"{checkpoint}.occlusion_rule.json")
        validation = _validation_lsd(rng)
    (sub_dir / "report.json").write_text(json.dumps(report, indent=2))
    np.savez_compressed(sub_dir / VALIDATION_PREDICTIONS, **validation)
    header, rows = _metrics(track)
    _write_csv(run_dir / "logs" / "version_0" / "metrics.csv", header, rows)
    (run_dir / "logs" / "version_0" / "config.yaml").write_text(
        f"model:\n  backbone: resnet18\ndata:\n  img_size: 64\n  data_root: data/{track}\n"
        f"trainer:\n  max_epochs: 2\n  default_root_dir: runs/{track}/{RUN}\n")
    return sub_dir
