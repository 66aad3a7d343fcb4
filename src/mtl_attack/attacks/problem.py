"""One attack call's fixed data: model, clean images, targets, per-task losses, eps.

The objectives and optimizers ask an :class:`AttackProblem` for per-task
per-sample losses (with or without a graph) and for the projection onto the
feasible set {x' : |x' - x|_inf <= eps, 0 <= x' <= 1}. Targets are opaque: each
is handed unchanged to its task's loss function.

Shapes: images ``[B, C, H, W]`` in [0,1]; per-task losses ``[B]``.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

__all__ = ["LOSS_FLOOR", "AttackProblem", "relative_increase", "monitor_value", "safe_loss"]

# Denominator floor for losses (a task loss of 0 must give no inf or NaN).
LOSS_FLOOR = 1e-12

LossFn = Callable[[Tensor, object], Tensor]


def safe_loss(loss: Tensor) -> Tensor:
    """``loss`` clamped below at LOSS_FLOOR, for use as a denominator."""
    return loss.clamp(min=LOSS_FLOOR)


def relative_increase(losses: Mapping[str, Tensor], clean: Mapping[str, Tensor],
                      tasks: Sequence[str]) -> Tensor:
    """Per sample sum_i (L_i(x') - L_i(x)) / L_i(x) over ``tasks`` (paper Alg. 1, lines 4, 14).

    losses, clean: task -> ``[B]``. Returns ``[B]``.
    """
    return sum((losses[t] - clean[t]) / safe_loss(clean[t]) for t in tasks)


def monitor_value(losses: Mapping[str, Tensor], clean: Mapping[str, Tensor], tasks: Sequence[str],
                  relative: bool = True) -> Tensor:
    """The scalar per sample an attack maximizes, to compare iterates: ``[B]``.

    relative: sum_i (L_i(x') - L_i(x)) / L_i(x); otherwise sum_i L_i(x'), over ``tasks``.
    """
    if relative:
        return relative_increase(losses, clean, tasks)
    return sum(losses[t] for t in tasks)


class AttackProblem:
    """The fixed part of one attack call (built by the attack, not by users)."""

    def __init__(self, model: torch.nn.Module, images: Tensor, targets: Mapping[str, object],
                 losses: Mapping[str, LossFn], eps: float, steps: int = 1):
        self.model = model
        self.clean = images.detach().clone()
        self.targets = targets
        self.loss_fns = losses
        self.tasks = list(losses)
        self.eps = float(eps)
        # Feasible box: the eps-ball intersected with the image range.
        self.lower = (self.clean - self.eps).clamp(min=0.0)
        self.upper = (self.clean + self.eps).clamp(max=1.0)
        # Filled by the first pass at the clean images: an attack that starts there gets
        # them from its first direction's forward instead of a forward of their own.
        self._clean_losses: dict[str, Tensor] | None = None
        # Gradient passes of the current run: losses with ``uses_progress`` (SegPGD) get
        # progress = passes / steps, 0 at the first step.
        self.steps = max(int(steps), 1)
        self.passes = 0

    @property
    def progress(self) -> float:
        """The current run's progress in [0, 1): k / steps at its k-th gradient pass."""
        return min(self.passes, self.steps - 1) / self.steps

    def begin_run(self) -> None:
        """A new run (restart) starts its step schedule from 0."""
        self.passes = 0

    @property
    def clean_losses(self) -> dict[str, Tensor]:
        """Detached per-task per-sample losses ``[B]`` at the clean images (one no-grad
        forward on first use, unless a pass at the clean images already gave them)."""
        if self._clean_losses is None:
            with torch.no_grad():
                self._set_clean_losses(self.task_losses(self.clean, progress=0.0))
        return self._clean_losses

    def _set_clean_losses(self, losses: Mapping[str, Tensor]) -> None:
        for task, value in losses.items():
            bad = (~torch.isfinite(value)).nonzero().flatten().tolist()
            if bad:
                raise ValueError(
                    f"loss of task {task!r} is not finite on the clean images (samples {bad}); "
                    "per-sample losses must be finite (e.g. divide by max(valid pixels, 1))")
        self._clean_losses = {t: v.detach() for t, v in losses.items()}

    def is_clean(self, x: Tensor) -> bool:
        """Whether ``x`` is the clean images' tensor itself (or a detached view of it)."""
        c = self.clean
        return (x.data_ptr() == c.data_ptr() and x.shape == c.shape and x.stride() == c.stride()
                and x.dtype == c.dtype and x.device == c.device)

    @property
    def batch_size(self) -> int:
        return self.clean.shape[0]

    def project(self, x: Tensor) -> Tensor:
        """Nearest point of the feasible box (eps-ball and [0,1]); exact identity when eps = 0."""
        return torch.clamp(x, self.lower, self.upper)

    def task_losses(self, x: Tensor, progress: float | None = None) -> dict[str, Tensor]:
        """Per-task per-sample losses ``[B]`` at ``x`` (keeps the graph if grad is enabled);
        progress: what step-scheduled losses get (None = the current run's :attr:`progress`)."""
        progress = self.progress if progress is None else progress
        outputs = self.model(x)
        result = {}
        for task, fn in self.loss_fns.items():
            if task not in outputs:
                raise ValueError(f"model output has no task {task!r} (it has {sorted(outputs)}); "
                                 "pass losses only for tasks the model predicts")
            if getattr(fn, "uses_progress", False):
                value = fn(outputs[task], self.targets[task], progress=progress)
            else:
                value = fn(outputs[task], self.targets[task])
            if value.shape != (x.shape[0],):
                raise ValueError(f"loss of task {task!r} returned shape {tuple(value.shape)}, expected "
                                 f"per-sample [{x.shape[0]}]: reduce over pixels only, not over the batch")
            result[task] = value
        return result

    def losses(self, x: Tensor) -> dict[str, Tensor]:
        """Detached per-task per-sample losses at ``x`` (no graph)."""
        if self._clean_losses is not None and self.is_clean(x):
            return dict(self._clean_losses)
        with torch.no_grad():
            return {t: v.detach() for t, v in self.task_losses(x).items()}

    def graph_losses(self, x: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """A leaf copy ``xv`` of ``x`` that requires grad, and the per-task losses ``[B]`` at it
        with their graph. At the clean images these also become :attr:`clean_losses`."""
        xv = x.detach().requires_grad_(True)
        graph = self.task_losses(xv)
        self.passes += 1
        if self._clean_losses is None and self.is_clean(x):
            self._set_clean_losses(graph)
        return xv, graph

    def random_start(self, generator: torch.Generator | None) -> Tensor:
        """A uniform random point of the eps-ball around the clean images, clipped to [0,1]."""
        noise = torch.rand(self.clean.shape, generator=generator, device=self.clean.device,
                           dtype=self.clean.dtype)
        return self.project(self.clean + (2 * noise - 1) * self.eps)
