"""The dataset table: every dataset kind the toolkit reads, with its reader, renderer and tasks.

Everything that names datasets derives from :data:`DATASETS`: the schema's
`dataset.kind` choices, the loaders, the CLI choices, the attack presets'
Single-x tasks and the report's metric directions. A dataset config file
(`conf/dataset/<name>.yaml`) names its `kind`; several configs may share one
kind (the real NYUv2 files and their rendered stand-in share `nyuv2`).

Adding a dataset kind: one reader (a function decoding one sample of the
on-disk format, see :mod:`mtl_attack.data.formats`), one listing (a split
json's entries, or a scan of the kind's folders), one entry here, one config
file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .. import tasks as T
from . import formats

__all__ = ["DatasetSpec", "DATASETS", "get_dataset", "get_tasks", "metric_directions", "task_names",
           "dataset_config_names", "rendered_config_names", "kind_of"]


@dataclass(frozen=True)
class DatasetSpec:
    """One dataset kind.

    name: the kind, as `dataset.kind` spells it.
    task_names: the tasks in their fixed order (= model output order, layout task ids).
    make_tasks(class_weights) -> list[Task] in that order; class_weights are the
    segmentation loss's per-class weights read from the data (or None).
    read(root, paths, split, source) -> the decoded numpy sample of one listed entry.
    list_split(root, split) -> :class:`~mtl_attack.data.formats.SplitListing`, the
    split's entries (from a split json, or a scan of the kind's folders); it raises
    a one-line error for an unknown or empty split.
    root_holds: what `dataset.root` must hold, for error messages.
    default_input_size: the network input side when the config gives none (pixels).
    base_ratio: square pre-resize as a multiple of the input size (None = none).
    train_prescale: (stored height, training input) of the real data as its authors
    use it, both in pixels: training shrinks the stored picture so a crop at
    another input size covers the share of the scene their crop does
    (:func:`~mtl_attack.data.datasets.train_prescale_factor`); None = no pre-scale.
    class_weights(root) -> float32 per-class weights stored with the data, or None.
    renderable: the synthetic renderer (:mod:`mtl_attack.data.synth`) can write this format.
    """

    name: str
    task_names: tuple[str, ...]
    make_tasks: Callable[[torch.Tensor | None], list[T.Task]]
    read: Callable[[str, list, str, str], dict]
    list_split: Callable[[str, str], formats.SplitListing]
    root_holds: str
    default_input_size: int
    base_ratio: float | None = None
    train_prescale: tuple[int, int] | None = None
    class_weights: Callable[[str], object] | None = None
    renderable: bool = False


# Module-level functions, not lambdas, so specs pickle into spawned DataLoader workers.
def _nyuv2_tasks(class_weights=None) -> list[T.Task]:
    return [T.segmentation_task(40, class_weights), T.normal_task(), T.depth_task()]


def _taskonomy_tasks(class_weights=None) -> list[T.Task]:
    # The paper scores every Taskonomy task by its loss.
    return [T.segmentation_task(17, class_weights, loss_metric=True), T.normal_task(loss_metric=True),
            T.depth_task(loss_metric=True), T.l1_task("keypoints2d"), T.l1_task("edge_texture")]


def _nyuv2_mtan_tasks(class_weights=None) -> list[T.Task]:
    # LibMTL examples/nyu: 13 classes; depth scored by abs and rel error only.
    return [T.segmentation_task(formats.MTAN_NUM_CLASSES, class_weights), T.normal_task(),
            T.depth_task(deltas=False)]


def _read_nyuv2(root: str, paths: list, split: str, source: str) -> dict:
    return formats.read_nyuv2_sample(root, paths, source)


def _read_nyuv2_mtan(root: str, paths: list, split: str, source: str) -> dict:
    return formats.read_mtan_sample(root, paths, source)


def _list_nyuv2(root: str, split: str) -> formats.SplitListing:
    return formats.list_json_split(root, "nyuv2", split)


def _list_taskonomy(root: str, split: str) -> formats.SplitListing:
    return formats.list_json_split(root, "taskonomy", split)


DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec("nyuv2", ("segment_semantic", "normal", "depth_zbuffer"), _nyuv2_tasks, _read_nyuv2,
                    _list_nyuv2, formats.NYUV2_JSON, default_input_size=321,
                    train_prescale=(480, 321),  # the paper crops 321 from 480x640 pictures
                    renderable=True),
        DatasetSpec("taskonomy", ("segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture"),
                    _taskonomy_tasks, formats.read_taskonomy_sample, _list_taskonomy,
                    f"{formats.TASKONOMY_JSON} and {formats.SEMSEG_PRIOR}", default_input_size=224,
                    base_ratio=256 / 224,  # the authors pre-resize to 256, then crop or test at 224
                    class_weights=formats.read_semseg_prior, renderable=True),
        DatasetSpec("nyuv2_mtan", ("segment_semantic", "normal", "depth_zbuffer"), _nyuv2_mtan_tasks,
                    _read_nyuv2_mtan, formats.list_mtan_split,
                    "train/ and val/, each with image/, label/, depth/ and normal/ of numbered .npy files",
                    default_input_size=288,  # the stored 288x384 height: the test resize never upscales
                    train_prescale=(288, 288),  # LibMTL trains at the stored scale
                    renderable=True),
    )
}


def get_dataset(kind: str) -> DatasetSpec:
    """The spec of dataset kind `kind` (a str or the schema's enum member)."""
    key = getattr(kind, "value", kind)
    if key not in DATASETS:
        raise ValueError(f"unknown dataset kind {key!r}; valid kinds: {', '.join(DATASETS)}")
    return DATASETS[key]


def get_tasks(kind: str, seg_class_weights: Sequence[float] | torch.Tensor | None = None) -> list[T.Task]:
    """The tasks of dataset kind `kind` in their fixed order (see :class:`DatasetSpec`)."""
    spec = get_dataset(kind)
    made = spec.make_tasks(seg_class_weights)
    assert tuple(t.name for t in made) == spec.task_names, f"{kind}: make_tasks disagrees with task_names"
    return made


def metric_directions(kind: str) -> dict[str, dict[str, bool]]:
    """task -> metric -> higher_is_better for dataset kind `kind`."""
    return {t.name: dict(t.metrics) for t in get_tasks(kind)}


def task_names() -> tuple[str, ...]:
    """Every task name of every dataset kind, each once, in table order."""
    names: dict[str, None] = {}
    for spec in DATASETS.values():
        names.update(dict.fromkeys(spec.task_names))
    return tuple(names)


def _dataset_conf_dir() -> Path:
    from ..config import conf_dir

    return Path(conf_dir()) / "dataset"


def dataset_config_names() -> tuple[str, ...]:
    """The `dataset=` options: the config files in conf/dataset/."""
    return tuple(sorted(p.stem for p in _dataset_conf_dir().glob("*.yaml")))


def rendered_config_names() -> tuple[str, ...]:
    """The `dataset=` options rendered on first use (their config file has a `synthetic` block)."""
    from omegaconf import OmegaConf

    return tuple(n for n in dataset_config_names()
                 if OmegaConf.load(_dataset_conf_dir() / f"{n}.yaml").get("synthetic") is not None)


def kind_of(config_name: str) -> str:
    """The dataset kind of the config `conf/dataset/<config_name>.yaml` (e.g. synth_nyuv2 -> nyuv2)."""
    from omegaconf import OmegaConf

    path = _dataset_conf_dir() / f"{config_name}.yaml"
    if not path.is_file():
        raise ValueError(f"unknown dataset {config_name!r}; options: {', '.join(dataset_config_names())}")
    return str(get_dataset(OmegaConf.load(path).kind).name)
