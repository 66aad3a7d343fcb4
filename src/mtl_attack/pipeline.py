"""One job, as data flowing through small modules (docs/architecture.md).

    data -> tasks -> layout -> model (train or load) -> clean + attacked evaluation
         -> ARP -> record (JSON in the job folder, results table) -> logger (W&B or none)
"""
from __future__ import annotations

import copy
import os
import socket
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from . import atomic, floats, records, stats
from .attacks import OBJECTIVES, build_attack_from_config
from .attacks.presets import ENSEMBLE, preset_name
from .baselines import ConstantModel, constant_predictions
from .evaluation import evaluate
from .models.build import layout_size, resolve_surrogate
from .models.custom import custom_entry
from .models.layout import Layout, index_of
from .errors import UserError
from .parts import Parts, prepare, trained_model
from .pictures import prediction_grid
from .preflight import Checked, preflight
from .scores import arp, below_trivial
from .tasks import SCORERS
from .training import adversarial_settings
from .worst_case import MEMBER_PREFIX, ensemble_entry

# A few test images' truth, clean and attacked predictions, drawn beside each record and logged to W&B.
PREDICTIONS_NAME = "predictions.png"
PREDICTIONS_KEY = "predictions"


@dataclass
class Job:
    """Where a job lives and what it is called (from Hydra when run by run.py)."""

    dir: Path
    name: str
    group: str
    overrides: list[str] = field(default_factory=list)
    sweep_dir: Path | None = None
    multirun: bool = False


def job_from_hydra(cfg: DictConfig) -> Job:
    """The current Hydra job's folder, name (from its overrides) and sweep group."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    overrides = list(hc.overrides.task)
    name = hc.job.override_dirname or "default"
    sweep = Path(hc.sweep.dir).resolve() if multirun else None
    group = cfg.logger.group or cfg.name  # a sweep's folder is multirun/<name>
    return Job(Path(hc.runtime.output_dir).resolve(), name, group, overrides, sweep, multirun)


def _threads_for_launcher(cfg: DictConfig) -> None:
    """Several jobs on one machine (joblib) split the cores instead of oversubscribing them."""
    n_jobs = None
    try:
        from hydra.core.hydra_config import HydraConfig

        launcher = HydraConfig.get().launcher
        if "joblib" in str(launcher.get("_target_", "")):
            n_jobs = int(launcher.n_jobs)
    except (ValueError, AttributeError, KeyError):
        pass
    if n_jobs:
        cores = os.cpu_count() or 1
        n_jobs = cores if n_jobs < 0 else n_jobs
        torch.set_num_threads(max(1, cores // n_jobs))


def resolved_config(cfg: DictConfig) -> dict:
    """The job's config as plain data, as its record stores it (and resume compares it)."""
    return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)


def _new_record(cfg: DictConfig, job: Job) -> dict:
    return {
        "schema": records.SCHEMA_VERSION,
        "status": "running",
        "error": None,
        "job": {"name": job.name, "dir": str(job.dir), "sweep_dir": str(job.sweep_dir) if job.sweep_dir else None,
                "group": job.group, "overrides": job.overrides},
        "config": resolved_config(cfg),
        "provenance": {"code": records.code_version(), "packages": records.package_versions(),
                       "host": socket.gethostname(), "started": records.now(), "finished": None, "device": None},
        "seed": cfg.seed,
    }


def attack_name(cfg: DictConfig) -> str:
    """The attack's preset-style name, e.g. dgba_apgd or single_normal_pgd."""
    a = cfg.attack
    return preset_name(a.objective.value, a.optimizer.value, a.target_task)


def model_label(layout: Layout) -> str:
    """AS, IND or #<TreeMTL index> (the paper's model names)."""
    index = index_of(layout)
    return "AS" if index == 0 else "IND" if index == layout.num_tasks - 1 else f"#{index}"


