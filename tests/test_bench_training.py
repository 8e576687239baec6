"""The training benchmark: the plain loop does the module's work; a 2-step run is well formed."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from mtl_fixtures import make_mtl_data

from abaw.data.mtl import MtlDataModule
from abaw.synth import read_manifest
from abaw.training.mtl_module import MtlModule
from abaw.vocab import MTL_TRAIN_FILE
from benchmarks.bench_training import (
    QUICK,
    PlainMtl,
    TrainingRound,
    benchmark,
    format_report,
    loader_verdict,
    make_loader,
    measurements,
    synthetic_mtl_root,
)
from benchmarks.run import BENCHMARKS

TINY = replace(QUICK, backbone="vit_test", img_size=32, batch_size=4, warmup_steps=1, rounds=2,
               steps_per_round=1, loader_batches=2, loader_workers=(0, 1))


@pytest.fixture
def tiny_root(tmp_path):
    return make_mtl_data(tmp_path / "mtl", n_train=8, n_val=4, n_test=2, size=32)


def test_registered_with_run() -> None:
    assert ("training", "benchmarks.bench_training") in BENCHMARKS


def test_default_data_is_tiny_synthetic_mtl_in_scratch(tmp_path) -> None:
    root = synthetic_mtl_root(tmp_path / "scratch")
    assert root == tmp_path / "scratch" / "mtl"
    manifest = read_manifest(tmp_path / "scratch")
    assert (manifest["size"], manifest["seed"], manifest["layouts"]) == ("tiny", 0, ["mtl"])
    rows = (root / MTL_TRAIN_FILE).read_text().splitlines()[1:]
    assert len(rows) == manifest["counts"]["mtl_train_rows"]


def test_loader_verdict_and_anchor_rate_by_hand() -> None:
    # loader 100 img/s, model 50 img/s: loader faster; serial share (1/100) / (1/100 + 1/50)
    assert loader_verdict(100.0, 50.0) == (False, pytest.approx(1 / 3))
    assert loader_verdict(20.0, 60.0) == (True, pytest.approx(0.75))
    # a round whose first batch was in hand at 10 s; steps of 6, 6 and 3 images (3 unreadable)
    # ran 10.2-11, 11.5-12.5 and 12.5-13 s: 15 images in 3 s; per step 7.5, 6 and 6 images/s
    timed = TrainingRound(10.0, [11.0, 12.5, 13.0], [6, 6, 3], [0.8, 1.0, 0.5])
    assert timed.images_per_s == pytest.approx(5.0)
    assert timed.step_images_per_s == pytest.approx([7.5, 6.0, 6.0])
    with pytest.raises(ValueError):
        _ = TrainingRound(10.0).images_per_s


def test_plain_loss_equals_the_module_loss(tiny_root) -> None:
    torch.manual_seed(0)
    data = MtlDataModule(data_root=str(tiny_root), img_size=32, batch_size=4, num_workers=0,
                         cache=False)
    data.setup("fit")
    module = MtlModule(backbone="vit_test", img_size=32, label_stats=data.label_stats)
    plain = PlainMtl.from_module(module)
    assert plain.net is not module.net  # a copy, trained apart
    torch.testing.assert_close(plain.expr_class_weight, module.expr_class_weight)
    module.eval()
    plain.eval()  # no dropout: both losses are deterministic
    batch = next(iter(make_loader(data.datasets["train"], 4, 1, 0, seed=0)))
    expected = module._total(*module.task_losses(module(batch["image"]), batch))
    torch.testing.assert_close(plain.training_loss(batch), expected)


def test_two_step_run_is_well_formed(tiny_root) -> None:
    threads = torch.get_num_threads()
    result = benchmark(TINY, data_root=tiny_root, threads=1)
    assert result["threads"] == 1 and result["measured_steps"] == 2
    assert len(result["lightning_rounds_images_per_s"]) == 2
    assert result["train_rows"] == 8
    rates = ["lightning_images_per_s", "plain_images_per_s", "step_images_per_s",
             "loader_w0_images_per_s", "loader_w1_images_per_s"]
    for key in rates:
        assert math.isfinite(result[key]) and result[key] > 0, key
        assert 0 < result[f"{key}_median"] <= result[key], key  # best >= median
    lightning, plain = result["lightning_rounds_images_per_s"], result["plain_rounds_images_per_s"]
    assert result["lightning_images_per_s"] == max(lightning)
    assert result["lightning_over_plain_best"] == pytest.approx(max(lightning) / max(plain))
    paired = [lr / pr for lr, pr in zip(lightning, plain)]
    assert result["lightning_over_plain_paired"] == pytest.approx(sum(paired) / 2)  # median of 2
    assert (result["lightning_over_plain_paired_min"],
            result["lightning_over_plain_paired_max"]) == pytest.approx((min(paired), max(paired)))
    for workers in (0, 1):
        bottleneck = result[f"loader_w{workers}_images_per_s"] < result["step_images_per_s"]
        assert result[f"loader_w{workers}_bottleneck"] is bottleneck
        assert 0 < result[f"loader_w{workers}_serial_share"] < 1
    table = format_report(result)
    assert "ratio Lightning / plain" in table and "DataLoader alone, 1 workers" in table
    rows = measurements(result)
    assert len(rows) == 3
    assert rows[0].ratio == pytest.approx(result["lightning_over_plain_best"])
    assert torch.get_num_threads() == threads  # restored
