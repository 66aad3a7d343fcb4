"""Reading results into the report: loading tables and records, the normalised attack keys,
and each task metric's direction.

Input is the results table of :mod:`mtl_attack.records` (one row per job record).
Only rows with ``status == "done"`` enter tables and figures.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import records
from ..data import registry
from ..attacks.objectives import OBJECTIVES as OBJECTIVE_CLASSES
from ..attacks.presets import parse_preset_name
from .labels import NO_TRAIN_ATTACK, OPTIMIZERS, objective_key

TABLE_SUFFIXES = (".csv", ".parquet")


def load_results(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All rows from sweep folders / record.json files and results tables (.csv/.parquet), concatenated.

    A job (same ``job_dir``) found more than once is kept once (the last one read).
    Failed rows are kept (see :func:`done_rows`); tables and figures skip them.
    A damaged record.json is left out with a logged warning naming the file
    (:func:`mtl_attack.records.gather`); when nothing else is left, a ValueError names it.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no inputs; pass sweep folders, record.json files or a results table (.csv/.parquet)")
    frames = []
    record_paths = []
    damaged: list[records.DamagedRecord] = []
    for p in paths:
        if p.is_file() and p.suffix in TABLE_SUFFIXES:
            frames.append(records.load_table(p))
        elif p.is_file() and p.name != records.RECORD_NAME:
            raise ValueError(f"{p}: expected a sweep folder, a {records.RECORD_NAME} or a results table "
                             f"ending in {' or '.join(TABLE_SUFFIXES)}")
        else:
            record_paths.append(p)  # find_records raises FileNotFoundError for missing paths
    if record_paths:
        found = records.find_records(record_paths)
        if not found:
            raise FileNotFoundError(f"no {records.RECORD_NAME} under {', '.join(map(str, record_paths))}; "
                                    f"did the sweep run, or is the folder wrong?")
        frames.append(records.gather(found, damaged=damaged))
    frames = [f for f in frames if len(f)]
    if not frames and damaged:
        more = f" (and {len(damaged) - 1} more damaged {records.RECORD_NAME})" if len(damaged) > 1 else ""
        raise ValueError(f"no readable results in {', '.join(map(str, paths))}: {damaged[0]}{more}")
    if not frames:
        raise ValueError(f"no results in {', '.join(map(str, paths))}")
    out = pd.concat(frames, ignore_index=True, sort=False)
    if "job_dir" in out.columns:
        # One job folder holds one record: the same job seen via a folder and a table counts once.
        named = out["job_dir"].notna() & (out["job_dir"].astype(str) != "")
        out = out[~(named & out.duplicated("job_dir", keep="last"))].reset_index(drop=True)
    return out


def done_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows with status "done" (all rows if the table has no status column)."""
    if "status" not in df.columns:
        return df
    return df[df["status"] == "done"]


def status_note(df: pd.DataFrame) -> str:
    """One line: how many rows are done, how many were left out (with a few job names) and how
    many were made from a dirty checkout."""
    done = done_rows(df)
    left = df.drop(index=done.index)
    line = f"{len(df)} results: {len(done)} done"
    if len(left):
        states = left["status"].fillna("no status").astype(str).value_counts()
        jobs = left["job"].dropna().astype(str).tolist()[:3] if "job" in left.columns else []
        more = ", ..." if len(left) > len(jobs) and jobs else ""
        line += (", " + ", ".join(f"{n} {s}" for s, n in states.items())
                 + " (left out of tables and figures" + (f": {', '.join(jobs)}{more}" if jobs else "") + ")")
    if "git_dirty" in done.columns:
        dirty = int(done["git_dirty"].map(lambda v: str(v).strip().lower() == "true").sum())
        if dirty:
            line += f"; {dirty} of them made from a checkout with uncommitted changes (marked ‡)"
    return line


# ---------------------------------------------------------------- keys

def is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _parsed_attack(row: pd.Series) -> tuple[str, str | None, str] | None:
    """(objective, task or None, optimizer) of the row's attack preset name; None without one."""
    attack = row.get("attack")
    if is_missing(attack):
        return None
    try:
        return parse_preset_name(str(attack))
    except ValueError:
        return None