def _surrogate(cfg: DictConfig, parts: Parts, progress: bool):
    """(surrogate model or None, its record entry) for `transfer.surrogate`; None when it is the target itself.

    The surrogate has the target's dataset, backbone, train config and seed; it is trained
    or loaded from the cache like any model (a user's model.checkpoint is the target's only).
    """
    text = cfg.transfer.surrogate
    if text is None:
        return None, None
    s_layout = resolve_surrogate(text, len(parts.tasks))
    entry = {"label": model_label(s_layout), "layout": str(s_layout), "layout_index": index_of(s_layout)}
    if s_layout == parts.layout:
        return None, {**entry, "source": "the target itself (white-box)"}
    s_cfg = copy.deepcopy(cfg)
    s_cfg.model.checkpoint = None
    model, source = trained_model(s_cfg, s_layout, parts.tasks, parts.train, parts.device, progress)
    return model, {**entry, "source": source["source"], "path": source["path"]}


@dataclass
class JobResult:
    """What :func:`execute` found; :func:`run` turns it into the record.

    record_fields: the record's model, threat, surrogate, weight_search (WeightedTotal only),
    attack, directions, metrics, arp and timings entries; tasks: the dataset's Tasks;
    examples: (clean, adversarial) image pairs [3,H,W] for the logger; eps: in [0,1] units;
    image_stats: the per-image statistics of the clean and attacked metrics (``stats.npz``).
    """

    record_fields: dict
    tasks: list
    examples: list
    eps: float
    image_stats: dict | None = None


def _attack_entry(cfg: DictConfig, attack, tasks) -> dict:
    """The record's "attack": names, eps in both units, and the loss each task's attack maximised."""
    a = cfg.attack
    ensemble = getattr(attack, "is_ensemble", False)
    maximised = attack.members([t.name for t in tasks])[0][1] if ensemble else attack
    return {"name": attack_name(cfg), "optimizer": a.optimizer.value,
            "objective": ENSEMBLE if ensemble else a.objective.value,
            "eps": float(cfg.eps), "eps_01": attack.eps, "steps": a.steps, "target_task": a.target_task,
            "weights": ":".join(f"{a.weights[t.name]:g}" for t in tasks) if a.weights else None,
            "losses": {t.name: maximised.loss_name(t.meter().kind) for t in tasks}}


def _width_text(model: dict) -> str:
    width = float(model.get("width", 1.0))
    return "" if width == 1.0 else f" x{width:g}"


def _model_entry(cfg: DictConfig, parts: Parts) -> dict:
    """The record's "model": for TreeMTL its backbone, layout, index, label and sizes; for a
    user's network (model._target_) its class, arguments, label and parameter count."""
    adversarial = adversarial_settings(cfg.train)
    common = {"train_attack": adversarial["attack"] if adversarial else None,
              "train_attack_eps": adversarial["eps"] if adversarial else None,
              "source": parts.source["source"], "path": parts.source["path"], "train": parts.source.get("train")}
    if cfg.model.get("_target_"):
        entry = custom_entry(cfg.model, parts.model)
        return {**entry, "backbone": entry["class"], "layout": None, "layout_index": None, "shared_blocks": None,
                "params_paper_M": None, **common}
    layout, backbone = parts.layout, cfg.backbone.name.value
    width = float(cfg.backbone.width)
    size = layout_size(layout, backbone, [t.channels for t in parts.tasks], cfg.backbone.head_width, width)
    return {"kind": "tree", "backbone": backbone, "width": width, "layout": str(layout),
            "layout_index": index_of(layout), "label": model_label(layout), "shared_blocks": layout.shared_blocks,
            "params_torch": size["params_torch"], "params_paper_M": size["params_paper_M"], **common}


