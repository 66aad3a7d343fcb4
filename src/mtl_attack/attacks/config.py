"""Typed attack configuration: one dataclass for Hydra and for :func:`build_attack`.

Choices are Enums, so OmegaConf rejects an unknown optimizer, objective or mode
at compose/merge time with a message naming the valid values. The objective
names come from the objective table (:data:`~mtl_attack.attacks.objectives.OBJECTIVES`),
so a new objective needs no entry here. Task names are plain strings: which
tasks exist is the model's and the dataset's business, and Single-x checks its
task against the attacked tasks at call time. The Python API accepts the same
fields as keyword arguments (strings for the Enums).

Units: ``eps`` is not a field here; the caller passes it to
:func:`~mtl_attack.attacks.build_attack_from_config` in [0,1] image units
(the Hydra config's ``eps`` is in pixel units out of 255) and the attack keeps
it as ``attack.eps``. Step sizes are relative to eps.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Dict, List, Optional

from .modes import ApgdMonitor, ApgdStart, EnsembleCriterion, Precision, RegressionLoss, SegLoss, WgdVariant
from .objectives import OBJECTIVES

__all__ = [
    "OptimizerName",
    "ObjectiveName",
    "ApgdStart",
    "ApgdMonitor",
    "WgdVariant",
    "Precision",
    "SegLoss",
    "RegressionLoss",
    "EnsembleCriterion",
    "AttackConfig",
]


class OptimizerName(Enum):
    """Single-task optimizers the multi-task directions are fed to, and the ensemble of
    whole attacks (:mod:`.ensemble`), which runs several and keeps the worst case per image."""

    fgsm = "fgsm"
    pgd = "pgd"
    mim = "mim"
    apgd = "apgd"
    saga = "saga"
    ensemble = "ensemble"


# Ways to turn the tasks' losses into one ascent direction: one member per entry of
# the objective table, in its order.
ObjectiveName = Enum("ObjectiveName", {name: name for name in OBJECTIVES}, module=__name__)


@dataclass
class AttackConfig:
    """Every hyperparameter of an attack; model, data and eps come at call time.

    Defaults are the authors' runs (10 steps, step eps/steps, no random start), except APGD's
    start: Croce and Hein's random start with a first step of 2 eps (apgd_start=reference), which
    the DGBA authors' clean start with step eps/steps (apgd_start=authors) leaves far weaker.
    Fields that do not apply to the chosen optimizer/objective are ignored.
    """

    optimizer: OptimizerName = OptimizerName.pgd
    objective: ObjectiveName = ObjectiveName.dgba
    # The attacked task of objective=single, a task name of the model's outputs (must be
    # None for the other objectives); checked against the attacked tasks at call time.
    target_task: Optional[str] = None
    # Iterations (FGSM always takes one step).
    steps: int = 10
    # Step size as a fraction of eps; None = the optimizer's default
    # (FGSM 1; PGD, MIM, SAGA 1/steps; APGD 2, or 1/steps with apgd_start=authors).
    rel_stepsize: Optional[float] = None
    # Start from a uniform random point of the eps-ball; None = the optimizer's
    # default (False, except APGD with apgd_start=reference, its default).
    random_start: Optional[bool] = None
    # Independent runs (each from a new random start); the per-sample best by the
    # monitored objective is kept. More than 1 needs a random start.
    restarts: int = 1
    # Seed of the random starts (None = not reproducible).
    seed: Optional[int] = 0
    # Linear objectives (single, total, weightedtotal, wgd, dgba): one backward
    # pass per step (True) or one per task (False, the independent reference).
    fused: bool = True
    # MIM: decay of the accumulated L1-normalized direction.
    mim_decay: float = 1.0
    # APGD: alpha of Croce and Hein, the weight of the new step (1 - alpha on the previous displacement).
    apgd_momentum: float = 0.75
    # APGD: halve the step if fewer than this fraction of steps since the last checkpoint increased the objective.
    apgd_rho: float = 0.75
    # reference: Croce and Hein's random start, first step 2 eps; authors: the DGBA code's clean
    # start, first step eps/steps (measured on the default job: overall ARP 31.6 vs 22.6).
    apgd_start: ApgdStart = ApgdStart.reference
    apgd_monitor: ApgdMonitor = ApgdMonitor.relative
    # Auto-SAGA: fitting factor s of tanh(s u) ~ sign(u) and the learning rate of the task weights alpha.
    saga_s: float = 50.0
    saga_lr: float = 10.0
    # Auto-SAGA: input scale at which s and lr are defined; the authors' models took
    # 0-255 pixels, so gradients and steps are converted to that scale inside SAGA.
    saga_input_scale: float = 255.0
    wgd_variant: WgdVariant = WgdVariant.dynamic
    # WeightedTotal: task -> weight (pick them with grid_search_weights).
    weights: Optional[Dict[str, float]] = None
    # What the attack maximises per task kind (the metrics stay the same): segmentation
    # ce | segpgd | jsd, normals and depth plain | clipped (docs/attack_losses.md).
    seg_loss: SegLoss = SegLoss.ce
    regression_loss: RegressionLoss = RegressionLoss.plain
    # optimizer=ensemble: the member attacks, preset names (dgba_apgd, single_normal_pgd);
    # single_*_<optimizer> stands for one Single-x member per task. None = the default
    # list (attacks.ensemble.DEFAULT_MEMBERS). Members share every other field here.
    members: Optional[List[str]] = None
    # optimizer=ensemble: how one image's candidates are ranked: its own ARP from the
    # tasks' metrics (arp), or the plain task losses (relative, absolute).
    ensemble_criterion: EnsembleCriterion = EnsembleCriterion.arp
    # Speed (docs/performance.md): arithmetic of the model's passes inside the attack,
    # the model and its input in channels_last memory format, and torch.compile of
    # the model (once per attack and model; falls back to eager with a warning).
    precision: Precision = Precision.fp32
    channels_last: bool = False
    compile: bool = False

    def __post_init__(self) -> None:
        # The numeric options' ranges, checked wherever a config becomes an attack (preflight
        # included), so a value outside them stops before any work instead of steering an attack.
        for key, value, low, high, closed in (
                ("mim_decay", self.mim_decay, 0.0, math.inf, True),
                ("apgd_momentum", self.apgd_momentum, 0.0, 1.0, True),
                ("apgd_rho", self.apgd_rho, 0.0, 1.0, True),
                ("saga_s", self.saga_s, 0.0, math.inf, False),
                ("saga_lr", self.saga_lr, 0.0, math.inf, False),
                ("saga_input_scale", self.saga_input_scale, 0.0, math.inf, False),
                ("rel_stepsize", self.rel_stepsize, 0.0, math.inf, False)):
            if value is None:
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                low <= value <= high if closed else low < value <= high)
            if not ok:
                where = f"[{low:g}, {high:g}]" if closed and high < math.inf else (
                    f">= {low:g}" if closed else f"> {low:g}" + (f" and <= {high:g}" if high < math.inf else ""))
                raise ValueError(f"attack.{key}={value} must be a finite number {where} "
                                 f"(default {getattr(AttackConfig, key)})")
