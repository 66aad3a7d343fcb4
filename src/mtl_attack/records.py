"""The job record (one JSON per job) and the results table gathered from many.

A record is plain data: resolved config, provenance, clean and attacked metrics,
ARP overall and per task, timings, status. `flatten` turns one into a table row;
`gather` reads every record under some folders into a pandas DataFrame.

A record.json that is not a JSON object (cut short by a kill or a full disk, or
overwritten) is damaged: `read_record` raises `DamagedRecord`, `record_state` says
"damaged", and `gather` leaves it out with a logged warning naming the file.
"""
from __future__ import annotations

import ast
import functools
import json
import logging
import os
import platform
import subprocess
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterable

from . import atomic
from .config import NEUTRAL_KEYS  # one list: job folder names and the resume's ignored keys

log = logging.getLogger(__name__)

RECORD_NAME = "record.json"
SCHEMA_VERSION = 1
TABLE_NAME = "results.csv"
# What record_state says of a job folder.
RECORD_STATES = ("missing", "damaged", "done", "failed", "running")


def now() -> str:
    """UTC time as ISO 8601 text."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def code_version() -> dict:
    """The package version and, when run from a git checkout, the commit and whether it was dirty."""
    from . import __version__

    info = {"package": __version__, "git_commit": None, "git_dirty": None}
    repo = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if sha.returncode == 0:
            info["git_commit"] = sha.stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10)
            info["git_dirty"] = bool(dirty.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def cpu_model_from(cpuinfo: str, fallback: str) -> str:
    """The first "model name" of a /proc/cpuinfo text, or `fallback` when it has none."""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return fallback


def instruction_set(capability: str, cpu_flags: set[str], onednn_max: str | None = None) -> str:
    """The vector instruction set torch computes with, in words: torch's CPU capability
    ("AVX512" -> "AVX-512", "AVX2", "DEFAULT" -> "no AVX2"), "+AMX" when the CPU has AMX tiles
    and oneDNN is not held below them, and oneDNN's cap when ONEDNN_MAX_CPU_ISA sets one."""
    isa = {"AVX512": "AVX-512", "AVX2": "AVX2", "DEFAULT": "no AVX2"}.get(capability.upper(), capability)
    if "amx_tile" in cpu_flags and capability.upper() == "AVX512" and not onednn_max:
        isa += "+AMX"
    if onednn_max:
        isa += f", oneDNN up to {onednn_max}"
    return isa


@functools.lru_cache(maxsize=1)
def _cpu() -> tuple[str, str]:
    """(model name, instruction set) of this process's CPU; read once per process."""
    import torch

    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    flags = next((set(line.split(":", 1)[1].split()) for line in text.splitlines() if line.startswith("flags")), set())
    isa = instruction_set(torch.backends.cpu.get_cpu_capability(), flags, os.environ.get("ONEDNN_MAX_CPU_ISA"))
    return cpu_model_from(text, platform.processor() or platform.machine()), isa


def machine_label(device, threads: int | None = None) -> str:
    """The machine in words: "cuda: <GPU name>" or "cpu: <CPU model> (<instruction set>)", on the
    CPU followed by ", <threads> torch threads" when ``threads`` is given.

    Part of every record's provenance: trained weights and speed differ between CPU models and
    instruction sets (their kernels round differently), not only between devices.
    """
    import torch

    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    model, isa = _cpu()
    return f"{device.type}: {model} ({isa})" + ("" if threads is None else f", {threads} torch threads")


def package_versions() -> dict:
    """Versions of the packages that shape results."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for name in ("torch", "torchvision", "numpy", "hydra-core", "omegaconf", "wandb", "pandas"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


class DamagedRecord(ValueError):
    """A record file that is not a JSON object: cut short, empty, not UTF-8 or not JSON.

    The message is one line, "record.json in <folder> is damaged (<reason>); ...";
    ``path`` is the file and ``reason`` the short cause.
    """

    def __init__(self, path: Path | str, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path.name} in {self.path.parent} is damaged ({reason}); "
                         f"rerun its job to rewrite it, or delete {self.path}")


def read_record(path: Path | str) -> dict:
    """The record (a dict) in the JSON file `path`.

    Raises DamagedRecord (a ValueError) when the file is empty, not UTF-8, not valid JSON
    (e.g. cut short by a kill or a full disk) or holds JSON other than an object;
    OSError (FileNotFoundError, ...) when it cannot be read at all.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data.strip():
        raise DamagedRecord(path, "empty file")
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as err:
        raise DamagedRecord(path, f"not UTF-8 text: byte {err.start}") from None
    except json.JSONDecodeError as err:
        raise DamagedRecord(path, f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}") from None
    if not isinstance(record, dict):
        raise DamagedRecord(path, f"a JSON {type(record).__name__}, not an object")
    return record


