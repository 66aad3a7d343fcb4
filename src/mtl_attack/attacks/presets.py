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
"""
from __future__ import annotations

from typing import Sequence

from .build import OPTIMIZERS
from .objectives import OBJECTIVES

__all__ = ["preset_configs", "register_presets", "ATTACK_GROUP"]

ATTACK_GROUP = "attack"
ENSEMBLE = "ensemble"
# The ensemble preset: members as in attacks.ensemble.DEFAULT_MEMBERS, each from the
# reference random start with one restart (two runs), as AutoAttack's APGD members run.
ENSEMBLE_PRESET = {"optimizer": ENSEMBLE, "objective": "dgba", "target_task": None,
                   "apgd_start": "reference", "restarts": 2}


def preset_configs(task_names: Sequence[str] | None = None) -> dict[str, dict]:
    """Preset name -> {"optimizer", "objective", "target_task"} (None unless Single-x).

    task_names: the tasks Single-x presets are made for; None = every task of every
    registered dataset (:func:`mtl_attack.data.registry.task_names`). Order: optimizers,
    then objectives as in their tables, then tasks.
    """
    if task_names is None:
        from ..data.registry import task_names as registered_task_names

        task_names = registered_task_names()
    presets: dict[str, dict] = {}
    for optimizer in OPTIMIZERS:
        for objective, cls in OBJECTIVES.items():
            # An objective of one task also gets a preset without it, for tasks a user declares:
            # attack=single_pgd attack.target_task=<task>.
            for task in ((None, *task_names) if cls.needs_task else (None,)):
                name = f"{objective}_{task}_{optimizer}" if task else f"{objective}_{optimizer}"
                presets[name] = {"optimizer": optimizer, "objective": objective, "target_task": task}
    presets[ENSEMBLE] = dict(ENSEMBLE_PRESET)
    return presets


def register_presets(store, task_names: Sequence[str]) -> None:
    """Store every preset in ``store`` (Hydra's ConfigStore) under the ``attack`` group (idempotent)."""
    for name, fields in preset_configs(task_names).items():
        store.store(group=ATTACK_GROUP, name=name, node=dict(fields), provider="mtl_attack")
