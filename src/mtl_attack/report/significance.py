"""Which attack is first, beyond doubt: paired bootstrap intervals from the jobs' per-image statistics.

A row of an attack table has, per optimizer, a best attack (highest mean ARP) and a
runner-up. The best counts as first only where the paired 95% bootstrap interval of
its ARP minus the runner-up's (over the test images and the training seeds both were
run with, :func:`mtl_attack.stats.paired_difference`) excludes 0; otherwise the two
are a tie and neither is first. Results without per-image statistics (tables made
before they existed, or whose job folders are gone) cannot be checked: their best is
marked unchecked and is no first place. A group with one attack has no contest.

Marks are strings: "first" (decided), "tie" (best and runner-up, not separable),
"unchecked" (the highest, without statistics to decide), "alone" (the only attack of
its group) and "" (none). Only "first" counts as a first place.
"""
from __future__ import annotations

import functools
import logging
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from .. import records, stats
from ..tasks import SCORERS
from .labels import NO_TRAIN_ATTACK, split_objective_key, train_order
from .load import metric_directions

log = logging.getLogger(__name__)

FIRST, TIE, UNCHECKED, ALONE = "first", "tie", "unchecked", "alone"


@functools.lru_cache(maxsize=256)
def _read(path: str) -> dict | None:
    """The job's per-image statistics; None when the file is gone or damaged (a damaged one is
    logged once: its rows count as unchecked)."""
    try:
        return records.read_image_stats(Path(path))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as err:
        log.warning("per-image statistics %s are damaged (%s: %s); their results count as unchecked",
                    path, type(err).__name__, err)
        return None


def _runs(rows: pd.DataFrame) -> dict[object, tuple]:
    """seed -> (clean stats, attacked stats) of the rows (one job per seed); {} when any is missing."""
    if "stats_file" not in rows.columns:
        return {}
    out = {}
    for seed, group in rows.groupby(rows["seed"].fillna(0) if "seed" in rows.columns else 0, sort=True):
        path = group["stats_file"].dropna()
        data = _read(str(path.iloc[0])) if len(path) else None
        if data is None or not data.get("attacked"):
            return {}
        out[seed] = (data["clean"], data["attacked"], data["kinds"])
    return out


def _scorers(runs) -> dict:
    kinds = next(iter(runs.values()))[2]
    return {task: SCORERS[kind] for task, kind in kinds.items()}


def pair_verdict(rows_a: pd.DataFrame, rows_b: pd.DataFrame, directions: dict,
                 task: str | None = None) -> stats.Interval | None:
    """ARP (overall, or ``task``'s) of the jobs ``rows_a`` minus ``rows_b`` (same model, same images)
    with its paired interval over images and the seeds both hold; None when their statistics are missing."""
    runs_a, runs_b = _runs(rows_a), _runs(rows_b)
    seeds = sorted(set(runs_a) & set(runs_b), key=str)
    if not seeds:
        return None
    pick = lambda runs: [runs[s][:2] for s in seeds]  # noqa: E731
    try:
        return stats.paired_difference(pick(runs_a), pick(runs_b), _scorers(runs_a), directions, task=task)
    except (ValueError, KeyError):
        return None  # statistics of other images or tasks: not comparable


def first_places(part: pd.DataFrame, table: pd.DataFrame, row_col: str = "model") -> pd.DataFrame:
    """Marks shaped like ``table`` (an :func:`~mtl_attack.report.tables.arp_table` of ``part``'s rows):
    per row and optimizer, "first" for a best attack ahead of its runner-up beyond the paired
    interval, "tie" for a best and runner-up it cannot separate (or equal means), "unchecked"
    where the statistics are missing, "alone" for a group of one attack, "" elsewhere. ``marks.attrs["checked"]``: pairs decided from statistics.
    """
    marks = pd.DataFrame("", index=table.index, columns=table.columns)
    checked = unchecked = 0
    directions = None
    for opt in dict.fromkeys(c[0] for c in table.columns):
        cols = [c for c in table.columns if c[0] == opt]
        for row in table.index:
            values = table.loc[row, cols].astype(float).dropna().sort_values(ascending=False, kind="stable")
            if values.empty:
                continue
            best = values.index[0]
            if len(values) == 1:
                marks.at[row, best] = ALONE  # no contest: no first place
                continue
            second = values.index[1]
            if np.isclose(values.iloc[0], values.iloc[1], rtol=1e-9, atol=0.0):
                marks.at[row, best] = marks.at[row, second] = TIE
                continue
            here = part[part[row_col] == row]
            cell = lambda col: here[(here["optimizer"] == col[0]) & (here["objective"] == col[1])]  # noqa: E731
            if directions is None:
                directions = metric_directions(part)
            diff = pair_verdict(cell(best), cell(second), directions)
            if diff is None:
                marks.at[row, best] = UNCHECKED
                unchecked += 1
            elif stats.verdict(diff) == "A":
                marks.at[row, best] = FIRST
                checked += 1
            else:
                marks.at[row, best] = marks.at[row, second] = TIE
                checked += 1
    marks.attrs.update(checked=checked, unchecked=unchecked)
    return marks


