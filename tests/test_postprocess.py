"""Per-AU threshold fitting and its JSON artefact (abaw.postprocess)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from abaw.errors import FormatError
from abaw.metrics import au_f1
from abaw.postprocess import (
    apply_au_thresholds,
    default_postprocess_path,
    fit_au_thresholds,
    load_postprocess,
    save_postprocess,
)
from abaw.vocab import AUS


def _one_au_case() -> tuple[np.ndarray, np.ndarray]:
    """AU0: positives at prob 0.3/0.35, negatives at 0.1/0.2 -> any threshold in (0.2, 0.3] is
    perfect; grid 0.25 and 0.3 both give F1 1, 0.3 is closer to 0.5. Other AUs unlabelled."""
    truth = np.full((4, 12), -1)
    prob = np.zeros((4, 12))
    truth[:, 0] = [1, 1, 0, 0]
    prob[:, 0] = [0.3, 0.35, 0.1, 0.2]
    return truth, prob


def test_fit_picks_best_f1_threshold_ties_closest_to_half() -> None:
    truth, prob = _one_au_case()
    thresholds = fit_au_thresholds(truth, prob, grid=(0.1, 0.2, 0.25, 0.3, 0.5, 0.9))
    assert thresholds[0] == 0.3
    # unlabelled AUs keep 0.5
    assert np.all(thresholds[1:] == 0.5)
    decisions = apply_au_thresholds(prob, thresholds)
    assert decisions[:, 0].tolist() == [1, 1, 0, 0]


def test_fitted_thresholds_never_lower_f1_than_half() -> None:
    rng = np.random.default_rng(3)
    truth = rng.integers(0, 2, (200, 12))
    truth[rng.random((200, 12)) < 0.1] = -1
    prob = np.clip(0.25 * (truth == 1) + rng.random((200, 12)) * 0.6, 0, 1)
    thresholds = fit_au_thresholds(truth, prob)
    tuned, per_tuned = au_f1(truth, apply_au_thresholds(prob, thresholds))
    default, per_default = au_f1(truth, apply_au_thresholds(prob, 0.5))
    assert np.all(per_tuned >= per_default - 1e-12)  # 0.5 is in the grid
    assert tuned > default


def test_apply_uses_greater_or_equal() -> None:
    prob = np.full((1, 12), 0.5)
    assert apply_au_thresholds(prob, 0.5).tolist() == [[1] * 12]
    assert apply_au_thresholds(prob, np.full(12, 0.55)).tolist() == [[0] * 12]
    with pytest.raises(ValueError):
        apply_au_thresholds(np.zeros((2, 11)), 0.5)


def test_save_load_round_trip(tmp_path) -> None:
    truth, prob = _one_au_case()
    thresholds = fit_au_thresholds(truth, prob)
    path = default_postprocess_path(tmp_path / "best.ckpt")
    assert path.name == "best.ckpt.postprocess.json"
    save_postprocess(path, thresholds, au_true=truth, au_prob=prob, fitted_on="validation")
    record = load_postprocess(path)
    assert np.array_equal(record["au_thresholds"], thresholds)
    assert record["au_names"] == list(AUS)
    assert record["fitted_on"] == "validation"
    # F1 on AU0 is 1 tuned (0.3 threshold), 0 at 0.5 (no positive predicted); the other 11
    # AUs are unlabelled and score 0
    assert record["f1_au_tuned"] == pytest.approx(1 / 12)
    assert record["f1_au_at_0.5"] == 0.0


def test_load_rejects_bad_files(tmp_path) -> None:
    with pytest.raises(FormatError, match="not found"):
        load_postprocess(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_postprocess(bad)
    bad.write_text(json.dumps({"au_thresholds": [0.5] * 11}))
    with pytest.raises(FormatError, match="12 numbers"):
        load_postprocess(bad)
    bad.write_text(json.dumps({"au_thresholds": [0.5] * 12, "au_names": ["AU1"] * 12}))
    with pytest.raises(FormatError, match="au_names"):
        load_postprocess(bad)
    with pytest.raises(FormatError):
        save_postprocess(tmp_path / "x.json", np.full(12, 1.5))
    assert not (tmp_path / "x.json").exists()
