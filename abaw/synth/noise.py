"""Annotation noise: how the official-format labels differ from the noiseless latent truth.

Human raters of Aff-Wild2 disagree; the stand-in imitates that with documented rates
(:class:`RaterNoise`, also in docs/SYNTH.md):

- **valence/arousal**: a per-video rater bias (sd ``va_bias_sd`` per dimension), a slow
  per-frame jitter (sd ``va_jitter_sd``, smooth over ``va_jitter_frames``) and a little white
  noise (``va_white_sd``); clipped to [-1, 1].
- **expression**: each display (episode) is labelled as a *neighbouring* expression
  (:data:`abaw.synth.expressions.NEIGHBOURS`, e.g. Fear <-> Surprise, Anger <-> Disgust) with
  probability ``expr_episode_confusion``; the rater's onset/offset threshold differs per video
  (sd ``expr_threshold_sd`` around the latent threshold), so frames near the start and end of
  a display flip between Neutral and the class; plus ``expr_frame_flip`` of single frames
  labelled as a neighbour.
- **AUs**: the rater sees the intensity with a per-video, per-AU offset (sd ``au_video_sd``)
  plus per-frame noise (sd ``au_frame_sd``) and thresholds it like the latent labels.
- **LSD** real-like labels: ``lsd_confusion`` of the images are labelled as a neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abaw.synth.dynamics import VideoLatent, smooth_walk
from abaw.synth.expressions import AU_THRESHOLD, EXPR, EXPRESSION_THRESHOLD, NEIGHBOURS
from abaw.vocab import LSD_CLASSES, NUM_AUS


@dataclass(frozen=True)
class RaterNoise:
    """Documented annotation-noise rates (see the module docstring)."""

    va_bias_sd: float = 0.07
    va_jitter_sd: float = 0.07
    va_jitter_frames: float = 12.0
    va_white_sd: float = 0.03
    expr_episode_confusion: float = 0.1
    expr_threshold_sd: float = 0.06
    expr_frame_flip: float = 0.02
    au_video_sd: float = 0.04
    au_frame_sd: float = 0.07
    lsd_confusion: float = 0.05


@dataclass(frozen=True)
class VideoLabels:
    """Noisy per-frame labels of one video (no sentinels yet)."""

    va: np.ndarray          # (n, 2) float
    expression: np.ndarray  # (n,) int 0..7
    aus: np.ndarray         # (n, 12) int 0/1


def _neighbour(rng: np.random.Generator, cls: int) -> int:
    options = NEIGHBOURS[cls]
    return int(options[int(rng.integers(len(options)))])


def rate_video(rng: np.random.Generator, latent: VideoLatent,
               noise: RaterNoise = RaterNoise()) -> VideoLabels:
    """Label a video the way a (noisy) rater would."""
    n = latent.n
    bias = rng.normal(0.0, noise.va_bias_sd, 2)
    jitter = np.stack([smooth_walk(rng, n, noise.va_jitter_frames) for _ in range(2)], axis=1)
    va = latent.va + bias + noise.va_jitter_sd * jitter + rng.normal(0, noise.va_white_sd, (n, 2))
    va = np.clip(va, -1.0, 1.0)

    rated_class = latent.episode_class.copy()
    for k, cls in enumerate(latent.episode_class):
        if rng.random() < noise.expr_episode_confusion:
            rated_class[k] = _neighbour(rng, int(cls))
    threshold = EXPRESSION_THRESHOLD + rng.normal(0.0, noise.expr_threshold_sd)
    in_episode = latent.episode >= 0
    episode_label = np.where(in_episode, rated_class[np.maximum(latent.episode, 0)],
                             EXPR["Neutral"])
    expression = np.where(latent.display >= threshold, episode_label, EXPR["Neutral"])
    for i in np.flatnonzero(rng.random(n) < noise.expr_frame_flip):
        expression[i] = _neighbour(rng, int(expression[i]))

    seen = (latent.au[:, :NUM_AUS] + rng.normal(0.0, noise.au_video_sd, NUM_AUS)
            + rng.normal(0.0, noise.au_frame_sd, (n, NUM_AUS)))
    aus = (seen >= AU_THRESHOLD).astype(np.int64)
    return VideoLabels(va=va, expression=expression.astype(np.int64), aus=aus)


#: LSD class index -> MTL expression index (LSD has no Neutral/Other).
LSD_TO_EXPR = np.array([EXPR[name] for name in LSD_CLASSES])
_EXPR_TO_LSD = {int(e): i for i, e in enumerate(LSD_TO_EXPR)}


def rate_lsd(rng: np.random.Generator, lsd_class: int, noise: RaterNoise = RaterNoise()) -> int:
    """The rated LSD class of a real-like image (confusions only between LSD classes)."""
    if rng.random() >= noise.lsd_confusion:
        return lsd_class
    options = [_EXPR_TO_LSD[e] for e in NEIGHBOURS[int(LSD_TO_EXPR[lsd_class])]
               if e in _EXPR_TO_LSD]
    return options[int(rng.integers(len(options)))] if options else lsd_class
