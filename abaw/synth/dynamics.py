"""Video dynamics: what a synthetic person does frame by frame, and the noiseless truth.

A video is a dense timeline of ``n`` frames. Expressions come in onset-apex-offset
*episodes* separated by neutral gaps; an episode's apex AUs come from
:func:`abaw.synth.expressions.episode_aus` (sometimes blended with a weaker second display)
and are scaled by a smooth envelope. Speech adds oscillating AU25/AU26. Valence/arousal
follow the circumplex position of the displayed state scaled by its intensity, plus a slow
per-video mood drift that also leaks faintly into the face (a good mood lifts the lip
corners a little). Head pose, lighting, gaze, blur and noise drift smoothly; blinks close the
eyes for a few frames; hands cover part of the face in some stretches.

The noiseless latent truth of each frame: ``expression`` (the episode's class while its
intensity is at least :data:`~abaw.synth.expressions.EXPRESSION_THRESHOLD`, else Neutral),
``va`` and the AU intensities (labels = intensity >= ``AU_THRESHOLD``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from abaw.synth.expressions import (
    AU_INDEX,
    CIRCUMPLEX,
    EXPR,
    EXPRESSION_THRESHOLD,
    NEIGHBOURS,
    NUM_RENDER_AUS,
    episode_aus,
    episode_va,
)
from abaw.synth.identity import Identity
from abaw.synth.state import HAND_PLACES, FrameState, Hand
from abaw.vocab import NUM_EXPRESSIONS

#: Share of episodes per class (Neutral ... Other). Softer than Aff-Wild2's imbalance so a
#: model trained for minutes still sees every class; low-intensity frames of any episode are
#: labelled Neutral, which raises Neutral's share of frames.
EPISODE_CLASS_PROBS = np.array([0.06, 0.1, 0.09, 0.09, 0.21, 0.14, 0.11, 0.2])


@dataclass(frozen=True)
class WildSettings:
    """How wild a set of videos is (the LSD synthetic style turns all of it off)."""

    pose: float = 1.0          # multiplies roll/yaw/offset/scale variation
    degradations: bool = True  # lighting, low light, blur, noise, JPEG
    hand_video_rate: float = 0.35  # share of videos with hand episodes
    hand_frame_share: float = 0.25  # share of such a video's frames with a hand


@dataclass
class VideoLatent:
    """The dense per-frame truth and drawing parameters of one video."""

    n: int
    au: np.ndarray            # (n, 15) render-AU intensities
    expression: np.ndarray    # (n,) latent expression
    display: np.ndarray       # (n,) intensity of the current episode's display (0 in gaps)
    episode: np.ndarray       # (n,) episode index, -1 in gaps
    episode_class: np.ndarray  # (episodes,) class of each episode
    va: np.ndarray            # (n, 2) latent valence, arousal
    openness: np.ndarray
    gaze: np.ndarray          # (n, 2)
    pose: np.ndarray          # (n, 5) roll, yaw, scale, dx, dy
    light: np.ndarray         # (n, 3) angle, strength, brightness
    blur: np.ndarray
    noise: np.ndarray
    jpeg: np.ndarray          # (n,) int quality, 0 = none
    hands: list[Hand | None]
    face: np.ndarray          # (n,) bool, False = no face detected in this frame (no crop)

    def state(self, i: int) -> FrameState:
        """The renderer's state for frame ``i`` (0-based)."""
        roll, yaw, scale, dx, dy = self.pose[i]
        angle, strength, brightness = self.light[i]
        return FrameState(
            au=self.au[i], openness=float(self.openness[i]),
            gaze=(float(self.gaze[i, 0]), float(self.gaze[i, 1])),
            roll=float(roll), yaw=float(yaw), scale=float(scale), dx=float(dx), dy=float(dy),
            light_angle=float(angle), light_strength=float(strength),
            brightness=float(brightness), blur=float(self.blur[i]), noise=float(self.noise[i]),
            jpeg_quality=int(self.jpeg[i]), hand=self.hands[i],
        )


def smooth_walk(rng: np.random.Generator, n: int, width: float) -> np.ndarray:
    """A smooth zero-mean process of unit standard deviation: white noise through a Gaussian
    kernel of ``width`` frames (sigma)."""
    width = max(width, 0.5)
    half = int(3 * width) + 1
    kernel = np.exp(-0.5 * (np.arange(-half, half + 1) / width) ** 2)
    kernel /= np.sqrt((kernel**2).sum())
    return np.convolve(rng.standard_normal(n + 2 * half), kernel, mode="valid")[:n]


def _envelope(length: int, rng: np.random.Generator) -> np.ndarray:
    """Onset-apex-offset curve in [0, 1] (smoothstep ramps)."""
    onset = max(1, int(length * rng.uniform(0.1, 0.25)))
    offset = max(1, int(length * rng.uniform(0.1, 0.25)))
    apex = max(0, length - onset - offset)
    up = np.linspace(0.0, 1.0, onset + 1)[1:]
    down = np.linspace(1.0, 0.0, offset + 1)[:-1]
    ramp = np.concatenate([up, np.ones(apex), down])[:length]
    return ramp * ramp * (3.0 - 2.0 * ramp)


