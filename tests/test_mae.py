"""MAE pre-training: masking, the normalised-pixel loss, learning, the encoder checkpoint in the
MTL backbone, the command (resume, de-duplication, bad input)."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from abaw.cli import main
from abaw.data.pretrain import PretrainDataModule, collect_images
from abaw.models import create_backbone
from abaw.models.backbones import MAE_DROP_PATTERN
from abaw.models.mae import (
    MaskedAutoencoder,
    masked_patch_loss,
    patchify,
    random_masking,
    unpatchify,
)
from abaw.training.mae_module import ENCODER_FILE, PREVIEW_DIR, save_encoder

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / "default.yaml"
GPU_CONFIG = CONFIG.with_name("gpu.yaml")


# --- tiny images ------------------------------------------------------------------------------


def ramp(size: int, vertical: bool, colour: np.ndarray) -> np.ndarray:
    """An RGB uint8 image: a linear ramp along one axis, tinted by ``colour``."""
    line = np.linspace(0.2, 1.0, size)
    shade = line[:, None] if vertical else line[None, :]
    image = np.broadcast_to(shade[..., None], (size, size, 1)) * colour
    return np.clip(image, 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, size: int = 32, seed: int = 0,
                 prefix: str = "img") -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        image = ramp(size, bool(i % 2), rng.uniform(80, 255, 3))
        path = folder / f"{prefix}{i:03d}.png"
        assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        paths.append(path)
    return paths


# --- masking and the loss ---------------------------------------------------------------------


@pytest.mark.parametrize(("patches", "ratio", "visible"), [(16, 0.75, 4), (49, 0.75, 12),
                                                            (4, 0.75, 1), (10, 0.5, 5)])
def test_masking_keeps_exactly_the_visible_count_per_sample(patches, ratio, visible) -> None:
    tokens = torch.arange(patches, dtype=torch.float32).view(1, patches, 1).repeat(6, 1, 2)
    kept, mask, ids_restore = random_masking(tokens, ratio, torch.Generator().manual_seed(1))
    assert kept.shape == (6, visible, 2)
    assert mask.shape == (6, patches)
    assert (mask.sum(dim=1) == patches - visible).all()
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    for b in range(6):  # the kept tokens are exactly the unmasked positions
        assert sorted(kept[b, :, 0].long().tolist()) == torch.nonzero(mask[b] == 0).flatten().tolist()


def test_masks_differ_per_sample_and_restoring_puts_tokens_back_in_order() -> None:
    n = 16
    tokens = torch.randn(8, n, 3)
    kept, mask, ids_restore = random_masking(tokens, 0.75, torch.Generator().manual_seed(0))
    assert len({tuple(row.tolist()) for row in mask}) > 1  # a fresh draw per sample
    # the decoder's un-shuffle: visible tokens then fillers, gathered with ids_restore
    filler = torch.full((8, n - kept.shape[1], 3), float("nan"))
    restored = torch.gather(torch.cat([kept, filler], dim=1), 1,
                            ids_restore.unsqueeze(-1).expand(-1, -1, 3))
    visible = mask == 0
    assert torch.equal(restored[visible], tokens[visible])
    assert torch.isnan(restored[~visible]).all()


def test_patchify_round_trip_and_layout() -> None:
    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).view(2, 3, 8, 8)
    patches = patchify(images, 4)
    assert patches.shape == (2, 4, 48)
    # patch 1 = rows 0-3, columns 4-7; flattened (row, column, channel)
    assert patches[0, 1, :3].tolist() == images[0, :, 0, 4].tolist()
    assert patches[0, 1, 3:6].tolist() == images[0, :, 0, 5].tolist()
    assert torch.equal(unpatchify(patches, 4), images)


def test_normalised_pixel_loss_by_hand() -> None:
    patches = torch.tensor([[[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 8.0]]])
    mask = torch.tensor([[1.0, 0.0, 0.0]])  # only the first patch counts
    zero = torch.zeros_like(patches)
    # patch [1, 2, 3, 4]: mean 2.5, unbiased variance 5/3; predicting 0 costs
    # mean(((x - 2.5) / sqrt(5/3 + 1e-6)) ** 2) = (5 / 4) / (5/3 + 1e-6)
    expected = (5.0 / 4.0) / (5.0 / 3.0 + 1e-6)
    assert masked_patch_loss(zero, patches, mask).item() == pytest.approx(expected, rel=1e-6)
    perfect = (patches - 2.5) / (5.0 / 3.0 + 1e-6) ** 0.5
    assert masked_patch_loss(perfect, patches, mask).item() == pytest.approx(0.0, abs=1e-10)
    # raw pixels: mean(x ** 2) = 7.5 for the first patch; the average over masked patches
    both = torch.tensor([[1.0, 0.0, 1.0]])
    assert masked_patch_loss(zero, patches, mask, norm_pix=False).item() == pytest.approx(7.5)
    assert masked_patch_loss(zero, patches, both, norm_pix=False).item() == pytest.approx(
        (7.5 + 16.0) / 2)


def test_training_beats_the_per_patch_mean_predictor() -> None:
    """A few steps on ramps (horizontal or vertical: the visible patch tells which) must go
    well below the loss of predicting each masked patch's own mean (0 in normalised pixels),
    which a network ignoring its input cannot beat."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    images = np.stack([ramp(32, bool(i % 2), rng.uniform(80, 255, 3)) for i in range(16)])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255.0
    net = MaskedAutoencoder("vit_test", img_size=32, decoder_embed_dim=32, decoder_depth=1,
                            decoder_num_heads=2)
    optimizer = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for _ in range(40):
        loss, prediction, mask = net(x)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    constant = masked_patch_loss(torch.zeros_like(prediction), patchify(x, 16), mask).item()
    assert constant == pytest.approx((768 - 1) / 768, rel=1e-3)
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5])
    assert np.mean(losses[-5:]) < 0.5 * constant


