"""Augmentation of whole batches of ``uint8`` image tensors, on whatever device they are on.

The decoded-image cache (:mod:`abaw.data.cache`) hands the loaders ``uint8`` tensors of shape
``(B, 3, S, S)`` already at the model's side; :class:`BatchAugment` turns a batch into the
normalised float input, with training augmentation drawn independently per image. One
``affine_grid``/``grid_sample`` call does the random resized crop, flip, rotation and shift of
the whole batch; colour changes are per-image tensor arithmetic. On a GPU this costs
microseconds per image; on a CPU it is still several times cheaper than per-image
albumentations on decoded JPEGs (``make bench``).

The strengths follow :func:`abaw.data.transforms.train_transforms` (same names, same ranges):

- ``none``: normalise only (= evaluation);
- ``light``: random resized crop (area 0.85-1, aspect 0.9-1.1) and horizontal flip;
- ``medium``: crop area 0.75-1, + rotation within ±10°, shift within ±5 %, brightness /
  contrast / saturation jitter (±0.3, p 0.8) and grey-scale (p 0.05);
- ``strong``: crop area 0.6-1, + Gaussian noise (std 0.02-0.08, p 0.3) and one cut-out hole
  of 1/8-1/4 of the side (p 0.3). The albumentations pipeline's blur and JPEG re-compression
  have no batch counterpart here.

Randomness comes from torch's generator on the batch's device (seeded by
``seed_everything``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from abaw.data.transforms import IMAGENET_MEAN, IMAGENET_STD, STRENGTHS, AugmentStrength

#: strength → (crop area range, rotation degrees, shift fraction, colour jitter, grey p,
#: noise p, cut-out p)
_SETTINGS: dict[str, tuple[tuple[float, float], float, float, float, float, float, float]] = {
    "none": ((1.0, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "light": ((0.85, 1.0), 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
    "medium": ((0.75, 1.0), 10.0, 0.05, 0.3, 0.05, 0.0, 0.0),
    "strong": ((0.6, 1.0), 10.0, 0.05, 0.3, 0.05, 0.3, 0.3),
}
_COLOUR_P = 0.8
_ASPECT = (0.9, 1.1)
_GREY_WEIGHTS = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, device=device) * (high - low) + low


@dataclass(frozen=True)
class BatchAugment:
    """``uint8`` ``(B, 3, S, S)`` → normalised float32, augmented when ``train`` is true."""

    strength: AugmentStrength = "light"

    def __post_init__(self) -> None:
        if self.strength not in STRENGTHS:
            raise ValueError(f"augment strength must be one of {STRENGTHS}, got {self.strength!r}")

    def __call__(self, images: torch.Tensor, train: bool) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 (B, 3, H, W) images, got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = images.float().div_(255.0)
        if train and self.strength != "none" and len(x):
            x = self._augment(x)
        return normalise(x)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        area, degrees, shift, jitter, grey_p, noise_p, cutout_p = _SETTINGS[self.strength]
        x = self._geometry(x, area, degrees, shift)
        if jitter:
            x = _colour(x, jitter)
        if grey_p:
            pick = torch.nonzero(torch.rand(len(x), device=x.device) < grey_p).flatten()
            if len(pick):
                x[pick] = _grey(x[pick]).expand(-1, 3, -1, -1)
        if noise_p:
            std = _uniform(len(x), 0.02, 0.08, x.device).view(-1, 1, 1, 1)
            pick = (torch.rand(len(x), device=x.device) < noise_p).view(-1, 1, 1, 1)
            x = torch.where(pick, x + torch.randn_like(x) * std, x).clamp_(0.0, 1.0)
        if cutout_p:
            x = _cutout(x, cutout_p)
        return x

    @staticmethod
    def _geometry(x: torch.Tensor, area: tuple[float, float], degrees: float,
                  shift: float) -> torch.Tensor:
        n, device = len(x), x.device
        scale = _uniform(n, *area, device)
        log_aspect = _uniform(n, math.log(_ASPECT[0]), math.log(_ASPECT[1]), device)
        aspect = log_aspect.exp()
        width = (scale * aspect).sqrt().clamp(max=1.0)  # crop size as a fraction of the side
        height = (scale / aspect).sqrt().clamp(max=1.0)
        # centre anywhere the crop stays inside the image, plus the extra shift
        cx = _uniform(n, -1.0, 1.0, device) * (1.0 - width) + _uniform(n, -shift, shift, device) * 2
        cy = _uniform(n, -1.0, 1.0, device) * (1.0 - height) + _uniform(n, -shift, shift, device) * 2
        angle = _uniform(n, -degrees, degrees, device) * (math.pi / 180.0)
        flip = torch.where(torch.rand(n, device=device) < 0.5, -1.0, 1.0)
        cos, sin = angle.cos(), angle.sin()
        theta = torch.stack([
            torch.stack([cos * width * flip, -sin * height, cx], dim=1),
            torch.stack([sin * width * flip, cos * height, cy], dim=1),
        ], dim=1)
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection",
                             align_corners=False)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) luma of a (B, 3, H, W) batch."""
    return (x * x.new_tensor(_GREY_WEIGHTS).view(1, 3, 1, 1)).sum(1, keepdim=True)


def _colour(x: torch.Tensor, amount: float) -> torch.Tensor:
    """Brightness ``b``, contrast ``c`` (around the image mean) and saturation ``s`` (towards
    the luma), each in ``1 ± amount``, applied with probability 0.8 per image.

    The three steps compose into one affine map per image (the luma weights sum to 1):
    ``s·c·b·x + (1-s)·c·b·grey(x) + (1-c)·b·mean(x)``, clamped to [0, 1] once.
    """
    n, device = len(x), x.device
    keep = torch.rand(n, device=device) >= _COLOUR_P
    factors = _uniform(3 * n, 1 - amount, 1 + amount, device).view(3, n)
    factors[:, keep] = 1.0
    b, c, s = (f.view(-1, 1, 1, 1) for f in factors)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    shift = _grey(x).mul_((1 - s) * c * b).add_((1 - c) * b * mean)  # (B, 1, H, W)
    return (x * (s * c * b)).add_(shift).clamp_(0.0, 1.0)


def _cutout(x: torch.Tensor, p: float) -> torch.Tensor:
    n, _, h, w = x.shape
    device = x.device
    side = torch.randint(max(1, h // 8), max(2, h // 4 + 1), (n,), device=device)
    top = (torch.rand(n, device=device) * (h - side + 1)).long()
    left = (torch.rand(n, device=device) * (w - side + 1)).long()
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    hole = ((rows >= top.view(-1, 1, 1)) & (rows < (top + side).view(-1, 1, 1))
            & (cols >= left.view(-1, 1, 1)) & (cols < (left + side).view(-1, 1, 1)))
    hole = hole & (torch.rand(n, device=device) < p).view(-1, 1, 1)
    return x.masked_fill(hole.unsqueeze(1), 0.0)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """ImageNet mean/std normalisation of a float ``(B, 3, H, W)`` batch in [0, 1]."""
    mean = x.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = x.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x - mean) / std
