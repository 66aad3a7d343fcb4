"""The report: every study the results hold, declared once, written per dataset/backbone setting.

A :class:`Study` says which cases the rows of one setting hold (its ``cases``) and what
one case writes (its ``section``: files under the output folder, markdown for
``report.md``). :data:`STUDIES` lists them in report order; :func:`write_report` runs
each over each setting, and a study whose rows are absent has no cases, so it is skipped.
"""
from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import pandas as pd

from .. import atomic, records
from ..attacks.objectives import DGBA, WeightedTotal
from .labels import (NO_TRAIN_ATTACK, attack_label, fmt_eps, objective_label, optimizer_label, slug,
                     task_label, train_attack_label)
from .load import attack_keys, done_rows, load_results, status_note
from .markdown import to_markdown
from .significance import (accuracy_drop_intervals, cell_intervals, eps_intervals, first_places, loss_gains,
                           transferability_intervals)
from .plots import plot_arp_vs_eps, plot_per_task_bars, plot_study_bars, plot_transferability
from .study_tables import (adversarial_accuracy_table, adversarial_arp_table, black_box, ensemble_markdown_table,
                           ensemble_rows, ensemble_table, single_x, trained_models,
                           transfer_table, transferability_table, transferability_trend, transferability_wide)
from .tables import (NO_PER_TASK, arp_table, arp_vs_eps, at_eps, clean_white_box,
                     first_place_counts, per_task_bars, select_eps, task_columns, weighted_grid_table)

log = logging.getLogger(__name__)


@dataclass
class Setting:
    """The rows of one dataset/backbone setting (keyed, :func:`attack_keys`) and where their files go."""

    rows: pd.DataFrame
    dataset: str
    backbone: str
    eps: float | None  # the eps asked for; None = every eps
    out: Path
    prefix: str  # "<dataset>_<backbone>_" when the report holds several settings, else ""
    written: list[Path] = field(default_factory=list)

    def eps_levels(self, rows: pd.DataFrame | None = None) -> list[float]:
        """The eps of ``rows`` (default: all the setting's rows) that the report covers, ascending."""
        rows = self.rows if rows is None else rows
        return [e for e in sorted(rows["eps"].unique()) if self.eps is None or math.isclose(e, float(self.eps))]

    def text(self, stem: str, text: str) -> None:
        self.written.append(atomic.write_text(self.out / f"{stem}.md", text))

    def csv(self, stem: str, table: pd.DataFrame, index: bool = True) -> None:
        self.written.append(atomic.write_csv(self.out / f"{stem}.csv", table, index=index))

    def figure(self, plot: Callable[..., Path], data, stem: str, **kwargs) -> None:
        self.written.append(plot(data, self.out / f"{stem}.png", **kwargs))


@dataclass(frozen=True)
class Study:
    """One study: ``cases(setting)`` lists what the rows hold (e.g. one case per eps);
    ``section(setting, case)`` writes one case's files and returns its report.md lines."""

    name: str
    cases: Callable[[Setting], list]
    section: Callable[[Setting, Any], list[str]]


def _firsts(marks: pd.DataFrame) -> str:
    """First-place counts as text, e.g. "DGBA 3, Total 1"."""
    return ", ".join(f"{objective_label(o)} {n}" for o, n in first_place_counts(marks).items() if n)


def _flat(table: pd.DataFrame) -> pd.DataFrame:
    """An attack table with "<optimizer>/<objective>" column names, for CSV."""
    flat = table.copy()
    flat.columns = [f"{o}/{b}" for o, b in table.columns]
    return flat


# The rule every attack table applies (significance.first_places), said once.
MARKS = ("bold: first in its row within its optimizer, ahead of the runner-up beyond the paired 95% bootstrap "
         "interval of their difference over test images and seeds; italics: best and runner-up the interval "
         "cannot separate (a tie, no first place); a trailing ?: the highest, but without per-image statistics "
         "to check it (no first place); an optimizer with one attack in the row has no contest (no mark). "
         "Only bold cells count as first places")


