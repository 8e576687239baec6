"""A rendered hand occluding part of the face (real-like style only).

Drawn so that a real hand detector (MediaPipe's HandLandmarker) sees a hand: a palm wider at
the knuckles than at the wrist, four fanned-out fingers as long as real ones (0.7-1.0 palm
lengths) with joint creases and nails, a two-segment thumb and a forearm running out of the
frame. Each finger is outlined over its neighbour, the whole is shaded as a rounded object
lit from the thumb's side, a little redder than the face, and casts a soft shadow on what is
behind it (the hand is opaque: it hides the face it covers). It is anchored on a facial
region (:data:`abaw.synth.state.HAND_PLACES`) and tilted by the state's angle. Drawing uses
no random numbers.

The recorded *hand box* covers the outlined palm, fingers and thumb (not the forearm) in the
pixels of the canvas it is drawn on; the renderer converts it to output pixels. The LSD
track scores a hand detector against these boxes and trains an occlusion head from the flags.
"""

from __future__ import annotations

import cv2
import numpy as np

from abaw.synth.state import Hand

_SHIFT = 4
_ONE = 1 << _SHIFT
#: Hands are a little redder than the face (BGR factors).
_TINT = (0.93, 0.96, 1.05)


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


def _segment(img: np.ndarray, a: np.ndarray, b: np.ndarray, colour, width: float) -> None:
    pa, pb = _fixed(a), _fixed(b)
    cv2.line(img, (int(pa[0]), int(pa[1])), (int(pb[0]), int(pb[1])), colour,
             max(1, int(round(width))), cv2.LINE_AA, _SHIFT)


