"""The attacks' mode enums (APGD start and monitor, WGD variant, precision, attack losses,
ensemble criterion).

They live apart from :mod:`.config` because the objectives and optimizers need
them at import time while :mod:`.config` derives its objective names from the
objective table.
"""
from __future__ import annotations

from enum import Enum

__all__ = ["ApgdStart", "ApgdMonitor", "WgdVariant", "Precision", "SegLoss", "RegressionLoss", "EnsembleCriterion"]


class ApgdStart(Enum):
    """APGD start: the DGBA authors' (clean image, step eps/steps) or Croce and Hein's (random, 2*eps)."""

    authors = "authors"
    reference = "reference"


class ApgdMonitor(Enum):
    """What APGD monitors to adapt its step and keep the best point.

    relative: sum over attacked tasks of (L_i(x') - L_i(x)) / L_i(x), per sample (paper Alg. 1).
    absolute: sum over attacked tasks of L_i(x') (the authors' code for the non-DGBA baselines).
    """

    relative = "relative"
    absolute = "absolute"


class WgdVariant(Enum):
    """WGD task weights: the paper's dynamic r_i(t) or the authors' code's static 1/L_i(x_0)."""

    dynamic = "dynamic"
    static = "static"


class Precision(Enum):
    """Arithmetic of the attack's forward and backward passes (the iterates stay fp32).

    fp32: strict IEEE fp32 (CUDA TF32 off for matmuls and cuDNN convolutions).
    tf32: TF32 matmuls and convolutions on GPUs that have it (identical to fp32 on a CPU).
    bf16: the model runs under bf16 autocast; its outputs and the losses are fp32.
    """

    fp32 = "fp32"
    tf32 = "tf32"
    bf16 = "bf16"


class SegLoss(Enum):
    """What an attack maximises for segmentation tasks (docs/attack_losses.md); the metric is unchanged.

    ce: the task's cross-entropy. segpgd: SegPGD's reweighting of correctly and wrongly
    classified pixels over the steps (Gu et al. 2022). jsd: Jensen-Shannon divergence to
    the one-hot label (one of SEA's losses, Croce et al. 2023).
    """

    ce = "ce"
    segpgd = "segpgd"
    jsd = "jsd"


class RegressionLoss(Enum):
    """What an attack maximises for normal and depth tasks: the task's loss, or its per-pixel
    error capped at the widest threshold of the task's metrics (docs/attack_losses.md)."""

    plain = "plain"
    clipped = "clipped"


class EnsembleCriterion(Enum):
    """How the ensemble ranks its members' adversarial images of one image.

    arp: the image's own ARP (%), from the tasks' metrics on that image alone.
    relative: sum_i (L_i(x') - L_i(x)) / L_i(x) over every task (plain task losses).
    absolute: sum_i L_i(x').
    """

    arp = "arp"
    relative = "relative"
    absolute = "absolute"