# --- the encoder checkpoint in the MTL backbone -----------------------------------------------


def test_encoder_checkpoint_loads_into_the_mtl_backbone_with_exact_keys(tmp_path) -> None:
    net = MaskedAutoencoder("vit_test", img_size=64)
    path = save_encoder(net, tmp_path / ENCODER_FILE)
    saved = torch.load(path, map_location="cpu", weights_only=True)
    assert set(saved) == {"model"}
    keys = set(saved["model"])
    backbone = create_backbone("vit_test", img_size=64)  # the MTL ViT: average pooling
    own = set(backbone.model.state_dict())
    decoder = {k for k in keys if MAE_DROP_PATTERN.match(k)}
    assert {"mask_token", "decoder_embed.weight", "decoder_pred.bias",
            "decoder_pos_embed", "decoder_norm.weight"} <= decoder
    fc_norm, norm = {"fc_norm.weight", "fc_norm.bias"}, {"norm.weight", "norm.bias"}
    assert keys - decoder == (own - fc_norm) | norm

    loaded = create_backbone("vit_test", img_size=64, checkpoint=path, checkpoint_format="mae")
    report = loaded.load_report
    assert set(report.missing) == fc_norm and set(report.unexpected) == norm
    assert set(report.dropped) == decoder and report.interpolated == ()
    for key, value in loaded.model.state_dict().items():
        if key not in fc_norm:
            assert torch.equal(value, saved["model"][key]), key

    # another input size: the position embeddings are interpolated, nothing else changes
    small = create_backbone("vit_test", img_size=32, checkpoint=path, checkpoint_format="mae")
    assert small.load_report.interpolated == ("pos_embed",)
    assert small.model.pos_embed.shape == (1, 1 + 4, 32)


def test_non_vit_backbones_are_refused() -> None:
    from abaw.errors import ConfigError

    with pytest.raises(ConfigError, match="needs a ViT"):
        MaskedAutoencoder("cnn_transformer_test", img_size=32)


# --- images under several roots ---------------------------------------------------------------


def test_images_are_deduplicated_by_content_across_roots(tmp_path) -> None:
    a = write_images(tmp_path / "a" / "train", 4, seed=0)
    b = write_images(tmp_path / "b" / "video1", 3, seed=1, prefix="frame")
    shutil.copy(a[0], tmp_path / "b" / "video1" / "copy_of_a0.png")  # same bytes, new name
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "loop").symlink_to(tmp_path / "b")  # a link loop ends, read once
    roots = [tmp_path / "a", tmp_path / "b", tmp_path / "a"]  # a root given twice
    paths, hashes, duplicates = collect_images(roots)
    assert paths == [*a, *b]  # root order, then path order; the first copy kept
    assert len(set(hashes)) == 7 and duplicates == 5

    data = PretrainDataModule(roots=[str(r) for r in roots], img_size=16, batch_size=2,
                              val_images=1)
    data.setup("fit")
    assert data.counts == {"images": 7, "duplicates": 5, "unreadable": 0, "train": 6, "val": 1}
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image"].shape == (2, 3, 16, 16)


# --- the command ------------------------------------------------------------------------------


def _args(root: Path, run: Path, *extra: str) -> list[str]:
    return ["pretrain", "mae", "--config", str(CONFIG), "--data.roots", f"[{root}]",
            "--model.backbone", "vit_test", "--model.decoder_embed_dim", "32",
            "--model.decoder_depth", "1", "--model.decoder_num_heads", "2",
            "--model.preview_images", "4", "--data.img_size", "32", "--data.batch_size", "4",
            "--data.val_images", "4", "--trainer.default_root_dir", str(run),
            "--trainer.accelerator", "cpu", "--trainer.devices", "1",
            "--trainer.enable_progress_bar", "false", "--trainer.limit_train_batches", "2",
            *extra]


