"""The Hydra attack presets: one table, derived from the optimizer and objective tables.

Each preset sets ``optimizer``, ``objective`` and ``target_task`` of the
``attack`` group (every other field keeps its :class:`~.config.AttackConfig`
default). Names are ``<objective>_<optimizer>`` (``dgba_apgd``), and
``single_<task>_<optimizer>`` for an objective that attacks one named task
(``single_normal_pgd``), one per task name given (and ``single_<optimizer>``, whose
``attack.target_task`` the user sets), and ``ensemble`` (the per-image
worst case over its members, with APGD's reference random start and two runs each,
:mod:`.ensemble`). They live in Hydra's
ConfigStore, so ``attack=dgba_apgd`` in a defaults list or on the command line
finds them, and an unknown name fails at compose time listing the options.
:func:`preset_name` formats a name and :func:`parse_preset_name` reads one back.
"""
from __future__ import annotations

from typing import Sequence

from .optimizer_table import OPTIMIZERS
from .objectives import DGBA, OBJECTIVES

__all__ = ["preset_configs", "register_presets", "preset_name", "parse_preset_name", "ATTACK_GROUP"]

ATTACK_GROUP = "attack"
ENSEMBLE = "ensemble"
# The ensemble preset: members as in attacks.ensemble.DEFAULT_MEMBERS, each from the
# reference random start with one restart (two runs), as AutoAttack's APGD members run.
ENSEMBLE_PRESET = {"optimizer": ENSEMBLE, "objective": DGBA.name, "target_task": None,
                   "apgd_start": "reference", "restarts": 2}


def preset_name(objective: str, optimizer: str, task: str | None = None) -> str:
    """The preset name of an attack: ("dgba", "apgd") -> "dgba_apgd", ("single", "pgd", "normal")
    -> "single_normal_pgd", ("single", "pgd") -> "single_pgd".

    The ensemble optimizer gives "ensemble" whatever the objective: its members carry their
    own. ValueError for an unknown objective or optimizer, and for a task given to an attack
    that takes none (as the attack builder rejects ``target_task`` there).
    """
    if optimizer != ENSEMBLE and (optimizer not in OPTIMIZERS or objective not in OBJECTIVES):
        raise ValueError(f"no attack preset for objective {objective!r} and optimizer {optimizer!r}; objectives: "
                         f"{', '.join(OBJECTIVES)}; optimizers: {', '.join((*OPTIMIZERS, ENSEMBLE))}")
    if task is not None and (optimizer == ENSEMBLE or not OBJECTIVES[objective].needs_task):
        raise ValueError(f"objective {objective!r} with optimizer {optimizer!r} attacks no one task; "
                         f"got task {task!r}")
    if optimizer == ENSEMBLE:
        return ENSEMBLE
    return f"{objective}_{task}_{optimizer}" if task else f"{objective}_{optimizer}"


def parse_preset_name(name: str, task_names: Sequence[str] | None = None) -> tuple[str, str | None, str]:
    """(objective, task or None, optimizer) of a preset name, the inverse of :func:`preset_name`.

    The optimizer is a known suffix and the objective a known prefix, so task names may hold
    underscores: "single_segment_semantic_pgd" -> ("single", "segment_semantic", "pgd").
    "ensemble" -> ("ensemble", None, "ensemble"), the objective job records give the ensemble.
    task_names: when given, the task must be one of them. ValueError for any other name.
    """
    name = str(name)
    if name == ENSEMBLE:
        return ENSEMBLE, None, ENSEMBLE
    # Longest first, in case one optimizer's name ends with another's.
    optimizer = next((o for o in sorted(OPTIMIZERS, key=len, reverse=True) if name.endswith(f"_{o}")), None)
    head = name[: -len(optimizer) - 1] if optimizer else ""
    if head in OBJECTIVES:
        return head, None, optimizer
    for objective, cls in OBJECTIVES.items():
        task = head[len(objective) + 1:] if cls.needs_task and head.startswith(f"{objective}_") else ""
        if task and task_names is not None and task not in task_names:
            raise ValueError(f"attack preset {name!r} names task {task!r}, which is not one of "
                             f"{', '.join(task_names)}")
        if task:
            return objective, task, optimizer
    raise ValueError(f"{name!r} is not an attack preset name: expected <objective>_<optimizer>, "
                     f"<objective>_<task>_<optimizer> for an objective of one task, or {ENSEMBLE!r} "
                     f"(objectives: {', '.join(OBJECTIVES)}; optimizers: {', '.join(OPTIMIZERS)})")


def preset_configs(task_names: Sequence[str]) -> dict[str, dict]:
    """Preset name -> {"optimizer", "objective", "target_task"} (None unless Single-x).

    task_names: the tasks Single-x presets are made for (a job's tasks, or every task the
    dataset configs declare, :func:`mtl_attack.data.registry.task_names`, for Hydra's
    store). Order: optimizers, then objectives as in their tables, then tasks.
    """
    presets: dict[str, dict] = {}
    for optimizer in OPTIMIZERS:
        for objective, cls in OBJECTIVES.items():
            # An objective of one task also gets a preset without it, for tasks a user declares:
            # attack=single_pgd attack.target_task=<task>.
            for task in ((None, *task_names) if cls.needs_task else (None,)):
                presets[preset_name(objective, optimizer, task)] = {
                    "optimizer": optimizer, "objective": objective, "target_task": task}
    presets[ENSEMBLE] = dict(ENSEMBLE_PRESET)
    return presets


def register_presets(store, task_names: Sequence[str]) -> None:
    """Store every preset in ``store`` (Hydra's ConfigStore) under the ``attack`` group (idempotent)."""
    for name, fields in preset_configs(task_names).items():
        store.store(group=ATTACK_GROUP, name=name, node=dict(fields), provider="mtl_attack")
