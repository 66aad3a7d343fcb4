"""FAT's early-stopped PGD (Zhang et al. 2020) for dense tasks: PGD with a per-sample stop mask.

Dense tasks have no "misclassified", so a sample counts as *fooled* once the
mean over the attacked tasks of its relative loss increase
(L_i(x') - L_i(x)) / L_i(x) reaches ``threshold`` (0.5: losses up 50%). Before
each step a fooled sample spends one of its ``tau`` extra steps, and once it
has none left it stops: it keeps its iterate for the rest of the run (PGD-K-tau).
Everything else is PGD's: x <- P(x + step * sign(d)), step eps/steps by
default, no random start. Built with ``build_attack(..., early_stop=EarlyStop(tau,
threshold))`` on optimizer ``pgd``, so it runs with the attack's precision,
channels_last and compile settings like any attack.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor

from .optimizers import PGD
from .problem import relative_increase

__all__ = ["EarlyStop", "EarlyStoppedPGD", "fooled"]


def fooled(losses: Mapping[str, Tensor], clean: Mapping[str, Tensor], tasks: Sequence[str],
           threshold: float) -> Tensor:
    """FAT's stopping test, per sample ``[B]`` bool: the mean over ``tasks`` of
    (L_i(x') - L_i(x)) / L_i(x) is at least ``threshold``. losses, clean: task -> ``[B]``."""
    return relative_increase(losses, clean, tasks) / len(tasks) >= threshold


@dataclass(frozen=True)
class EarlyStop:
    """FAT's stopping rule: ``tau`` extra steps (>= 0) after a sample is fooled at ``threshold``
    (mean relative loss increase over the attacked tasks; 0.5 = losses up 50%)."""

    tau: int = 0
    threshold: float = 0.5

    def __post_init__(self):
        if isinstance(self.tau, bool) or not isinstance(self.tau, int) or self.tau < 0:
            raise ValueError(f"early stop tau must be an integer >= 0, got {self.tau!r}")
        if isinstance(self.threshold, bool) or not math.isfinite(float(self.threshold)):
            raise ValueError(f"early stop threshold must be a finite number, got {self.threshold!r}")


class EarlyStoppedPGD(PGD):
    """PGD whose samples stop ``tau`` steps after they are :func:`fooled` (see module docstring).

    ``run`` returns info ``{"steps_taken": [B] int64}``, the steps each sample moved.
    """

    name = "pgd_early_stop"

    def __init__(self, stop: EarlyStop):
        self.stop = stop

    def run(self, problem, objective, x0, step, steps):
        tasks = objective.attacked_tasks(problem.tasks)
        x = x0.detach()
        batch = x.shape[0]
        left = torch.full((batch,), int(self.stop.tau), device=x.device)
        active = torch.ones(batch, dtype=torch.bool, device=x.device)
        taken = torch.zeros(batch, dtype=torch.long, device=x.device)
        for _ in range(steps):
            d, losses = objective.direction(problem, x)
            # Tested before the step, at the iterate the direction was taken at.
            hit = fooled(losses, problem.clean_losses, tasks, self.stop.threshold) & active
            active &= ~(hit & (left <= 0))
            left = torch.where(hit, left - 1, left)
            if not active.any():
                break
            moved = problem.project(x + step * torch.sign(d))
            x = torch.where(active.reshape(-1, *([1] * (x.dim() - 1))), moved, x).detach()
            taken += active.long()
        return x, {"steps_taken": taken}
