"""``mtl-attack check-default``: the default job measured against the miniature's targets.

The default job (``python run.py``) is meant to be a small version of the paper's
regime: a model that has learned its tasks well beyond the trivial predictors, which
an attack at eps 4 then hurts on every task. This check runs the job twice in a
subprocess, from an empty cache and then cached, and prints each measured number
beside its target. It is a measurement, not a test: the numbers depend on the machine.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Target:
    """One target: the value at ``key`` (a path into the job record) is ``at_least`` or ``at_most`` ``bound``."""

    label: str
    key: tuple[str, ...]
    bound: float
    at_least: bool = True

    def met(self, value: float) -> bool:
        return value >= self.bound if self.at_least else value <= self.bound


# The miniature's targets on a 2-core CPU (times in seconds; metrics on the default test split).
TARGETS = (
    Target("segmentation mIoU (clean, %)", ("metrics", "clean", "segment_semantic", "miou"), 35.0),
    Target("normal mean angle (clean, deg)", ("metrics", "clean", "normal", "angle_mean"), 28.0, at_least=False),
    Target("depth delta_1 (clean, %)", ("metrics", "clean", "depth_zbuffer", "delta_1"), 65.0),
    Target("overall ARP (DGBA-APGD, eps 4)", ("arp", "overall"), 25.0),
    Target("segmentation ARP", ("arp", "per_task", "segment_semantic"), 10.0),
    Target("normal ARP", ("arp", "per_task", "normal"), 10.0),
    Target("depth ARP", ("arp", "per_task", "depth_zbuffer"), 10.0),
)
TIME_TARGETS = {"cold": 300.0, "cached": 60.0}  # seconds, the whole `python run.py`


def lookup(record: dict, key: tuple[str, ...]) -> float:
    value = record
    for part in key:
        value = value[part]
    return float(value)


def _run_job(repo: Path, run_dir: Path, cache_dir: Path, overrides: list[str]) -> tuple[float, dict]:
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    cmd = [sys.executable, "run.py", "logger=none", f"cache_dir={cache_dir}", f"hydra.run.dir={run_dir}", *overrides]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise ValueError(f"the default job failed ({tail[0]}); run python run.py with the same overrides to see why")
    return seconds, json.loads((run_dir / "record.json").read_text())


def check_default(overrides: list[str] | None = None, repo: Path | None = None, log=print) -> dict:
    """Run the default job cold (empty cache) and cached; return {"cold_s", "cached_s", "record", "rows"}.

    rows: (label, target text, measured value, met) for the times and every :data:`TARGETS`.
    """
    repo = Path(repo or Path(__file__).resolve().parents[2])
    overrides = list(overrides or [])
    with tempfile.TemporaryDirectory(prefix="mtl-attack-check-") as tmp:
        tmp = Path(tmp)
        log("default job from an empty cache ...")
        cold, record = _run_job(repo, tmp / "cold", tmp / "cache", overrides)
        log(f"  {cold:.0f} s; again, cached ...")
        cached, again = _run_job(repo, tmp / "cached", tmp / "cache", overrides)
        log(f"  {cached:.0f} s")
    rows = [("whole job, empty cache (s)", f"<= {TIME_TARGETS['cold']:g}", cold, cold <= TIME_TARGETS["cold"]),
            ("whole job, cached (s)", f"<= {TIME_TARGETS['cached']:g}", cached, cached <= TIME_TARGETS["cached"])]
    for t in TARGETS:
        value = lookup(record, t.key)
        rows.append((t.label, f"{'>=' if t.at_least else '<='} {t.bound:g}", value, t.met(value)))
    if lookup(again, ("arp", "overall")) != lookup(record, ("arp", "overall")):
        rows.append(("cached run repeats the ARP", "equal", lookup(again, ("arp", "overall")), False))
    return {"cold_s": cold, "cached_s": cached, "record": record, "rows": rows}


def format_check(result: dict) -> str:
    """The rows as a text table, with the machine and the ARP's interval."""
    rec = result["record"]
    lines = [f"{'':<34} {'target':>9} {'measured':>9}",
             *[f"{label:<34} {target:>9} {value:>9.2f}  {'ok' if ok else 'MISSED'}"
               for label, target, value, ok in result["rows"]]]
    ci = (rec.get("stats") or {}).get("arp", {}).get("overall")
    if ci:
        lines.append(f"overall ARP 95% interval over {rec['stats']['images']} test images: [{ci[1]:.2f}, {ci[2]:.2f}]")
    prov = rec.get("provenance", {})
    lines.append(f"machine: {prov.get('host', '?')}, {os.cpu_count()} CPUs, device {prov.get('device', '?')}")
    missed = sum(not ok for *_, ok in result["rows"])
    lines.append("all targets met" if not missed else f"{missed} target(s) missed")
    return "\n".join(lines)
