"""Study tables as pure DataFrame -> DataFrame functions: adversarial training (paper
Tables 3, 17-19), black-box transfer (Table 6) and the transferability of Single-x
(Table 7, Figure 5).
"""
from __future__ import annotations

import logging
import math

import numpy as np
import pandas as pd

from .. import scores
from .labels import (NO_TRAIN_ATTACK, OPTIMIZERS, TASKS, fmt_eps, model_order, natural, optimizer_label, ordered,
                     rank, split_objective_key, task_label, train_attack_label, train_order)
from .load import attack_keys, metric_directions
from .tables import attack_pivot, clean_white_box, one_setting, pick, row_params, select_eps, task_columns

log = logging.getLogger(__name__)


def trained_models(keyed: pd.DataFrame) -> list[str]:
    """Base models with an adversarially trained version attacked white-box."""
    white = keyed[keyed["threat"] == "white-box"]
    return list(white.loc[white["train_attack"] != NO_TRAIN_ATTACK, "base_model"].unique())


def _adversarial_part(df: pd.DataFrame, model: str | None) -> tuple[pd.DataFrame, str]:
    keyed = attack_keys(df)
    one_setting(keyed)
    trained = trained_models(keyed)
    if not trained:
        raise ValueError("no adversarially trained models in the results; train with train.adversarial.attack=...")
    name = pick(trained, model, "adversarially trained model", "model")
    return keyed[(keyed["threat"] == "white-box") & (keyed["base_model"] == name)], name


def adversarial_accuracy_table(df: pd.DataFrame, model: str | None = None) -> pd.DataFrame:
    """Paper Tables 17/18: clean metrics of each adversarially trained model and the cost in accuracy.

    Rows = training attack ("w/o AT" first), for one base model (``model``, e.g. "AS";
    needed when several were adversarially trained). Columns: every "<Task> <metric>"
    (clean values, mean over the model's records), then "ARP <Task>" and "ARP": the
    relative drop of the clean metrics against the w/o AT row (paper Eq. 10 applied to
    clean metrics, in percent; positive = accuracy lost; NaN without a w/o AT row).
    Metric directions come from the records (:func:`~mtl_attack.report.load.metric_directions`).
    """
    part, name = _adversarial_part(df, model)
    directions = metric_directions(part)
    cols = [f"clean_{t}_{m}" for t, ms in directions.items() for m in ms]
    values = part[["train_attack"] + cols].copy()
    values[cols] = values[cols].apply(pd.to_numeric, errors="coerce")
    means = values.groupby("train_attack")[cols].mean()

    def metrics(row) -> dict:
        return {t: {m: float(row[f"clean_{t}_{m}"]) for m in ms} for t, ms in directions.items()}

    base = metrics(means.loc[NO_TRAIN_ATTACK]) if NO_TRAIN_ATTACK in means.index else None
    out = {}
    for train in train_order(means.index):
        row = {f"{task_label(t)} {m}": means.at[train, f"clean_{t}_{m}"] for t, ms in directions.items() for m in ms}
        if base is not None:
            overall, per_task = scores.arp(base, metrics(means.loc[train]), directions)
        else:
            overall, per_task = np.nan, {t: np.nan for t in directions}
        row.update({f"ARP {task_label(t)}": per_task[t] for t in directions})
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
    part = select_eps(part, eps)
    if not (part["train_attack"] != NO_TRAIN_ATTACK).any():
        raise ValueError(f"no adversarially trained model of {name} was attacked at eps "
                         f"{fmt_eps(float(part['eps'].iloc[0]))}")
    rows = train_order(part["train_attack"].unique())
    table = attack_pivot(part, "train_attack", rows)
    table.index = [train_attack_label(r) for r in rows]
    table.index.name = "adversarial training"
    table.attrs.update(model=name, eps=float(part["eps"].iloc[0]))
    return table


def black_box(keyed: pd.DataFrame) -> pd.DataFrame:
    """Rows of clean-trained targets attacked with examples crafted on a surrogate."""
    return keyed[(keyed["threat"] == "black-box") & (keyed["train_attack"] == NO_TRAIN_ATTACK)]


