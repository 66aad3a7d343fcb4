"""APGD (Croce and Hein 2020), L-infinity, with per-sample step sizes; DGBA-APGD is paper Alg. 1.

Per sample b, with monitored objective f (default: the relative loss increase
summed over the attacked tasks, sum_i (L_i(x') - L_i(x)) / L_i(x)):

- z = P(x_k + eta * sign(d_k));  x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1})),
  a = 1 on the first step, ``momentum`` (0.75) after; d_k = objective.direction(x_k).
- checkpoints w_j = ceil(p_j * steps), p_0 = 0, p_1 = 0.22,
  p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (while p < 1).
- at a checkpoint w_j, halve eta if (1) fewer than rho (0.75) of the steps since
  w_{j-1} increased f, or (2) eta was not halved at w_{j-1} and the best f did
  not improve since w_{j-1}; a halved sample restarts from its best point (with
  its gradient there, and no momentum carried over).
- returns the best point per sample.

Starts: ``reference`` (auto-attack, the default: random start, initial step
2*eps) or ``authors`` (the DGBA code: clean image, initial step eps/steps; in 10
iterations its steps barely reach the eps-ball's surface: ten steps of eps/10 in one
direction just get there, and any halving or turn falls short). Restarts are run
by the attack wrapper, keeping the per-sample best.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .modes import ApgdMonitor, ApgdStart
from .optimizers import Optimizer
from .problem import monitor_value

__all__ = ["APGD", "apgd_checkpoints"]


def apgd_checkpoints(steps: int) -> list[int]:
    """Iterations w_j >= 1 at which APGD may halve its step (no duplicates, ascending).

    p is kept in integer hundredths so ceil(p * steps) has no rounding error.
    steps=10 -> [3, 5, 6, 7, 8, 9, 10]; steps=100 -> [22, 41, 57, 70, 80, 87, 93, 99].
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    hundredths = [0, 22]
    while True:
        nxt = hundredths[-1] + max(hundredths[-1] - hundredths[-2] - 3, 6)
        if nxt >= 100:
            break
        hundredths.append(nxt)
    points = sorted({-(-p * steps // 100) for p in hundredths})
    return [w for w in points if w >= 1]


def _rows(mask: Tensor, like: Tensor) -> Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


class APGD(Optimizer):
    """Auto-PGD with momentum, checkpoints and per-sample best tracking (see module docstring)."""

    name = "apgd"
    label = "APGD"

    def __init__(self, momentum: float = 0.75, rho: float = 0.75,
                 start: ApgdStart | str = ApgdStart.reference,
                 monitor: ApgdMonitor | str = ApgdMonitor.relative):
        self.momentum = float(momentum)
        self.rho = float(rho)
        self.start = ApgdStart(start)
        self.monitor = ApgdMonitor(monitor)

    def default_rel_stepsize(self, steps):
        return 2.0 if self.start is ApgdStart.reference else 1.0 / steps

    @property
    def default_random_start(self):
        return self.start is ApgdStart.reference

    def run(self, problem, objective, x0, step, steps):
        tasks = objective.attacked_tasks(problem.tasks)
        relative = self.monitor is ApgdMonitor.relative

        def score(losses):
            return monitor_value(losses, problem.clean_losses, tasks, relative)

        x = x0.detach()
        x_prev = x
        d, losses = objective.direction(problem, x)
        f = score(losses)
        best_x, best_f, best_d = x.clone(), f.clone(), d.clone()
        eta = torch.full_like(f, float(step))

        checkpoints = apgd_checkpoints(steps)
        last_checkpoint = 0
        increases = torch.zeros_like(f)
        best_at_checkpoint = best_f.clone()
        halved_last = torch.zeros_like(f, dtype=torch.bool)

        # History, preallocated so nothing grows with the steps.
        hist_step = torch.empty(steps, *f.shape, dtype=f.dtype, device=f.device)
        hist_f = torch.empty(steps + 1, *f.shape, dtype=f.dtype, device=f.device)
        hist_best = torch.empty_like(hist_f)
        hist_f[0], hist_best[0] = f, best_f

        for k in range(steps):
            a = 1.0 if k == 0 else self.momentum
            z = problem.project(x + _rows(eta, x) * torch.sign(d))
            x_new = problem.project(x + a * (z - x) + (1.0 - a) * (x - x_prev)).detach()
            hist_step[k] = eta
            if k == steps - 1:
                # The last iterate's direction is never used: its losses need no backward pass.
                d_new, losses = d, problem.losses(x_new)
            else:
                d_new, losses = objective.direction(problem, x_new)
            f_new = score(losses)

            increases += (f_new > f).to(f.dtype)
            improved = f_new > best_f
            best_x = torch.where(_rows(improved, x), x_new, best_x)
            best_d = torch.where(_rows(improved, d), d_new, best_d)
            best_f = torch.where(improved, f_new, best_f)
            x_prev, x, d, f = x, x_new, d_new, f_new

            t = k + 1
            hist_f[t], hist_best[t] = f, best_f
            if t in checkpoints and t < steps:
                oscillating = increases < self.rho * (t - last_checkpoint)
                stalled = ~halved_last & (best_f <= best_at_checkpoint)
                halve = oscillating | stalled
                eta = torch.where(halve, eta / 2, eta)
                back = _rows(halve, x)
                x = torch.where(back, best_x, x)
                x_prev = torch.where(back, best_x, x_prev)
                d = torch.where(_rows(halve, d), best_d, d)
                f = torch.where(halve, best_f, f)
                halved_last = halve
                best_at_checkpoint = best_f.clone()
                increases.zero_()
                last_checkpoint = t

        info = {"step_size": hist_step, "objective": hist_f, "best": hist_best, "checkpoints": checkpoints}
        return best_x.detach(), info

    @classmethod
    def from_config(cls, cfg):
        return cls(momentum=cfg.apgd_momentum, rho=cfg.apgd_rho, start=cfg.apgd_start, monitor=cfg.apgd_monitor)
