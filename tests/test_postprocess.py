"""The post-processing fitted on validation (abaw.postprocess, abaw.temporal): per-AU
thresholds, expression biases, temporal smoothing, the VA calibration, the split-half
estimate and the JSON artefact, on tiny hand-checkable inputs."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from abaw.errors import AbawError, FormatError
from abaw.metrics import au_f1, expression_f1, va_ccc
from abaw.postprocess import (
    Labels,
    PostProcess,
    apply_au_thresholds,
    apply_expression_biases,
    apply_va_calibration,
    default_postprocess_path,
    evaluate,
    fit_au_thresholds,
    fit_expression_biases,
    fit_postprocess,
    fit_va_calibration,
    identity_calibration,
    load_postprocess,
    save_postprocess,
    split_half_postprocess,
    video_halves,
)
from abaw.temporal import gaussian_smooth, video_frames
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


# --- format version 2: biases and smoothing beside the thresholds --------------------------------


def test_version_1_files_still_load_without_biases_or_smoothing(tmp_path) -> None:
    path = tmp_path / "v1.json"
    path.write_text(json.dumps({"format_version": 1, "au_thresholds": [0.25] * 12}))
    post = PostProcess.load(path)
    assert post.au_thresholds.tolist() == [0.25] * 12
    assert post.expression_biases.tolist() == [0.0] * 8 and post.smoothing == {}


def test_version_2_files_load_without_calibration(tmp_path) -> None:
    path = tmp_path / "v2.json"
    path.write_text(json.dumps({"format_version": 2, "au_thresholds": [0.25] * 12,
                                "smoothing_sigma": {"va": 2.0}}))
    post = PostProcess.load(path)
    assert post.smoothing == {"va": 2.0}
    assert post.va_calibration.tolist() == [[0.0, 1.0], [0.0, 1.0]]


def test_version_3_round_trip(tmp_path) -> None:
    post = PostProcess(np.linspace(0.1, 0.9, 12), np.arange(8) * 0.25 - 1.0,
                       {"va": 4.0, "au": 2.0}, np.array([[-0.125, 1.5], [0.25, 0.75]]))
    path = save_postprocess(tmp_path / "pp.json", post, fitted_on="val", extra={"steps": ["x"]})
    record = json.loads(path.read_text())
    assert record["format_version"] == 3
    assert record["smoothing_sigma"] == {"va": 4.0, "expr": 0.0, "au": 2.0}
    assert record["va_calibration"] == {"valence": {"offset": -0.125, "scale": 1.5},
                                        "arousal": {"offset": 0.25, "scale": 0.75}}
    again = PostProcess.load(path)
    assert np.array_equal(again.au_thresholds, post.au_thresholds)
    assert np.array_equal(again.expression_biases, post.expression_biases)
    assert again.smoothing == {"va": 4.0, "au": 2.0}
    assert np.array_equal(again.va_calibration, post.va_calibration)
    assert load_postprocess(path)["steps"] == ["x"]


_CAL = {"valence": {"offset": 0.0, "scale": 1.0}, "arousal": {"offset": 0.0, "scale": 1.0}}


@pytest.mark.parametrize("entries, message", [
    ({"format_version": 4}, "format_version 4"),
    ({"format_version": 2, "expression_biases": [0.0] * 7}, "expression_biases must be 8"),
    ({"format_version": 2, "expression_biases": ["a"] * 8}, "expression_biases must be 8"),
    ({"format_version": 2, "smoothing_sigma": {"va": -1}}, "smoothing_sigma"),
    ({"format_version": 2, "smoothing_sigma": {"pose": 1}}, "smoothing_sigma"),
    ({"format_version": 2, "smoothing_sigma": [1, 2]}, "smoothing_sigma"),
    ({"format_version": 2, "expression_names": ["x"] * 8}, "expression_names"),
    ({"format_version": 3, "va_calibration": [0, 1, 0, 1]}, "va_calibration"),
    ({"format_version": 3, "va_calibration": {"valence": _CAL["valence"]}}, "va_calibration"),
    ({"format_version": 3, "va_calibration": {**_CAL, "arousal": {"offset": 0, "scale": 0}}},
     "va_calibration"),
    ({"format_version": 3, "va_calibration": {**_CAL, "arousal": {"offset": 0, "scale": 21}}},
     "va_calibration"),
    ({"format_version": 3, "va_calibration": {**_CAL, "valence": {"offset": "0", "scale": 1}}},
     "va_calibration"),
    ({"format_version": 3, "va_calibration": {**_CAL, "valence": {"offset": True, "scale": 1}}},
     "va_calibration"),
    ({"format_version": 3, "va_calibration": {**_CAL, "valence": {"scale": 1}}},
     "va_calibration"),
    ({"format_version": 1}, "no 'au_thresholds'"),
    ([1, 2], "not a JSON object"),
])
def test_bad_version_2_or_3_files_are_one_line_errors(tmp_path, entries, message) -> None:
    path = tmp_path / "pp.json"
    path.write_text(json.dumps(entries))
    with pytest.raises(FormatError, match=message) as err:
        load_postprocess(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_va_calibration_fit_by_hand() -> None:
    # valence predicted as 0.5 * truth + 0.1 (too narrow, shifted): scale 2, offset -0.2
    # undo it exactly; arousal already right: the identity. Row 4 is unlabelled (-5) and
    # its wild prediction must not count.
    truth = np.array([[-0.5, -0.5], [0.0, 0.0], [0.5, 0.5], [1.0, 1.0], [-5.0, -5.0]])
    pred = np.stack([0.5 * truth[:, 0] + 0.1, truth[:, 1]], axis=1)
    pred[4] = [9.0, -9.0]
    cal = fit_va_calibration(truth, pred)
    np.testing.assert_allclose(cal, [[-0.2, 2.0], [0.0, 1.0]], atol=1e-12)
    np.testing.assert_allclose(apply_va_calibration(pred, cal)[:4], truth[:4], atol=1e-12)
    assert va_ccc(truth, pred)[0] < 0.9 and va_ccc(truth, apply_va_calibration(pred, cal)) == \
        pytest.approx((1.0, 1.0))
    # the output is clipped to the label range
    assert apply_va_calibration(np.array([[0.9, -0.9]]), [[0.0, 2.0], [0.0, 2.0]]).tolist() == \
        [[1.0, -1.0]]
    # a constant prediction or fewer than two labelled rows: nothing to fit
    assert fit_va_calibration(truth, np.zeros_like(truth)).tolist() == \
        identity_calibration().tolist()
    assert fit_va_calibration(truth[:1], pred[:1]).tolist() == identity_calibration().tolist()
    # a nearly constant prediction is stretched at most MAX_SCALE (20)
    assert fit_va_calibration(truth[:4], 1e-4 * truth[:4])[:, 1].tolist() == [20.0, 20.0]


def test_calibration_is_fitted_only_when_asked_and_wins_on_held_out_videos() -> None:
    # every video's valence is predicted at 0.4x its true swing around +0.3: the calibration
    # learned on half the videos carries over to the other half
    from abaw.postprocess import choose_steps

    rng = np.random.default_rng(1)
    images = [f"v{v}/{f:05d}.jpg" for v in range(6) for f in range(1, 81)]
    t = np.arange(len(images))
    truth_va = np.stack([0.8 * np.sin(t / 7.0), 0.6 * np.cos(t / 5.0)], axis=1)
    pred = 0.3 + 0.4 * truth_va + rng.normal(0, 0.02, truth_va.shape)
    truth = Labels(va=truth_va)
    arrays = {"va": pred}
    assert fit_postprocess(images, truth, arrays, ("smoothing",)).va_calibration.tolist() == \
        identity_calibration().tolist()
    post = fit_postprocess(images, truth, arrays, ("calibration",))
    np.testing.assert_allclose(post.va_calibration[:, 1], [2.5, 2.5], rtol=0.05)
    decided = post.decide(images, arrays)["va"]
    assert min(va_ccc(truth_va, decided)) > 0.99 > max(va_ccc(truth_va, pred))
    chosen, estimates = choose_steps(images, truth, arrays)
    assert "calibration" in chosen["va"]
    assert estimates["calibration"]["va"] > estimates["none"]["va"] + 0.3


def test_bad_json_is_one_line_on_the_command_line(tmp_path, capsys) -> None:
    from abaw.cli import main
    from abaw.formats.predictions import save_predictions

    run = tmp_path / "run"
    run.mkdir()
    for name in ("predictions.npz", "validation_predictions.npz"):
        save_predictions(run / name, ["v/1.jpg"], {"va": np.zeros((1, 2))})
    (run / "report.json").write_text('{"data": "x",\n "run": }')
    assert main(["ensemble", str(run), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"abaw: error: {run / 'report.json'}: not valid JSON")
    assert err.count("\n") == 1


# --- expression biases ----------------------------------------------------------------------------


def test_expression_biases_find_the_known_optimum() -> None:
    # Neutral (0) rows at p0 = 0.9, Anger (1) rows at p0 = 0.6 / p1 = 0.4: argmax calls every
    # row Neutral. Any offset b1 - b0 in (log 1.5, log 9) = (0.405, 2.197) separates them;
    # coordinate ascent sets class 0 first, the grid value closest to 0 with F1 1 is -0.5
    # (b0 = -0.25 gives 0.6 * e^-0.25 = 0.467 > 0.4: still wrong), then nothing else moves.
    prob = np.zeros((4, 8))
    prob[:2, :2] = [0.9, 0.1]
    prob[2:, :2] = [0.6, 0.4]
    truth = np.array([0, 0, 1, 1])
    assert apply_expression_biases(prob).tolist() == [0, 0, 0, 0]
    biases = fit_expression_biases(truth, prob)
    assert biases.tolist() == [-0.5] + [0.0] * 7
    assert apply_expression_biases(prob, biases).tolist() == [0, 0, 1, 1]
    # unlabelled rows (-1) are ignored; none labelled: no offset
    assert fit_expression_biases(np.full(4, -1), prob).tolist() == [0.0] * 8


def test_expression_biases_never_lower_the_macro_f1() -> None:
    rng = np.random.default_rng(5)
    truth = rng.integers(0, 8, 300)
    prob = rng.dirichlet(np.ones(8), 300)
    prob[np.arange(300), truth] += 0.3 * (truth < 4)  # classes 4-7 under-predicted
    prob /= prob.sum(axis=1, keepdims=True)
    before = expression_f1(truth, apply_expression_biases(prob))[0]
    after = expression_f1(truth, apply_expression_biases(prob, fit_expression_biases(truth, prob)))[0]
    assert after > before


# --- temporal smoothing ---------------------------------------------------------------------------


def test_smoothing_leaves_a_constant_sequence_unchanged() -> None:
    images = [f"v/{f:05d}.jpg" for f in (1, 2, 3, 7, 8, 30)]
    videos, frames = video_frames(images)
    values = np.tile([0.25, -0.5, 0.125], (6, 1))
    for sigma in (0.0, 1.0, 4.0, 100.0):
        assert np.allclose(gaussian_smooth(values, videos, frames, sigma), values, rtol=0,
                           atol=1e-15)


def test_smoothing_never_mixes_two_videos() -> None:
    # two videos with the same frame numbers, interleaved rows: each keeps its own constant
    images = [f"{v}/{f:05d}.jpg" for f in range(1, 6) for v in ("a", "b")]
    videos, frames = video_frames(images)
    values = np.where(videos == 0, 1.0, -1.0)
    smoothed = gaussian_smooth(values, videos, frames, 50.0)
    assert smoothed.tolist() == values.tolist()


def test_smoothing_uses_frame_numbers_not_rows() -> None:
    # frames 1, 2, 5 of one video (rows in another order); sigma 1 reaches 3 frames
    images = ["v/00005.jpg", "v/00001.jpg", "v/00002.jpg"]
    videos, frames = video_frames(images)
    values = np.array([6.0, 0.0, 3.0])
    smoothed = gaussian_smooth(values, videos, frames, 1.0)
    e1, e4 = math.exp(-0.5), math.exp(-4.5)  # distances 1 and 3
    assert smoothed[2] == pytest.approx((3.0 + 0.0 * e1 + 6.0 * e4) / (1 + e1 + e4), abs=1e-12)
    assert smoothed[1] == pytest.approx((0.0 + 3.0 * e1) / (1 + e1), abs=1e-12)  # 5 is 4 away
    assert smoothed[0] == pytest.approx((6.0 + 3.0 * e4) / (1 + e4), abs=1e-12)
    # a gap longer than 3 sigma is never bridged
    assert gaussian_smooth(values, videos, frames, 0.3).tolist() == values.tolist()


def test_smoothing_needs_video_frame_names() -> None:
    with pytest.raises(AbawError, match="not a <video>/<frame>.jpg"):
        video_frames(["v/frame_one.jpg"])


def test_fit_chooses_smoothing_that_helps_and_split_half_runs() -> None:
    # a slowly varying valence seen through per-frame noise: smoothing must be chosen for VA
    rng = np.random.default_rng(0)
    images = [f"v{v}/{f:05d}.jpg" for v in range(4) for f in range(1, 201, 2)]
    t = np.arange(len(images)) % 100
    truth_va = np.stack([np.sin(t / 15.0), np.cos(t / 15.0)], axis=1) * 0.8
    truth = Labels(va=truth_va)
    arrays = {"va": np.clip(truth_va + rng.normal(0, 0.4, truth_va.shape), -1, 1)}
    post = fit_postprocess(images, truth, arrays)
    assert post.smoothing["va"] > 0
    raw = evaluate(truth, PostProcess().decide(images, arrays))["score"]
    assert evaluate(truth, post.decide(images, arrays))["score"] > raw
    estimate = split_half_postprocess(images, truth, arrays)
    assert raw < estimate["score"] <= 1.0
    assert video_halves(images).tolist() == [v % 2 == 0 for v in range(4) for _ in range(100)]
    # no smoothing step: sigma stays 0
    assert fit_postprocess(images, truth, arrays, ("thresholds",)).smoothing == {}


def test_auto_keeps_only_the_steps_that_win_on_held_out_videos() -> None:
    """--post auto on a constructed case: VA is truth + frame noise (smoothing wins), AU
    probabilities are scaled by 0.3 so 0.5 never fires (thresholds win), and expression is
    already perfect, so biases and smoothing cannot gain and the tie keeps no step."""
    from abaw.postprocess import choose_steps

    rng = np.random.default_rng(0)
    videos, frames = 4, 60
    images = [f"v{v}/{f + 1:05d}.jpg" for v in range(videos) for f in range(frames)]
    t = np.arange(frames)
    va_true = np.concatenate([np.stack([0.8 * np.sin(t / 9 + v), 0.8 * np.cos(t / 11 + v)], 1)
                              for v in range(videos)])
    va_pred = va_true + rng.normal(0, 0.4, va_true.shape)
    expression = np.repeat(np.arange(videos * frames) // 30 % 8, 1)
    expr_prob = np.eye(8)[expression] * 0.9 + 0.1 / 8
    aus = rng.integers(0, 2, (videos * frames, 12))
    au_prob = 0.3 * (0.2 + 0.6 * aus + 0.1 * rng.random(aus.shape))
    truth = Labels(va_true, expression, aus)
    arrays = {"va": va_pred, "expr_prob": expr_prob, "au_prob": au_prob}
    chosen, estimates = choose_steps(images, truth, arrays)
    assert chosen == {"va": ("smoothing",), "expr": (), "au": ("thresholds",)}
    assert estimates["smoothing"]["va"] > estimates["none"]["va"] + 0.05
    assert estimates["thresholds"]["f1_au"] > estimates["none"]["f1_au"] + 0.3
    # the fit with the per-task choice applies exactly those steps
    post = fit_postprocess(images, truth, arrays, chosen)
    assert set(post.smoothing) == {"va"}
    assert np.all(post.expression_biases == 0)
    assert np.all(post.au_thresholds < 0.5)
