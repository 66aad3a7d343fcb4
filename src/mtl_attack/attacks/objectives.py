"""Objectives: how the tasks' losses become one ascent direction (paper Sec. 2.2, 3).

An objective looks at the per-task per-sample losses L_i(x_b) of the current
iterate and their input gradients g_i = dL_i/dx and returns, per sample:

- ``task_directions``: one contribution v_i per attacked task (``[B,C,H,W]``
  each); Auto-SAGA weights these per pixel.
- ``combined``: sum_i v_i, the objective's (unsigned) ascent direction.
- ``direction``: what the sign/normalizing optimizers consume; equal to
  ``combined`` except for DGBA, whose direction is sign(combined).

| objective     | v_i                          | direction                   |
|---------------|------------------------------|-----------------------------|
| single (x)    | g_x (only task x)            | g_x                         |
| total         | g_i                          | sum_i g_i                   |
| signtotal     | sign(g_i)                    | sum_i sign(g_i)  (in -T..T) |
| weightedtotal | w_i g_i                      | sum_i w_i g_i               |
| wgd           | r_i(t) g_i                   | sum_i r_i(t) g_i            |
| dgba          | g_i / L_i(x_t)               | sign(sum_i g_i / L_i(x_t))  |

All but signtotal are "linear": v_i = c_i g_i with a per-sample coefficient
c_i (no gradient flows through it), so their combined direction comes from ONE
backward pass of sum_b sum_i c_i(b) L_i(x_b) (samples are independent in eval
mode). ``fused=False`` does one backward pass per task instead (the
independent reference). Losses of 0 are floored at LOSS_FLOOR in every
denominator; non-finite gradient entries become 0, so no direction holds NaN/inf.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Mapping, Sequence

import torch
from torch import Tensor

from .modes import WgdVariant
from .problem import AttackProblem, safe_loss

if TYPE_CHECKING:  # the config's objective names derive from OBJECTIVES below
    from .config import AttackConfig

__all__ = [
    "Objective",
    "LinearObjective",
    "SingleTask",
    "Total",
    "SignTotal",
    "WeightedTotal",
    "WGD",
    "DGBA",
    "OBJECTIVES",
    "wgd_weights",
]

Losses = dict[str, Tensor]


def _per_sample(c: Tensor, like: Tensor) -> Tensor:
    """Broadcast a per-sample ``[B]`` tensor against ``[B, ...]``."""
    return c.reshape(-1, *([1] * (like.dim() - 1)))


def _clean(g: Tensor) -> Tensor:
    return torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0)


class Objective(ABC):
    """Maps the tasks' losses at an iterate to an ascent direction (see module docstring)."""

    name: str = ""
    # Display name in reports and tables.
    label: str = ""
    # Whether the objective attacks one named task (``target_task``); the presets then
    # have one entry per task (``single_<task>_<optimizer>``).
    needs_task: bool = False
    # Whether it needs calibrated task weights (``weights``): jobs grid-search them first,
    # and adversarial training and ensembles cannot use it.
    needs_weights: bool = False

    def attacked_tasks(self, tasks: Sequence[str]) -> list[str]:
        """The tasks this objective attacks (APGD monitors these)."""
        return list(tasks)

    def check(self, tasks: Sequence[str]) -> None:
        """Raise ValueError if the objective cannot attack a model with these tasks."""

    @abstractmethod
    def task_directions(self, problem: AttackProblem, x: Tensor) -> tuple[dict[str, Tensor], Losses]:
        """Per-task contributions v_i ``[B,C,H,W]`` and detached losses ``[B]`` at ``x``."""

    def combined(self, problem: AttackProblem, x: Tensor) -> tuple[Tensor, Losses]:
        """sum_i v_i ``[B,C,H,W]`` and the detached losses at ``x``."""
        parts, losses = self.task_directions(problem, x)
        return sum(parts.values()), losses

    def direction(self, problem: AttackProblem, x: Tensor) -> tuple[Tensor, Losses]:
        """The ascent direction the optimizers consume, and the detached losses at ``x``."""
        return self.combined(problem, x)

    @classmethod
    def from_config(cls, cfg: AttackConfig) -> "Objective":
        return cls()


