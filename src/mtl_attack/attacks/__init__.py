"""Multi-task adversarial attacks: an objective (tasks -> direction) fed to a single-task optimizer.

    from mtl_attack.attacks import build_attack
    attack = build_attack(optimizer="apgd", objective="dgba", eps=4/255, steps=10)
    x_adv = attack(model, images, targets, losses)

model(images) -> dict task -> output; losses[task](output, targets[task]) -> per-sample
loss [B]; images [B,3,H,W] in [0,1]; eps in [0,1] units (attack.eps). Task names are
the model's own strings. See docs/attacks.md.
"""
from .apgd import APGD, apgd_checkpoints
from .attack import MultiTaskAttack, eval_mode
from .build import OBJECTIVES, OPTIMIZERS, build_attack, build_attack_from_config, config_from_options
from .config import ApgdMonitor, ApgdStart, AttackConfig, ObjectiveName, OptimizerName, Precision, WgdVariant
from .early_stop import EarlyStop, EarlyStoppedPGD, fooled
from .objectives import DGBA, WGD, LinearObjective, Objective, SignTotal, SingleTask, Total, WeightedTotal, wgd_weights
from .optimizers import FGSM, MIM, PGD, Optimizer, l1_normalize
from .presets import parse_preset_name, preset_configs, preset_name, register_presets
from .problem import LOSS_FLOOR, AttackProblem, monitor_value, relative_increase
from .saga import SAGA, saga_alpha_update
from .weight_search import grid_search_weights, weight_grid, weights_by_task

__all__ = [
    "APGD", "AttackConfig", "AttackProblem", "ApgdMonitor", "ApgdStart", "DGBA", "EarlyStop", "EarlyStoppedPGD",
    "FGSM", "LOSS_FLOOR", "LinearObjective", "MIM", "MultiTaskAttack", "OBJECTIVES", "OPTIMIZERS", "Objective",
    "ObjectiveName", "Optimizer", "OptimizerName", "PGD", "Precision", "SAGA", "SignTotal", "SingleTask", "Total",
    "WGD", "WeightedTotal", "WgdVariant", "apgd_checkpoints", "build_attack", "build_attack_from_config",
    "config_from_options", "eval_mode", "fooled", "grid_search_weights", "l1_normalize", "monitor_value",
    "parse_preset_name", "preset_configs", "preset_name", "register_presets", "relative_increase",
    "saga_alpha_update", "weight_grid", "weights_by_task", "wgd_weights",
]