def test_pretrain_writes_encoder_previews_logs_and_resumes(tmp_path, one_thread) -> None:
    root, run = tmp_path / "faces", tmp_path / "run"
    write_images(root, 40)
    assert main(_args(root, run, "--trainer.max_epochs", "1")) == 0
    encoder = run / ENCODER_FILE
    assert encoder.is_file() and (run / PREVIEW_DIR / "epoch_000.png").is_file()
    preview = cv2.imread(str(run / PREVIEW_DIR / "epoch_000.png"))
    scale = 128 // 32  # rows: masked input, reconstruction, original; 4 images a row
    assert preview.shape == (3 * (32 * scale + 2) + 2, 4 * (32 * scale + 2) + 2, 3)
    last = run / "checkpoints" / "last.ckpt"
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 2
    first = torch.load(encoder, map_location="cpu", weights_only=True)["model"]
    # the encoder fine-tunes in the MTL ViT as it is
    create_backbone("vit_test", img_size=32, checkpoint=encoder, checkpoint_format="mae")

    assert main(_args(root, run, "--trainer.max_epochs", "2", "--ckpt_path", "last")) == 0
    assert torch.load(last, map_location="cpu", weights_only=False)["global_step"] == 4
    assert (run / PREVIEW_DIR / "epoch_001.png").is_file()
    second = torch.load(encoder, map_location="cpu", weights_only=True)["model"]
    assert not torch.equal(first["blocks.0.attn.qkv.weight"], second["blocks.0.attn.qkv.weight"])
    metrics = (run / "logs").rglob("metrics.csv")
    assert any("val/loss" in path.read_text().splitlines()[0] for path in metrics)


@pytest.mark.parametrize("case", ["missing", "file", "empty", "corrupt_error", "all_corrupt"])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, case) -> None:
    root, run = tmp_path / "faces", tmp_path / "run"
    extra: list[str] = []
    if case == "file":
        root = tmp_path / "faces.png"
        root.write_bytes(b"x")
        expected = "is not a folder"
    elif case == "empty":
        root.mkdir()
        (root / "readme.txt").write_text("no images here")
        expected = "no images found"
    elif case == "corrupt_error":
        write_images(root, 12)
        (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
        extra = ["--data.unreadable", "error"]
        expected = "broken.jpg: not a readable image"
    elif case == "all_corrupt":
        root.mkdir()
        for i in range(3):
            (root / f"{i}.png").write_bytes(b"\x89PNG\r\n\x1a\ncut")
        expected = "0 readable image(s)"
    else:
        expected = "pre-training data root not found"
    assert main(_args(root, run, "--trainer.max_epochs", "1", *extra)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    # progress messages (``abaw: ...``) may come first; the error is one line, the last
    errors = [line for line in err if line.startswith("abaw: error: ")]
    assert len(errors) == 1 and err[-1] == errors[0] and expected in errors[0], err
    assert not any("Traceback" in line for line in err), err


def test_corrupt_images_are_skipped_and_listed_by_default(tmp_path) -> None:
    root = tmp_path / "faces"
    write_images(root, 12)
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    data = PretrainDataModule(roots=[str(root)], img_size=16, batch_size=4, val_images=1)
    data.setup("fit")
    assert data.counts["unreadable"] == 1 and data.counts["train"] + data.counts["val"] == 12


# --- the configs --------------------------------------------------------------------------------


@pytest.mark.parametrize("overlays", [[], [GPU_CONFIG]], ids=["default", "gpu"])
def test_configs_parse_and_every_key_is_commented(overlays, capsys) -> None:
    stacked = [a for c in (CONFIG, *overlays) for a in ("--config", str(c))]
    assert main(["pretrain", "mae", *stacked, "--print_config"]) == 0
    resolved = yaml.safe_load(capsys.readouterr().out)
    expected: dict[str, dict] = {"model": {}, "data": {}}
    for config in (CONFIG, *overlays):  # the overlay's values win
        shipped = yaml.safe_load(config.read_text())
        for section, values in expected.items():
            values.update(shipped.get(section, {}))
        for number, line in enumerate(config.read_text().splitlines(), start=1):
            if line.strip() and not line.strip().startswith("#"):
                assert "#" in line, f"{config.name}:{number}: key without a comment"
    for section, values in expected.items():
        for key, value in values.items():
            assert resolved[section][key] == value, (section, key)
    assert "img_size" not in resolved["model"]  # linked from data.img_size, stated once
    assert resolved["checkpoint"] == {**resolved["checkpoint"], "monitor": "val/loss",
                                      "mode": "min"}
    assert resolved["trainer"]["default_root_dir"] == (
        "runs/pretrain/gpu" if overlays else "runs/pretrain/default")


def test_the_default_encoder_fits_the_vit_mae_fine_tuning_config() -> None:
    """configs/mtl/vit_mae.yaml fine-tunes the backbone make pretrain trains, at a size whose
    patch grid the position-embedding interpolation reaches."""
    mtl = CONFIG.parents[1] / "mtl"
    pretrain = yaml.safe_load(CONFIG.read_text())
    vit_mae = yaml.safe_load((mtl / "vit_mae.yaml").read_text())
    base = yaml.safe_load((mtl / "base.yaml").read_text())
    assert vit_mae["model"]["backbone"] == pretrain["model"]["backbone"]
    assert vit_mae["model"]["layer_decay"] < 1.0
    size = vit_mae.get("data", {}).get("img_size", base["data"]["img_size"])
    assert size % 16 == 0 and pretrain["data"]["img_size"] % 16 == 0
