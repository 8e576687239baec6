"""Temporal smoothing of per-frame predictions within each video, by frame number.

Frame-level predictions are noisy; expressions, AUs and affect change slowly, so averaging a
frame with its neighbours in time helps. The neighbours are found by **frame number**, not
by row order: s-Aff-Wild2 frames are sparse (the annotated frames of a video are a few
frames apart, with long gaps) and the per-video tracks have frames without a face crop.

Conventions:

- an image name is ``<video>/<frame>.<ext>`` (``121-30-1920x1080/00019.jpg``): the video is
  everything before the last ``/``, the frame the integer stem after it (:func:`video_frames`);
- :func:`gaussian_smooth` replaces each row by the weighted mean of the rows of the **same
  video** whose frame is within ``3 sigma`` frames, weight ``exp(-d^2 / (2 sigma^2))`` for a
  frame distance ``d``; two videos never mix, a gap longer than ``3 sigma`` frames is never
  bridged, and ``sigma = 0`` returns the values unchanged. A weighted mean of probability
  vectors is a probability vector, and of values in [-1, 1] stays in [-1, 1].
- vectorised: one pass over the rows sorted by (video, frame) per row offset, so the cost
  is ``N x (rows within 3 sigma frames)``, milliseconds for 10,000 rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from abaw.errors import AbawError

#: how far (in sigmas) the Gaussian reaches; beyond it a weight is below 1.2 %
TRUNCATE = 3.0


def video_frames(images: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(video index, frame number) per image name ``<video>/<frame>.<ext>``, both int64.

    Video indices number the distinct videos in name order.
    """
    videos, frames = [], []
    for name in images:
        video, slash, file = str(name).replace("\\", "/").rpartition("/")
        stem = file.rsplit(".", 1)[0]
        if not slash or not stem.isdigit():
            raise AbawError(f"{name!r}: not a <video>/<frame>.jpg image name (temporal "
                            "smoothing needs the video and the frame number)")
        videos.append(video)
        frames.append(int(stem))
    codes = np.unique(np.asarray(videos, dtype=object), return_inverse=True)[1] if videos else []
    return np.asarray(codes, dtype=np.int64).reshape(-1), np.asarray(frames, dtype=np.int64)


def gaussian_smooth(values: np.ndarray, videos: np.ndarray, frames: np.ndarray,
                    sigma: float) -> np.ndarray:
    """``values`` ((N,) or (N, C)) smoothed within each video over frame distance (float64).

    ``videos`` and ``frames`` are (N,) integers (:func:`video_frames`); ``sigma`` in frames.
    """
    x = np.asarray(values, dtype=np.float64)
    if sigma < 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    if x.shape[:1] != np.shape(videos) or np.shape(videos) != np.shape(frames):
        raise ValueError(f"values {x.shape}, videos {np.shape(videos)} and frames "
                         f"{np.shape(frames)} must have the same number of rows")
    if sigma == 0 or len(x) < 2:
        return x.copy()
    flat = x.reshape(len(x), -1)
    order = np.lexsort((frames, videos))
    video, frame, sorted_x = np.asarray(videos)[order], np.asarray(frames)[order], flat[order]
    radius = TRUNCATE * sigma
    numerator = sorted_x.copy()  # each row's own weight is 1
    denominator = np.ones(len(x))
    for offset in range(1, len(x)):
        distance = (frame[offset:] - frame[:-offset]).astype(np.float64)
        near = (video[offset:] == video[:-offset]) & (distance <= radius)
        # rows are sorted by (video, frame): a pair further apart in rows is further apart
        # in frames (or in another video), so once no pair is near, none further is
        if not near.any():
            break
        weight = np.where(near, np.exp(-distance ** 2 / (2.0 * sigma ** 2)), 0.0)
        numerator[offset:] += weight[:, None] * sorted_x[:-offset]
        numerator[:-offset] += weight[:, None] * sorted_x[offset:]
        denominator[offset:] += weight
        denominator[:-offset] += weight
    out = np.empty_like(flat)
    out[order] = numerator / denominator[:, None]
    return out.reshape(x.shape)
