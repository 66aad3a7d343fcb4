"""Evaluating a model on a split: clean metrics and, with an attack, attacked metrics."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader

from .training import _to_device, out_of_memory_hint


def attack_inputs(batch: dict, tasks) -> tuple[dict, dict]:
    """Targets and loss functions in the attack API's shape.

    The attack treats targets as opaque: each is a (target, mask) pair, and each
    loss function unpacks it for its Task.loss -> per-sample loss [B].
    """
    targets = {t.name: (batch["targets"][t.name], batch["masks"][t.name]) for t in tasks}
    losses = {t.name: (lambda out, tm, t=t: t.loss(out, tm[0], tm[1])) for t in tasks}
    return targets, losses


def check_adversarial(x: torch.Tensor, x_adv: torch.Tensor, eps: float) -> None:
    """Sanity checks after every attacked batch: eps-ball, image range, finite values."""
    if not torch.isfinite(x_adv).all():
        raise RuntimeError("attack produced NaN or inf pixels")
    if x_adv.min() < 0 or x_adv.max() > 1:
        raise RuntimeError(f"attack left the [0,1] image range: [{x_adv.min().item()}, {x_adv.max().item()}]")
    dist = (x_adv - x).abs().max().item()
    if dist > eps + 1e-6:
        raise RuntimeError(f"attack exceeded eps: |x_adv - x|_inf = {dist:.6g} > {eps:.6g}")


@out_of_memory_hint("dataset.eval_batch_size", "batch_size")
def evaluate(model, dataset, tasks, device: torch.device, batch_size: int = 16,
             attack: Optional[Callable] = None, eps: float = 0.0, progress: bool = True,
             keep_examples: int = 0, craft_on=None) -> dict:
    """Metrics of every task on a whole split, clean and (if `attack`) attacked.

    attack(model, images [B,3,H,W] in [0,1], targets, losses) -> adversarial images; eps in [0,1] units.
    craft_on: the model the attack queries (a black-box surrogate); None = `model` itself
    (white-box). With a surrogate, `model` only ever runs forward under no_grad.
    Returns {"clean": {task: {metric: value}}, "attacked": same or None,
    "examples": up to keep_examples (clean, adversarial) image pairs [3,H,W] on the CPU,
    "timings": {"attack_s": seconds spent inside the attack}}.
    """
    from tqdm.auto import tqdm

    model.to(device).eval()
    attacked_model = model if craft_on is None else craft_on.to(device).eval()
    clean = {t.name: t.meter() for t in tasks}
    attacked = {t.name: t.meter() for t in tasks} if attack is not None else None
    examples: list[tuple[torch.Tensor, torch.Tensor]] = []
    attack_s = 0.0
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for raw in tqdm(loader, desc="attack" if attack else "eval", disable=None if progress else True, leave=False):
        batch = _to_device(raw, device)
        x = batch["image"]
        with torch.no_grad():
            out = model(x)
        for t in tasks:
            clean[t.name].update(out[t.name], batch["targets"][t.name], batch["masks"][t.name])
        if attack is None:
            continue
        targets, losses = attack_inputs(batch, tasks)
        t0 = time.perf_counter()
        x_adv = attack(attacked_model, x, targets, losses)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        attack_s += time.perf_counter() - t0
        check_adversarial(x, x_adv, eps)
        with torch.no_grad():
            out_adv = model(x_adv)
        for t in tasks:
            attacked[t.name].update(out_adv[t.name], batch["targets"][t.name], batch["masks"][t.name])
        for i in range(min(keep_examples - len(examples), x.shape[0])):
            examples.append((x[i].cpu(), x_adv[i].detach().cpu()))
    return {
        "clean": {k: m.compute() for k, m in clean.items()},
        "attacked": {k: m.compute() for k, m in attacked.items()} if attacked is not None else None,
        "examples": examples,
        "timings": {"attack_s": attack_s},
    }
