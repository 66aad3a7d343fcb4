"""Validate first: everything a job can check from its config and the file system, before any work.

:func:`preflight` runs before the data are rendered, a model is trained, a record is
written or a W&B run starts; a bad value stops it with a :class:`~mtl_attack.errors.UserError`
in one line that names the key, says what was wrong in the user's units (eps in pixels)
and how to fix it. docs/reliability.md lists the cases.
"""
from __future__ import annotations

import contextlib
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from .config import EPS_WARN, check_eps  # noqa: F401  (re-exported: the job's checks in one place)
from .errors import UserError, as_user_error

__all__ = ["Checked", "preflight", "check_eps", "check_device", "check_writable", "EPS_WARN"]


@dataclass
class Checked:
    """What the checks resolved: the torch device, the job's task names, the TreeMTL layout
    (None for a user's network), the user's network as built (untrained; None for TreeMTL) and
    the budget eps in [0,1] image units (checked and converted here, once, for the whole job)."""

    device: torch.device
    task_names: list
    layout: object
    model: object = None
    eps: float = 0.0


def _whole(key: str, value, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise UserError(f"{key}={value} must be a whole number >= {minimum}")
    return value


def _positive(key: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key}={value} must be a finite number > 0")
    return float(value)


def check_scale_range(value, key: str = "train.scale_range") -> tuple[float, float]:
    """Two finite scales 0 < low <= high (unitless; 1 = the stored scale)."""
    ok = len(value) == 2 and all(not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
                                 for v in value)
    if not ok or not 0 < value[0] <= value[1]:
        raise UserError(f"{key}={list(value)} must be two scales 0 < low <= high (1 = the stored scale; "
                        "the paper's [0.5, 1.5], [1.0, 1.0] for none)")
    return float(value[0]), float(value[1])


def check_device(name: str) -> torch.device:
    """`auto` (the GPU when there is one, else the CPU) or a torch device that exists here."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise UserError(f"device={name!r} is not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device={name}: torch sees no CUDA GPU on this machine; use device=auto "
                            "(the GPU when there is one) or device=cpu")
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise UserError(f"device={name}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise UserError(f"device={name}: torch sees no Apple GPU here; use device=auto or device=cpu")
    elif device.type != "cpu":
        raise UserError(f"device={name}: use auto, cpu, cuda or cuda:N")
    return device


def check_writable(key: str, path: str | os.PathLike) -> Path:
    """`path` can be made and written: the missing folders are made, a probe file is written in
    the target and removed, and the folders made here are removed again, so the check leaves
    nothing behind. Permission bits alone cannot tell (root may write anywhere by them, yet not
    into /proc or a read-only mount), so the check writes. Safe when several jobs check the same
    new folder at once: a folder another job made meanwhile is used, not an error, and one it
    removed meanwhile is looked at again."""
    target = Path(path).expanduser().absolute()
    for _ in range(_WRITE_TRIES):
        with contextlib.suppress(_Vanished):
            return _probe_write(key, path, target)
    raise UserError(f"{key}={path}: cannot write there (No such file or directory); point {key} at a "
                    "folder you can write")


# A folder missing where the check just made or saw one is a concurrent check's doing (it removes
# what it made) or a place that refuses new folders (/proc): look again, and after this many tries
# it is the place. Each try takes microseconds.
_WRITE_TRIES = 50


class _Vanished(Exception):
    """A folder is missing where the check made or saw one: look again."""


def _is_dir(path: Path) -> bool | None:
    """True for a folder, False for anything else, None when nothing is there (one stat)."""
    try:
        return stat.S_ISDIR(path.stat().st_mode)
    except (FileNotFoundError, NotADirectoryError):  # the latter: a file stands where a parent folder should
        return None


def _probe_write(key: str, path, target: Path) -> Path:
    import tempfile

    probe, missing = target, []
    while (kind := _is_dir(probe)) is None:
        missing.append(probe)
        probe = probe.parent
    if not kind:
        raise UserError(f"{key}={path}: {probe} is a file, not a folder; point {key} at a folder you can write")
    made = []
    try:
        for folder in reversed(missing):
            try:
                folder.mkdir()
                made.append(folder)
            except FileExistsError:  # made by a concurrent check since we looked; not ours to remove
                if _is_dir(folder) is False:
                    raise
        with tempfile.TemporaryFile(dir=target):
            pass
    except FileNotFoundError:  # a folder made or seen here was removed meanwhile
        raise _Vanished from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise UserError(f"{key}={path}: cannot write there ({reason}); point {key} at a folder you can write") from None
    finally:
        for folder in reversed(made):
            # A folder another process filled meanwhile stays.
            with contextlib.suppress(OSError):
                folder.rmdir()
    return target


# Bytes per pixel the renderer holds for one scene (rays, hits, normals, depth, colour, maps in float64).
RENDER_BYTES_PER_PIXEL = 400


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gb(n: float) -> str:
    return f"{n / 2**30:,.1f} GB"


def _check_memory(cfg: DictConfig) -> None:
    """Refuse sizes that cannot fit in memory before any work, saying what they would need: one
    batch of input images alone (float32, 3 x S x S each; the network's activations need many
    times more), and one rendered scene of a synthetic dataset."""
    total = memory_bytes()
    if total is None:
        return
    ds = cfg.dataset
    size = ds.input_size
    if isinstance(size, int) and not isinstance(size, bool) and size > 0:
        batch = max(cfg.train.batch_size, ds.eval_batch_size)
        need = batch * 3 * size * size * 4
        if need > total:
            raise UserError(f"dataset.input_size={size} needs {_gb(need)} for one batch of {batch} input images "
                            f"(float32, 3x{size}x{size}) before any activation, and this machine has {_gb(total)}; "
                            "give a smaller dataset.input_size")
    if ds.synthetic is not None:
        need = ds.synthetic.height * ds.synthetic.width * RENDER_BYTES_PER_PIXEL
        if need > total:
            raise UserError(f"dataset.synthetic.height x width = {ds.synthetic.height}x{ds.synthetic.width} needs "
                            f"about {_gb(need)} to render one scene and this machine has {_gb(total)}; "
                            "give smaller dataset.synthetic.height and width")


def _check_sizes(cfg: DictConfig) -> None:
    ds, tr = cfg.dataset, cfg.train
    _whole("train.iterations", tr.iterations, 0)
    _whole("train.batch_size", tr.batch_size)
    _positive("train.lr", tr.lr)
    _whole("train.lr_step", tr.lr_step)
    _whole("train.warmup", tr.warmup, 0)
    check_scale_range(tr.scale_range)
    _whole("dataset.eval_batch_size", ds.eval_batch_size)
    _whole("dataset.num_workers", ds.num_workers, 0)
    _whole("calibration_images", cfg.calibration_images)
    if ds.test_limit is not None:
        _whole("dataset.test_limit", ds.test_limit)
    if ds.synthetic is not None:
        for name in ("n_train", "n_test"):
            _whole(f"dataset.synthetic.{name}", ds.synthetic[name])
        for name in ("height", "width"):
            _whole(f"dataset.synthetic.{name}", ds.synthetic[name], 8)
    _check_memory(cfg)


def _check_model_shape(cfg: DictConfig, tasks) -> None:
    from .models.backbones import check_width, min_input_size

    backbone = cfg.backbone.name.value
    try:
        check_width(cfg.backbone.width)
    except ValueError as err:
        raise as_user_error("backbone.width", err) from None
    _whole("backbone.head_width", cfg.backbone.head_width)
    size, smallest = cfg.dataset.input_size, min_input_size(backbone)
    _whole("dataset.input_size", size)
    if size < smallest:
        raise UserError(f"dataset.input_size={size} is below what {backbone} can use: its features are "
                        f"input/{smallest // 2} pixels, so give dataset.input_size={smallest} or more")


def _check_attack(cfg: DictConfig, names: list, eps: float) -> None:
    from .attacks import OBJECTIVES, PGD, SingleTask, build_attack_from_config, preset_name

    a = cfg.attack
    if a.target_task is not None and a.target_task not in names:
        raise UserError(f"attack.target_task={a.target_task} is not a task of {cfg.dataset.name}; choose one "
                        f"of {', '.join(names)} (e.g. attack={preset_name(SingleTask.name, PGD.name, names[0])})")
    if a.weights:
        if sorted(a.weights) != sorted(names):
            raise UserError(f"attack.weights names {sorted(a.weights)}; give one weight for each task of "
                            f"{cfg.dataset.name}: {', '.join(names)}")
    _whole("attack.steps", a.steps)
    _whole("attack.restarts", a.restarts)
    if OBJECTIVES[a.objective.value].needs_weights and not a.weights:
        a = a.copy()  # the job grid-searches the weights; any valid ones check the rest
        a.weights = {n: 1.0 for n in names}
    try:
        attack = build_attack_from_config(a, eps=eps)
        if getattr(attack, "is_ensemble", False):
            attack.members(names)  # every member named and buildable for these tasks
    except ValueError as err:
        raise as_user_error("attack", err) from None


def _check_training(cfg: DictConfig, names: list) -> None:
    from .training import _training_attack, adversarial_settings, training_threads

    try:
        adv = adversarial_settings(cfg.train)
        if adv is not None:
            _training_attack(adv, names)
    except ValueError as err:
        raise as_user_error("train.adversarial", err) from None
    training_threads(cfg.train)


def _check_layouts(cfg: DictConfig, n_tasks: int):
    from .models.build import resolve_layout, resolve_surrogate

    try:
        layout = resolve_layout(cfg.layout, n_tasks)
    except (ValueError, IndexError) as err:
        key = "layout.spec" if cfg.layout.spec is not None else "layout.index" if cfg.layout.index is not None \
            else "layout"
        raise as_user_error(key, err) from None
    if cfg.transfer.surrogate is not None:
        try:
            resolve_surrogate(cfg.transfer.surrogate, n_tasks)
        except (ValueError, IndexError) as err:
            raise as_user_error("transfer.surrogate", err) from None
    return layout


def _check_checkpoint(cfg: DictConfig, layout, tasks) -> None:
    """model.checkpoint is a readable weights file whose keys and shapes fit the configured model."""
    if not cfg.model.checkpoint:
        return
    from .models.tree import TreeMTLModel
    from .training import read_user_checkpoint, state_mismatch

    ckpt = read_user_checkpoint(cfg.model.checkpoint)
    with torch.device("meta"):  # shapes only, nothing allocated
        model = TreeMTLModel(cfg.backbone.name.value, layout, [t.name for t in tasks], [t.channels for t in tasks],
                             head_width=cfg.backbone.head_width, width=cfg.backbone.width)
    problem = state_mismatch(model.state_dict(), ckpt["state_dict"])
    if problem:
        raise UserError(f"model.checkpoint={cfg.model.checkpoint} does not fit the configured model: {problem}; "
                        "check backbone, backbone.width, backbone.head_width, layout and dataset")


def _check_custom(cfg: DictConfig, tasks):
    """A user's network: it builds, its outputs cover every task with the right channels, and
    model.checkpoint fits it. Returns the built (untrained) model."""
    from .models.custom import build_custom, check_outputs
    from .training import read_user_checkpoint, state_mismatch

    if cfg.transfer.surrogate is not None:
        raise UserError("transfer.surrogate: black-box transfer crafts on a TreeMTL surrogate of the target's "
                        "backbone; with model._target_ set, leave transfer.surrogate null")
    if cfg.train.adversarial.attack is not None and not cfg.model.train:
        raise UserError("train.adversarial.attack is set but model.train=false; set model.train=true to "
                        "adversarially train the network, or leave train.adversarial.attack null")
    model = build_custom(cfg.model, [t.name for t in tasks], cfg.seed)
    check_outputs(model, tasks, cfg.dataset.input_size)
    if cfg.model.checkpoint:
        state = read_user_checkpoint(cfg.model.checkpoint)["state_dict"]
        problem = state_mismatch(model.net.state_dict(), state)
        if problem:
            raise UserError(f"model.checkpoint={cfg.model.checkpoint} does not fit {cfg.model._target_}: {problem}; "
                            "check the +model.<name>= arguments")
    return model


def _check_logger(cfg: DictConfig) -> None:
    from .logger import MODES

    if cfg.logger.name.value == "wandb" and cfg.logger.mode not in MODES:
        raise UserError(f"logger.mode={cfg.logger.mode} is not one of {', '.join(MODES)}")


def preflight(cfg: DictConfig) -> Checked:
    """Check a composed job config and what it names on disk; returns the resolved parts.

    Cheap (seconds): no data are rendered, no model is trained and nothing is left written (the
    cache_dir check writes a probe file and removes it).
    Raises UserError (one line) on the first problem found.
    """
    from .data.build import check_files
    from .data.registry import selected_tasks
    from .tasks import build_tasks

    from .config import eps_to_unit

    eps = eps_to_unit(check_eps(cfg.eps))
    device = check_device(cfg.device)
    _check_sizes(cfg)
    try:
        specs = selected_tasks(cfg)
        tasks = build_tasks(specs)
    except ValueError as err:
        raise UserError(str(err)) from None
    names = [t.name for t in tasks]
    custom = bool(cfg.model.get("_target_"))
    if custom:
        _whole("dataset.input_size", cfg.dataset.input_size)
        layout = None
    else:
        _check_model_shape(cfg, tasks)
        layout = _check_layouts(cfg, len(tasks))
    _check_attack(cfg, names, eps)
    _check_training(cfg, names)
    check_writable("cache_dir", cfg.cache_dir)
    model = _check_custom(cfg, tasks) if custom else _check_checkpoint(cfg, layout, tasks)
    _check_logger(cfg)
    check_files(cfg.dataset, specs)
    return Checked(device, names, layout, model, eps)
