"""Masked-autoencoder (MAE) pre-training network whose encoder is the MTL backbone's ViT.

He et al., "Masked Autoencoders Are Scalable Vision Learners" (CVPR 2022): the image is cut
into patches, a random 75 % of them is dropped per image, the encoder (a plain ViT) sees only
the visible ones, and a light transformer decoder reconstructs the pixels of the dropped
ones from the encoded visible tokens plus a shared learned mask token. The loss is the mean
squared error on the masked patches only, against the patch's pixels normalised by that
patch's own mean and standard deviation ("normalised pixels", the paper's better target).

Conventions:

- the encoder is built by the backbone registry (:func:`abaw.models.create_backbone`) with
  token pooling, so it *is* the timm ViT the MTL backbone uses, with MAE pre-training's final
  ``norm`` (the fine-tuning backbone swaps it for a fresh ``fc_norm``, which the checkpoint
  loader allows exactly). Encoder position embeddings are fixed 2-D sine-cosine during
  pre-training, as in the paper (they stay learnable parameters of the fine-tuned backbone);
- :meth:`MaskedAutoencoder.mae_state_dict` is the official MAE layout: the encoder's timm
  keys (``cls_token``, ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.*``, ``norm.*``)
  beside ``mask_token`` and ``decoder_*`` keys (:data:`abaw.models.backbones.MAE_DROP_PATTERN`
  drops those when fine-tuning); saved as ``{"model": state_dict}`` it loads with
  ``checkpoint_format: mae``;
- patches are flattened as ``(row, column, channel)`` within a patch, patches in raster
  order; a mask is ``(B, N)`` float with ``1`` = masked (hidden from the encoder), ``0`` =
  visible; ``ids_restore`` puts the shuffled token order back into raster order;
- the normalised target divides by ``sqrt(var + 1e-6)`` with the unbiased per-patch variance
  over all ``p * p * 3`` values, as the paper's released code does.
"""

from __future__ import annotations

import math

import torch
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn

from abaw.errors import ConfigError
from abaw.models.backbones import TIMM_PREFIX, Backbone, backbone_spec, create_backbone

__all__ = [
    "MaskedAutoencoder",
    "masked_patch_loss",
    "patchify",
    "random_masking",
    "sincos_pos_embed",
    "unpatchify",
]

#: added to the per-patch variance before the square root (normalised-pixel target)
NORM_EPS = 1e-6


def patchify(images: torch.Tensor, patch: int) -> torch.Tensor:
    """``(B, C, H, W)`` → ``(B, N, p * p * C)``: patches in raster order, each flattened as
    (row, column, channel)."""
    b, c, h, w = images.shape
    if h % patch or w % patch:
        raise ValueError(f"image side {h}x{w} is not a multiple of the patch size {patch}")
    gh, gw = h // patch, w // patch
    x = images.reshape(b, c, gh, patch, gw, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(b, gh * gw, patch * patch * c)


def unpatchify(patches: torch.Tensor, patch: int, channels: int = 3) -> torch.Tensor:
    """The inverse of :func:`patchify` for a square grid: ``(B, N, p * p * C)`` → ``(B, C, H, W)``."""
    b, n, _ = patches.shape
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} patches do not form a square grid")
    x = patches.reshape(b, side, side, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(b, channels, side * patch, side * patch)


def random_masking(
    tokens: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Keep a random ``1 - mask_ratio`` of each sample's tokens (a fresh draw per sample).

    Each sample's tokens are sorted by uniform noise and the first
    ``int(N * (1 - mask_ratio))`` kept, so exactly that many are visible in every sample.
    Returns ``(visible (B, K, D), mask (B, N) with 1 = masked, ids_restore (B, N))``;
    ``torch.gather(shuffled, 1, ids_restore)`` puts a shuffled sequence back in raster order.
    """
    b, n, d = tokens.shape
    keep = int(n * (1.0 - mask_ratio))
    noise = torch.rand(b, n, device=tokens.device, generator=generator)
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :keep]
    visible = torch.gather(tokens, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))
    mask = torch.ones(b, n, device=tokens.device)
    mask[:, :keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return visible, mask, ids_restore


def normalised_target(patches: torch.Tensor) -> torch.Tensor:
    """Each patch minus its mean, over ``sqrt(unbiased variance + 1e-6)``."""
    mean = patches.mean(dim=-1, keepdim=True)
    var = patches.var(dim=-1, keepdim=True)
    return (patches - mean) / (var + NORM_EPS) ** 0.5


def masked_patch_loss(prediction: torch.Tensor, patches: torch.Tensor, mask: torch.Tensor,
                      norm_pix: bool = True) -> torch.Tensor:
    """Mean squared error per patch, averaged over the masked patches only.

    ``prediction`` and ``patches`` are ``(B, N, p * p * C)``, ``mask`` ``(B, N)`` with 1 =
    masked; ``norm_pix`` compares against :func:`normalised_target` of the patches.
    """
    target = normalised_target(patches) if norm_pix else patches
    per_patch = (prediction - target).pow(2).mean(dim=-1)
    return (per_patch * mask).sum() / mask.sum().clamp_min(1.0)


def sincos_pos_embed(dim: int, grid: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding ``(1, [1 +] grid * grid, dim)``: half the
    channels encode the row, half the column, each as sines and cosines of geometrically
    spaced frequencies; the class token's row is zero."""
    if dim % 4:
        raise ValueError(f"the embedding width {dim} must be a multiple of 4")
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim / 4.0))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64),
                                torch.arange(grid, dtype=torch.float64), indexing="ij")

    def axis(positions: torch.Tensor) -> torch.Tensor:
        angles = positions.reshape(-1, 1) * omega.reshape(1, -1)
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    embed = torch.cat([axis(cols), axis(rows)], dim=1)
    if cls_token:
        embed = torch.cat([torch.zeros(1, dim, dtype=torch.float64), embed], dim=0)
    return embed.float().unsqueeze(0)


