"""Validation plots written as PNG files (matplotlib's headless Agg renderer).

Conventions: the confusion matrix has true classes as rows and predicted classes as columns
over the FIXED class list (a class absent from both still gets its row and column), rows
normalised to sum to 1 when ``normalize=True`` (an empty row stays 0). The image is exactly
``figsize · dpi`` pixels (no tight bounding box, so its size is predictable) and is written
atomically. matplotlib is imported on first use, never at import time.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from abaw.errors import ConfigError
from abaw.fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["confusion_matrix", "confusion_matrix_figure", "png_bytes", "save_confusion_matrix"]


def confusion_matrix(y_true: object, y_pred: object, num_classes: int) -> np.ndarray:
    """Counts ``(num_classes, num_classes)``: entry ``[t, p]`` = rows with truth t, prediction p."""
    truth = np.asarray(y_true, dtype=np.int64).ravel()
    pred = np.asarray(y_pred, dtype=np.int64).ravel()
    if truth.shape != pred.shape:
        raise ConfigError(f"y_true and y_pred differ in length ({truth.size} vs {pred.size})")
    for name, labels in (("y_true", truth), ("y_pred", pred)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ConfigError(f"{name} holds labels outside 0..{num_classes - 1}")
    flat = np.bincount(truth * num_classes + pred, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes)


def save_confusion_matrix(path: str | Path, y_true: object, y_pred: object,
                          class_names: Sequence[str], **options: Any) -> Path:
    """Draw the confusion matrix of ``y_true`` vs ``y_pred`` and write it to ``path`` as PNG;
    ``options`` are those of :func:`confusion_matrix_figure` (normalize, title, figsize, dpi)."""
    figure = confusion_matrix_figure(y_true, y_pred, class_names, **options)
    return atomic_write_bytes(path, png_bytes(figure))


def png_bytes(figure: Figure) -> bytes:
    """``figure`` rendered as PNG at its own dpi (Agg canvas, no pyplot)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi)
    return buffer.getvalue()


def confusion_matrix_figure(
    y_true: object,
    y_pred: object,
    class_names: Sequence[str],
    normalize: bool = True,
    title: str | None = None,
    figsize: tuple[float, float] = (6.0, 5.0),
    dpi: int = 100,
) -> Figure:
    """The confusion matrix of ``y_true`` vs ``y_pred`` as a matplotlib Figure.

    Each cell shows the row-normalised rate (or the count when ``normalize=False``); the
    counts per true class are appended to the row labels so a rare class is visible as such.
    """
    # A bare Figure renders PNG through the Agg canvas without pyplot: headless, no global
    # backend switch (a user's notebook keeps its own), nothing left open between epochs.
    from matplotlib.figure import Figure

    names = list(class_names)
    counts = confusion_matrix(y_true, y_pred, len(names))
    support = counts.sum(axis=1)
    if normalize:
        values = counts / np.where(support > 0, support, 1)[:, None]
        cell_format = "{:.2f}"
    else:
        values = counts.astype(np.float64)
        cell_format = "{:.0f}"

    figure = Figure(figsize=figsize, dpi=dpi)
    axes = figure.add_subplot(1, 1, 1)
    image = axes.imshow(values, cmap="Blues", vmin=0.0, vmax=1.0 if normalize else None)
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    ticks = np.arange(len(names))
    axes.set_xticks(ticks, labels=names, rotation=45, ha="right")
    axes.set_yticks(ticks, labels=[f"{n} ({s})" for n, s in zip(names, support)])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (count)")
    if title:
        axes.set_title(title)
    high = values.max() if values.size else 0.0
    for row in range(len(names)):
        for col in range(len(names)):
            value = values[row, col]
            colour = "white" if high > 0 and value > 0.6 * high else "black"
            axes.text(col, row, cell_format.format(value), ha="center", va="center",
                      color=colour, fontsize=8)
    figure.subplots_adjust(left=0.25, bottom=0.22, right=0.95, top=0.92)
    return figure
