"""MTL training: the official-score metric, the module, and the real LightningCLI entry point.

CLI tests build the shipped ``configs/mtl/base.yaml`` and shrink it (tiny backbone, 32 px,
batch 4, a few steps, no workers), as lightning-hydra-template's tests do.
"""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from mtl_fixtures import make_mtl_data

from abaw.cli import main
from abaw.formats.readers import read_mtl_annotations
from abaw.formats.submissions import read_mtl_submission
from abaw.formats.writers import write_mtl_submission
from abaw.metrics import mtl_score
from abaw.training.metric import MtlMetric
from abaw.training.mtl_module import MtlModule
from abaw.training.optim import warmup_cosine
from abaw.vocab import MTL_VAL_FILE

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO / "configs" / "mtl" / "base.yaml"


# --- the metric ---------------------------------------------------------------------------------


def _random_truth_and_predictions(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    va_true = rng.uniform(-1, 1, (n, 2))
    va_true[rng.random(n) < 0.3] = -5.0
    expr_true = rng.integers(-1, 8, n)
    au_true = rng.integers(0, 2, (n, 12))
    au_true[rng.random(n) < 0.3] = -1
    va_pred = np.clip(va_true + rng.normal(0, 0.5, (n, 2)), -1.2, 1.2)  # some out of range
    expr_logits = rng.normal(0, 1, (n, 8))
    au_prob = rng.random((n, 12))
    return va_true, expr_true, au_true, va_pred, expr_logits, au_prob


def test_metric_equals_scoring_the_written_submission(tmp_path) -> None:
    va_true, expr_true, au_true, va_pred, expr_logits, au_prob = _random_truth_and_predictions(50)
    metric = MtlMetric(round_va=6)
    for part in (slice(0, 17), slice(17, 50)):  # two batches: the states are concatenated
        metric.update(*(torch.from_numpy(a[part]) for a in
                        (va_pred, expr_logits, au_prob, va_true, expr_true, au_true)))
    from_metric = metric.score()

    # what `abaw score` does: a submission file, read back, scored by abaw.metrics
    images = [f"v/{i:05d}.jpg" for i in range(50)]
    path = write_mtl_submission(tmp_path / "sub.txt", images, va_pred[:, 0], va_pred[:, 1],
                                expr_logits.argmax(1), (au_prob >= 0.5).astype(int))
    sub = read_mtl_submission(path)
    from_file = mtl_score(va_true, np.stack([sub.valence, sub.arousal], 1), expr_true,
                          sub.expression, au_true, sub.aus)
    assert from_metric.as_dict() == from_file.as_dict()  # exactly equal
    # without rounding, the difference is only the file's 6-decimal rounding
    plain = MtlMetric()
    plain.update(*(torch.from_numpy(a) for a in
                   (va_pred, expr_logits, au_prob, va_true, expr_true, au_true)))
    assert abs(plain.score().P_MTL - from_file.P_MTL) < 1e-5
    values = plain.compute()
    assert set(values) == {"P_MTL", "ccc_valence", "ccc_arousal", "f1_expression", "f1_au"}


def test_metric_per_au_thresholds_and_empty_state() -> None:
    va_true, expr_true, au_true, va_pred, expr_logits, au_prob = _random_truth_and_predictions(20)
    thresholds = np.linspace(0.1, 0.9, 12)
    metric = MtlMetric(au_threshold=thresholds.tolist())
    metric.update(*(torch.from_numpy(a) for a in
                    (va_pred, expr_logits, au_prob, va_true, expr_true, au_true)))
    expected = mtl_score(va_true, np.clip(va_pred, -1, 1), expr_true, expr_logits.argmax(1),
                         au_true, (au_prob >= thresholds).astype(int))
    assert metric.score().as_dict() == expected.as_dict()
    assert float(MtlMetric().compute()["P_MTL"]) == 0.0  # nothing seen: every term 0


def test_warmup_cosine_schedule_values() -> None:
    assert warmup_cosine(0, 100, 10, 0.01) == pytest.approx(0.1)
    assert warmup_cosine(9, 100, 10, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10, 0.01) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)
    assert warmup_cosine(100, 100, 10, 0.01) == pytest.approx(0.01)