class MaskedAutoencoder(nn.Module):
    """MAE pre-training network: a registered ViT backbone as encoder, a light decoder.

    Args:
        backbone: a ViT name of the registry (``vit_tiny_mae``, ``vit_base_mae``,
            ``vit_test``, ...): the encoder, built exactly as the MTL backbone but with token
            pooling (final ``norm``).
        img_size: input side in pixels (a multiple of the patch size).
        mask_ratio: share of each image's patches hidden from the encoder.
        decoder_embed_dim, decoder_depth, decoder_num_heads: the decoder's width, blocks and
            attention heads (the paper's default is 512 wide, 8 blocks; 1 block still works).
        norm_pix_loss: reconstruct per-patch normalised pixels (the paper's better target).

    ``self.encoder`` is a :class:`~abaw.models.Backbone` (one backbone per module, which the
    optimiser's parameter grouping expects); its ViT is ``self.encoder.model``.
    """

    def __init__(
        self,
        backbone: str = "vit_tiny_mae",
        img_size: int = 64,
        mask_ratio: float = 0.75,
        decoder_embed_dim: int = 128,
        decoder_depth: int = 2,
        decoder_num_heads: int = 4,
        norm_pix_loss: bool = True,
    ) -> None:
        super().__init__()
        if not 0.0 < mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in (0, 1), got {mask_ratio}")
        family = None if backbone.startswith(TIMM_PREFIX) else backbone_spec(backbone).family
        if family not in (None, "vit"):
            raise ConfigError(f"MAE pre-training needs a ViT backbone; {backbone!r} is a "
                              f"{family} network")
        encoder = create_backbone(backbone, img_size=img_size, global_pool="token")
        vit = encoder.model
        if not isinstance(vit, VisionTransformer):
            raise ConfigError(f"MAE pre-training needs a ViT backbone; {backbone!r} is not one")
        if vit.num_prefix_tokens != 1 or vit.no_embed_class or vit.cls_token is None:
            raise ConfigError(f"{backbone!r} is not a plain class-token ViT (MAE's encoder)")
        grid = vit.patch_embed.grid_size
        if grid[0] != grid[1]:
            raise ConfigError(f"MAE pre-training needs a square patch grid, got {grid}")
        self.encoder: Backbone = encoder
        self.mask_ratio = mask_ratio
        self.norm_pix_loss = norm_pix_loss
        self.patch_size = int(vit.patch_embed.patch_size[0])
        self.num_patches = grid[0] * grid[1]
        if int(self.num_patches * (1.0 - mask_ratio)) < 1:
            raise ConfigError(f"mask_ratio {mask_ratio} leaves no visible patch of "
                              f"{self.num_patches} (raise data.img_size or lower the ratio)")
        width = vit.embed_dim
        # fixed sine-cosine position embeddings during pre-training (the paper's choice)
        with torch.no_grad():
            vit.pos_embed.copy_(sincos_pos_embed(width, grid[0]))
        vit.pos_embed.requires_grad_(False)

        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_embed = nn.Linear(width, decoder_embed_dim)
        self.decoder_pos_embed = nn.Parameter(sincos_pos_embed(decoder_embed_dim, grid[0]),
                                              requires_grad=False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_embed_dim, decoder_num_heads, mlp_ratio=4.0, qkv_bias=True)
            for _ in range(decoder_depth))
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(decoder_embed_dim, self.patch_size ** 2 * 3)
        self._init_decoder()

    def _init_decoder(self) -> None:
        nn.init.normal_(self.mask_token, std=0.02)
        for module in [self.decoder_embed, self.decoder_norm, self.decoder_pred,
                       *self.decoder_blocks.modules()]:
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    @property
    def vit(self) -> VisionTransformer:
        return self.encoder.model

    # -- the three stages ------------------------------------------------------------------------
    def encode(self, images: torch.Tensor, generator: torch.Generator | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode a random visible subset: ``(latent (B, 1 + K, D), mask, ids_restore)``."""
        vit = self.vit
        tokens = vit.patch_embed(images) + vit.pos_embed[:, 1:]
        visible, mask, ids_restore = random_masking(tokens, self.mask_ratio, generator)
        cls = (vit.cls_token + vit.pos_embed[:, :1]).expand(len(visible), -1, -1)
        x = vit.pos_drop(torch.cat([cls, visible], dim=1))
        x = vit.norm_pre(x)
        x = vit.blocks(x)
        return vit.norm(x), mask, ids_restore

    def decode(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predicted pixels of every patch ``(B, N, p * p * 3)`` (the loss uses the masked)."""
        x = self.decoder_embed(latent)
        b, kept, d = x.shape
        masks = self.mask_token.expand(b, ids_restore.shape[1] + 1 - kept, -1)
        shuffled = torch.cat([x[:, 1:], masks], dim=1)
        patches = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1).expand(-1, -1, d))
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x))[:, 1:]

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(loss, prediction (B, N, p * p * 3), mask (B, N))`` of a normalised image batch."""
        latent, mask, ids_restore = self.encode(images, generator)
        prediction = self.decode(latent, ids_restore)
        loss = masked_patch_loss(prediction, patchify(images, self.patch_size), mask,
                                 self.norm_pix_loss)
        return loss, prediction, mask

    # -- output ----------------------------------------------------------------------------------
    def mae_state_dict(self) -> dict[str, torch.Tensor]:
        """The official MAE layout: encoder keys unprefixed, ``mask_token`` and ``decoder_*``."""
        encoder = {k: v.detach().clone() for k, v in self.vit.state_dict().items()}
        own = {k: v.detach().clone() for k, v in self.state_dict().items()
               if not k.startswith("encoder.")}
        return {**encoder, **own}

    def reconstruct(self, images: torch.Tensor, prediction: torch.Tensor,
                    mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input, reconstruction)`` images in the input's space: masked patches
        zeroed in the first; in the second, masked patches predicted (a normalised-pixel
        prediction is mapped back with the true patch's mean and deviation, as in the paper's
        figures) and visible ones copied from the input."""
        patches = patchify(images, self.patch_size)
        if self.norm_pix_loss:
            mean = patches.mean(dim=-1, keepdim=True)
            std = (patches.var(dim=-1, keepdim=True) + NORM_EPS) ** 0.5
            prediction = prediction * std + mean
        hidden = mask.unsqueeze(-1)
        masked = unpatchify(patches * (1 - hidden), self.patch_size)
        pasted = unpatchify(patches * (1 - hidden) + prediction * hidden, self.patch_size)
        return masked, pasted
