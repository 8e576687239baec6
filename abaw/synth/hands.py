"""A rendered hand occluding part of the face (real-like style only).

The hand is a palm (ellipse), four fingers and a thumb (round-capped strokes) and a forearm
running out of the frame, in the person's skin tone with darker outlines. It is anchored on
a facial region (:data:`abaw.synth.state.HAND_PLACES`) and tilted by the state's angle.

The recorded *hand box* covers the palm and the fingers (not the forearm) in the pixels of
the canvas it is drawn on; the renderer converts it to output pixels. The LSD track scores a
hand detector against these boxes and trains an occlusion head from the flags.
"""

from __future__ import annotations

import cv2
import numpy as np

from abaw.synth.state import Hand

_SHIFT = 4
_ONE = 1 << _SHIFT


def hand_anchor(geometry: dict, place: str) -> np.ndarray:
    """Canonical point a hand at ``place`` is centred on (before its own shift)."""
    W, eye_y = geometry["W"], geometry["eye_y"]
    anchors = {
        "mouth": (0.0, geometry["mouth_y"] + 6.0),
        "cheek_left": (-W * 0.62, eye_y + 30.0),
        "cheek_right": (W * 0.62, eye_y + 30.0),
        "eyes": (-W * 0.35, eye_y + 4.0),
        "chin": (0.0, geometry["chin_y"] + 10.0),
    }
    if place not in anchors:
        raise ValueError(f"unknown hand place {place!r}")
    return np.array(anchors[place])


def _fixed(p: np.ndarray) -> np.ndarray:
    return np.round(np.asarray(p) * _ONE).astype(np.int32)


def _stroke(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, colour, width: float) -> None:
    pa, pb = _fixed(a), _fixed(b)
    cv2.line(canvas, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), colour,
             max(1, int(round(width))), cv2.LINE_AA, _SHIFT)


def draw_hand(canvas: np.ndarray, anchor: np.ndarray, hand: Hand, skin, scale: float
              ) -> tuple[float, float, float, float]:
    """Draw ``hand`` centred at ``anchor`` (canvas pixels); returns its box (x0, y0, x1, y1)
    in canvas pixels. ``scale`` converts canonical lengths to canvas pixels."""
    tone = 1.0 + hand.tone
    colour = tuple(int(np.clip(c * tone, 0, 255)) for c in skin)
    edge = tuple(int(c * 0.62) for c in colour)
    centre = np.asarray(anchor, float) + np.asarray(hand.shift, float) * scale
    size = hand.size * scale
    a = np.deg2rad(hand.angle)
    up = np.array([np.sin(a), -np.cos(a)])      # towards the finger tips
    across = np.array([np.cos(a), np.sin(a)])
    pw, ph = 0.8 * size, size

    # forearm: from the palm out of the frame, opposite the fingers
    far = centre - up * 4.0 * size
    arm = np.array([centre + across * pw * 0.7, far + across * pw * 0.8,
                    far - across * pw * 0.8, centre - across * pw * 0.7])
    cv2.fillPoly(canvas, [_fixed(arm)], tuple(int(c * 0.93) for c in colour), cv2.LINE_AA, _SHIFT)

    fingers = []
    width = 0.42 * pw
    for offset, length, spread in ((-0.62, 0.85, -0.12), (-0.2, 1.0, -0.04),
                                   (0.22, 0.95, 0.04), (0.62, 0.72, 0.12)):
        direction = up * np.cos(spread) + across * np.sin(spread)
        base = centre + up * ph * 0.55 + across * offset * pw
        fingers.append((base, base + direction * length * size))
    thumb_dir = up * np.cos(0.9) + across * np.sin(0.9)
    thumb_base = centre + across * pw * 0.7 - up * ph * 0.15
    fingers.append((thumb_base, thumb_base + thumb_dir * 0.75 * size))

    t = np.linspace(0.0, 2.0 * np.pi, 24, endpoint=False)
    palm = (centre + np.outer(np.cos(t) * pw, across) + np.outer(np.sin(t) * ph, up))
    for base, tip in fingers:
        _stroke(canvas, base, tip, edge, width + 2.0 * scale)
    cv2.fillPoly(canvas, [_fixed(palm)], edge, cv2.LINE_AA, _SHIFT)
    for base, tip in fingers:
        _stroke(canvas, base, tip, colour, width)
    inner = centre + (palm - centre) * 0.93
    cv2.fillPoly(canvas, [_fixed(inner)], colour, cv2.LINE_AA, _SHIFT)
    # knuckle creases
    for base, _ in fingers[:4]:
        _stroke(canvas, base - across * width * 0.35, base + across * width * 0.35, edge,
                0.8 * scale)

    pts = np.vstack([palm] + [np.vstack([b, tp]) for b, tp in fingers])
    half = width / 2.0
    x0, y0 = pts.min(axis=0) - half
    x1, y1 = pts.max(axis=0) + half
    return float(x0), float(y0), float(x1), float(y1)
