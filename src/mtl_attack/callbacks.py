"""Hydra callbacks (conf/config.yaml lists them under hydra.callbacks)."""
from __future__ import annotations

from pathlib import Path

from hydra.experimental.callback import Callback

__all__ = ["SweepSummary"]


class SweepSummary(Callback):
    """At the end of a sweep, say how many jobs finished or failed and where the results table is."""

    def on_multirun_end(self, config, **kwargs) -> None:
        from . import records

        sweep = Path(config.hydra.sweep.dir).resolve()
        states = [records.record_state(p.parent) for p in sweep.rglob(records.RECORD_NAME)]
        failed = sum(s == "failed" for s in states)
        table = sweep / records.TABLE_NAME
        where = f"results in {table}" if table.is_file() else f"no results table in {sweep}"
        print(f"sweep {sweep.name}: {states.count('done')} jobs done, {failed} failed; {where} "
              f"(mtl-attack report {sweep} rebuilds the tables)", flush=True)
