"""A contact sheet of the stand-in, so a person can see what the data is.

Top block: one row per expression (Neutral ... Other) and one column per identity — real-like
crops (left columns, some with in-the-wild degradations) then the LSD synthetic style
(right columns, upsampled to the same cell size). Bottom block: one row per ABAW AU (plus
the three rendered-only AUs) at increasing intensity on a fixed neutral face.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from abaw.fileio import atomic_write_bytes
from abaw.synth.expressions import NUM_RENDER_AUS, RENDER_AUS, episode_aus
from abaw.synth.identity import sample_identity
from abaw.synth.render import render_face
from abaw.synth.state import FrameState, Hand
from abaw.vocab import EXPRESSIONS

CELL = 112
LABEL_W = 96


def _label(cell_row: np.ndarray, text: str) -> np.ndarray:
    pad = np.full((cell_row.shape[0], LABEL_W, 3), 255, np.uint8)
    cv2.putText(pad, text, (4, cell_row.shape[0] // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42,
                (0, 0, 0), 1, cv2.LINE_AA)
    return np.hstack([pad, cell_row])


def contact_sheet(seed: int = 0, identities: int = 8, synthetic_columns: int = 2,
                  intensities: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> np.ndarray:
    """Build the contact sheet image (BGR uint8)."""
    rng = np.random.default_rng([seed, 7001])
    people = [sample_identity(rng) for _ in range(identities + synthetic_columns)]
    rows = []
    for expression, name in enumerate(EXPRESSIONS):
        cells = []
        for col, person in enumerate(people):
            cell_rng = np.random.default_rng([seed, expression, col])
            au = episode_aus(cell_rng, expression, np.asarray(person.au_gain))
            au = au * (0.25 if expression == 0 else 0.9)
            if col < identities:
                wild = col % 3 == 2
                hand = Hand("cheek_right", 20.0, 15.0) if (wild and expression % 4 == 1) else None
                state = FrameState(au=au, roll=float(cell_rng.normal(0, 4)),
                                   light_strength=0.35 if wild else 0.1, light_angle=0.7,
                                   brightness=0.6 if wild else 1.0, blur=0.8 if wild else 0.0,
                                   noise=6.0 if wild else 1.0, jpeg_quality=40 if wild else 0,
                                   hand=hand)
                cells.append(render_face(person, state, cell_rng, "real", CELL).image)
            else:
                small = render_face(person, FrameState(au=au), cell_rng, "synthetic", CELL // 2)
                cells.append(cv2.resize(small.image, (CELL, CELL), interpolation=cv2.INTER_LINEAR))
        rows.append(_label(np.hstack(cells), name))
    face = people[0]
    for au_index, name in enumerate(RENDER_AUS):
        cells = []
        for level in intensities:
            au = np.zeros(NUM_RENDER_AUS)
            au[au_index] = level
            cells.append(render_face(face, FrameState(au=au), np.random.default_rng(0), "real",
                                     CELL).image)
        rows.append(_label(np.hstack(cells), f"{name} 0..1"))
    width = max(row.shape[1] for row in rows)
    return np.vstack([np.hstack([row, np.full((row.shape[0], width - row.shape[1], 3), 255,
                                              np.uint8)]) for row in rows])


def write_preview(path: str | Path, seed: int = 0) -> Path:
    """Write the contact sheet as a PNG (atomically) and return its path."""
    ok, buf = cv2.imencode(".png", contact_sheet(seed))
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return atomic_write_bytes(path, buf.tobytes())