def execute(cfg: DictConfig, device: torch.device, progress: bool = True, checked: Checked | None = None) -> JobResult:
    """Data, model, clean and attacked evaluation, ARP, for one composed config
    (`checked`: the config's :func:`~mtl_attack.preflight.preflight` result, when already made)."""
    timings: dict = {}
    fields: dict = {"timings": timings}
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)

    checked = checked or preflight(cfg)
    parts = prepare(cfg, device, progress=progress, with_model=False, checked=checked)
    tasks = parts.tasks
    timings["data_s"] = time.perf_counter() - start

    t0 = time.perf_counter()
    parts.model, parts.source = trained_model(cfg, parts.layout, tasks, parts.train, device, progress)
    timings["model_s"] = time.perf_counter() - t0
    model = parts.model
    fields["model"] = _model_entry(cfg, parts)
    # Black-box transfer: the attack queries only the surrogate; the target runs forward only.
    t0 = time.perf_counter()
    surrogate, surrogate_entry = _surrogate(cfg, parts, progress)
    fields["threat"] = "black-box" if surrogate is not None else "white-box"
    fields["surrogate"] = surrogate_entry
    if surrogate is not None:
        timings["surrogate_model_s"] = time.perf_counter() - t0
    crafting = surrogate if surrogate is not None else model

    eps = checked.eps
    if OBJECTIVES[cfg.attack.objective.value].needs_weights and not cfg.attack.weights:
        t0 = time.perf_counter()
        weights, table = calibrate_weights(cfg, crafting, parts.plain_train, tasks, device, eps, progress)
        timings["weight_search_s"] = time.perf_counter() - t0
        fields["weight_search"] = {"images": cfg.calibration_images, "split": "train (no augmentation)",
                                   "best": weights, "grid": table}
        cfg = copy.deepcopy(cfg)
        cfg.attack.weights = weights
    attack = build_attack_from_config(cfg.attack, eps=eps)
    fields["attack"] = _attack_entry(cfg, attack, tasks)
    t0 = time.perf_counter()
    result = evaluate(model, parts.test, tasks, device, batch_size=cfg.dataset.eval_batch_size, attack=attack,
                      progress=progress, keep_examples=4, craft_on=surrogate)
    timings["eval_s"] = time.perf_counter() - t0
    timings.update(result["timings"])

    # Fitted on un-augmented train images, so the baseline is the same in every run.
    const = ConstantModel(constant_predictions(parts.plain_train, tasks))
    trivial = evaluate(const, parts.test, tasks, torch.device("cpu"), batch_size=64, progress=False)["clean"]
    overall, per_task = arp(result["clean"], result["attacked"], tasks)
    fields["directions"] = {t.name: dict(t.metrics) for t in tasks}
    fields["metrics"] = {"clean": result["clean"], "attacked": result["attacked"], "trivial": trivial}
    fields["arp"] = {"overall": overall, "per_task": per_task}
    fields["below_trivial"] = below_trivial(result["clean"], trivial, tasks)
    t0 = time.perf_counter()
    fields["stats"] = _stats_entry(result["image_stats"], tasks, overall, per_task)
    image_stats = result["image_stats"]
    if "members" in result:
        members = result["members"]
        fields["ensemble"] = ensemble_entry(
            members["names"], members["winner"], image_stats["clean"], image_stats["attacked"],
            members["image_stats"], {t.name: SCORERS[t.meter().kind] for t in tasks}, fields["directions"],
            cfg.attack.ensemble_criterion.value)
        image_stats = {**image_stats, **{f"{MEMBER_PREFIX}{n}": s for n, s in members["image_stats"].items()}}
    timings["stats_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - start
    return JobResult(fields, tasks, result["examples"], attack.eps, image_stats)


def _stats_entry(image_stats: dict, tasks, overall: float, per_task: dict) -> dict:
    """The record's "stats": the per-image statistics file and ARP's bootstrap interval over the
    test images, each as [ARP on all images, lo, hi]."""
    scorers = {t.name: SCORERS[t.meter().kind] for t in tasks}
    directions = {t.name: dict(t.metrics) for t in tasks}
    runs = [(image_stats["clean"], image_stats["attacked"])]
    ci = stats.arp_intervals(runs, scorers, directions)
    return {"file": records.STATS_NAME, "images": stats.image_count(image_stats["clean"]),
            "n_boot": stats.N_BOOT, "level": stats.LEVEL, "interval": "percentile bootstrap over test images",
            "arp": {"overall": [overall, ci["overall"].lo, ci["overall"].hi],
                    "per_task": {t: [per_task[t], c.lo, c.hi] for t, c in ci["per_task"].items()}}}


def calibrate_weights(cfg: DictConfig, model, plain_train, tasks, device: torch.device, eps: float,
                      progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """WeightedTotal's weights by grid search (paper Table 16): the simplex point whose
    attack has the highest ARP on the first `calibration_images` images of `plain_train`.

    Returns (task -> weight, [{"weights": [...], "arp": ARP}, ...] over the grid).
    """
    from torch.utils.data import Subset

    from .attacks import grid_search_weights, weights_by_task
    calib = Subset(plain_train, range(min(cfg.calibration_images, len(plain_train))))
    names = [t.name for t in tasks]

    def evaluate_arp(w: tuple[float, ...]) -> float:
        acfg = cfg.attack.copy()
        acfg.weights = weights_by_task(w, names)
        res = evaluate(model, calib, tasks, device, batch_size=cfg.dataset.eval_batch_size,
                       attack=build_attack_from_config(acfg, eps=eps), progress=False)
        return arp(res["clean"], res["attacked"], tasks)[0]

    if progress:
        print(f"WeightedTotal: grid search over the weight simplex on {len(calib)} calibration images")
    best, table = grid_search_weights(evaluate_arp, len(tasks))
    return weights_by_task(best, names), [{"weights": list(r["weights"]), "arp": r["arp"]} for r in table]


def format_table(record: dict, tasks) -> str:
    """A per-task text table: every metric clean, attacked and trivial, then ARP per task and overall."""
    m = record["metrics"]
    lines = [f"{'task':<17} {'metric':<13} {'dir':>3} {'clean':>9} {'attacked':>9} {'trivial':>9}"]
    for t in tasks:
        for metric, higher in t.metrics.items():
            lines.append(f"{t.name:<17} {metric:<13} {'+' if higher else '-':>3} "
                         f"{m['clean'][t.name][metric]:>9.3f} {m['attacked'][t.name][metric]:>9.3f} "
                         f"{m['trivial'][t.name][metric]:>9.3f}")
        lines.append(f"{t.name:<17} {'ARP':<13} {'':>3} {'':>9} {record['arp']['per_task'][t.name]:>9.2f}"
                     + _interval_text(record, t.name))
        weak = (record.get("below_trivial") or {}).get(t.name)
        if weak:
            lines.append(f"{t.name:<17} ! the clean model is no better than the trivial predictor on "
                         f"{', '.join(weak)}: this task's ARP means little")
    a = record["attack"]
    model = record["model"]
    extra = f", adversarially trained with {model['train_attack']}" if model.get("train_attack") else ""
    if record.get("threat") == "black-box":
        extra += f", black-box from surrogate {record['surrogate']['label']}"
    lines.append(f"overall ARP {record['arp']['overall']:.2f}{_interval_text(record)}  ({a['name']}, "
                 f"eps {a['eps']:g}/255, model {model['label']} {model['backbone']}{_width_text(model)}{extra})")
    return "\n".join(lines)


def _interval_text(record: dict, task: str | None = None) -> str:
    """"  [lo, hi]" of the record's bootstrap interval (overall, or of `task`), "" without one."""
    ci = (record.get("stats") or {}).get("arp")
    if not ci:
        return ""
    _, lo, hi = ci["overall"] if task is None else ci["per_task"][task]
    level = record["stats"].get("level", stats.LEVEL)
    return f"  [{lo:.2f}, {hi:.2f}]" + (f" ({level:.0%} CI over {record['stats']['images']} test images)"
                                        if task is None else "")


def update_results_table(sweep_dir: Path) -> Path:
    """Regather every record of the sweep into sweep_dir/results.csv (locked: jobs may finish together)."""
    from filelock import FileLock

    path = Path(sweep_dir) / records.TABLE_NAME
    with FileLock(str(path) + ".lock"):
        records.write_table(records.gather([sweep_dir]), path)
    return path


def discard_job_dir(job: Job) -> None:
    """Remove a single run's folder when it holds only what Hydra wrote before the job
    (.hydra/ and the log file), then its empty parents up to the launch folder."""
    import shutil

    folder = Path(job.dir)
    if not folder.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in folder.iterdir()):
        return
    shutil.rmtree(folder, ignore_errors=True)
    stop = Path.cwd().resolve()
    for parent in folder.parents:
        if parent == stop or stop not in parent.parents:
            break
        try:
            parent.rmdir()  # only if empty
        except OSError:
            break


def _to_log_files(text: str) -> None:
    """Write `text` to the job's log file (Hydra's file handler), not again to the console."""
    import logging

    record = logging.LogRecord("mtl_attack", logging.INFO, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _failed_record(cfg: DictConfig, job: Job, err: BaseException) -> dict:
    record = _new_record(cfg, job)
    record["status"] = "failed"
    record["error"] = f"{type(err).__name__}: {err}"
    record["provenance"]["finished"] = records.now()
    return record


def run(cfg: DictConfig, job: Job | None = None, progress: bool = True) -> dict:
    """Run one job described by the composed config; returns its record.

    The config is checked first (:func:`~mtl_attack.preflight.preflight`): a bad value
    stops a single run before anything is written (a UserError, one line), and fails
    only its own job in a sweep (a failed record, the others go on).
    In a sweep, a job whose folder already holds a finished record made with the same
    settings is skipped (force=true reruns it; a record made with other settings, e.g. an
    edited experiment file, or a damaged one is rerun), and a failing job is recorded as
    failed without stopping the others. A single run re-raises the error after recording it.
    """
    from .logger import make_logger, remove_unfinished_runs

    floats.flush_denormals()  # before torch's first parallel op where this process starts here
    job = job or job_from_hydra(cfg)
    record_path = job.dir / records.RECORD_NAME
    state = records.record_state(job.dir)
    if job.multirun and not cfg.force and state == "done":
        old = records.read_record(record_path)
        changed = records.config_changes(old.get("config") or {}, resolved_config(cfg))
        if not changed:
            print(f"skip {job.name}: finished record in {job.dir} (force=true reruns it)")
            return old
        more = ", ..." if len(changed) > 5 else ""
        print(f"rerun {job.name}: its finished record was made with other settings "
              f"({', '.join(changed[:5])}{more})")
    elif state == "damaged":
        print(f"{records.RECORD_NAME} in {job.dir} is damaged; rerunning")
    try:
        checked = preflight(cfg)
    except UserError as err:
        if not job.multirun:
            discard_job_dir(job)
            raise
        record = _failed_record(cfg, job, err)
        atomic.write_json(record_path, record)
        if job.sweep_dir is not None:
            update_results_table(job.sweep_dir)
        print(f"job {job.name} failed: {err}")
        return record
    _threads_for_launcher(cfg)
    for stale in remove_unfinished_runs(job.dir):
        print(f"removed the unfinished W&B run {stale} of an earlier, interrupted try of this job")
    record = _new_record(cfg, job)
    result: JobResult | None = None
    logger = make_logger(cfg.logger, job.dir, name=job.name, group=job.group, config=record["config"])
    try:
        record["provenance"]["device"] = records.machine_label(checked.device, torch.get_num_threads())
        result = execute(cfg, checked.device, progress=progress, checked=checked)
        record.update(result.record_fields)
        records.write_image_stats(job.dir / records.STATS_NAME, result.image_stats,
                                  {t.name: t.meter().kind for t in result.tasks})
        if result.examples:
            atomic.write_bytes(job.dir / PREDICTIONS_NAME, prediction_grid(
                result.examples, result.tasks, title=f"{attack_name(cfg)}, eps {cfg.eps:g}/255"))
            record["predictions"] = PREDICTIONS_NAME
        record["status"] = "done"
    except Exception as err:  # recorded, then re-raised for single runs
        record["status"] = "failed"
        record["error"] = f"{type(err).__name__}: {err}"
        atomic.write_text(job.dir / "error.txt", traceback.format_exc())
        if not job.multirun:
            raise
        print(f"job {job.name} failed: {record['error']}")
    finally:
        record["provenance"]["finished"] = records.now()
        atomic.write_json(record_path, record)
        try:
            if result is not None:
                logger.log_record(record, record["directions"])
                logger.log_examples([(e["image"], e["adversarial"]) for e in result.examples], result.eps)
                if record.get("predictions"):
                    logger.log_picture(PREDICTIONS_KEY, job.dir / PREDICTIONS_NAME,
                                       "rows: test images; per task: truth | clean | attacked prediction")
        finally:
            logger.finish(record["status"], record["error"])
        if job.sweep_dir is not None:
            update_results_table(job.sweep_dir)
    if result is not None:
        table = format_table(record, result.tasks)
        print(table)
        _to_log_files(table)
    return record