def cell_intervals(part: pd.DataFrame, table: pd.DataFrame, row_col: str = "model") -> pd.DataFrame:
    """Per cell of ``table``: ARP's interval over images and seeds (from the statistics), the number
    of seeds and the standard deviation of the seeds' ARPs. Long format: columns row, optimizer,
    objective, arp, lo, hi, seeds, sd_seeds (lo/hi NaN without statistics)."""
    out = []
    directions = None
    for row in table.index:
        here = part[part[row_col] == row]
        for col in table.columns:
            if pd.isna(table.at[row, col]):
                continue
            cell = here[(here["optimizer"] == col[0]) & (here["objective"] == col[1])]
            per_seed = pd.to_numeric(cell["arp"], errors="coerce").groupby(
                cell["seed"].fillna(0) if "seed" in cell.columns else 0).mean()
            lo = hi = np.nan
            runs = _runs(cell)
            if runs:
                directions = directions or metric_directions(part)
                try:
                    ci = stats.arp_intervals([r[:2] for r in runs.values()], _scorers(runs), directions)["overall"]
                    lo, hi = ci.lo, ci.hi
                except (ValueError, KeyError):
                    pass
            out.append({"row": row, "optimizer": col[0], "objective": col[1], "arp": float(table.at[row, col]),
                        "lo": lo, "hi": hi, "seeds": len(per_seed),
                        "sd_seeds": float(per_seed.std(ddof=1)) if len(per_seed) > 1 else np.nan})
    return pd.DataFrame(out, columns=["row", "optimizer", "objective", "arp", "lo", "hi", "seeds", "sd_seeds"])


GAIN_COLUMNS = ["model", "optimizer", "objective", "losses", "measure", "plain", "harder",
                "difference", "lo", "hi", "verdict"]


def loss_gains(part: pd.DataFrame) -> pd.DataFrame:
    """Each attack that maximised harder losses against the same attack with the plain losses, on the
    same model and images (``part``: :func:`~mtl_attack.report.load.attack_keys` rows at one eps).

    Long format, one row per (model, optimizer, objective, losses, measure), measure "overall" or a
    task: plain and harder ARP (%, mean over seeds), harder - plain with its paired 95% interval
    over images and seeds, and verdict "raises" / "lowers" (interval beside 0) or "cannot tell"
    (interval holds 0, or no statistics: lo/hi NaN). objective is the plain one's key.
    """
    losses, base = part["attack_losses"], part["plain_objective"]
    harder = part[losses != ""]
    if harder.empty:
        return pd.DataFrame(columns=GAIN_COLUMNS)
    directions = metric_directions(part)
    out = []
    for (model, opt, obj, loss), rows in harder.groupby(["model", "optimizer", "plain_objective", "attack_losses"],
                                                        sort=False):
        plain = part[(part["model"] == model) & (part["optimizer"] == opt) & (base == obj) & (losses == "")]
        if plain.empty:
            continue
        for measure in ["overall", *directions]:
            col = "arp" if measure == "overall" else f"arp_{measure}"
            diff = pair_verdict(rows, plain, directions, task=None if measure == "overall" else measure)
            lo, hi = (diff.lo, diff.hi) if diff else (np.nan, np.nan)
            verdict = {"A": "raises", "B": "lowers"}.get(stats.verdict(diff), "cannot tell") if diff else "cannot tell"
            mean_h, mean_p = (pd.to_numeric(r[col], errors="coerce").mean() for r in (rows, plain))
            out.append({"model": model, "optimizer": opt, "objective": obj, "losses": loss, "measure": measure,
                        "plain": mean_p, "harder": mean_h,
                        "difference": diff.value if diff else mean_h - mean_p, "lo": lo, "hi": hi,
                        "verdict": verdict})
    return pd.DataFrame(out, columns=GAIN_COLUMNS)