def _study_table(s: Setting, table: pd.DataFrame, stem: str, title: str,
                 rows: pd.DataFrame) -> tuple[str, str, str]:
    """Write a Table 3/6-shaped table as <stem>.md, .csv and .png (bars); return its markdown with
    the picture, the first-place counts as text and the legend of its marks. ``rows``: the jobs
    behind the table, their ``row`` column naming the table row each belongs to."""
    marks = first_places(rows, table, row_col="row")
    s.text(stem, f"# {title}\n\n" + to_markdown(table, marks))
    s.csv(stem, _flat(table))
    s.figure(plot_study_bars, table, stem, title=title)
    body = to_markdown(table, marks) + f"\n![{title}]({stem}.png) ([csv]({stem}.csv))\n"
    return body, _firsts(marks) or "none", MARKS


# ---------------------------------------------------------------- adversarial training (Tables 17/18, 3/19)

def _adversarial_cases(s: Setting) -> list[tuple[str, str]]:
    """(model, file prefix) per adversarially trained base model."""
    models = trained_models(s.rows)
    return [(m, f"{s.prefix}{slug(m)}_" if len(models) > 1 else s.prefix) for m in models]


def _adversarial_section(s: Setting, case: tuple[str, str]) -> list[str]:
    model, tag = case
    md = [f"### Adversarial training of {model} (paper Tables 17/18 and 3/19)", ""]
    acc = adversarial_accuracy_table(s.rows, model=model)
    s.text(f"{tag}table_adv_accuracy", f"# Clean accuracy after adversarial training, {model}\n\n" + to_markdown(acc))
    s.csv(f"{tag}table_adv_accuracy", acc)
    md += ["Clean metrics of each adversarially trained model; the ARP columns are the relative "
           "accuracy drop against the clean-trained model (w/o AT), in %.", "", to_markdown(acc)]
    mine = s.rows[(s.rows["threat"] == "white-box") & (s.rows["base_model"] == model)]
    drops = accuracy_drop_intervals(mine)
    if len(drops):
        s.csv(f"{tag}table_adv_accuracy_intervals", drops.set_index(["train_attack", "task"]))
        overall = drops[drops["task"] == "overall"]
        cells = [f"{train_attack_label(r.train_attack)} {r.drop:.2f} [{r.lo:.2f}, {r.hi:.2f}]"
                 for r in overall.itertuples()]
        md += ["Accuracy drop (overall ARP) with its 95% bootstrap interval over the test images (and "
               "seeds), paired with w/o AT on the same images: " + "; ".join(cells) + f" ([per task]"
               f"({tag}table_adv_accuracy_intervals.csv)).", ""]
    for e in s.eps_levels(mine[mine["train_attack"] != NO_TRAIN_ATTACK]):
        k = fmt_eps(e)
        here = at_eps(mine, e)
        body, firsts, legend = _study_table(s, adversarial_arp_table(s.rows, eps=e, model=model),
                                            f"{tag}table_adv_arp_eps{k}",
                                            f"ARP on adversarially trained {model}, eps {k}",
                                            here.assign(row=here["train_attack"].map(train_attack_label)))
        md += [f"ARP of each attack (columns) at eps {k} on {model} trained with each attack (rows); "
               f"{legend}. First places: {firsts}.", "", body]
    return md


# ---------------------------------------------------------------- black-box transfer (Table 6)

def _transfer_cases(s: Setting) -> list[tuple[str, float]]:
    """(surrogate, eps) per surrogate and eps with black-box results."""
    black = black_box(s.rows)
    return [(name, e) for name in black["surrogate"].dropna().astype(str).unique()
            for e in s.eps_levels(black[black["surrogate"].astype(str) == name])]


