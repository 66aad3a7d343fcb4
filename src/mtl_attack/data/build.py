"""From a dataset config to a data root and torch Datasets.

Rendered datasets are made on first use inside the cache folder; real ones are
read from `dataset.root`. Either way the same loader reads the files.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import Subset

from .datasets import build_dataset
from .registry import get_dataset


def _kind(cfg: DictConfig) -> str:
    return get_dataset(cfg.kind).name


def prepare_root(cfg: DictConfig, cache_dir: str | Path, progress: bool = True) -> Path:
    """Return the folder holding the dataset's files, rendering it first if synthetic."""
    if cfg.synthetic is not None:
        if not get_dataset(cfg.kind).renderable:
            raise ValueError(f"dataset {cfg.name}: kind {_kind(cfg)} has no renderer; remove dataset.synthetic "
                             "and set dataset.root")
        from .synth import ensure_synthetic

        s = cfg.synthetic
        return ensure_synthetic(
            Path(cache_dir) / "data",
            kind=_kind(cfg),
            n_train=s.n_train,
            n_test=s.n_test,
            height=s.height,
            width=s.width,
            seed=s.seed,
            progress=progress,
        )
    if not cfg.root:
        raise ValueError(
            f"dataset {cfg.name} needs dataset.root=/path/to/data "
            "(or pick a rendered one: dataset=synth_nyuv2 or dataset=synth_taskonomy)"
        )
    return Path(cfg.root).expanduser()


def build_splits(cfg: DictConfig, root: Path):
    """Train (augmented) and test Datasets (the first `test_limit` images) for the dataset config."""
    train = build_dataset(_kind(cfg), root, "train", cfg.input_size, augment=True)
    test = build_dataset(_kind(cfg), root, cfg.test_split, cfg.input_size, augment=False)
    limit = cfg.test_limit
    if limit is not None:
        if limit < 1:
            raise ValueError(f"dataset.test_limit must be a positive number of images, got {limit}")
        test = Subset(test, range(min(limit, len(test))))
    return train, test


def plain_train_split(cfg: DictConfig, root: Path):
    """The train split without augmentation (resized like the test split): trivial predictors, calibration."""
    return build_dataset(_kind(cfg), root, "train", cfg.input_size, augment=False)
