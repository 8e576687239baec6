"""Seeds, means and verdicts: what every table of the toolkit says about a row.

A training result is a finding only when it holds across seeds. Each table row is run with
several seeds; a cell is ``mean ± std (n)`` (sample standard deviation, ``ddof=1``), and a row
is compared with a reference row by its mean gain against two standard errors of the
difference of the means (Welch: ``sqrt(s_a²/n_a + s_b²/n_b)``):

- **helps**: gain > 2 SE; **hurts**: gain < −2 SE; otherwise **no evidence**;
- with fewer than 2 seeds on either side there is no spread to compare against, and the
  verdict says so (``no evidence (1 seed)``) instead of guessing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

#: the seeds of a 3-seed row (``seed_everything``); 42 is the default config's own seed
DEFAULT_SEEDS: tuple[int, ...] = (42, 1, 2)


@dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (0 for one value) and count of a row's values."""

    n: int
    mean: float
    std: float

    @property
    def sem(self) -> float:
        """Standard error of the mean (``std / sqrt(n)``)."""
        return self.std / math.sqrt(self.n)


def summarise(values: Sequence[float]) -> Summary:
    """:class:`Summary` of ``values`` (at least one)."""
    if not values:
        raise ValueError("no values to summarise")
    n = len(values)
    mean = math.fsum(values) / n
    var = math.fsum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return Summary(n, mean, math.sqrt(var))


def cell(values: Sequence[float], digits: int = 3) -> str:
    """``"0.966 ± 0.048 (3)"``; a single value is printed alone with ``(1)``; none: ``"–"``."""
    if not values:
        return "–"
    s = summarise(values)
    if s.n == 1:
        return f"{s.mean:.{digits}f} (1)"
    return f"{s.mean:.{digits}f} ± {s.std:.{digits}f} ({s.n})"


def verdict(row: Sequence[float], reference: Sequence[float]) -> str:
    """``helps`` / ``hurts`` / ``no evidence`` for ``row`` against ``reference`` (see module)."""
    if len(row) < 2 or len(reference) < 2:
        return f"no evidence ({min(len(row), len(reference))} seed)"
    a, b = summarise(row), summarise(reference)
    gain = a.mean - b.mean
    se = math.sqrt(a.std ** 2 / a.n + b.std ** 2 / b.n)
    if gain > 2 * se:
        return "helps"
    if gain < -2 * se:
        return "hurts"
    return "no evidence"


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"42,1,2"`` → ``(42, 1, 2)``; a clear ``ValueError`` for anything else."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"seeds must be comma-separated integers, got {text!r}") from None
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds repeat: {text!r}")
    return seeds


def slug(name: str) -> str:
    """A row name as a run-name fragment: ``"lr 0.004"`` → ``"lr-0-004"``."""
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-").replace("--", "-")
