"""The worst case over several multi-task attacks, chosen per image (AutoAttack's idea for dense tasks).

Each member is a whole attack (an optimizer with an objective, e.g. DGBA-APGD); the
ensemble runs every member on the batch and keeps, for each image, the member's
adversarial image with the highest damage by the criterion, whatever each member maximised:

- arp (default): the image's own ARP (%), each task's metrics on that image alone
  against the clean image's (:func:`image_arp`), so the choice ranks by what is
  reported, as AutoAttack ranks by misclassification rather than by loss; needs the
  tasks' losses as :class:`~mtl_attack.batches.TaskLoss` (``batches.attack_inputs``);
- relative: sum_i (L_i(x') - L_i(x)) / L_i(x) over every task with the plain task
  losses the caller passed, the paper's per-image measure of multi-task damage
  (Alg. 1) (:func:`damage`). Unbounded losses let one task's loss dominate it at large
  eps, where it can keep images of lower ARP;
- absolute: sum_i L_i(x').

Ties go to the member listed first. Members are preset names (``dgba_apgd``,
``single_normal_pgd``); ``single_*_apgd`` stands for one Single-x member per task. They
share every other setting of the ensemble's :class:`~.config.AttackConfig` (steps,
restarts, start, losses, precision; with restarts > 1 each starts at random), so ``attack=ensemble attack.steps=20`` runs every
member with 20 steps.
"""
from __future__ import annotations

from dataclasses import replace
from typing import Callable, Mapping, Sequence

import torch
from torch import Tensor

from .attack import MultiTaskAttack, _check_inputs, eval_mode
from .config import AttackConfig, ObjectiveName, OptimizerName
from .modes import EnsembleCriterion
from .objectives import OBJECTIVES
from .presets import preset_configs
from .problem import relative_increase
from ..worst_case import per_image_arp

__all__ = ["DEFAULT_MEMBERS", "EnsembleAttack", "damage", "image_arp", "resolve_members", "pick_per_image"]

# The default members: the two multi-task objectives that win most often in the paper's
# tables and every single-task attack, all with APGD.
DEFAULT_MEMBERS: tuple[str, ...] = ("dgba_apgd", "total_apgd", "single_*_apgd")

WILDCARD = "*"


def damage(losses: Mapping[str, Tensor], clean: Mapping[str, Tensor],
           criterion: EnsembleCriterion = EnsembleCriterion.relative) -> Tensor:
    """Per-image damage ``[B]`` of adversarial losses ``losses`` (task -> ``[B]``) over ``clean``,
    summed over every task of ``losses`` (see the module docstring)."""
    tasks = list(losses)
    if criterion is EnsembleCriterion.relative:
        return relative_increase(losses, clean, tasks)
    return sum(losses[t] for t in tasks)


def image_arp(clean_out: Mapping[str, Tensor], adv_out: Mapping[str, Tensor], targets: Mapping[str, object],
              losses: Mapping[str, Callable]) -> Tensor:
    """Each image's own ARP (%) ``[B]`` (float64, CPU) of the model's outputs ``adv_out`` on
    adversarial images against ``clean_out`` on the clean ones (task -> ``[B, C, h, w]``):
    the tasks' metrics (from ``losses[t].task``, a :class:`~mtl_attack.batches.TaskLoss`)
    on that image alone; targets[t] = (target, mask). NaN where no metric is usable."""
    return _ranker(EnsembleCriterion.arp, clean_out, targets, losses)(adv_out)


def _metric_tasks(losses: Mapping[str, Callable]) -> dict:
    """task name -> its Task (``losses[t].task``); ValueError for losses without one."""
    tasks = {name: getattr(fn, "task", None) for name, fn in losses.items()}
    if any(task is None for task in tasks.values()):
        raise ValueError("ensemble_criterion=arp ranks by the tasks' metrics and needs TaskLoss losses "
                         "(mtl_attack.batches.attack_inputs); with other losses use ensemble_criterion=relative")
    return tasks


def _image_stats(out: Mapping[str, Tensor], targets: Mapping[str, object], tasks: Mapping) -> dict:
    """task -> per-image metric statistics of the outputs ``out`` (``Meter.image_stats``)."""
    stats = {}
    for name, task in tasks.items():
        meter = task.meter()
        meter.update(out[name], *targets[name])
        stats[name] = meter.image_stats()
    return stats


def _ranker(criterion: EnsembleCriterion, clean_out: Mapping[str, Tensor], targets: Mapping[str, object],
            losses: Mapping[str, Callable]) -> Callable[[Mapping[str, Tensor]], Tensor]:
    """outputs on a member's adversarial images -> per-image damage ``[B]`` by ``criterion``;
    what depends on the clean outputs alone is computed here, once per batch."""
    if criterion is EnsembleCriterion.arp:
        tasks = _metric_tasks(losses)
        clean_stats = _image_stats(clean_out, targets, tasks)
        scorers = {name: task.meter().score for name, task in tasks.items()}
        directions = {name: dict(task.metrics) for name, task in tasks.items()}
        return lambda out: torch.from_numpy(
            per_image_arp(clean_stats, _image_stats(out, targets, tasks), scorers, directions))
    clean = _plain_losses(clean_out, targets, losses)
    return lambda out: damage(_plain_losses(out, targets, losses), clean, criterion)


def pick_per_image(scores: Tensor) -> Tensor:
    """Index ``[B]`` of the highest of ``scores`` ``[M, B]`` per image; the first member wins ties.
    NaN never wins (an image where every member's damage is NaN keeps member 0)."""
    # torch.argmax returns the first maximal index.
    return torch.where(torch.isnan(scores), -torch.inf, scores).argmax(0)


