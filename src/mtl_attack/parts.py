"""A job's parts from its config: data splits, tasks, layout and the trained model.

:func:`prepare` is the one way from a composed config to these parts; the job
pipeline, the benchmark, the `mtl-attack` command and the tests all use it.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import torch
from omegaconf import DictConfig

from .data.build import build_splits, plain_train_split, prepare_root
from .data.registry import selected_tasks
from .models.build import build_model
from .models.custom import build_custom
from .models.layout import Layout
from .preflight import Checked, preflight
from .tasks import build_tasks
from .training import train_or_load

__all__ = ["Parts", "prepare", "trained_model"]


@dataclass
class Parts:
    """What a job works on. `model` is None when :func:`prepare` was asked for data only.

    root: the data folder; train: the augmented train split; test: the (limited) test split;
    tasks: the job's tasks in order (the selected ones of the dataset's, :func:`~mtl_attack.data.registry.selected_tasks`); layout: the TreeMTL layout (None for a user's network); model: in eval mode on
    `device`; source: where its weights came from ({"source", "path", "train"}).
    """

    cfg: DictConfig
    device: torch.device
    root: Path
    train: object
    test: object
    tasks: list
    layout: Layout | None = None
    model: torch.nn.Module | None = None
    source: dict | None = None

    @cached_property
    def plain_train(self):
        """The train split without augmentation (trivial predictors, WeightedTotal's calibration), opened once."""
        return plain_train_split(self.cfg.dataset, self.root, selected_tasks(self.cfg))


def trained_model(cfg: DictConfig, layout: Layout | None, tasks, train, device: torch.device,
                  progress: bool = True, built: torch.nn.Module | None = None) -> tuple[torch.nn.Module, dict]:
    """The job's model, trained or loaded (cache or model.checkpoint), in eval mode on `device`:
    the TreeMTL model of `layout`, or the user's network (model._target_, wrapped by
    models.custom.TaskOutputs; `built`: that network as preflight built it, untrained)."""
    if cfg.model.get("_target_"):
        model = built if built is not None else build_custom(cfg.model, [t.name for t in tasks], cfg.seed)
    else:
        model = build_model(cfg.backbone.name.value, layout, tasks, cfg.backbone.head_width, cfg.seed,
                            Path(cfg.cache_dir), width=cfg.backbone.width)
    source = train_or_load(model, cfg, layout, tasks, train, device, progress=progress)
    return model.to(device).eval(), source


def prepare(cfg: DictConfig, device: torch.device | None = None, progress: bool = True,
            with_model: bool = True, checked: Checked | None = None) -> Parts:
    """The job's parts: check the config (:func:`~mtl_attack.preflight.preflight`, unless `checked`
    holds its result), render or open the data, make the tasks and (with_model) train or load
    the model. device: None = the checked `cfg.device`."""
    checked = checked or preflight(cfg)
    device = checked.device if device is None else device
    root = prepare_root(cfg.dataset, Path(cfg.cache_dir), progress=progress)
    specs = selected_tasks(cfg)
    train, test = build_splits(cfg.dataset, root, specs, cfg.train.augment, tuple(cfg.train.scale_range))
    tasks = build_tasks(specs, getattr(train, "class_weights", None))
    parts = Parts(cfg, device, root, train, test, tasks, checked.layout)
    if with_model:
        parts.model, parts.source = trained_model(cfg, checked.layout, tasks, train, device, progress,
                                                  built=checked.model)
    return parts