def transferability_intervals(part: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Intervals of Table 7's transferability from the Single-x jobs ``part`` (clean-trained,
    white-box, one eps; :func:`~mtl_attack.report.study_tables.single_x` rows).

    Returns (per_model, trend). per_model: columns optimizer, attacked_task, model,
    shared_blocks, transferability, lo, hi (95% over images and seeds; NaN without statistics
    or where a resample leaves the attacked task unhurt). trend: per (optimizer, attacked_task),
    the model with the most shared blocks minus the one with the fewest, paired on the same
    images and seeds: columns optimizer, attacked_task, most, fewest, difference, lo, hi,
    verdict ("rises with sharing" / "falls with sharing" / "cannot tell").
    """
    per_model, trend = [], []
    directions = metric_directions(part) if len(part) else {}
    for (opt, obj), rows in part.groupby(["optimizer", "objective"], sort=False):
        task = split_objective_key(obj)[1]
        runs = {}
        for model, group in rows.groupby("model", sort=False):
            run = _runs(group)
            runs[model] = (int(group["shared_blocks"].iloc[0]), run)
            ci = None
            if run:
                try:
                    ci = stats.transferability_interval([r[:2] for r in run.values()], _scorers(run), directions, task)
                except (ValueError, KeyError):
                    ci = None
            per_model.append({"optimizer": opt, "attacked_task": task, "model": model,
                              "shared_blocks": runs[model][0], "transferability": ci.value if ci else np.nan,
                              "lo": ci.lo if ci else np.nan, "hi": ci.hi if ci else np.nan})
        if len({b for b, _ in runs.values()}) < 2:
            continue
        most = max(runs, key=lambda m: runs[m][0])
        fewest = min(runs, key=lambda m: runs[m][0])
        (_, run_a), (_, run_b) = runs[most], runs[fewest]
        seeds = sorted(set(run_a) & set(run_b), key=str)
        diff = None
        if seeds:
            try:
                diff = stats.transferability_interval([run_a[k][:2] for k in seeds], _scorers(run_a), directions,
                                                      task, runs_b=[run_b[k][:2] for k in seeds])
            except (ValueError, KeyError):
                diff = None
        decided = diff is not None and diff.excludes_zero
        trend.append({"optimizer": opt, "attacked_task": task, "most": most, "fewest": fewest,
                      "difference": diff.value if diff else np.nan, "lo": diff.lo if diff else np.nan,
                      "hi": diff.hi if diff else np.nan,
                      "verdict": ("rises with sharing" if diff.lo > 0 else "falls with sharing") if decided
                      else "cannot tell"})
    return (pd.DataFrame(per_model, columns=["optimizer", "attacked_task", "model", "shared_blocks",
                                             "transferability", "lo", "hi"]),
            pd.DataFrame(trend, columns=["optimizer", "attacked_task", "most", "fewest", "difference", "lo", "hi",
                                         "verdict"]))


def accuracy_drop_intervals(part: pd.DataFrame) -> pd.DataFrame:
    """Intervals of Tables 17/18's accuracy cost: each adversarially trained model's clean
    metrics against the clean-trained model's (w/o AT), as ARP (%) paired over the same
    test images and the seeds both were trained with; rows in the tables' training order.

    part: the white-box rows of one base model (any attacks; the clean statistics of a
    model are the same in each of its jobs). Returns columns train_attack, task ("overall"
    or a task), drop, lo, hi; positive = accuracy lost. Empty without statistics.
    """
    columns = ["train_attack", "task", "drop", "lo", "hi"]
    groups = {name: _runs(rows) for name, rows in part.groupby("train_attack", sort=False)}
    base = groups.get(NO_TRAIN_ATTACK) or {}
    if not base:
        return pd.DataFrame([], columns=columns)
    directions = metric_directions(part)
    out = []
    for name in train_order(groups):
        runs = groups[name]
        seeds = sorted(set(runs) & set(base), key=str)
        if name == NO_TRAIN_ATTACK or not seeds:
            continue
        try:
            ci = stats.arp_intervals([(base[k][0], runs[k][0]) for k in seeds], _scorers(runs), directions)
        except (ValueError, KeyError):
            continue  # statistics of other images or tasks: not comparable
        out.append([name, "overall", *ci["overall"].as_list()])
        out += [[name, task, *c.as_list()] for task, c in ci["per_task"].items()]
    return pd.DataFrame(out, columns=columns)


def eps_intervals(part: pd.DataFrame) -> pd.DataFrame:
    """The 95% interval (over test images and seeds) of each point of the ARP-vs-eps curve that
    is one model's ARP: columns optimizer, objective, eps, lo, hi. A point averaged over several
    models, or without per-image statistics, gets no interval (it is left out)."""
    out = []
    directions = None
    for (opt, obj, eps), cell in part.groupby(["optimizer", "objective", "eps"], sort=False):
        if cell["model"].nunique() != 1:
            continue
        runs = _runs(cell)
        if not runs:
            continue
        directions = directions or metric_directions(part)
        try:
            ci = stats.arp_intervals([r[:2] for r in runs.values()], _scorers(runs), directions)["overall"]
        except (ValueError, KeyError):
            continue
        out.append({"optimizer": opt, "objective": obj, "eps": float(eps), "lo": ci.lo, "hi": ci.hi})
    return pd.DataFrame(out, columns=["optimizer", "objective", "eps", "lo", "hi"])