def _transfer_section(s: Setting, case: tuple[str, float]) -> list[str]:
    surrogate, e = case
    k = fmt_eps(e)
    black = at_eps(black_box(s.rows), e)
    black = black[black["surrogate"].astype(str) == surrogate]
    white = at_eps(clean_white_box(s.rows), e)
    white = white[white["base_model"].astype(str) == surrogate]
    rows = pd.concat([black.assign(row="BB " + black["base_model"].astype(str)),
                      white.assign(row=f"WB {surrogate}")], ignore_index=True)
    body, firsts, legend = _study_table(s, transfer_table(s.rows, eps=e, surrogate=surrogate),
                                        f"{s.prefix}table_transfer_{slug(surrogate)}_eps{k}",
                                        f"Black-box transfer from {surrogate}, eps {k}", rows)
    return [f"### Black-box transfer from surrogate {surrogate}, eps {k} (paper Table 6)", "",
            "BB: adversarial examples crafted on the surrogate, applied to the target; "
            f"WB: white-box on {surrogate} itself. {legend[0].upper() + legend[1:]}. "
            f"First places: {firsts}.", "", body]


# ---------------------------------------------------------------- transferability (Table 7, Figure 5)

def _transferability_cases(s: Setting) -> list[tuple[float, str]]:
    """(eps, file stem) per eps whose Single-x results span two sharing levels (a trend needs two)."""
    single = single_x(s.rows)
    if "shared_blocks" not in single.columns:
        return []
    levels = [e for e in s.eps_levels(single) if at_eps(single, e)["shared_blocks"].dropna().nunique() >= 2]
    return [(e, f"{s.prefix}transferability_eps{fmt_eps(e)}" if len(levels) > 1 else f"{s.prefix}transferability")
            for e in levels]


def _transferability_section(s: Setting, case: tuple[float, str]) -> list[str]:
    e, stem = case
    here = at_eps(single_x(s.rows), e)
    k = fmt_eps(e)
    long = transferability_table(here, eps=e)
    s.csv(stem, long, index=False)
    s.text(stem, f"# Transferability of Single-x, eps {k}\n\n" + to_markdown(transferability_wide(long)))
    s.figure(plot_transferability, here, stem, eps=e, title=f"Transferability of Single-x vs sharing, eps {k}")
    rho = ", ".join(f"{optimizer_label(r.optimizer)} Single-{task_label(r.attacked_task)} "
                    + ("-" if math.isnan(r.spearman) else f"{r.spearman:.2f}")
                    for r in transferability_trend(long).itertuples())
    md = [f"### Transferability of Single-x, eps {k} (paper Table 7, Figure 5)", "",
          "mean ARP of the other tasks / ARP of the attacked task, by the number of leading "
          "shared blocks (5 = AS, 0 = no sharing); \"-\": no result, or the attack did not hurt "
          "its own task (ARP of the attacked task <= 0).", "", to_markdown(transferability_wide(long)),
          "Rank correlation of transferability with the number of shared blocks (Spearman; "
          f"+1: rises with sharing throughout, -1: falls): {rho}.", "",
          f"![transferability]({stem}.png) ([csv]({stem}.csv))", ""]
    if not _has_stats(here):
        return md
    per_model, trend = transferability_intervals(here)
    s.csv(f"{stem}_intervals", per_model, index=False)
    s.csv(f"{stem}_trend", trend, index=False)
    said = "; ".join(f"{optimizer_label(r.optimizer)} Single-{task_label(r.attacked_task)} {r.most} - {r.fewest} "
                     + (f"{r.difference:+.2f} [{r.lo:+.2f}, {r.hi:+.2f}]" if not math.isnan(r.lo) else
                        f"{r.difference:+.2f} (no interval)") + f" {r.verdict}"
                     for r in trend.itertuples())
    return md + ["Transferability of the most shared minus the least shared model, paired over the same test "
                 f"images and seeds (95% bootstrap): {said or '-'}. Per-model intervals: "
                 f"[{stem}_intervals.csv]({stem}_intervals.csv).", ""]


# ---------------------------------------------------------------- attacks on clean models (Tables 1/2, 16; Figures 1-4)

def _attack_cases(s: Setting) -> list[None]:
    return [None]  # one section per setting; it says itself when there is nothing to show