class LinearObjective(Objective):
    """v_i = c_i g_i with per-sample coefficients c_i computed from the (detached) losses."""

    def __init__(self, fused: bool = True):
        self.fused = bool(fused)

    @abstractmethod
    def coefficients(self, losses: Losses, clean_losses: Losses, tasks: Sequence[str]) -> Losses:
        """task -> ``[B]`` coefficient c_i for every attacked task."""

    def _coefficients(self, problem: AttackProblem, losses: Losses) -> Losses:
        coeffs = self.coefficients(losses, problem.clean_losses, problem.tasks)
        return {t: _clean(c) for t, c in coeffs.items()}

    def task_directions(self, problem, x):
        xv, graph = problem.graph_losses(x)
        losses = {t: v.detach() for t, v in graph.items()}
        coeffs = self._coefficients(problem, losses)
        parts = {}
        names = list(coeffs)
        for k, task in enumerate(names):
            (g,) = torch.autograd.grad(graph[task].sum(), xv, retain_graph=k < len(names) - 1)
            parts[task] = _per_sample(coeffs[task], g) * _clean(g)
        return parts, losses

    def combined(self, problem, x):
        if not self.fused:
            return super().combined(problem, x)
        xv, graph = problem.graph_losses(x)
        losses = {t: v.detach() for t, v in graph.items()}
        coeffs = self._coefficients(problem, losses)
        # One backward pass: the coefficients are constants, so the gradient of
        # sum_b sum_i c_i(b) L_i(x_b) w.r.t. x_b is sum_i c_i(b) g_i(b).
        total = sum((coeffs[t] * graph[t]).sum() for t in coeffs)
        (g,) = torch.autograd.grad(total, xv)
        return _clean(g), losses

    @classmethod
    def from_config(cls, cfg):
        return cls(fused=cfg.fused)


class SingleTask(LinearObjective):
    """Single-x: the gradient of task x's loss only."""

    name = "single"
    label = "Single"
    needs_task = True

    def __init__(self, task: str, fused: bool = True):
        super().__init__(fused)
        if not task or not isinstance(task, str):
            raise ValueError(f"objective 'single' needs target_task, a task name (e.g. target_task='normal'), "
                             f"got {task!r}")
        self.task = task

    def attacked_tasks(self, tasks):
        return [self.task]

    def check(self, tasks):
        if self.task not in tasks:
            raise ValueError(f"target_task {self.task!r} is not among the attacked tasks {list(tasks)}")

    def coefficients(self, losses, clean_losses, tasks):
        return {self.task: torch.ones_like(losses[self.task])}

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.target_task, fused=cfg.fused)


class Total(LinearObjective):
    """Total: the gradient of sum_i L_i."""

    name = "total"
    label = "Total"

    def coefficients(self, losses, clean_losses, tasks):
        return {t: torch.ones_like(losses[t]) for t in tasks}


