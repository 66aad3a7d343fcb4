"""Display names and orders of the report: optimizers, objectives, tasks, models, training attacks.

Names come from the tables that define them (the attack tables, the dataset table);
this module only says how they are shown and in which order. Unknown names follow
the known ones, sorted, and are shown as they are.
"""
from __future__ import annotations

import math
import re
from typing import Iterable, Sequence

import pandas as pd

from ..attacks.build import OBJECTIVES as _OBJECTIVE_TABLE
from ..attacks.build import OPTIMIZERS as _OPTIMIZER_TABLE
from ..attacks.presets import ENSEMBLE, parse_preset_name
from ..data.registry import task_names

# train_attack of clean-trained models.
NO_TRAIN_ATTACK = "none"


def objective_key(objective: str, task: str | None = None) -> str:
    """The report's key of an objective: "dgba"; with the task it attacks, "single_normal"."""
    return f"{objective}_{task}" if task else objective


def split_objective_key(key: str) -> tuple[str, str | None]:
    """The inverse of :func:`objective_key`: "single_normal" -> ("single", "normal"), "dgba" -> ("dgba", None)."""
    key = str(key)
    for name, cls in _OBJECTIVE_TABLE.items():
        if cls.needs_task and key.startswith(f"{name}_"):
            return name, key[len(name) + 1:]
    return key, None


# Paper order: the attack tables' order; Single-x expands to one objective per task.
OPTIMIZERS: tuple[str, ...] = tuple(_OPTIMIZER_TABLE)
TASKS: tuple[str, ...] = task_names()
OBJECTIVES: tuple[str, ...] = tuple(
    key for name, cls in _OBJECTIVE_TABLE.items()
    for key in ([objective_key(name, t) for t in TASKS] if cls.needs_task else [name]))

OPTIMIZER_LABELS = {**{name: cls.label for name, cls in _OPTIMIZER_TABLE.items()}, ENSEMBLE: "Ensemble"}
TASK_LABELS = {"segment_semantic": "Segm", "segmentation": "Segm", "normal": "Norm", "depth_zbuffer": "Dept", "depth": "Dept",
               "keypoints2d": "Keyp", "edge_texture": "Edge"}
# Objectives of one task are shown with their task (objective_label).
OBJECTIVE_LABELS = {name: cls.label for name, cls in _OBJECTIVE_TABLE.items() if not cls.needs_task}


def optimizer_label(name: str) -> str:
    """"apgd" -> "APGD"; unknown names as they are."""
    return OPTIMIZER_LABELS.get(name, name)


def task_label(name: str) -> str:
    """"segment_semantic" -> "Segm"; unknown task names as they are."""
    return TASK_LABELS.get(name, name)


def objective_label(key: str) -> str:
    """"dgba" -> "DGBA", "single_normal" -> "Single-Norm", "dgba [segpgd]" -> "DGBA [segpgd]";
    unknown keys as they are."""
    base, sep, losses = key.partition(" [")
    if sep:
        return f"{objective_label(base)} [{losses}"
    objective, task = split_objective_key(key)
    if task:
        return f"{_OBJECTIVE_TABLE[objective].label}-{task_label(task)}"
    return OBJECTIVE_LABELS.get(key, key)


def attack_label(optimizer: str, objective: str) -> str:
    """("apgd", "dgba") -> "APGD DGBA"; the ensemble (optimizer and objective "ensemble") -> "Ensemble"."""
    if optimizer == objective:
        return optimizer_label(optimizer)
    return f"{optimizer_label(optimizer)} {objective_label(objective)}"


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    """The distinct ``values`` in ``order``, then the others sorted."""
    values = set(values)
    return [v for v in order if v in values] + sorted(values.difference(order))


def rank(values: Iterable[str], order: Sequence[str]) -> dict[str, int]:
    """value -> position in :func:`ordered` (a sort key)."""
    return {v: i for i, v in enumerate(ordered(values, order))}


def natural(label: str):
    """Sort key of model labels: IND first, numbered layouts by number, AS last."""
    if label == "IND":
        return (0, 0, "")
    if label == "AS":
        return (2, 0, "")
    m = re.search(r"\d+", label)
    return (1, int(m.group()) if m else math.inf, label)


def model_order(keyed: pd.DataFrame) -> list[str]:
    """Paper order of the ``model`` labels: most parameters first (IND first, AS last);
    labels break ties and fill gaps."""
    models = keyed["model"].unique().tolist()
    params = {}
    if "params_paper_M" in keyed.columns:
        params = keyed.groupby("model")["params_paper_M"].first().to_dict()

    def key(m):
        p = params.get(m)
        p = -float(p) if p is not None and not pd.isna(p) else math.inf
        return (p, natural(str(m)))

    return sorted(models, key=key)


def sort_attacks(df: pd.DataFrame) -> pd.DataFrame:
    """Rows sorted by optimizer, then objective (paper order), then eps when present (stable)."""
    keys = df.assign(_o=df["optimizer"].map(rank(df["optimizer"].unique(), OPTIMIZERS)),
                     _b=df["objective"].map(rank(df["objective"].unique(), OBJECTIVES)))
    sort_by = ["_o", "_b"] + (["eps"] if "eps" in df.columns else [])
    return keys.sort_values(sort_by, kind="stable").drop(columns=["_o", "_b"])


def attack_columns(pairs: Iterable[tuple[str, str]]) -> pd.MultiIndex:
    """(optimizer, objective) pairs in paper order, as the columns of an attack table."""
    pairs = list(pairs)
    cols = [(o, b) for o in ordered({p[0] for p in pairs}, OPTIMIZERS)
            for b in ordered({p[1] for p in pairs}, OBJECTIVES) if (o, b) in pairs]
    return pd.MultiIndex.from_tuples(cols, names=["optimizer", "objective"])


def fmt_eps(eps: float) -> str:
    """4.0 -> "4", 0.5 -> "0.5" (for file names and titles)."""
    return f"{eps:g}"


def slug(text: str) -> str:
    """Text made safe for a file name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "none"


def split_preset(name: str) -> tuple[str | None, str]:
    """"single_normal_pgd" -> ("pgd", "single_normal"); the ensemble and names that are no
    preset -> (None, name)."""
    try:
        objective, task, optimizer = parse_preset_name(name)
    except ValueError:
        return None, str(name)
    return (optimizer, objective_key(objective, task)) if optimizer in OPTIMIZERS else (None, str(name))


def train_attack_label(name: str) -> str:
    """Row label of an adversarial-training attack: "w/o AT", or e.g. "PGD DGBA", "FGSM Single-Segm"."""
    if name == NO_TRAIN_ATTACK:
        return "w/o AT"
    opt, obj = split_preset(name)
    return attack_label(opt, obj) if opt else str(name)


def train_order(names: Iterable[str]) -> list[str]:
    """Clean training first, then by the training attack's optimizer and objective (paper order)."""
    names = list(dict.fromkeys(names))

    def key(name):
        if name == NO_TRAIN_ATTACK:
            return (-1, -1, "")
        opt, obj = split_preset(name)
        o = OPTIMIZERS.index(opt) if opt in OPTIMIZERS else len(OPTIMIZERS)
        b = OBJECTIVES.index(obj) if obj in OBJECTIVES else len(OBJECTIVES)
        return (o, b, name)

    return sorted(names, key=key)