def _attack_section(s: Setting, case: None) -> list[str]:
    part = clean_white_box(s.rows)
    if part.empty:
        return ["No clean-trained white-box results: the ARP tables of Tables 1/2 are skipped.", ""]
    md = ["### Clean-trained models, white-box", ""] if len(part) < len(s.rows) else []
    every = sorted(part["eps"].unique())
    chosen = s.eps_levels(part)
    if not chosen:
        return md + [f"No results at eps {fmt_eps(float(s.eps))} (this setting has eps "
                     f"{', '.join(map(fmt_eps, every))}).", ""]
    for e in chosen:
        md += _attack_eps_section(s, part, e)
    if s.eps is None and len(every) > 1:
        stem = f"{s.prefix}arp_vs_eps"
        bands = eps_intervals(part) if _has_stats(part) else None
        curve = arp_vs_eps(part)
        if bands is not None and len(bands):
            curve = curve.merge(bands, on=["optimizer", "objective", "eps"], how="left")
        s.csv(stem, curve, index=False)
        s.figure(plot_arp_vs_eps, part, stem, title=f"{s.dataset} / {s.backbone}", intervals=bands)
        md += ["### Overall ARP vs eps", "", f"![overall ARP vs eps]({stem}.png) ([csv]({stem}.csv))"
               + ("; shaded: the 95% interval over test images and seeds of each one-model point" if bands is not None
                  and len(bands) else ""), ""]
    return md


def _has_stats(rows: pd.DataFrame) -> bool:
    return "stats_file" in rows.columns and rows["stats_file"].notna().any()


def _attack_eps_section(s: Setting, part: pd.DataFrame, e: float) -> list[str]:
    k = fmt_eps(e)
    table = arp_table(part, eps=e)
    cases = int(table.notna().T.groupby(level="optimizer").any().sum().sum())
    stem = f"{s.prefix}table_arp_eps{k}"
    here = at_eps(part, e)
    checked = _has_stats(here)
    marks = first_places(here, table)
    s.text(stem, f"# ARP, {s.dataset} / {s.backbone}, eps {k}\n\n" + to_markdown(table, marks))
    flat = _flat(table)
    if table.attrs.get("params_paper_M"):
        flat.insert(0, "params_paper_M", [table.attrs["params_paper_M"].get(m) for m in flat.index])
    s.csv(stem, flat)
    md = [f"### eps {k}", "", f"Table: [{stem}.md]({stem}.md) ([csv]({stem}.csv))", ""]
    ties = int((marks == "tie").T.groupby(level="optimizer").any().sum().sum())
    alone = int((marks == "alone").to_numpy().sum())
    md += ["First places out of " f"{cases} model x optimizer cases, counted only where the best ARP is ahead "
           "of the runner-up beyond the paired 95% bootstrap interval of their difference (over test images "
           f"and seeds): {_firsts(marks) or 'none'}. Ties (best and runner-up not separable, in italics, no "
           f"first place): {ties}"
           + (f"; unchecked (no per-image statistics, marked ?, no first place): {marks.attrs['unchecked']}"
              if marks.attrs.get("unchecked") else "")
           + (f"; without a contest (one attack in the group, no first place): {alone}" if alone else "")
           + (f". ARP intervals per cell: [{stem}_intervals.csv]({stem}_intervals.csv)." if checked else "."), ""]
    if checked:
        s.csv(f"{stem}_intervals", cell_intervals(here, table).rename(columns={"row": "model"}), index=False)
    if not task_columns(at_eps(part, e)):
        md += [f"Per-task bars skipped: {NO_PER_TASK}.", ""]
    else:
        bstem = f"{s.prefix}per_task_arp_eps{k}"
        s.csv(bstem, per_task_bars(part, e))
        s.figure(plot_per_task_bars, part, bstem, eps=e, title=f"{s.dataset} / {s.backbone}, eps {k}")
        md += [f"![per-task ARP, eps {k}]({bstem}.png) ([csv]({bstem}.csv))", ""]
    weighted = weighted_grid_table(part, e)
    if weighted is None:
        md += ["WeightedTotal table (paper Table 16) skipped: the results carry no weights.", ""]
    else:
        wstem = f"{s.prefix}table_weighted_eps{k}"
        names = {"weights": "weights", **{c.name: f"{c.label} ARP" for c in (WeightedTotal, DGBA)}}
        s.text(wstem, to_markdown(weighted, headers=[f"{optimizer_label(o)} {names[w]}" for o, w in weighted.columns],
                                  params={}))
        md += [f"WeightedTotal vs DGBA: [{wstem}.md]({wstem}.md)", ""]
    return md