def record_state(job_dir: Path | str) -> str:
    """The state of the job folder's record, one of :data:`RECORD_STATES`:

    "missing" (no record.json), "damaged" (:class:`DamagedRecord`), "done" or "failed"
    (the record's status), "running" (any other status, or none: the record of a job that
    has not ended, as :func:`mtl_attack.pipeline.run` starts it). A record that exists but
    cannot be read (e.g. no permission) raises its OSError.
    """
    path = Path(job_dir) / RECORD_NAME
    try:
        record = read_record(path)
    except FileNotFoundError:
        return "missing"
    except DamagedRecord:
        return "damaged"
    status = record.get("status")
    return status if status in ("done", "failed") else "running"



_ABSENT = object()  # a key missing on one side of config_changes


def config_changes(old: dict, new: dict, neutral: Iterable[str] = NEUTRAL_KEYS) -> list[str]:
    """Dotted keys whose values differ between two resolved configs (plain dicts, as in a
    record's "config"), top-level ``neutral`` keys ignored; a key on one side only counts.
    E.g. {"eps": 4, "attack": {"steps": 10}} vs {"eps": 4, "attack": {"steps": 20}} -> ["attack.steps"]."""
    skip = set(neutral)

    def walk(a, b, prefix: str) -> list[str]:
        if isinstance(a, dict) and isinstance(b, dict):
            out = []
            for key in list(a) + [k for k in b if k not in a]:
                if not prefix and key in skip:
                    continue
                out += walk(a.get(key, _ABSENT), b.get(key, _ABSENT), f"{prefix}{key}.")
            return out
        return [] if a == b else [prefix.rstrip(".")]

    return walk(old, new, "")


def is_done(job_dir: Path) -> bool:
    """True when the job folder holds a finished (status done) record; False when it is
    missing, damaged, failed, running or unreadable (see :func:`record_state`)."""
    try:
        return record_state(job_dir) == "done"
    except OSError:
        return False


