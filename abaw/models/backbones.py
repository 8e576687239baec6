"""Shared backbones: one registry over timm, local checkpoint loading, layer-wise LR decay.

Conventions:

- Every backbone is created from scratch (``pretrained=False``, ``num_classes=0``): nothing is
  ever downloaded. Pretrained weights come only from a local file through
  :func:`load_backbone_checkpoint` (or ``create_backbone(..., checkpoint=path)``).
- A :class:`Backbone` maps an image batch ``(B, 3, H, W)`` to pooled features
  ``(B, num_features)``; the wrapped network is ``backbone.model`` (so a Lightning module
  holding ``model.backbone`` stores its weights as ``model.backbone.model.*``).
- ``family`` is one of :data:`FAMILIES`: ``"vit"``, ``"efficientnet"``, ``"hybrid"`` (CNN and
  transformer together), ``"cnn"``.
- Names: the registered ones (:func:`list_backbones`; ``*_test`` entries are tiny variants
  for tests) plus ``"timm:<any timm model name>"`` as a passthrough.
- Layer ids for layer-wise LR decay follow MAE's ``util/lr_decay.py`` for ViTs (embeddings
  0, block ``i`` → ``i + 1``, final norm and heads ``L + 1``) and timm's ``group_matcher``
  stages for every other network (heads one above the last stage).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import timm
import torch
from timm.layers import resample_abs_pos_embed
from timm.models import group_parameters
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from abaw.errors import AbawError, ConfigError

log = logging.getLogger(__name__)

FAMILIES: tuple[str, ...] = ("vit", "efficientnet", "hybrid", "cnn")
CHECKPOINT_FORMATS: tuple[str, ...] = ("auto", "mae", "timm", "lightning", "state_dict")
TIMM_PREFIX = "timm:"

# --------------------------------------------------------------------------------------------
# registry


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone: a builder ``(img_size, drop_path_rate, **kw) -> nn.Module``."""

    name: str
    family: str
    builder: Callable[..., nn.Module]
    description: str
    test_only: bool = False


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str, family: str, description: str = "", *, test_only: bool = False
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering a builder under ``name`` (timm's ``@register_model`` habit)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")

    def wrap(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} registered twice")
        _REGISTRY[name] = BackboneSpec(name, family, builder, description or builder.__doc__ or "",
                                       test_only)
        return builder

    return wrap


def list_backbones(include_test: bool = False) -> list[str]:
    """Registered names (without the ``timm:`` passthrough), tiny test variants on request."""
    return sorted(n for n, s in _REGISTRY.items() if include_test or not s.test_only)


def backbone_spec(name: str) -> BackboneSpec:
    if name not in _REGISTRY:
        raise ConfigError(
            f"unknown backbone {name!r}; registered: {', '.join(list_backbones())} "
            f"(or '{TIMM_PREFIX}<timm model name>')"
        )
    return _REGISTRY[name]


def _timm(name: str, drop_path_rate: float = 0.0, **kwargs: Any) -> nn.Module:
    """A timm model without classifier and without pretrained weights."""
    if drop_path_rate:
        kwargs["drop_path_rate"] = drop_path_rate
    return timm.create_model(name, pretrained=False, num_classes=0, **kwargs)


def _mae_vit(name: str, img_size: int, drop_path_rate: float, **kwargs: Any) -> nn.Module:
    # MAE fine-tuning pools by averaging the patch tokens followed by a fresh LayerNorm
    # (timm: global_pool="avg" → fc_norm, final `norm` becomes Identity).
    kwargs.setdefault("global_pool", "avg")
    return _timm(name, drop_path_rate, img_size=img_size, **kwargs)


@register_backbone("vit_tiny_mae", "vit", "ViT-Ti/16 (5.5 M), MAE-style average pooling")
def _vit_tiny_mae(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _mae_vit("vit_tiny_patch16_224", img_size, drop_path_rate, **kw)


@register_backbone("vit_small_mae", "vit", "ViT-S/16 (21.7 M), MAE-style average pooling")
def _vit_small_mae(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _mae_vit("vit_small_patch16_224", img_size, drop_path_rate, **kw)


@register_backbone("vit_base_mae", "vit", "ViT-B/16 (85.8 M): the official MAE release size")
def _vit_base_mae(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _mae_vit("vit_base_patch16_224", img_size, drop_path_rate, **kw)


@register_backbone("vit_test", "vit", "2-block, 32-wide ViT/16 for tests", test_only=True)
def _vit_test(img_size: int = 64, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    kw = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mlp_ratio": 2.0, **kw}
    return _mae_vit("vit_tiny_patch16_224", img_size, drop_path_rate, **kw)


@register_backbone("efficientnet_b0", "efficientnet", "EfficientNet-B0 (4th ABAW LSD winner)")
def _efficientnet_b0(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("efficientnet_b0", drop_path_rate, **kw)


@register_backbone("efficientnet_test", "efficientnet", "timm's test_efficientnet",
                   test_only=True)
def _efficientnet_test(img_size: int = 64, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("test_efficientnet", drop_path_rate, **kw)


@register_backbone("mobilevit_xxs", "hybrid", "MobileViT-XXS: convolutions + transformer blocks")
def _mobilevit_xxs(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("mobilevit_xxs", drop_path_rate, **kw)


@register_backbone("convnext_atto", "cnn", "ConvNeXt-Atto (3.4 M)")
def _convnext_atto(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("convnext_atto", drop_path_rate, **kw)


@register_backbone("resnet18", "cnn", "ResNet-18")
def _resnet18(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("resnet18", drop_path_rate, **kw)


@register_backbone("mobilenetv3_small_100", "cnn", "MobileNetV3-Small 1.0 (fastest on CPU)")
def _mobilenetv3_small(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    return _timm("mobilenetv3_small_100", drop_path_rate, **kw)


# --------------------------------------------------------------------------------------------
# the in-house CNN-transformer hybrid


class CNNTransformer(nn.Module):
    """A timm CNN cut at its stride-16 stage, feeding a transformer encoder over the tokens.

    The feature map ``(B, C, H/16, W/16)`` is projected to ``embed_dim`` by a 1x1 conv, each
    cell becomes a token with a learned position embedding (bicubically resized when the
    input size differs from ``img_size``), a pre-norm ``nn.TransformerEncoder`` mixes them
    globally, and the output is the mean token after a final LayerNorm.
    """

    def __init__(
        self,
        cnn: str = "resnet18",
        *,
        img_size: int = 112,
        embed_dim: int = 256,
        depth: int = 2,
        num_heads: int = 4,
        mlp_ratio: float = 2.0,
        dropout: float = 0.0,
        feature_stride: int = 16,
    ) -> None:
        super().__init__()
        probe = timm.create_model(cnn, pretrained=False, features_only=True)
        reductions = list(probe.feature_info.reduction())
        if feature_stride not in reductions:
            raise ConfigError(f"{cnn} has no stage at stride {feature_stride} (has {reductions})")
        index = reductions.index(feature_stride)
        # timm truncates a features_only network after its last requested stage, so asking
        # for the stride-16 stage alone drops the deeper (unused) stages' weights.
        self.cnn = timm.create_model(cnn, pretrained=False, features_only=True,
                                     out_indices=(index,))
        channels = self.cnn.feature_info.channels()[-1]
        self.proj = nn.Conv2d(channels, embed_dim, kernel_size=1)
        side = max(1, img_size // feature_stride)
        self.grid_size = (side, side)
        self.num_prefix_tokens = 0
        self.pos_embed = nn.Parameter(torch.zeros(1, side * side, embed_dim))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        layer = nn.TransformerEncoderLayer(
            embed_dim, num_heads, dim_feedforward=int(embed_dim * mlp_ratio), dropout=dropout,
            activation="gelu", batch_first=True, norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(embed_dim)
        self.num_features = embed_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fmap = self.proj(self.cnn(x)[-1])
        b, d, h, w = fmap.shape
        tokens = fmap.flatten(2).transpose(1, 2)
        pos = self.pos_embed
        if (h, w) != self.grid_size:
            pos = resample_abs_pos_embed(pos, [h, w], list(self.grid_size), num_prefix_tokens=0,
                                         interpolation="bicubic", antialias=False)
        tokens = self.encoder(tokens + pos)
        return self.norm(tokens).mean(dim=1)

    def group_matcher(self, coarse: bool = False) -> dict[str, Any]:
        # timm's matcher format: the CNN stem is layer 0, encoder layer i is i + 1; the final
        # norm matches nothing, which timm puts in a last group of its own.
        return {"stem": r"^cnn|^proj|^pos_embed", "blocks": r"^encoder\.layers\.(\d+)"}

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}


def _no_drop_path(name: str, drop_path_rate: float) -> None:
    # Refuse rather than silently ignore a setting the network cannot honour.
    if drop_path_rate:
        raise ConfigError(f"{name} has no stochastic depth (drop_path_rate must be 0); "
                          "use its dropout option instead")


@register_backbone("cnn_transformer", "hybrid",
                   "ResNet-18 to stride 16 + 2-layer transformer encoder (256 wide)")
def _cnn_transformer(img_size: int = 112, drop_path_rate: float = 0.0, **kw: Any) -> nn.Module:
    _no_drop_path("cnn_transformer", drop_path_rate)
    return CNNTransformer(img_size=img_size, **{"cnn": "resnet18", **kw})


@register_backbone("cnn_transformer_test", "hybrid", "tiny CNN-transformer for tests",
                   test_only=True)
def _cnn_transformer_test(img_size: int = 64, drop_path_rate: float = 0.0,
                          **kw: Any) -> nn.Module:
    _no_drop_path("cnn_transformer_test", drop_path_rate)
    kw = {"cnn": "test_resnet", "embed_dim": 32, "depth": 1, "num_heads": 2, **kw}
    return CNNTransformer(img_size=img_size, **kw)


# --------------------------------------------------------------------------------------------
# the Backbone wrapper and factory


def _guess_family(model: nn.Module) -> str:
    """Family of a ``timm:`` passthrough model, from its module classes."""
    if isinstance(model, VisionTransformer):
        return "vit"
    names = {type(m).__name__ for m in model.modules()}
    if "EfficientNet" in names:
        return "efficientnet"
    if any("Attention" in n or "Transformer" in n for n in names):
        return "hybrid"
    return "cnn"


class Backbone(nn.Module):
    """A feature extractor: ``(B, 3, H, W) -> (B, num_features)`` pooled features."""

    def __init__(self, model: nn.Module, *, name: str, family: str, img_size: int) -> None:
        super().__init__()
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self.model = model
        self.name = name
        self.family = family
        self.img_size = img_size
        # timm's num_features is the width before a pre-logits head; networks with such a
        # head (MobileNetV3's 1024-wide conv_head) output head_hidden_size when classifier-less.
        self.num_features = int(getattr(model, "head_hidden_size", None) or model.num_features)
        self.load_report: LoadReport | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def no_weight_decay(self) -> set[str]:
        """Parameter names (relative to this module) excluded from weight decay by name."""
        names = getattr(self.model, "no_weight_decay", lambda: set())()
        return {f"model.{n}" for n in names}

    def layer_groups(self) -> tuple[dict[str, int], int]:
        """``(layer id per parameter name, head layer id)`` for layer-wise LR decay.

        Names are relative to this module (``model.blocks.0.attn.qkv.weight``). Parameters
        outside the backbone (heads) belong to the returned head id, the top layer.
        """
        if isinstance(self.model, VisionTransformer):
            return self._vit_layer_ids()
        matcher = getattr(self.model, "group_matcher", None)
        if matcher is None:  # a network timm cannot group: one layer, heads above it
            return {f"model.{n}": 0 for n, _ in self.model.named_parameters()}, 1
        groups = group_parameters(self.model, matcher(coarse=False))
        ids = {f"model.{n}": int(g) for g, names in groups.items() for n in names}
        return ids, max(ids.values(), default=0) + 1

    def _vit_layer_ids(self) -> tuple[dict[str, int], int]:
        # MAE's get_layer_id_for_vit: embeddings 0, blocks.i -> i + 1, the rest (final norm,
        # and the heads outside the backbone) L + 1.
        depth = len(self.model.blocks)
        ids = {}
        for name, _ in self.model.named_parameters():
            block = re.match(r"blocks\.(\d+)\.", name)
            if block:
                ids[f"model.{name}"] = int(block.group(1)) + 1
            elif name.split(".")[0] in _VIT_EMBEDDINGS:
                ids[f"model.{name}"] = 0
            else:
                ids[f"model.{name}"] = depth + 1
        return ids, depth + 1


_VIT_EMBEDDINGS = frozenset({"cls_token", "reg_token", "dist_token", "pos_embed", "patch_embed"})


def create_backbone(
    name: str,
    *,
    img_size: int = 112,
    checkpoint: str | Path | None = None,
    checkpoint_format: str = "auto",
    drop_path_rate: float = 0.0,
    **timm_kwargs: Any,
) -> Backbone:
    """Build a registered backbone (or ``timm:<name>``), optionally from a local checkpoint.

    Args:
        name: a name from :func:`list_backbones` (``include_test=True`` for tiny variants) or
            ``"timm:<timm model name>"``.
        img_size: input side in pixels (sets the ViT patch grid / hybrid token grid; CNNs
            accept any size).
        checkpoint: local weights file (see :func:`load_backbone_checkpoint`); ``None`` keeps
            the random initialisation.
        checkpoint_format: one of :data:`CHECKPOINT_FORMATS`.
        drop_path_rate: stochastic depth rate (where the network supports it).
        **timm_kwargs: passed to the builder / ``timm.create_model``.
    """
    if name.startswith(TIMM_PREFIX):
        timm_name = name[len(TIMM_PREFIX):]
        if not timm.is_model(timm_name):
            raise ConfigError(f"timm has no model named {timm_name!r}")
        try:
            model = _timm(timm_name, drop_path_rate, img_size=img_size, **timm_kwargs)
        except TypeError:  # a CNN that takes no img_size
            model = _timm(timm_name, drop_path_rate, **timm_kwargs)
        family = _guess_family(model)
    else:
        spec = backbone_spec(name)
        model = spec.builder(img_size=img_size, drop_path_rate=drop_path_rate, **timm_kwargs)
        family = spec.family
    backbone = Backbone(model, name=name, family=family, img_size=img_size)
    if checkpoint is not None:
        backbone.load_report = load_backbone_checkpoint(backbone, checkpoint, checkpoint_format)
    return backbone


def param_groups_layer_decay(
    module: nn.Module,
    base_lr: float,
    weight_decay: float,
    layer_decay: float = 1.0,
    no_weight_decay: Iterable[str] = (),
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise LR decay (MAE's ``util/lr_decay.py`` idea).

    ``module`` is a :class:`Backbone` or any module containing exactly one (e.g. a
    :class:`~abaw.models.multitask.MultiTaskNet`). A parameter at layer id ``i`` gets
    ``lr = base_lr * layer_decay ** (head_id - i)``: for a ViT with ``L`` blocks, block ``i``
    (0-based) gets ``layer_decay ** (L - i)``, the embeddings ``layer_decay ** (L + 1)``, the
    final norm and everything outside the backbone (heads, task weighting) ``base_lr``.
    Biases, norm weights (every tensor with ``ndim <= 1``), ``pos_embed``/``cls_token`` and
    the names in ``no_weight_decay`` get no weight decay.

    Each group carries ``params``, ``lr``, ``lr_scale``, ``weight_decay`` and a ``name``
    (``layer_<id>_decay`` / ``layer_<id>_no_decay``) for logging. Frozen parameters are left
    out. Groups are ordered by layer id.
    """
    if not 0.0 < layer_decay <= 1.0:
        raise ConfigError(f"layer_decay must be in (0, 1], got {layer_decay}")
    if isinstance(module, Backbone):
        found = [("", module)]
    else:
        found = [(n, m) for n, m in module.named_modules() if isinstance(m, Backbone)]
    if len(found) != 1:
        raise ConfigError(f"expected exactly one Backbone inside the module, found {len(found)}")
    prefix, backbone = found[0]
    prefix = f"{prefix}." if prefix else ""
    layer_ids, head_id = backbone.layer_groups()
    skip_decay = {prefix + n for n in backbone.no_weight_decay()} | set(no_weight_decay)

    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in module.named_parameters():
        if not param.requires_grad:
            continue
        rel = name[len(prefix):] if name.startswith(prefix) else None
        layer = layer_ids.get(rel, head_id) if rel is not None else head_id
        decay = not (param.ndim <= 1 or name in skip_decay)
        scale = layer_decay ** (head_id - layer)
        key = (layer, decay)
        if key not in groups:
            groups[key] = {
                "name": f"layer_{layer}_{'decay' if decay else 'no_decay'}",
                "params": [],
                "lr": base_lr * scale,
                "lr_scale": scale,
                "weight_decay": weight_decay if decay else 0.0,
            }
        groups[key]["params"].append(param)
    return [groups[k] for k in sorted(groups)]


# --------------------------------------------------------------------------------------------
# checkpoints


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_backbone_checkpoint` did.

    ``missing``: backbone keys the checkpoint did not provide (kept at their initialisation);
    ``unexpected``: checkpoint keys the backbone has no place for (ignored); ``dropped``: keys
    removed on purpose before loading (MAE decoder and mask token, classifier heads);
    ``interpolated``: keys resized to the backbone (position embeddings); ``prefix``: the
    prefix stripped from the checkpoint's keys; ``loaded``: the number of tensors copied.
    """

    missing: tuple[str, ...]
    unexpected: tuple[str, ...]
    format: str = ""
    prefix: str = ""
    dropped: tuple[str, ...] = ()
    interpolated: tuple[str, ...] = ()
    loaded: int = 0


#: MAE pre-training parts that a fine-tuned encoder never uses.
MAE_DROP_PATTERN = re.compile(r"^(decoder_|decoder\.|mask_token$)")
#: The pooling norms of a timm ViT: token pooling uses ``norm``, MAE's average pooling a fresh
#: ``fc_norm`` (MAE's ``main_finetune.py`` asserts these keys missing after loading).
_NORM_KEYS = frozenset({"norm.weight", "norm.bias"})
_FC_NORM_KEYS = frozenset({"fc_norm.weight", "fc_norm.bias"})


def _torch_load(path: Path) -> Any:
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "Weights only load failed" not in str(exc):
                raise
            # Lightning checkpoints may pickle hyper-parameter objects that the safe loader
            # refuses; the user named this local file, so fall back to the full unpickler.
            log.warning("%s holds non-tensor objects; loading it with weights_only=False", path)
            return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # corrupt, truncated or not a torch file at all
        raise AbawError(f"{path}: not a readable PyTorch checkpoint ({exc})") from exc


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _detect_format(obj: Any, path: Path) -> str:
    if isinstance(obj, dict):
        if "pytorch-lightning_version" in obj and "state_dict" in obj:
            return "lightning"
        if "model" in obj and _is_state_dict(obj["model"]):
            return "mae"
        if "state_dict" in obj and _is_state_dict(obj["state_dict"]):
            return "state_dict"
        if _is_state_dict(obj):
            return "timm"
    raise AbawError(
        f"{path}: unrecognised checkpoint layout; expected {{'model': state_dict}} (MAE), a "
        "plain state dict (timm), or {'state_dict': ...} (Lightning)"
    )


def _extract(obj: Any, fmt: str, path: Path) -> dict[str, torch.Tensor]:
    if fmt == "timm":
        sd = obj
    elif fmt == "mae":
        sd = obj.get("model") if isinstance(obj, dict) else None
    else:  # lightning, state_dict
        sd = obj.get("state_dict") if isinstance(obj, dict) else None
    if not _is_state_dict(sd):
        raise AbawError(f"{path}: no state dict where format {fmt!r} keeps it")
    return dict(sd)


def _detect_prefix(keys: Iterable[str], targets: set[str]) -> str:
    """The key prefix whose removal makes most checkpoint keys match the backbone's keys."""
    votes: Counter[str] = Counter()
    for key in keys:
        for i in [0] + [m.end() for m in re.finditer(r"\.", key)]:
            if key[i:] in targets:
                votes[key[:i]] += 1
                break
    if not votes:
        return ""
    best = max(votes.values())
    return min((p for p, v in votes.items() if v == best), key=len)


def _maybe_resize_pos_embed(
    sd: dict[str, torch.Tensor], model: nn.Module, path: Path
) -> tuple[str, ...]:
    key = "pos_embed"
    target = getattr(model, key, None)
    if key not in sd or not isinstance(target, torch.Tensor) or sd[key].shape == target.shape:
        return ()
    src = sd[key]
    if src.ndim != 3 or src.shape[-1] != target.shape[-1]:
        return ()  # another width: the shape check reports it with every other mismatch
    if getattr(model, "no_embed_class", False):
        prefix = 0
    else:
        prefix = int(getattr(model, "num_prefix_tokens", 0))
    patch_embed = getattr(model, "patch_embed", None)
    new_grid = tuple(patch_embed.grid_size) if patch_embed is not None else model.grid_size
    side = round((src.shape[1] - prefix) ** 0.5)
    if side * side != src.shape[1] - prefix:
        raise AbawError(f"{path}: pos_embed of {src.shape[1]} tokens is not {prefix} prefix "
                        "token(s) plus a square grid")
    # timm's resampling; antialias off keeps a plain bicubic resize (MAE's interpolate_pos_embed)
    sd[key] = resample_abs_pos_embed(src, list(new_grid), [side, side], prefix,
                                     interpolation="bicubic", antialias=False)
    log.info("%s: pos_embed resized from %dx%d to %dx%d", path, side, side, *new_grid)
    return (key,)


def _expected_mismatch(model: nn.Module, sd_keys: set[str]) -> tuple[set[str], set[str]]:
    """The (missing, unexpected) keys a correct load may still leave, and nothing else.

    Only ViTs have them: an average-pooling backbone (``fc_norm``) loading a token-pooling or
    MAE pre-training encoder (``norm``) keeps its fresh ``fc_norm`` — exactly MAE's
    fine-tuning assertion — and the reverse for a token-pooling backbone.
    """
    own = set(model.state_dict())
    if _FC_NORM_KEYS <= own and _NORM_KEYS <= sd_keys and not _FC_NORM_KEYS & sd_keys:
        return set(_FC_NORM_KEYS), set(_NORM_KEYS)
    if _NORM_KEYS <= own and _FC_NORM_KEYS <= sd_keys and not _NORM_KEYS & sd_keys:
        return set(_NORM_KEYS), set(_FC_NORM_KEYS)
    return set(), set()


def load_backbone_checkpoint(
    backbone: Backbone,
    path: str | Path,
    fmt: str = "auto",
    *,
    prefix: str | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load local weights into ``backbone.model``; nothing is downloaded.

    Formats (``fmt``): ``"mae"`` — the official MAE ``{"model": state_dict}`` with timm key
    names (``patch_embed.proj.*``, ``cls_token``, ``pos_embed``, ``blocks.N.*``, ``norm.*``)
    plus ``decoder_*`` / ``mask_token`` keys, which are dropped; ``"timm"`` — a plain state
    dict; ``"lightning"`` — a Lightning checkpoint (``state_dict`` plus
    ``pytorch-lightning_version``); ``"state_dict"`` — ``{"state_dict": ...}``; ``"auto"``
    detects one of these.

    The key prefix to strip (``"module."``, ``"model.backbone.model."``, ...) is detected as
    the one that makes most keys match, unless ``prefix`` is given; in Lightning / state_dict
    checkpoints, keys outside the prefix (heads, losses) are ignored. Classifier weights are
    dropped. A ``pos_embed`` of another grid is resized bicubically (class token kept).

    Key sets are asserted exactly: after the drops, the only keys allowed to be missing or
    unexpected are the ViT pooling-norm swap of :func:`_expected_mismatch`
    (missing ``{fc_norm.weight, fc_norm.bias}`` with unexpected ``{norm.weight, norm.bias}``
    for an MAE pre-training encoder in an average-pooling ViT). Anything else raises
    :class:`AbawError` listing the keys — always for MAE checkpoints, for other formats unless
    ``strict=False`` (then it is only reported). Tensors of the wrong shape always raise.
    """
    path = Path(path)
    if fmt not in CHECKPOINT_FORMATS:
        raise ConfigError(f"checkpoint format must be one of {CHECKPOINT_FORMATS}, got {fmt!r}")
    if not path.is_file():
        raise AbawError(f"{path}: checkpoint file not found")
    obj = _torch_load(path)
    fmt = _detect_format(obj, path) if fmt == "auto" else fmt
    sd = _extract(obj, fmt, path)
    model = backbone.model
    own = model.state_dict()

    if prefix is None:
        prefix = _detect_prefix(sd, set(own))
    if prefix:
        sd = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if not sd:
            raise AbawError(f"{path}: no key starts with prefix {prefix!r}")

    dropped = []
    if fmt == "mae":
        dropped += [k for k in sd if MAE_DROP_PATTERN.match(k)]
    classifier = getattr(model, "pretrained_cfg", {}).get("classifier")
    if classifier:
        dropped += [k for k in sd if k.startswith(f"{classifier}.") and k not in own]
    for k in dropped:
        del sd[k]

    if not set(sd) & set(own):
        raise AbawError(f"{path}: no key matches backbone {backbone.name!r} "
                        f"(checkpoint keys start with {sorted(sd)[:3]})")
    interpolated = _maybe_resize_pos_embed(sd, model, path)
    wrong_shape = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}"
                   for k, v in sd.items() if k in own and v.shape != own[k].shape]
    if wrong_shape:
        raise AbawError(f"{path}: tensors of the wrong shape for {backbone.name!r}: "
                        + "; ".join(wrong_shape))

    allowed_missing, allowed_unexpected = _expected_mismatch(model, set(sd))
    result = model.load_state_dict(sd, strict=False)
    missing, unexpected = set(result.missing_keys), set(result.unexpected_keys)
    report = LoadReport(
        missing=tuple(sorted(missing)), unexpected=tuple(sorted(unexpected)), format=fmt,
        prefix=prefix, dropped=tuple(sorted(dropped)), interpolated=interpolated,
        loaded=len(set(sd) & set(own)),
    )
    if missing != allowed_missing or unexpected != allowed_unexpected:
        message = (
            f"{path}: checkpoint ({fmt}) does not fit backbone {backbone.name!r}: "
            f"missing {sorted(missing)} (allowed {sorted(allowed_missing)}), "
            f"unexpected {sorted(unexpected)} (allowed {sorted(allowed_unexpected)})"
        )
        if fmt == "mae" or strict:
            raise AbawError(message)
        log.warning(message)
    log.info("%s: loaded %d tensors into %s (%s format, prefix %r)", path, report.loaded,
             backbone.name, fmt, prefix)
    return report
