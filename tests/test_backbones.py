"""Backbone registry, local checkpoint loading (MAE / timm / Lightning) and layer-wise LR decay."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
import torch.nn.functional as F

from abaw.errors import AbawError, ConfigError
from abaw.models import MultiTaskNet, create_backbone, list_backbones, load_backbone_checkpoint
from abaw.models.backbones import FAMILIES, param_groups_layer_decay

torch.set_num_threads(1)

REQUIRED = {"vit_tiny_mae", "vit_small_mae", "efficientnet_b0", "mobilevit_xxs",
            "cnn_transformer", "convnext_atto", "resnet18", "mobilenetv3_small_100"}


@pytest.mark.parametrize("name", list_backbones(include_test=True))
def test_every_registered_backbone_builds_and_pools(name: str) -> None:
    backbone = create_backbone(name, img_size=64).eval()
    with torch.no_grad():
        features = backbone(torch.randn(2, 3, 64, 64))
    assert features.shape == (2, backbone.num_features)
    assert backbone.family in FAMILIES


def test_registry_contents_and_errors() -> None:
    assert REQUIRED <= set(list_backbones())
    assert "vit_test" not in list_backbones() and "vit_test" in list_backbones(True)
    with pytest.raises(ConfigError):
        create_backbone("vit_giant_unknown")
    with pytest.raises(ConfigError):
        create_backbone("timm:no_such_model")


def test_timm_passthrough_and_family_guess() -> None:
    vit = create_backbone("timm:test_vit", img_size=64)
    assert vit.family == "vit" and vit(torch.randn(2, 3, 64, 64)).shape == (2, vit.num_features)
    assert create_backbone("timm:test_resnet").family == "cnn"


def test_vit_is_built_at_the_requested_size() -> None:
    vit = create_backbone("vit_tiny_mae", img_size=112)
    assert vit.model.pos_embed.shape == (1, 1 + 7 * 7, 192)
    assert vit.num_features == 192 and vit.model.global_pool == "avg"


# --- checkpoints ----------------------------------------------------------------------------


def _mae_pretraining_checkpoint(path: Path, img_size: int = 96) -> dict[str, torch.Tensor]:
    """A randomly initialised MAE encoder+decoder saved in MAE's own format and key names."""
    torch.manual_seed(0)
    # MAE's encoder is a timm ViT with token-pooling final `norm` and no head.
    encoder = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                                img_size=img_size, embed_dim=32, depth=2, num_heads=2,
                                mlp_ratio=2.0, global_pool="token")
    state = dict(encoder.state_dict())
    tokens = (img_size // 16) ** 2
    state.update({
        "mask_token": torch.randn(1, 1, 16),
        "decoder_embed.weight": torch.randn(16, 32),
        "decoder_embed.bias": torch.randn(16),
        "decoder_pos_embed": torch.randn(1, 1 + tokens, 16),
        "decoder_blocks.0.norm1.weight": torch.randn(16),
        "decoder_blocks.0.attn.qkv.weight": torch.randn(48, 16),
        "decoder_norm.weight": torch.randn(16),
        "decoder_pred.weight": torch.randn(16 * 16 * 3, 16),
        "decoder_pred.bias": torch.randn(16 * 16 * 3),
    })
    torch.save({"model": state, "epoch": 799}, path)
    return state


def test_mae_checkpoint_exact_keys_and_pos_embed_interpolation(tmp_path: Path) -> None:
    path = tmp_path / "mae_pretrain.pth"
    source = _mae_pretraining_checkpoint(path, img_size=96)  # 6x6 patch grid
    backbone = create_backbone("vit_test", img_size=64)  # 4x4 patch grid, average pooling
    report = load_backbone_checkpoint(backbone, path)
    assert report.format == "mae"
    assert report.missing == ("fc_norm.bias", "fc_norm.weight")
    assert report.unexpected == ("norm.bias", "norm.weight")
    assert set(report.dropped) == {k for k in source if k.startswith("decoder") or
                                   k == "mask_token"}
    assert report.interpolated == ("pos_embed",)
    loaded = backbone.model.state_dict()
    for key in ("cls_token", "patch_embed.proj.weight", "blocks.1.mlp.fc2.weight"):
        assert torch.equal(loaded[key], source[key]), key
    pos = loaded["pos_embed"]
    assert torch.equal(pos[:, :1], source["pos_embed"][:, :1])  # class token kept
    grid = source["pos_embed"][:, 1:].reshape(1, 6, 6, 32).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(4, 4), mode="bicubic", align_corners=False)
    torch.testing.assert_close(pos[:, 1:], grid.permute(0, 2, 3, 1).reshape(1, 16, 32))