def simulate_video(rng: np.random.Generator, ident: Identity, n: int,
                   wild: WildSettings = WildSettings(), class_probs: np.ndarray | None = None,
                   faceless_rate: float = 0.0) -> VideoLatent:
    """Simulate ``n`` dense frames of one person."""
    probs = EPISODE_CLASS_PROBS if class_probs is None else class_probs
    # each video leans towards a few classes (a person's situation), like real videos
    probs = rng.dirichlet(probs * 25.0 + 0.05)
    gains = np.asarray(ident.au_gain)
    au = np.zeros((n, NUM_RENDER_AUS))
    display = np.zeros(n)
    episode = np.full(n, -1, dtype=np.int64)
    va_display = np.zeros((n, 2))
    classes: list[int] = []
    t = min(int(rng.integers(0, 15)), n // 4)
    while t < n:
        length = int(rng.integers(40, 140))
        cls = int(rng.choice(NUM_EXPRESSIONS, p=probs))
        peak = rng.uniform(0.65, 1.0) if cls != EXPR["Neutral"] else 1.0
        env = _envelope(length, rng) * peak
        stop = min(n, t + length)
        env = env[: stop - t]
        apex = episode_aus(rng, cls, gains)
        v, a = episode_va(rng, cls)
        if cls not in (EXPR["Neutral"], EXPR["Other"]) and rng.random() < 0.2:
            second = int(rng.choice(NEIGHBOURS[cls]))  # a blended, partial second display
            if second in CIRCUMPLEX and second != EXPR["Neutral"]:
                weight = rng.uniform(0.25, 0.45)
                apex = np.maximum(apex, weight * episode_aus(rng, second, gains))
                v2, a2 = CIRCUMPLEX[second]
                v, a = v + weight * 0.5 * v2, a + weight * 0.5 * a2
        au[t:stop] = env[:, None] * apex[None, :]
        display[t:stop] = env if cls != EXPR["Neutral"] else 0.0
        episode[t:stop] = len(classes)
        va_display[t:stop] = env[:, None] * np.array([v, a])[None, :]
        classes.append(cls)
        t = stop + int(rng.integers(2, 20))
    episode_class = np.asarray(classes, dtype=np.int64)
    in_episode = episode >= 0
    latent_class = np.where(in_episode, episode_class[np.maximum(episode, 0)], EXPR["Neutral"])
    expression = np.where(display >= EXPRESSION_THRESHOLD, latent_class, EXPR["Neutral"])

    # slow mood drift: part of VA, and faintly visible
    mood = np.stack([0.16 * smooth_walk(rng, n, 60.0), 0.14 * smooth_walk(rng, n, 60.0)], axis=1)
    mood += rng.normal(0.0, 0.08, 2)
    au[:, AU_INDEX["AU12"]] += np.clip(mood[:, 0], 0, None) * 0.35
    au[:, AU_INDEX["AU15"]] += np.clip(-mood[:, 0], 0, None) * 0.15
    au[:, AU_INDEX["AU5"]] += np.clip(mood[:, 1], 0, None) * 0.4
    # speech: stretches of oscillating lip parting and jaw movement
    talking = smooth_walk(rng, n, 25.0) > rng.uniform(0.3, 1.2)
    mouth = np.abs(np.sin(np.arange(n) * rng.uniform(0.5, 1.1) + rng.uniform(0, 6)))
    au[:, AU_INDEX["AU25"]] = np.maximum(au[:, AU_INDEX["AU25"]], talking * 0.65 * mouth)
    au[:, AU_INDEX["AU26"]] = np.maximum(au[:, AU_INDEX["AU26"]], talking * 0.4 * mouth**2)
    au += np.clip(0.04 * smooth_walk(rng, n * NUM_RENDER_AUS, 6.0).reshape(NUM_RENDER_AUS, n).T,
                  0, None)
    au = np.clip(au, 0.0, 1.0)
    va = np.clip(va_display + mood, -1.0, 1.0)

    # eyes: blinks every few seconds, gaze drift
    openness = np.ones(n)
    blink = int(rng.integers(0, 60))
    while blink < n:
        for k, level in enumerate((0.5, 0.05, 0.05, 0.5)):
            if blink + k < n:
                openness[blink + k] = level
        blink += int(rng.integers(40, 140))
    gaze = np.stack([0.4 * smooth_walk(rng, n, 15.0), 0.3 * smooth_walk(rng, n, 15.0)], axis=1)

    p = wild.pose
    pose = np.stack([
        p * (rng.normal(0, 3) + 5.0 * smooth_walk(rng, n, 30.0)),
        p * np.clip(rng.normal(0, 0.1) + 0.22 * smooth_walk(rng, n, 30.0), -0.6, 0.6),
        1.0 + p * (rng.normal(0, 0.03) + 0.04 * smooth_walk(rng, n, 40.0)),
        p * (rng.normal(0, 2) + 3.5 * smooth_walk(rng, n, 30.0)),
        p * (rng.normal(0, 2) + 3.5 * smooth_walk(rng, n, 30.0)),
    ], axis=1)

    if wild.degradations:
        low_light = rng.random() < 0.2
        base = rng.uniform(0.4, 0.62) if low_light else rng.uniform(0.8, 1.1)
        light = np.stack([
            rng.uniform(0, 2 * np.pi) + 0.3 * smooth_walk(rng, n, 50.0),
            np.clip(rng.uniform(0.0, 0.45) + 0.08 * smooth_walk(rng, n, 50.0), 0.0, 0.7),
            np.clip(base + 0.06 * smooth_walk(rng, n, 40.0), 0.25, 1.2),
        ], axis=1)
        blur = np.clip(rng.uniform(0.0, 0.6) + 0.3 * smooth_walk(rng, n, 10.0), 0.0, 1.4)
        noise = np.clip(rng.uniform(1.0, 5.0) + 8.0 * (1.0 - light[:, 2]), 0.0, 12.0)
        jpeg = np.full(n, int(rng.integers(25, 60)) if rng.random() < 0.4 else 0, dtype=np.int64)
    else:
        light = np.tile([0.0, 0.0, 1.0], (n, 1))
        blur = np.zeros(n)
        noise = np.zeros(n)
        jpeg = np.zeros(n, dtype=np.int64)

    hands: list[Hand | None] = [None] * n
    if wild.hand_video_rate > 0 and rng.random() < wild.hand_video_rate:
        target = int(wild.hand_frame_share * n)
        covered = 0
        while covered < target:
            length = min(int(rng.integers(10, 50)), max(target - covered, 3))
            start = int(rng.integers(0, max(1, n - length)))
            hand = sample_hand(rng)
            for i in range(start, min(n, start + length)):
                hands[i] = hand
            covered += length

    face = np.ones(n, dtype=bool)
    if faceless_rate > 0:
        covered, target = 0, int(round(faceless_rate * n))
        while covered < target:
            length = min(int(rng.integers(3, 15)), target - covered)
            start = int(rng.integers(0, max(1, n - length)))
            face[start:start + length] = False
            covered += length

    return VideoLatent(n=n, au=au, expression=expression.astype(np.int64), display=display,
                       episode=episode, episode_class=episode_class, va=va, openness=openness,
                       gaze=gaze, pose=pose, light=light, blur=blur, noise=noise, jpeg=jpeg,
                       hands=hands, face=face)


def sample_hand(rng: np.random.Generator) -> Hand:
    """A hand occluder at a random facial place."""
    place = HAND_PLACES[int(rng.integers(len(HAND_PLACES)))]
    angle = float(rng.normal(0, 25)) + (180.0 if place == "chin" and rng.random() < 0.5 else 0.0)
    return Hand(place=place, size=float(rng.uniform(24, 36)), angle=angle,
                shift=(float(rng.normal(0, 5)), float(rng.normal(0, 5))),
                tone=float(rng.uniform(-0.12, 0.1)))


def single_frame(rng: np.random.Generator, ident: Identity, expression: int,
                 wild: WildSettings, hand_rate: float = 0.0) -> tuple[FrameState, np.ndarray,
                                                                      tuple[float, float]]:
    """One still image (the LSD sets): a display of ``expression`` near its apex. Returns the
    state, the AU intensities and the latent (valence, arousal)."""
    intensity = rng.uniform(0.6, 1.0)
    au = episode_aus(rng, expression, np.asarray(ident.au_gain)) * intensity
    au = np.clip(au + np.clip(rng.normal(0, 0.04, NUM_RENDER_AUS), 0, None), 0, 1)
    v, a = episode_va(rng, expression)
    p = wild.pose
    kwargs = dict(au=au, openness=1.0 if rng.random() > 0.05 else 0.3,
                  gaze=(float(rng.normal(0, 0.3)), float(rng.normal(0, 0.2))),
                  roll=float(p * rng.normal(0, 6)), yaw=float(p * np.clip(rng.normal(0, 0.22), -0.6, 0.6)),
                  scale=float(1.0 + p * rng.normal(0, 0.05)), dx=float(p * rng.normal(0, 4)),
                  dy=float(p * rng.normal(0, 4)))
    if wild.degradations:
        low = rng.random() < 0.2
        brightness = rng.uniform(0.4, 0.62) if low else rng.uniform(0.8, 1.1)
        kwargs.update(light_angle=float(rng.uniform(0, 2 * np.pi)),
                      light_strength=float(rng.uniform(0.0, 0.5)), brightness=float(brightness),
                      blur=float(np.clip(rng.normal(0.4, 0.4), 0, 1.8)),
                      noise=float(rng.uniform(1.0, 5.0) + 10.0 * (1.0 - brightness)),
                      jpeg_quality=int(rng.integers(25, 60)) if rng.random() < 0.4 else 0)
    hand = sample_hand(rng) if rng.random() < hand_rate else None
    return FrameState(hand=hand, **kwargs), au, (intensity * v, intensity * a)