# ---------------------------------------------------------------- the worst-case ensemble

def _ensemble_cases(s: Setting) -> list[float]:
    return s.eps_levels(ensemble_rows(s.rows))


_CRITERION_WORDS = {"arp": "ARP on that image alone", "relative": "summed relative loss increase",
                    "absolute": "summed attacked loss"}


def _criterion_words(rows: pd.DataFrame) -> str:
    """The ensemble rows' ranking rule(s) in words; tables from before the column ranked by relative."""
    col = rows["ensemble_criterion"] if "ensemble_criterion" in rows else pd.Series(dtype=object)
    found = sorted(set(col.dropna().astype(str))) or ["relative"]
    return " or ".join(_CRITERION_WORDS.get(c, c) for c in found) + f" (ensemble_criterion={'/'.join(found)})"


def _ensemble_section(s: Setting, e: float) -> list[str]:
    k = fmt_eps(e)
    table = ensemble_table(s.rows, e)
    stem = f"{s.prefix}ensemble_eps{k}"
    s.csv(stem, table)
    s.text(stem, f"# Worst-case ensemble, {s.dataset} / {s.backbone}, eps {k}\n\n"
           + to_markdown(ensemble_markdown_table(table), params={}))
    below = table[table["ensemble - strongest hi"] < 0]
    return [f"### Worst-case ensemble, eps {k}", "",
            f"Each image keeps the member's adversarial image with the highest {_criterion_words(s.rows)}; "
            "every member is scored on the same images (ARP [95% bootstrap interval]); ensemble - strongest: "
            "the paired interval against the member with the highest ARP; disagree images: where the member "
            "kept is not the one with the highest ARP on that image alone.", "",
            f"Table: [{stem}.md]({stem}.md) ([csv]({stem}.csv)). Models where the ensemble falls below its "
            f"strongest member beyond noise: {', '.join(map(str, below.index)) or 'none'}.", ""]


# ---------------------------------------------------------------- harder attack losses

def _loss_cases(s: Setting) -> list[float]:
    part = clean_white_box(s.rows)
    return s.eps_levels(part[part["attack_losses"] != ""])


def _gain_cell(row: pd.Series) -> str:
    if pd.isna(row["lo"]):
        return f"{row['difference']:+.2f} (no interval)"
    return f"{row['difference']:+.2f} [{row['lo']:+.2f}, {row['hi']:+.2f}] {row['verdict']}"


