"""Attack throughput: every attack measured against the bare step on the same model, batch and settings.

An attack step costs one forward and one input-gradient backward pass; that
pair, run bare (``bare_step``: the tasks' losses summed, the gradient with
respect to the input, nothing else), is the limit each attack is measured
against. For every setting (layout x precision x channels_last x compile) the
benchmark times, round-robin so that a busy machine slows every row alike:

- ``bare_fwd``: forward and losses, no gradient;
- ``bare_step``: forward, losses and the input-gradient backward;
- ``<objective>_<optimizer>``: each optimizer with Total and with DGBA (fused:
  one backward per step);
- ``dgba_pgd_per_task``: DGBA-PGD with one backward per task (the authors'
  way), the reference for the fused one.

Throughput is in image-steps per second (batch x steps / seconds; FGSM takes
one step), the median of the repeats; ``ratio`` is a row's throughput over the
bare step's in the same setting (so the bare step's ratio is 1). Peak GPU
memory is per row (None on a CPU). With ``compile`` the model is compiled once
per setting and the attacks run on the compiled model (what
``attack.compile=true`` does, without recompiling per row).

The ARP check (:func:`arp_check`) attacks the same test images of the same
trained model at every precision and compares each ARP with fp32's
(:func:`arp_agreement`): reduced precision may only be a default when it
attacks as well (within 2%, relative).
"""
from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch

from .attacks import DGBA, Total, build_attack, preset_name
from .attacks.attack import as_precision, compile_model, eval_mode, execution
from .attacks.build import OPTIMIZERS
from .attacks.config import Precision
from .batches import attack_inputs
from .config import eps_to_unit
from .data.registry import config_tasks
from .models.layout import all_shared, independent, layout_by_index
from .models.tree import TreeMTLModel
from .records import machine_label

__all__ = ["BenchSpec", "row_specs", "synthetic_batch", "run_bench", "format_table", "write_json"]

SCHEMA_VERSION = 1
# The speed targets (GPU ones apply on an H100/H200; the CPU one to the quick run).
TARGETS = {"dgba_vs_bare": 0.90, "fused_vs_per_task": 1.25, "best_vs_tf32": 1.8, "cpu_quick_attack_vs_bare": 0.80}
# The objectives benchmarked: the paper's baseline and its method.
OBJECTIVES = (Total.name, DGBA.name)