def draw_hand(canvas: np.ndarray, anchor: np.ndarray, hand: Hand, skin, scale: float,
              rgb: bool = False) -> tuple[float, float, float, float]:
    """Draw ``hand`` centred at ``anchor`` (canvas pixels); returns its box (x0, y0, x1, y1)
    in canvas pixels. ``scale`` converts canonical lengths to canvas pixels; ``skin`` and
    the canvas are BGR (``rgb=True``: RGB)."""
    tint = np.array(_TINT[::-1] if rgb else _TINT)
    colour = np.clip(np.asarray(skin, float) * (1.0 + hand.tone) * tint, 0, 255)
    centre = np.asarray(anchor, float) + np.asarray(hand.shift, float) * scale
    size = hand.size * scale
    a = np.deg2rad(hand.angle)
    up = np.array([np.sin(a), -np.cos(a)])      # towards the finger tips
    across = np.array([np.cos(a), np.sin(a)])   # towards the thumb
    length, width = 1.3 * size, 1.1 * size      # palm: wrist to knuckles, side to side
    palm_c = centre - up * 0.25 * size
    knuckle = palm_c + up * length * 0.5
    wrist = palm_c - up * length * 0.5
    finger_w = width * 0.25
    fingers = []  # little finger to index: (base, tip, width), fanned out
    for i, (rel, spread) in enumerate(((0.78, -0.5), (0.98, -0.18), (1.04, 0.1), (0.94, 0.36))):
        direction = up * np.cos(spread) + across * np.sin(spread)
        base = (knuckle + across * (-0.375 + 0.25 * i) * width * 0.92
                - up * (0.06 if i in (0, 3) else 0.0) * length)
        fingers.append((base, base + direction * rel * length, finger_w * (0.85 if i == 0 else 1.0)))
    thumb_root = palm_c + across * width * 0.3 - up * length * 0.3
    thumb_mid = thumb_root + (up * np.cos(1.0) + across * np.sin(1.0)) * 0.45 * length
    thumb_tip = thumb_mid + (up * np.cos(0.5) + across * np.sin(0.5)) * 0.4 * length
    # palm outline: knuckles wider than the wrist, a bulge at the thumb's root
    palm = np.array([knuckle - across * width * 0.5, knuckle + across * width * 0.5,
                     palm_c + across * width * 0.55 - up * length * 0.1,
                     wrist + across * width * 0.4, wrist - across * width * 0.38,
                     palm_c - across * width * 0.5 - up * length * 0.05])
    line = max(1.0, 0.9 * scale)
    fill = tuple(float(c) for c in colour)
    edge = tuple(c * 0.55 for c in fill)

    far = wrist - up * 5.0 * size  # the forearm runs from the wrist out of the frame
    arm = np.array([wrist + across * width * 0.42, far + across * width * 0.55,
                    far - across * width * 0.55, wrist - across * width * 0.4])

    # the box: the outlined palm, fingers and thumb (each point with its stroke's half-width)
    pts = [(q, 0.0) for q in palm + (palm - palm_c) * 0.05]
    pts += [(q, fw / 2 + line) for b, t, fw in fingers for q in (b, t)]
    pts += [(q, 0.625 * finger_w + line) for q in (thumb_root, thumb_mid, thumb_tip)]
    x0, y0 = np.min([q - r for q, r in pts], axis=0)
    x1, y1 = np.max([q + r for q, r in pts], axis=0)
    # hand and forearm are drawn on a layer over the region they cover (clipped to the canvas)
    h, w = canvas.shape[:2]
    reach = np.vstack([np.array([[x0, y0], [x1, y1]]), arm])
    pad = 2 * finger_w + 2
    rx0, ry0 = (int(np.clip(np.floor(v - pad), 0, n)) for v, n in zip(reach.min(axis=0), (w, h)))
    rx1, ry1 = (int(np.clip(np.ceil(v + pad), 0, n)) for v, n in zip(reach.max(axis=0), (w, h)))
    if rx1 <= rx0 or ry1 <= ry0:
        return float(x0), float(y0), float(x1), float(y1)
    origin = np.array([rx0, ry0], float)
    roi = canvas[ry0:ry1, rx0:rx1]
    mask = np.zeros(roi.shape[:2], np.uint8)
    layer = np.zeros_like(roi)  # premultiplied by the mask's coverage

    def shape(p, q, colour, width, into_mask=True):
        """A polygon (``q`` None) or a round-capped segment, on the layer (and the mask)."""
        if q is None:
            cv2.fillPoly(layer, [_fixed(p - origin)], colour, cv2.LINE_AA, _SHIFT)
            if into_mask:
                cv2.fillPoly(mask, [_fixed(p - origin)], 255, cv2.LINE_AA, _SHIFT)
            return
        _segment(layer, p - origin, q - origin, colour, width)
        if into_mask:
            _segment(mask, p - origin, q - origin, 255, width)

    shape(arm, None, tuple(c * 0.9 for c in fill), 0)
    shape(palm + (palm - palm_c) * 0.05, None, edge, 0)
    shape(palm, None, fill, 0)
    for base, tip, fw in fingers:  # each finger outlined over its neighbour: visible gaps
        shape(base, tip, edge, fw + 2 * line)
        shape(base, tip, fill, fw)
    for p, q, fw in ((thumb_root, thumb_mid, 1.25 * finger_w), (thumb_mid, thumb_tip, 1.1 * finger_w)):
        shape(p, q, edge, fw + 2 * line)
    for p, q, fw in ((thumb_root, thumb_mid, 1.25 * finger_w), (thumb_mid, thumb_tip, 1.1 * finger_w)):
        shape(p, q, fill, fw)
    # joint creases and nails
    crease = tuple(c * 0.7 for c in fill)
    nail = tuple(min(255.0, c * 1.18 + 12) for c in fill)
    for base, tip, fw in fingers:
        d = tip - base
        n = np.array([-d[1], d[0]]) / max(1e-6, float(np.hypot(*d)))
        for f in (0.0, 0.45, 0.72):
            shape(base + d * f - n * fw * 0.3, base + d * f + n * fw * 0.3, crease, line, False)
        shape(tip - d * 0.12, tip - d * 0.02, nail, fw * 0.55, False)
    d = thumb_tip - thumb_mid
    shape(thumb_tip - d * 0.25, thumb_tip - d * 0.08, nail, finger_w * 0.6, False)

    # shading: rounded (darker towards the outline), lit from the thumb's side; the hand's
    # soft shadow (offset) darkens what is behind it
    k = max(3, int(finger_w) | 1)
    depth = cv2.GaussianBlur(mask, (k, k), 0).astype(np.float32) * np.float32(1.0 / 255.0)
    xs = (np.arange(rx0, rx1, dtype=np.float32) - np.float32(palm_c[0])) * np.float32(across[0] / width)
    ys = (np.arange(ry0, ry1, dtype=np.float32) - np.float32(palm_c[1])) * np.float32(across[1] / width)
    side = np.clip(xs[None, :] + ys[:, None], -1.5, 1.5)
    coverage = mask.astype(np.float32) * np.float32(1.0 / 255.0)
    ks = max(3, int(1.5 * finger_w) | 1)
    offset = np.float32([[1, 0, 0.3 * finger_w], [0, 1, 0.4 * finger_w]])
    cast = cv2.GaussianBlur(cv2.warpAffine(mask, offset, mask.shape[::-1]), (ks, ks), 0)
    behind = (1.0 - coverage) * (1.0 - cast.astype(np.float32) * np.float32(0.5 / 255.0))
    shade = (0.6 + 0.4 * depth) * (1.0 + 0.15 * side)
    out = roi * behind[..., None] + layer * shade[..., None]
    roi[...] = np.clip(out, 0, 255).astype(np.uint8)
    return float(x0), float(y0), float(x1), float(y1)
