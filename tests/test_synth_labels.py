"""Labels without rendering: sentinel rates, repeats, noise rates, latent vs noisy labels."""

from __future__ import annotations

import numpy as np
import pytest

from abaw import vocab
from abaw.errors import ConfigError
from abaw.synth.dynamics import simulate_video, smooth_walk
from abaw.synth.expressions import EXPR
from abaw.synth.identity import sample_identity
from abaw.synth.layouts import (
    MTL_TRAIN_MISSING,
    MTL_VAL_EXPR_MISSING,
    _class_counts,
    plan_lsd,
    plan_mtl,
    plan_per_video,
)
from abaw.synth.noise import RaterNoise, rate_video
from abaw.synth.sizes import SIZES, SynthSize, get_size

MID = SynthSize(mtl_videos=(40, 14, 4), mtl_frames=(60, 120), lsd_images=(600, 300, 60),
                per_video_videos=(6, 2, 1), per_video_frames=(60, 80), lsd_identities=40)


@pytest.fixture(scope="module")
def mtl():
    return plan_mtl(MID, seed=5)


def test_training_sentinel_rates_are_close_to_the_real_ones(mtl):
    t = mtl.tables["train"]
    no_va = (t["va"][:, 0] == vocab.VA_MISSING).mean()
    no_expr = (t["expression"] == vocab.EXPR_MISSING).mean()
    no_au = (t["aus"] == vocab.AU_MISSING).all(axis=1).mean()
    assert no_va == pytest.approx(MTL_TRAIN_MISSING["va"], abs=0.04)
    assert no_expr == pytest.approx(MTL_TRAIN_MISSING["expr"], abs=0.04)
    assert no_au == pytest.approx(MTL_TRAIN_MISSING["au"], abs=0.04)
    # sentinels come in whole rows per task, never mixed, and every row keeps a task
    assert ((t["va"][:, 0] == vocab.VA_MISSING) == (t["va"][:, 1] == vocab.VA_MISSING)).all()
    au_missing = t["aus"] == vocab.AU_MISSING
    assert (au_missing.all(axis=1) == au_missing.any(axis=1)).all()
    labelled = (t["va"][:, 0] > vocab.VA_MISSING) | (t["expression"] >= 0) | ~au_missing[:, 0]
    assert labelled.all()


def test_whole_videos_are_unannotated_for_a_task(mtl):
    t = mtl.tables["train"]
    videos = np.array([name.split("/")[0] for name in t["images"]])
    no_va_videos = {v for v in set(videos) if (t["va"][videos == v, 0] == vocab.VA_MISSING).all()}
    assert len(no_va_videos) >= 5


def test_validation_has_all_va_and_au_and_some_expression(mtl):
    t = mtl.tables["validation"]
    assert (t["va"][:, 0] > vocab.VA_MISSING).all() and (t["aus"] >= 0).all()
    present = (t["expression"] >= 0).mean()
    assert present == pytest.approx(1 - MTL_VAL_EXPR_MISSING, abs=0.05)


def test_a_few_rows_repeat(mtl):
    images = mtl.tables["train"]["images"]
    repeats = len(images) - len(set(images))
    assert 0 < repeats < 0.02 * len(images)


def test_noisy_labels_agree_with_latent_at_documented_rates(mtl):
    t = mtl.tables["train"]
    va_ok = t["va"][:, 0] > vocab.VA_MISSING
    corr = np.corrcoef(t["va"][va_ok, 0], t["latent_va"][va_ok, 0])[0, 1]
    assert 0.8 < corr < 0.995  # close, but not equal: rater noise
    expr_ok = t["expression"] >= 0
    agree = (t["expression"][expr_ok] == t["latent_expression"][expr_ok]).mean()
    assert 0.7 < agree < 0.98
    au_ok = t["aus"][:, 0] >= 0
    au_agree = (t["aus"][au_ok] == t["latent_aus"][au_ok]).mean()
    assert 0.85 < au_agree < 0.995


def test_every_expression_and_au_occurs(mtl):
    t = mtl.tables["train"]
    e = t["expression"]
    assert set(np.unique(e[e >= 0])) == set(range(vocab.NUM_EXPRESSIONS))
    aus = t["aus"][t["aus"][:, 0] >= 0]
    assert (aus.mean(axis=0) > 0.02).all()


def test_rater_confusions_go_to_neighbours():
    ident = sample_identity(np.random.default_rng(0))
    latent = simulate_video(np.random.default_rng(1), ident, 3000)
    noisy = rate_video(np.random.default_rng(2), latent,
                       RaterNoise(expr_episode_confusion=1.0, expr_frame_flip=0.0,
                                  expr_threshold_sd=0.0))
    fear = latent.expression == EXPR["Fear"]
    assert fear.any()
    assert set(np.unique(noisy.expression[fear])) <= {EXPR["Surprise"], EXPR["Sadness"]}
    silent = RaterNoise(va_bias_sd=0, va_jitter_sd=0, va_white_sd=0, expr_episode_confusion=0,
                        expr_threshold_sd=0, expr_frame_flip=0, au_video_sd=0, au_frame_sd=0)
    exact = rate_video(np.random.default_rng(2), latent, silent)
    np.testing.assert_allclose(exact.va, np.clip(latent.va, -1, 1))
    np.testing.assert_array_equal(exact.expression, latent.expression)


def test_smooth_walk_is_unit_variance_and_smooth():
    x = smooth_walk(np.random.default_rng(0), 20000, 10.0)
    assert x.std() == pytest.approx(1.0, abs=0.1)
    assert np.abs(np.diff(x)).mean() < 0.2


def test_lsd_imbalance_follows_the_real_training_set():
    counts = _class_counts(4000, np.array([18286, 15150, 10923, 73285, 144631, 14976.0]), 2)
    assert counts.sum() == 4000
    share = counts / 4000
    assert share[4] == pytest.approx(0.52, abs=0.01) and share[3] == pytest.approx(0.26, abs=0.01)
    plan = plan_lsd(MID, seed=0)
    labels = plan.tables["train"]["labels"]
    assert np.bincount(labels).argmax() == vocab.LSD_CLASSES.index("Sadness")
    val = plan.tables["validation"]
    assert 0.85 < (val["labels"] == val["latent"]).mean() < 1.0  # documented 5% confusions


def test_per_video_tables_have_one_label_per_frame_and_faceless_frames():
    plan = plan_per_video(MID, seed=0)
    faceless = 0
    for table in plan.tables.values():
        n = len(table["face"])
        assert table["va"].shape == (n, 2) and table["aus"].shape == (n, vocab.NUM_AUS)
        faceless += int((~table["face"]).sum())
    assert faceless > 0
    assert plan.counts["per_video_train_images"] < plan.counts["per_video_train_frames"]


def test_sizes():
    assert set(SIZES) == {"tiny", "small", "default"}
    default = get_size("default")
    train_frames = default.mtl_videos[0] * sum(default.mtl_frames) / 2
    assert 8000 < train_frames < 15000
    with pytest.raises(ConfigError, match="unknown synthetic size"):
        get_size("huge")