@dataclass
class BenchSpec:
    """What to measure. Defaults are paper-shaped: NYUv2 321x321, ResNet34, heads 1024 wide, batch 16."""

    dataset: str = "nyuv2"
    size: int = 321
    backbone: str = "resnet34"
    width: float = 1.0  # backbone channel scale
    head_width: int = 1024
    layouts: list[str] = field(default_factory=lambda: ["all_shared", "independent"])
    batch: int = 16
    device: str = "auto"
    precisions: list[str] = field(default_factory=lambda: ["fp32", "tf32", "bf16"])
    channels_last: list[bool] = field(default_factory=lambda: [False, True])
    compile: list[bool] = field(default_factory=lambda: [False, True])
    optimizers: list[str] = field(default_factory=lambda: list(OPTIMIZERS))
    steps: int = 10
    repeats: int = 3
    warmup: int = 1
    eps: float = 4.0  # pixel units out of 255
    seed: int = 0
    threads: int | None = None  # torch intra-op threads (None: torch's default)
    memory_check: bool = True  # GPU only: peak memory of DGBA-APGD at steps and 2*steps

    def validate(self) -> None:
        """ValueError (one line, naming the fix) for settings that cannot run."""
        for name in ("size", "head_width", "batch", "steps", "repeats"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be >= 0, got {self.warmup}")
        for p in self.precisions:
            as_precision(p)
        known = list(OPTIMIZERS)
        bad = [o for o in self.optimizers if o not in known]
        if bad:
            raise ValueError(f"unknown optimizers {bad}; choose from {known}")
        if not self.layouts:
            raise ValueError("give at least one --layout (all_shared, independent or a layout index)")
        if not 0 < self.eps <= 255:
            raise ValueError(f"--eps is in pixel units out of 255 and must be in (0, 255], got {self.eps}")


def row_specs(optimizers: Sequence[str]) -> list[dict]:
    """The rows of one setting: bare_fwd, bare_step, each optimizer x (total, dgba), dgba_pgd_per_task.

    The fused-vs-per-task pair always uses PGD (dgba_pgd is added if PGD is not listed);
    no optimizers: the two bare rows only.
    """
    rows = [{"row": "bare_fwd", "kind": "bare"}, {"row": "bare_step", "kind": "bare"}]
    if not optimizers:
        return rows
    pairs = [(opt, obj) for opt in optimizers for obj in OBJECTIVES]
    if "pgd" not in optimizers:
        pairs.append(("pgd", "dgba"))
    for opt, obj in pairs:
        rows.append({"row": preset_name(obj, opt), "kind": "attack", "optimizer": opt, "objective": obj, "fused": True})
    rows.append({"row": "dgba_pgd_per_task", "kind": "attack", "optimizer": "pgd", "objective": "dgba",
                 "fused": False})
    return rows


def synthetic_batch(dataset: str, batch: int, size: int, device: torch.device | str = "cpu", seed: int = 0) -> dict:
    """A batch shaped like the datasets' (timing does not depend on the values).

    Returns {"image": [B,3,S,S] in [0,1], "targets": {task: ...}, "masks": {task: bool [B,S,S]}} with the
    conventions of mtl_attack.tasks (segmentation ids with ~10% ignore 255, unit normals, positive depth).
    """
    gen = torch.Generator().manual_seed(seed)
    tasks = config_tasks(dataset)
    b, s = batch, size
    targets, masks = {}, {}
    for t in tasks:
        if t.kind == "segmentation":
            seg = torch.randint(0, t.channels, (b, s, s), generator=gen)
            seg[torch.rand(b, s, s, generator=gen) < 0.1] = 255
            targets[t.name], masks[t.name] = seg, seg != 255
        elif t.kind == "normal":
            n = torch.nn.functional.normalize(torch.randn(b, 3, s, s, generator=gen), dim=1)
            targets[t.name], masks[t.name] = n, torch.ones(b, s, s, dtype=torch.bool)
        else:
            low = 0.5 if t.kind == "depth" else 0.0
            targets[t.name] = low + torch.rand(b, t.channels, s, s, generator=gen) * 5
            masks[t.name] = torch.ones(b, s, s, dtype=torch.bool)
    out = {"image": torch.rand(b, 3, s, s, generator=gen), "targets": targets, "masks": masks}
    return {"image": out["image"].to(device), "targets": {k: v.to(device) for k, v in targets.items()},
            "masks": {k: v.to(device) for k, v in masks.items()}}


def _layout(name: str, num_tasks: int):
    if name == "all_shared":
        return all_shared(num_tasks)
    if name == "independent":
        return independent(num_tasks)
    try:
        return layout_by_index(num_tasks, int(name))
    except ValueError as err:
        raise ValueError(f"unknown layout {name!r}: use all_shared, independent or a layout index ({err})") from None


class _Counting(torch.nn.Module):
    """The model, counting its forward passes (all, and those with grad enabled)."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.forwards = 0
        self.grad_forwards = 0

    def forward(self, x):
        self.forwards += 1
        self.grad_forwards += int(torch.is_grad_enabled())
        return self.net(x)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda but torch sees no GPU; use --device cpu")
    return device


class _Setting:
    """One (layout, precision, channels_last, compile) setting: the model to call and the timed row functions."""

    def __init__(self, model, net, precision: Precision, channels_last: bool, batch: dict, tasks, spec: BenchSpec):
        self.model, self.precision, self.channels_last = model, precision, channels_last
        self.compiled = net is not model
        self.counter = _Counting(net)
        self.x = batch["image"]
        self.targets, self.losses = attack_inputs(batch, tasks)
        self.spec = spec
        self.eps = eps_to_unit(spec.eps)

    def _total(self, forward, x):
        out = forward(x)
        return sum(fn(out[t], self.targets[t]).sum() for t, fn in self.losses.items())

    def run(self, row: dict) -> int:
        """One run of a row; returns the image-steps it did."""
        spec, x = self.spec, self.x
        if row["kind"] == "bare":
            with execution(self.counter, self.precision, self.channels_last) as forward:
                for _ in range(spec.steps):
                    if row["row"] == "bare_fwd":
                        with torch.no_grad():
                            self._total(forward, x)
                    else:
                        xv = x.detach().requires_grad_(True)
                        torch.autograd.grad(self._total(forward, xv), xv)
            return x.shape[0] * spec.steps
        attack = build_attack(row["optimizer"], row["objective"], eps=self.eps, steps=spec.steps,
                              fused=row["fused"], precision=self.precision.value,
                              channels_last=self.channels_last)
        attack(self.counter, x, self.targets, self.losses)
        return x.shape[0] * (1 if row["optimizer"] == "fgsm" else spec.steps)


def _timed(fn: Callable[[], int], device: torch.device) -> tuple[float, float | None, int, float | None]:
    """(wall seconds, CPU seconds of this process or None on a GPU, image-steps, peak GPU MiB or None)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    _sync(device)
    t0, c0 = time.perf_counter(), time.process_time()
    work = fn()
    _sync(device)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
    return seconds, (cpu if device.type == "cpu" else None), work, peak


def _oom_message(spec: BenchSpec) -> str:
    return f"out of GPU memory at batch {spec.batch}; lower --batch (e.g. --batch {max(1, spec.batch // 2)})"


def _measure_setting(setting: _Setting, rows: list[dict], spec: BenchSpec, device: torch.device,
                     log: Callable[[str], None]) -> list[dict]:
    """Round-robin timing of every row: warmup passes, then `repeats` timed passes."""
    results = {r["row"]: {**r, "seconds": [], "cpu_seconds": [], "peak_mib": None, "error": None} for r in rows}
    for rep in range(spec.warmup + spec.repeats):
        for r in rows:
            res = results[r["row"]]
            if res["error"]:
                continue
            before = (setting.counter.forwards, setting.counter.grad_forwards)
            try:
                seconds, cpu, work, peak = _timed(lambda: setting.run(r), device)
            except torch.OutOfMemoryError:
                res["error"] = _oom_message(spec)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                log(f"  {r['row']}: {res['error']}")
                continue
            except Exception as err:
                if not setting.compiled:
                    raise  # eager rows have no excuse: a bug
                res["error"] = f"failed compiled: {type(err).__name__}: {' '.join(str(err).split())[:200]}"
                log(f"  {r['row']}: {res['error']}")
                continue
            if rep == 0:
                steps = work / spec.batch
                res["forwards_per_step"] = (setting.counter.forwards - before[0]) / steps
                res["grad_forwards_per_step"] = (setting.counter.grad_forwards - before[1]) / steps
            res["image_steps"] = work
            if rep >= spec.warmup:
                res["seconds"].append(seconds)
                if cpu is not None:
                    res["cpu_seconds"].append(cpu)
                if peak is not None:
                    res["peak_mib"] = max(res["peak_mib"] or 0.0, peak)
                log(f"  {r['row']:<20} {work / seconds:9.2f} image-steps/s  ({seconds:.3f} s)")
    out = []
    for r in rows:
        res = results[r["row"]]
        if res["seconds"]:
            res["median_s"] = statistics.median(res["seconds"])
            res["image_steps_per_s"] = res["image_steps"] / res["median_s"]
        else:
            res["median_s"] = res["image_steps_per_s"] = None
        out.append(res)
    bare = results["bare_step"]
    for res in out:
        ips = res["image_steps_per_s"]
        res["ratio"] = ips / bare["image_steps_per_s"] if ips is not None and bare["image_steps_per_s"] else None
        # The same ratio repeat by repeat (rows of one repeat run minutes apart at most), then the
        # median: steadier than the ratio of medians when the machine's load drifts.
        pairs = [(res["image_steps"] / t) / (bare["image_steps"] / tb)
                 for t, tb in zip(res["seconds"], bare["seconds"])] if res["seconds"] and bare["seconds"] else []
        res["ratio_paired"] = statistics.median(pairs) if pairs else None
        # CPU only: throughput per second of this process's CPU time, which other processes on a
        # shared machine barely change (with one torch thread; spinning threads inflate it).
        if res["cpu_seconds"] and bare["cpu_seconds"]:
            res["image_steps_per_cpu_s"] = res["image_steps"] / statistics.median(res["cpu_seconds"])
            res["ratio_cpu"] = res["image_steps_per_cpu_s"] / (bare["image_steps"]
                                                               / statistics.median(bare["cpu_seconds"]))
        else:
            res["image_steps_per_cpu_s"] = res["ratio_cpu"] = None
    return out


def _memory_flat(setting: _Setting, spec: BenchSpec, device: torch.device) -> dict | None:
    """Peak GPU memory of DGBA-APGD at `steps` and `2*steps` (flat: the longer run needs no more)."""
    if device.type != "cuda" or not spec.memory_check:
        return None
    peaks = []
    for steps in (spec.steps, 2 * spec.steps):
        attack = build_attack("apgd", "dgba", eps=setting.eps, steps=steps, precision=setting.precision.value,
                              channels_last=setting.channels_last)

        def run() -> int:
            attack(setting.counter, setting.x, setting.targets, setting.losses)
            return 0

        peaks.append(_timed(run, device)[3])
    return {"steps": [spec.steps, 2 * spec.steps], "peak_mib": peaks, "flat": peaks[1] <= peaks[0] * 1.01 + 1.0}


def run_bench(spec: BenchSpec, log: Callable[[str], None] | None = None) -> dict:
    """Measure every setting of `spec`; returns the JSON-ready result (see module docstring).

    {"schema", "device", "torch", "spec", "created", "groups": [{"layout", "precision",
    "channels_last", "compile", "status", "compile_s", "rows": [...], "fused_vs_per_task",
    "memory_flat"}], "summary": {...}, "checks": [...]}. Each row: row, kind, optimizer,
    objective, fused, seconds (timed repeats), median_s, image_steps_per_s, ratio (to the
    bare step of the same group), ratio_paired (median over repeats of the same ratio within
    each repeat), cpu_seconds, image_steps_per_cpu_s and ratio_cpu (CPU runs: per second of
    this process's CPU time), peak_mib, forwards_per_step, grad_forwards_per_step, error.
    """
    log = log or (lambda msg: None)
    spec.validate()
    device = _device(spec.device)
    threads = torch.get_num_threads()
    if spec.threads:
        torch.set_num_threads(spec.threads)
    try:
        return _run_bench(spec, device, log)
    finally:
        torch.set_num_threads(threads)


def _run_bench(spec: BenchSpec, device: torch.device, log: Callable[[str], None]) -> dict:
    tasks = config_tasks(spec.dataset)
    batch = synthetic_batch(spec.dataset, spec.batch, spec.size, device, spec.seed)
    rows = row_specs(spec.optimizers)
    groups = []
    for layout_name in spec.layouts:
        layout = _layout(layout_name, len(tasks))
        model = TreeMTLModel(spec.backbone, layout, [t.name for t in tasks], [t.channels for t in tasks],
                             head_width=spec.head_width, seed=spec.seed, width=spec.width).to(device).eval()
        for precision in spec.precisions:
            precision = as_precision(precision)
            for channels_last in spec.channels_last:
                for compiled in spec.compile:
                    group = {"layout": layout_name, "precision": precision.value, "channels_last": channels_last,
                             "compile": compiled, "status": "ok", "compile_s": None, "rows": [],
                             "fused_vs_per_task": None, "memory_flat": None}
                    groups.append(group)
                    log(f"{layout_name} {precision.value} channels_last={channels_last} compile={compiled}")
                    with eval_mode(model):
                        _run_group(group, model, precision, channels_last, compiled, batch, tasks, rows, spec,
                                   device, log)
        del model
        if device.type == "cuda":
            torch.cuda.empty_cache()
    result = {"schema": SCHEMA_VERSION, "device": machine_label(device, torch.get_num_threads()),
              "torch": torch.__version__,
              "spec": asdict(spec), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "groups": groups}
    result["summary"] = summarize(groups)
    result["checks"] = checks(result["summary"], groups, device.type)
    return result


def _run_group(group, model, precision, channels_last, compiled, batch, tasks, rows, spec, device, log) -> None:
    net = model
    if compiled:
        torch._dynamo.reset()  # a fresh cache per setting: no silent fallback at the recompile limit
        net = compile_model(model)
    setting = _Setting(model, net, precision, channels_last, batch, tasks, spec)
    try:
        # First calls build cuDNN/oneDNN plans (and compile): never timed.
        t0 = time.perf_counter()
        setting.run({"row": "bare_fwd", "kind": "bare"})
        setting.run({"row": "bare_step", "kind": "bare"})
        group["compile_s"] = time.perf_counter() - t0 if compiled else None
    except torch.OutOfMemoryError:
        group["status"] = f"failed: {_oom_message(spec)}"
        log(f"  {group['status']}")
        return
    except Exception as err:  # compile (or a precision) that does not work here: recorded, others go on
        if not compiled and not isinstance(err, (RuntimeError, NotImplementedError)):
            raise  # a bug, not a missing feature
        group["status"] = f"failed: {type(err).__name__}: {' '.join(str(err).split())[:300]}"
        log(f"  {group['status']}")
        return
    group["rows"] = _measure_setting(setting, rows, spec, device, log)
    by_row = {r["row"]: r for r in group["rows"]}
    if "dgba_pgd_per_task" in by_row:
        fused, per_task = by_row["dgba_pgd"]["image_steps_per_s"], by_row["dgba_pgd_per_task"]["image_steps_per_s"]
        group["fused_vs_per_task"] = fused / per_task if fused and per_task else None
    if not spec.optimizers:
        return
    try:
        group["memory_flat"] = _memory_flat(setting, spec, device)
    except torch.OutOfMemoryError:
        group["memory_flat"] = {"error": _oom_message(spec)}


def _key(group: dict) -> str:
    return (f"{group['precision']}" + ("+cl" if group["channels_last"] else "")
            + ("+compile" if group["compile"] else ""))


def summarize(groups: list[dict]) -> dict:
    """Per layout: each setting's bare step and DGBA rows against the TF32 (plain) setting, and the best.

    {layout: {"settings": {key: {"bare_step", "dgba_min_ratio", "dgba_apgd", "fused_vs_per_task",
    "bare_step_vs_tf32"}}, "best": key, "best_vs_tf32": float or None}}; key like "bf16+cl+compile".
    """
    out: dict = {}
    for g in groups:
        if not g["rows"]:
            continue
        rows = {r["row"]: r for r in g["rows"]}
        dgba = [r["ratio"] for r in g["rows"] if r.get("objective") == "dgba" and r.get("fused")
                and r["ratio"] is not None]
        entry = {"bare_step": rows["bare_step"]["image_steps_per_s"],
                 "dgba_min_ratio": min(dgba) if dgba else None,
                 "dgba_apgd": rows.get("dgba_apgd", {}).get("image_steps_per_s"),
                 "dgba_apgd_ratio": rows.get("dgba_apgd", {}).get("ratio"),
                 "dgba_apgd_ratio_cpu": rows.get("dgba_apgd", {}).get("ratio_cpu"),
                 "fused_vs_per_task": g["fused_vs_per_task"]}
        out.setdefault(g["layout"], {"settings": {}})["settings"][_key(g)] = entry
    for layout, info in out.items():
        settings = info["settings"]
        base = settings.get("tf32", {}).get("bare_step")
        for entry in settings.values():
            entry["bare_step_vs_tf32"] = entry["bare_step"] / base if base and entry["bare_step"] else None
        valid = {k: v for k, v in settings.items() if v["bare_step"]}
        best = max(valid, key=lambda k: valid[k]["bare_step"]) if valid else None
        info["best"] = best
        info["best_vs_tf32"] = settings[best]["bare_step_vs_tf32"] if best else None
    return out


def checks(summary: dict, groups: list[dict], device_type: str) -> list[dict]:
    """The speed targets that this run measured, as {"check", "where", "value", "target", "ok"}."""
    out = []

    def add(check, where, value, target):
        if value is not None:  # rows this run did not time say nothing
            out.append({"check": check, "where": where, "value": value, "target": target, "ok": value >= target})

    for layout, info in summary.items():
        for key, entry in info["settings"].items():
            add("every optimizer with DGBA / bare step (GPU target)", f"{layout} {key}", entry["dgba_min_ratio"],
                TARGETS["dgba_vs_bare"])
            if layout == "all_shared":
                add("fused DGBA / per-task backward (GPU target)", f"{layout} {key}", entry["fused_vs_per_task"],
                    TARGETS["fused_vs_per_task"])
            if device_type == "cpu" and key == "fp32":
                add("DGBA-APGD / bare step (CPU target, wall time)", f"{layout} {key}", entry["dgba_apgd_ratio"],
                    TARGETS["cpu_quick_attack_vs_bare"])
                add("DGBA-APGD / bare step (CPU target, CPU time)", f"{layout} {key}",
                    entry["dgba_apgd_ratio_cpu"], TARGETS["cpu_quick_attack_vs_bare"])
        add("best setting's bare step / TF32's (GPU target)", f"{layout} best={info['best']}", info["best_vs_tf32"],
            TARGETS["best_vs_tf32"])
    for g in groups:
        if g.get("memory_flat") and "flat" in g["memory_flat"]:
            out.append({"check": "peak memory flat across steps (DGBA-APGD, GPU)", "where": f"{g['layout']} {_key(g)}",
                        "value": g["memory_flat"]["peak_mib"], "target": "steps vs 2*steps",
                        "ok": g["memory_flat"]["flat"]})
    return out


def _fmt(value, spec: str) -> str:
    """format(value, spec), or a dash of the same width for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        width = "".join(ch for ch in spec.split(".")[0] if ch.isdigit())
        return "-".rjust(int(width) if width else 1)
    return format(value, spec)


def format_table(result: dict) -> str:
    """The result as text: one table per setting (image-steps/s, x bare step, peak MiB, forwards/step),
    then the summary against TF32 and the checks."""
    spec = result["spec"]
    lines = [f"device: {result['device']} | torch {result['torch']}",
             f"{spec['dataset']} {spec['size']}x{spec['size']}, {spec['backbone']} width {spec.get('width', 1.0):g} "
             f"heads {spec['head_width']}, "
             f"batch {spec['batch']}, {spec['steps']} steps, median of {spec['repeats']} "
             f"(warmup {spec['warmup']}), eps {spec['eps']:g}/255"]
    for g in result["groups"]:
        lines.append("")
        lines.append(f"[{g['layout']} | {g['precision']} | channels_last {'on' if g['channels_last'] else 'off'} | "
                     f"compile {'on' if g['compile'] else 'off'}]"
                     + (f"  compile {g['compile_s']:.1f} s" if g.get("compile_s") else ""))
        if g["status"] != "ok":
            lines.append(f"  {g['status']}")
            continue
        lines.append(f"  {'row':<20} {'img-steps/s':>11} {'x bare':>7} {'paired':>7} {'per CPU s':>9} "
                     f"{'x bare':>7} {'peak MiB':>9} {'fwd/step':>8}")
        for r in g["rows"]:
            if r["error"]:
                lines.append(f"  {r['row']:<20} {r['error']}")
                continue
            lines.append(f"  {r['row']:<20} {_fmt(r['image_steps_per_s'], '11.2f')} {_fmt(r['ratio'], '7.3f')} "
                         f"{_fmt(r['ratio_paired'], '7.3f')} {_fmt(r.get('image_steps_per_cpu_s'), '9.2f')} "
                         f"{_fmt(r.get('ratio_cpu'), '7.3f')} {_fmt(r['peak_mib'], '9.0f')} "
                         f"{_fmt(r.get('forwards_per_step'), '8.2f')}")
        lines.append(f"  fused DGBA / per-task backward (PGD): {_fmt(g['fused_vs_per_task'], '.3f')}")
        if g.get("memory_flat") and "peak_mib" in g["memory_flat"]:
            m = g["memory_flat"]
            lines.append(f"  peak MiB DGBA-APGD {m['steps'][0]} vs {m['steps'][1]} steps: "
                         f"{m['peak_mib'][0]:.0f} vs {m['peak_mib'][1]:.0f} ({'flat' if m['flat'] else 'GROWS'})")
    lines.append("")
    lines.append("summary (bare step, image-steps/s; x tf32 = against the plain TF32 setting of the layout)")
    for layout, info in result["summary"].items():
        for key, e in info["settings"].items():
            lines.append(f"  {layout:<12} {key:<18} bare {_fmt(e['bare_step'], '9.2f')}  "
                         f"x tf32 {_fmt(e['bare_step_vs_tf32'], '6.2f')}  DGBA-APGD x bare "
                         f"{_fmt(e['dgba_apgd_ratio'], '5.3f')}  min DGBA x bare {_fmt(e['dgba_min_ratio'], '5.3f')}")
        lines.append(f"  {layout:<12} best: {info['best']} (x tf32 {_fmt(info['best_vs_tf32'], '.2f')})")
    lines.append("")
    lines.append("checks")
    for c in result["checks"]:
        value = c["value"]
        shown = _fmt(value, ".3f") if isinstance(value, float) or value is None else str(value)
        verdict = "ok" if c["ok"] else "MISSED"
        lines.append(f"  {verdict:<6} {c['check']} [{c['where']}]: {shown} (target {c['target']})")
    if result.get("arp_check"):
        a = result["arp_check"]
        lines.append("")
        lines.append(f"ARP check: {a['attack']} eps {a['eps']:g}/255 on {a['images']} test images of "
                     f"{a['model']} ({a['device']})")
        for p, e in a["precisions"].items():
            rel = "reference" if p == "fp32" else (f"{e['rel_diff'] * 100:+.2f}% "
                                                   f"({'within' if e['ok'] else 'OUTSIDE'} "
                                                   f"{a['tolerance'] * 100:g}%)")
            lines.append(f"  {p:<5} ARP {e['arp']:.3f}  {rel}  attack {e['attack_s']:.1f} s")
    return "\n".join(lines)


def write_json(result: dict, path: str | Path) -> Path:
    """Write the result as JSON atomically."""
    from . import atomic

    return atomic.write_json(path, result)