def resolve_members(names: Sequence[str] | None, tasks: Sequence[str]) -> list[str]:
    """The member preset names for a model with ``tasks``: wildcards expanded, order kept,
    repeats dropped. ValueError for a name that is no preset."""
    names = list(DEFAULT_MEMBERS if names is None else names)
    if not names:
        raise ValueError("attack.members is empty; list member attacks, e.g. [dgba_apgd,total_apgd]")
    presets = preset_configs(list(tasks))
    out: list[str] = []
    for name in names:
        if not isinstance(name, str):
            raise ValueError(f"attack.members must be preset names, got {name!r}")
        if WILDCARD in name:
            head, _, tail = name.partition(WILDCARD)
            expanded = [f"{head}{t}{tail}" for t in tasks]
        else:
            expanded = [name]
        for member in expanded:
            if member not in presets:
                choices = ", ".join(p for p, f in presets.items() if not OBJECTIVES[f["objective"]].needs_weights)
                raise ValueError(f"attack.members: {member!r} is not an attack preset for tasks {list(tasks)}; "
                                 f"choose from {choices} (single_*_<optimizer> for every task)")
            objective = OBJECTIVES[presets[member]["objective"]]
            if objective.needs_weights:
                raise ValueError(f"attack.members: {member!r} needs calibrated weights; an ensemble member "
                                 f"cannot be {objective.label}")
            if member not in out:
                out.append(member)
    return out


def member_config(cfg: AttackConfig, name: str, tasks: Sequence[str]) -> AttackConfig:
    """The ensemble's config with one member's optimizer, objective and target task; with
    restarts > 1 and random_start left None, every member starts at random (a restart of a
    deterministic member would repeat it)."""
    fields = preset_configs(list(tasks))[name]
    random_start = True if cfg.random_start is None and cfg.restarts > 1 else cfg.random_start
    return replace(cfg, optimizer=OptimizerName(fields["optimizer"]), objective=ObjectiveName(fields["objective"]),
                   target_task=fields["target_task"], members=None, random_start=random_start)


class EnsembleAttack:
    """Runs every member attack and keeps each image's worst case (see the module docstring).

    cfg: the ensemble's :class:`AttackConfig` (optimizer ``ensemble``; ``members`` and
    ``ensemble_criterion`` are read here, the rest is each member's); eps in [0,1] image
    units (``attack.eps``). build: ``(member config, eps) -> MultiTaskAttack``.
    """

    is_ensemble = True

    def __init__(self, cfg: AttackConfig, eps: float, build: Callable[[AttackConfig, float], MultiTaskAttack]):
        if cfg.members is not None and (isinstance(cfg.members, str) or not all(
                isinstance(m, str) for m in cfg.members)):
            raise ValueError(f"members must be a list of attack preset names, got {cfg.members!r}")
        self.cfg = cfg
        self.eps = float(eps)
        self.criterion = EnsembleCriterion(cfg.ensemble_criterion)
        self._build = build
        self._members: dict[tuple[str, ...], list[tuple[str, MultiTaskAttack]]] = {}

    def __repr__(self) -> str:
        names = ", ".join(self.cfg.members or DEFAULT_MEMBERS)
        return f"EnsembleAttack([{names}], criterion={self.criterion.value}, eps={self.eps:.6g})"

    def members(self, tasks: Sequence[str]) -> list[tuple[str, MultiTaskAttack]]:
        """(name, attack) of every member for a model with ``tasks`` (built once per task list)."""
        key = tuple(tasks)
        if key not in self._members:
            names = resolve_members(self.cfg.members, key)
            self._members[key] = [(n, self._build(member_config(self.cfg, n, key), self.eps)) for n in names]
        return self._members[key]

    def __call__(self, model: torch.nn.Module, images: Tensor, targets: Mapping[str, object],
                 losses: Mapping[str, Callable], *, eps: float | None = None, return_info: bool = False):
        """Adversarial images ``[B,3,H,W]`` in [0,1], each the worst case over the members.

        With return_info, also {"members": names, "winner": ``[B]`` member index,
        "damage": ``[M,B]`` each member's damage, "candidates": ``[M,B,3,H,W]`` each
        member's adversarial images}.
        """
        eps = self.eps if eps is None else float(eps)
        _check_inputs(images, targets, losses, eps)
        members = self.members(list(losses))
        candidates, scores = [], []
        with eval_mode(model), torch.no_grad():
            rank = _ranker(self.criterion, model(images), targets, losses)  # before any member runs
        for _, attack in members:
            x_adv = attack(model, images, targets, losses, eps=eps)
            with eval_mode(model), torch.no_grad():
                scores.append(rank(model(x_adv)).to(images.device))
            candidates.append(x_adv)
        stacked, score = torch.stack(candidates), torch.stack(scores)
        winner = pick_per_image(score)
        x_best = stacked[winner, torch.arange(images.shape[0], device=images.device)]
        if not return_info:
            return x_best
        return x_best, {"members": [n for n, _ in members], "winner": winner, "damage": score,
                        "candidates": stacked}


def _plain_losses(out: Mapping[str, Tensor], targets, losses) -> dict[str, Tensor]:
    """The caller's per-task losses ``[B]`` of the model's outputs ``out``."""
    return {t: fn(out[t], targets[t]).detach().float() for t, fn in losses.items()}
