"""Draw one synthetic face: identity + frame state -> an aligned face crop (BGR uint8).

The face is built in *canonical* coordinates — pixels of a 224-px canvas, origin at the face
centre, x to the right, y down — from the identity's proportions and the AU intensities
(each AU moves its features the FACS way, see the comments in :func:`_face_geometry`). The
points then go through the head pose (a fake yaw that shifts features by their depth, roll,
scale, offset) and are drawn with OpenCV polygons on a canvas twice the output size, which
is shrunk with ``cv2.INTER_AREA`` (anti-aliasing).

Two styles:
- ``"real"``: cluttered background, hair strands, hands (when the state has one) and, after
  downsampling, the in-the-wild degradations of :mod:`abaw.synth.degrade`;
- ``"synthetic"``: the LSD training style — flat colours, plain background, no occlusion,
  no degradation (and, by the layout's choice, a lower output resolution).

:func:`render_face` also returns landmark positions in output pixels (for tests and
previews) and the hand box when a hand was drawn.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np

from abaw.synth.degrade import degrade
from abaw.synth.expressions import AU_INDEX
from abaw.synth.hands import draw_hand, hand_anchor
from abaw.synth.identity import Identity
from abaw.synth.state import FrameState

CANONICAL = 224.0
#: Face centre on the canonical canvas (a little below the middle, like aligned crops).
CENTRE = (112.0, 110.0)
#: Canonical face units -> canonical canvas pixels: the face fills most of the crop, like
#: the aligned s-Aff-Wild2 crops.
ZOOM = 1.32
_SHIFT = 4  # fixed-point bits for sub-pixel drawing
_ONE = 1 << _SHIFT
STYLES = ("real", "synthetic")

A = AU_INDEX  # short alias for the geometry code


@dataclass(frozen=True)
class Rendering:
    """A rendered face: the image, named landmarks (output pixels) and the hand box."""

    image: np.ndarray                       # (size, size, 3) uint8, BGR
    landmarks: dict[str, np.ndarray]        # name -> (x, y)
    hand_box: tuple[float, float, float, float] | None  # x0, y0, x1, y1 in output pixels


class _Painter:
    """Maps canonical points through the pose to canvas pixels and draws them.

    Drawing calls are recorded and executed by :meth:`flush`, which maps every recorded
    point through the pose in one vectorised call (per-call numpy overhead dominated the
    render time otherwise)."""

    def __init__(self, canvas: np.ndarray, state: FrameState) -> None:
        self.img = canvas
        self.k = canvas.shape[0] / CANONICAL
        self.yaw = state.yaw
        theta = np.deg2rad(state.roll)
        s = state.scale * ZOOM
        self.rot = s * np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        self.origin = np.array([CENTRE[0] + state.dx, CENTRE[1] + state.dy])
        self.line_scale = self.k * s
        self._chunks: list[np.ndarray] = []
        self._depths: list[float] = []
        self._ops: list[tuple] = []

    def map(self, pts: np.ndarray, depth: float | np.ndarray = 0.0) -> np.ndarray:
        """Canonical (n, 2) points -> canvas pixels (float). ``depth`` 0 is the face outline,
        1 the nose tip: the fake yaw shifts deep points more and squeezes the far side."""
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        x = pts[:, 0]
        squeeze = 1.0 - 0.16 * self.yaw * np.sign(x) * (1.0 - depth)
        x = x * squeeze + self.yaw * depth * 16.0
        out = np.stack([x, pts[:, 1]], axis=1) @ self.rot.T + self.origin
        return out * self.k

    def _record(self, kind: str, pts, depth: float, colour, size: float = 0.0,
                closed: bool = False) -> None:
        pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
        self._chunks.append(pts)
        self._depths.append(depth)
        self._ops.append((kind, pts.shape[0], colour, size, closed))

    def fill(self, pts: np.ndarray, colour, depth: float = 0.0) -> None:
        self._record("fill", pts, depth, colour)

    def line(self, pts: np.ndarray, colour, thickness: float, depth: float = 0.0,
             closed: bool = False) -> None:
        self._record("line", pts, depth, colour, thickness, closed)

    def disc(self, centre, radius: float, colour, depth: float = 0.0) -> None:
        self._record("disc", centre, depth, colour, radius)

    def flush(self) -> None:
        """Draw everything recorded so far, in order."""
        if not self._ops:
            return
        counts = [op[1] for op in self._ops]
        depth = np.repeat(np.asarray(self._depths), counts)
        fixed = np.round(self.map(np.vstack(self._chunks), depth) * _ONE).astype(np.int32)
        start = 0
        img, ls = self.img, self.line_scale
        for kind, n, colour, size, closed in self._ops:
            pts = fixed[start:start + n]
            start += n
            if kind == "fill":
                cv2.fillPoly(img, [pts], colour, cv2.LINE_AA, _SHIFT)
            elif kind == "line":
                cv2.polylines(img, [pts], closed, colour, max(1, int(round(size * ls))),
                              cv2.LINE_AA, _SHIFT)
            else:
                r = max(int(round(size * ls * _ONE)), 1)
                cv2.circle(img, (int(pts[0, 0]), int(pts[0, 1])), r, colour, -1, cv2.LINE_AA,
                           _SHIFT)
        self._chunks, self._depths, self._ops = [], [], []


@cache
def _unit_circle(n: int) -> np.ndarray:
    t = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24) -> np.ndarray:
    return _unit_circle(n) * (rx, ry) + (cx, cy)


def _mix(a, b, alpha: float) -> tuple[int, int, int]:
    """Colour ``a`` moved towards ``b`` by ``alpha`` (for lines whose strength is an AU)."""
    alpha = min(max(float(alpha), 0.0), 1.0)
    return (int((1 - alpha) * a[0] + alpha * b[0] + 0.5), int((1 - alpha) * a[1] + alpha * b[1] + 0.5),
            int((1 - alpha) * a[2] + alpha * b[2] + 0.5))


def _shade(colour, factor: float) -> tuple[int, int, int]:
    return (min(int(colour[0] * factor), 255), min(int(colour[1] * factor), 255),
            min(int(colour[2] * factor), 255))


def _face_geometry(ident: Identity, au: np.ndarray, openness: float, gaze) -> dict:
    """All feature shapes in canonical coordinates, moved by the AU intensities."""
    g: dict = {}
    W, H = ident.face_w, ident.face_h
    eye_y = -24.0
    nose_tip_y = eye_y + ident.nose_len
    mouth_y = nose_tip_y + 17.0
    chin_y = mouth_y + 38.0
    jaw_drop = 11.0 * au[A["AU26"]]                         # AU26: the jaw drops

    # --- face outline: top half an ellipse, lower half tapering to the chin --------------
    t = np.linspace(0.0, 2.0 * np.pi, 56, endpoint=False)
    c, s = np.cos(t), np.sin(t)
    lower = s > 0
    x = W * c * np.where(lower, 1.0 - ident.chin_taper * s**3, 1.0 - 0.05 * s**2)
    y = np.where(lower, chin_y * s + jaw_drop * s**4, H * s)
    g["outline"] = np.stack([x, y], axis=1)
    g["chin"] = np.array([0.0, chin_y + jaw_drop])
    g.update(W=W, H=H, eye_y=eye_y, nose_tip_y=nose_tip_y, mouth_y=mouth_y, chin_y=chin_y)

    # --- eyes ---------------------------------------------------------------------------
    open_factor = openness * (1.0 + 0.5 * au[A["AU5"]] - 0.45 * au[A["AU7"]]
                              - 0.3 * au[A["AU6"]] - 0.15 * au[A["AU4"]])
    upper_h = ident.eye_h * max(open_factor, 0.0)
    # AU6 (cheeks push the lower lids up) and AU7 (lids tightened) flatten the lower lid
    lower_h = 3.6 * (1.0 - 0.55 * au[A["AU7"]] - 0.45 * au[A["AU6"]])
    lower_lift = 2.2 * au[A["AU6"]] + 1.6 * au[A["AU7"]]
    tt = np.linspace(-1.0, 1.0, 13)
    bell = 1.0 - tt**2
    for side, name in ((-1, "l"), (1, "r")):
        cx = side * ident.eye_spacing
        ex = cx + side * ident.eye_w * tt          # inner corner first
        tilt = -1.2 * (tt + 1.0) / 2.0              # outer corner slightly higher
        up = eye_y + tilt - upper_h * bell**0.8
        low = eye_y + tilt - lower_lift * bell + lower_h * bell
        g[f"eye_upper_{name}"] = np.stack([ex, up], axis=1)
        g[f"eye_lower_{name}"] = np.stack([ex, np.maximum(low, up)], axis=1)
        g[f"iris_{name}"] = np.array([cx + 3.0 * gaze[0], eye_y - 0.8 + 1.5 * gaze[1]])

    # --- brows: AU1 lifts the inner end, AU2 the outer end, AU4 lowers and knits ----------
    tb = np.linspace(0.0, 1.0, 7)
    for side, name in ((-1, "l"), (1, "r")):
        inner, outer = 8.0, ident.eye_spacing + ident.eye_w + 5.0
        bx = side * (inner + tb * (outer - inner) - 5.0 * au[A["AU4"]] * (1.0 - tb) ** 2)
        by = (eye_y - 15.0 - 3.0 * np.sin(np.pi * tb * 0.85)
              - 12.0 * au[A["AU1"]] * (1.0 - tb) ** 1.5
              - 12.0 * au[A["AU2"]] * tb**1.5
              + 8.5 * au[A["AU4"]] * (1.0 - 0.45 * tb))
        g[f"brow_{name}"] = np.stack([bx, by], axis=1)

    # --- nose: AU9 wrinkles and lifts the wings, AU10 lifts them a little ----------------
    lift = 3.0 * au[A["AU9"]] + 1.5 * au[A["AU10"]]
    nw = ident.nose_w * (1.0 + 0.15 * au[A["AU9"]])
    g["nose_w"] = nw
    g["nostril_y"] = nose_tip_y + 2.0 - lift
    g["nose_tip"] = np.array([0.0, nose_tip_y])

    # --- mouth ------------------------------------------------------------------------
    # AU12 pulls the corners up and out, AU15 down, AU20 stretches them sideways, AU23
    # narrows and thins the lips, AU24 presses them thin, AU10 raises the upper lip, AU25
    # parts the lips and AU26 drops the jaw (lower lip follows the jaw).
    mw = ident.mouth_w * (1.0 + 0.22 * au[A["AU12"]] + 0.3 * au[A["AU20"]]
                          - 0.28 * au[A["AU23"]] - 0.08 * au[A["AU24"]] - 0.08 * au[A["AU26"]])
    corner_dy = -11.0 * au[A["AU12"]] + 10.0 * au[A["AU15"]] + 1.5 * au[A["AU20"]]
    thin = 1.0 - 0.55 * au[A["AU24"]] - 0.4 * au[A["AU23"]] - 0.2 * au[A["AU20"]]
    tu, tl = ident.lip_upper * max(thin, 0.25), ident.lip_lower * max(thin, 0.25)
    press = 1.0 - 0.85 * au[A["AU24"]]
    gap = (4.5 * au[A["AU25"]] + 13.0 * au[A["AU26"]]) * press
    raise_upper = 4.5 * au[A["AU10"]]
    tm = np.linspace(-1.0, 1.0, 17)
    mb = 1.0 - tm**2
    shift = corner_dy * np.abs(tm) ** 2.2
    mx = mw * tm
    upper_inner = mouth_y + shift - (0.2 * gap + raise_upper) * mb**0.7
    lower_inner = mouth_y + shift + 0.8 * gap * mb**0.7
    cupid = 1.0 - 0.3 * np.exp(-((tm / 0.13) ** 2))
    upper_outer = upper_inner - tu * mb**0.5 * cupid - 0.6 * raise_upper * mb
    lower_outer = lower_inner + tl * mb**0.6
    g["mouth_x"] = mx
    g["upper_inner"], g["lower_inner"] = upper_inner, lower_inner
    g["upper_outer"], g["lower_outer"] = upper_outer, lower_outer
    g["mouth_gap"] = float(lower_inner[8] - upper_inner[8])
    g["raise_upper"] = raise_upper
    return g


def _pts(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.stack([x, y], axis=1)


def _background(canvas: np.ndarray, ident: Identity, style: str, rng: np.random.Generator
                ) -> None:
    n = canvas.shape[0]
    a, b = ident.background
    if style == "synthetic":
        canvas[:] = _shade(a, 0.9)
        return
    # a smooth two-colour gradient (cheap: a 2x2 image stretched) and some clutter
    small = np.array([[a, b], [b, a]], dtype=np.uint8) if rng.random() < 0.5 else \
        np.array([[a, a], [b, b]], dtype=np.uint8)
    canvas[:] = cv2.resize(small, (n, n), interpolation=cv2.INTER_LINEAR)
    for _ in range(int(rng.integers(2, 6))):
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        p, q = rng.integers(0, n, 2), rng.integers(n // 10, n // 2, 2)
        if rng.random() < 0.5:
            cv2.rectangle(canvas, (int(p[0]), int(p[1])), (int(p[0] + q[0]), int(p[1] + q[1])),
                          colour, -1)
        else:
            cv2.circle(canvas, (int(p[0]), int(p[1])), int(q[0] // 2), colour, -1)


def _hair_back(pt: _Painter, ident: Identity, g: dict) -> None:
    W, H = g["W"], g["H"]
    hair = ident.hair
    if ident.hair_style == "long":
        arc = _ellipse(0.0, 0.0, W + 13.0, H + 12.0, 32)
        arc = arc[arc[:, 1] <= 0.0]
        arc = arc[np.argsort(np.arctan2(arc[:, 1], arc[:, 0]))]
        poly = np.vstack([[[-W - 17.0, 112.0]], arc, [[W + 17.0, 112.0]]])
        pt.fill(poly, hair)
    elif ident.hair_style == "bun":
        pt.disc((0.0, -H - 10.0), 22.0, hair)


def _body(pt: _Painter, ident: Identity, g: dict) -> None:
    W = g["W"]
    neck_w = W * 0.58
    pt.fill(np.array([[-neck_w, 20.0], [neck_w, 20.0], [neck_w * 1.05, 130.0],
                      [-neck_w * 1.05, 130.0]]), _shade(ident.skin, 0.86))
    pt.fill(_ellipse(0.0, 150.0, 118.0, 52.0, 32), ident.shirt)
    for side in (-1, 1):  # ears
        pt.fill(_ellipse(side * (W - 1.0), -10.0, 7.5, 14.0, 16), _shade(ident.skin, 0.92))


def _hair_front(pt: _Painter, ident: Identity, g: dict, style: str,
                rng: np.random.Generator) -> None:
    if ident.hair_style == "bald":
        return
    W, H = g["W"], g["H"]
    top = _ellipse(0.0, 2.0, W + 5.0, H + 9.0, 40)
    angle = np.arctan2(top[:, 1], top[:, 0])
    keep = (angle < -0.12) & (angle > -np.pi + 0.12)
    arc = top[keep][np.argsort(angle[keep])]  # from the left temple over the top to the right
    # the hairline from the right temple back to the left (inner edge of the cap)
    hx = np.linspace(W + 2.0, -W - 2.0, 15)
    hl = ident.hairline
    hy = hl + (-4.0 - hl) * (np.abs(hx) / (W + 2.0)) ** 3.0
    if ident.hair_style == "fringe":
        hy = hy + np.where(np.arange(hx.size) % 2 == 0, 4.0, -1.0)  # jagged bangs
    poly = np.vstack([arc, _pts(hx, hy)])
    pt.fill(poly, ident.hair)
    if style == "real":  # a few strands for texture
        light = _shade(ident.hair, 1.35)
        dark = _shade(ident.hair, 0.7)
        for _ in range(5):
            x0 = float(rng.uniform(-W * 0.7, W * 0.7))
            y0 = float(rng.uniform(-H - 2.0, hl - 10.0))
            pt.line(np.array([[x0, y0], [x0 + rng.uniform(-14, 14), y0 + rng.uniform(6, 14)]]),
                    light if rng.random() < 0.5 else dark, 1.0)


def _eyes(pt: _Painter, ident: Identity, g: dict, au: np.ndarray) -> None:
    skin = ident.skin
    lid_line = _shade(ident.brow_colour, 0.8)
    crease = _shade(skin, 0.72)
    for name in ("l", "r"):
        up, low = g[f"eye_upper_{name}"], g[f"eye_lower_{name}"]
        white = np.vstack([up, low[::-1]])
        pt.fill(white, (228, 234, 238), 0.5)
        iris = g[f"iris_{name}"]
        pt.disc(iris, 5.2, ident.eye, 0.5)
        pt.disc(iris, 2.2, (15, 15, 15), 0.5)
        pt.disc(iris + (1.5, -1.5), 0.9, (235, 235, 235), 0.5)
        # skin above the upper lid and below the lower lid hides the iris outside the eye
        x0, x1 = up[0, 0], up[-1, 0]
        ey = g["eye_y"]
        pt.fill(np.vstack([up, [[x1, ey - 14.0], [x0, ey - 14.0]]]), skin, 0.5)
        pt.fill(np.vstack([low, [[x1, ey + 9.0], [x0, ey + 9.0]]]), skin, 0.5)
        pt.line(up, lid_line, 1.8, 0.5)
        pt.line(low[2:-2], _shade(skin, 0.8), 0.8, 0.5)
        # upper-lid crease, pushed up by AU5
        crease_pts = up[2:-2] + (0.0, -3.5 - 1.5 * au[A["AU5"]])
        pt.line(crease_pts, crease, 0.9, 0.5)
        # AU6: a bulge under the lower lid and crow's feet at the outer corner
        a6 = au[A["AU6"]]
        if a6 > 0.05:
            bulge = low[2:-2] + (0.0, 4.0)
            pt.line(bulge, _mix(skin, _shade(skin, 0.6), a6), 1.0, 0.5)
            outer = up[-1]
            side = 1.0 if name == "r" else -1.0
            colour = _mix(skin, _shade(skin, 0.6), a6)
            for k in (-1.0, 0.0, 1.0):
                pt.line(np.array([outer + (side * 2.0, k * 2.5),
                                  outer + (side * 7.0, k * 4.5)]), colour, 0.8, 0.3)
        # AU7: tension line along the tightened lower lid
        a7 = au[A["AU7"]]
        if a7 > 0.05:
            pt.line(low[3:-3] + (0.0, 2.2), _mix(skin, _shade(skin, 0.62), a7), 0.9, 0.5)


def _brows_and_forehead(pt: _Painter, ident: Identity, g: dict, au: np.ndarray) -> None:
    skin = ident.skin
    # AU1/AU2: horizontal forehead wrinkles; AU4: vertical frown lines between the brows
    lift = max(au[A["AU1"]], au[A["AU2"]])
    if lift > 0.05:
        colour = _mix(skin, _shade(skin, 0.68), lift)
        for k in range(3):
            y = g["eye_y"] - 30.0 - 5.0 * k
            pt.line(_pts(np.linspace(-20, 20, 7), y - 1.5 * np.sin(np.linspace(0, np.pi, 7))),
                    colour, 0.9, 0.4)
    a4 = au[A["AU4"]]
    if a4 > 0.05:
        colour = _mix(skin, _shade(skin, 0.55), a4)
        for side in (-1.0, 1.0):
            x = side * 3.2
            pt.line(np.array([[x, g["eye_y"] - 17.0], [x * 0.8, g["eye_y"] - 6.0]]), colour, 1.1,
                    0.5)
    for name in ("l", "r"):
        b = g[f"brow_{name}"]
        th = ident.brow_thickness * np.linspace(1.15, 0.55, b.shape[0])
        top = b - np.stack([np.zeros_like(th), th / 2.0], axis=1)
        bottom = b + np.stack([np.zeros_like(th), th / 2.0], axis=1)
        pt.fill(np.vstack([top, bottom[::-1]]), ident.brow_colour, 0.45)


def _nose(pt: _Painter, ident: Identity, g: dict, au: np.ndarray) -> None:
    skin = ident.skin
    shadow = _shade(skin, 0.78)
    tip_y, nw = g["nose_tip_y"], g["nose_w"]
    pt.line(np.array([[nw * 0.35, g["eye_y"] + 2.0], [nw * 0.75, tip_y - 4.0]]), shadow, 1.2, 0.8)
    ny = g["nostril_y"]
    curve = _pts(np.linspace(-nw, nw, 9), ny + 1.5 - 3.0 * (1 - np.linspace(-1, 1, 9) ** 2))
    pt.line(curve, shadow, 1.4, 1.0)
    for side in (-1.0, 1.0):
        pt.fill(_ellipse(side * nw * 0.45, ny + 0.5, 2.8, 1.6, 12), _shade(skin, 0.45), 1.0)
        pt.line(_pts(side * np.array([nw * 0.95, nw * 1.1, nw * 0.9]),
                     np.array([ny - 5.0, ny - 1.0, ny + 2.0])), shadow, 1.1, 0.9)
    a9 = au[A["AU9"]]
    if a9 > 0.05:  # nose wrinkle across the bridge
        colour = _mix(skin, _shade(skin, 0.55), a9)
        for k in range(3):
            y = g["eye_y"] + 4.0 + 3.5 * k
            pt.line(np.array([[-nw * 0.6, y], [0.0, y - 1.2], [nw * 0.6, y]]), colour, 0.9, 0.8)


def _mouth(pt: _Painter, ident: Identity, g: dict, au: np.ndarray) -> None:
    skin = ident.skin
    mx = g["mouth_x"]
    ui, li, uo, lo = g["upper_inner"], g["lower_inner"], g["upper_outer"], g["lower_outer"]
    # nasolabial folds deepen with AU6/AU10/AU12 and follow the mouth corners
    fold = 0.12 + 0.75 * max(au[A["AU12"]], au[A["AU10"]], 0.6 * au[A["AU6"]], 0.5 * au[A["AU9"]])
    fold_colour = _mix(skin, _shade(skin, 0.55), fold)
    for side, corner in ((-1.0, 0), (1.0, -1)):
        start = np.array([side * (g["nose_w"] + 3.0), g["nostril_y"] - 2.0])
        end = np.array([mx[corner] + side * 4.0, ui[corner] + 5.0])
        mid = (start + end) / 2.0 + (side * 3.5, 0.0)
        pt.line(np.vstack([start, mid, end]), fold_colour, 1.1, 0.6)
    lip = ident.lip
    if g["mouth_gap"] > 0.6 or g["raise_upper"] > 0.5:
        pt.fill(np.vstack([_pts(mx, ui), _pts(mx, li)[::-1]]), (40, 32, 70), 0.6)
        teeth_h = np.minimum(4.0, (li - ui) * 0.45)
        inner = slice(3, 14)
        teeth = np.vstack([_pts(mx[inner], ui[inner]),
                           _pts(mx[inner], ui[inner] + teeth_h[inner])[::-1]])
        pt.fill(teeth, (222, 230, 235), 0.6)
        if g["mouth_gap"] > 11.0:
            low_teeth = np.vstack([_pts(mx[inner], li[inner] - 2.5), _pts(mx[inner], li[inner])[::-1]])
            pt.fill(low_teeth, (205, 214, 220), 0.6)
    pt.fill(np.vstack([_pts(mx, uo), _pts(mx, ui)[::-1]]), _shade(lip, 0.92), 0.6)
    pt.fill(np.vstack([_pts(mx, li), _pts(mx, lo)[::-1]]), lip, 0.6)
    line_colour = _shade(lip, 0.55 - 0.15 * au[A["AU24"]])
    pt.line(_pts(mx, (ui + li) / 2.0) if g["mouth_gap"] < 1.0 else _pts(mx, ui), line_colour,
            1.0 + 0.8 * au[A["AU24"]], 0.6)


def _beard_and_glasses(pt: _Painter, ident: Identity, g: dict, stage: str) -> None:
    if stage == "beard" and ident.beard:
        out = g["outline"]
        jaw = out[out[:, 1] > g["mouth_y"] - 4.0]
        jaw = jaw[np.argsort(np.arctan2(jaw[:, 1], jaw[:, 0]))]
        colour = _mix(ident.skin, ident.hair, 0.75)
        pt.fill(jaw, colour, 0.1)
        # moustache: a band above the upper lip
        mx, uo = g["mouth_x"], g["upper_outer"]
        pt.fill(np.vstack([_pts(mx * 1.1, uo - 5.0), _pts(mx * 1.1, uo - 0.5)[::-1]]), colour, 0.6)
    if stage == "glasses" and ident.glasses:
        frame = ident.glasses_colour
        ey = g["eye_y"]
        for side in (-1.0, 1.0):
            cx = side * ident.eye_spacing
            pt.line(_ellipse(cx, ey, ident.eye_w + 6.0, ident.eye_h + 6.0, 24), frame, 2.2, 0.5,
                    closed=True)
            pt.line(np.array([[side * (ident.eye_spacing + ident.eye_w + 6.0), ey - 2.0],
                              [side * (g["W"] - 1.0), ey - 4.0]]), frame, 2.0, 0.2)
        inner = ident.eye_spacing - ident.eye_w - 6.0
        pt.line(np.array([[-inner, ey - 2.0], [0.0, ey - 4.0], [inner, ey - 2.0]]), frame, 2.0,
                0.7)


def _landmarks(pt: _Painter, g: dict, out_scale: float) -> dict[str, np.ndarray]:
    mx, ui, li, uo, lo = (g["mouth_x"], g["upper_inner"], g["lower_inner"], g["upper_outer"],
                          g["lower_outer"])
    marks = {
        "mouth_left": ((mx[0], ui[0]), 0.6), "mouth_right": ((mx[-1], ui[-1]), 0.6),
        "mouth_top": ((mx[8], uo[8]), 0.6), "mouth_bottom": ((mx[8], lo[8]), 0.6),
        "lips_upper_inner": ((mx[8], ui[8]), 0.6), "lips_lower_inner": ((mx[8], li[8]), 0.6),
        "chin": (tuple(g["chin"]), 0.0), "nose_tip": (tuple(g["nose_tip"]), 1.0),
    }
    for name in ("l", "r"):
        b = g[f"brow_{name}"]
        marks[f"brow_inner_{name}"] = (tuple(b[0]), 0.45)
        marks[f"brow_outer_{name}"] = (tuple(b[-1]), 0.45)
        up, low = g[f"eye_upper_{name}"], g[f"eye_lower_{name}"]
        marks[f"eye_top_{name}"] = (tuple(up[6]), 0.5)
        marks[f"eye_bottom_{name}"] = (tuple(low[6]), 0.5)
    names = list(marks)
    mapped = pt.map(np.array([marks[k][0] for k in names]),
                    np.array([marks[k][1] for k in names])) * out_scale
    return dict(zip(names, mapped))


def render_face(ident: Identity, state: FrameState, rng: np.random.Generator,
                style: str = "real", size: int = 112) -> Rendering:
    """Render one face crop of ``size`` x ``size`` pixels (BGR uint8).

    ``rng`` supplies the per-image randomness (clutter, strands, noise): seed it from the
    image's identity in the data set so that output bytes do not depend on scheduling.
    """
    if style not in STYLES:
        raise ValueError(f"unknown style {style!r}; expected one of {STYLES}")
    canvas = np.empty((2 * size, 2 * size, 3), dtype=np.uint8)
    _background(canvas, ident, style, rng)
    au = np.clip(np.asarray(state.au, dtype=np.float64), 0.0, 1.0)
    g = _face_geometry(ident, au, state.openness, state.gaze)
    pt = _Painter(canvas, state)
    _hair_back(pt, ident, g)
    _body(pt, ident, g)
    pt.fill(g["outline"], ident.skin)
    # cheeks: AU6 raises them (a lighter, slightly warmer patch moving up)
    a6 = au[A["AU6"]]
    cheek = _mix(ident.skin, _shade(ident.skin, 1.08), 0.3 + 0.7 * a6)
    for side in (-1.0, 1.0):
        pt.fill(_ellipse(side * (ident.eye_spacing + 3.0), g["eye_y"] + 22.0 - 7.0 * a6, 13.0,
                         8.0 + 2.0 * a6, 20), cheek, 0.4)
    _beard_and_glasses(pt, ident, g, "beard")
    _eyes(pt, ident, g, au)
    _brows_and_forehead(pt, ident, g, au)
    _nose(pt, ident, g, au)
    _mouth(pt, ident, g, au)
    _hair_front(pt, ident, g, style, rng)
    _beard_and_glasses(pt, ident, g, "glasses")
    pt.flush()
    hand_box = None
    if state.hand is not None and style == "real":
        anchor = pt.map(hand_anchor(g, state.hand.place), 0.6)[0]
        box = draw_hand(canvas, anchor, state.hand, ident.skin, pt.line_scale)
        hand_box = tuple(float(np.clip(v / 2.0, 0.0, size)) for v in box)
    image = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA)
    if style == "real":
        image = degrade(image, state, rng)
    landmarks = _landmarks(pt, g, 0.5)
    return Rendering(image=image, landmarks=landmarks, hand_box=hand_box)
