"""Training a TreeMTL model, and the content-keyed model cache around it."""
from __future__ import annotations

import functools
import math
import os
import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from . import floats, records
from .batches import out_of_memory_hint, to_device
from .cache import build_once, content_key
from .config import check_eps, eps_to_unit
from .data.formats import get_format
from .data.registry import selected_tasks, task_names as declared_task_names
from .errors import UserError
from .models.build import MODEL_VERSION


def _batches(dataset, batch_size: int, seed: int, num_workers: int = 0) -> Iterator[dict]:
    """Endless shuffled batches; epoch order depends only on the seed. With workers, batches are
    made in other processes while the model trains (kept across epochs, so each keeps its
    decoded-file memo); their augmentation draws come from per-worker generators seeded from
    `seed`, so the worker count changes the draws (it is in the model's cache key)."""
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                        generator=gen, num_workers=num_workers, persistent_workers=num_workers > 0)
    while True:
        yield from loader


def multitask_loss(outputs: dict, batch: dict, tasks) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over tasks (weights 1, as the paper) of each task's batch-mean per-sample loss."""
    per_task = {t.name: t.loss(outputs[t.name], batch["targets"][t.name], batch["masks"][t.name]).mean() for t in tasks}
    return sum(per_task.values()), {k: v.item() for k, v in per_task.items()}