def test_mae_checkpoint_with_foreign_or_absent_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "mae.pth"
    state = _mae_pretraining_checkpoint(path, img_size=64)
    extra = dict(state, **{"blocks.0.attn.extra": torch.zeros(1)})
    torch.save({"model": extra}, path)
    with pytest.raises(AbawError, match=r"blocks\.0\.attn\.extra"):
        load_backbone_checkpoint(create_backbone("vit_test", img_size=64), path)
    del state["blocks.1.mlp.fc1.bias"]
    torch.save({"model": state}, path)
    with pytest.raises(AbawError, match=r"blocks\.1\.mlp\.fc1\.bias"):
        load_backbone_checkpoint(create_backbone("vit_test", img_size=64), path)


def test_timm_state_dict_round_trip(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = create_backbone("vit_test", img_size=64).eval()
    state = dict(source.model.state_dict())
    state["head.weight"], state["head.bias"] = torch.zeros(5, 32), torch.zeros(5)  # classifier
    torch.save(state, tmp_path / "vit.pth")
    torch.manual_seed(2)
    target = create_backbone("vit_test", img_size=64,
                             checkpoint=tmp_path / "vit.pth").eval()
    report = target.load_report
    assert (report.format, report.missing, report.unexpected) == ("timm", (), ())
    assert report.dropped == ("head.bias", "head.weight") and report.interpolated == ()
    for key, value in source.model.state_dict().items():
        assert torch.equal(target.model.state_dict()[key], value), key
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(target(x), source(x))


def test_lightning_checkpoint_prefix_is_stripped(tmp_path: Path) -> None:
    torch.manual_seed(3)
    net = MultiTaskNet(create_backbone("efficientnet_test", img_size=64))
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    state["weighting.log_vars.va"] = torch.zeros(())
    torch.save({"state_dict": state, "pytorch-lightning_version": "2.6.6", "epoch": 3},
               tmp_path / "last.ckpt")
    fresh = create_backbone("efficientnet_test", img_size=64)
    report = load_backbone_checkpoint(fresh, tmp_path / "last.ckpt")
    assert (report.format, report.prefix) == ("lightning", "model.backbone.model.")
    assert report.loaded == len(fresh.model.state_dict())
    for key, value in net.backbone.model.state_dict().items():
        assert torch.equal(fresh.model.state_dict()[key], value), key


def test_state_dict_format_with_module_prefix_and_hybrid(tmp_path: Path) -> None:
    source = create_backbone("cnn_transformer_test", img_size=64)
    state = {f"module.{k}": v for k, v in source.model.state_dict().items()}
    torch.save({"state_dict": state}, tmp_path / "ddp.pth")
    # another input size: the hybrid's token-grid position embedding is resized
    target = create_backbone("cnn_transformer_test", img_size=128)
    report = load_backbone_checkpoint(target, tmp_path / "ddp.pth")
    assert (report.format, report.prefix, report.interpolated) == ("state_dict", "module.",
                                                                   ("pos_embed",))
    assert target.model.pos_embed.shape == (1, 64, 32)
    assert torch.equal(target.model.proj.weight, source.model.proj.weight)


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    backbone = create_backbone("vit_test", img_size=64)
    with pytest.raises(AbawError, match="not found"):
        load_backbone_checkpoint(backbone, tmp_path / "absent.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(AbawError, match="junk.pth"):
        load_backbone_checkpoint(backbone, tmp_path / "junk.pth")
    wide = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0,
                             img_size=64, embed_dim=48, depth=2, num_heads=2, global_pool="avg")
    torch.save(wide.state_dict(), tmp_path / "wide.pth")
    with pytest.raises(AbawError, match="wrong shape"):
        load_backbone_checkpoint(backbone, tmp_path / "wide.pth")
    torch.save(create_backbone("efficientnet_test").model.state_dict(), tmp_path / "cnn.pth")
    with pytest.raises(AbawError, match="no key matches"):
        load_backbone_checkpoint(backbone, tmp_path / "cnn.pth")
    with pytest.raises(ConfigError):
        load_backbone_checkpoint(backbone, tmp_path / "cnn.pth", fmt="onnx")


# --- layer-wise LR decay --------------------------------------------------------------------


def test_layer_decay_on_vit_follows_mae() -> None:
    net = MultiTaskNet(create_backbone("vit_test", img_size=64))  # depth 2: ids 0..3
    groups = param_groups_layer_decay(net, base_lr=1.0, weight_decay=0.05, layer_decay=0.5)
    lr_of = {}
    decay_of = {}
    names = {id(p): n for n, p in net.named_parameters()}
    for group in groups:
        for p in group["params"]:
            lr_of[names[id(p)]] = group["lr"]
            decay_of[names[id(p)]] = group["weight_decay"]
    assert sorted(lr_of) == sorted(names.values())  # every parameter exactly once
    assert sum(len(g["params"]) for g in groups) == len(names)
    assert lr_of["backbone.model.patch_embed.proj.weight"] == 0.125
    assert lr_of["backbone.model.cls_token"] == 0.125
    assert lr_of["backbone.model.blocks.0.attn.qkv.weight"] == 0.25
    assert lr_of["backbone.model.blocks.1.mlp.fc1.weight"] == 0.5
    assert lr_of["backbone.model.fc_norm.weight"] == 1.0
    assert lr_of["heads.expr.fc.weight"] == 1.0
    assert decay_of["backbone.model.blocks.0.attn.qkv.weight"] == 0.05
    assert decay_of["heads.expr.fc.weight"] == 0.05
    for no_decay in ("backbone.model.pos_embed", "backbone.model.cls_token",
                     "backbone.model.blocks.0.norm1.weight", "heads.expr.fc.bias"):
        assert decay_of[no_decay] == 0.0, no_decay


def test_layer_decay_on_cnn_is_monotonic_with_heads_at_base_lr() -> None:
    net = MultiTaskNet(create_backbone("efficientnet_test", img_size=64), tasks=["au"])
    groups = param_groups_layer_decay(net, base_lr=0.1, weight_decay=0.0, layer_decay=0.8)
    lrs = [g["lr"] for g in groups]
    assert lrs == sorted(lrs) and lrs[-1] == pytest.approx(0.1)
    head_params = {id(p) for p in net.heads.parameters()}
    top = [g for g in groups if g["lr"] == lrs[-1]]
    assert head_params <= {id(p) for g in top for p in g["params"]}
    stem = net.backbone.model.conv_stem.weight
    assert [g["lr"] for g in groups if any(p is stem for p in g["params"])] == [
        pytest.approx(0.1 * 0.8 ** 6)]  # 6 timm stages below the heads
    with pytest.raises(ConfigError):
        param_groups_layer_decay(net, 0.1, 0.0, layer_decay=1.5)


def test_cnn_transformer_refuses_drop_path() -> None:
    with pytest.raises(ConfigError, match="stochastic depth"):
        create_backbone("cnn_transformer_test", drop_path_rate=0.1)