def test_warmup_cosine_scheduler_resumes_and_takes_new_groups() -> None:
    from abaw.training.optim import WarmupCosine

    def make(total: int):
        optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
        return optimizer, WarmupCosine(optimizer, total, 10, 0.01)

    optimizer, scheduler = make(100)
    for _ in range(55):
        optimizer.step()
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01 + 0.99 * 0.5)
    optimizer.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1})
    scheduler.base_lrs.append(0.1)
    scheduler.step()
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.1 * warmup_cosine(56, 100, 10, 0.01))
    # resuming restores the step; the schedule's length comes from the new run
    state = scheduler.state_dict()
    assert "total_steps" not in state and state["last_epoch"] == 56
    optimizer2, resumed = make(200)
    optimizer2.add_param_group({"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 0.1})
    resumed.load_state_dict(state)
    assert resumed.last_epoch == 56 and resumed.total_steps == 200
    assert resumed.get_lr()[0] == pytest.approx(warmup_cosine(56, 200, 10, 0.01))


# --- the module ----------------------------------------------------------------------------------


def _batch(n: int = 4) -> dict[str, torch.Tensor]:
    return {
        "image": torch.randn(n, 3, 32, 32),
        "va": torch.tensor([[0.5, -0.2], [0.1, 0.3], [-5.0, -5.0], [-5.0, -5.0]])[:n],
        "va_mask": torch.tensor([True, True, False, False])[:n],
        "expr": torch.full((n,), -1, dtype=torch.int64),  # no expression label in this batch
        "au": torch.randint(0, 2, (n, 12)),
        "index": torch.arange(n),
    }


def test_missing_task_gives_zero_loss_and_every_parameter_a_gradient() -> None:
    module = MtlModule(backbone="vit_test", img_size=32)
    batch = _batch()
    out = module(batch["image"])
    losses, present = module.task_losses(out, batch)
    assert present == {"va", "au"}
    assert float(losses["expr"]) == 0.0
    total = module._total(losses, present)
    assert torch.isfinite(total)
    total.backward()
    # DDP without find_unused_parameters needs a gradient (possibly 0) on every parameter
    missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert torch.all(module.net.heads["expr"].fc.weight.grad == 0)


def test_predict_step_outputs() -> None:
    module = MtlModule(backbone="vit_test", img_size=32).eval()
    out = module.predict_step(_batch(), 0)
    assert out["va"].shape == (4, 2) and out["va"].abs().max() <= 1
    assert torch.allclose(out["expr_prob"].sum(1), torch.ones(4))
    assert out["au_prob"].shape == (4, 12) and out["au_prob"].min() >= 0
    single = MtlModule(backbone="vit_test", img_size=32, tasks=["va"]).eval()
    out = single.predict_step(_batch(), 0)  # untrained tasks get neutral predictions
    assert torch.allclose(out["expr_prob"], torch.full((4, 8), 1 / 8))
    assert torch.all(out["au_prob"] == 0)


def test_fixed_weighting_and_freeze_callback() -> None:
    from abaw.errors import ConfigError
    from abaw.training.optim import FreezeBackbone

    module = MtlModule(backbone="vit_test", img_size=32, weighting="fixed",
                       task_weights={"va": 2.0, "expr": 1.0, "au": 0.5},
                       freeze_backbone_epochs=1)
    assert module.weighting.current_weights() == {"va": 2.0, "expr": 1.0, "au": 0.5}
    callbacks = module.configure_callbacks()
    assert len(callbacks) == 1 and isinstance(callbacks[0], FreezeBackbone)
    with pytest.raises(ConfigError):
        MtlModule(backbone="vit_test", img_size=32, weighting="fixed", task_weights={"va": 1.0})


# --- the LightningCLI entry point ----------------------------------------------------------------


def _cli_args(data_root: Path, run_dir: Path, *extra: str) -> list[str]:
    return [
        "--config", str(DEFAULT_CONFIG),
        "--data.data_root", str(data_root),
        "--data.img_size", "32",
        "--data.batch_size", "4",
        "--data.num_workers", "0",
        "--data.augment", "light",
        "--model.backbone", "vit_test",
        "--trainer.default_root_dir", str(run_dir),
        "--trainer.enable_progress_bar", "false",
        "--trainer.enable_model_summary", "false",
        *extra,
    ]


def _metrics_rows(run_dir: Path) -> list[dict[str, str]]:
    rows = []
    for path in sorted((run_dir / "logs").glob("version_*/metrics.csv")):
        with open(path, newline="") as handle:
            rows.extend(csv.DictReader(handle))
    return rows


@pytest.fixture
def tiny_data(tmp_path) -> Path:
    # 8 training rows at batch 4: one epoch = 2 optimiser steps
    return make_mtl_data(tmp_path / "data", n_train=8, n_val=8, n_test=4)


def test_fit_validate_predict_through_the_cli(tiny_data, tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["mtl", "fit", *_cli_args(tiny_data, run, "--trainer.max_steps", "4")]) == 0
    checkpoints = run / "checkpoints"
    assert (checkpoints / "last.ckpt").is_file()
    assert len(list(checkpoints.glob("best-epoch*.ckpt"))) == 1
    configs = list((run / "logs").glob("version_*/config.yaml"))
    assert configs and "vit_test" in configs[0].read_text()
    logged = [r for r in _metrics_rows(run) if r.get("val/P_MTL")]
    assert len(logged) == 2  # validated after each of the 2 epochs
    assert {"val/ccc_valence", "val/ccc_arousal", "val/f1_expression", "val/f1_au"} <= set(logged[0])

    # validation through the CLI == `abaw score` of the validation predictions file
    last = str(checkpoints / "last.ckpt")
    val_run = tmp_path / "val"
    assert main(["mtl", "validate", *_cli_args(tiny_data, val_run, "--ckpt_path", last)]) == 0
    validated = float(next(r for r in _metrics_rows(val_run) if r.get("val/P_MTL"))["val/P_MTL"])
    out = tmp_path / "pred_val"
    assert main(["mtl", "predict", *_cli_args(tiny_data, tmp_path / "p", "--ckpt_path", last,
                                       "--data.predict_split", "val",
                                       "--submission.output_dir", str(out))]) == 0
    truth = read_mtl_annotations(tiny_data / MTL_VAL_FILE)
    sub = read_mtl_submission(out / "submission.txt")
    assert sub.images == list(truth.images)
    scored = mtl_score(truth.va, np.stack([sub.valence, sub.arousal], 1), truth.expression,
                       sub.expression, truth.aus, sub.aus)
    # the logged value is float32 and the file rounds VA to 6 decimals
    assert scored.P_MTL == pytest.approx(validated, abs=1e-5)
    probabilities = np.load(out / "predictions.npz")
    assert probabilities["au_prob"].shape == (8, 12)

    # the test list: one row per entry, repeats kept, in list order
    test_out = tmp_path / "pred_test"
    assert main(["mtl", "predict", *_cli_args(tiny_data, tmp_path / "q", "--ckpt_path", last,
                                       "--submission.output_dir", str(test_out))]) == 0
    lines = (test_out / "submission.txt").read_text().splitlines()
    listed = (tiny_data / "MTL_Challenge_test_set_release.txt").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == listed[1:]
    assert lines[1] == lines[-1]  # the repeated entry got the same prediction


@pytest.mark.parametrize(("config", "backbone", "extra"), [
    ("vit_mae.yaml", "vit_test", ()),  # layer-wise LR decay parameter groups
    ("au_graph.yaml", "vit_test", ()),  # graph head initialised from the linked statistics
    ("efficientnet_b0.yaml", "efficientnet_test", ("--data.balance", "task")),
    ("hybrid.yaml", "cnn_transformer_test", ("--model.weighting", "fixed",
                                             "--model.freeze_backbone_epochs", "1")),
])
def test_every_config_trains_a_few_steps(config, backbone, extra, tiny_data, tmp_path) -> None:
    run = tmp_path / "run"
    args = _cli_args(tiny_data, run, "--trainer.max_steps", "4", *extra)  # 2 epochs
    at = args.index(str(DEFAULT_CONFIG)) + 1  # the overlay stacked on the base config
    args[at:at] = ["--config", str(DEFAULT_CONFIG.parent / config)]
    args[args.index("--model.backbone") + 1] = backbone
    assert main(["mtl", "fit", *args]) == 0
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert state["global_step"] == 4
    if config == "hybrid.yaml":  # unfrozen after epoch 1: the backbone joined the optimiser
        assert len(state["optimizer_states"][0]["param_groups"]) > 2
        base_lrs = state["lr_schedulers"][0]["base_lrs"]
        assert base_lrs[-1] == pytest.approx(base_lrs[0] / 10)  # at lr/10, on the schedule
        args[args.index("--trainer.max_steps") + 1] = "6"
        assert main(["mtl", "fit", *args, "--ckpt_path", "last"]) == 0  # resume after unfreezing
        resumed = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
        assert resumed["global_step"] == 6
        assert resumed["lr_schedulers"][0]["base_lrs"] == base_lrs


def test_predict_uses_thresholds_saved_beside_the_checkpoint(tiny_data, tmp_path) -> None:
    from abaw.postprocess import default_postprocess_path, save_postprocess

    run = tmp_path / "run"
    assert main(["mtl", "fit", *_cli_args(tiny_data, run, "--trainer.max_steps", "1")]) == 0
    last = run / "checkpoints" / "last.ckpt"
    thresholds = np.zeros(12)
    thresholds[0] = 1.0 + 0.0  # AU1 never on (a sigmoid stays below 1), every other AU on
    save_postprocess(default_postprocess_path(last), thresholds)
    out = tmp_path / "pred"
    assert main(["mtl", "predict", *_cli_args(tiny_data, tmp_path / "p", "--ckpt_path", str(last),
                                       "--submission.output_dir", str(out))]) == 0
    aus = read_mtl_submission(out / "submission.txt").aus
    assert aus[:, 0].tolist() == [0] * len(aus)
    assert aus[:, 1:].min() == 1


def test_resume_from_last_continues_the_global_step(tiny_data, tmp_path) -> None:
    run = tmp_path / "run"
    assert main(["mtl", "fit", *_cli_args(tiny_data, run, "--trainer.max_steps", "2")]) == 0
    first = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert first["global_step"] == 2
    assert main(["mtl", "fit", *_cli_args(tiny_data, run, "--trainer.max_steps", "4",
                                   "--ckpt_path", "last")]) == 0
    second = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert second["global_step"] == 4
    # the optimiser continued (AdamW's step counter), it did not restart from scratch
    steps = {int(s["step"]) for s in second["optimizer_states"][0]["state"].values()}
    assert steps == {4}
    assert second["epoch"] == 1


def test_cli_errors_are_messages(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("ABAW_DATA_ROOT", raising=False)
    args = _cli_args(tmp_path, tmp_path / "run")
    data_at = args.index("--data.data_root")
    del args[data_at:data_at + 2]
    assert main(["mtl", "fit", *args, "--trainer.max_steps", "1"]) == 2
    assert "ABAW_DATA_ROOT" in capsys.readouterr().err
    assert main(["mtl", "fit", "--config", str(DEFAULT_CONFIG), "--model.no_such_key", "1"]) == 2


# --- slow: a killed run resumes; DDP on 2 CPU processes ----------------------------------------


def _subprocess_env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return env


@pytest.mark.slow
def test_killed_run_resumes_to_completion(tmp_path) -> None:
    data = make_mtl_data(tmp_path / "data", n_train=8, n_val=4)
    run = tmp_path / "run"
    args = [sys.executable, "-m", "abaw.cli", "mtl", "fit",
            *_cli_args(data, run, "--trainer.max_epochs", "-1", "--trainer.max_steps", "400",
                       "--last_checkpoint.every_n_train_steps", "2")]
    last = run / "checkpoints" / "last.ckpt"
    process = subprocess.Popen(args, env=_subprocess_env(), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not last.exists():
            time.sleep(0.5)
        time.sleep(2)  # let it train a little past the first checkpoint
        assert process.poll() is None, "the run finished before it could be killed"
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    killed_at = torch.load(last, weights_only=False)["global_step"]
    assert 2 <= killed_at < 400
    resume = subprocess.run(
        [*args[:-2], "--last_checkpoint.every_n_train_steps", "2",
         "--trainer.max_steps", str(killed_at + 6), "--ckpt_path", "last"],
        env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert "Restored all states" in resume.stderr + resume.stdout
    assert torch.load(last, weights_only=False)["global_step"] == killed_at + 6


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path) -> None:
    data = make_mtl_data(tmp_path / "data", n_train=16, n_val=10, n_test=5)
    run = tmp_path / "run"
    common = ["--trainer.accelerator", "cpu", "--trainer.devices", "2",
              "--trainer.strategy", "ddp"]
    fit = subprocess.run(
        [sys.executable, "-m", "abaw.cli", "mtl", "fit",
         *_cli_args(data, run, "--trainer.max_epochs", "1", *common)],
        env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert fit.returncode == 0, fit.stderr[-3000:]
    assert (run / "checkpoints" / "last.ckpt").is_file()
    out = tmp_path / "pred"
    predict = subprocess.run(
        [sys.executable, "-m", "abaw.cli", "mtl", "predict",
         *_cli_args(data, tmp_path / "p", "--ckpt_path", str(run / "checkpoints" / "last.ckpt"),
                    "--submission.output_dir", str(out), *common)],
        env=_subprocess_env(), capture_output=True, text=True, timeout=300)
    assert predict.returncode == 0, predict.stderr[-3000:]
    # the 5 distinct images were split over 2 ranks (one padded repeat) and gathered back
    lines = (out / "submission.txt").read_text().splitlines()
    assert len(lines) == 1 + 6
