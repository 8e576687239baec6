"""The saved raw predictions of a run: ``predictions.npz`` (test) and
``validation_predictions.npz`` (validation), written by the prediction writer
(:mod:`abaw.training.writer`) and the runner, read by ``abaw ensemble`` and the last-mile
table.

Format: a NumPy ``.npz`` archive with ``images`` (the distinct predicted image names, str) and
one float64 array per model output, one row per image, *before* any post-processing (MTL:
``va`` (N, 2), ``expr_prob`` (N, 8), ``au_prob`` (N, 12)); the validation file also holds
the truth row for row (``truth_*``, for reports), which :func:`load_predictions` leaves out. Every step of the post-processing
(thresholds, biases, smoothing, ensembles) works from these files without the model.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from abaw.errors import FormatError
from abaw.fileio import atomic_write_bytes, is_device

#: the validation twin of ``predictions.npz`` (same folder)
VALIDATION_PREDICTIONS_FILE = "validation_predictions.npz"
#: arrays named so hold the validation truth row for row (for reports), not predictions
TRUTH_PREFIX = "truth_"


@dataclass
class SavedPredictions:
    """Raw predictions: ``images`` (distinct names) and ``arrays`` (one row per image)."""

    images: list[str]
    arrays: dict[str, np.ndarray]

    def subset(self, rows: np.ndarray) -> SavedPredictions:
        """The given rows (indices or a boolean mask), in that order."""
        names = np.asarray(self.images, dtype=object)[rows]
        return SavedPredictions(list(names), {k: v[rows] for k, v in self.arrays.items()})

    def row_indices(self, images: list[str], what: str = "predictions") -> np.ndarray:
        """The row of each of ``images`` (repeats allowed); every name must be predicted."""
        position = {name: i for i, name in enumerate(self.images)}
        missing = [name for name in images if name not in position]
        if missing:
            raise FormatError(what, None, f"no prediction for {missing[0]!r} ({len(missing)} "
                                          f"of {len(images)} images have none)")
        return np.asarray([position[n] for n in images], dtype=np.int64)

    def reordered(self, images: list[str], what: str = "predictions") -> SavedPredictions:
        """The rows of ``images`` in that order; every name must be predicted here."""
        if list(images) == self.images:
            return self
        return self.subset(self.row_indices(images, what))


def save_predictions(path: str | Path, images: list[str], arrays: dict[str, np.ndarray]) -> Path:
    """Write ``images`` and ``arrays`` as a compressed ``.npz`` (atomically)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, images=np.asarray(images, dtype=str), **arrays)
    return atomic_write_bytes(path, buffer.getvalue())


def load_predictions(path: str | Path) -> SavedPredictions:
    """Read a predictions ``.npz``; every array must have one row per image, finite values."""
    path = Path(path)
    if is_device(path):
        raise FormatError(path, None, "is a device, not a file")
    if not path.is_file():
        raise FormatError(path, None, "predictions file not found")
    try:
        with np.load(path, allow_pickle=False) as archive:
            content = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise FormatError(path, None, f"not a predictions .npz archive ({err})") from None
    if "images" not in content:
        raise FormatError(path, None, "no 'images' array")
    images = content.pop("images")
    if images.ndim != 1 or images.dtype.kind != "U":
        raise FormatError(path, None, "'images' must be a 1-D array of names")
    arrays = {}
    for key, value in content.items():
        if key.startswith(TRUTH_PREFIX):
            continue
        if value.dtype.kind not in "fiub" or value.ndim == 0 or len(value) != len(images):
            raise FormatError(path, None, f"array {key!r} must be numeric with one row per "
                                          f"image ({len(images)})")
        value = value.astype(np.float64)
        if not np.isfinite(value).all():
            raise FormatError(path, None, f"array {key!r} holds NaN or infinite values")
        arrays[key] = value
    names = images.tolist()
    if len(set(names)) != len(names):
        raise FormatError(path, None, "an image is predicted twice")
    return SavedPredictions(names, arrays)