class WeightedTotal(LinearObjective):
    """WeightedTotal: the gradient of sum_i w_i L_i with fixed weights (paper Table 16).

    weights: task -> weight, or a sequence in the order of the ``losses`` mapping.
    """

    name = "weightedtotal"
    label = "WeightedTotal"
    needs_weights = True

    def __init__(self, weights: Mapping[str, float] | Sequence[float] | None, fused: bool = True):
        super().__init__(fused)
        if weights is None:
            raise ValueError("objective 'weightedtotal' needs weights (task -> weight); "
                             "pick them with grid_search_weights or set attack.weights")
        self.weights = dict(weights) if isinstance(weights, Mapping) else [float(w) for w in weights]

    def _by_task(self, tasks: Sequence[str]) -> dict[str, float]:
        if isinstance(self.weights, dict):
            return {t: float(self.weights[t]) for t in tasks}
        return dict(zip(tasks, self.weights))

    def check(self, tasks):
        if isinstance(self.weights, dict):
            if set(self.weights) != set(tasks):
                raise ValueError(f"weights are for tasks {sorted(self.weights)} but the attack has {list(tasks)}; "
                                 "give one weight per task")
        elif len(self.weights) != len(tasks):
            raise ValueError(f"{len(self.weights)} weights for {len(tasks)} tasks {list(tasks)}; give one per task")

    def coefficients(self, losses, clean_losses, tasks):
        return {t: torch.full_like(losses[t], w) for t, w in self._by_task(tasks).items()}

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.weights, fused=cfg.fused)


def wgd_weights(losses: Losses, clean_losses: Losses, tasks: Sequence[str],
                variant: WgdVariant = WgdVariant.dynamic) -> Losses:
    """WGD task weights per sample (Ghamizi et al. 2022).

    dynamic (paper): Lt_i = L_i(x_t) / L_i(x_0), r_i(t) = Lt_i / mean_j Lt_j (all 1 at t = 0).
    static (authors' code): r_i = 1 / L_i(x_0).
    losses, clean_losses: task -> ``[B]``; returns task -> ``[B]``.
    """
    if variant is WgdVariant.static:
        return {t: 1.0 / safe_loss(clean_losses[t]) for t in tasks}
    ratio = {t: losses[t] / safe_loss(clean_losses[t]) for t in tasks}
    mean = sum(ratio.values()) / len(tasks)
    return {t: ratio[t] / safe_loss(mean) for t in tasks}


class WGD(LinearObjective):
    """WGD: the gradient of sum_i r_i(t) L_i with GradNorm-style task attack rates."""

    name = "wgd"
    label = "WGD"

    def __init__(self, variant: WgdVariant | str = WgdVariant.dynamic, fused: bool = True):
        super().__init__(fused)
        self.variant = WgdVariant(variant)

    def coefficients(self, losses, clean_losses, tasks):
        return wgd_weights(losses, clean_losses, tasks, self.variant)

    @classmethod
    def from_config(cls, cfg):
        return cls(cfg.wgd_variant, fused=cfg.fused)


class DGBA(LinearObjective):
    """DGBA (the paper): direction sign(sum_i g_i / L_i(x_t)) per sample at the current iterate.

    The exact solution of the relaxed ILP (paper Eqs. 8, 9, 17, 18). Fused: one
    backward pass of sum_b sum_i L_i(x_b) / stopgrad(max(L_i(x_b), LOSS_FLOOR)).
    """

    name = "dgba"
    label = "DGBA"

    def coefficients(self, losses, clean_losses, tasks):
        return {t: 1.0 / safe_loss(losses[t]) for t in tasks}

    def direction(self, problem, x):
        g, losses = self.combined(problem, x)
        return torch.sign(g), losses


class SignTotal(Objective):
    """SignTotal: sum_i sign(g_i), one backward pass per task (the signs are not linear)."""

    name = "signtotal"
    label = "SignTotal"

    def task_directions(self, problem, x):
        xv, graph = problem.graph_losses(x)
        losses = {t: v.detach() for t, v in graph.items()}
        parts = {}
        for k, task in enumerate(problem.tasks):
            (g,) = torch.autograd.grad(graph[task].sum(), xv, retain_graph=k < len(problem.tasks) - 1)
            parts[task] = torch.sign(_clean(g))
        return parts, losses


# Name -> class, the one list of objectives: the config's ObjectiveName, build_attack and
# the Hydra presets all derive from it, so a new objective is a class plus an entry here.
OBJECTIVES: dict[str, type[Objective]] = {
    cls.name: cls for cls in (SingleTask, Total, SignTotal, WeightedTotal, WGD, DGBA)
}
