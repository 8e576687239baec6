"""Who is in a synthetic video: the per-person appearance parameters.

An :class:`Identity` holds everything about a face that does not change within a video —
face shape, skin tone, hair, eyes, brows, nose, mouth, glasses, beard, clothes and the
background — plus the person's own way of displaying expressions (per-AU gains used by
:mod:`abaw.synth.expressions`). It is drawn once per video from a seeded generator.

Conventions: lengths are in pixels of the 224-px canonical canvas (the renderer scales them
to the canvas it draws on); colours are BGR tuples of ints 0..255 (OpenCV order).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Skin tones, BGR, from very light to very dark (roughly the Monk skin-tone scale).
SKIN_TONES: tuple[tuple[int, int, int], ...] = (
    (222, 234, 246), (203, 221, 243), (180, 211, 239), (158, 196, 225), (132, 175, 214),
    (110, 150, 190), (83, 120, 160), (64, 94, 128), (48, 68, 96), (36, 48, 64),
)
#: Hair colours, BGR: black, dark brown, brown, auburn, blond, grey.
HAIR_COLOURS: tuple[tuple[int, int, int], ...] = (
    (25, 22, 20), (30, 40, 58), (40, 62, 96), (40, 60, 140), (100, 170, 210), (160, 160, 160),
)
#: Iris colours, BGR: dark brown, brown, hazel, green, blue, grey.
EYE_COLOURS: tuple[tuple[int, int, int], ...] = (
    (20, 35, 55), (30, 60, 100), (50, 100, 120), (70, 120, 60), (150, 100, 50), (130, 130, 120),
)
HAIR_STYLES: tuple[str, ...] = ("short", "long", "fringe", "bald", "bun")
#: How many render-AUs an identity carries gains for (see :data:`abaw.synth.au.RENDER_AUS`).
_NUM_RENDER_AUS = 15


@dataclass(frozen=True)
class Identity:
    """One person's appearance (fixed within a video)."""

    face_w: float          # half-width of the face oval
    face_h: float          # half-height of the face oval
    chin_taper: float      # 0 = square jaw, 0.45 = pointed chin
    skin: tuple[int, int, int]
    lip: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str
    hairline: float        # y of the hairline (negative = above the face centre)
    eye: tuple[int, int, int]
    eye_spacing: float     # x of each eye centre
    eye_w: float           # eye half-width
    eye_h: float           # open upper-lid height
    brow_thickness: float
    brow_colour: tuple[int, int, int]
    nose_w: float
    nose_len: float
    mouth_w: float         # half-width of the mouth at rest
    lip_upper: float       # upper-lip thickness
    lip_lower: float       # lower-lip thickness
    glasses: bool
    glasses_colour: tuple[int, int, int]
    beard: bool
    shirt: tuple[int, int, int]
    background: tuple[tuple[int, int, int], tuple[int, int, int]]  # gradient end colours
    au_gain: tuple[float, ...]  # per render-AU expressivity, multiplies prototype weights


def _jitter_colour(rng: np.random.Generator, colour: tuple[int, int, int], spread: float
                   ) -> tuple[int, int, int]:
    values = np.clip(np.asarray(colour, float) + rng.normal(0.0, spread, 3), 0, 255)
    return tuple(int(v) for v in values)


def sample_identity(rng: np.random.Generator) -> Identity:
    """Draw one identity; every parameter comes from ``rng`` (so a seed fixes the person)."""
    skin = _jitter_colour(rng, SKIN_TONES[int(rng.integers(len(SKIN_TONES)))], 6.0)
    # lips: the skin tone pulled towards a muted red, darker for dark skin
    lip = tuple(int(v) for v in 0.55 * np.asarray(skin) + 0.45 * np.array([90, 90, 170]))
    hair_index = int(rng.integers(len(HAIR_COLOURS)))
    hair = _jitter_colour(rng, HAIR_COLOURS[hair_index], 8.0)
    brow = tuple(int(v) for v in 0.75 * np.asarray(hair) + 0.25 * np.asarray(skin) * 0.5)
    style = HAIR_STYLES[int(rng.choice(len(HAIR_STYLES), p=[0.3, 0.3, 0.2, 0.08, 0.12]))]
    bg_a = tuple(int(v) for v in rng.integers(20, 236, 3))
    bg_b = _jitter_colour(rng, bg_a, 60.0)
    return Identity(
        face_w=float(rng.uniform(55, 66)),
        face_h=float(rng.uniform(74, 84)),
        chin_taper=float(rng.uniform(0.12, 0.42)),
        skin=skin,
        lip=lip,
        hair=hair,
        hair_style=style,
        hairline=float(rng.uniform(-66, -56)) if style != "fringe" else float(rng.uniform(-55, -50)),
        eye=EYE_COLOURS[int(rng.integers(len(EYE_COLOURS)))],
        eye_spacing=float(rng.uniform(21, 27)),
        eye_w=float(rng.uniform(11, 13.5)),
        eye_h=float(rng.uniform(6.0, 8.0)),
        brow_thickness=float(rng.uniform(3.0, 6.0)),
        brow_colour=brow,
        nose_w=float(rng.uniform(8, 12)),
        nose_len=float(rng.uniform(24, 32)),
        mouth_w=float(rng.uniform(17, 22)),
        lip_upper=float(rng.uniform(3.5, 6.0)),
        lip_lower=float(rng.uniform(4.5, 7.5)),
        glasses=bool(rng.random() < 0.18),
        glasses_colour=_jitter_colour(rng, (30, 30, 30), 25.0),
        beard=bool(rng.random() < 0.15),
        shirt=tuple(int(v) for v in rng.integers(10, 246, 3)),
        background=(bg_a, bg_b),
        au_gain=tuple(float(g) for g in rng.uniform(0.75, 1.2, _NUM_RENDER_AUS)),
    )
