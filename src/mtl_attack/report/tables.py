"""Attack tables as pure DataFrame -> DataFrame functions: paper Tables 1, 2, 8-16 and the data
of Figures 1-4, plus the row selections every table shares.

Values are ARP in percent; ``eps`` is in pixel units out of 255. Several results of
one cell (seeds) are averaged per model first, then, for the figures, over models, so
a model run with more seeds does not weigh more.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from ..attacks.objectives import DGBA, WeightedTotal
from .labels import (NO_TRAIN_ATTACK, OBJECTIVES, OPTIMIZERS, TASKS, attack_columns, fmt_eps, model_order,
                     ordered, sort_attacks)
from .load import arp_tasks, attack_keys

# ---------------------------------------------------------------- selections


def one_setting(keyed: pd.DataFrame) -> None:
    """Raise unless the rows hold one dataset/backbone setting."""
    settings = keyed[["dataset", "backbone"]].astype(str).drop_duplicates()
    if len(settings) > 1:
        found = "; ".join(f"{d}/{b}" for d, b in settings.itertuples(index=False))
        raise ValueError(f"results mix several dataset/backbone settings ({found}); "
                         f"filter the table to one, or use write_report, which splits them")


def select_eps(keyed: pd.DataFrame, eps: float | None) -> pd.DataFrame:
    """The rows at ``eps`` (pixel units); with None, all rows, which must then hold one eps."""
    found = sorted(keyed["eps"].unique())
    listed = ", ".join(map(fmt_eps, found))
    if eps is None:
        if len(found) > 1:
            raise ValueError(f"results hold several eps ({listed}); choose one with eps=K (--eps K)")
        return keyed
    chosen = keyed[np.isclose(keyed["eps"], float(eps))]
    if chosen.empty:
        raise ValueError(f"no results at eps {fmt_eps(float(eps))}; the results hold eps {listed}")
    return chosen


def at_eps(keyed: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The rows at ``eps`` (pixel units), possibly none."""
    return keyed[np.isclose(keyed["eps"], float(eps))]


def clean_white_box(keyed: pd.DataFrame) -> pd.DataFrame:
    """Rows of clean-trained models attacked white-box (what Tables 1, 2 and 7 use)."""
    return keyed[(keyed["train_attack"] == NO_TRAIN_ATTACK) & (keyed["threat"] == "white-box")]


def pick(values: Sequence[str], chosen: str | None, what: str, option: str) -> str:
    """``chosen`` if among ``values``, else the only value; raise with the choices otherwise."""
    values = list(dict.fromkeys(str(v) for v in values))
    if chosen is not None:
        if str(chosen) not in values:
            raise ValueError(f"no {what} {chosen!r} in the results; they hold {', '.join(values)}")
        return str(chosen)
    if len(values) > 1:
        raise ValueError(f"the results hold several {what}s ({', '.join(values)}); choose one with {option}=...")
    return values[0]


def model_means(keyed: pd.DataFrame, value: str, by: list[str]) -> pd.DataFrame:
    """Mean of ``value`` over repeats (seeds) of each (by..., model) cell."""
    if value not in keyed.columns:
        raise ValueError(f"no column {value!r} in the results; choose one of "
                         f"{', '.join(c for c in keyed.columns if c.startswith('arp'))}")
    vals = pd.to_numeric(keyed[value], errors="coerce")
    return keyed.assign(**{value: vals}).groupby(by + ["model"], sort=False)[value].mean().reset_index()


def task_columns(keyed: pd.DataFrame) -> list[str]:
    """The tasks with a per-task ARP (an ``arp_<task>`` column with a number), in task order."""
    tasks = [t for t in arp_tasks(keyed.columns) if pd.to_numeric(keyed[f"arp_{t}"], errors="coerce").notna().any()]
    return ordered(tasks, TASKS)


def attack_pivot(part: pd.DataFrame, row_col: str, rows: Sequence[str], value: str = "arp") -> pd.DataFrame:
    """Mean ``value`` per (row, optimizer, objective): rows in the given order, attacks in paper order."""
    cells = model_means(part.assign(model=part[row_col]), value, ["optimizer", "objective"])
    table = cells.pivot_table(index="model", columns=["optimizer", "objective"], values=value, aggfunc="mean")
    return table.reindex(index=list(rows), columns=attack_columns(table.columns))


def row_params(part: pd.DataFrame, row_col: str, rows: Sequence[str]) -> dict[str, float]:
    """row label -> #Params (M) where the rows carry ``params_paper_M``."""
    if "params_paper_M" not in part.columns:
        return {}
    params = part.groupby(row_col)["params_paper_M"].first()
    return {r: float(params[r]) for r in rows if not pd.isna(params.get(r))}


