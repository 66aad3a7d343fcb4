"""The optimizers by name: the config's OptimizerName values (but the ensemble) index this table."""
from __future__ import annotations

from .apgd import APGD
from .config import OptimizerName
from .optimizers import FGSM, MIM, PGD, Optimizer
from .saga import SAGA

__all__ = ["OPTIMIZERS"]

# Name -> class, the one list of single-task optimizers: build_attack, the presets, the
# report and the benchmark derive from it.
OPTIMIZERS: dict[str, type[Optimizer]] = {
    OptimizerName.fgsm.value: FGSM,
    OptimizerName.pgd.value: PGD,
    OptimizerName.mim.value: MIM,
    OptimizerName.apgd.value: APGD,
    OptimizerName.saga.value: SAGA,
}
