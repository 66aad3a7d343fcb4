"""WeightedTotal's task weights: the grid over the weight simplex and the ARP grid search (paper Table 16).

Every weight is a multiple of ``step`` in [step, 1 - step] and the weights sum
to 1: for step 0.1 that is 36 points for 3 tasks and 126 for 5. The search
evaluates each point with a caller-supplied ``evaluate_arp(weights) -> ARP``
(e.g. WeightedTotal attacks on a calibration split) and keeps the highest.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

__all__ = ["weight_grid", "grid_search_weights", "weights_by_task"]


def _compositions(total: int, parts: int) -> list[tuple[int, ...]]:
    """All tuples of ``parts`` positive integers summing to ``total`` (lexicographic)."""
    if parts == 1:
        return [(total,)]
    out = []
    for first in range(1, total - parts + 2):
        out.extend((first,) + rest for rest in _compositions(total - first, parts - 1))
    return out


def weight_grid(num_tasks: int, step: float = 0.1) -> list[tuple[float, ...]]:
    """Weight vectors (one weight per task, in task order) with every weight a
    multiple of ``step`` in [step, 1 - step], summing to 1. Lexicographic order.

    weight_grid(3) has 36 points: (0.1, 0.1, 0.8), (0.1, 0.2, 0.7), ...
    """
    if not isinstance(num_tasks, int) or num_tasks < 2:
        raise ValueError(f"the weight grid needs at least 2 tasks, got {num_tasks!r}")
    units = round(1.0 / step) if step > 0 else 0
    if units < 2 or not math.isclose(units * step, 1.0, rel_tol=0, abs_tol=1e-9):
        raise ValueError(f"step must divide 1 into at least 2 parts (e.g. 0.1), got {step!r}")
    if num_tasks > units:
        raise ValueError(f"{num_tasks} tasks cannot each get at least {step} of a total of 1; use a smaller step")
    return [tuple(round(k / units, 10) for k in comp) for comp in _compositions(units, num_tasks)]


def grid_search_weights(evaluate_arp: Callable[[tuple[float, ...]], float], num_tasks: int,
                        step: float = 0.1) -> tuple[tuple[float, ...], list[dict]]:
    """The grid point with the highest ARP, and the table of every point.

    evaluate_arp(weights) -> ARP (higher = stronger attack); weights in task order.
    Returns (best weights, [{"weights": w, "arp": value}, ...] in grid order);
    ties keep the first point.
    """
    table = []
    best = None
    for weights in weight_grid(num_tasks, step):
        arp = float(evaluate_arp(weights))
        if not math.isfinite(arp):
            raise ValueError(f"evaluate_arp returned {arp} for weights {weights}; it must return a finite ARP")
        table.append({"weights": weights, "arp": arp})
        if best is None or arp > best["arp"]:
            best = table[-1]
    return best["weights"], table


def weights_by_task(weights: Sequence[float], tasks: Sequence[str]) -> dict[str, float]:
    """A weight vector in task order as the task -> weight dict the config takes."""
    if len(weights) != len(tasks):
        raise ValueError(f"{len(weights)} weights for {len(tasks)} tasks {list(tasks)}")
    return {t: float(w) for t, w in zip(tasks, weights)}