# ---------------------------------------------------------------- attack tables

def arp_table(df: pd.DataFrame, eps: float | None = None, value: str = "arp",
              models: Sequence[str] | None = None) -> pd.DataFrame:
    """ARP of every attack on every model (paper Tables 1, 2, 8-15).

    df: results table (:func:`load_results`); eps: pixel units out of 255, needed
    when several are present; value: "arp" (overall) or "arp_<task>".
    models: optional labels to keep, in this order (e.g. Table 1's eight).
    Returns rows = model labels (index "model"), columns = MultiIndex
    (optimizer, objective) in :data:`OPTIMIZERS` x :data:`OBJECTIVES` order, values =
    mean over seeds, NaN where not run. ``table.attrs["params_paper_M"]`` maps
    model -> #Params (M) when known; ``table.attrs["eps"]`` is the eps.
    """
    keyed = attack_keys(df)
    one_setting(keyed)
    keyed = select_eps(keyed, eps)
    cells = model_means(keyed, value, ["optimizer", "objective"])
    table = cells.pivot_table(index="model", columns=["optimizer", "objective"], values=value,
                              aggfunc="mean", dropna=False)
    rows = model_order(keyed)
    if models is not None:
        missing = [m for m in models if m not in rows]
        if missing:
            raise ValueError(f"models {missing} are not in the results; they hold {rows}")
        rows = list(models)
    table = table.reindex(index=rows, columns=attack_columns(table.columns))
    table.index.name = "model"
    table = table.dropna(how="all", axis=1)
    if "params_paper_M" in keyed.columns:
        table.attrs["params_paper_M"] = row_params(keyed, "model", rows)
    table.attrs["eps"] = float(keyed["eps"].iloc[0])
    table.attrs["below_trivial"] = below_trivial_rows(keyed, "model", rows)
    table.attrs["dirty"] = dirty_rows(keyed, "model", rows)
    return table


def dirty_rows(part: pd.DataFrame, row_col: str, rows: Sequence[str]) -> dict[str, int]:
    """row label -> how many of its jobs were run from a checkout with uncommitted changes
    (``git_dirty``: the code behind them cannot be checked); clean rows are left out."""
    if "git_dirty" not in part.columns:
        return {}
    dirty = part["git_dirty"].map(lambda v: str(v).strip().lower() == "true")
    counts = dirty.groupby(part[row_col]).sum()
    return {r: int(counts[r]) for r in rows if r in counts.index and counts[r] > 0}


def below_trivial_rows(part: pd.DataFrame, row_col: str, rows: Sequence[str]) -> dict[str, str]:
    """row label -> the tasks on which its clean model is no better than the trivial predictor
    (any seed), e.g. {"IND": "depth_zbuffer"}; rows without such a task are left out."""
    if "below_trivial" not in part.columns:
        return {}
    out = {}
    for r in rows:
        tasks = sorted({t for v in part.loc[part[row_col] == r, "below_trivial"].dropna() for t in str(v).split(";") if t})
        if tasks:
            out[r] = ", ".join(tasks)
    return out


def best_per_row(table: pd.DataFrame, within: str = "optimizer", rtol: float = 1e-9) -> pd.DataFrame:
    """Boolean frame shaped like ``table``: True where a cell holds its row's best (highest) ARP.

    within="optimizer" (the paper's bold): best per row inside each optimizer group;
    within="row": best over the whole row. Ties are all marked; NaN never is.
    """
    if within not in ("optimizer", "row"):
        raise ValueError(f"within must be 'optimizer' or 'row', got {within!r}")
    values = table.astype(float)
    marks = pd.DataFrame(False, index=table.index, columns=table.columns)
    groups = ([[c for c in table.columns if c[0] == opt] for opt in dict.fromkeys(c[0] for c in table.columns)]
              if within == "optimizer" else [list(table.columns)])
    for cols in groups:
        block = values[cols]
        best = block.max(axis=1, skipna=True)
        close = np.isclose(block.to_numpy(), best.to_numpy()[:, None], rtol=rtol, atol=0.0)
        marks[cols] = close & block.notna().to_numpy()
    return marks


def first_place_counts(marks: pd.DataFrame) -> pd.Series:
    """Per objective, in how many (model, optimizer) cases it is first.

    marks: :func:`~mtl_attack.report.significance.first_places` (only "first" counts: ties,
    unchecked bests and groups of one attack do not) or :func:`best_per_row` (ties count for
    each). With per-optimizer marks this is the paper's "DGBA ranks first in 80 of 100 cases".
    """
    text = any(isinstance(v, str) for v in marks.to_numpy().ravel())
    firsts = marks.eq("first") if text else marks.astype(bool)
    counts = firsts.T.groupby(level="objective", sort=False).sum().sum(axis=1).astype(int)
    return counts.reindex(ordered(counts.index, OBJECTIVES))