def transfer_table(df: pd.DataFrame, eps: float | None = None, surrogate: str | None = None) -> pd.DataFrame:
    """Paper Table 6: black-box ARP of each attack crafted on ``surrogate`` (needed when
    several) and applied to each clean-trained target; rows "BB <target>" (most parameters
    first) then "WB <surrogate>", the white-box ARP on the surrogate itself (when run)."""
    keyed = attack_keys(df)
    one_setting(keyed)
    keyed = select_eps(keyed[keyed["train_attack"] == NO_TRAIN_ATTACK], eps)
    black = black_box(keyed)
    if black.empty:
        raise ValueError("no black-box results; run targets with transfer.surrogate=all_shared (or another model)")
    name = pick(black["surrogate"].dropna().unique(), surrogate, "surrogate", "surrogate")
    black = black[black["surrogate"].astype(str) == name]
    white = clean_white_box(keyed)
    white = white[white["base_model"].astype(str) == name]
    ran = set(zip(black["optimizer"], black["objective"]))  # the white-box row: the same attacks only
    white = white[[pair in ran for pair in zip(white["optimizer"], white["objective"])]]
    targets = model_order(black.assign(model=black["base_model"]))
    part = pd.concat([black.assign(row="BB " + black["base_model"].astype(str)),
                      white.assign(row=f"WB {name}")], ignore_index=True)
    rows = [f"BB {m}" for m in targets] + ([f"WB {name}"] if len(white) else [])
    table = attack_pivot(part, "row", rows)
    table.index.name = "model"
    if "params_paper_M" in part.columns:
        table.attrs["params_paper_M"] = row_params(part, "row", rows)
    table.attrs.update(surrogate=name, eps=float(keyed["eps"].iloc[0]))
    return table


def single_x(keyed: pd.DataFrame) -> pd.DataFrame:
    """Single-x rows of clean-trained models attacked white-box (what Table 7 uses)."""
    part = clean_white_box(keyed)
    return part[part["objective"].map(lambda key: split_objective_key(key)[1] is not None).astype(bool)]


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
    keyed = attack_keys(df)
    one_setting(keyed)
    part = single_x(select_eps(keyed, eps))
    if part.empty:
        raise ValueError("no Single-x results on clean-trained models attacked white-box")
    if "shared_blocks" not in part.columns or part["shared_blocks"].isna().any():
        raise ValueError("some Single-x results have no shared_blocks (the model's layout); re-gather the records")
    tasks = task_columns(part)
    rows = []
    for (opt, obj, model), group in part.groupby(["optimizer", "objective", "model"], sort=False):
        target = split_objective_key(obj)[1]
        per_task = {t: float(pd.to_numeric(group[f"arp_{t}"], errors="coerce").mean()) for t in tasks}
        per_task = {t: v for t, v in per_task.items() if not math.isnan(v)}
        if not per_task.get(target, 0.0) > 0:
            # The attack did not hurt its own task: the ratio would mean nothing (or flip sign).
            log.warning("transferability of %s on %s left out: its own task's ARP is %s, not positive",
                        obj, model, per_task.get(target))
            continue
        rows.append({"optimizer": opt, "attacked_task": target, "model": model,
                     "shared_blocks": int(group["shared_blocks"].iloc[0]),
                     "transferability": scores.transferability(per_task, target)})
    if not rows:
        raise ValueError("no Single-x result has a usable per-task ARP of its attacked task")
    long = pd.DataFrame(rows)
    out = long.groupby(["optimizer", "attacked_task", "shared_blocks"], sort=False).agg(
        transferability=("transferability", "mean"), n_models=("model", "count"),
        models=("model", lambda s: ", ".join(sorted(s, key=natural)))).reset_index()
    out = out.assign(_o=out["optimizer"].map(rank(out["optimizer"].unique(), OPTIMIZERS)),
                     _t=out["attacked_task"].map(rank(out["attacked_task"].unique(), TASKS)))
    out = out.sort_values(["_o", "shared_blocks", "_t"], ascending=[True, False, True], kind="stable")
    return out.drop(columns=["_o", "_t"]).reset_index(drop=True)


def transferability_trend(long: pd.DataFrame) -> pd.DataFrame:
    """Does transferability rise with sharing? Per (optimizer, attacked task) of a
    :func:`transferability_table`: Spearman's rank correlation between the number of shared
    blocks and the transferability (+1: rises throughout; NaN with fewer than 3 levels).
    Returns columns optimizer, attacked_task, spearman, levels, in the table's order."""
    rows = [{"optimizer": opt, "attacked_task": task,
             "spearman": scores.spearman(g["shared_blocks"].tolist(), g["transferability"].tolist()),
             "levels": len(g)}
            for (opt, task), g in long.groupby(["optimizer", "attacked_task"], sort=False)]
    opt_rank = rank(long["optimizer"].unique(), OPTIMIZERS)
    task_rank = rank(long["attacked_task"].unique(), TASKS)
    rows.sort(key=lambda r: (opt_rank[r["optimizer"]], task_rank[r["attacked_task"]]))
    return pd.DataFrame(rows, columns=["optimizer", "attacked_task", "spearman", "levels"])


