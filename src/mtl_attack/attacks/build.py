"""Building attacks from names: the optimizer and objective tables and the two builders.

Every optimizer works with every objective: the registries below map the
config's names to classes, and each class reads its own options from an
:class:`AttackConfig` (``from_config``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from enum import Enum
from typing import Any

from .attack import MultiTaskAttack
from .config import AttackConfig, OptimizerName
from .early_stop import EarlyStop, EarlyStoppedPGD
from .ensemble import EnsembleAttack
from .objectives import OBJECTIVES
from .optimizer_table import OPTIMIZERS

__all__ = ["OPTIMIZERS", "OBJECTIVES", "build_attack", "build_attack_from_config", "config_from_options"]


_FIELDS = {f.name: f for f in dataclasses.fields(AttackConfig)}
_HINTS = typing.get_type_hints(AttackConfig)


def _enum_type(hint) -> type[Enum] | None:
    for candidate in (hint, *typing.get_args(hint)):
        if isinstance(candidate, type) and issubclass(candidate, Enum):
            return candidate
    return None


def _coerce(name: str, value: Any) -> Any:
    enum = _enum_type(_HINTS[name])
    if enum is None or value is None or isinstance(value, enum):
        return value
    try:
        return enum(value.value if isinstance(value, Enum) else value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ValueError(f"invalid {name} {value!r}; expected one of [{choices}]") from None


def config_from_options(optimizer: str, objective: str, steps: int = 10, **options: Any) -> AttackConfig:
    """An :class:`AttackConfig` from names and keyword options (strings accepted for Enums)."""
    unknown = sorted(set(options) - set(_FIELDS))
    if unknown:
        raise ValueError(f"unknown attack options {unknown}; valid options: {sorted(set(_FIELDS))}")
    values = {"optimizer": optimizer, "objective": objective, "steps": steps, **options}
    return AttackConfig(**{k: _coerce(k, v) for k, v in values.items()})


def build_attack(optimizer: str, objective: str, eps: float, steps: int = 10, *,
                 early_stop: EarlyStop | None = None, **options: Any) -> MultiTaskAttack:
    """An attack from names, without Hydra.

    optimizer: fgsm | pgd | mim | apgd | saga, or ensemble (the per-image worst case over
    ``members``, :class:`~.ensemble.EnsembleAttack`; objective is then ignored); objective:
    single | total | signtotal | weightedtotal | wgd | dgba; eps in [0,1] image units (kept as
    ``attack.eps``); options are the other :class:`AttackConfig` fields (target_task,
    a task name of the model's outputs, rel_stepsize, random_start, restarts, seed,
    fused, mim_decay, apgd_*, saga_*, wgd_variant, weights, precision, channels_last,
    compile, seg_loss, regression_loss, members, ensemble_criterion). early_stop (optimizer pgd only): FAT's per-sample stopping rule
    (:class:`EarlyStoppedPGD`).
    """
    return build_attack_from_config(config_from_options(optimizer, objective, steps, **options), eps,
                                    early_stop=early_stop)


def build_attack_from_config(cfg: Any, eps: float, *,
                             early_stop: EarlyStop | None = None) -> MultiTaskAttack | EnsembleAttack:
    """An attack from an :class:`AttackConfig` or a DictConfig with its fields; eps in [0,1] units.

    early_stop: PGD becomes FAT's early-stopped PGD (:class:`EarlyStoppedPGD`); other
    optimizers refuse it.
    """
    if not isinstance(cfg, AttackConfig):
        from omegaconf import DictConfig, OmegaConf

        if not isinstance(cfg, DictConfig):
            raise ValueError(f"cfg must be an AttackConfig or a DictConfig, got {type(cfg).__name__}")
        cfg = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(AttackConfig), cfg))
    cfg = dataclasses.replace(cfg, **{k: _coerce(k, getattr(cfg, k)) for k in _FIELDS})
    if isinstance(eps, bool) or not isinstance(eps, numbers.Real) or not math.isfinite(eps) or not 0 <= eps <= 1:
        raise ValueError(f"eps must be in [0,1] image units, got {eps!r} (pixel units: divide by 255)")
    if cfg.optimizer is OptimizerName.ensemble:
        if early_stop is not None:
            raise ValueError("early_stop stops PGD samples early; an ensemble cannot take it")
        if cfg.target_task is not None:
            raise ValueError("target_task does not apply to an ensemble; list single_<task>_<optimizer> in members")
        return EnsembleAttack(cfg, float(eps), build_attack_from_config)
    if cfg.members is not None:
        raise ValueError(f"members apply only to optimizer 'ensemble', not {cfg.optimizer.value!r}; leave them None")
    objective_cls = OBJECTIVES[cfg.objective.value]
    if objective_cls.needs_task and cfg.target_task is None:
        raise ValueError(f"objective {cfg.objective.value!r} needs target_task (e.g. target_task='normal')")
    if not objective_cls.needs_task and cfg.target_task is not None:
        raise ValueError(f"target_task applies only to objective 'single', not {cfg.objective.value!r}; "
                         "leave it None")
    if early_stop is not None:
        if not isinstance(early_stop, EarlyStop):
            raise ValueError(f"early_stop must be an EarlyStop(tau, threshold) or None, got {early_stop!r}")
        if cfg.optimizer is not OptimizerName.pgd:
            raise ValueError(f"early_stop stops PGD samples early; use optimizer 'pgd', not {cfg.optimizer.value!r}")
        optimizer = EarlyStoppedPGD(early_stop)
    else:
        optimizer = OPTIMIZERS[cfg.optimizer.value].from_config(cfg)
    objective = objective_cls.from_config(cfg)
    return MultiTaskAttack(optimizer, objective, float(eps), steps=cfg.steps, rel_stepsize=cfg.rel_stepsize,
                           random_start=cfg.random_start, restarts=cfg.restarts, seed=cfg.seed,
                           precision=cfg.precision, channels_last=cfg.channels_last, compile=cfg.compile,
                           seg_loss=cfg.seg_loss, regression_loss=cfg.regression_loss)
