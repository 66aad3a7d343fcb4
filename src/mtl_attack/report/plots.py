"""The report's figures (PNG, written atomically): paper Figures 1-5 and study bars.

Figures are bare matplotlib Figures on the Agg canvas: no pyplot state, no display.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd

from .. import atomic
from ..attacks.objectives import SingleTask
from .labels import (OBJECTIVES, OPTIMIZERS, TASKS, fmt_eps, objective_key, objective_label, optimizer_label, ordered,
                     task_label)
from .study_tables import transferability_table
from .tables import arp_vs_eps, per_task_bars


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike, title: str | None) -> Path:
    if title:
        fig.suptitle(title)
    return atomic.write_figure(Path(path), fig, bbox_inches="tight")


def _legend(fig, handles: dict, order: list[str]) -> None:
    """One legend right of the panels, entries in paper order."""
    labels = [lab for lab in order if lab in handles]
    fig.legend([handles[lab] for lab in labels], labels, loc="outside right center", frameon=False)


def plot_arp_vs_eps(df: pd.DataFrame, path: str | os.PathLike, title: str | None = None,
                    intervals: pd.DataFrame | None = None) -> Path:
    """Figures 2/3: overall ARP vs eps, one panel per optimizer, one line per objective; PNG at ``path``.

    x: eps (pixel units) on a log2 axis with ticks at the eps present (1, 2, 4, 8, 16).
    intervals: columns optimizer, objective, eps, lo, hi (significance.eps_intervals): drawn as
    shaded bands around the lines where given.
    """
    data = arp_vs_eps(df)
    if intervals is not None and len(intervals):
        data = data.merge(intervals, on=["optimizer", "objective", "eps"], how="left")
    opts = ordered(data["optimizer"].unique(), OPTIMIZERS)
    objs = ordered(data["objective"].unique(), OBJECTIVES)
    fig = _figure(3.6 * len(opts) + 1.4, 3.4)
    axes = fig.subplots(1, len(opts), squeeze=False, sharex=True, sharey=True)[0]
    epss = sorted(data["eps"].unique())
    for ax, opt in zip(axes, opts):
        part = data[data["optimizer"] == opt]
        for i, obj in enumerate(objs):
            line = part[part["objective"] == obj].sort_values("eps")
            if line.empty:
                continue
            ax.plot(line["eps"], line["arp"], marker="o", color=f"C{i % 10}", label=objective_label(obj))
            if "lo" in line.columns and line["lo"].notna().any():
                ax.fill_between(line["eps"], line["lo"], line["hi"], color=f"C{i % 10}", alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_xticks(epss, [fmt_eps(e) for e in epss])
        ax.minorticks_off()
        ax.set_title(optimizer_label(opt))
        ax.set_xlabel("eps (/255)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("overall ARP (%)")
    handles = {}
    for ax in axes:  # one legend for all panels, each objective once
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    _legend(fig, handles, [objective_label(o) for o in objs])
    return _save(fig, path, title)


def plot_per_task_bars(df: pd.DataFrame, path: str | os.PathLike, eps: float | None = None,
                       objectives: Sequence[str] | None = None, optimizers: Sequence[str] | None = None,
                       title: str | None = None) -> Path:
    """Figures 1/4: per-task ARP as grouped bars (x = task, one bar per objective), one panel per optimizer."""
    data = per_task_bars(df, eps, objectives=objectives, optimizers=optimizers)
    return _save(bar_figure(data, [task_label(t) for t in data.columns], "task ARP (%)"), path, title)


def plot_study_bars(table: pd.DataFrame, path: str | os.PathLike, title: str | None = None) -> Path:
    """A study table (:func:`adversarial_arp_table`, :func:`transfer_table`: rows x (optimizer,
    objective) ARP) as grouped bars: x = the table's rows, one bar per objective, one panel per optimizer."""
    return _save(bar_figure(table.T, [str(r) for r in table.index], "ARP (%)"), path, title)


def bar_figure(data: pd.DataFrame, xlabels: list[str], ylabel: str):
    """Grouped bars of data (rows = (optimizer, objective), columns = the x groups): one panel per
    optimizer, one bar colour per objective (the same in every panel), NaN cells drawn as no bar."""
    opts = list(dict.fromkeys(data.index.get_level_values("optimizer")))
    objs = ordered(data.index.get_level_values("objective").unique(), OBJECTIVES)
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
                          label=objective_label(obj))
            handles.setdefault(objective_label(obj), bars)
        tilt = max(map(len, xlabels)) > 6
        ax.set_xticks(x, xlabels, rotation=30 if tilt else 0, ha="right" if tilt else "center")
        ax.set_title(optimizer_label(opt))
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3, axis="y")
    axes[0].set_ylabel(ylabel)
    _legend(fig, handles, [objective_label(o) for o in objs])
    return fig


def plot_transferability(df: pd.DataFrame, path: str | os.PathLike, eps: float | None = None,
                         title: str | None = None) -> Path:
    """Figure 5: transferability of Single-x (y) against the number of shared blocks (x, 0 = no
    sharing .. 5 = all shared), one line per attacked task, one panel per optimizer; PNG at ``path``."""
    data = transferability_table(df, eps)
    opts = list(dict.fromkeys(data["optimizer"]))
    tasks = ordered(data["attacked_task"].unique(), TASKS)
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
            label = objective_label(objective_key(SingleTask.name, task))
            (h,) = ax.plot(line["shared_blocks"], line["transferability"], marker="o",
                           color=f"C{TASKS.index(task) if task in TASKS else 9}", label=label)
            handles.setdefault(label, h)
        ax.set_xticks(blocks, [str(int(b)) for b in blocks])
        ax.set_xlabel("shared blocks (0 = IND, 5 = AS)")
        ax.set_title(optimizer_label(opt))
        ax.axhline(0, color="black", lw=0.5)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("transferability")
    _legend(fig, handles, [objective_label(objective_key(SingleTask.name, t)) for t in tasks])
    return _save(fig, path, title)
