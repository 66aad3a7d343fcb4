"""Training a TreeMTL model, and the content-keyed model cache around it."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Iterator

import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from .cache import build_once, content_key
from .models.build import MODEL_VERSION


def _batches(dataset, batch_size: int, seed: int, num_workers: int = 0) -> Iterator[dict]:
    """Endless shuffled batches; epoch order depends only on the seed."""
    gen = torch.Generator().manual_seed(seed)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                        generator=gen, num_workers=num_workers)
    while True:
        yield from loader


def multitask_loss(outputs: dict, batch: dict, tasks) -> tuple[torch.Tensor, dict[str, float]]:
    """Sum over tasks (weights 1, as the paper) of each task's batch-mean per-sample loss."""
    per_task = {t.name: t.loss(outputs[t.name], batch["targets"][t.name], batch["masks"][t.name]).mean() for t in tasks}
    return sum(per_task.values()), {k: v.item() for k, v in per_task.items()}


def train_model(model, dataset, tasks, cfg: DictConfig, device: torch.device, seed: int,
                progress: bool = True, step_hook: Callable[[int, dict], None] | None = None) -> dict:
    """Train `model` in place with Adam and a step LR schedule (SPEC "Models").

    cfg: the train config (iterations, batch_size, lr, betas, weight_decay, lr_step, lr_gamma).
    Returns {"seconds", "iterations", "final_losses": {task: mean loss of the last 20 iterations}}.
    """
    from tqdm.auto import tqdm

    torch.manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=cfg.lr_step, gamma=cfg.lr_gamma)
    recent: list[dict] = []
    start = time.perf_counter()
    batches = _batches(dataset, cfg.batch_size, seed)
    bar = tqdm(range(cfg.iterations), desc="train", disable=None if progress else True, leave=False)
    for it in bar:
        batch = _to_device(next(batches), device)
        loss, parts = multitask_loss(model(batch["image"]), batch, tasks)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        recent = (recent + [parts])[-20:]
        if it % 10 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step_hook is not None:
            step_hook(it, parts)
    model.eval()
    final = {k: sum(r[k] for r in recent) / len(recent) for k in recent[0]} if recent else {}
    return {"seconds": time.perf_counter() - start, "iterations": cfg.iterations, "final_losses": final}


def _to_device(batch: dict, device: torch.device) -> dict:
    return {
        "image": batch["image"].to(device, non_blocking=True),
        "targets": {k: v.to(device, non_blocking=True) for k, v in batch["targets"].items()},
        "masks": {k: v.to(device, non_blocking=True) for k, v in batch["masks"].items()},
    }


def model_key(cfg: DictConfig, layout) -> dict:
    """Everything that determines a trained model's weights (the cache key's contents)."""
    ds = cfg.dataset
    return {
        "dataset": {
            "name": ds.name,
            "kind": ds.kind.value if hasattr(ds.kind, "value") else ds.kind,
            "root": None if ds.get("synthetic") is not None else str(ds.root),
            "synthetic": OmegaConf.to_container(ds.synthetic) if ds.get("synthetic") is not None else None,
            "input_size": ds.input_size,
        },
        "backbone": cfg.backbone.name.value if hasattr(cfg.backbone.name, "value") else cfg.backbone.name,
        "head_width": cfg.backbone.head_width,
        "layout": str(layout),
        "train": OmegaConf.to_container(cfg.train, resolve=True),
        "seed": cfg.seed,
        "model_version": MODEL_VERSION,
    }


def checkpoint_path(cache_dir: Path, key: dict) -> Path:
    name = f"{key['dataset']['name']}-{key['backbone']}-{content_key(key)}.pt"
    return Path(cache_dir) / "models" / name


def load_state_checked(model, state: dict, source: str) -> None:
    """Load a state dict, or stop with one line naming the keys or shapes that differ."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    extra = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or extra or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {', '.join(missing[:3])})")
        if extra:
            parts.append(f"unexpected {len(extra)} keys (e.g. {', '.join(extra[:3])})")
        if shapes:
            parts.append(f"{len(shapes)} shape mismatches (e.g. {'; '.join(shapes[:3])})")
        raise ValueError(f"checkpoint {source} does not fit the model: {'; '.join(parts)}; "
                         "check backbone, layout, head_width and dataset")
    model.load_state_dict(state)


def read_checkpoint(path: Path) -> dict:
    """A checkpoint's dict, or ValueError when the file is truncated or not a checkpoint."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for damaged files
        raise ValueError(f"checkpoint {path} is unreadable ({type(err).__name__}); delete it to retrain") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"checkpoint {path} has no 'state_dict'; expected a file written by mtl-attack")
    return ckpt


def train_or_load(model, cfg: DictConfig, layout, tasks, train_set, device: torch.device,
                  progress: bool = True) -> dict:
    """Give `model` its trained weights: a user checkpoint, the cache, or train (once per key).

    Concurrent jobs needing the same model train it once: the others wait on the
    cache lock and load. A damaged cached file is removed and retrained.
    Returns info: {"source": "checkpoint"|"cache"|"trained", "path", "train": train info or None}.
    """
    user = cfg.get("model", {}).get("checkpoint") if cfg.get("model") is not None else None
    if user:
        ckpt = read_checkpoint(Path(user))
        load_state_checked(model, ckpt["state_dict"], user)
        return {"source": "checkpoint", "path": str(user), "train": ckpt.get("meta", {}).get("train")}
    key = model_key(cfg, layout)
    path = checkpoint_path(Path(cfg.cache_dir), key)
    path.parent.mkdir(parents=True, exist_ok=True)
    trained: dict = {}

    def build(tmp: Path) -> None:
        info = train_model(model, train_set, tasks, cfg.train, device, seed=cfg.seed, progress=progress)
        trained.update(info)
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
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
        load_state_checked(model, ckpt["state_dict"], str(path))
        return {"source": "cache", "path": str(path), "train": ckpt.get("meta", {}).get("train")}
    raise AssertionError("unreachable")
