"""albumentations (2.x) pipelines for face crops: training augmentation and evaluation resizing.

Conventions: input is an RGB ``uint8`` (H, W, 3) array (:func:`abaw.data.images.load_rgb`);
output is a float32 (3, img_size, img_size) tensor normalised with the ImageNet mean and std
(what timm backbones and MAE checkpoints expect). The official MTL crops are 112x112, so
``img_size=112`` keeps their resolution.

albumentations 2.x renamed several arguments and only *warns* when given the 1.x names (the
default is then used silently), so only 2.x names appear here: ``RandomResizedCrop(size=...)``,
``CoarseDropout(num_holes_range, hole_height_range, hole_width_range)``,
``GaussNoise(std_range)``, ``ImageCompression(quality_range)``, ``Affine`` rather than the
deprecated ``ShiftScaleRotate``.

Horizontal flips are label-preserving for all three MTL tasks (valence, arousal, expression
and the 12 AUs are defined for the whole face, not per side), so every strength uses them.
"""

from __future__ import annotations

from typing import Literal

import albumentations as A
from albumentations.pytorch import ToTensorV2

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

AugmentStrength = Literal["none", "light", "medium", "strong"]
STRENGTHS: tuple[str, ...] = ("none", "light", "medium", "strong")


def _finish() -> list[A.BasicTransform]:
    return [A.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD), ToTensorV2()]


def eval_transforms(img_size: int) -> A.Compose:
    """Resize to ``img_size`` (a no-op at the native size), normalise, to a CHW tensor."""
    return A.Compose([A.Resize(img_size, img_size), *_finish()])


def train_transforms(img_size: int, strength: AugmentStrength = "medium") -> A.Compose:
    """Training augmentation of increasing strength; ``"none"`` equals :func:`eval_transforms`.

    - light: a mild random resized crop (scale 0.85-1) and horizontal flips;
    - medium: + small rotations/shifts, colour jitter, occasional grey-scale;
    - strong: + wider crops, blur or noise, JPEG re-compression, and one cut-out hole
      (simulates occlusions by hands or hair).
    """
    if strength not in STRENGTHS:
        raise ValueError(f"augment strength must be one of {STRENGTHS}, got {strength!r}")
    if strength == "none":
        return eval_transforms(img_size)
    size = (img_size, img_size)
    scale = {"light": (0.85, 1.0), "medium": (0.75, 1.0), "strong": (0.6, 1.0)}[strength]
    steps: list[A.BasicTransform] = [
        A.RandomResizedCrop(size=size, scale=scale, ratio=(0.9, 1.1)),
        A.HorizontalFlip(p=0.5),
    ]
    if strength in ("medium", "strong"):
        steps += [
            A.Affine(rotate=(-10, 10), translate_percent=(-0.05, 0.05), p=0.5),
            A.ColorJitter(brightness=0.3, contrast=0.3, saturation=0.3, hue=0.03, p=0.8),
            A.ToGray(p=0.05),
        ]
    if strength == "strong":
        hole = (max(1, img_size // 8), max(1, img_size // 4))
        steps += [
            A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.GaussNoise(std_range=(0.02, 0.08))], p=0.3),
            A.ImageCompression(quality_range=(40, 95), p=0.3),
            A.CoarseDropout(
                num_holes_range=(1, 1), hole_height_range=hole, hole_width_range=hole, p=0.3
            ),
        ]
    return A.Compose([*steps, *_finish()])
