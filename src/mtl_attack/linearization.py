"""How linear DGBA's objective is over the perturbation an attack takes (the paper's Table 5).

DGBA maximises J(x') = sum_i L_i(x') / L_i(x), the tasks' losses relative to their
clean values (paper Eq. 11), through its first-order Taylor term (Eq. 12). Over the
perturbation delta = x' - x an attack actually takes, per image:

    first  = <grad J(x), delta>                    (the term DGBA maximises)
    second = 1/2 <delta, H_J(x) delta>             (the dropped quadratic term, Eq. 14)
    actual = J(x + delta) - J(x)                   (the true change)
    ratio  = |second| / |first|

The Hessian-vector product H_J(x) delta is exact: a second backward pass through the
first gradient (double backward), per image (the model runs in eval mode, so images
do not interact). The clean losses L_i(x) in the denominators are constants.
Shapes: images [B, 3, H, W] in [0, 1]; every returned value [B].
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import torch

from .attacks.problem import safe_loss

__all__ = ["linearization_terms", "summarize_ratio"]


def _objective(model, x: torch.Tensor, targets: Mapping, losses: Mapping, clean: Mapping[str, torch.Tensor]):
    out = model(x)
    return sum(fn(out[t], targets[t]) / safe_loss(clean[t]) for t, fn in losses.items())


def linearization_terms(model: torch.nn.Module, images: torch.Tensor, adversarial: torch.Tensor,
                        targets: Mapping, losses: Mapping) -> dict[str, torch.Tensor]:
    """First- and second-order terms of DGBA's objective over delta = adversarial - images.

    model: in eval mode; images, adversarial: [B, 3, H, W] in [0, 1]; targets and losses as an
    attack takes them (task -> target, task -> loss(output, target) -> [B]).
    Returns {"first", "second", "actual", "ratio"}, each float64 [B] (module docstring).
    """
    delta = (adversarial - images).detach()
    with torch.no_grad():
        out = model(images)
        clean = {t: fn(out[t], targets[t]).detach() for t, fn in losses.items()}
        at_adv = _objective(model, adversarial.detach(), targets, losses, clean)
    x = images.detach().clone().requires_grad_(True)
    j = _objective(model, x, targets, losses, clean)
    (grad,) = torch.autograd.grad(j.sum(), x, create_graph=True)
    first_b = (grad * delta).flatten(1).sum(1)
    (hvp,) = torch.autograd.grad(first_b.sum(), x)
    second = 0.5 * (hvp * delta).flatten(1).sum(1)
    first = first_b.detach().double()
    second = second.detach().double()
    actual = (at_adv - j.detach()).double()
    ratio = second.abs() / first.abs().clamp_min(1e-30)
    return {"first": first, "second": second, "actual": actual, "ratio": ratio}


def summarize_ratio(ratio: np.ndarray) -> dict[str, float]:
    """Mean, standard deviation (ddof 1), min and max of the per-image ratios ``[N]``, as Table 5."""
    r = np.asarray(ratio, dtype=np.float64)
    if r.size == 0:
        raise ValueError("no images: nothing to summarise")
    return {"images": int(r.size), "mean": float(r.mean()), "std": float(r.std(ddof=1)) if r.size > 1 else 0.0,
            "min": float(r.min()), "max": float(r.max())}


def measure(cfg, progress: bool = True) -> dict:
    """Table 5 for one job config: train or load its model, attack its test images with the
    job's attack (`attack`, `eps`; the default dgba_apgd), and measure the terms above per image.

    Returns {"per_image": {"first", "second", "actual", "ratio": float64 [N]}, "summary":
    :func:`summarize_ratio` of the ratios, "job": {dataset, model, attack, eps, images}}.
    """
    from torch.utils.data import DataLoader

    from .attacks import build_attack_from_config, preset_name
    from .batches import attack_inputs, to_device
    from .config import eps_to_unit
    from .parts import prepare
    from .preflight import preflight
    from .progress import progress as progress_bar

    checked = preflight(cfg)
    parts = prepare(cfg, progress=progress, checked=checked)
    attack = build_attack_from_config(cfg.attack, eps_to_unit(cfg.eps))
    model, device = parts.model, parts.device
    rows: dict[str, list[np.ndarray]] = {"first": [], "second": [], "actual": [], "ratio": []}
    loader = DataLoader(parts.test, batch_size=cfg.dataset.eval_batch_size, shuffle=False)
    for raw in progress_bar(loader, desc="linearization", enabled=progress, unit="batch"):
        batch = to_device(raw, device)
        targets, losses = attack_inputs(batch, parts.tasks)
        adversarial = attack(model, batch["image"], targets, losses)
        for key, value in linearization_terms(model, batch["image"], adversarial, targets, losses).items():
            rows[key].append(value.cpu().numpy())
    per_image = {k: np.concatenate(v) for k, v in rows.items()}
    a = cfg.attack
    job = {"dataset": cfg.dataset.name, "tasks": [t.name for t in parts.tasks],
           "model": str(parts.layout) if parts.layout is not None else cfg.model.get("_target_"),
           "attack": preset_name(a.objective.value, a.optimizer.value, a.target_task), "eps": float(cfg.eps),
           "images": int(per_image["ratio"].size), "seed": int(cfg.seed)}
    return {"per_image": per_image, "summary": summarize_ratio(per_image["ratio"]), "job": job}


def write_measurement(result: dict, out_dir) -> list:
    """linearization.json (job and summary), linearization.csv (per image) and linearization.md
    (the Table 5 row) in `out_dir`; returns their paths."""
    import json
    from pathlib import Path

    import pandas as pd

    from . import atomic
    from .report.markdown import to_markdown

    out = Path(out_dir)
    s = result["summary"]
    table = pd.DataFrame([{"images": str(s["images"]), **{k: f"{s[k]:.4g}" for k in ("mean", "std", "min", "max")}}],
                         index=pd.Index(["|second| / |first|"], name="ratio"))
    j = result["job"]
    md = (f"# Linearization of DGBA's objective (Table 5)\n\n{j['dataset']} ({', '.join(j['tasks'])}), "
          f"model {j['model']}, {j['attack']} at eps {j['eps']:g}/255, seed {j['seed']}: per image, the "
          "second-order term 1/2 <delta, H delta> against the first-order term <grad J, delta> of "
          "J = sum_i L_i(x') / L_i(x) over the perturbation the attack took.\n\n"
          + to_markdown(table, digits=4, headers=["images", "mean", "std", "min", "max"], params={}) + "\n")
    csv = pd.DataFrame(result["per_image"]).rename_axis("image").to_csv()
    return [atomic.write_text(out / "linearization.json", json.dumps({"job": j, "summary": s}, indent=1)),
            atomic.write_text(out / "linearization.csv", csv), atomic.write_text(out / "linearization.md", md)]
