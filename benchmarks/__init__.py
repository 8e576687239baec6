"""Benchmarks of the toolkit (``python -m benchmarks.run``); not part of the installed package.

Each benchmark module exposes ``run(quick: bool) -> list[Measurement]`` and is registered in
:data:`benchmarks.run.BENCHMARKS`. Timings are medians of a few repeats taken side by side in
one process, so a comparison (ours vs a reference library) sees the same machine load.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Measurement:
    """One timed case: our median seconds, optionally a reference's, and a free-text note."""

    case: str
    seconds: float
    reference: str | None = None
    reference_seconds: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float | None:
        """reference time / our time (> 1 means we are faster)."""
        if self.reference_seconds is None or self.seconds <= 0:
            return None
        return self.reference_seconds / self.seconds


def time_once(function: Callable[[], Any]) -> tuple[float, Any]:
    """(wall seconds, result) of one call."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def time_side_by_side(
    functions: list[Callable[[], Any]], repeats: int
) -> tuple[list[float], list[Any]]:
    """Median seconds of each function over ``repeats`` rounds, calls interleaved per round.

    Interleaving (a, b, a, b, ...) rather than (a, a, ..., b, b, ...) keeps a change in machine
    load from favouring one side. Returns the medians and each function's last result.
    """
    times: list[list[float]] = [[] for _ in functions]
    results: list[Any] = [None] * len(functions)
    for _ in range(repeats):
        for i, function in enumerate(functions):
            seconds, results[i] = time_once(function)
            times[i].append(seconds)
    return [statistics.median(t) for t in times], results
