"""In-the-wild degradations of a rendered real-like crop (applied at output resolution).

In order: a lighting gradient with overall brightness (low light below ~0.6), a slight
colour cast and low-frequency shading blotches; Gaussian blur; sensor noise; an extra JPEG
pass at a low quality (compression artefacts). The strengths come from the
:class:`~abaw.synth.state.FrameState` (smooth within a video); the random fields come from
the per-image ``rng``, so output bytes depend only on the image's seed.

Speed: the gain field is computed on an 8x8 grid and resized (it is smooth anyway), and the
sensor noise is a random crop of a fixed Gaussian noise bank (drawing 37k normals per image
cost more than the whole face drawing).
"""

from __future__ import annotations

from functools import cache

import cv2
import numpy as np

from abaw.synth.state import FrameState

_BANK = 320
_GRID = np.linspace(-1.0, 1.0, 8)


@cache
def _noise_bank() -> np.ndarray:
    """Unit Gaussian noise, fixed seed (same in every process), float32 (BANK, BANK, 3)."""
    return np.random.default_rng(20220701).standard_normal((_BANK, _BANK, 3), dtype=np.float32)


def degrade(image: np.ndarray, state: FrameState, rng: np.random.Generator) -> np.ndarray:
    """Return a degraded copy of ``image`` (uint8 BGR, square, at most 320 px)."""
    size = image.shape[0]
    xx, yy = np.meshgrid(_GRID, _GRID)
    gain = state.brightness * (1.0 + state.light_strength * (np.cos(state.light_angle) * xx
                                                             + np.sin(state.light_angle) * yy))
    gain = gain + 0.05 * rng.standard_normal((8, 8))
    gain3 = (gain[:, :, None] * rng.uniform(0.95, 1.05, 3)).astype(np.float32)
    gain3 = cv2.resize(gain3, (size, size), interpolation=cv2.INTER_LINEAR)
    out = image.astype(np.float32) * gain3
    if state.blur > 0.3:
        out = cv2.GaussianBlur(out, (0, 0), state.blur)
    if state.noise > 0.0:
        oy, ox = rng.integers(0, _BANK - size + 1, 2)
        out += _noise_bank()[oy:oy + size, ox:ox + size] * np.float32(state.noise)
    np.clip(out, 0.0, 255.0, out=out)
    out = out.astype(np.uint8)
    if state.jpeg_quality > 0:
        _, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(state.jpeg_quality)])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out
