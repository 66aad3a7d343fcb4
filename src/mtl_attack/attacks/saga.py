"""Auto-SAGA (Mahmood et al.; Xu et al. 2022) over the tasks of one multi-task model (paper App. D).

Each attacked task i is a "model" with per-pixel weights alpha_i (``[B,C,H,W]``,
initialized to 1) learned during the attack. Per step, with v_i the objective's
per-task contribution at x (the gradient g_i; g_i / L_i(x) for DGBA-SAGA; w_i g_i,
r_i g_i, sign(g_i) for the other objectives):

1. look-ahead x1 = P(x + step * sign(S)), S = sum_i alpha_i v_i;
2. dF/dx1 = -(sum_i v_i at x1): the gradient of the summed negative losses
   (each divided by its own loss for DGBA, as the authors normalize);
3. sign relaxed to tanh(s S): dx1/dalpha_i = step * s * v_i * sech^2(s S);
4. alpha_i <- alpha_i - lr * dF/dx1 * dx1/dalpha_i (elementwise);
5. x <- P(x + step * sign(sum_i alpha_i v_i)) with the updated alpha.

Default step eps/steps, s = 50, lr = 10. Gradients and steps are expressed at
``input_scale`` (255: the authors' models took 0-255 pixels, so s and lr keep
their meaning on [0,1] images).

Differences from the authors' code (main_r/autosaga.py), on purpose:
- step 2 sums every task's gradient; their loop reuses the last task's
  gradient T times (a bug, SPEC "Auto-SAGA").
- sech^2 is computed as 1 - tanh^2, which cannot overflow; their
  4 e^{2u} / (e^{2u} + 1)^2 gives NaN once e^{2u} overflows.
- gradients are of per-sample losses; theirs are of the batch mean (1/B of
  these), which made their alpha updates depend on the batch size.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .optimizers import Optimizer

__all__ = ["SAGA", "saga_alpha_update"]


def saga_alpha_update(alpha: Tensor, parts: Tensor, lookahead_grad: Tensor, step: float,
                      s: float, lr: float) -> Tensor:
    """One Auto-SAGA update of the per-pixel task weights.

    alpha, parts: ``[T,B,C,H,W]`` (weights and per-task directions v_i);
    lookahead_grad: dF/dx at the look-ahead point ``[B,C,H,W]``; step: absolute
    step size (same units as the gradients' inputs). Returns the new alpha
    alpha_i - lr * dF/dx * step * s * v_i * (1 - tanh(s * sum_j alpha_j v_j)^2).
    """
    sech2 = 1.0 - torch.tanh(s * (alpha * parts).sum(0)) ** 2
    dx_dalpha = step * s * parts * sech2
    return alpha - lr * lookahead_grad * dx_dalpha


def _sign_of(parts: Tensor, alpha: Tensor) -> Tensor:
    return torch.sign(torch.nan_to_num((alpha * parts).sum(0), nan=0.0, posinf=0.0, neginf=0.0))


class SAGA(Optimizer):
    """Auto-SAGA with per-pixel task weights (see module docstring)."""

    name = "saga"
    label = "Auto-SAGA"

    def __init__(self, s: float = 50.0, lr: float = 10.0, input_scale: float = 255.0):
        self.s = float(s)
        self.lr = float(lr)
        self.input_scale = float(input_scale)

    def run(self, problem, objective, x0, step, steps):
        tasks = objective.attacked_tasks(problem.tasks)
        scale = self.input_scale
        x = x0.detach()
        alpha = None
        for _ in range(steps):
            parts, _ = objective.task_directions(problem, x)
            # d/dx at the model's input scale is (d/dx on [0,1]) / scale.
            v = torch.stack([parts[t] for t in tasks]) / scale
            if alpha is None:
                alpha = torch.ones_like(v)
            look_ahead = problem.project(x + step * _sign_of(v, alpha)).detach()
            g1, _ = objective.combined(problem, look_ahead)
            alpha = saga_alpha_update(alpha, v, -g1 / scale, step * scale, self.s, self.lr).detach()
            x = problem.project(x + step * _sign_of(v, alpha)).detach()
        # alpha: the final per-pixel task weights [T,B,C,H,W], tasks in attacked order.
        return x, {"alpha": alpha, "tasks": tasks}

    @classmethod
    def from_config(cls, cfg):
        return cls(s=cfg.saga_s, lr=cfg.saga_lr, input_scale=cfg.saga_input_scale)
