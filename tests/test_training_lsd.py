"""LSD training: the occlusion decision rule (hand-computed), the confusion-matrix PNG, the
metric and losses, a few real optimiser steps of LsdModule through Lightning's Trainer, the
prediction writer, and every shipped LSD config parsed by the real CLI."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml

from abaw.data.lsd import LsdDataModule
from abaw.errors import ConfigError, FormatError
from abaw.formats.submissions import read_lsd_labels
from abaw.lsd.occlusion import OcclusionRule, estimate_occluded_weights
from abaw.metrics import lsd_f1
from abaw.models.losses import occlusion_loss
from abaw.training.cli import run_lightning_cli
from abaw.training.lsd_module import LsdModule
from abaw.training.metric import LsdMetric
from abaw.training.plots import confusion_matrix, save_confusion_matrix
from abaw.training.writer import LsdPredictionWriter
from abaw.vocab import LSD_CLASSES, LSD_TRAIN_DIR, LSD_VAL_DIR
from tests.lsd_fixtures import TEST_DIR, TEST_SIZE, make_lsd_data, write_occlusion_csv

torch.set_num_threads(1)
CONFIG_DIR = Path(__file__).parent.parent / "configs" / "lsd"
BASE = CONFIG_DIR / "base.yaml"
OVERLAYS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if p != BASE)


# --- the decision rule -----------------------------------------------------------------------

P = np.array([
    [0.5, 0.1, 0.1, 0.1, 0.1, 0.1],
    [0.1, 0.1, 0.1, 0.1, 0.5, 0.1],
])
Q = np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0, 1.0],
    [0.0, 0.0, 1.0, 0.0, 0.0, 0.0],
])
OCC = np.array([0.8, 0.2])


def test_rule_none_returns_the_main_head() -> None:
    np.testing.assert_allclose(OcclusionRule().apply(P), P)
    np.testing.assert_allclose(OcclusionRule("none").apply(P, OCC, Q), P)


def test_separate_head_switches_only_occluded_faces() -> None:
    out = OcclusionRule("separate_head", threshold=0.5).apply(P, OCC, Q)
    np.testing.assert_allclose(out, [Q[0], P[1]])
    # a threshold above both faces' occlusion: nothing switches
    np.testing.assert_allclose(OcclusionRule("separate_head", threshold=0.9).apply(P, OCC, Q), P)


def test_separate_head_blend_mixes_by_occlusion_probability() -> None:
    out = OcclusionRule("separate_head", blend=True).apply(P, OCC, Q)
    # face 0: 0.2 * P0 + 0.8 * Q0; face 1: 0.8 * P1 + 0.2 * Q1
    np.testing.assert_allclose(out[0], [0.1, 0.02, 0.02, 0.02, 0.02, 0.82])
    np.testing.assert_allclose(out[1], [0.08, 0.08, 0.28, 0.08, 0.4, 0.08])
    np.testing.assert_allclose(out.sum(axis=1), 1.0)


def test_reweight_multiplies_occluded_faces_by_the_class_weights() -> None:
    weights = [1.0, 1.0, 4.0, 1.0, 0.5, 1.0]
    out = OcclusionRule("reweight", class_weights=weights).apply(P, np.array([0.2, 0.8]))
    np.testing.assert_allclose(out[0], P[0])  # not occluded: untouched
    # face 1: [0.1, 0.1, 0.4, 0.1, 0.25, 0.1] / 1.05 -> Fear now wins over Sadness
    np.testing.assert_allclose(out[1], np.array([0.1, 0.1, 0.4, 0.1, 0.25, 0.1]) / 1.05)
    assert out[1].argmax() == 2 and P[1].argmax() == 4
    soft = OcclusionRule("reweight", blend=True, class_weights=weights).apply(P, np.array([0.0, 1.0]))
    np.testing.assert_allclose(soft, [P[0], out[1]])  # w**0 = 1, w**1 = w


def test_estimate_occluded_weights_hand_computed() -> None:
    probs = np.array([
        [0.5, 0.0, 0.0, 0.0, 0.5, 0.0],   # occluded, true Fear
        [0.0, 0.0, 0.0, 0.0, 1.0, 0.0],   # occluded, true Fear
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0],   # not occluded: ignored
        [0.0, 0.0, 0.0, 1.0, 0.0, 0.0],   # unknown: ignored
    ])
    labels = np.array([2, 2, 0, 3])
    occluded = np.array([1, 1, 0, -1])
    weights = estimate_occluded_weights(probs, labels, occluded, smoothing=1.0)
    # true counts (occluded): Fear 2; predicted sums: Anger 0.5, Sadness 1.5
    np.testing.assert_allclose(weights, [1 / 1.5, 1.0, 3.0, 1.0, 1 / 2.5, 1.0])
    no_occluded = estimate_occluded_weights(probs, labels, np.zeros(4, int))
    np.testing.assert_allclose(no_occluded, np.ones(6))


def test_rule_errors_and_json_round_trip(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown occlusion rule"):
        OcclusionRule("vote")
    with pytest.raises(ConfigError, match="class_weights"):
        OcclusionRule("reweight")
    with pytest.raises(ConfigError, match="occlusion probabilities"):
        OcclusionRule("separate_head").apply(P)
    with pytest.raises(ConfigError, match="occluded-face head"):
        OcclusionRule("separate_head").apply(P, OCC)
    with pytest.raises(ConfigError, match="shape"):
        OcclusionRule().apply(P[:, :5])
    rule = OcclusionRule("reweight", threshold=0.3, class_weights=[1, 2, 3, 4, 5, 6])
    path = rule.save(tmp_path / "rule.json")
    assert OcclusionRule.load(path) == rule
    path.write_text('{"rule": "reweight", "threshold": 0.3, "bogus": 1}', encoding="utf-8")
    with pytest.raises(FormatError, match="unknown keys"):
        OcclusionRule.load(path)
    path.write_text('{"rule": ', encoding="utf-8")
    with pytest.raises(FormatError, match="not valid JSON"):
        OcclusionRule.load(path)


# --- plots -----------------------------------------------------------------------------------


def test_confusion_matrix_counts() -> None:
    counts = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 2, 0], 4)
    expected = np.zeros((4, 4), int)
    expected[0, 0] = expected[0, 1] = expected[1, 1] = expected[2, 0] = 1
    expected[2, 2] = 2
    np.testing.assert_array_equal(counts, expected)
    with pytest.raises(ConfigError):
        confusion_matrix([0, 4], [0, 0], 4)


def test_confusion_matrix_png_has_the_requested_size(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 6, 50), rng.integers(0, 6, 50)
    path = save_confusion_matrix(tmp_path / "sub" / "cm.png", y_true, y_pred, LSD_CLASSES,
                                 figsize=(6.0, 5.0), dpi=80)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    assert struct.unpack(">II", data[16:24]) == (480, 400)
    assert data.endswith(b"IEND\xaeB`\x82")
    assert not list(path.parent.glob(".*.tmp"))  # atomic write left nothing behind


# --- metric and losses -----------------------------------------------------------------------


def test_lsd_metric_matches_the_official_scorer() -> None:
    truth = torch.tensor([0, 1, 2, 2, 4, 4, 5, -1])
    pred = torch.tensor([0, 1, 2, 4, 4, 4, 3, 0])
    logits = torch.nn.functional.one_hot(pred, 6).float()
    occluded = torch.tensor([1, 1, 0, 0, -1, 0, 1, 1])
    occ_prob = torch.tensor([0.9, 0.1, 0.2, 0.7, 0.5, 0.1, 0.8, 0.9])
    metric = LsdMetric()
    metric.update(logits[:4], truth[:4], occ_prob[:4], occluded[:4])
    metric.update(logits[4:], truth[4:], occ_prob[4:], occluded[4:])
    values = metric.compute()
    labelled = truth >= 0
    macro, per_class = lsd_f1(truth[labelled].numpy(), pred[labelled].numpy())
    assert values["f1"].item() == pytest.approx(macro)
    assert values["f1_Fear"].item() == pytest.approx(per_class[2])
    assert values["acc"].item() == pytest.approx(5 / 7)
    # occlusion over the 6 labelled faces with a known flag (row 4 unknown, row 7 unlabelled):
    # truth 1 1 0 0 0 1, predicted 1 0 0 1 0 1 -> TP 2, FP 1, FN 1 -> F1 2/3, accuracy 4/6
    assert values["occlusion_f1"].item() == pytest.approx(2 / 3)
    assert values["occlusion_acc"].item() == pytest.approx(4 / 6)
    hidden = np.array([0, 1, 6])
    assert values["f1_occluded"].item() == pytest.approx(
        lsd_f1(truth.numpy()[hidden], pred.numpy()[hidden])[0])
    np.testing.assert_array_equal(metric.last_rows[0], truth[labelled].numpy())


def test_occlusion_loss_is_masked_to_known_flags() -> None:
    logits = torch.tensor([0.0, 2.0, -1.0], requires_grad=True)
    loss = occlusion_loss(logits, torch.tensor([1, -1, 0]))
    expected = (np.log(2.0) + np.log(1.0 + np.exp(-1.0))) / 2
    assert loss.item() == pytest.approx(expected)
    none_known = occlusion_loss(logits, torch.tensor([-1, -1, -1]))
    none_known.backward()
    assert none_known.item() == 0.0 and torch.equal(logits.grad, torch.zeros(3))


# --- a real (tiny) fit -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lsd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = make_lsd_data(tmp_path_factory.mktemp("lsd_fit"))
    write_occlusion_csv(root / "train_hands.csv", {
        "SADNESS/img00.jpg": 1, "SADNESS/img01.jpg": 0, "HAPPINESS/img00.jpg": 1,
        "ANGRER/img00.jpg": 0, "FEAR/img00.jpg": 1,
    })
    write_occlusion_csv(root / "val_hands.csv", {"SADNESS/img00.jpg": 1, "ANGER/img00.jpg": 0})
    return root


def _datamodule(root: Path, **overrides) -> LsdDataModule:
    options = dict(data_root=str(root), test_dir=str(root / TEST_DIR), img_size=32,
                   batch_size=4, num_workers=0, occlusion_csv=str(root / "train_hands.csv"),
                   val_occlusion_csv=str(root / "val_hands.csv"))
    options.update(overrides)
    return LsdDataModule(**options)


def _trainer(tmp_path: Path, **overrides) -> pl.Trainer:
    options = dict(default_root_dir=str(tmp_path), max_steps=3, limit_val_batches=1,
                   accelerator="cpu", devices=1, enable_progress_bar=False,
                   enable_model_summary=False, num_sanity_val_steps=0,
                   logger=pl.loggers.CSVLogger(str(tmp_path), name="logs"))
    options.update(overrides)
    return pl.Trainer(**options)


def test_fit_validate_predict_and_write_a_submission(lsd_root: Path, tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = LsdModule(backbone="efficientnet_test", img_size=32, occluded_expression_head=True,
                      lr=1e-3)
    data = _datamodule(lsd_root)
    before = {n: p.detach().clone() for n, p in model.net.named_parameters()}
    trainer = _trainer(tmp_path, max_steps=3, val_check_interval=3)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 3
    changed = [n for n, p in model.net.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in changed)
    assert any(n.startswith("occlusion_head.") for n in changed)
    assert any(n.startswith("occluded_expr_head.") for n in changed)
    assert bool(model.occlusion_trained)
    logged = trainer.callback_metrics
    for key in ("val/f1", "val/acc", "val/f1_Fear", "val/occlusion_f1", "val/f1_occluded",
                "train/loss", "train/loss_occlusion"):
        assert key in logged, key
    # the logged validation F1 is the official macro F1 of the model's own validation
    # predictions, recomputed here outside the metric (labelled rows only)
    model.eval()
    truth, predicted = [], []
    with torch.no_grad():
        for batch in data.val_dataloader():
            batch = model.on_after_batch_transfer(batch, 0)
            predicted.append(model(batch["image"])["expr"].argmax(dim=1))
            truth.append(batch["label"])
    truth_all, predicted_all = torch.cat(truth).numpy(), torch.cat(predicted).numpy()
    labelled = truth_all >= 0
    expected, _ = lsd_f1(truth_all[labelled], predicted_all[labelled])
    assert float(logged["val/f1"]) == pytest.approx(expected, abs=1e-6)
    pngs = list(Path(trainer.log_dir).glob("confusion_matrix/val_epoch*.png"))
    assert len(pngs) == 1

    data.setup("predict")
    writer = LsdPredictionWriter(output_dir=str(tmp_path / "sub"))
    predictor = _trainer(tmp_path, callbacks=[writer], logger=False)
    batches = predictor.predict(model, datamodule=data, return_predictions=True)
    probs = torch.cat([b["expr_prob"] for b in batches])
    assert probs.shape == (TEST_SIZE, 6)
    torch.testing.assert_close(probs.sum(dim=1), torch.ones(TEST_SIZE, dtype=probs.dtype))
    occlusion = torch.cat([b["occlusion_prob"] for b in batches])
    assert occlusion.shape == (TEST_SIZE,) and bool(((occlusion >= 0) & (occlusion <= 1)).all())
    assert torch.cat([b["expr_prob_occluded"] for b in batches]).shape == (TEST_SIZE, 6)
    names, classes = read_lsd_labels(writer.result.written["submission"])
    assert names == [*(f"{i}.jpg" for i in range(TEST_SIZE)), "1.jpg"]  # list order, repeat
    assert classes.tolist() == [*probs.argmax(dim=1).tolist(), int(probs[1].argmax())]
    saved = np.load(writer.result.written["predictions"])
    np.testing.assert_allclose(saved["expr_prob"], probs.numpy(), rtol=1e-6)


def test_without_occlusion_labels_the_heads_stay_out(lsd_root: Path, tmp_path: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    model = LsdModule(backbone="efficientnet_test", img_size=32)
    data = _datamodule(lsd_root, occlusion_csv=None, val_occlusion_csv=None, balance="loss")
    trainer = _trainer(tmp_path, max_steps=2, limit_val_batches=0, log_every_n_steps=1)
    with caplog.at_level("WARNING", logger="abaw.training.lsd_module"):
        trainer.fit(model, datamodule=data)
    assert "no occlusion labels" in caplog.text
    assert "train/loss_expr" in trainer.callback_metrics
    assert "train/loss_occlusion" not in trainer.callback_metrics
    assert not bool(model.occlusion_trained)
    assert model.class_weight[2] > model.class_weight[4]  # balance=loss reached the module
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    out = model.predict_step(batch, 0)
    assert set(out) == {"expr_prob", "index"}


def test_writer_uses_a_rule_file_and_detector_flags(tmp_path: Path) -> None:
    images = ["0.jpg", "1.jpg"]
    arrays = {"expr_prob": P.copy()}
    rule = OcclusionRule("reweight", class_weights=[1.0, 1.0, 4.0, 1.0, 0.5, 1.0])
    writer = LsdPredictionWriter()
    plain = writer.finish(images, dict(arrays), OcclusionRule(), None, tmp_path / "a")
    assert read_lsd_labels(plain.written["submission"])[1].tolist() == [0, 4]
    flagged = dict(arrays, occlusion_prob=np.array([0.0, 1.0]))
    written = writer.finish(images, flagged, rule, None, tmp_path / "b")
    assert read_lsd_labels(written.written["submission"])[1].tolist() == [0, 2]
    # detector flags replace the head: image 1 flagged by the CSV, so it is reweighted too
    csv_path = write_occlusion_csv(tmp_path / "hands.csv", {"1.jpg": 1})
    detector = LsdPredictionWriter(occlusion_csv=str(csv_path))
    result = detector.finish(images, dict(arrays), rule, ["1.jpg", "0.jpg", "1.jpg"], None)
    assert result.written == {} and result.names == ["1.jpg", "0.jpg", "1.jpg"]
    assert result.decided["expression"][result.rows].tolist() == [2, 0, 2]


# --- configs and the CLI ---------------------------------------------------------------------


def test_a_config_of_another_challenge_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("challenge: mtl\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="challenge: mtl .*abaw mtl"):
        run_lightning_cli("lsd", ["fit", "--config", str(BASE), "--config", str(other)])


@pytest.mark.parametrize("overlays", [[], *([o] for o in OVERLAYS)],
                         ids=["base", *(o.stem for o in OVERLAYS)])
def test_shipped_configs_parse_through_the_cli(overlays: list[Path],
                                               capsys: pytest.CaptureFixture) -> None:
    assert OVERLAYS
    stacked = [a for c in (BASE, *overlays) for a in ("--config", str(c))]
    assert run_lightning_cli("lsd", ["fit", *stacked, "--print_config"]) == 0
    printed = capsys.readouterr().out
    resolved = yaml.safe_load(printed)
    assert resolved["challenge"] == "lsd" and resolved["checkpoint"]["monitor"] == "val/f1"
    # last.ckpt comes from its own every-epoch callback (never stale after a worse epoch)
    last = resolved["last_checkpoint"]
    assert last["filename"] == "last" and last["monitor"] is None
    expected: dict = {}
    for config in (BASE, *overlays):  # an overlay's values win over the base's
        expected.update(yaml.safe_load(config.read_text(encoding="utf-8")).get("model", {}))
    assert all(resolved["model"][k] == v for k, v in expected.items())
    for config in (BASE, *overlays):
        for line in config.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            if stripped and not stripped.startswith("#") and not stripped.startswith("- "):
                assert "#" in line, f"{config.name}: uncommented key {stripped!r}"


def test_cli_fit_on_tiny_data(lsd_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = run_lightning_cli("lsd", [
        "fit", "--config", str(BASE),
        "--data.data_root", str(lsd_root), "--data.num_workers", "0", "--data.img_size", "32",
        "--data.batch_size", "4", "--model.backbone", "efficientnet_test",
        "--trainer.default_root_dir", str(run),
        "--trainer.limit_train_batches", "2", "--trainer.max_epochs", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.accelerator", "cpu",
        "--trainer.devices", "1",
    ])
    assert code == 0
    assert (run / "checkpoints" / "last.ckpt").is_file()
    assert list(run.glob("checkpoints/best-*.ckpt"))
    restored = LsdModule.load_from_checkpoint(run / "checkpoints" / "last.ckpt")
    assert restored.hparams.img_size == 32 and restored.hparams.backbone == "efficientnet_test"
    # no occlusion CSV, but the config pastes hands: the occlusion head was trained
    assert bool(restored.occlusion_trained)
    assert (lsd_root / LSD_TRAIN_DIR).is_dir() and (lsd_root / LSD_VAL_DIR).is_dir()
