"""Whether an attack at a reduced precision scores the ARP of fp32's (`mtl-attack bench --arp`):
a reduced precision becomes a default only if its ARP is within ARP_TOLERANCE of fp32's."""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .attacks.attack import as_precision
from .attacks.config import Precision
from .attacks.presets import preset_name
from .bench import _device
from .config import eps_to_unit
from .records import machine_label
from .scores import arp, relative_change

__all__ = ["ARP_TOLERANCE", "relative_difference", "arp_agreement", "arp_check"]

# Reduced precision is a default only if its ARP is within this fraction of fp32's.
ARP_TOLERANCE = 0.02


def relative_difference(reference: float, other: float) -> float:
    """(other - reference) / |reference|: a reduced precision's ARP against fp32's (a fraction)."""
    if reference == 0:
        raise ValueError("the fp32 ARP is 0, so a relative difference is undefined; "
                         "attack more images or with a larger eps")
    try:
        return relative_change(reference, other)
    except ValueError as err:
        raise ValueError(f"ARP values must be finite, got {reference} and {other}") from err


def arp_agreement(clean, attacked_ref, attacked_other, tasks, tol: float = ARP_TOLERANCE) -> dict:
    """Does an attack at reduced precision score the ARP of fp32's on the same images and model?

    clean, attacked_ref (fp32), attacked_other: {task: {metric: value}}; tasks: Task objects or
    {task: {metric: higher_is_better}}. Returns {"arp_ref", "arp_other", "rel_diff", "ok"} with
    ok = |rel_diff| <= tol (ARP in percent as scores.arp; rel_diff a fraction).
    """
    ref, _ = arp(clean, attacked_ref, tasks)
    other, _ = arp(clean, attacked_other, tasks)
    rel = relative_difference(ref, other)
    return {"arp_ref": ref, "arp_other": other, "rel_diff": rel, "ok": abs(rel) <= tol}


def arp_check(overrides: Sequence[str], precisions: Sequence[str], images: int, device: str = "auto",
              progress: bool = False, log: Callable[[str], None] | None = None) -> dict:
    """ARP of the configured job's attack at each precision on its first `images` test images.

    overrides: Hydra overrides of the job (dataset, backbone, layout, attack, eps, ...); the model
    comes from the cache or is trained once, as run.py does. fp32 is always measured (the reference).
    Returns {"attack", "eps", "images", "tolerance", "model", "device", "precisions": {p: {"arp", "per_task",
    "attack_s", "rel_diff", "ok"}}}.
    """
    from torch.utils.data import Subset

    from .attacks import build_attack_from_config
    from .config import compose
    from .evaluation import evaluate
    from .parts import prepare

    log = log or (lambda msg: None)
    if images < 1:
        raise ValueError(f"--arp-images must be >= 1, got {images}")
    cfg = compose(list(overrides))
    dev = _device(device)
    parts = prepare(cfg, dev, progress=progress)
    model, tasks, layout = parts.model, parts.tasks, parts.layout
    subset = Subset(parts.test, range(min(images, len(parts.test))))
    eps = eps_to_unit(cfg.eps)
    order = ["fp32"] + [as_precision(p).value for p in precisions if as_precision(p) is not Precision.fp32]
    results, clean = {}, None
    for p in dict.fromkeys(order):
        acfg = cfg.attack.copy()
        acfg.precision = p
        res = evaluate(model, subset, tasks, dev, batch_size=cfg.dataset.eval_batch_size,
                       attack=build_attack_from_config(acfg, eps=eps), progress=progress)
        clean = clean or res["clean"]
        overall, per_task = arp(res["clean"], res["attacked"], tasks)
        results[p] = {"arp": overall, "per_task": per_task, "attack_s": res["timings"]["attack_s"],
                      "attacked": res["attacked"]}
        log(f"  ARP {p}: {overall:.3f} ({res['timings']['attack_s']:.1f} s attacking)")
    reference = results["fp32"]["attacked"]
    for e in results.values():
        agreement = arp_agreement(clean, reference, e.pop("attacked"), tasks)
        e["rel_diff"], e["ok"] = agreement["rel_diff"], agreement["ok"]
    a = cfg.attack
    name = preset_name(a.objective.value, a.optimizer.value, a.target_task)
    return {"attack": name, "steps": a.steps, "eps": float(cfg.eps), "images": len(subset), "tolerance": ARP_TOLERANCE,
            "model": f"{cfg.dataset.name} {cfg.backbone.name.value} heads {cfg.backbone.head_width} {layout}",
            "device": machine_label(dev, torch.get_num_threads()), "overrides": list(overrides), "precisions": results}
