"""The report's figures, each a matplotlib :class:`~matplotlib.figure.Figure` (Agg, no pyplot).

Every function takes plain arrays or a DataFrame and returns a Figure; :mod:`abaw.reports.html`
renders them to PNG (:func:`abaw.training.plots.png_bytes`) and embeds them. matplotlib is
imported on first use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 100


def _figure(width: float, height: float, columns: int = 1) -> tuple[Figure, list[Any]]:
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    return figure, [figure.add_subplot(1, columns, i + 1) for i in range(columns)]


def _series(metrics: Any, column: str) -> tuple[np.ndarray, np.ndarray]:
    """(step, value) of the rows where ``column`` was logged."""
    rows = metrics[["step", column]].dropna()
    return rows["step"].to_numpy(), rows[column].to_numpy()


def curves(metrics: Any, losses: Sequence[str], scores: Sequence[str]) -> Figure:
    """Training curves: the loss terms (train solid, validation dashed with markers) on the
    left, the validation scores per epoch on the right, both against the global step."""
    figure, (left, right) = _figure(12, 4.2, columns=2)
    for column in losses:
        step, value = _series(metrics, column)
        validation = column.startswith("val/")
        left.plot(step, value, "--o" if validation else "-", markersize=4,
                  label=column, linewidth=1.2)
    left.set_xlabel("step")
    left.set_ylabel("loss")
    left.set_title("losses (train —, validation - -)")
    left.legend(fontsize=8)
    for column in scores:
        step, value = _series(metrics, column)
        right.plot(step, value, "-o", markersize=4, label=column)
    right.set_xlabel("step")
    right.set_title("validation scores")
    if scores:
        right.legend(fontsize=8)
    return figure


def task_weights(metrics: Any, columns: Sequence[str]) -> Figure:
    """The learned task weights against the global step."""
    figure, (axes,) = _figure(7, 3.6)
    for column in columns:
        step, value = _series(metrics, column)
        axes.plot(step, value, label=column.removeprefix("train/weight_"))
    axes.set_xlabel("step")
    axes.set_ylabel("weight")
    axes.set_title("learned task weights")
    axes.legend(fontsize=8)
    return figure


def grouped_bars(names: Sequence[str], series: Mapping[str, Sequence[float]],
                 ylabel: str = "F1") -> Figure:
    """One group of bars per class, one bar per series (e.g. validation at 0.5, tuned, test)."""
    figure, (axes,) = _figure(max(6.0, 0.7 * len(names) * max(1, len(series)) ** 0.5), 3.8)
    positions = np.arange(len(names))
    width = 0.8 / max(1, len(series))
    for i, (label, values) in enumerate(series.items()):
        axes.bar(positions + (i - (len(series) - 1) / 2) * width, values, width, label=label)
    axes.set_xticks(positions, labels=list(names), rotation=30, ha="right")
    axes.set_ylim(0, 1)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", alpha=0.3)
    axes.legend(fontsize=8)
    return figure


def va_density(truth: np.ndarray, prediction: np.ndarray, titles: Sequence[str]) -> Figure:
    """Predicted against true values as 2D histograms (one panel per column), the diagonal
    drawn; rows whose truth is absent must already be dropped per column (NaN)."""
    figure, panels = _figure(10, 4.4, columns=truth.shape[1])
    for column, (axes, title) in enumerate(zip(panels, titles)):
        keep = np.isfinite(truth[:, column])
        counts, _, _, image = axes.hist2d(truth[keep, column], prediction[keep, column], bins=40,
                                          range=[[-1, 1], [-1, 1]], cmap="viridis", cmin=1)
        axes.plot([-1, 1], [-1, 1], color="red", linewidth=0.8)
        axes.set_xlabel("true")
        axes.set_ylabel("predicted")
        axes.set_title(title)
        axes.set_aspect("equal")
        if np.nanmax(counts, initial=0) > 0:
            figure.colorbar(image, ax=axes, label="frames")
    return figure


def histogram(values: Mapping[str, np.ndarray], xlabel: str, bins: int = 20) -> Figure:
    """Overlaid histograms over [0, 1] (e.g. occlusion probabilities)."""
    figure, (axes,) = _figure(6, 3.4)
    for label, array in values.items():
        axes.hist(array, bins=bins, range=(0, 1), alpha=0.6, label=label)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("images")
    axes.legend(fontsize=8)
    return figure


def horizontal_bars(labels: Sequence[str], values: Sequence[float], xlabel: str) -> Figure:
    """One horizontal bar per label (e.g. the seconds of each step), first label on top."""
    figure, (axes,) = _figure(8, 0.4 * len(labels) + 1.2)
    positions = np.arange(len(labels))[::-1]
    axes.barh(positions, values)
    axes.set_yticks(positions, labels=list(labels), fontsize=8)
    axes.set_xlabel(xlabel)
    return figure