def _objective_key(row: pd.Series) -> str | None:
    """Objective key as in :data:`~.labels.OBJECTIVES`; Single-x becomes ``single_<task>``."""
    obj = row.get("objective")
    opt = row.get("optimizer")
    parsed = _parsed_attack(row)
    # The attack name fills gaps only where it agrees with the optimizer column.
    if parsed is not None and (is_missing(opt) or parsed[2] != opt):
        parsed = None
    if is_missing(obj) and parsed is not None:
        obj = parsed[0]
    if is_missing(obj):
        return None
    obj = str(obj)
    cls = OBJECTIVE_CLASSES.get(obj)
    if cls is None or not cls.needs_task:
        return obj
    target = row.get("target_task")
    if is_missing(target) and parsed is not None and parsed[0] == obj:
        target = parsed[1]
    return objective_key(obj, None if is_missing(target) else str(target))


def _optimizer_key(row: pd.Series) -> str | None:
    opt = row.get("optimizer")
    if not is_missing(opt):
        return str(opt)
    parsed = _parsed_attack(row)
    return parsed[2] if parsed is not None and parsed[2] in OPTIMIZERS else None


def _model_key(row: pd.Series) -> str | None:
    """The model's short label; falls back to ``#<layout_index>``, then the layout string."""
    for col, fmt in (("model", "{}"), ("layout_index", "#{:.0f}"), ("layout", "{}")):
        value = row.get(col)
        if not is_missing(value):
            return fmt.format(value)
    return None


def _study_model_key(row: pd.Series) -> str | None:
    base = row.get("base_model")
    if is_missing(base):
        return None
    label = str(base)
    if row.get("train_attack") not in (None, NO_TRAIN_ATTACK) and not is_missing(row.get("train_attack")):
        label += f" [AT {row['train_attack']}]"
    if row.get("threat") == "black-box":
        label += f" [from {row.get('surrogate')}]"
    return label


