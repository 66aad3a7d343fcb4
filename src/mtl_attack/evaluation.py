"""Evaluating a model on a split: clean metrics and, with an attack, attacked metrics."""
from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from torch.utils.data import DataLoader

from .batches import attack_inputs, check_adversarial, out_of_memory_hint, to_device


@out_of_memory_hint("dataset.eval_batch_size", "batch_size")
def evaluate(model, dataset, tasks, device: torch.device, batch_size: int = 16,
             attack: Optional[Callable] = None, progress: bool = True,
             keep_examples: int = 0, craft_on=None) -> dict:
    """Metrics of every task on a whole split, clean and (if `attack`) attacked.

    attack(model, images [B,3,H,W] in [0,1], targets, losses) -> adversarial images; its `eps`
    attribute (L-infinity budget in [0,1] units) bounds every batch's check.
    craft_on: the model the attack queries (a black-box surrogate); None = `model` itself
    (white-box). With a surrogate, `model` only ever runs forward under no_grad.
    Returns {"clean": {task: {metric: value}}, "attacked": same or None,
    "image_stats": {"clean": {task: per-image statistics}, "attacked": same or None} (each
    statistic ``[N, ...]`` over the split's N images in order, :class:`mtl_attack.tasks.Meter`),
    "examples": up to keep_examples dicts on the CPU: "image" and "adversarial" [3,H,W], "targets"
    and "masks" (task -> one image's), "clean_pred" and "attacked_pred" (task -> [C,h,w]),
    "timings": {"attack_s": seconds spent inside the attack}}. With an ensemble attack
    (``attack.is_ensemble``) also "members": {"names": [...], "winner": int [N] member kept
    per image, "metrics": {member: {task: {metric: value}}}, "image_stats": {member: {task:
    statistics}}}, each member scored on its own adversarial images of the same N images.
    """
    from .progress import progress as progress_bar

    model.to(device).eval()
    attacked_model = model if craft_on is None else craft_on.to(device).eval()
    clean = {t.name: t.meter() for t in tasks}
    attacked = {t.name: t.meter() for t in tasks} if attack is not None else None
    examples: list[dict] = []
    attack_s = 0.0
    ensemble = attack is not None and getattr(attack, "is_ensemble", False)
    members: dict = {}
    winners: list[torch.Tensor] = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    for raw in progress_bar(loader, desc="attack" if attack else "eval", enabled=progress, unit="batch"):
        batch = to_device(raw, device)
        x = batch["image"]
        with torch.no_grad():
            out = model(x)
        for t in tasks:
            clean[t.name].update(out[t.name], batch["targets"][t.name], batch["masks"][t.name])
        if attack is None:
            continue
        targets, losses = attack_inputs(batch, tasks)
        t0 = time.perf_counter()
        if ensemble:
            x_adv, info = attack(attacked_model, x, targets, losses, return_info=True)
        else:
            x_adv = attack(attacked_model, x, targets, losses)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        attack_s += time.perf_counter() - t0
        check_adversarial(x, x_adv, attack.eps)
        with torch.no_grad():
            out_adv = model(x_adv)
        for t in tasks:
            attacked[t.name].update(out_adv[t.name], batch["targets"][t.name], batch["masks"][t.name])
        if ensemble:
            winners.append(info["winner"].cpu())
            for name, x_member in zip(info["members"], info["candidates"]):
                meters = members.setdefault(name, {t.name: t.meter() for t in tasks})
                with torch.no_grad():
                    out_member = model(x_member)
                for t in tasks:
                    meters[t.name].update(out_member[t.name], batch["targets"][t.name], batch["masks"][t.name])
        for i in range(min(keep_examples - len(examples), x.shape[0])):
            examples.append({"image": x[i].cpu(), "adversarial": x_adv[i].detach().cpu(),
                             "targets": {t.name: batch["targets"][t.name][i].cpu() for t in tasks},
                             "masks": {t.name: batch["masks"][t.name][i].cpu() for t in tasks},
                             "clean_pred": {t.name: out[t.name][i].float().cpu() for t in tasks},
                             "attacked_pred": {t.name: out_adv[t.name][i].float().cpu() for t in tasks}})
    result = {
        "clean": {k: m.compute() for k, m in clean.items()},
        "attacked": {k: m.compute() for k, m in attacked.items()} if attacked is not None else None,
        "image_stats": {"clean": {k: m.image_stats() for k, m in clean.items()},
                        "attacked": {k: m.image_stats() for k, m in attacked.items()} if attacked is not None
                        else None},
        "examples": examples,
        "timings": {"attack_s": attack_s},
    }
    if ensemble:
        result["members"] = {
            "names": list(members), "winner": torch.cat(winners).numpy() if winners else None,
            "metrics": {n: {k: m.compute() for k, m in ms.items()} for n, ms in members.items()},
            "image_stats": {n: {k: m.image_stats() for k, m in ms.items()} for n, ms in members.items()}}
    return result
