"""The attack object: hyperparameters only; model and data come at call time (foolbox style).

``attack(model, images, targets, losses)`` puts the model in eval mode (every
module's mode is restored afterwards), computes gradients with respect to the
input only (no parameter ``.grad`` is created, ``requires_grad`` untouched),
runs on the images' device and never modifies the caller's tensors.
"""
from __future__ import annotations

import contextlib
import math
import numbers
from typing import Callable, Mapping

import torch
from torch import Tensor

from .objectives import Objective
from .optimizers import Optimizer
from .problem import AttackProblem, monitor_value

__all__ = ["MultiTaskAttack", "eval_mode"]


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module):
    """Eval mode inside the block; each submodule's own mode restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in modes:
            module.training = training


def _check_inputs(images, targets, losses, eps) -> None:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise ValueError("images must be a float tensor [B,3,H,W] in [0,1]")
    if images.numel() and (images.min() < 0 or images.max() > 1):
        raise ValueError(f"images must lie in [0,1] (got [{images.min().item():.4g}, {images.max().item():.4g}]); "
                         "the model owns its input normalization")
    if not isinstance(losses, Mapping) or not losses:
        raise ValueError("losses must be a non-empty dict task -> fn(output, target) -> per-sample loss [B]")
    if not isinstance(targets, Mapping):
        raise ValueError("targets must be a dict task -> target (passed unchanged to that task's loss)")
    missing = [t for t in losses if t not in targets]
    if missing:
        raise ValueError(f"no targets for tasks {missing}; targets must have a key for every task in losses")
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or eps < 0:
        raise ValueError(f"eps must be a finite number >= 0 in [0,1] image units, got {eps!r}")
    if eps > 1:
        raise ValueError(f"eps={eps} is larger than the [0,1] image range; eps is in [0,1] units "
                         f"(did you mean {eps}/255 = {eps / 255:.6g}?)")


class MultiTaskAttack:
    """An objective (tasks -> direction) driven by a single-task optimizer.

    eps: L-infinity budget in [0,1] image units. rel_stepsize: step as a
    fraction of eps (None = the optimizer's default). random_start: None = the
    optimizer's default. restarts: runs from new random starts, keeping the
    per-sample best by the relative loss increase summed over the attacked
    tasks. seed: seeds the random starts (None: not reproducible).
    """

    def __init__(self, optimizer: Optimizer, objective: Objective, eps: float, steps: int = 10,
                 rel_stepsize: float | None = None, random_start: bool | None = None,
                 restarts: int = 1, seed: int | None = 0):
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
        if rel_stepsize is not None and not (rel_stepsize > 0 and math.isfinite(rel_stepsize)):
            raise ValueError(f"rel_stepsize must be > 0 (a fraction of eps) or None, got {rel_stepsize!r}")
        if not isinstance(restarts, int) or restarts < 1:
            raise ValueError(f"restarts must be an integer >= 1, got {restarts!r}")
        self.optimizer = optimizer
        self.objective = objective
        self.eps = eps
        self.steps = steps
        self.rel_stepsize = rel_stepsize
        self.random_start = optimizer.default_random_start if random_start is None else bool(random_start)
        if restarts > 1 and not self.random_start:
            raise ValueError("restarts > 1 repeats the same deterministic run; set random_start=True")
        self.restarts = restarts
        self.seed = seed

    def __repr__(self) -> str:
        return (f"MultiTaskAttack({self.objective.name}-{self.optimizer.name}, eps={self.eps:.6g}, "
                f"steps={self.steps}, random_start={self.random_start}, restarts={self.restarts})")

    @property
    def step_size_rel(self) -> float:
        """The step size as a fraction of eps."""
        if self.rel_stepsize is not None:
            return self.rel_stepsize
        return self.optimizer.default_rel_stepsize(self.steps)

    def __call__(self, model: torch.nn.Module, images: Tensor, targets: Mapping[str, object],
                 losses: Mapping[str, Callable], *, eps: float | None = None,
                 return_info: bool = False):
        """Adversarial images ``[B,3,H,W]`` in [0,1] with |x_adv - images|_inf <= eps.

        model(images) -> dict task -> output; losses[task](output, targets[task]) -> ``[B]``.
        eps overrides the attack's eps for this call. With return_info, returns
        (x_adv, info) where info["runs"] holds each restart's optimizer info
        (APGD: step_size [steps,B], objective and best [steps+1,B]).
        """
        eps = self.eps if eps is None else eps
        _check_inputs(images, targets, losses, eps)
        eps = float(eps)
        self.objective.check(list(losses))
        if eps == 0:
            x_adv, info = images.detach().clone(), {"runs": []}
            return (x_adv, info) if return_info else x_adv
        step = self.step_size_rel * eps
        generator = None
        if self.random_start and self.seed is not None:
            generator = torch.Generator(device=images.device)
            generator.manual_seed(int(self.seed))

        with eval_mode(model), torch.enable_grad():
            problem = AttackProblem(model, images, targets, losses, eps)
            tasks = self.objective.attacked_tasks(problem.tasks)
            best_x, best_score, runs = None, None, []
            for _ in range(self.restarts):
                x0 = problem.random_start(generator) if self.random_start else problem.clean
                x_run, run_info = self.optimizer.run(problem, self.objective, x0, step, self.steps)
                runs.append(run_info)
                if self.restarts == 1:
                    best_x = x_run
                    break
                score = monitor_value(problem.losses(x_run), problem.clean_losses, tasks)
                if best_x is None:
                    best_x, best_score = x_run, score
                else:
                    better = score > best_score
                    best_x = torch.where(better.reshape(-1, 1, 1, 1), x_run, best_x)
                    best_score = torch.where(better, score, best_score)
            x_adv = problem.project(best_x).detach()
        if not torch.isfinite(x_adv).all():
            raise RuntimeError(f"{self!r} produced non-finite pixels; this is a bug, please report it")
        return (x_adv, {"runs": runs}) if return_info else x_adv