def attack_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Done rows with normalized ``model``, ``optimizer``, ``objective`` keys and float ``eps``.

    ``objective`` is ``single_<task>`` for Single-x (from a ``target_task`` column,
    else from the attack name ``single_<task>_<optimizer>``), with `` [segpgd,clipped]``
    appended when the attack maximised harder losses (``attack_losses``, "" for the plain ones;
    ``plain_objective`` is the key without them). ``base_model`` is the
    model's label (AS, IND, #k); ``train_attack`` is the adversarial-training attack
    ("none" for clean training), ``threat`` "white-box" or "black-box". ``model`` is
    ``base_model`` plus " [AT <train_attack>]" for adversarially trained models and
    " [from <surrogate>]" for black-box targets, so those stay separate rows.
    """
    out = done_rows(df).copy()
    if out.empty:
        raise ValueError("no finished (status done) results to report; check the sweep's record.json files")
    out["optimizer"] = out.apply(_optimizer_key, axis=1)
    out["objective"] = out.apply(_objective_key, axis=1)
    out["plain_objective"] = out["objective"]
    out["attack_losses"] = (out["attack_losses"].where(out["attack_losses"].notna(), "").astype(str)
                            if "attack_losses" in out.columns else "")
    harder = out["attack_losses"] != ""
    if harder.any():  # a harder attack loss is another column than the plain one
        out.loc[harder, "objective"] = [f"{o} [{a}]" for o, a in
                                        zip(out.loc[harder, "objective"], out.loc[harder, "attack_losses"])]
    if "base_model" not in out.columns:
        out["base_model"] = out.apply(_model_key, axis=1)
    out["train_attack"] = (out["train_attack"].where(out["train_attack"].notna(), NO_TRAIN_ATTACK).astype(str)
                           if "train_attack" in out.columns else NO_TRAIN_ATTACK)
    out["threat"] = (out["threat"].where(out["threat"].notna(), "white-box").astype(str)
                     if "threat" in out.columns else "white-box")
    if "surrogate" not in out.columns:
        out["surrogate"] = None
    # Adversarially trained models and black-box targets are other rows than the clean white-box model.
    out["model"] = out.apply(_study_model_key, axis=1)
    for col in ("optimizer", "objective", "model"):
        bad = out[col].isna()
        if bad.any():
            job = out.loc[bad, "job"].iloc[0] if "job" in out.columns else out.index[bad][0]
            raise ValueError(f"{bad.sum()} results have no {col} (e.g. {job}); the records lack it, re-gather them")
    if "eps" not in out.columns or out["eps"].isna().any():
        raise ValueError("some results have no eps; every record needs config.eps (pixel units out of 255)")
    out["eps"] = out["eps"].astype(float)
    for col in ("dataset", "backbone"):
        if col not in out.columns:
            out[col] = None
    if "tasks" in out.columns:
        # Models of one dataset built for different task subsets are separate settings.
        sets = out.groupby(out["dataset"].astype(str))["tasks"].nunique()
        several = out["dataset"].astype(str).isin(sets[sets > 1].index) & out["tasks"].notna()
        out.loc[several, "dataset"] = out.loc[several, "dataset"].astype(str) + " [" + out.loc[several, "tasks"] + "]"
    return out


def arp_tasks(columns) -> list[str]:
    """The task names of the per-task ARP columns ``arp_<task>``, in column order; the interval
    columns (``arp_lo``, ``arp_hi``, ``arp_<task>_lo``, ``arp_<task>_hi``) are not tasks."""
    names = [c[len("arp_"):] for c in columns if str(c).startswith("arp_")]
    bounds = {f"{t}_{end}" for t in names for end in ("lo", "hi")} | {"lo", "hi"}
    return [t for t in names if t not in bounds]


# ---------------------------------------------------------------- directions

def metric_directions(rows: pd.DataFrame) -> dict[str, dict[str, bool]]:
    """task -> {metric: higher_is_better} of the rows' tasks, in task order.

    Read from the ``higher_<task>_<metric>`` columns the records carry (the tasks are
    those of the ``arp_<task>`` columns). Tables written before those columns existed
    fall back to the dataset table (:func:`mtl_attack.data.registry.metric_directions`)
    of the rows' one dataset config, keeping the tasks whose clean metrics are all present.
    """
    tasks = arp_tasks(rows.columns)
    found: dict[str, dict[str, bool]] = {}
    for col in rows.columns:
        if not col.startswith("higher_"):
            continue
        # The longest task name that prefixes the column ("seg" vs "seg_fine").
        task = max((t for t in tasks if col.startswith(f"higher_{t}_")), key=len, default=None)
        values = rows[col].dropna().map(_as_bool).unique()
        if task is None or len(values) == 0:
            continue
        if len(values) > 1:
            raise ValueError(f"the results disagree on {col} (both True and False); "
                             f"report one dataset's results at a time")
        found.setdefault(task, {})[col[len(f"higher_{task}_"):]] = bool(values[0])
    if found:
        return {t: found[t] for t in tasks if t in found}
    return _registry_directions(rows)


def _as_bool(value) -> bool:
    if isinstance(value, str):
        if value.strip().lower() not in ("true", "false"):
            raise ValueError(f"a higher_<task>_<metric> column holds {value!r}; expected True or False")
        return value.strip().lower() == "true"
    return bool(value)


def _registry_directions(rows: pd.DataFrame) -> dict[str, dict[str, bool]]:
    datasets = rows["dataset"].dropna().astype(str).unique() if "dataset" in rows.columns else []
    if len(datasets) != 1:
        raise ValueError("the results carry no higher_<task>_<metric> columns and "
                         + ("name no dataset" if not len(datasets) else f"mix datasets {', '.join(datasets)}")
                         + "; re-gather them from their record.json files")
    try:
        directions = registry.metric_directions(datasets[0])
    except ValueError as err:
        raise ValueError(f"the results carry no higher_<task>_<metric> columns and {err}; "
                         f"re-gather them from their record.json files") from None
    columns = set(rows.columns)
    return {t: ms for t, ms in directions.items() if all(f"clean_{t}_{m}" in columns for m in ms)}
