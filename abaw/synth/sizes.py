"""How much data each ``--size`` generates.

``tiny`` is for tests (a few seconds, tens of images per split); ``small`` is for the tests
that prove learning (hundreds of images, new people in every split, ~10 s to render);
``default`` is what
``make mtl`` / ``make lsd`` train on: about 10k MTL training frames, several thousand LSD
images and a few per-video videos — enough for a learning curve that separates methods,
small enough to train on 2 CPU cores in minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

from abaw.errors import ConfigError


@dataclass(frozen=True)
class SynthSize:
    """Counts per layout and split."""

    mtl_videos: tuple[int, int, int]        # train, validation, test videos
    mtl_frames: tuple[int, int]             # sampled frames per video (min, max)
    lsd_images: tuple[int, int, int]        # train (synthetic style), validation, test
    per_video_videos: tuple[int, int, int]  # train, validation, test videos
    per_video_frames: tuple[int, int]       # frames per video (min, max)
    lsd_identities: int                     # size of the LSD person pool


SIZES: dict[str, SynthSize] = {
    "tiny": SynthSize(mtl_videos=(6, 3, 2), mtl_frames=(7, 10), lsd_images=(60, 24, 24),
                      per_video_videos=(2, 1, 1), per_video_frames=(14, 18), lsd_identities=12),
    "small": SynthSize(mtl_videos=(24, 8, 4), mtl_frames=(18, 24), lsd_images=(600, 160, 80),
                       per_video_videos=(2, 1, 1), per_video_frames=(20, 24), lsd_identities=60),
    "default": SynthSize(mtl_videos=(120, 30, 30), mtl_frames=(60, 110),
                         lsd_images=(4000, 800, 1200), per_video_videos=(30, 16, 16),
                         per_video_frames=(120, 180), lsd_identities=300),
}


def get_size(name: str) -> SynthSize:
    """The :class:`SynthSize` called ``name`` (a clear error for an unknown name)."""
    try:
        return SIZES[name]
    except KeyError:
        raise ConfigError(f"unknown synthetic size {name!r}; expected one of "
                          f"{', '.join(SIZES)}") from None
