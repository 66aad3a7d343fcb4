"""Attack scores: pure arithmetic on metric dicts (plain floats, no torch).

Metric dicts have the shape ``{task: {metric: value}}``; directions come from the
tasks (``Task.metrics``) or from a mapping ``{task: {metric: higher_is_better}}``.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Mapping

__all__ = ["relative_drop", "arp", "below_trivial", "transferability", "spearman"]

Metrics = Mapping[str, Mapping[str, float]]


def relative_change(reference: float, value: float) -> float:
    """``(value - reference) / |reference|`` as a fraction (-0.75 = fell by 75 %): the one relative
    change of the package (ARP's terms, the W&B table, precision against fp32). ValueError when
    either is not finite or the reference is 0."""
    if not math.isfinite(reference) or not math.isfinite(value):
        raise ValueError(f"a relative change needs finite values, got {reference} and {value}")
    if reference == 0:
        raise ValueError("a relative change from 0 is undefined")
    return (value - reference) / abs(reference)


def relative_drop(clean: float, attacked: float, higher_is_better: bool) -> float:
    """Signed relative performance loss ``(-1)^l (attacked - clean) / |clean|`` (a fraction).

    l = 1 when higher is better. Positive = performance lost. ``clean`` must be non-zero.
    """
    change = relative_change(clean, attacked)
    return -change if higher_is_better else change


def _directions(tasks: Any) -> dict[str, Mapping[str, bool]]:
    """Task name -> ordered {metric: higher_is_better}, from Task objects or a mapping."""
    if isinstance(tasks, Mapping):
        return {str(name): metrics for name, metrics in tasks.items()}
    out: dict[str, Mapping[str, bool]] = {}
    for task in tasks:
        if not (hasattr(task, "name") and hasattr(task, "metrics")):
            raise ValueError(
                f"tasks must be Task objects or a mapping task -> {{metric: higher_is_better}}, got {task!r}"
            )
        out[task.name] = task.metrics
    return out


def _value(values: Metrics, which: str, task: str, metric: str) -> float:
    try:
        v = float(values[task][metric])
    except KeyError:
        raise ValueError(f"{which} results lack metric {metric!r} of task {task!r}") from None
    if not math.isfinite(v):
        raise ValueError(f"{which} value of {task}/{metric} is {v}; ARP needs finite values")
    return v


def arp(clean: Metrics, attacked: Metrics, tasks: Any) -> tuple[float, dict[str, float]]:
    """Average Relative Performance drop (paper Eq. 10), in percent.

    per_task[i] = 100 / K_i * sum_k (-1)^{l_k} (M'_ik - M_ik) / M_ik, with l_k = 1 when
    metric k is higher-better; overall = mean of per_task over tasks. Positive = the
    attack cost performance; clean vs itself gives 0.

    clean, attacked: {task: {metric: value}} (extra tasks/metrics are ignored).
    tasks: a list of Task objects or a mapping {task: {metric: higher_is_better}};
    its order is the order of ``per_task``.

    Zero clean value (the ratio is undefined): if the attacked value is also 0 the
    metric contributes 0 and still counts in K_i; otherwise the metric is left out
    of its task's mean and a warning names it. A task left with no metric gets
    NaN in ``per_task`` (with a warning) and is left out of ``overall``; if no task
    is left, ValueError. A missing metric or a non-finite value raises ValueError.
    """
    directions = _directions(tasks)
    if not directions:
        raise ValueError("arp needs at least one task")
    per_task: dict[str, float] = {}
    for task, metrics in directions.items():
        if not metrics:
            raise ValueError(f"task {task!r} declares no metrics")
        terms: list[float] = []
        for metric, higher in metrics.items():
            m = _value(clean, "clean", task, metric)
            m_adv = _value(attacked, "attacked", task, metric)
            if m == 0.0:
                if m_adv == 0.0:
                    terms.append(0.0)
                else:
                    warnings.warn(
                        f"ARP: clean {task}/{metric} is 0, relative change undefined; metric left out",
                        stacklevel=2,
                    )
                continue
            terms.append(relative_drop(m, m_adv, bool(higher)))
        if terms:
            per_task[task] = 100.0 * sum(terms) / len(terms)
        else:
            warnings.warn(f"ARP: task {task!r} has no usable metric; left out of the overall ARP", stacklevel=2)
            per_task[task] = float("nan")
    usable = [v for v in per_task.values() if not math.isnan(v)]
    if not usable:
        raise ValueError("ARP undefined: every clean metric is 0 while the attacked one is not")
    return sum(usable) / len(usable), per_task


def below_trivial(clean: Metrics, trivial: Metrics, tasks: Any) -> dict[str, list[str]]:
    """Per task, the metrics on which the clean model does not beat the trivial predictor
    (strictly better in the metric's direction); an empty list = the task has learned something.

    A task's ARP means little when its model is no better than predicting a constant: an
    attack cannot take away what the model never had.
    """
    out: dict[str, list[str]] = {}
    for task, metrics in _directions(tasks).items():
        out[task] = [m for m, higher in metrics.items()
                     if not ((clean[task][m] > trivial[task][m]) if higher else (clean[task][m] < trivial[task][m]))]
    return out


def transferability(per_task: Mapping[str, float], attacked_task: str) -> float:
    """Transferability of a Single-x attack (paper Table 7 / Fig. 5).

    mean over tasks y != x of ARP_y, divided by ARP_x; ``per_task`` is the per-task
    ARP returned by :func:`arp` for the attack that targets only ``attacked_task``.
    """
    if attacked_task not in per_task:
        raise ValueError(f"per-task ARP lacks the attacked task {attacked_task!r}")
    others = [float(v) for k, v in per_task.items() if k != attacked_task]
    if not others:
        raise ValueError("transferability needs at least one task besides the attacked one")
    own = float(per_task[attacked_task])
    if own == 0.0 or not math.isfinite(own):
        raise ValueError(f"ARP of the attacked task {attacked_task!r} is {own}; cannot divide by it")
    return (sum(others) / len(others)) / own


def _ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing the mean of their ranks."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(x: list[float], y: list[float]) -> float:
    """Spearman's rank correlation of paired values (ties get mean ranks): +1 when y rises
    with x throughout, -1 when it falls; NaN with fewer than 3 pairs or a constant side.
    Used for "does transferability rise with the number of shared blocks" (paper Sec. 5)."""
    if len(x) != len(y):
        raise ValueError(f"spearman needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return math.nan
    rx, ry = _ranks([float(v) for v in x]), _ranks([float(v) for v in y])
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx, vy = sum((a - mx) ** 2 for a in rx), sum((b - my) ** 2 for b in ry)
    return cov / math.sqrt(vx * vy) if vx > 0 and vy > 0 else math.nan
