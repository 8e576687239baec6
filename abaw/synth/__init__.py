"""The embedded synthetic stand-in for Aff-Wild2 / s-Aff-Wild2 and the LSD data.

A deterministic parametric face generator writing the official ABAW on-disk layouts (MTL,
LSD, per-video), with documented annotation noise and the noiseless latent truth kept apart
(for the oracle ceiling). See docs/SYNTH.md. Entry point: :func:`generate`.
"""

from __future__ import annotations

from abaw.synth.generator import (
    generate,
    generate_lsd,
    generate_mtl,
    generate_per_video,
    read_manifest,
)

__all__ = ["generate", "generate_lsd", "generate_mtl", "generate_per_video", "read_manifest"]
