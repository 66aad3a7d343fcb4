"""Tables and figures of the paper rebuilt from job records (or a saved results table).

Input is the results table of :mod:`mtl_attack.records` (one row per job record).
Only rows with ``status == "done"`` enter tables and figures. Values are ARP in
percent; ``eps`` is in pixel units out of 255.

- :func:`arp_table`: paper Tables 1, 2, 8-15: rows = models (most parameters
  first, so IND first and AS last), columns = (optimizer, objective).
- :func:`best_per_row`: which cells hold a row's best ARP. The paper bolds the
  best per optimizer group (its "DGBA ranks first in 80 of 100 cases" counts
  25 models x 4 optimizers), so that is the default; ``within="row"`` gives the
  overall best.
- :func:`arp_vs_eps` / :func:`plot_arp_vs_eps`: Figures 2, 3 (and 4, left).
- :func:`per_task_bars` / :func:`plot_per_task_bars`: Figures 1 and 4 (right).
- :func:`weighted_grid_table`: Table 16, when the rows carry WeightedTotal's weights.
- :func:`adversarial_accuracy_table`: Tables 17/18, clean metrics after adversarial training
  and their drop (ARP-style) against the clean-trained model.
- :func:`adversarial_arp_table`: Tables 3/19, rows = training attack (w/o AT first), columns = attacks.
- :func:`transfer_table`: Table 6, black-box ARP per target, the surrogate's white-box row last.
- :func:`plot_study_bars`: a Table 3/6-shaped table as grouped bars (rows on x, one bar per attack).
- :func:`transferability_table` / :func:`plot_transferability`: Table 7 / Figure 5, the
  transferability of Single-x against the number of shared blocks;
  :func:`transferability_trend`: its rank correlation with the number of shared blocks.
- :func:`write_report` / :func:`main_report`: every file above plus ``report.md``.

Several results of one cell (seeds) are averaged per model first, then, for the
figures, over models, so a model run with more seeds does not weigh more.
"""
from __future__ import annotations

import logging
import math
import os
import re
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from . import atomic, records

__all__ = [
    "OPTIMIZERS", "OBJECTIVES", "TASKS",
    "load_results", "done_rows", "status_note", "attack_keys",
    "arp_table", "best_per_row", "first_place_counts", "to_markdown",
    "arp_vs_eps", "plot_arp_vs_eps", "per_task_bars", "plot_per_task_bars", "plot_study_bars",
    "weighted_grid_table", "adversarial_accuracy_table", "adversarial_arp_table", "transfer_table",
    "transferability_table", "transferability_trend", "plot_transferability", "write_report", "main_report",
]

log = logging.getLogger(__name__)

# train_attack of clean-trained models.
NO_TRAIN_ATTACK = "none"

# Fixed display orders (paper order); unknown names follow, sorted.
OPTIMIZERS = ("fgsm", "pgd", "mim", "apgd", "saga")
TASKS = ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
OBJECTIVES = tuple(f"single_{t}" for t in TASKS) + ("total", "signtotal", "weightedtotal", "wgd", "dgba")

OPTIMIZER_LABELS = {"fgsm": "FGSM", "pgd": "PGD", "mim": "MIM", "apgd": "APGD", "saga": "Auto-SAGA"}
TASK_LABELS = {"segment_semantic": "Segm", "normal": "Norm", "depth_zbuffer": "Dept",
               "keypoints2d": "Keyp", "edge_texture": "Edge"}
OBJECTIVE_LABELS = {"total": "Total", "signtotal": "SignTotal", "weightedtotal": "WeightedTotal",
                    "wgd": "WGD", "dgba": "DGBA",
                    **{f"single_{t}": f"Single-{short}" for t, short in TASK_LABELS.items()}}

TABLE_SUFFIXES = (".csv", ".parquet")


# ---------------------------------------------------------------- loading

