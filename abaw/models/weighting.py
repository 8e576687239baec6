"""Combining per-task losses into one: fixed weights or learned homoscedastic uncertainty.

Both modules take a mapping ``task -> scalar loss`` and return the total. A task missing
from the mapping (e.g. because the batch holds no label for it) is skipped — the caller
should leave such tasks out rather than pass a 0, because for uncertainty weighting a
present task also contributes its regulariser ``s_t`` and would keep pulling ``s_t`` down.
``current_weights()`` gives the effective multiplier of each task's loss, for logging.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from abaw.errors import ConfigError


def _check_tasks(losses: Mapping[str, torch.Tensor], known: Sequence[str]) -> None:
    unknown = sorted(set(losses) - set(known))
    if unknown:
        raise ConfigError(f"losses for unknown tasks {unknown}; configured tasks: {list(known)}")


class UncertaintyWeighting(nn.Module):
    """Kendall, Gal & Cipolla (CVPR 2018): a learned log variance ``s_t`` per task.

    total = Σ_t exp(-s_t) · L_t + s_t

    Kendall et al. derive ``1/(2σ²)·L + log σ`` for a Gaussian regression likelihood and
    ``1/σ²·L + log σ`` for a classification one. With ``s = log σ²`` those differ only by
    constant factors (½ on the loss and on ``s``) that shift the optimum ``s*`` by a constant
    and so are absorbed by the learned parameter. Our regression loss (1 - CCC) is not a
    Gaussian negative log-likelihood anyway, so one form is used for every task: at the
    optimum ``exp(-s_t) = 1 / L_t``, i.e. each task is weighted by its inverse loss.

    Args:
        tasks: task names, e.g. ``("va", "expr", "au")``.
        init_log_var: initial ``s_t`` (0 → every weight starts at 1).
    """

    def __init__(self, tasks: Sequence[str], init_log_var: float = 0.0) -> None:
        super().__init__()
        if not tasks:
            raise ConfigError("UncertaintyWeighting needs at least one task")
        self.tasks = tuple(tasks)
        self.log_vars = nn.ParameterDict(
            {t: nn.Parameter(torch.tensor(float(init_log_var))) for t in self.tasks}
        )

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_tasks(losses, self.tasks)
        total = sum(p * 0.0 for p in self.log_vars.values())  # keeps device/graph when empty
        for task in self.tasks:
            if task in losses:
                s = self.log_vars[task]
                total = total + torch.exp(-s) * losses[task] + s
        return total

    def current_weights(self) -> dict[str, float]:
        """``exp(-s_t)`` per task: the multiplier currently applied to each loss."""
        return {t: float(torch.exp(-p.detach())) for t, p in self.log_vars.items()}

    def current_log_vars(self) -> dict[str, float]:
        return {t: float(p.detach()) for t, p in self.log_vars.items()}


class FixedWeighting(nn.Module):
    """total = Σ_t w_t · L_t with constant weights (no parameters)."""

    def __init__(self, weights: Mapping[str, float]) -> None:
        super().__init__()
        if not weights:
            raise ConfigError("FixedWeighting needs at least one task weight")
        negative = {t: w for t, w in weights.items() if w < 0}
        if negative:
            raise ConfigError(f"task weights must be >= 0, got {negative}")
        self.weights = {str(t): float(w) for t, w in weights.items()}
        self.tasks = tuple(self.weights)

    def forward(self, losses: Mapping[str, torch.Tensor]) -> torch.Tensor:
        _check_tasks(losses, self.tasks)
        present = [t for t in self.tasks if t in losses]
        if not present:
            return torch.zeros(())
        return sum(self.weights[t] * losses[t] for t in present)

    def current_weights(self) -> dict[str, float]:
        return dict(self.weights)
