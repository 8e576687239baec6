"""Action units, expression prototypes and the valence-arousal circumplex of the stand-in.

The renderer is driven by :data:`RENDER_AUS`: the 12 ABAW AUs (labelled, in the official
order of :data:`abaw.vocab.AUS`) followed by AU5 (upper lid raise), AU9 (nose wrinkle) and
AU20 (lip stretch), which the prototypes need but ABAW does not label.

Expressions are EMFACS-style prototype AU combinations (:data:`PROTOTYPES`, indexed like
:data:`abaw.vocab.EXPRESSIONS`) scaled by the person's gains and by an intensity; ``Other``
draws one of :data:`OTHER_COMBOS`, non-prototypical combinations. Valence and arousal come
from the circumplex position of the displayed expression (:data:`CIRCUMPLEX`) scaled by the
intensity.
"""

from __future__ import annotations

import numpy as np

from abaw.vocab import AUS, EXPRESSIONS

RENDER_AUS: tuple[str, ...] = (*AUS, "AU5", "AU9", "AU20")
NUM_RENDER_AUS = len(RENDER_AUS)
AU_INDEX: dict[str, int] = {name: i for i, name in enumerate(RENDER_AUS)}
#: An AU counts as present (label 1) when its intensity reaches this value.
AU_THRESHOLD = 0.3
#: The displayed expression counts as the episode's class (not Neutral) from this intensity.
EXPRESSION_THRESHOLD = 0.3

EXPR = {name: i for i, name in enumerate(EXPRESSIONS)}


def _proto(**weights: float) -> np.ndarray:
    vector = np.zeros(NUM_RENDER_AUS)
    for name, weight in weights.items():
        vector[AU_INDEX[name]] = weight
    return vector


#: Prototype AU weights per expression (EMFACS: happiness 6+12, sadness 1+4+15, surprise
#: 1+2+5+26, fear 1+2+4+5+7+20+26, anger 4+5+7+23/24, disgust 9+10+15). Neutral is empty (its
#: faces get only faint random activity); Other is built from OTHER_COMBOS.
PROTOTYPES: dict[int, np.ndarray] = {
    EXPR["Neutral"]: _proto(),
    EXPR["Anger"]: _proto(AU4=1.0, AU5=0.5, AU7=0.85, AU23=0.8, AU24=0.6),
    EXPR["Disgust"]: _proto(AU9=1.0, AU10=0.95, AU15=0.6, AU4=0.35, AU25=0.35),
    EXPR["Fear"]: _proto(AU1=0.9, AU2=0.7, AU4=0.55, AU5=0.95, AU7=0.45, AU20=0.95, AU25=0.8,
                         AU26=0.45),
    EXPR["Happiness"]: _proto(AU6=0.85, AU12=1.0, AU25=0.55, AU7=0.4, AU10=0.4),
    EXPR["Sadness"]: _proto(AU1=0.95, AU4=0.6, AU15=0.95, AU7=0.15),
    EXPR["Surprise"]: _proto(AU1=1.0, AU2=1.0, AU5=0.9, AU25=0.9, AU26=0.9),
}
#: Per expression, the prototype AUs a person may leave out (partial displays), with the
#: probability of leaving each out.
OPTIONAL_AUS: dict[int, dict[str, float]] = {
    EXPR["Anger"]: {"AU23": 0.35, "AU24": 0.35, "AU5": 0.4},
    EXPR["Disgust"]: {"AU15": 0.4, "AU4": 0.5, "AU25": 0.5},
    EXPR["Fear"]: {"AU4": 0.4, "AU7": 0.5, "AU26": 0.5},
    EXPR["Happiness"]: {"AU25": 0.4, "AU7": 0.5, "AU10": 0.5},
    EXPR["Sadness"]: {"AU4": 0.35, "AU7": 0.6},
    EXPR["Surprise"]: {"AU26": 0.3, "AU5": 0.3},
}
#: Non-prototypical combinations shown as ``Other`` (talking, a polite smile with a frown,
#: a raised brow, a lip press, a sneer without the wrinkle, ...).
OTHER_COMBOS: tuple[np.ndarray, ...] = (
    _proto(AU25=0.7, AU26=0.5),
    _proto(AU25=0.6, AU10=0.4),
    _proto(AU4=0.7, AU12=0.6),
    _proto(AU2=0.8),
    _proto(AU1=0.7, AU2=0.5, AU12=0.5),
    _proto(AU24=0.8, AU4=0.3),
    _proto(AU10=0.7, AU25=0.4),
    _proto(AU12=0.8, AU15=0.6),
    _proto(AU7=0.8, AU25=0.5),
    _proto(AU23=0.7, AU1=0.5),
    _proto(AU6=0.6, AU7=0.75),
    _proto(AU10=0.55, AU12=0.4, AU25=0.6),
)
#: Circumplex position (valence, arousal) of each expression at full intensity. ``Other`` is
#: drawn per episode near the origin (see :func:`episode_va`).
CIRCUMPLEX: dict[int, tuple[float, float]] = {
    EXPR["Neutral"]: (0.0, 0.0),
    EXPR["Anger"]: (-0.55, 0.7),
    EXPR["Disgust"]: (-0.65, 0.3),
    EXPR["Fear"]: (-0.6, 0.75),
    EXPR["Happiness"]: (0.75, 0.45),
    EXPR["Sadness"]: (-0.65, -0.4),
    EXPR["Surprise"]: (0.25, 0.8),
}
#: Expressions raters confuse (used by :mod:`abaw.synth.noise`), each with its neighbours.
NEIGHBOURS: dict[int, tuple[int, ...]] = {
    EXPR["Neutral"]: (EXPR["Other"], EXPR["Sadness"]),
    EXPR["Anger"]: (EXPR["Disgust"], EXPR["Other"]),
    EXPR["Disgust"]: (EXPR["Anger"], EXPR["Sadness"]),
    EXPR["Fear"]: (EXPR["Surprise"], EXPR["Sadness"]),
    EXPR["Happiness"]: (EXPR["Other"], EXPR["Surprise"]),
    EXPR["Sadness"]: (EXPR["Neutral"], EXPR["Fear"]),
    EXPR["Surprise"]: (EXPR["Fear"], EXPR["Happiness"]),
    EXPR["Other"]: (EXPR["Neutral"], EXPR["Happiness"]),
}