def lr_factor(it: int, schedule: str, iterations: int, step: int, gamma: float, warmup: int = 0) -> float:
    """The learning rate at iteration `it` (0-based) as a multiple of the base rate.

    "step": gamma ** (it // step). "cosine": it / warmup during the warm-up, then
    0.5 * (1 + cos(pi * progress)) with progress from 0 to 1 over the remaining iterations.
    """
    schedule = getattr(schedule, "value", schedule)  # the schema's LRSchedule or its name
    if schedule == "step":
        return gamma ** (it // step)
    if schedule != "cosine":
        raise ValueError(f"unknown train.schedule {schedule!r}; use step or cosine")
    if it < warmup:
        return (it + 1) / warmup
    progress = (it - warmup) / max(1, iterations - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


@out_of_memory_hint("train.batch_size", "cfg.batch_size")
def train_model(model, dataset, tasks, cfg: DictConfig, device: torch.device, seed: int,
                progress: bool = True, step_hook: Callable[[int, dict], None] | None = None,
                num_workers: int = 0) -> dict:
    """Train `model` in place with Adam and a step LR schedule (SPEC "Models").

    cfg: the train config (iterations, batch_size, lr, betas, weight_decay, lr_step, lr_gamma,
    and `adversarial`, see :func:`adversarial_settings`). With an adversarial attack each
    iteration takes a clean step (unless clean_step is off) and then a step on adversarial
    examples of the same batch made against the current weights (paper Alg. 2); the LR
    schedule counts iterations, not optimizer steps.
    num_workers: processes that make the batches (0: this one).
    Returns {"seconds", "iterations", "final_losses": {task: mean loss of the last 20 iterations}}
    plus, when adversarial, "adversarial": {the settings, "final_losses" on adversarial
    images, "attack_s", "mean_attack_steps" (FAT: mean steps taken per sample)}.
    """
    from .progress import progress as progress_bar

    adv = adversarial_settings(cfg)
    attack = None
    if adv is not None:
        attack = _training_attack(adv, [t.name for t in tasks])
    torch.manual_seed(seed)
    fmt = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(device, memory_format=fmt).train()
    # The fused kernel updates every parameter in one pass (5x faster than the per-tensor loop on CPUs).
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                           fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(
        lr_factor, schedule=cfg.schedule.value, iterations=cfg.iterations, step=cfg.lr_step,
        gamma=cfg.lr_gamma, warmup=cfg.warmup))
    recent: list[dict] = []
    recent_adv: list[dict] = []
    attack_s, attack_steps = 0.0, []
    start = time.perf_counter()
    batches = _batches(dataset, cfg.batch_size, seed, num_workers)
    bar = progress_bar(range(cfg.iterations), desc="adv-train" if adv else "train", enabled=progress)
    for it in bar:
        batch = to_device(next(batches), device)
        batch["image"] = batch["image"].contiguous(memory_format=fmt)
        parts = None
        if adv is None or adv["clean_step"]:
            loss, parts = multitask_loss(model(batch["image"]), batch, tasks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            recent = (recent + [parts])[-20:]
        if adv is not None:
            t0 = time.perf_counter()
            x_adv, steps_taken = adversarial_batch(attack, adv, model, batch, tasks)
            attack_s += time.perf_counter() - t0
            attack_steps.append(steps_taken)
            model.train()
            loss, adv_parts = multitask_loss(model(x_adv), batch, tasks)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            recent_adv = (recent_adv + [adv_parts])[-20:]
            parts = parts if parts is not None else adv_parts
        sched.step()
        if it % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step_hook is not None:
            step_hook(it, parts)
    model.to(memory_format=torch.contiguous_format).eval()
    info = {"seconds": time.perf_counter() - start, "iterations": cfg.iterations,
            "final_losses": _mean_parts(recent or recent_adv)}
    if adv is not None:
        info["adversarial"] = {**adv, "final_losses": _mean_parts(recent_adv), "attack_s": attack_s,
                               "mean_attack_steps": sum(attack_steps) / max(len(attack_steps), 1)}
    return info


def _mean_parts(recent: list[dict]) -> dict:
    return {k: sum(r[k] for r in recent) / len(recent) for k in recent[0]} if recent else {}


# ------------------------------------------------------------------ adversarial training

def adversarial_settings(train_cfg) -> dict | None:
    """The validated adversarial-training settings of a train config, or None for clean training.

    Returns {"attack": preset name, "eps": pixel units, "steps", "clean_step", "fat"} plus
    "fat_tau" and "fat_threshold" when fat is on: exactly what enters the model's cache key.
    Raises ValueError naming the valid presets for an unknown attack.
    """
    from .attacks import OBJECTIVES, preset_configs

    adv = train_cfg.adversarial
    if adv.attack is None:
        return None
    name = str(adv.attack)
    presets = preset_configs(declared_task_names())
    if name not in presets:
        raise ValueError(f"train.adversarial.attack={name!r} is not an attack preset; choose one of "
                         f"{', '.join(sorted(presets))} (or null for clean training)")
    if OBJECTIVES[presets[name]["objective"]].needs_weights:
        raise ValueError("train.adversarial.attack: weightedtotal needs grid-searched weights per model; "
                         "adversarially train with total, dgba or single_<task> instead")
    eps, steps = check_eps(adv.eps, "train.adversarial.eps"), int(adv.steps)
    if eps == 0:
        raise ValueError("train.adversarial.eps=0 trains on clean images; give a budget > 0 (8 means 8/255) "
                         "or train.adversarial.attack=null")
    if steps < 1:
        raise ValueError(f"train.adversarial.steps={steps} must be >= 1")
    out = {"attack": name, "eps": eps, "steps": 1 if presets[name]["optimizer"] == "fgsm" else steps,
           "clean_step": bool(adv.clean_step), "fat": bool(adv.fat)}
    if out["fat"]:
        if presets[name]["optimizer"] != "pgd":
            raise ValueError(f"train.adversarial.fat=true early-stops PGD; use a *_pgd attack, not {name!r}")
        tau = int(adv.fat_tau)
        if tau < 0:
            raise ValueError(f"train.adversarial.fat_tau={tau} must be >= 0")
        out.update(fat_tau=tau, fat_threshold=float(adv.fat_threshold))
    return out


def _training_attack(adv: dict, task_names: list[str]):
    """The attack object of the settings (the preset's defaults: no random start, step eps/steps);
    with fat on, its PGD is FAT's early-stopped PGD. The attack holds eps ([0,1] units) as attack.eps."""
    from .attacks import EarlyStop, build_attack, preset_configs

    preset = preset_configs(dict.fromkeys([*declared_task_names(), *task_names]))[adv["attack"]]
    if preset["target_task"] is not None and preset["target_task"] not in task_names:
        raise ValueError(f"train.adversarial.attack={adv['attack']!r} attacks {preset['target_task']}, "
                         f"which is not a task here; choose single_<task> with a task of {task_names}")
    options = {k: v for k, v in preset.items() if k not in ("optimizer", "objective") and v is not None}
    early_stop = EarlyStop(tau=adv["fat_tau"], threshold=adv["fat_threshold"]) if adv["fat"] else None
    return build_attack(preset["optimizer"], preset["objective"], eps=eps_to_unit(adv["eps"]), steps=adv["steps"],
                        early_stop=early_stop, **options)


def adversarial_batch(attack, adv: dict, model, batch: dict, tasks) -> tuple[torch.Tensor, float]:
    """Adversarial images [B,3,H,W] in [0,1] for one training batch, and the mean attack steps per sample.

    The attack runs in eval mode (each module's mode is restored after) and leaves no
    parameter gradients; with adv["fat"] it is FAT's early-stopped PGD (built so by
    :func:`_training_attack`), whose info gives the steps each sample took.
    """
    from .batches import attack_inputs, check_adversarial

    targets, losses = attack_inputs(batch, tasks)
    x = batch["image"]
    if adv["fat"]:
        x_adv, info = attack(model, x, targets, losses, return_info=True)
        mean_steps = info["runs"][0]["steps_taken"].float().mean().item()
    else:
        x_adv, mean_steps = attack(model, x, targets, losses), float(attack.steps)
    check_adversarial(x, x_adv, attack.eps)
    return x_adv.detach(), mean_steps


def model_key(cfg: DictConfig, layout, device: torch.device | None = None) -> dict:
    """Everything that determines a trained model's weights (the cache key's contents).

    Adversarially trained models add an "adversarial" entry (:func:`adversarial_settings`). "env"
    holds the training device type and CPU thread count (:func:`training_env`; device None = CPU).
    A rendered dataset enters without its test-set size: the training scenes do not depend on
    it, so `dataset.synthetic.n_test=512` attacks the same model on more images.
    """
    ds = cfg.dataset
    adversarial = adversarial_settings(cfg.train)
    train = OmegaConf.to_container(cfg.train, resolve=True, enum_to_str=True)
    train.pop("adversarial", None)
    train.pop("threads", None)  # in "env", resolved to the number used
    synthetic = OmegaConf.to_container(ds.synthetic) if ds.synthetic is not None else None
    if synthetic is not None:
        synthetic.pop("n_test", None)
    key: dict = {
        "dataset": {
            "name": ds.name,
            "format": get_format(ds.format).name,
            "tasks": selected_tasks(cfg),  # the tasks the model is built and trained for
            "root": None if ds.synthetic is not None else str(ds.root),
            "synthetic": synthetic,
            "input_size": ds.input_size,
            "num_workers": ds.num_workers,  # the workers' generators draw the augmentation
        },
        "train": train,
        "seed": cfg.seed,
        "model_version": MODEL_VERSION,
        "env": training_env(cfg.train, device or torch.device("cpu")),
    }
    if cfg.model.get("_target_"):
        from .models.custom import constructor_args

        # A user's network: its class and arguments instead of backbone and layout.
        key["model"] = {"class": cfg.model._target_, "args": constructor_args(cfg.model),
                        "input": cfg.model.input.value, "outputs": dict(cfg.model.outputs)}
        key["backbone"] = "custom"
    else:
        key.update(backbone=cfg.backbone.name.value, head_width=cfg.backbone.head_width, layout=str(layout),
                   width=float(cfg.backbone.width))
    if adversarial is not None:
        key["adversarial"] = adversarial
    return key


def checkpoint_path(cache_dir: Path, key: dict) -> Path:
    name = f"{key['dataset']['name']}-{key['backbone']}-{content_key(key)}.pt"
    return Path(cache_dir) / "models" / name


def state_mismatch(own: dict, state: dict) -> str | None:
    """What keeps `state` from loading into a model whose state dict is `own` (name -> tensor or
    shape), as one clause: missing and unexpected keys, shape mismatches; None when it fits."""
    shape = lambda v: tuple(getattr(v, "shape", v))  # noqa: E731
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {shape(state[k])} vs model {shape(own[k])}"
              for k in own if k in state and shape(state[k]) != shape(own[k])]
    parts = []
    if missing:
        parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
    if extra:
        parts.append(f"unexpected {len(extra)} keys (e.g. {', '.join(extra[:3])})")
    if shapes:
        parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
    return "; ".join(parts) or None


def weights_module(model):
    """The module a checkpoint's state dict belongs to: a user's network inside its wrapper
    (models.custom.TaskOutputs), else the model itself."""
    from .models.custom import TaskOutputs

    return model.net if isinstance(model, TaskOutputs) else model


def load_state_checked(model, state: dict, source: str) -> None:
    """Load a state dict, or stop with one line naming the keys or shapes that differ."""
    problem = state_mismatch(model.state_dict(), state)
    if problem:
        raise UserError(f"checkpoint {source} does not fit the model: {problem}; "
                        "check backbone, backbone.width, layout, head_width and dataset")
    model.load_state_dict(state)


def read_checkpoint(path: Path) -> dict:
    """A cached checkpoint's dict, or ValueError when the file is truncated or not a checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it to retrain") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} has no 'state_dict'; expected a file written by mtl-attack")
    return ckpt


def read_user_checkpoint(path: str | Path) -> dict:
    """A user's `model.checkpoint` as {"state_dict", "meta"} (weights-only loading): the file holds a
    state dict, or a dict with one under "state_dict" (mtl-attack's files) or "model". A file that
    is absent, a folder, not a torch file or holds no state dict is a UserError saying which."""
    path = Path(path).expanduser()
    key = f"model.checkpoint={path}"
    if not path.exists():
        raise UserError(f"{key} does not exist; give the path of a model's weights file (a state_dict saved "
                        "with torch.save, or a .pt from <cache_dir>/models/) or leave model.checkpoint unset to train")
    if not path.is_file():
        raise UserError(f"{key} is a folder, not a file; give the path of a weights .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for files it cannot read
        raise UserError(f"{key} is not a readable torch checkpoint ({type(err).__name__} while loading it "
                        "with weights_only=True); give a file saved with torch.save") from None
    if isinstance(ckpt, dict):
        for name in ("state_dict", "model"):
            if isinstance(ckpt.get(name), dict):
                return {"state_dict": ckpt[name], "meta": ckpt.get("meta", {})}
        if ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            return {"state_dict": ckpt, "meta": {}}
    what = f"a dict with keys {sorted(map(str, ckpt))[:5]}" if isinstance(ckpt, dict) else type(ckpt).__name__
    raise UserError(f"{key} holds {what}, not a state dict; save model.state_dict() or "
                    "{'state_dict': model.state_dict()}")


# ------------------------------------------------------------------ training environment

def usable_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one, e.g. under SLURM)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def training_threads(train_cfg) -> int:
    """The torch CPU thread count training runs with: `train.threads`, or every usable core when
    it is null. Fixed per machine so that a model's weights do not depend on the launcher
    (CPU results change with the thread count; the joblib launcher runs attacks on fewer)."""
    threads = train_cfg.threads
    if threads is None:
        return usable_cores()
    if isinstance(threads, bool) or int(threads) < 1:
        raise UserError(f"train.threads={threads} must be a whole number >= 1, or null for every usable core")
    return int(threads)


def training_env(train_cfg, device: torch.device) -> dict:
    """What besides the config changes trained weights: the device type and, on the CPU, the
    thread count (:func:`training_threads`) and the float mode (:func:`floats.key_entry`).
    Part of the model's cache key."""
    env = {"device": device.type}
    if device.type == "cpu":
        env["threads"] = training_threads(train_cfg)
        env.update(floats.key_entry())
    return env


class _Threads:
    """Run a block with `n` torch CPU threads, then restore the previous count."""

    def __init__(self, n: int):
        self.n, self.before = n, None

    def __enter__(self):
        self.before = torch.get_num_threads()
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.before)
        return False


def train_or_load(model, cfg: DictConfig, layout, tasks, train_set, device: torch.device,
                  progress: bool = True) -> dict:
    """Give `model` its trained weights: a user checkpoint, the cache, or train (once per key).

    Concurrent jobs needing the same model train it once: the others wait on the
    cache lock and load. A damaged cached file is removed and retrained.
    A user's network (model._target_) with model.train=false keeps the weights its constructor gave it.
    Returns info: {"source": "checkpoint"|"cache"|"trained"|"as built", "path", "train": train info or None}.
    """
    user = cfg.model.checkpoint
    if user:
        ckpt = read_user_checkpoint(user)
        load_state_checked(weights_module(model), ckpt["state_dict"], f"model.checkpoint={user}")
        return {"source": "checkpoint", "path": str(user), "train": ckpt["meta"].get("train")}
    if cfg.model.get("_target_") and not cfg.model.train:
        return {"source": "as built", "path": None, "train": None}
    key = model_key(cfg, layout, device)
    path = checkpoint_path(Path(cfg.cache_dir), key)
    path.parent.mkdir(parents=True, exist_ok=True)
    trained: dict = {}

    def build(tmp: Path) -> None:
        with _Threads(training_threads(cfg.train)):
            info = train_model(model, train_set, tasks, cfg.train, device, seed=cfg.seed, progress=progress,
                               num_workers=cfg.dataset.num_workers)
        # Plain strs (weights-only loadable); the machine is not in the key, so a cache moves between machines.
        info["env"] = {**key["env"], "torch": str(torch.__version__), "machine": records.machine_label(device)}
        trained.update(info)
        state = {k: v.detach().cpu() for k, v in weights_module(model).state_dict().items()}
        torch.save({"state_dict": state, "meta": {"key": key, "train": info}}, tmp)

    for attempt in range(2):
        build_once(path, build)
        if trained:
            return {"source": "trained", "path": str(path), "train": trained}
        try:
            ckpt = read_checkpoint(path)
        except ValueError:
            if attempt:
                raise
            print(f"warning: removing damaged cached model {path}; retraining")
            path.unlink(missing_ok=True)
            continue
        load_state_checked(weights_module(model), ckpt["state_dict"], str(path))
        return {"source": "cache", "path": str(path), "train": ckpt.get("meta", {}).get("train")}
    raise AssertionError("unreachable")