def transferability_wide(long: pd.DataFrame) -> pd.DataFrame:
    """A :func:`transferability_table` as rows = shared blocks (most first, labelled with their
    models), columns = "<OPT> Single-<Task>"."""
    wide = long.pivot_table(index="shared_blocks", columns=["optimizer", "attacked_task"],
                            values="transferability", aggfunc="mean", sort=False)
    wide = wide.sort_index(ascending=False)
    tasks = ordered(long["attacked_task"].unique(), TASKS)
    wide = wide[[(o, t) for o in ordered(long["optimizer"].unique(), OPTIMIZERS) for t in tasks
                 if (o, t) in wide.columns]]
    names = long.groupby("shared_blocks")["models"].agg(lambda s: ", ".join(dict.fromkeys(", ".join(s).split(", "))))
    wide.index = [f"{k} ({names[k]})" for k in wide.index]
    wide.index.name = "shared blocks (models)"
    wide.columns = [f"{optimizer_label(o)} Single-{task_label(t)}" for o, t in wide.columns]
    return wide


# ---------------------------------------------------------------- the worst-case ensemble

def ensemble_rows(keyed: pd.DataFrame) -> pd.DataFrame:
    """The rows of ensemble jobs (``optimizer == "ensemble"``) on clean-trained models, white-box."""
    part = clean_white_box(keyed)
    return part[part["optimizer"].astype(str) == "ensemble"]


def ensemble_members(rows: pd.DataFrame) -> list[str]:
    """The ensemble's members named by the rows' ``member_wins_<m>`` columns, in column order."""
    prefix = "member_wins_"
    return [c[len(prefix):] for c in rows.columns if c.startswith(prefix) and rows[c].notna().any()]


def ensemble_table(keyed: pd.DataFrame, eps: float) -> pd.DataFrame:
    """The ensemble beside each member on the same images, at ``eps`` (pixel units).

    One row per ensemble job (model, with the seed when there are several). Columns:
    "ensemble" ARP, each member's ARP (ensemble and members as [value, lo, hi] in
    "<name>", "<name> lo", "<name> hi"), "strongest" member, "ensemble - strongest"
    with its paired interval, each member's images kept ("wins <name>") and the
    fraction of images where the per-image criterion and per-image ARP disagree.
    ARP in percent.
    """
    rows = select_eps(ensemble_rows(keyed), eps)
    members = ensemble_members(rows)
    several_seeds = rows["seed"].nunique() > 1
    out = []
    for _, r in rows.iterrows():
        label = f"{r['model']} seed {r['seed']}" if several_seeds else str(r["model"])
        entry = {"model": label, "ensemble": r["arp"], "ensemble lo": r.get("arp_lo"), "ensemble hi": r.get("arp_hi")}
        for m in members:
            entry.update({m: r[f"member_arp_{m}"], f"{m} lo": r[f"member_arp_{m}_lo"],
                          f"{m} hi": r[f"member_arp_{m}_hi"], f"wins {m}": r[f"member_wins_{m}"]})
        best = r["ensemble_strongest"]
        entry.update({"strongest": best, "ensemble - strongest": r[f"ensemble_minus_{best}"],
                      "ensemble - strongest lo": r[f"ensemble_minus_{best}_lo"],
                      "ensemble - strongest hi": r[f"ensemble_minus_{best}_hi"],
                      "disagree images": r["ensemble_disagree_images"]})
        out.append(entry)
    table = pd.DataFrame(out)
    order = {m: i for i, m in enumerate(model_order(rows.assign(model=rows["model"].astype(str))))}
    return table.sort_values("model", key=lambda s: s.map(lambda v: order.get(v.split(" seed ")[0], 99)),
                             kind="stable").set_index("model")


def ensemble_markdown_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`ensemble_table` with "value [lo, hi]" text cells and wins as "n/N", for markdown."""
    def ci(row, name):
        return f"{row[name]:.2f} [{row[name + ' lo']:.2f}, {row[name + ' hi']:.2f}]"

    names = ["ensemble"] + [c[len("wins "):] for c in table.columns if c.startswith("wins ")]
    out = {}
    for model, row in table.iterrows():
        total = sum(int(row[f"wins {m}"]) for m in names[1:])
        cells = {n: ci(row, n) for n in names}
        cells.update({f"wins {m}": f"{int(row[f'wins {m}'])}/{total}" for m in names[1:]})
        cells["strongest"] = row["strongest"]
        cells["ensemble - strongest"] = ci(row, "ensemble - strongest")
        cells["disagree images"] = f"{100 * row['disagree images']:.0f}%"
        out[model] = cells
    return pd.DataFrame.from_dict(out, orient="index").rename_axis("model")
