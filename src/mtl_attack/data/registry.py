"""Datasets as data: a dataset config names its on-disk format and declares its tasks.

`conf/dataset/<name>.yaml` gives `format` (a key of :data:`~mtl_attack.data.formats.FORMATS`)
and `tasks: {name: {kind: ..., options}}` (:mod:`mtl_attack.tasks.kinds`); the top-level
`tasks=[...]` selects a subset of them. Everything that needs a dataset's tasks derives them
here: the loaders, the model, training, attacks, the attack presets' Single-x tasks and the
report's metric directions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from .. import tasks as T
from ..paths import conf_dir
from .formats import get_format

__all__ = ["declared_tasks", "selected_tasks", "task_names", "dataset_config_names",
           "rendered_config_names", "format_of", "metric_directions", "check_selection", "config_tasks", "config_task_specs"]


def declared_tasks(ds_cfg: Any) -> dict[str, dict]:
    """The dataset's declared tasks, checked against its kinds and its format: name -> options.
    Raises ValueError in one line."""
    specs = ds_cfg.get("tasks") if hasattr(ds_cfg, "get") else None
    if not specs:
        raise ValueError(f"dataset {ds_cfg.name} declares no tasks; give them as "
                         "dataset.tasks={name:{kind:segmentation,classes:N},...} (kinds: "
                         f"{', '.join(T.TASK_KINDS)})")
    out = {str(name): T.check_task_spec(str(name), spec) for name, spec in specs.items()}
    fmt = get_format(ds_cfg.format)
    if fmt.provides is not None:
        for name, options in out.items():
            if name not in fmt.provides:
                raise ValueError(f"dataset.tasks.{name}: the {fmt.name} format stores no {name} maps; "
                                 f"its tasks: {', '.join(fmt.provides)}")
            if options["kind"] != fmt.provides[name]:
                raise ValueError(f"dataset.tasks.{name}.kind={options['kind']}: the {fmt.name} format stores "
                                 f"{name} as a {fmt.provides[name]} task")
    if fmt.class_weights is None:
        for name, options in out.items():
            if options.get("class_weights") == "stored":
                raise ValueError(f"dataset.tasks.{name}.class_weights=stored: the {fmt.name} format stores no "
                                 "class weights; give a list of weights or leave it out")
    return out


def check_selection(selected: Sequence[str] | None, declared: Sequence[str]) -> list[str]:
    """The selected task names in the dataset's order (None: every declared task).
    Raises ValueError for an unknown, repeated or empty selection."""
    if selected is None:
        return list(declared)
    selected = [str(s) for s in selected]
    unknown = [s for s in selected if s not in declared]
    if unknown:
        raise ValueError(f"tasks={selected}: {unknown[0]} is not a task of this dataset; its tasks: "
                         f"{', '.join(declared)}")
    if len(set(selected)) != len(selected) or not selected:
        raise ValueError(f"tasks={selected} must name one or more distinct tasks of: {', '.join(declared)}")
    return [t for t in declared if t in selected]


def selected_tasks(cfg: Any) -> dict[str, dict]:
    """The job's tasks (the top-level `tasks` of the dataset's declared ones, in the dataset's
    order): name -> options."""
    declared = declared_tasks(cfg.dataset)
    names = check_selection(cfg.get("tasks"), list(declared))
    return {n: declared[n] for n in names}


def _dataset_conf_dir() -> Path:
    return Path(conf_dir()) / "dataset"


def _load(config_name: str):
    from omegaconf import OmegaConf

    path = _dataset_conf_dir() / f"{config_name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown dataset {config_name!r}; options: {', '.join(dataset_config_names())}")
    return OmegaConf.load(path)


def dataset_config_names() -> tuple[str, ...]:
    """The `dataset=` options: the config files in conf/dataset/."""
    return tuple(sorted(p.stem for p in _dataset_conf_dir().glob("*.yaml")))


def rendered_config_names() -> tuple[str, ...]:
    """The `dataset=` options rendered on first use (their config file has a `synthetic` block)."""
    return tuple(n for n in dataset_config_names() if _load(n).get("synthetic") is not None)


def format_of(config_name: str) -> str:
    """The format of the config `conf/dataset/<config_name>.yaml` (e.g. synth_nyuv2 -> nyuv2)."""
    return get_format(_load(config_name).format).name


def task_names() -> tuple[str, ...]:
    """Every task name the dataset configs in conf/dataset/ declare, each once, in file order."""
    names: dict[str, None] = {}
    for n in dataset_config_names():
        names.update(dict.fromkeys(str(t) for t in (_load(n).get("tasks") or {})))
    return tuple(names)


def metric_directions(config_name: str) -> dict[str, dict[str, bool]]:
    """task -> metric -> higher_is_better for the dataset config `config_name`'s declared tasks."""
    return {t.name: dict(t.metrics) for t in config_tasks(config_name)}


def config_task_specs(config_name: str, selected: Sequence[str] | None = None) -> dict[str, dict]:
    """The declared tasks (name -> options) of the dataset config `config_name`, or the `selected` of them."""
    declared = declared_tasks(_load(config_name))
    return {n: declared[n] for n in check_selection(selected, list(declared))}


def config_tasks(config_name: str, selected: Sequence[str] | None = None) -> list[T.Task]:
    """The tasks of the dataset config `config_name` (a subset with `selected`), without stored
    class weights: for commands that need the tasks' shapes, not the data (layout, bench)."""
    return T.build_tasks(config_task_specs(config_name, selected), None)
