"""What training, evaluation and the benchmark do with one batch of a split.

A batch is the default collation of dataset items: ``{"image": float [B,3,S,S]
in [0,1], "targets": {task: tensor}, "masks": {task: bool [B,S,S]}}``.
"""
from __future__ import annotations

import functools
import inspect

import torch

__all__ = ["to_device", "attack_inputs", "check_adversarial", "out_of_memory_hint"]


def to_device(batch: dict, device: torch.device) -> dict:
    """The batch with its image, targets and masks on `device`."""
    return {
        "image": batch["image"].to(device, non_blocking=True),
        "targets": {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()},
        "masks": {k: v.to(device, non_blocking=True) for k, v in batch["masks"].items()},
    }


def attack_inputs(batch: dict, tasks) -> tuple[dict, dict]:
    """Targets and loss functions in the attack API's shape.

    The attack treats targets as opaque: each is a (target, mask) pair, and each
    loss function unpacks it for its Task.loss -> per-sample loss [B].
    """
    targets = {t.name: (batch["targets"][t.name], batch["masks"][t.name]) for t in tasks}
    losses = {t.name: (lambda out, tm, t=t: t.loss(out, tm[0], tm[1])) for t in tasks}
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


def out_of_memory_hint(setting: str, argument: str):
    """Decorator: running out of device memory becomes a one-line RuntimeError naming the batch
    size setting to lower and its current value (read from the call's `argument`, e.g. "cfg.batch_size")."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def guarded(*args, **kwargs):
            try:
                return fn(*args, **kwargs)
            except torch.OutOfMemoryError as err:
                bound = signature.bind(*args, **kwargs)
                bound.apply_defaults()
                name, _, attr = argument.partition(".")
                value = getattr(bound.arguments[name], attr) if attr else bound.arguments[name]
                raise RuntimeError(f"out of GPU memory at {setting}={value}; lower {setting} "
                                   f"(e.g. {setting}={max(1, int(value) // 2)})") from err
        return guarded
    return wrap
