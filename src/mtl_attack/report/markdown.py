"""The one markdown table renderer of the report."""
from __future__ import annotations

from typing import Mapping, Sequence

import pandas as pd

from .labels import attack_label


def _cell(text) -> str:
    return str(text).replace("|", "\\|")


def _value(value, digits: int) -> str:
    if isinstance(value, str):
        return value
    return "-" if pd.isna(value) else f"{float(value):.{digits}f}"


def to_markdown(table: pd.DataFrame, marks: pd.DataFrame | None = None, digits: int = 2,
                headers: Sequence[str] | None = None, params: Mapping[str, float] | None = None) -> str:
    """A GitHub markdown table: the index as first column, then one column per table column.

    Numbers get ``digits`` decimals, NaN and None read "-", text stays as it is. ``marks``
    (shaped like ``table``): cells marked True or "first" are bold, "tie" in italics, "unchecked"
    get a trailing "?" (the highest, not checked), "alone" (no contest) stay plain.
    headers: the column headers; by default "<optimizer> <objective>" (e.g. "APGD DGBA")
    for (optimizer, objective) columns, else the column names.
    params: row -> #Params (M), shown as a "#Params (M)" column after the index; by
    default ``table.attrs["params_paper_M"]`` when present (pass {} for none).
    Rows in ``table.attrs["below_trivial"]`` (row -> tasks) get a dagger and a footnote: their
    clean model is no better than the trivial predictor there, so their ARP means little.
    Rows in ``table.attrs["dirty"]`` (row -> jobs) get a double dagger and a footnote: some of
    their jobs ran from a checkout with uncommitted changes.
    """
    below = table.attrs.get("below_trivial") or {}
    dirty = table.attrs.get("dirty") or {}
    params = (table.attrs.get("params_paper_M") or {}) if params is None else params
    if headers is None:
        multi = isinstance(table.columns, pd.MultiIndex)
        headers = [attack_label(o, b) if multi else str(o)
                   for o, b in (table.columns if multi else [(c, None) for c in table.columns])]
    lead = [table.index.name or "model"] + (["#Params (M)"] if params else [])
    lines = ["| " + " | ".join(_cell(h) for h in lead + list(headers)) + " |",
             "|" + "---|" * len(lead) + "---:|" * len(headers)]
    for name, row in table.iterrows():
        label = f"{name} †" if name in below else name
        label = f"{label} ‡" if name in dirty else label
        cells = [_cell(label)] + ([f"{params[name]:.2f}" if name in params else "-"] if params else [])
        for col, value in row.items():
            text = _value(value, digits)
            mark = marks.at[name, col] if marks is not None and not pd.isna(value) else None
            if isinstance(mark, str):
                text = {"first": f"**{text}**", "tie": f"*{text}*", "unchecked": f"{text}?"}.get(mark, text)
            elif mark is not None and bool(mark):
                text = f"**{text}**"
            cells.append(text)
        lines.append("| " + " | ".join(cells) + " |")
    if below or dirty:
        lines.append("")
    lines += [f"† {row}: the clean model is no better than the trivial predictor on {tasks}; "
              "its ARP there means little." for row, tasks in below.items()]
    lines += [f"‡ {row}: {n} job(s) ran from a checkout with uncommitted changes (git_dirty); the code "
              "behind them cannot be checked." for row, n in dirty.items()]
    return "\n".join(lines) + "\n"