def load_results(paths: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """All rows from sweep folders / record.json files and results tables (.csv/.parquet), concatenated.

    A job (same ``job_dir``) found more than once is kept once (the last one read).
    Failed rows are kept (see :func:`done_rows`); tables and figures skip them.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("no inputs; pass sweep folders, record.json files or a results table (.csv/.parquet)")
    frames = []
    record_paths = []
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
        frames.append(records.gather(found))
    frames = [f for f in frames if len(f)]
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
    """One line: how many rows are done and how many were left out (with a few job names)."""
    done = done_rows(df)
    left = df.drop(index=done.index)
    line = f"{len(df)} results: {len(done)} done"
    if len(left):
        states = left["status"].fillna("no status").astype(str).value_counts()
        jobs = left["job"].dropna().astype(str).tolist()[:3] if "job" in left.columns else []
        more = ", ..." if len(left) > len(jobs) and jobs else ""
        line += (", " + ", ".join(f"{n} {s}" for s, n in states.items())
                 + " (left out of tables and figures" + (f": {', '.join(jobs)}{more}" if jobs else "") + ")")
    return line


# ---------------------------------------------------------------- keys

def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _objective_key(row: pd.Series) -> str | None:
    """Objective key as in :data:`OBJECTIVES`; Single-x becomes ``single_<task>``."""
    obj = row.get("objective")
    opt = row.get("optimizer")
    attack = row.get("attack")
    attack = None if _is_missing(attack) else str(attack)
    if _is_missing(obj) and attack and not _is_missing(opt) and attack.endswith(f"_{opt}"):
        obj = attack[: -len(opt) - 1]
        obj = "single" if obj.startswith("single_") and obj not in OBJECTIVES else obj
    if _is_missing(obj):
        return None
    obj = str(obj)
    if obj != "single":
        return obj
    target = row.get("target_task")
    if _is_missing(target) and attack and attack.startswith("single_"):
        # preset names are single_<task>_<optimizer>
        rest = attack[len("single_"):]
        if not _is_missing(opt) and rest.endswith(f"_{opt}"):
            target = rest[: -len(opt) - 1]
    return f"single_{target}" if not _is_missing(target) else "single"


def _optimizer_key(row: pd.Series) -> str | None:
    opt = row.get("optimizer")
    if not _is_missing(opt):
        return str(opt)
    attack = row.get("attack")
    if _is_missing(attack):
        return None
    tail = str(attack).rsplit("_", 1)[-1]
    return tail if tail in OPTIMIZERS else None


def _model_key(row: pd.Series) -> str | None:
    """The model's short label; falls back to ``#<layout_index>``, then the layout string."""
    for col, fmt in (("model", "{}"), ("layout_index", "#{:.0f}"), ("layout", "{}")):
        value = row.get(col)
        if not _is_missing(value):
            return fmt.format(value)
    return None


def _study_model_key(row: pd.Series) -> str | None:
    base = row.get("base_model")
    if _is_missing(base):
        return None
    label = str(base)
    if row.get("train_attack") not in (None, NO_TRAIN_ATTACK) and not _is_missing(row.get("train_attack")):
        label += f" [AT {row['train_attack']}]"
    if row.get("threat") == "black-box":
        label += f" [from {row.get('surrogate')}]"
    return label


def attack_keys(df: pd.DataFrame) -> pd.DataFrame:
    """Done rows with normalized ``model``, ``optimizer``, ``objective`` keys and float ``eps``.

    ``objective`` is ``single_<task>`` for Single-x (from a ``target_task`` column,
    else from the attack name ``single_<task>_<optimizer>``). ``base_model`` is the
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
    return out


def _ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = set(values)
    return [v for v in order if v in values] + sorted(values.difference(order))


def _natural(label: str):
    """Sort key: IND first, numbered layouts by number, AS last."""
    if label == "IND":
        return (0, 0, "")
    if label == "AS":
        return (2, 0, "")
    m = re.search(r"\d+", label)
    return (1, int(m.group()) if m else math.inf, label)


def _model_order(keyed: pd.DataFrame) -> list[str]:
    """Paper order: most parameters first (IND first, AS last); labels break ties and fill gaps."""
    models = keyed["model"].unique().tolist()
    params = {}
    if "params_paper_M" in keyed.columns:
        params = keyed.groupby("model")["params_paper_M"].first().to_dict()

    def key(m):
        p = params.get(m)
        p = -float(p) if p is not None and not pd.isna(p) else math.inf
        return (p, _natural(str(m)))

    return sorted(models, key=key)


def _fmt_eps(eps: float) -> str:
    """4.0 -> "4", 0.5 -> "0.5" (for file names and titles)."""
    return f"{eps:g}"


def _one_setting(keyed: pd.DataFrame) -> None:
    settings = keyed[["dataset", "backbone"]].astype(str).drop_duplicates()
    if len(settings) > 1:
        found = "; ".join(f"{d}/{b}" for d, b in settings.itertuples(index=False))
        raise ValueError(f"results mix several dataset/backbone settings ({found}); "
                         f"filter the table to one, or use write_report, which splits them")


def _select_eps(keyed: pd.DataFrame, eps: float | None) -> pd.DataFrame:
    found = sorted(keyed["eps"].unique())
    listed = ", ".join(map(_fmt_eps, found))
    if eps is None:
        if len(found) > 1:
            raise ValueError(f"results hold several eps ({listed}); choose one with eps=K (--eps K)")
        return keyed
    chosen = keyed[np.isclose(keyed["eps"], float(eps))]
    if chosen.empty:
        raise ValueError(f"no results at eps {_fmt_eps(float(eps))}; the results hold eps {listed}")
    return chosen


def _model_means(keyed: pd.DataFrame, value: str, by: list[str]) -> pd.DataFrame:
    """Mean of ``value`` over repeats (seeds) of each (by..., model) cell."""
    if value not in keyed.columns:
        raise ValueError(f"no column {value!r} in the results; choose one of "
                         f"{', '.join(c for c in keyed.columns if c.startswith('arp'))}")
    vals = pd.to_numeric(keyed[value], errors="coerce")
    return keyed.assign(**{value: vals}).groupby(by + ["model"], sort=False)[value].mean().reset_index()


# ---------------------------------------------------------------- tables

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
    _one_setting(keyed)
    keyed = _select_eps(keyed, eps)
    cells = _model_means(keyed, value, ["optimizer", "objective"])
    table = cells.pivot_table(index="model", columns=["optimizer", "objective"], values=value,
                              aggfunc="mean", dropna=False)
    pairs = list(table.columns)
    cols = [(o, b) for o in _ordered({p[0] for p in pairs}, OPTIMIZERS)
            for b in _ordered({p[1] for p in pairs}, OBJECTIVES) if (o, b) in pairs]
    rows = _model_order(keyed)
    if models is not None:
        missing = [m for m in models if m not in rows]
        if missing:
            raise ValueError(f"models {missing} are not in the results; they hold {rows}")
        rows = list(models)
    table = table.reindex(index=rows, columns=pd.MultiIndex.from_tuples(cols, names=["optimizer", "objective"]))
    table.index.name = "model"
    table = table.dropna(how="all", axis=1)
    if "params_paper_M" in keyed.columns:
        params = keyed.groupby("model")["params_paper_M"].first()
        table.attrs["params_paper_M"] = {m: float(params[m]) for m in rows if not pd.isna(params.get(m))}
    table.attrs["eps"] = float(keyed["eps"].iloc[0])
    return table


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
    """Per objective, in how many (model, optimizer) cases it is marked best (ties count for each).

    With per-optimizer marks this is the paper's "DGBA ranks first in 80 of 100 cases".
    """
    counts = marks.T.groupby(level="objective", sort=False).sum().sum(axis=1).astype(int)
    order = _ordered(counts.index, OBJECTIVES)
    return counts.reindex(order)


def _label(key: str, labels: dict) -> str:
    return labels.get(key, key)


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|")


def to_markdown(table: pd.DataFrame, marks: pd.DataFrame | None = None, digits: int = 2) -> str:
    """A GitHub markdown table: one row per model, best cells in bold, ``digits`` decimals, "-" for NaN.

    Headers read "<optimizer> <objective>" (e.g. "APGD DGBA"); a "#Params (M)"
    column is added when ``table.attrs`` carries ``params_paper_M``.
    """
    params = table.attrs.get("params_paper_M") or {}
    multi = isinstance(table.columns, pd.MultiIndex)
    heads = [f"{_label(o, OPTIMIZER_LABELS)} {_label(b, OBJECTIVE_LABELS)}" if multi else str(o)
             for o, b in (table.columns if multi else [(c, None) for c in table.columns])]
    lead = [table.index.name or "model"] + (["#Params (M)"] if params else [])
    lines = ["| " + " | ".join(_cell(h) for h in lead + heads) + " |",
             "|" + "---|" * len(lead) + "---:|" * len(heads)]
    for model, row in table.iterrows():
        cells = [_cell(model)] + ([f"{params[model]:.2f}" if model in params else "-"] if params else [])
        for col, value in row.items():
            text = "-" if pd.isna(value) else f"{float(value):.{digits}f}"
            if marks is not None and not pd.isna(value) and bool(marks.at[model, col]):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- figures' data

def arp_vs_eps(df: pd.DataFrame, value: str = "arp") -> pd.DataFrame:
    """Overall ARP per (optimizer, objective, eps): mean over models of each model's mean over seeds.

    Returns columns optimizer, objective, eps (pixel units), arp (or ``value``), n_models;
    sorted in paper order, then by eps.
    """
    keyed = attack_keys(df)
    _one_setting(keyed)
    by = ["optimizer", "objective", "eps"]
    cells = _model_means(keyed, value, by)
    out = cells.groupby(by, sort=False)[value].agg(["mean", "count"]).reset_index()
    out = out.rename(columns={"mean": value, "count": "n_models"})
    return _sort_attacks(out).reset_index(drop=True)


def _sort_attacks(df: pd.DataFrame) -> pd.DataFrame:
    opt_rank = {o: i for i, o in enumerate(_ordered(df["optimizer"].unique(), OPTIMIZERS))}
    obj_rank = {o: i for i, o in enumerate(_ordered(df["objective"].unique(), OBJECTIVES))}
    keys = df.assign(_o=df["optimizer"].map(opt_rank), _b=df["objective"].map(obj_rank))
    sort_by = ["_o", "_b"] + (["eps"] if "eps" in df.columns else [])
    return keys.sort_values(sort_by, kind="stable").drop(columns=["_o", "_b"])


def _task_columns(keyed: pd.DataFrame) -> list[str]:
    tasks = [c[len("arp_"):] for c in keyed.columns
             if c.startswith("arp_") and pd.to_numeric(keyed[c], errors="coerce").notna().any()]
    return _ordered(tasks, TASKS)


def per_task_bars(df: pd.DataFrame, eps: float | None = None, objectives: Sequence[str] | None = None,
                  optimizers: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-task ARP of each attack, averaged over models (data of paper Figures 1 and 4, right).

    Returns rows = MultiIndex (optimizer, objective) in paper order, columns = tasks
    in task order; each value is the mean over models of the model's mean over seeds
    of ``arp_<task>``. ``objectives``/``optimizers`` keep only those (e.g. ["wgd", "dgba"]).
    """
    keyed = attack_keys(df)
    _one_setting(keyed)
    keyed = _select_eps(keyed, eps)
    if objectives is not None:
        keyed = keyed[keyed["objective"].isin(objectives)]
    if optimizers is not None:
        keyed = keyed[keyed["optimizer"].isin(optimizers)]
    if keyed.empty:
        raise ValueError(f"no results for objectives {objectives} and optimizers {optimizers}")
    tasks = _task_columns(keyed)
    if not tasks:
        raise ValueError("the results carry no per-task ARP (arp_<task> columns)")
    parts = []
    for task in tasks:
        cells = _model_means(keyed, f"arp_{task}", ["optimizer", "objective"])
        parts.append(cells.groupby(["optimizer", "objective"], sort=False)[f"arp_{task}"].mean().rename(task))
    out = pd.concat(parts, axis=1).reset_index()
    out = _sort_attacks(out).set_index(["optimizer", "objective"])
    out.columns.name = "task"
    return out


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
    wt = keyed[(keyed["objective"] == "weightedtotal") & keyed["weights"].notna()]
    if wt.empty:
        return None
    _one_setting(keyed)
    keyed = _select_eps(keyed, eps)
    arps = arp_table(keyed, eps=None, value="arp")
    wt = keyed[(keyed["objective"] == "weightedtotal") & keyed["weights"].notna()]
    text = wt.assign(weights=wt["weights"].map(_weights_text)).groupby(["model", "optimizer"])["weights"].agg(
        lambda s: " / ".join(dict.fromkeys(s)))
    cols, data = [], {}
    for opt in _ordered(wt["optimizer"].unique(), OPTIMIZERS):
        for what in ("weights", "weightedtotal", "dgba"):
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
        order = _ordered(w, TASKS)
        return ":".join(f"{float(w[t]):g}" for t in order)
    if isinstance(w, (list, tuple, np.ndarray)):
        return ":".join(f"{float(x):g}" for x in w)
    return str(w)


# ---------------------------------------------------------------- studies (Tables 3, 6, 7, 17-19; Figure 5)

def _clean_white_box(keyed: pd.DataFrame) -> pd.DataFrame:
    """Rows of clean-trained models attacked white-box (what Tables 1, 2 and 7 use)."""
    return keyed[(keyed["train_attack"] == NO_TRAIN_ATTACK) & (keyed["threat"] == "white-box")]


def _split_preset(name: str) -> tuple[str | None, str]:
    """"single_normal_pgd" -> ("pgd", "single_normal"); names without an optimizer -> (None, name)."""
    head, _, tail = str(name).rpartition("_")
    return (tail, head) if head and tail in OPTIMIZERS else (None, str(name))


def train_attack_label(name: str) -> str:
    """Row label of an adversarial-training attack: "w/o AT", or e.g. "PGD DGBA", "FGSM Single-Segm"."""
    if name == NO_TRAIN_ATTACK:
        return "w/o AT"
    opt, obj = _split_preset(name)
    return f"{_label(opt, OPTIMIZER_LABELS)} {_label(obj, OBJECTIVE_LABELS)}" if opt else str(name)


def _train_order(names: Iterable[str]) -> list[str]:
    """Clean training first, then by the training attack's optimizer and objective (paper order)."""
    names = list(dict.fromkeys(names))

    def key(name):
        if name == NO_TRAIN_ATTACK:
            return (-1, -1, "")
        opt, obj = _split_preset(name)
        o = OPTIMIZERS.index(opt) if opt in OPTIMIZERS else len(OPTIMIZERS)
        b = OBJECTIVES.index(obj) if obj in OBJECTIVES else len(OBJECTIVES)
        return (o, b, name)

    return sorted(names, key=key)


def _pick(values: Sequence[str], chosen: str | None, what: str, option: str) -> str:
    values = list(dict.fromkeys(str(v) for v in values))
    if chosen is not None:
        if str(chosen) not in values:
            raise ValueError(f"no {what} {chosen!r} in the results; they hold {', '.join(values)}")
        return str(chosen)
    if len(values) > 1:
        raise ValueError(f"the results hold several {what}s ({', '.join(values)}); choose one with {option}=...")
    return values[0]


def _attack_pivot(part: pd.DataFrame, row_col: str, rows: Sequence[str], value: str = "arp") -> pd.DataFrame:
    """Mean ``value`` per (row, optimizer, objective): rows in the given order, attacks in paper order."""
    cells = _model_means(part.assign(model=part[row_col]), value, ["optimizer", "objective"])
    table = cells.pivot_table(index="model", columns=["optimizer", "objective"], values=value, aggfunc="mean")
    pairs = list(table.columns)
    cols = [(o, b) for o in _ordered({p[0] for p in pairs}, OPTIMIZERS)
            for b in _ordered({p[1] for p in pairs}, OBJECTIVES) if (o, b) in pairs]
    table = table.reindex(index=list(rows), columns=pd.MultiIndex.from_tuples(cols, names=["optimizer", "objective"]))
    return table


def _metric_directions(columns: Iterable[str]) -> dict[str, dict[str, bool]]:
    """task -> {metric: higher_is_better} of the tasks whose clean_<task>_<metric> columns are present."""
    from .data.registry import DATASETS, get_tasks

    columns = set(columns)
    present = [t for t in TASKS if any(c.startswith(f"clean_{t}_") for c in columns)]
    for kind in DATASETS:
        tasks = [t for t in get_tasks(kind) if t.name in present]
        if len(tasks) == len(present) and all(f"clean_{t.name}_{m}" in columns for t in tasks for m in t.metrics):
            return {t.name: dict(t.metrics) for t in tasks}
    raise ValueError(f"cannot match the clean metric columns of tasks {present} to NYUv2's or Taskonomy's metrics")


def _adversarial_part(df: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    keyed = attack_keys(df)
    _one_setting(keyed)
    white = keyed[keyed["threat"] == "white-box"]
    trained = white.loc[white["train_attack"] != NO_TRAIN_ATTACK, "base_model"].unique()
    if not len(trained):
        raise ValueError("no adversarially trained models in the results; train with train.adversarial.attack=...")
    name = _pick(trained, model, "adversarially trained model", "model")
    return white[white["base_model"] == name], name


def adversarial_accuracy_table(df: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """Paper Tables 17/18: clean metrics of each adversarially trained model and the cost in accuracy.

    Rows = training attack ("w/o AT" first), for one base model (``model``, e.g. "AS";
    needed when several were adversarially trained). Columns: every "<Task> <metric>"
    (clean values, mean over the model's records), then "ARP <Task>" and "ARP": the
    relative drop of the clean metrics against the w/o AT row (paper Eq. 10 applied to
    clean metrics, in percent; positive = accuracy lost; NaN without a w/o AT row).
    """
    from .scores import arp

    part, name = _adversarial_part(df, model)
    directions = _metric_directions(part.columns)
    cols = [f"clean_{t}_{m}" for t, ms in directions.items() for m in ms]
    values = part[["train_attack"] + cols].copy()
    values[cols] = values[cols].apply(pd.to_numeric, errors="coerce")
    means = values.groupby("train_attack")[cols].mean()
    order = _train_order(means.index)

    def metrics(row) -> dict:
        return {t: {m: float(row[f"clean_{t}_{m}"]) for m in ms} for t, ms in directions.items()}

    base = metrics(means.loc[NO_TRAIN_ATTACK]) if NO_TRAIN_ATTACK in means.index else None
    out = {}
    for train in order:
        row = {f"{TASK_LABELS.get(t, t)} {m}": means.at[train, f"clean_{t}_{m}"] for t, ms in directions.items()
               for m in ms}
        if base is not None:
            overall, per_task = arp(base, metrics(means.loc[train]), directions)
        else:
            overall, per_task = np.nan, {t: np.nan for t in directions}
        row.update({f"ARP {TASK_LABELS.get(t, t)}": per_task[t] for t in directions})
        row["ARP"] = overall
        out[train_attack_label(train)] = row
    table = pd.DataFrame.from_dict(out, orient="index")
    table.index.name = "adversarial training"
    table.attrs["model"] = name
    return table


def adversarial_arp_table(df: pd.DataFrame, eps: float | None = None, model: str | None = None) -> pd.DataFrame:
    """Paper Tables 3/19: white-box ARP of each attack (columns, paper order) on each
    adversarially trained version of one model (rows: training attack, "w/o AT" first)."""
    part, name = _adversarial_part(df, model)
    part = _select_eps(part, eps)
    if not (part["train_attack"] != NO_TRAIN_ATTACK).any():
        raise ValueError(f"no adversarially trained model of {name} was attacked at eps "
                         f"{_fmt_eps(float(part['eps'].iloc[0]))}")
    rows = _train_order(part["train_attack"].unique())
    table = _attack_pivot(part, "train_attack", rows)
    table.index = [train_attack_label(r) for r in rows]
    table.index.name = "adversarial training"
    table.attrs.update(model=name, eps=float(part["eps"].iloc[0]))
    return table


def transfer_table(df: pd.DataFrame, eps: float | None = None, surrogate: str | None = None) -> pd.DataFrame:
    """Paper Table 6: black-box ARP of each attack crafted on ``surrogate`` (needed when
    several) and applied to each clean-trained target; rows "BB <target>" (most parameters
    first) then "WB <surrogate>", the white-box ARP on the surrogate itself (when run)."""
    keyed = attack_keys(df)
    _one_setting(keyed)
    keyed = _select_eps(keyed[keyed["train_attack"] == NO_TRAIN_ATTACK], eps)
    black = keyed[keyed["threat"] == "black-box"]
    if black.empty:
        raise ValueError("no black-box results; run targets with transfer.surrogate=all_shared (or another model)")
    name = _pick(black["surrogate"].dropna().unique(), surrogate, "surrogate", "surrogate")
    black = black[black["surrogate"].astype(str) == name]
    white = _clean_white_box(keyed)
    white = white[white["base_model"].astype(str) == name]
    ran = set(zip(black["optimizer"], black["objective"]))  # the white-box row: the same attacks only
    white = white[[pair in ran for pair in zip(white["optimizer"], white["objective"])]]
    targets = _model_order(black.assign(model=black["base_model"]))
    part = pd.concat([black.assign(row="BB " + black["base_model"].astype(str)),
                      white.assign(row=f"WB {name}")], ignore_index=True)
    rows = [f"BB {m}" for m in targets] + ([f"WB {name}"] if len(white) else [])
    table = _attack_pivot(part, "row", rows)
    table.index.name = "model"
    if "params_paper_M" in part.columns:
        params = part.groupby("row")["params_paper_M"].first()
        table.attrs["params_paper_M"] = {r: float(params[r]) for r in rows if not pd.isna(params.get(r))}
    table.attrs.update(surrogate=name, eps=float(keyed["eps"].iloc[0]))
    return table


def transferability_table(df: pd.DataFrame, eps: float | None = None) -> pd.DataFrame:
    """Paper Table 7 / Figure 5 data: transferability of Single-x per number of shared blocks.

    For each clean-trained model attacked white-box by Single-x (per optimizer), the
    per-task ARPs (mean over seeds) give mean_{y != x} ARP_y / ARP_x
    (:func:`mtl_attack.scores.transferability`); models with the same number of leading
    shared blocks are averaged. A model where ARP_x is not positive (the attack did not
    hurt its own task) is left out with a warning: the ratio means nothing there.
    Returns columns optimizer, attacked_task, shared_blocks, transferability, n_models,
    models; sorted by optimizer, shared blocks (most first), task.
    """
    from .scores import transferability

    keyed = attack_keys(df)
    _one_setting(keyed)
    keyed = _select_eps(keyed, eps)
    part = _clean_white_box(keyed)
    part = part[part["objective"].astype(str).str.startswith("single_")]
    if part.empty:
        raise ValueError("no Single-x results on clean-trained models attacked white-box")
    if "shared_blocks" not in part.columns or part["shared_blocks"].isna().any():
        raise ValueError("some Single-x results have no shared_blocks (the model's layout); re-gather the records")
    tasks = _task_columns(part)
    rows = []
    for (opt, obj, model), group in part.groupby(["optimizer", "objective", "model"], sort=False):
        target = obj[len("single_"):]
        per_task = {t: float(pd.to_numeric(group[f"arp_{t}"], errors="coerce").mean()) for t in tasks}
        per_task = {t: v for t, v in per_task.items() if not math.isnan(v)}
        if not per_task.get(target, 0.0) > 0:
            # The attack did not hurt its own task: the ratio would mean nothing (or flip sign).
            log.warning("transferability of %s on %s left out: its own task's ARP is %s, not positive",
                        obj, model, per_task.get(target))
            continue
        value = transferability(per_task, target)
        rows.append({"optimizer": opt, "attacked_task": target, "model": model,
                     "shared_blocks": int(group["shared_blocks"].iloc[0]), "transferability": value})
    if not rows:
        raise ValueError("no Single-x result has a usable per-task ARP of its attacked task")
    long = pd.DataFrame(rows)
    out = long.groupby(["optimizer", "attacked_task", "shared_blocks"], sort=False).agg(
        transferability=("transferability", "mean"), n_models=("model", "count"),
        models=("model", lambda s: ", ".join(sorted(s, key=_natural)))).reset_index()
    opt_rank = {o: i for i, o in enumerate(_ordered(out["optimizer"].unique(), OPTIMIZERS))}
    task_rank = {t: i for i, t in enumerate(_ordered(out["attacked_task"].unique(), TASKS))}
    out = out.assign(_o=out["optimizer"].map(opt_rank), _t=out["attacked_task"].map(task_rank))
    out = out.sort_values(["_o", "shared_blocks", "_t"], ascending=[True, False, True], kind="stable")
    return out.drop(columns=["_o", "_t"]).reset_index(drop=True)


def transferability_trend(long: pd.DataFrame) -> pd.DataFrame:
    """Does transferability rise with sharing? Per (optimizer, attacked task) of a
    :func:`transferability_table`: Spearman's rank correlation between the number of shared
    blocks and the transferability (+1: rises throughout; NaN with fewer than 3 levels).
    Returns columns optimizer, attacked_task, spearman, levels, in the table's order."""
    from .scores import spearman

    rows = [{"optimizer": opt, "attacked_task": task,
             "spearman": spearman(g["shared_blocks"].tolist(), g["transferability"].tolist()), "levels": len(g)}
            for (opt, task), g in long.groupby(["optimizer", "attacked_task"], sort=False)]
    opt_rank = {o: i for i, o in enumerate(_ordered(long["optimizer"].unique(), OPTIMIZERS))}
    task_rank = {t: i for i, t in enumerate(_ordered(long["attacked_task"].unique(), TASKS))}
    rows.sort(key=lambda r: (opt_rank[r["optimizer"]], task_rank[r["attacked_task"]]))
    return pd.DataFrame(rows, columns=["optimizer", "attacked_task", "spearman", "levels"])


def _transferability_wide(long: pd.DataFrame) -> pd.DataFrame:
    """Rows = shared blocks (most first, labelled with their models), columns = "<OPT> Single-<Task>"."""
    wide = long.pivot_table(index="shared_blocks", columns=["optimizer", "attacked_task"],
                            values="transferability", aggfunc="mean", sort=False)
    wide = wide.sort_index(ascending=False)
    tasks = _ordered(long["attacked_task"].unique(), TASKS)
    wide = wide[[(o, t) for o in _ordered(long["optimizer"].unique(), OPTIMIZERS) for t in tasks
                 if (o, t) in wide.columns]]
    names = long.groupby("shared_blocks")["models"].agg(lambda s: ", ".join(dict.fromkeys(", ".join(s).split(", "))))
    wide.index = [f"{k} ({names[k]})" for k in wide.index]
    wide.index.name = "shared blocks (models)"
    wide.columns = [f"{_label(o, OPTIMIZER_LABELS)} Single-{TASK_LABELS.get(t, t)}" for o, t in wide.columns]
    return wide


def plot_transferability(df: pd.DataFrame, path: str | os.PathLike, eps: float | None = None,
                         title: str | None = None) -> Path:
    """Figure 5: transferability of Single-x (y) against the number of shared blocks (x, 0 = no
    sharing .. 5 = all shared), one line per attacked task, one panel per optimizer; PNG at ``path``."""
    data = transferability_table(df, eps)
    opts = list(dict.fromkeys(data["optimizer"]))
    tasks = _ordered(data["attacked_task"].unique(), TASKS)
    fig = _figure(3.8 * len(opts) + 1.6, 3.4)
    axes = fig.subplots(1, len(opts), squeeze=False, sharey=True)[0]
    blocks = sorted(data["shared_blocks"].unique())
    handles = {}
    for ax, opt in zip(axes, opts):
        part = data[data["optimizer"] == opt]
        for task in tasks:
            line = part[part["attacked_task"] == task].sort_values("shared_blocks")
            if line.empty:
                continue
            label = f"Single-{TASK_LABELS.get(task, task)}"
            (h,) = ax.plot(line["shared_blocks"], line["transferability"], marker="o",
                           color=f"C{TASKS.index(task) if task in TASKS else 9}", label=label)
            handles.setdefault(label, h)
        ax.set_xticks(blocks, [str(int(b)) for b in blocks])
        ax.set_xlabel("shared blocks (0 = IND, 5 = AS)")
        ax.set_title(_label(opt, OPTIMIZER_LABELS))
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("transferability")
    _legend(fig, handles, [f"Single-{TASK_LABELS.get(t, t)}" for t in tasks])
    if title:
        fig.suptitle(title)
    return _save_figure(fig, Path(path))


def _plain_markdown(table: pd.DataFrame, digits: int = 2) -> str:
    """A markdown table with the index as first column, numbers to ``digits`` decimals, "-" for NaN."""
    lines = ["| " + " | ".join(_cell(c) for c in [table.index.name or ""] + list(table.columns)) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for name, row in table.iterrows():
        cells = [_cell(name)] + ["-" if pd.isna(v) else (f"{float(v):.{digits}f}" if not isinstance(v, str) else v)
                                 for v in row.tolist()]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _flat_csv(table: pd.DataFrame) -> pd.DataFrame:
    flat = table.copy()
    if isinstance(flat.columns, pd.MultiIndex):
        flat.columns = [f"{o}/{b}" for o, b in flat.columns]
    return flat


def _study_table_files(table: pd.DataFrame, out: Path, stem: str, title: str,
                       written: list[Path]) -> tuple[str, str]:
    """Write a Table 3/6-shaped table as <stem>.md, .csv and .png (bars); return its markdown with
    the picture and the first-place counts as text (e.g. "DGBA 3, Total 1")."""
    marks = best_per_row(table)
    firsts = first_place_counts(marks)
    written.append(_write_text(out / f"{stem}.md", f"# {title}\n\n" + to_markdown(table, marks)))
    written.append(_write_csv(_flat_csv(table), out / f"{stem}.csv"))
    written.append(plot_study_bars(table, out / f"{stem}.png", title=title))
    counts = ", ".join(f"{_label(o, OBJECTIVE_LABELS)} {n}" for o, n in firsts.items() if n)
    return to_markdown(table, marks) + f"\n![{title}]({stem}.png) ([csv]({stem}.csv))\n", counts


def _study_sections(keyed: pd.DataFrame, out: Path, prefix: str, eps: float | None,
                    written: list[Path]) -> list[str]:
    """Markdown (and files) of the studies the rows of one setting hold: adversarial training
    (Tables 17, 3), black-box transfer (Table 6), transferability (Table 7, Figure 5)."""
    md: list[str] = []
    epss = [e for e in sorted(keyed["eps"].unique()) if eps is None or math.isclose(e, float(eps))]
    white = keyed[keyed["threat"] == "white-box"]
    trained = white.loc[white["train_attack"] != NO_TRAIN_ATTACK, "base_model"].unique()
    for model in trained:
        tag = f"{prefix}{_slug(model)}_" if len(trained) > 1 else prefix
        md += [f"### Adversarial training of {model} (paper Tables 17/18 and 3/19)", ""]
        acc = adversarial_accuracy_table(keyed, model=model)
        stem = f"{tag}table_adv_accuracy"
        written.append(_write_text(out / f"{stem}.md", f"# Clean accuracy after adversarial training, {model}\n\n"
                                   + _plain_markdown(acc)))
        written.append(_write_csv(acc, out / f"{stem}.csv"))
        md += ["Clean metrics of each adversarially trained model; the ARP columns are the relative "
               "accuracy drop against the clean-trained model (w/o AT), in %.", "", _plain_markdown(acc)]
        for e in epss:
            try:
                table = adversarial_arp_table(keyed, eps=e, model=model)
            except ValueError:
                continue
            k = _fmt_eps(e)
            body, firsts = _study_table_files(table, out, f"{tag}table_adv_arp_eps{k}",
                                              f"ARP on adversarially trained {model}, eps {k}", written)
            md += [f"ARP of each attack (columns) at eps {k} on {model} trained with each attack (rows); "
                   f"bold: the row's best per optimizer. First places: {firsts}.", "", body]
    black = keyed[(keyed["threat"] == "black-box") & (keyed["train_attack"] == NO_TRAIN_ATTACK)]
    for surrogate in black["surrogate"].dropna().astype(str).unique():
        for e in epss:
            try:
                table = transfer_table(keyed, eps=e, surrogate=surrogate)
            except ValueError:
                continue
            k = _fmt_eps(e)
            body, firsts = _study_table_files(table, out, f"{prefix}table_transfer_{_slug(surrogate)}_eps{k}",
                                              f"Black-box transfer from {surrogate}, eps {k}", written)
            md += [f"### Black-box transfer from surrogate {surrogate}, eps {k} (paper Table 6)", "",
                   "BB: adversarial examples crafted on the surrogate, applied to the target; "
                   f"WB: white-box on {surrogate} itself. Bold: the row's best per optimizer. "
                   f"First places: {firsts}.", "", body]
    single = _clean_white_box(keyed)
    single = single[single["objective"].astype(str).str.startswith("single_")]
    # a trend needs two sharing levels
    levels = [e for e in epss if "shared_blocks" in single.columns
              and single.loc[np.isclose(single["eps"], e), "shared_blocks"].dropna().nunique() >= 2]
    for e in levels:
        here = single[np.isclose(single["eps"], e)]
        k = _fmt_eps(e)
        long = transferability_table(here, eps=e)
        stem = f"{prefix}transferability_eps{k}" if len(levels) > 1 else f"{prefix}transferability"
        wide = _transferability_wide(long)
        written.append(_write_csv(long, out / f"{stem}.csv", index=False))
        written.append(_write_text(out / f"{stem}.md", f"# Transferability of Single-x, eps {k}\n\n"
                                   + _plain_markdown(wide)))
        written.append(plot_transferability(here, out / f"{stem}.png", eps=e,
                                            title=f"Transferability of Single-x vs sharing, eps {k}"))
        trend = transferability_trend(long)
        rho = ", ".join(f"{_label(r.optimizer, OPTIMIZER_LABELS)} Single-{TASK_LABELS.get(r.attacked_task, r.attacked_task)} "
                        + ("-" if math.isnan(r.spearman) else f"{r.spearman:.2f}") for r in trend.itertuples())
        md += [f"### Transferability of Single-x, eps {k} (paper Table 7, Figure 5)", "",
               "mean ARP of the other tasks / ARP of the attacked task, by the number of leading "
               "shared blocks (5 = AS, 0 = no sharing); \"-\": no result, or the attack did not hurt "
               "its own task (ARP of the attacked task <= 0).", "", _plain_markdown(wide),
               "Rank correlation of transferability with the number of shared blocks (Spearman; "
               f"+1: rises with sharing throughout, -1: falls): {rho}.", "",
               f"![transferability]({stem}.png) ([csv]({stem}.csv))", ""]
    return md


# ---------------------------------------------------------------- plots

def _figure(width: float, height: float):
    # A bare Figure on the Agg canvas: no pyplot state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, path: Path) -> Path:
    return atomic.write_figure(path, fig, bbox_inches="tight")


def _write_text(path: Path, text: str) -> Path:
    return atomic.write_text(path, text)


def _write_csv(df: pd.DataFrame, path: Path, index: bool = True) -> Path:
    return atomic.write_csv(path, df, index=index)


def plot_arp_vs_eps(df: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """Figures 2/3: overall ARP vs eps, one panel per optimizer, one line per objective; PNG at ``path``.

    x: eps (pixel units) on a log2 axis with ticks at the eps present (1, 2, 4, 8, 16).
    """
    data = arp_vs_eps(df)
    opts = _ordered(data["optimizer"].unique(), OPTIMIZERS)
    objs = _ordered(data["objective"].unique(), OBJECTIVES)
    fig = _figure(3.6 * len(opts) + 1.4, 3.4)
    axes = fig.subplots(1, len(opts), squeeze=False, sharex=True, sharey=True)[0]
    epss = sorted(data["eps"].unique())
    for ax, opt in zip(axes, opts):
        part = data[data["optimizer"] == opt]
        for i, obj in enumerate(objs):
            line = part[part["objective"] == obj].sort_values("eps")
            if line.empty:
                continue
            ax.plot(line["eps"], line["arp"], marker="o", color=f"C{i % 10}", label=_label(obj, OBJECTIVE_LABELS))
        ax.set_xscale("log", base=2)
        ax.set_xticks(epss, [_fmt_eps(e) for e in epss])
        ax.minorticks_off()
        ax.set_title(_label(opt, OPTIMIZER_LABELS))
        ax.set_xlabel("eps (/255)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("overall ARP (%)")
    handles = {}
    for ax in axes:  # one legend for all panels, each objective once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    _legend(fig, handles, [_label(o, OBJECTIVE_LABELS) for o in objs])
    if title:
        fig.suptitle(title)
    return _save_figure(fig, Path(path))


def plot_per_task_bars(df: pd.DataFrame, path: str | os.PathLike, eps: float | None = None,
                       objectives: Sequence[str] | None = None, optimizers: Sequence[str] | None = None,
                       title: str | None = None) -> Path:
    """Figures 1/4: per-task ARP as grouped bars (x = task, one bar per objective), one panel per optimizer."""
    data = per_task_bars(df, eps, objectives=objectives, optimizers=optimizers)
    fig = _bar_figure(data, [TASK_LABELS.get(t, t) for t in data.columns], "task ARP (%)", title)
    return _save_figure(fig, Path(path))


def plot_study_bars(table: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """A study table (:func:`adversarial_arp_table`, :func:`transfer_table`: rows x (optimizer,
    objective) ARP) as grouped bars: x = the table's rows, one bar per objective, one panel per optimizer."""
    return _save_figure(_bar_figure(table.T, [str(r) for r in table.index], "ARP (%)", title), Path(path))


def _bar_figure(data: pd.DataFrame, xlabels: list[str], ylabel: str, title: str | None):
    """Grouped bars of data (rows = (optimizer, objective), columns = the x groups): one panel per
    optimizer, one bar colour per objective (the same in every panel), NaN cells drawn as no bar."""
    opts = list(dict.fromkeys(data.index.get_level_values("optimizer")))
    objs = _ordered(data.index.get_level_values("objective").unique(), OBJECTIVES)
    panel = min(8.0, max(3.6, 0.35 * len(xlabels) * len(objs) + 1.0))  # inches; wide tables get thin bars
    fig = _figure(panel * len(opts) + 1.4, 3.4)
    axes = fig.subplots(1, len(opts), squeeze=False, sharey=True)[0]
    x = np.arange(len(xlabels))
    handles = {}
    for ax, opt in zip(axes, opts):
        here = [o for o in objs if (opt, o) in data.index]  # bar slots only for attacks run here
        width = 0.8 / len(here)
        for slot, obj in enumerate(here):
            vals = data.loc[(opt, obj)].to_numpy(dtype=float)
            i = objs.index(obj)  # colour fixed per objective across panels
            bars = ax.bar(x - 0.4 + width * (slot + 0.5), vals, width, color=f"C{i % 10}",
                          label=_label(obj, OBJECTIVE_LABELS))
            handles.setdefault(_label(obj, OBJECTIVE_LABELS), bars)
        ax.set_xticks(x, xlabels, rotation=30 if max(map(len, xlabels)) > 6 else 0,
                      ha="right" if max(map(len, xlabels)) > 6 else "center")
        ax.set_title(_label(opt, OPTIMIZER_LABELS))
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(ylabel)
    _legend(fig, handles, [_label(o, OBJECTIVE_LABELS) for o in objs])
    if title:
        fig.suptitle(title)
    return fig


def _legend(fig, handles: dict, order: list[str]) -> None:
    """One legend right of the panels, entries in paper order."""
    labels = [lab for lab in order if lab in handles]
    fig.legend([handles[lab] for lab in labels], labels, loc="outside right center", frameon=False)


# ---------------------------------------------------------------- report

def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", str(text)).strip("-") or "none"


def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, eps: float | None = None) -> list[Path]:
    """Write every table and figure for the results in ``df`` under ``out_dir``; return the paths.

    Per dataset/backbone setting (file names get a ``<dataset>_<backbone>_`` prefix
    only when there are several) and per eps (all, or only ``eps``):
    table_arp_eps<k>.md/.csv, per_task_arp_eps<k>.png/.csv; arp_vs_eps.png/.csv when
    more than one eps is present and no ``eps`` was chosen; table_weighted_eps<k>.md when the rows carry
    WeightedTotal's weights; and report.md linking them (written last).
    """
    out = Path(out_dir)
    keyed = attack_keys(df)
    note = status_note(df)
    settings = keyed[["dataset", "backbone"]].astype(str).drop_duplicates().itertuples(index=False)
    settings = list(settings)
    if eps is not None:
        _select_eps(keyed, eps)  # fail early with the eps list
    written: list[Path] = []
    md = ["# Attack report", "", note + ".", "",
          "ARP in %, higher = stronger attack; eps in pixel units out of 255. "
          "Bold: the best ARP in its row within each optimizer (as the paper marks its first places). "
          "Cells average over seeds; figures average over models.", ""]
    for dataset, backbone in settings:
        everything = keyed[(keyed["dataset"].astype(str) == dataset) & (keyed["backbone"].astype(str) == backbone)]
        prefix = f"{_slug(dataset)}_{_slug(backbone)}_" if len(settings) > 1 else ""
        md += [f"## {dataset} / {backbone}", ""]
        md += _study_sections(everything, out, prefix, eps, written)
        # The tables below: clean-trained models attacked white-box (the studies above have the rest).
        part = _clean_white_box(everything)
        if part.empty:
            md += ["No clean-trained white-box results: the ARP tables of Tables 1/2 are skipped.", ""]
            continue
        if len(part) < len(everything):
            md += ["### Clean-trained models, white-box", ""]
        epss = sorted(part["eps"].unique())
        chosen = [e for e in epss if eps is None or math.isclose(e, float(eps))]
        if not chosen:
            md += [f"No results at eps {_fmt_eps(float(eps))} (this setting has eps "
                   f"{', '.join(map(_fmt_eps, epss))}).", ""]
            continue
        for e in chosen:
            k = _fmt_eps(e)
            table = arp_table(part, eps=e)
            marks = best_per_row(table)
            firsts = first_place_counts(marks)
            cases = int(table.notna().T.groupby(level="optimizer").any().sum().sum())
            stem = f"{prefix}table_arp_eps{k}"
            written.append(_write_text(out / f"{stem}.md", f"# ARP, {dataset} / {backbone}, eps {k}\n\n"
                                       + to_markdown(table, marks)))
            flat = table.copy()
            flat.columns = [f"{o}/{b}" for o, b in table.columns]
            if table.attrs.get("params_paper_M"):
                flat.insert(0, "params_paper_M", [table.attrs["params_paper_M"].get(m) for m in flat.index])
            written.append(_write_csv(flat, out / f"{stem}.csv"))
            md += [f"### eps {k}", "", f"Table: [{stem}.md]({stem}.md) ([csv]({stem}.csv))", "",
                   "First places (model x optimizer cases, ties count for each) out of "
                   f"{cases}: " + ", ".join(f"{_label(o, OBJECTIVE_LABELS)} {n}" for o, n in firsts.items()
                                             if n) + ".", ""]
            try:
                bars = per_task_bars(part, e)
            except ValueError as err:
                md += [f"Per-task bars skipped: {err}.", ""]
            else:
                bstem = f"{prefix}per_task_arp_eps{k}"
                written.append(_write_csv(bars, out / f"{bstem}.csv"))
                written.append(plot_per_task_bars(part, out / f"{bstem}.png", e,
                                                  title=f"{dataset} / {backbone}, eps {k}"))
                md += [f"![per-task ARP, eps {k}]({bstem}.png) ([csv]({bstem}.csv))", ""]
            weighted = weighted_grid_table(part, e)
            if weighted is None:
                md += ["WeightedTotal table (paper Table 16) skipped: the results carry no weights.", ""]
            else:
                wstem = f"{prefix}table_weighted_eps{k}"
                written.append(_write_text(out / f"{wstem}.md", _weighted_markdown(weighted)))
                md += [f"WeightedTotal vs DGBA: [{wstem}.md]({wstem}.md)", ""]
        if eps is None and len(epss) > 1:
            stem = f"{prefix}arp_vs_eps"
            written.append(_write_csv(arp_vs_eps(part), out / f"{stem}.csv", index=False))
            written.append(plot_arp_vs_eps(part, out / f"{stem}.png", title=f"{dataset} / {backbone}"))
            md += ["### Overall ARP vs eps", "", f"![overall ARP vs eps]({stem}.png) ([csv]({stem}.csv))", ""]
    written.append(_write_text(out / "report.md", "\n".join(md)))
    return written


def _weighted_markdown(table: pd.DataFrame) -> str:
    names = {"weights": "weights", "weightedtotal": "WeightedTotal ARP", "dgba": "DGBA ARP"}
    lines = ["| model | " + " | ".join(f"{_label(o, OPTIMIZER_LABELS)} {names[w]}" for o, w in table.columns) + " |",
             "|---|" + "---:|" * len(table.columns)]
    for model, row in table.iterrows():
        cells = [_cell(model)]
        for (o, w), v in row.items():
            cells.append("-" if v is None or (not isinstance(v, str) and pd.isna(v))
                         else (v if isinstance(v, str) else f"{float(v):.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main_report(paths: Sequence[str | os.PathLike], out_dir: str | os.PathLike | None = None,
                eps: float | None = None) -> list[Path]:
    """CLI entry (``mtl-attack report PATHS... [--out DIR] [--eps K]``): load, write, return the paths.

    out_dir defaults to ``report/`` inside the first input folder (beside a results table).
    Logs a warning naming the left-out (not done) results.
    """
    df = load_results(paths)
    if out_dir is None:
        first = Path(paths[0])
        out_dir = (first if first.is_dir() else first.parent) / "report"
    note = status_note(df)
    if len(done_rows(df)) < len(df):
        log.warning(note)
    return write_report(df, out_dir, eps=eps)
