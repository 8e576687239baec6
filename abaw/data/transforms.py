"""albumentations (2.x) pipelines for face crops: training augmentation (generic strengths and
the LSD synthetic-to-real domain bridge) and evaluation resizing.

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
import cv2
from albumentations.pytorch import ToTensorV2

from abaw.errors import ConfigError

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


# --- the LSD synthetic -> real "bridge" --------------------------------------------------------

#: "bridge" (the LSD domain bridge) or one of the generic strengths above.
AUGMENTS: tuple[str, ...] = ("bridge", *STRENGTHS)


def domain_bridge_transforms(img_size: int) -> A.Compose:
    """Training augmentation that makes clean synthetic renders look like real video frames.

    On top of the usual crop/flip/affine/colour jitter, each step imitates one way a real
    frame differs from a render: lost resolution (down-then-up scaling), camera and motion
    blur, sensor noise, JPEG blocking, harsher lighting (gamma), grey-scale footage, and
    occluders (a hand, a microphone, hair) as coarse dropout holes filled with a random flat
    colour. The probabilities keep a clean image common enough that the renders' own detail
    is still learned. Ends with :func:`abaw.data.transforms.eval_transforms` (normalise,
    CHW tensor), so train and evaluation inputs share one normalisation.
    """
    size = (img_size, img_size)
    steps: list[A.BasicTransform] = [
        A.RandomResizedCrop(size=size, scale=(0.7, 1.0), ratio=(0.9, 1.1)),
        A.HorizontalFlip(p=0.5),  # expressions are left-right symmetric labels
        A.Affine(rotate=(-15, 15), translate_percent=(-0.06, 0.06), scale=(0.9, 1.1), p=0.5),
        # occluders first: they are part of the scene, the camera degrades them too
        A.CoarseDropout(
            num_holes_range=(1, 2),
            hole_height_range=(0.15, 0.35),
            hole_width_range=(0.15, 0.35),
            fill="random_uniform",
            p=0.4,
        ),
        A.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.05, p=0.8),
        A.RandomGamma(gamma_limit=(70, 150), p=0.3),
        A.ToGray(p=0.1),
        A.Downscale(
            scale_range=(0.3, 0.7),
            interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
            p=0.4,
        ),
        A.OneOf(
            [
                A.GaussianBlur(blur_limit=(3, 5), sigma_limit=(0.4, 1.5)),
                A.MotionBlur(blur_limit=(3, 7)),
                A.Defocus(radius=(1, 3), alias_blur=(0.1, 0.3)),
            ],
            p=0.3,
        ),
        A.OneOf(
            [
                A.GaussNoise(std_range=(0.02, 0.08)),
                A.ISONoise(color_shift=(0.01, 0.04), intensity=(0.1, 0.4)),
            ],
            p=0.4,
        ),
        A.ImageCompression(quality_range=(25, 90), p=0.5),  # last: the codec sees everything
    ]
    return A.Compose([*steps, eval_transforms(img_size)])


def lsd_train_transforms(img_size: int, augment: str) -> A.Compose:
    """The training pipeline named by ``augment``: ``"bridge"`` or a generic strength."""
    if augment == "bridge":
        return domain_bridge_transforms(img_size)
    if augment not in STRENGTHS:
        raise ConfigError(f"augment must be one of {AUGMENTS}, got {augment!r}")
    return train_transforms(img_size, augment)  # type: ignore[arg-type]