def _loss_section(s: Setting, e: float) -> list[str]:
    k = fmt_eps(e)
    gains = loss_gains(at_eps(clean_white_box(s.rows), e))
    if gains.empty:
        return [f"### Harder attack losses, eps {k}", "", "No plain-loss run of the same attacks to compare with.", ""]
    stem = f"{s.prefix}loss_gains_eps{k}"
    s.csv(stem, gains, index=False)
    gains = gains.assign(attack=[f"{m} {attack_label(o, b)} [{l}]" for m, o, b, l in
                                 zip(gains["model"], gains["optimizer"], gains["objective"], gains["losses"])])
    wide = gains.assign(cell=gains.apply(_gain_cell, axis=1)).pivot(index="attack", columns="measure", values="cell")
    wide = wide.loc[list(dict.fromkeys(gains["attack"])), list(dict.fromkeys(gains["measure"]))]
    wide.columns = [c if c == "overall" else task_label(c) for c in wide.columns]
    s.text(stem, f"# Harder attack losses, {s.dataset} / {s.backbone}, eps {k}\n\n"
           + to_markdown(wide.rename_axis("model attack [losses]"), params={}))
    overall = gains[gains["measure"] == "overall"]
    counts = overall["verdict"].value_counts()
    return [f"### Harder attack losses, eps {k}", "",
            "Each attack that maximised harder losses (docs/attack_losses.md) against the same attack with the "
            "plain losses on the same model and images: ARP harder - plain, overall and per task, with the paired "
            "95% bootstrap interval over images and seeds; the metrics are the same, only what the attack "
            "maximises differs.", "",
            f"Table: [{stem}.md]({stem}.md) ([csv]({stem}.csv)). Overall ARP: raised in "
            f"{counts.get('raises', 0)}, lowered in {counts.get('lowers', 0)}, cannot tell in "
            f"{counts.get('cannot tell', 0)} of {len(overall)} cases.", ""]


STUDIES: tuple[Study, ...] = (
    Study("adversarial training", _adversarial_cases, _adversarial_section),
    Study("black-box transfer", _transfer_cases, _transfer_section),
    Study("transferability", _transferability_cases, _transferability_section),
    Study("attacks on clean models", _attack_cases, _attack_section),
    Study("worst-case ensemble", _ensemble_cases, _ensemble_section),
    Study("harder attack losses", _loss_cases, _loss_section),
)


# ---------------------------------------------------------------- the report

def write_report(df: pd.DataFrame, out_dir: str | os.PathLike, eps: float | None = None) -> list[Path]:
    """Write every table and figure for the results in ``df`` under ``out_dir``; return the paths.

    Per dataset/backbone setting (file names get a ``<dataset>_<backbone>_`` prefix
    only when there are several), every study of :data:`STUDIES` with results, per eps
    (all, or only ``eps``, pixel units): table_arp_eps<k>.md/.csv, per_task_arp_eps<k>.png/.csv;
    arp_vs_eps.png/.csv when more than one eps is present and no ``eps`` was chosen;
    table_weighted_eps<k>.md when the rows carry WeightedTotal's weights; the study
    tables; results.csv with every row's per-image statistics copied into stats/, so the
    folder alone rebuilds every interval (:func:`mtl_attack.records.write_portable_table`);
    and report.md linking them (written last).
    """
    keyed = attack_keys(df)
    if eps is not None:
        select_eps(keyed, eps)  # fail early with the eps list
    settings = list(keyed[["dataset", "backbone"]].astype(str).drop_duplicates().itertuples(index=False))
    written: list[Path] = []
    md = ["# Attack report", "", status_note(df) + ".", "",
          "ARP in %, higher = stronger attack; eps in pixel units out of 255. "
          f"Marks: {MARKS}. Rows made from a checkout with uncommitted changes are marked "
          "(dirty checkout), since the code behind them cannot be checked. "
          "Cells average over seeds; figures average over models.", "",
          "Every result, with the per-image statistics behind the intervals: [results.csv](results.csv) "
          f"and {records.STATS_DIR}/ (`mtl-attack report results.csv` rebuilds this report from them).", ""]
    for dataset, backbone in settings:
        rows = keyed[(keyed["dataset"].astype(str) == dataset) & (keyed["backbone"].astype(str) == backbone)]
        prefix = f"{slug(dataset)}_{slug(backbone)}_" if len(settings) > 1 else ""
        setting = Setting(rows, dataset, backbone, eps, Path(out_dir), prefix, written)
        md += [f"## {dataset} / {backbone}", ""]
        for study in STUDIES:
            for case in study.cases(setting):
                md += study.section(setting, case)
    written.append(records.write_portable_table(df, Path(out_dir)))
    written.append(atomic.write_text(Path(out_dir) / "report.md", "\n".join(md)))
    return written


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
    if len(done_rows(df)) < len(df):
        log.warning(status_note(df))
    return write_report(df, out_dir, eps=eps)