def flatten(record: dict) -> dict:
    """One results-table row: identifying columns, ARP and every metric as columns.

    Columns: status, error, job, job_dir, dataset, backbone (the name, with " x<width>" when the
    backbone's width is not 1), width, layout, layout_index,
    optimizer, objective, attack, target_task, weights (WeightedTotal, "w0:w1:..." in task
    order), attack_losses (the harder losses maximised, e.g. "clipped,segpgd"), eps, steps, apgd_start (APGD's
    start, reference or authors; empty for other optimizers), seed, device, shared_blocks (leading all-shared blocks), train_attack
    and train_attack_eps (adversarial training; empty for clean training), threat
    ("white-box" or "black-box"), surrogate (the black-box surrogate's label), git_commit, git_dirty
    and finished (provenance), tasks (the job's tasks, ","-joined), arp (overall), arp_<task>, their 95% bootstrap intervals over
    images arp_lo, arp_hi, arp_<task>_lo, arp_<task>_hi, images (test images), stats_file (the
    per-image statistics, :func:`read_image_stats`), clean_<task>_<metric>,
    attacked_<task>_<metric>, higher_<task>_<metric> (True when higher is better, from the
    record's directions), below_trivial (the tasks on which the clean model is no better than
    the trivial predictor, ";"-joined) and below_trivial_<task> (those metrics, ","-joined),
    params_paper_M, attack_s, total_s. Ensemble jobs add, per member m: member_arp_<m> with
    member_arp_<m>_lo/_hi (its ARP on the same images), ensemble_minus_<m> with _lo/_hi (the
    paired interval), member_wins_<m> (images kept from it); and ensemble_strongest,
    ensemble_criterion (how images were ranked), ensemble_disagree_images (fraction),
    ensemble_below_strongest.
    """
    cfg = record.get("config", {})
    att = record.get("attack", {})
    model = record.get("model", {})
    row = {
        "status": record.get("status"),
        "error": record.get("error"),
        "job": record.get("job", {}).get("name"),
        "job_dir": record.get("job", {}).get("dir"),
        "dataset": cfg.get("dataset", {}).get("name"),
        # The tasks the model was built for and scored on (a subset with tasks=[...]), ","-joined.
        "tasks": ",".join((record.get("arp") or {}).get("per_task") or {}) or None,
        # A user's network is named by its class path (record "model": kind custom).
        "backbone": model["class"] if model.get("kind") == "custom" else _backbone_label(cfg.get("backbone", {})),
        "width": None if model.get("kind") == "custom" else float(cfg.get("backbone", {}).get("width", 1.0)),
        "layout": model.get("layout"),
        "layout_index": model.get("layout_index"),
        "model": model.get("label"),
        "optimizer": att.get("optimizer"),
        "objective": att.get("objective"),
        "attack": att.get("name"),
        "target_task": att.get("target_task"),
        "weights": att.get("weights"),
        # The harder losses maximised (docs/attack_losses.md), ","-joined; None for the plain ones.
        "attack_losses": ",".join(sorted({v for v in (att.get("losses") or {}).values()
                                          if v not in ("ce", "plain")})) or None,
        "eps": cfg.get("eps"),
        "steps": att.get("steps"),
        # APGD's start (reference or authors); records made before it was recorded hold it in their config.
        "apgd_start": (cfg.get("attack") or {}).get("apgd_start") if att.get("optimizer") in ("apgd", "ensemble")
        else None,
        "seed": cfg.get("seed"),
        "device": record.get("provenance", {}).get("device"),
        "params_paper_M": model.get("params_paper_M"),
        "shared_blocks": model.get("shared_blocks", _shared_blocks(model.get("layout"))),
        "train_attack": model.get("train_attack"),
        "train_attack_eps": model.get("train_attack_eps"),
        # Records from before black-box transfer existed are white-box.
        "threat": record.get("threat") or "white-box",
        "surrogate": (record.get("surrogate") or {}).get("label") if record.get("threat") == "black-box" else None,
        # Provenance: which code made the row, and when it finished.
        "git_commit": (record.get("provenance", {}).get("code") or {}).get("git_commit"),
        "git_dirty": (record.get("provenance", {}).get("code") or {}).get("git_dirty"),
        "finished": record.get("provenance", {}).get("finished"),
    }
    arp = record.get("arp") or {}
    row["arp"] = arp.get("overall")
    for task, value in (arp.get("per_task") or {}).items():
        row[f"arp_{task}"] = value
    stats = record.get("stats") or {}
    if stats:
        row["images"] = stats.get("images")
        row["stats_file"] = str(Path(row["job_dir"] or ".") / stats["file"]) if stats.get("file") else None
        for key, (_, lo, hi) in [("arp", stats["arp"]["overall"])] + [
                (f"arp_{t}", v) for t, v in stats["arp"]["per_task"].items()]:
            row[f"{key}_lo"], row[f"{key}_hi"] = lo, hi
    for which in ("clean", "attacked"):
        for task, metrics in ((record.get("metrics") or {}).get(which) or {}).items():
            for name, value in metrics.items():
                row[f"{which}_{task}_{name}"] = value
    for task, metrics in (record.get("directions") or {}).items():
        for name, higher in metrics.items():
            row[f"higher_{task}_{name}"] = bool(higher)
    below = record.get("below_trivial")
    if below is not None:  # records from before the check have no such columns
        row["below_trivial"] = ";".join(t for t, metrics in below.items() if metrics)
        for task, metrics in below.items():
            row[f"below_trivial_{task}"] = ",".join(metrics)
    ensemble = record.get("ensemble")
    if ensemble:
        for m in ensemble["members"]:
            row[f"member_arp_{m}"], row[f"member_arp_{m}_lo"], row[f"member_arp_{m}_hi"] = \
                ensemble["arp"][m]["overall"]
            row[f"ensemble_minus_{m}"], row[f"ensemble_minus_{m}_lo"], row[f"ensemble_minus_{m}_hi"] = \
                ensemble["difference"][m]
            row[f"member_wins_{m}"] = ensemble["wins"][m]
        row["ensemble_strongest"] = ensemble["strongest_member"]
        row["ensemble_criterion"] = ensemble.get("criterion")
        row["ensemble_disagree_images"] = ensemble["disagreement"]["per_image"]
        row["ensemble_below_strongest"] = ensemble["disagreement"]["dataset"]
    for name, value in (record.get("timings") or {}).items():
        row[name] = value
    return row


def _backbone_label(backbone: dict) -> str | None:
    """"resnet34" at the paper's width, "resnet34 x0.25" otherwise, so widths stay apart in reports."""
    name, width = backbone.get("name"), float(backbone.get("width", 1.0))
    return name if name is None or width == 1.0 else f"{name} x{width:g}"


def _shared_blocks(layout: str | None) -> int | None:
    """Leading branching points where one set holds every task, from a layout string (None if unreadable)."""
    if not layout:
        return None
    from .models.layout import parse_layout

    try:
        points = ast.literal_eval(str(layout).replace("{", "[").replace("}", "]"))
        num_tasks = len({t for s in points[0] for t in s})
        return parse_layout(points, num_tasks, num_points=len(points)).shared_blocks
    except (ValueError, SyntaxError, TypeError, IndexError):
        return None