def episode_aus(rng: np.random.Generator, expression: int, gains: np.ndarray) -> np.ndarray:
    """The apex AU intensities (before the intensity envelope) of one display of
    ``expression`` by a person with per-AU ``gains``: the prototype with optional AUs dropped
    and per-episode wobble, or for Other a non-prototypical combination."""
    if expression == EXPR["Other"]:
        base = OTHER_COMBOS[int(rng.integers(len(OTHER_COMBOS)))].copy()
    elif expression == EXPR["Neutral"]:
        # faint activity only: stays well under the label threshold
        base = np.where(rng.random(NUM_RENDER_AUS) < 0.25, rng.uniform(0.0, 0.22, NUM_RENDER_AUS),
                        0.0)
        return base
    else:
        base = PROTOTYPES[expression].copy()
        for name, p_drop in OPTIONAL_AUS.get(expression, {}).items():
            if rng.random() < p_drop:
                base[AU_INDEX[name]] = 0.0
    wobble = rng.uniform(0.85, 1.1, NUM_RENDER_AUS)
    return np.clip(base * gains * wobble, 0.0, 1.0)


def episode_va(rng: np.random.Generator, expression: int) -> tuple[float, float]:
    """The circumplex (valence, arousal) of one display at full intensity."""
    if expression == EXPR["Other"]:
        return float(rng.uniform(-0.35, 0.35)), float(rng.uniform(-0.2, 0.45))
    v, a = CIRCUMPLEX[expression]
    return v + float(rng.normal(0, 0.06)), a + float(rng.normal(0, 0.06))


def au_labels(intensities: np.ndarray) -> np.ndarray:
    """Binary labels of the 12 ABAW AUs from render-AU intensities (``..., 15``)."""
    return (intensities[..., : len(AUS)] >= AU_THRESHOLD).astype(np.int64)
