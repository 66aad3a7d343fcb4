"""A RobustBench-style robustness summary of models, from the results of an ensemble sweep.

Input: the results of ``python run.py -m attack=ensemble eps=1,2,4,8,16``, read by the
report's loader (:func:`mtl_attack.report.load.load_results`: sweep folders, record.json
files or results tables); every row but the finished ensemble jobs is ignored. Per model
(dataset, tasks, architecture, seed, adversarial training, threat) and per eps, the summary
holds the ensemble's ARP with its 95% bootstrap interval, overall and per task, the
strongest single member attack, and the ensemble minus that member (a paired interval).
ARP is in percent; eps is in pixel units out of 255.

- :func:`robustness_summary`: results rows -> one JSON-able dict per model.
- :func:`summary_markdown`, :func:`summary_figure`: the summary as markdown (through the
  report's one table renderer) and as a PNG.
- :func:`write_robustness`: robustness.md, robustness.json and robustness.png for some sweeps
  (``mtl-attack robustness PATHS... [--out DIR]``).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from .. import atomic
from .labels import fmt_eps, task_label, train_attack_label
from .load import arp_tasks, done_rows, is_missing, load_results, metric_directions
from .markdown import to_markdown
from .study_tables import ensemble_members

ENSEMBLE = "ensemble"
SWEEP_HINT = "python run.py -m attack=ensemble eps=1,2,4,8,16"
NAMES = ("robustness.md", "robustness.json", "robustness.png")
# The results columns that tell one model from another (flatten's names).
MODEL_COLUMNS = ("dataset", "tasks", "backbone", "width", "model", "layout_index", "layout", "seed",
                 "train_attack", "train_attack_eps", "threat", "surrogate")


def _value(row: pd.Series, column: str):
    """The cell, with NaN, None and absent columns all read as None."""
    value = row.get(column)
    return None if is_missing(value) else value


def _interval(row: pd.Series, column: str) -> list[float]:
    """[value, lo, hi] of a results column and its ``_lo``/``_hi`` columns; the value three
    times where no interval was recorded."""
    value = float(row[column])
    lo, hi = _value(row, f"{column}_lo"), _value(row, f"{column}_hi")
    return [value, value, value] if lo is None or hi is None else [value, float(lo), float(hi)]


def model_name(row: pd.Series) -> str:
    """E.g. "synth_nyuv2 AS resnet34 x0.25, seed 0" or "... seed 0, AT PGD DGBA eps 4";
    custom models: "<dataset> <label> (<class>), seed <s>"."""
    label = _value(row, "model")
    if _value(row, "width") is None:  # a user's network: backbone holds its class path
        arch = f"{label or 'custom'} ({_value(row, 'backbone')})"
    else:
        index = _value(row, "layout_index")
        label = label or (f"#{int(index)}" if index is not None else "")
        arch = f"{label} {_value(row, 'backbone') or '?'}".strip()
    seed = _value(row, "seed")
    name = f"{_value(row, 'dataset')} {arch}, seed {int(seed) if seed is not None else None}"
    train_attack = _value(row, "train_attack")
    if train_attack not in (None, "none"):
        name += f", AT {train_attack_label(str(train_attack))}"
        if _value(row, "train_attack_eps") is not None:
            name += f" eps {fmt_eps(float(row['train_attack_eps']))}"
    if _value(row, "threat") == "black-box":
        name += f", black-box from {_value(row, 'surrogate')}"
    return name


def _eps_row(row: pd.Series, own: pd.DataFrame) -> dict:
    """One eps of the summary from one ensemble job's results row (``own``: that row as a
    frame of its filled columns)."""
    members = ensemble_members(own)
    tasks = arp_tasks(own.columns)
    strongest = _value(row, "ensemble_strongest")
    if not members or strongest not in members:
        raise ValueError(f"the ensemble result of {_value(row, 'job_dir')} names no members; rerun that job")
    images = _value(row, "images")
    return {
        "eps": float(row["eps"]),
        "arp": {"overall": _interval(row, "arp"),
                "per_task": {t: _interval(row, f"arp_{t}") for t in tasks if _value(row, f"arp_{t}") is not None}},
        "strongest_single": {"member": strongest, "arp": _interval(row, f"member_arp_{strongest}")},
        "ensemble_minus_strongest": _interval(row, f"ensemble_minus_{strongest}"),
        "wins": {m: int(row[f"member_wins_{m}"]) for m in members},
        "images": int(images) if images is not None else None,
        "criterion": _value(row, "ensemble_criterion"),  # how images were ranked (ensemble_criterion)
    }


def robustness_summary(results: pd.DataFrame) -> list[dict]:
    """One dict per model (JSON-able), in first-seen order:
    {"model": name, "dataset", "seed", "clean": {task: {metric: value}}, "directions":
    {task: {metric: higher_is_better}}, "by_eps": [{"eps", "arp": {"overall": [v, lo, hi],
    "per_task": {task: [v, lo, hi]}}, "strongest_single": {"member", "arp": [v, lo, hi]},
    "ensemble_minus_strongest": [d, lo, hi], "wins": {member: images}, "images": N,
    "criterion": the ensemble's per-image ranking}, ...]}.

    ``results``: rows of the results table (:func:`~mtl_attack.report.load.load_results`).
    ARP in percent with its 95% bootstrap interval; eps in pixel units out of 255, rows
    sorted by eps. Only done ensemble rows count. Raises ValueError when there is none,
    or when two rows hold the same model and eps (naming both job folders).
    """
    rows = done_rows(results)
    if "optimizer" in rows.columns:
        rows = rows[rows["optimizer"].astype(str) == ENSEMBLE]
    else:
        rows = rows.iloc[0:0]
    if rows.empty:
        raise ValueError(f"no finished ensemble records found; run `{SWEEP_HINT}` first")
    models: dict[tuple, dict] = {}
    seen: dict[tuple, str] = {}
    for _, row in rows.iterrows():
        key = tuple(_value(row, c) for c in MODEL_COLUMNS)
        eps = float(row["eps"])
        job = str(_value(row, "job_dir") or _value(row, "job") or "<unknown job>")
        if (key, eps) in seen:
            raise ValueError(f"two ensemble records for {model_name(row)} at eps {fmt_eps(eps)}: "
                             f"{seen[key, eps]} and {job}; pass only one sweep per model")
        seen[key, eps] = job
        own = row.to_frame().T.dropna(axis=1, how="all")  # this job's columns only
        directions = metric_directions(own)
        entry = models.setdefault(key, {
            "model": model_name(row), "dataset": _value(row, "dataset"),
            "seed": int(row["seed"]) if _value(row, "seed") is not None else None,
            "clean": {t: {m: float(row[f"clean_{t}_{m}"]) for m in metrics} for t, metrics in directions.items()},
            "directions": directions, "by_eps": []})
        entry["by_eps"].append(_eps_row(row, own))
    for entry in models.values():
        entry["by_eps"].sort(key=lambda r: r["eps"])
    return list(models.values())


def _ci(v: list) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def _eps_table(entry: dict) -> pd.DataFrame:
    """One model's rows as text cells, indexed by eps (/255), for the report's renderer."""
    rows = entry["by_eps"]
    tasks = list(rows[0]["arp"]["per_task"]) if rows else []
    cells = {}
    for row in rows:
        per_task = row["arp"]["per_task"]
        cells[fmt_eps(row["eps"])] = {
            "overall ARP": _ci(row["arp"]["overall"]),
            **{f"{task_label(t)} ARP": _ci(per_task[t]) if t in per_task else "-" for t in tasks},
            "strongest single": row["strongest_single"]["member"],
            "its ARP": _ci(row["strongest_single"]["arp"]),
            "ensemble - strongest": _ci(row["ensemble_minus_strongest"])}
    return pd.DataFrame.from_dict(cells, orient="index").rename_axis("eps")


def summary_markdown(summary: list[dict]) -> str:
    """Per model: a title line, the clean metrics and a table, one row per eps (/255), with
    columns overall ARP [lo, hi], each task's ARP [lo, hi] (percent), the strongest single
    attack and its ARP, and ensemble minus strongest [lo, hi] (paired 95% interval)."""
    out = ["# Robustness summary", "",
           "ARP (%) under the per-image ensemble of attacks, with 95% bootstrap intervals over test "
           "images; eps in pixel units out of 255. Higher ARP = less robust.", ""]
    for entry in summary:
        images = entry["by_eps"][0].get("images") if entry["by_eps"] else None
        out += [f"## {entry['model']}", ""]
        clean = "; ".join(f"{task_label(t)} " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
                          for t, metrics in entry["clean"].items())
        criteria = sorted({str(r.get("criterion")) for r in entry["by_eps"] if r.get("criterion")})
        out += [f"Clean: {clean or '-'}" + (f" ({images} test images)" if images else "")
                + (f"; images ranked by ensemble_criterion={'/'.join(criteria)}" if criteria else ""), ""]
        out += [to_markdown(_eps_table(entry), params={})]
    return "\n".join(out)


def summary_figure(summary: list[dict], path: str | os.PathLike) -> Path:
    """ARP (%) vs eps (/255, log2 axis): one panel per model, a line for overall ARP and one
    per task, each with its 95% interval as a shaded band; a PNG written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2 * len(summary) + 1.6, 3.6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(summary), squeeze=False, sharey=True)[0]
    handles: dict = {}
    for ax, entry in zip(axes, summary):
        rows = entry["by_eps"]
        eps = [r["eps"] for r in rows]
        tasks = list(rows[0]["arp"]["per_task"]) if rows else []
        lines = [("overall", [r["arp"]["overall"] for r in rows])] + \
                [(task_label(t), [r["arp"]["per_task"].get(t, [float("nan")] * 3) for r in rows]) for t in tasks]
        for i, (label, values) in enumerate(lines):
            color = "black" if i == 0 else f"C{(i - 1) % 10}"
            (h,) = ax.plot(eps, [v[0] for v in values], marker="o", color=color, lw=2 if i == 0 else 1.2)
            ax.fill_between(eps, [v[1] for v in values], [v[2] for v in values], color=color, alpha=0.15, lw=0)
            handles.setdefault(label, h)
        ax.set_xscale("log", base=2)
        ax.set_xticks(eps, [fmt_eps(e) for e in eps])
        ax.minorticks_off()
        ax.set_title(entry["model"], fontsize=9)
        ax.set_xlabel("eps (/255)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("ARP (%)")
    fig.legend(list(handles.values()), list(handles), loc="outside right center", frameon=False)
    return atomic.write_figure(Path(path), fig, bbox_inches="tight")


def write_robustness(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Summarise the results under ``paths`` (sweep folders, record.json files or results
    tables, read by :func:`~mtl_attack.report.load.load_results`) into
    robustness.md, robustness.json (the :func:`robustness_summary` list) and robustness.png in
    ``out_dir`` (default: <first path>/robustness); returns those paths. Pass two models'
    sweeps to compare them: the files then hold both."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("give at least one sweep folder, record.json file or results table")
    summary = robustness_summary(load_results(paths))
    first = paths[0] if paths[0].is_dir() else paths[0].parent
    out = Path(out_dir) if out_dir is not None else first / "robustness"
    md, js, png = (out / name for name in NAMES)
    atomic.write_text(md, summary_markdown(summary))
    atomic.write_json(js, summary)
    summary_figure(summary, png)
    return [md, js, png]
