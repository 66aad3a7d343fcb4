"""What training, evaluation and the benchmark do with one batch of a split.

A batch is the default collation of dataset items: ``{"image": float [B,3,S,S]
in [0,1], "targets": {task: tensor}, "masks": {task: bool [B,S,S]}}``.
"""
from __future__ import annotations

import functools
import inspect

import torch

__all__ = ["to_device", "attack_inputs", "TaskLoss", "check_adversarial", "out_of_memory_hint"]


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its image, targets and masks on `device`."""
    return {
        "image": batch["image"].to(device, non_blocking=True),
        "targets": {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()},
        "masks": {k: v.to(device, non_blocking=True) for k, v in batch["masks"].items()},
    }


class TaskLoss:
    """A task's loss in the attack API's shape: ``loss(output, (target, mask)) -> [B]``.

    It also knows the task's kind, so an attack can swap in a harder loss of the same
    task (:meth:`harder`; the attacks' ``seg_loss`` and ``regression_loss`` options).
    """

    def __init__(self, task):
        self.task = task
        self.kind = task.meter().kind

    def __call__(self, output, target_mask):
        return self.task.loss(output, target_mask[0], target_mask[1])

    def harder(self, name: str) -> "ProgressLoss | TaskLoss":
        """The task's attack loss called ``name`` (docs/attack_losses.md), or itself for the plain one."""
        from .attacks.dense_losses import REGRESSION_KINDS, attack_loss

        if name in ("ce", "plain") or (self.kind != "segmentation" and self.kind not in REGRESSION_KINDS):
            return self
        return ProgressLoss(attack_loss(self.kind, name, getattr(self.task.loss, "class_weights", None)), name)


class ProgressLoss:
    """``fn(pred, target, mask, progress)`` in the attack API's shape; the attack passes
    progress = k / steps at its k-th gradient pass (SegPGD's schedule)."""

    uses_progress = True

    def __init__(self, fn, name: str):
        self.fn, self.name = fn, name

    def __call__(self, output, target_mask, progress: float = 0.0):
        return self.fn(output, target_mask[0], target_mask[1], progress)


def attack_inputs(batch: dict, tasks) -> tuple[dict, dict]:
    """Targets and loss functions in the attack API's shape.

    The attack treats targets as opaque: each is a (target, mask) pair, and each
    loss (a :class:`TaskLoss`) unpacks it for its Task.loss -> per-sample loss [B].
    """
    targets = {t.name: (batch["targets"][t.name], batch["masks"][t.name]) for t in tasks}
    losses = {t.name: TaskLoss(t) for t in tasks}
    return targets, losses


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> None:
    """Sanity checks after every attacked batch: eps-ball (eps in [0,1] units), image range, finite values."""
    if not torch.isfinite(x_adv).all():
        raise RuntimeError("attack produced NaN or inf pixels")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"attack left the [0,1] image range: [{x_adv.min().item()}, {x_adv.max().item()}]")
    dist = (x_adv - x).abs().max().item()
    if dist > eps + 1e-6:
        raise RuntimeError(f"attack exceeded eps: |x_adv - x|_inf = {dist:.6g} > {eps:.6g}")


def _out_of_memory(err: BaseException) -> str | None:
    """"GPU" or "CPU" when ``err`` is running out of memory there, else None."""
    if isinstance(err, torch.OutOfMemoryError):
        return "GPU"
    if isinstance(err, MemoryError):
        return "CPU"
    text = str(err)
    if isinstance(err, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text):
        return "CPU"
    return None


def out_of_memory_hint(setting: str, argument: str):
    """Decorator: running out of memory (GPU or CPU) becomes a one-line UserError naming the batch
    size setting to lower and its current value (read from the call's `argument`, e.g. "cfg.batch_size")."""
    from .errors import UserError

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except (torch.OutOfMemoryError, MemoryError, RuntimeError) as err:
                where = _out_of_memory(err)
                if where is None:
                    raise
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                name, _, attr = argument.partition(".")
                value = getattr(bound.arguments[name], attr) if attr else bound.arguments[name]
                raise UserError(f"out of {where} memory at {setting}={value}; lower {setting} "
                                f"(e.g. {setting}={max(1, int(value) // 2)}) or dataset.input_size") from None
        return guarded
    return wrap
