"""Single-task optimizers, fed by an objective's direction: the base class, FGSM, PGD, MIM.

An optimizer runs from a start point ``x0`` with an absolute step size
``step`` (= rel_stepsize * eps, chosen by the attack) for ``steps`` iterations,
projecting every iterate onto the eps-ball intersected with [0,1]. Every
iterate is detached, so no graph survives from one step to the next.

How each consumes ``objective.direction`` d (``[B,C,H,W]``):

- FGSM: x' = P(x0 + step * sign(d)), one step (default step = eps).
- PGD:  x <- P(x + step * sign(d)) (default step eps/steps, no random start:
  the authors' I-FGSM; Madry's PGD = ``random_start=True``).
- MIM:  m <- decay * m + d / ||d||_1 (per sample), x <- P(x + step * sign(m)).

DGBA's d is already a sign and SignTotal's a sum of signs in -T..T; the sign
taken here leaves the former unchanged and turns the latter into a majority vote.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from torch import Tensor

from .config import AttackConfig
from .objectives import Objective
from .problem import AttackProblem

__all__ = ["Optimizer", "FGSM", "PGD", "MIM", "l1_normalize"]


def l1_normalize(d: Tensor) -> Tensor:
    """d divided by its per-sample L1 norm (a zero direction stays zero). ``[B,...]`` -> same."""
    norm = d.abs().flatten(1).sum(1).clamp(min=torch.finfo(d.dtype).tiny)
    return d / norm.reshape(-1, *([1] * (d.dim() - 1)))


class Optimizer(ABC):
    """Ascent loop over an objective's direction (see module docstring)."""

    name: str = ""
    # Display name in reports and tables.
    label: str = ""

    def default_rel_stepsize(self, steps: int) -> float:
        """Step size as a fraction of eps when the config leaves it None."""
        return 1.0 / steps

    @property
    def default_random_start(self) -> bool:
        return False

    @abstractmethod
    def run(self, problem: AttackProblem, objective: Objective, x0: Tensor, step: float,
            steps: int) -> tuple[Tensor, dict]:
        """Adversarial images ``[B,C,H,W]`` (feasible, detached) and an info dict."""

    @classmethod
    def from_config(cls, cfg: AttackConfig) -> "Optimizer":
        return cls()


class FGSM(Optimizer):
    """Fast Gradient Sign Method (Goodfellow et al. 2015): one step of size eps by default."""

    name = "fgsm"
    label = "FGSM"

    def default_rel_stepsize(self, steps):
        return 1.0

    def run(self, problem, objective, x0, step, steps):
        d, _ = objective.direction(problem, x0)
        return problem.project(x0 + step * torch.sign(d)).detach(), {}


class PGD(Optimizer):
    """Iterative FGSM / PGD (Kurakin et al.; Madry et al. 2018) in L-infinity."""

    name = "pgd"
    label = "PGD"

    def run(self, problem, objective, x0, step, steps):
        x = x0.detach()
        for _ in range(steps):
            d, _ = objective.direction(problem, x)
            x = problem.project(x + step * torch.sign(d)).detach()
        return x, {}


class MIM(Optimizer):
    """Momentum Iterative Method (Dong et al. 2018): sign of the accumulated L1-normalized direction."""

    name = "mim"
    label = "MIM"

    def __init__(self, decay: float = 1.0):
        self.decay = float(decay)

    def run(self, problem, objective, x0, step, steps):
        x = x0.detach()
        momentum = torch.zeros_like(x)
        for _ in range(steps):
            d, _ = objective.direction(problem, x)
            momentum = self.decay * momentum + l1_normalize(d)
            x = problem.project(x + step * torch.sign(momentum)).detach()
        return x, {}

    @classmethod
    def from_config(cls, cfg):
        return cls(decay=cfg.mim_decay)