def arp_vs_eps(df: pd.DataFrame, value: str = "arp") -> pd.DataFrame:
    """Overall ARP per (optimizer, objective, eps): mean over models of each model's mean over seeds.

    Returns columns optimizer, objective, eps (pixel units), arp (or ``value``), n_models;
    sorted in paper order, then by eps.
    """
    keyed = attack_keys(df)
    one_setting(keyed)
    by = ["optimizer", "objective", "eps"]
    cells = model_means(keyed, value, by)
    out = cells.groupby(by, sort=False)[value].agg(["mean", "count"]).reset_index()
    out = out.rename(columns={"mean": value, "count": "n_models"})
    return sort_attacks(out).reset_index(drop=True)


def per_task_bars(df: pd.DataFrame, eps: float | None = None, objectives: Sequence[str] | None = None,
                  optimizers: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-task ARP of each attack, averaged over models (data of paper Figures 1 and 4, right).

    Returns rows = MultiIndex (optimizer, objective) in paper order, columns = tasks
    in task order; each value is the mean over models of the model's mean over seeds
    of ``arp_<task>``. ``objectives``/``optimizers`` keep only those (e.g. ["wgd", "dgba"]).
    """
    keyed = attack_keys(df)
    one_setting(keyed)
    keyed = select_eps(keyed, eps)
    if objectives is not None:
        keyed = keyed[keyed["objective"].isin(objectives)]
    if optimizers is not None:
        keyed = keyed[keyed["optimizer"].isin(optimizers)]
    if keyed.empty:
        raise ValueError(f"no results for objectives {objectives} and optimizers {optimizers}")
    tasks = task_columns(keyed)
    if not tasks:
        raise ValueError(NO_PER_TASK)
    parts = []
    for task in tasks:
        cells = model_means(keyed, f"arp_{task}", ["optimizer", "objective"])
        parts.append(cells.groupby(["optimizer", "objective"], sort=False)[f"arp_{task}"].mean().rename(task))
    out = pd.concat(parts, axis=1).reset_index()
    out = sort_attacks(out).set_index(["optimizer", "objective"])
    out.columns.name = "task"
    return out


NO_PER_TASK = "the results carry no per-task ARP (arp_<task> columns)"


def weighted_grid_table(df: pd.DataFrame, eps: float | None = None) -> pd.DataFrame | None:
    """Paper Table 16: WeightedTotal's weights and ARP next to DGBA's ARP, per model and optimizer.

    Needs a ``weights`` column on the WeightedTotal rows (text such as "0.1:0.1:0.8",
    a task -> weight dict or a list, in task order); returns None when the results
    carry no weights. Rows = models; columns = MultiIndex (optimizer, one of
    "weights", "weightedtotal", "dgba").
    """
    keyed = attack_keys(df)
    if "weights" not in keyed.columns:
        return None
    wt = keyed[(keyed["objective"] == WeightedTotal.name) & keyed["weights"].notna()]
    if wt.empty:
        return None
    one_setting(keyed)
    keyed = select_eps(keyed, eps)
    arps = arp_table(keyed, eps=None, value="arp")
    wt = keyed[(keyed["objective"] == WeightedTotal.name) & keyed["weights"].notna()]
    text = wt.assign(weights=wt["weights"].map(_weights_text)).groupby(["model", "optimizer"])["weights"].agg(
        lambda s: " / ".join(dict.fromkeys(s)))
    cols, data = [], {}
    for opt in ordered(wt["optimizer"].unique(), OPTIMIZERS):
        for what in ("weights", WeightedTotal.name, DGBA.name):
            cols.append((opt, what))
            if what == "weights":
                data[(opt, what)] = [text.get((m, opt), None) for m in arps.index]
            else:
                data[(opt, what)] = arps[(opt, what)] if (opt, what) in arps.columns else np.nan
    out = pd.DataFrame(data, index=arps.index, columns=pd.MultiIndex.from_tuples(cols, names=["optimizer", "column"]))
    out = out[[m in set(wt["model"]) for m in out.index]]
    out.attrs = dict(arps.attrs)
    return out


def _weights_text(w) -> str:
    if isinstance(w, dict):
        return ":".join(f"{float(w[t]):g}" for t in ordered(w, TASKS))
    if isinstance(w, (list, tuple, np.ndarray)):
        return ":".join(f"{float(x):g}" for x in w)
    return str(w)
