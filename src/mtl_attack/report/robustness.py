"""A RobustBench-style robustness summary of models, from the records of an ensemble sweep.

Input: the record.json files of ``python run.py -m attack=ensemble eps=1,2,4,8,16``; every
other record is ignored. Per model (dataset, architecture, seed, adversarial training) and
per eps, the summary holds the ensemble's ARP with its 95% bootstrap interval, overall and
per task, the strongest single member attack, and the ensemble minus that member (a paired
interval). ARP is in percent; eps is in pixel units out of 255.

- :func:`robustness_summary`: records -> one JSON-able dict per model.
- :func:`summary_markdown`, :func:`summary_figure`: the summary as markdown and as a PNG.
- :func:`write_robustness`: robustness.md, robustness.json and robustness.png for some sweeps
  (``mtl-attack robustness PATHS... [--out DIR]``).
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Iterable

from .. import atomic
from ..records import DamagedRecord, find_records, read_record
from .labels import fmt_eps, task_label, train_attack_label

log = logging.getLogger(__name__)

ENSEMBLE = "ensemble"
SWEEP_HINT = "python run.py -m attack=ensemble eps=1,2,4,8,16"
NAMES = ("robustness.md", "robustness.json", "robustness.png")


def _is_ensemble(record: dict) -> bool:
    att = record.get("attack") or {}
    return record.get("status") == "done" and ENSEMBLE in (att.get("name"), att.get("optimizer"))


def _eps(record: dict) -> float:
    eps = (record.get("attack") or {}).get("eps")
    return float(eps if eps is not None else (record.get("config") or {}).get("eps"))


def _job_dir(record: dict) -> str:
    job = record.get("job") or {}
    return str(job.get("dir") or job.get("name") or "<unknown job>")


def _dataset(record: dict) -> str | None:
    return ((record.get("config") or {}).get("dataset") or {}).get("name")


def _seed(record: dict):
    return record.get("seed", (record.get("config") or {}).get("seed"))


def model_key(record: dict) -> tuple:
    """What tells one model from another: dataset, architecture (custom class or backbone,
    width, layout), seed, adversarial training and, for black-box records, the surrogate."""
    m = record.get("model") or {}
    arch = (("custom", m.get("class"), m.get("label")) if m.get("kind") == "custom" else
            ("tree", m.get("label"), m.get("backbone"), m.get("width"), m.get("layout_index"), m.get("layout")))
    threat = record.get("threat") or "white-box"
    surrogate = (record.get("surrogate") or {}).get("label") if threat == "black-box" else None
    return (_dataset(record), arch, _seed(record), m.get("train_attack"), m.get("train_attack_eps"),
            threat, surrogate)


def model_name(record: dict) -> str:
    """E.g. "synth_nyuv2 AS resnet34 x0.25, seed 0" or "... seed 0, AT PGD DGBA eps 4";
    custom models: "<dataset> <label> (<class>), seed <s>"."""
    m = record.get("model") or {}
    if m.get("kind") == "custom":
        arch = f"{m.get('label') or 'custom'} ({m.get('class')})"
    else:
        width = m.get("width")
        backbone = m.get("backbone") or "?"
        if width is not None and float(width) != 1.0:
            backbone += f" x{float(width):g}"
        label = m.get("label") or (f"#{m['layout_index']}" if m.get("layout_index") is not None else "")
        arch = f"{label} {backbone}".strip()
    name = f"{_dataset(record)} {arch}, seed {_seed(record)}"
    if m.get("train_attack") not in (None, "none"):
        name += f", AT {train_attack_label(m['train_attack'])}"
        if m.get("train_attack_eps") is not None:
            name += f" eps {fmt_eps(float(m['train_attack_eps']))}"
    if record.get("threat") == "black-box":
        name += f", black-box from {(record.get('surrogate') or {}).get('label')}"
    return name


def _row(record: dict) -> dict:
    """One eps of the summary from one ensemble record."""
    ens = record.get("ensemble")
    if not ens:
        raise ValueError(f"the ensemble record of {_job_dir(record)} has no 'ensemble' entry; rerun that job")
    members = ens["members"]
    # Strongest single attack: highest overall ARP, first of equals in member order.
    strongest = max(members, key=lambda n: ens["arp"][n]["overall"][0])
    arp = (record.get("stats") or {}).get("arp")
    if arp is None:  # no intervals recorded: the point value three times
        plain = record["arp"]
        arp = {"overall": [plain["overall"]] * 3, "per_task": {t: [v] * 3 for t, v in plain["per_task"].items()}}
    return {
        "eps": _eps(record),
        "arp": {"overall": list(arp["overall"]), "per_task": {t: list(v) for t, v in arp["per_task"].items()}},
        "strongest_single": {"member": strongest, "arp": list(ens["arp"][strongest]["overall"])},
        "ensemble_minus_strongest": list(ens["difference"][strongest]),
        "wins": dict(ens["wins"]),
        "images": (record.get("stats") or {}).get("images"),
        "criterion": ens.get("criterion"),  # how images were ranked (ensemble_criterion)
    }


def robustness_summary(records: list[dict]) -> list[dict]:
    """One dict per model (JSON-able), in first-seen order:
    {"model": name, "dataset", "seed", "clean": {task: {metric: value}}, "directions":
    {task: {metric: higher_is_better}}, "by_eps": [{"eps", "arp": {"overall": [v, lo, hi],
    "per_task": {task: [v, lo, hi]}}, "strongest_single": {"member", "arp": [v, lo, hi]},
    "ensemble_minus_strongest": [d, lo, hi], "wins": {member: images}, "images": N,
    "criterion": the ensemble's per-image ranking}, ...]}.

    ARP in percent with its 95% bootstrap interval; eps in pixel units out of 255, rows
    sorted by eps. Only done ensemble records count. Raises ValueError when there is none,
    or when two records hold the same model and eps (naming both job folders).
    """
    models: dict[tuple, dict] = {}
    seen: dict[tuple, dict] = {}
    for record in records:
        if not _is_ensemble(record):
            continue
        key = model_key(record)
        eps = _eps(record)
        if (key, eps) in seen:
            raise ValueError(f"two ensemble records for {model_name(record)} at eps {fmt_eps(eps)}: "
                             f"{_job_dir(seen[key, eps])} and {_job_dir(record)}; pass only one sweep per model")
        seen[key, eps] = record
        entry = models.setdefault(key, {
            "model": model_name(record), "dataset": _dataset(record), "seed": _seed(record),
            "clean": (record.get("metrics") or {}).get("clean") or {},
            "directions": record.get("directions") or {}, "by_eps": []})
        entry["by_eps"].append(_row(record))
    if not models:
        raise ValueError(f"no finished ensemble records found; run `{SWEEP_HINT}` first")
    for entry in models.values():
        entry["by_eps"].sort(key=lambda r: r["eps"])
    return list(models.values())


def _ci(v: list) -> str:
    return f"{v[0]:.2f} [{v[1]:.2f}, {v[2]:.2f}]"


def summary_markdown(summary: list[dict]) -> str:
    """Per model: a title line, the clean metrics and a table, one row per eps (/255), with
    columns overall ARP [lo, hi], each task's ARP [lo, hi] (percent), the strongest single
    attack and its ARP, and ensemble minus strongest [lo, hi] (paired 95% interval)."""
    out = ["# Robustness summary", "",
           "ARP (%) under the per-image ensemble of attacks, with 95% bootstrap intervals over test "
           "images; eps in pixel units out of 255. Higher ARP = less robust.", ""]
    for entry in summary:
        tasks = list(entry["by_eps"][0]["arp"]["per_task"]) if entry["by_eps"] else []
        images = entry["by_eps"][0].get("images") if entry["by_eps"] else None
        out += [f"## {entry['model']}", ""]
        clean = "; ".join(f"{task_label(t)} " + ", ".join(f"{k} {v:.2f}" for k, v in metrics.items())
                          for t, metrics in entry["clean"].items())
        criteria = sorted({str(r.get("criterion")) for r in entry["by_eps"] if r.get("criterion")})
        out += [f"Clean: {clean or '-'}" + (f" ({images} test images)" if images else "")
                + (f"; images ranked by ensemble_criterion={'/'.join(criteria)}" if criteria else ""), ""]
        head = ["eps", "overall ARP"] + [f"{task_label(t)} ARP" for t in tasks] + \
               ["strongest single", "its ARP", "ensemble - strongest"]
        out += ["| " + " | ".join(head) + " |", "|---:|" + "---:|" * (len(tasks) + 1) + "---|---:|---:|"]
        for row in entry["by_eps"]:
            per_task = row["arp"]["per_task"]
            cells = [fmt_eps(row["eps"]), _ci(row["arp"]["overall"])] + \
                    [_ci(per_task[t]) if t in per_task else "-" for t in tasks] + \
                    [row["strongest_single"]["member"], _ci(row["strongest_single"]["arp"]),
                     _ci(row["ensemble_minus_strongest"])]
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
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


def _read(paths: Iterable[Path]) -> list[dict]:
    files = find_records(paths)
    if not files:
        raise ValueError(f"no record.json under {', '.join(map(str, paths))}; run `{SWEEP_HINT}` first")
    records = []
    for p in files:
        try:
            record = read_record(p)
        except DamagedRecord as err:
            log.warning("left out of the robustness summary: %s", err)
            continue
        record.setdefault("job", {}).setdefault("dir", str(p.parent))
        records.append(record)
    return records


def write_robustness(paths: Iterable[str | os.PathLike], out_dir: str | os.PathLike | None = None) -> list[Path]:
    """Summarise the records under ``paths`` (sweep folders or record.json files) into
    robustness.md, robustness.json (the :func:`robustness_summary` list) and robustness.png in
    ``out_dir`` (default: <first path>/robustness); returns those paths. Pass two models'
    sweeps to compare them: the files then hold both."""
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("give at least one sweep folder or record.json file")
    summary = robustness_summary(_read(paths))
    first = paths[0] if paths[0].is_dir() else paths[0].parent
    out = Path(out_dir) if out_dir is not None else first / "robustness"
    md, js, png = (out / name for name in NAMES)
    atomic.write_text(md, summary_markdown(summary))
    atomic.write_json(js, summary)
    summary_figure(summary, png)
    return [md, js, png]