STATS_NAME = "stats.npz"


def write_image_stats(path: Path, image_stats: dict, kinds: dict[str, str]) -> Path:
    """The per-image statistics {"clean"|"attacked": {task: {name: [N, ...]}}} and each task's
    meter kind (:data:`mtl_attack.tasks.SCORERS`) as one .npz (keys "<which>/<task>/<name>",
    "kind/<task>"), atomically."""
    import numpy as np

    arrays = {f"{which}/{task}/{name}": value for which, per_task in image_stats.items() if per_task
              for task, stats in per_task.items() for name, value in stats.items()}
    arrays.update({f"kind/{task}": np.array(kind) for task, kind in kinds.items()})
    return atomic.write_with(path, lambda f: np.savez_compressed(f, **arrays))


def read_image_stats(path: Path) -> dict:
    """The inverse of :func:`write_image_stats`: {"clean": ..., "attacked": ..., "kinds": {task: kind}}."""
    import numpy as np

    out: dict = {"kinds": {}}
    with np.load(path) as data:
        for key in data.files:
            if key.startswith("kind/"):
                out["kinds"][key[len("kind/"):]] = str(data[key])
                continue
            which, task, name = key.split("/", 2)
            out.setdefault(which, {}).setdefault(task, {})[name] = data[key]
    return out


def find_records(paths: Iterable[Path]) -> list[Path]:
    """Every record.json under the given folders (or the files themselves), sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_file() and p.name == RECORD_NAME:
            found.append(p)
        elif p.is_dir():
            found.extend(sorted(p.rglob(RECORD_NAME)))
        elif not p.exists():
            raise FileNotFoundError(f"{p} does not exist; pass sweep folders, record.json files or a results table")
    return found


def gather(paths: Iterable[Path], damaged: list | None = None):
    """A pandas DataFrame with one row per record found under `paths`.

    A damaged record (:class:`DamagedRecord`) is left out with a logged warning that names
    the file; pass a list as `damaged` to also get those errors appended to it.
    """
    import pandas as pd

    rows = []
    for p in find_records(paths):
        try:
            record = read_record(p)
        except DamagedRecord as err:
            log.warning("left out of the results: %s", err)
            if damaged is not None:
                damaged.append(err)
            continue
        rows.append(flatten(record))
    return pd.DataFrame(rows)


def write_table(df, path: Path) -> Path:
    """Save the results table as CSV (or parquet by suffix), atomically."""
    return atomic.write_csv(path, df)


STATS_DIR = "stats"


def write_portable_table(df, folder: Path) -> Path:
    """``folder``/results.csv with each row's per-image statistics copied into ``folder``/stats/
    and ``stats_file`` relative to the table, so the folder alone rebuilds every interval and
    paired difference (:func:`load_table` resolves the relative paths). A row whose statistics
    file is gone keeps its path as it was. Files are named for the job folder."""
    folder = Path(folder)
    out = df.copy()
    if "stats_file" in out.columns:
        jobs = out["job_dir"] if "job_dir" in out.columns else [None] * len(out)
        taken: set[str] = set()
        moved = []
        for i, (path, job) in enumerate(zip(out["stats_file"], jobs)):
            if not isinstance(path, str) or not Path(path).is_file():
                moved.append(path)
                continue
            stem = Path(job).name if isinstance(job, str) and job else f"row{i}"
            name, k = stem, 2
            while name in taken:  # one job name in two sweeps
                name, k = f"{stem}-{k}", k + 1
            taken.add(name)
            relative = f"{STATS_DIR}/{name}.npz"
            atomic.write_bytes(folder / relative, Path(path).read_bytes())
            moved.append(relative)
        out["stats_file"] = moved
    return write_table(out, folder / "results.csv")


def load_table(path: Path):
    """Read a results table written by write_table (CSV or parquet); a relative ``stats_file``
    (:func:`write_portable_table`) is resolved against the table's folder."""
    import pandas as pd

    path = Path(path)
    if path.suffix not in (".csv", ".parquet"):
        raise ValueError(f"{path}: expected a results table ending in .csv or .parquet")
    try:
        table = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        raise
    except (ValueError, OSError) as err:  # pandas' and pyarrow's parser errors name no file
        raise ValueError(f"results table {path} is damaged ({type(err).__name__}: "
                         f"{' '.join(str(err).split())}); regather it from the record.json files") from None
    if "stats_file" in table.columns:
        table["stats_file"] = [str(path.parent / f) if isinstance(f, str) and not Path(f).is_absolute() else f
                               for f in table["stats_file"]]
    return table
