"""Figure 7: what attacks do to the predictions, as a grid of attacks by eps for chosen test images.

For each chosen image one PNG: a block of rows per attack (the adversarial image, then each
task's prediction in its kind's colours, :mod:`mtl_attack.pictures`), one column per eps
(eps 0 = the clean image and its prediction), and a first column with the clean image and
each task's ground truth. Depth and regression maps share the ground truth's colour scale.
"""
from __future__ import annotations

from typing import Sequence

import torch

from .errors import UserError

__all__ = ["DEFAULT_EPS", "default_attacks", "gallery"]

DEFAULT_EPS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)  # pixel units out of 255, the paper's Figure 7


def default_attacks(task_names: Sequence[str], optimizer: str) -> list[str]:
    """Single-x for each task, Total and DGBA, all with `optimizer` (the paper's Figure 7 set)."""
    from .attacks import DGBA, OPTIMIZERS, SingleTask, Total, preset_name

    if optimizer not in OPTIMIZERS:  # the ensemble is a whole attack, not an optimizer to pair with these
        raise UserError(f"the default attacks pair one optimizer with Single-x, Total and DGBA, and "
                        f"{optimizer!r} is none of {', '.join(OPTIMIZERS)}; name the attacks to show")
    return ([preset_name(SingleTask.name, optimizer, t) for t in task_names]
            + [preset_name(Total.name, optimizer), preset_name(DGBA.name, optimizer)])


def _attack_cfg(cfg, name: str, presets: dict):
    from omegaconf import OmegaConf

    if name not in presets:
        raise UserError(f"attack {name!r} is not a preset for these tasks; choose from {', '.join(presets)}")
    return OmegaConf.merge(cfg.attack, presets[name])


def gallery(cfg, images: Sequence[int], attacks: Sequence[str] | None = None,
            eps: Sequence[float] = DEFAULT_EPS, progress: bool = True) -> dict[int, bytes]:
    """Test image index -> PNG bytes of its grid (module docstring) for the job config `cfg`.

    images: indexes into the (limited) test split; attacks: preset names (default
    :func:`default_attacks` with the job's optimizer); eps: budgets in pixel units out of 255.
    """
    from torch.utils.data import default_collate

    from .attacks import build_attack_from_config
    from .attacks.presets import parse_preset_name, preset_configs
    from .batches import attack_inputs, to_device
    from .config import eps_to_unit
    from .parts import prepare
    from .pictures import grid_png, image_picture, prediction_picture, task_picture, truth_scale
    from .preflight import check_eps, preflight

    eps = [check_eps(e, "--eps") for e in eps]
    checked = preflight(cfg)
    parts = prepare(cfg, progress=progress, checked=checked)
    n = len(parts.test)
    bad = [i for i in images if not 0 <= i < n]
    if bad or not images:
        raise UserError(f"--images {list(images)}: give test image indexes from 0 to {n - 1}")
    tasks, model = parts.tasks, parts.model
    names = [t.name for t in tasks]
    attacks = list(attacks or default_attacks(names, cfg.attack.optimizer.value))
    presets = preset_configs(names)
    attack_cfgs = {a: _attack_cfg(cfg, a, presets) for a in attacks}
    batch = to_device(default_collate([parts.test[i] for i in images]), parts.device)
    x = batch["image"]
    targets, losses = attack_inputs(batch, tasks)
    with torch.no_grad():
        clean_out = model(x)
    results: dict[str, list] = {}
    for name, a_cfg in attack_cfgs.items():
        row = []
        for e in eps:
            if e == 0:
                row.append((x, clean_out))
                continue
            x_adv = build_attack_from_config(a_cfg, eps_to_unit(e))(model, x, targets, losses).detach()
            with torch.no_grad():
                row.append((x_adv, model(x_adv)))
        results[name] = row
    size = tuple(x.shape[-2:])
    out = {}
    for b, index in enumerate(images):
        truth = {t.name: (batch["targets"][t.name][b].cpu(), batch["masks"][t.name][b].cpu()) for t in tasks}
        scale = {t.name: truth_scale(t.kind, *truth[t.name]) for t in tasks}
        cells, row_titles = [], []
        for name in attacks:
            cells.append([image_picture(x[b])] + [image_picture(xa[b]) for xa, _ in results[name]])
            objective, task, optimizer = parse_preset_name(name, names)
            row_titles.append("\n".join(p for p in (objective, task, optimizer) if p))
            for t in tasks:
                cells.append([task_picture(t.kind, *truth[t.name], scale[t.name])]
                             + [prediction_picture(t.kind, o[t.name][b].cpu(), size, scale[t.name])
                                for _, o in results[name]])
                row_titles.append(t.name)
        cols = ["clean / truth"] + [f"eps {e:g}" for e in eps]
        out[index] = grid_png(cells, cols, row_titles, cell_inches=1.0,
                              title=f"{cfg.dataset.name}, test image {index}: attacks by eps (pixel units out of 255)")
    return out
