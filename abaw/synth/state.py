"""The per-frame state the renderer draws: AU intensities, head pose, eyes, lighting,
degradations and the optional hand occluder.

Conventions: ``au`` is a vector over :data:`abaw.synth.expressions.RENDER_AUS` with values in
[0, 1]; ``roll`` is in degrees (positive = clockwise on screen); ``yaw`` in [-1, 1] is a fake
head turn (positive = towards the image's right); ``dx``/``dy`` are offsets in pixels of the
224-px canonical canvas; ``blur`` is a Gaussian sigma and ``noise`` a standard deviation in
output pixels (grey levels); ``jpeg_quality`` 0 means no extra compression pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from abaw.synth.expressions import NUM_RENDER_AUS

HAND_PLACES: tuple[str, ...] = ("mouth", "cheek_left", "cheek_right", "eyes", "chin")


@dataclass(frozen=True)
class Hand:
    """A hand over the face: where, how big, its tilt, and a skin-tone shift."""

    place: str             # one of HAND_PLACES
    size: float            # palm half-height, canonical px
    angle: float           # degrees; 0 = fingers pointing up
    shift: tuple[float, float] = (0.0, 0.0)  # canonical px, relative to the place's anchor
    tone: float = 0.0      # brightness shift of the hand relative to the face skin


@dataclass(frozen=True)
class FrameState:
    """Everything that varies from frame to frame (defaults: a neutral, frontal, clean face)."""

    au: np.ndarray = field(default_factory=lambda: np.zeros(NUM_RENDER_AUS))
    openness: float = 1.0          # 1 = eyes open, 0 = closed (blinks)
    gaze: tuple[float, float] = (0.0, 0.0)
    roll: float = 0.0
    yaw: float = 0.0
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    light_angle: float = 0.0       # radians, direction the light comes from
    light_strength: float = 0.0    # 0 = even lighting, 0.6 = strong side light
    brightness: float = 1.0        # < 0.6 is low light
    blur: float = 0.0
    noise: float = 0.0
    jpeg_quality: int = 0
    hand: Hand | None = None
