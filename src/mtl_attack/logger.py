"""Mirror a job record to Weights & Biases, or to nothing.

One W&B run per job, always finished (a context manager), even when the job
fails. Offline by default: the run lands in ``<job_dir>/wandb/offline-run-*``
and nothing touches the network; upload later with ``wandb sync <run dir>``.

    with make_logger(cfg.logger, job_dir, name, group, config) as log:
        ...                       # the job
        log.log_record(record, directions)
        log.log_examples(triplets, eps=cfg.eps / 255)

The summary holds flat keys (see :func:`summary_items`), a ``per_task_metrics``
table (see :func:`metric_rows`) and ``examples`` image panels
(clean | adversarial | amplified perturbation, see :func:`perturbation_image`).

A finished run's folder holds a marker file of ours, :data:`FINISHED_MARKER`. A job
killed mid-run (SIGKILL, out of memory) leaves its run without one; before a rerun
in the same folder, :func:`remove_unfinished_runs` deletes such runs so that
``wandb sync`` never uploads them beside the new one.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from enum import Enum
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

log = logging.getLogger(__name__)

LOGGER_NAMES = ("none", "wandb")
MODES = ("offline", "online", "disabled")
TABLE_COLUMNS = ["task", "metric", "higher_is_better", "clean", "attacked", "relative change"]
TABLE_KEY = "per_task_metrics"
EXAMPLES_KEY = "examples"
# Environment values of WANDB_MODE that already keep W&B off the network.
_QUIET_MODES = ("offline", "dryrun", "disabled")
# Pixels of white between the panels of one example.
_GAP = 2
# Written into a run's folder by WandbLogger.finish once run.finish() has returned:
# JSON {"status", "exit_code", "finished"}. A run folder without it did not finish.
FINISHED_MARKER = "mtl-attack-finished"
# Offline run folders inside <job_dir>/wandb/.
OFFLINE_RUN_GLOB = "offline-run-*"


# ----------------------------------------------------------------------------- pure helpers


def _value(x: Any) -> Any:
    """Enum members (as OmegaConf gives them for typed fields) as their plain value."""
    return x.value if isinstance(x, Enum) else x


def plain(obj: Any) -> Any:
    """A JSON-friendly copy: DictConfig/ListConfig resolved, enums as values, paths as text."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            obj = OmegaConf.to_container(obj, resolve=True, enum_to_str=True)
    except ImportError:  # omegaconf is a dependency; guard only for minimal installs
        pass
    if isinstance(obj, Mapping):
        return {str(k): plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [plain(v) for v in obj]
    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    return obj


def summary_items(record: Mapping) -> dict[str, Any]:
    """Flat summary keys of a job record.

    ``arp`` (overall ARP, percent), ``arp/<task>``, their 95% bootstrap interval
    ``arp_lo``, ``arp_hi``, ``arp_lo/<task>``, ``arp_hi/<task>``, ``clean/<task>/<metric>``,
    ``attacked/<task>/<metric>``, ``timings/<name>`` (seconds), and ``status``/``error``
    as the record states them. Missing parts (a failed job's partial record) are skipped.
    """
    out: dict[str, Any] = {}
    arp = record.get("arp") or {}
    if arp.get("overall") is not None:
        out["arp"] = arp["overall"]
    for task, value in (arp.get("per_task") or {}).items():
        out[f"arp/{task}"] = value
    ci = (record.get("stats") or {}).get("arp") or {}
    if ci:
        out["arp_lo"], out["arp_hi"] = ci["overall"][1:]
        for task, (_, lo, hi) in ci["per_task"].items():
            out[f"arp_lo/{task}"], out[f"arp_hi/{task}"] = lo, hi
    metrics = record.get("metrics") or {}
    for split in ("clean", "attacked"):
        for task, values in (metrics.get(split) or {}).items():
            for metric, value in values.items():
                out[f"{split}/{task}/{metric}"] = value
    for name, value in (record.get("timings") or {}).items():
        out[f"timings/{name}"] = value
    for key in ("status", "error"):
        if key in record:
            out[key] = record[key]
    return out


def relative_change(clean: float | None, attacked: float | None) -> float | None:
    """:func:`mtl_attack.scores.relative_change` of a table row; None when undefined (a missing
    value, a clean value of 0)."""
    from .scores import relative_change as change

    if clean is None or attacked is None:
        return None
    try:
        return change(clean, attacked)
    except ValueError:
        return None


def metric_rows(
    record: Mapping, tasks_directions: Mapping[str, Mapping[str, bool]] | None = None
) -> list[list]:
    """Rows of the per-task table, in the columns of ``TABLE_COLUMNS``.

    One row per (task, metric) of the clean metrics, in the record's order.
    ``tasks_directions``: task -> metric -> higher_is_better (``Task.metrics``);
    without it the column holds None.
    """
    metrics = record.get("metrics") or {}
    clean = metrics.get("clean") or {}
    attacked = metrics.get("attacked") or {}
    rows = []
    for task, values in clean.items():
        directions = (tasks_directions or {}).get(task, {})
        for metric, c in values.items():
            a = (attacked.get(task) or {}).get(metric)
            rows.append([task, metric, directions.get(metric), c, a, relative_change(c, a)])
    return rows


def perturbation_image(clean: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """The perturbation made visible: ``(adv - clean) / (2 eps) + 0.5``, clamped to [0, 1].

    clean, adv: float [3, H, W] in [0, 1]; eps: the L-infinity budget on the same
    [0, 1] scale (4/255, not 4). A pixel at -eps shows 0 (black), at +eps shows 1.
    """
    if not 0 < eps <= 1:
        raise ValueError(f"eps={eps} must be on the [0, 1] image scale (e.g. cfg.eps / 255), and positive")
    return ((adv - clean) / (2 * eps) + 0.5).clamp(0, 1)


def example_panel(clean: torch.Tensor, adv: torch.Tensor, eps: float) -> torch.Tensor:
    """clean | adversarial | amplified perturbation side by side: float [3, H, 3W + 2 gap] in [0, 1]."""
    for name, x in (("clean", clean), ("adv", adv)):
        if not isinstance(x, torch.Tensor) or x.dim() != 3 or x.shape[0] != 3:
            got = getattr(x, "shape", type(x))
            raise ValueError(f"example {name} image must be a float tensor [3, H, W]; got {got}")
    if clean.shape != adv.shape:
        raise ValueError(f"example clean {tuple(clean.shape)} and adv {tuple(adv.shape)} images differ in shape")
    clean, adv = clean.detach().float().cpu(), adv.detach().float().cpu()
    gap = torch.ones(3, clean.shape[1], _GAP)
    return torch.cat([clean.clamp(0, 1), gap, adv.clamp(0, 1), gap, perturbation_image(clean, adv, eps)], dim=2)


def _to_uint8_hwc(x: torch.Tensor):
    """[3, H, W] in [0, 1] -> numpy uint8 [H, W, 3]."""
    return (x * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


# ----------------------------------------------------------------------------- loggers


class NullLogger:
    """Logs nothing and writes nothing (``logger=none`` or ``logger.mode=disabled``)."""

    run_dir: Path | None = None

    def log_record(self, record: Mapping, tasks_directions: Mapping | None = None) -> None:
        pass

    def log_examples(self, triplets: Sequence, eps: float) -> None:
        pass

    def log_picture(self, key: str, path: Path, caption: str) -> None:
        pass

    def finish(self, status: str = "done", error: str | None = None) -> None:
        pass

    def __enter__(self) -> "NullLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        return False


class WandbLogger:
    """One W&B run; use as a context manager so it is finished whatever happens.

    Leaving the ``with`` block by an exception finishes the run with exit code 1,
    summary ``status="failed"`` and ``error="<Type>: <message>"``, then lets the
    exception go on.
    """

    def __init__(self, run):
        self._run = run
        self._finished = False
        self.run_dir: Path | None = Path(run.settings.sync_dir)

    def log_record(self, record: Mapping, tasks_directions: Mapping[str, Mapping[str, bool]] | None = None) -> None:
        """Put the record's flat metrics (:func:`summary_items`) in the summary and log the per-task table."""
        import wandb

        for key, value in summary_items(record).items():
            self._run.summary[key] = value
        rows = metric_rows(record, tasks_directions)
        if rows:
            self._run.log({TABLE_KEY: wandb.Table(columns=TABLE_COLUMNS, data=rows)})

    def log_examples(self, triplets: Sequence[tuple[torch.Tensor, torch.Tensor]], eps: float) -> None:
        """Log (clean, adv) pairs, each float [3, H, W] in [0, 1], as panels with the amplified perturbation.

        eps: the budget on the [0, 1] scale (cfg.eps / 255).
        """
        import wandb

        if not triplets:
            return
        images = []
        for i, pair in enumerate(triplets):
            if len(pair) != 2:
                raise ValueError(f"example {i} must be a (clean, adv) pair of [3, H, W] tensors; got {len(pair)} items")
            panel = example_panel(pair[0], pair[1], eps)
            caption = (
                f"example {i}: clean | adversarial | perturbation shown as (x_adv - x) / (2 eps) + 0.5, "
                f"eps = {eps * 255:g}/255 (grey = unchanged)"
            )
            images.append(wandb.Image(_to_uint8_hwc(panel), caption=caption))
        self._run.log({EXAMPLES_KEY: images})

    def log_picture(self, key: str, path: Path, caption: str) -> None:
        """Log the PNG at ``path`` under ``key`` (e.g. the job's predictions) with ``caption``."""
        import wandb

        self._run.log({key: wandb.Image(str(path), caption=caption)})

    def finish(self, status: str = "done", error: str | None = None) -> None:
        """Write ``status`` and ``error`` to the summary and close the run (exit code 0 only for "done"),
        then mark the run folder finished (:data:`FINISHED_MARKER`). Idempotent.

        The marker is written only after ``run.finish()`` returned, so a run stopped
        anywhere before that (a kill, a failing finish) stays unmarked and
        :func:`remove_unfinished_runs` removes it. A failure to write the marker is logged, not raised.
        """
        if self._finished:
            return
        self._finished = True
        self._run.summary["status"] = status
        self._run.summary["error"] = error
        exit_code = 0 if status == "done" else 1
        self._run.finish(exit_code=exit_code)
        if self.run_dir is not None:
            try:
                write_finished_marker(self.run_dir, status, exit_code)
            except OSError as err:
                log.warning("could not mark the W&B run %s finished (%s); a rerun of the job will remove it",
                            self.run_dir, err)
        if self.run_dir is not None and self._run.settings.mode == "offline":
            log.info("W&B offline run in %s; upload with `wandb sync %s`", self.run_dir, self.run_dir)

    def __enter__(self) -> "WandbLogger":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.finish("done")
            return False
        try:
            self.finish("failed", f"{exc_type.__name__}: {exc}")
        except Exception as err:  # never hide the job's own error behind a logging one
            log.warning("could not finish the W&B run: %s", err)
        return False


Logger = NullLogger | WandbLogger


def make_logger(cfg: Any, job_dir: Path | str, name: str, group: str, config: Mapping | None = None) -> Logger:
    """The job's logger from the ``logger`` config (a DictConfig or any object with its fields).

    cfg fields: name (none|wandb), mode (offline|online|disabled), project, entity
    (optional), group (optional; overrides ``group``). job_dir: the Hydra job folder;
    the run goes to ``job_dir/wandb/``. name: the run name from the overrides
    ("default" when empty). group: shared by all jobs of a sweep. config: the
    resolved job config (plain dict or DictConfig).
    """
    logger_name = _value(getattr(cfg, "name", None))
    if logger_name not in LOGGER_NAMES:
        raise ValueError(f"logger.name={logger_name!r} is not one of {LOGGER_NAMES}; use logger=wandb or logger=none")
    if logger_name == "none":
        return NullLogger()
    mode = _value(getattr(cfg, "mode", "offline"))
    if mode not in MODES:
        raise ValueError(f"logger.mode={mode!r} is not one of {MODES}")
    if mode == "disabled":
        return NullLogger()
    if mode == "offline" and os.environ.get("WANDB_MODE") not in _QUIET_MODES:
        # The init argument alone still lets wandb reach for its host; the variable stops that.
        os.environ["WANDB_MODE"] = "offline"

    import wandb

    job_dir = Path(job_dir).resolve()
    job_dir.mkdir(parents=True, exist_ok=True)
    settings = wandb.Settings(
        console="off",  # Hydra already logs the job's output; wrapping stdout clashes with it
        silent=True,  # one line of our own instead of wandb's banner per job
        disable_git=True,  # the record's provenance holds the commit
        save_code=False,
        disable_job_creation=True,
        x_disable_stats=(mode == "offline"),  # system metrics only for live online runs
    )
    try:
        run = wandb.init(
            project=getattr(cfg, "project", None) or "mtl-attack",
            entity=getattr(cfg, "entity", None) or None,
            group=getattr(cfg, "group", None) or group,
            name=name or "default",
            job_type="attack",
            config=plain(config or {}),
            dir=str(job_dir),
            mode=mode,
            settings=settings,
        )
    except Exception as err:
        raise RuntimeError(
            f"W&B could not start a {mode} run ({type(err).__name__}: {err}); "
            "run `wandb login`, or use logger.mode=offline or logger=none"
        ) from err
    return WandbLogger(run)


# ----------------------------------------------------------------------------- finished and unfinished runs


def write_finished_marker(run_dir: Path | str, status: str, exit_code: int) -> Path:
    """Write ``run_dir/FINISHED_MARKER`` (JSON status, exit_code, finished time), atomically; returns its path."""
    from datetime import datetime, timezone

    from . import atomic

    finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return atomic.write_json(Path(run_dir) / FINISHED_MARKER,
                             {"status": status, "exit_code": exit_code, "finished": finished})


def run_finished(run_dir: Path | str) -> bool:
    """True when the run folder holds :data:`FINISHED_MARKER` (see :meth:`WandbLogger.finish`).

    Only the marker's presence counts (a rename put it there whole); its content is informational.
    """
    return (Path(run_dir) / FINISHED_MARKER).is_file()


def _exit_logged(run_dir: Path) -> bool:
    """True when the run's .wandb log holds its exit (``wandb leet inspect`` gives an exit code);
    False when it does not, or when it cannot be read."""
    try:
        return json.loads(_inspect(run_dir, "--summary", "--json")).get("exit_code") is not None
    except (OSError, RuntimeError, ValueError, subprocess.SubprocessError):
        return False


def remove_unfinished_runs(job_dir: Path | str) -> list[Path]:
    """Delete every W&B offline run in ``job_dir/wandb/offline-run-*/`` that did not finish; return the
    deleted run folders (sorted).

    Call it before the job's new run starts (before :func:`make_logger`), while no process is
    writing to the folder: the new run is unfinished too until its logger finishes.

    "Finished" (:func:`run_finished`) means the run folder holds :data:`FINISHED_MARKER`,
    which :meth:`WandbLogger.finish` writes after ``run.finish()`` returned. A job killed
    mid-run (SIGKILL, out of memory, power loss) never writes it, so its half-written run is
    deleted and a later ``wandb sync`` uploads only the rerun's run. A folder without the
    marker is kept only when W&B's own log shows the run ended (``wandb leet inspect`` reports
    an exit code): a run finished by an older version of this package, or killed between
    ``run.finish()`` and the marker. Caveat: when that check cannot run or cannot read the
    log, a marker-less run counts as unfinished and is deleted, even one that did finish
    before the marker existed.

    Symlinks in ``job_dir/wandb`` pointing into a deleted folder (``latest-run``, and
    W&B's ``debug.log`` and ``debug-internal.log``) are removed as well; they are not
    in the returned list. Online runs (``run-*``) are left alone. A folder that cannot
    be deleted is logged as a warning and left out of the list. No ``wandb`` folder: [].
    """
    wandb_dir = Path(job_dir) / "wandb"
    if not wandb_dir.is_dir():
        return []
    removed: list[Path] = []
    for run_dir in sorted(wandb_dir.glob(OFFLINE_RUN_GLOB)):
        if run_dir.is_symlink() or not run_dir.is_dir() or run_finished(run_dir) or _exit_logged(run_dir):
            continue
        try:
            shutil.rmtree(run_dir)
        except OSError as err:
            log.warning("could not remove the unfinished W&B run %s: %s", run_dir, err)
            continue
        removed.append(run_dir)
    if removed:
        gone = [os.path.abspath(p) for p in removed]
        for link in wandb_dir.iterdir():
            if not link.is_symlink():
                continue
            target = os.path.abspath(os.path.join(wandb_dir, os.readlink(link)))
            if any(target == g or target.startswith(g + os.sep) for g in gone):
                link.unlink(missing_ok=True)
    return removed


# ----------------------------------------------------------------------------- reading runs back


def _inspect(run_dir: Path | str, *args: str) -> str:
    """Output of ``wandb leet inspect <args> <run_dir>`` (reads the run's .wandb log; no network)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir() or not any(run_dir.glob("*.wandb")):
        raise FileNotFoundError(f"{run_dir} is not a W&B run folder (no run-*.wandb inside); pass logger.run_dir")
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true")
    proc = subprocess.run(
        [sys.executable, "-m", "wandb", "leet", "inspect", *args, str(run_dir)],
        capture_output=True, text=True, timeout=120, env=env,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        raise RuntimeError(f"`wandb leet inspect` failed on {run_dir}: {last}")
    return proc.stdout


def read_offline_summary(run_dir: Path | str) -> dict:
    """The summary dict (flat keys as logged) of a finished local run."""
    return json.loads(_inspect(run_dir, "--summary", "--json"))["summary"]


def read_offline_run(run_dir: Path | str) -> dict:
    """A local run read back: ``wandb leet inspect --summary --json``'s object (state,
    exit_code, name, project, config, summary, ...) plus ``group`` and ``job_type``
    from the run's first "run" record."""
    info = json.loads(_inspect(run_dir, "--summary", "--json"))
    info["group"] = info["job_type"] = None
    for line in _inspect(run_dir, "--json").splitlines():
        rec = json.loads(line) if line.strip() else {}
        if rec.get("type") == "run":
            info["group"] = rec["run"].get("run_group")
            info["job_type"] = rec["run"].get("job_type")
            break
    return info
