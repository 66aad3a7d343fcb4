"""From a dataset config to a data root and torch Datasets.

Rendered datasets are made on first use inside the cache folder; real ones are
read from `dataset.root`. Either way the same loader reads the files.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig
from torch.utils.data import Subset

from .datasets import SCALE_RANGE, build_dataset
from .formats import get_format


def _format(cfg: DictConfig) -> str:
    return get_format(cfg.format).name


def _needs_root(cfg: DictConfig) -> str:
    """The message for a real dataset without dataset.root, naming the rendered options."""
    from .registry import rendered_config_names

    rendered = rendered_config_names()
    return (f"dataset {cfg.name} needs dataset.root=/path/to/data "
            f"(or pick a rendered one: {' or '.join(f'dataset={n}' for n in rendered)})")


def prepare_root(cfg: DictConfig, cache_dir: str | Path, progress: bool = True) -> Path:
    """Return the folder holding the dataset's files, rendering it first if synthetic."""
    if cfg.synthetic is not None:
        if get_format(cfg.format).rendered is None:
            raise ValueError(f"dataset {cfg.name}: the {_format(cfg)} format has no renderer; remove dataset.synthetic "
                             "and set dataset.root")
        from .synth import ensure_synthetic

        s = cfg.synthetic
        return ensure_synthetic(
            Path(cache_dir) / "data",
            kind=_format(cfg),
            n_train=s.n_train,
            n_test=s.n_test,
            height=s.height,
            width=s.width,
            seed=s.seed,
            progress=progress,
        )
    if not cfg.root:
        raise ValueError(_needs_root(cfg))
    return Path(cfg.root).expanduser()


def build_splits(cfg: DictConfig, root: Path, tasks: dict, augment: bool = True,
                 scale_range: tuple[float, float] = SCALE_RANGE):
    """Train (augmented, random scale in `scale_range`) and test Datasets (the first `test_limit`
    images) for the dataset config, reading `tasks` (name -> options, registry.selected_tasks)."""
    train = build_dataset(_format(cfg), root, cfg.train_split, tasks, cfg.input_size, augment=augment,
                          scale_range=tuple(scale_range))
    test = build_dataset(_format(cfg), root, cfg.test_split, tasks, cfg.input_size, augment=False)
    limit = cfg.test_limit
    if limit is not None:
        if limit < 1:
            raise ValueError(f"dataset.test_limit must be a positive number of images, got {limit}")
        test = Subset(test, range(min(limit, len(test))))
    return train, test


def plain_train_split(cfg: DictConfig, root: Path, tasks: dict):
    """The train split without augmentation (resized like the test split): trivial predictors, calibration."""
    return build_dataset(_format(cfg), root, cfg.train_split, tasks, cfg.input_size, augment=False)


# Every listed file is checked when the splits list at most this many; above it, every
# test file and an even sample of the train files (a stat per file is slow on network disks).
CHECK_ALL_FILES = 20000


def check_files(cfg: DictConfig, tasks: dict, splits: tuple[str, ...] | None = None, decode: int = 2) -> int:
    """Stop before any work when a real dataset's files are missing or unreadable.

    Lists the train and test splits with the format's listing (its split json, or a scan of
    its folders), checks that every listed file exists (see CHECK_ALL_FILES) and decodes the
    first and last `decode` samples of each split (shapes and encodings, with the readers'
    one-line messages); a format with its own check (the folder format) runs it on every
    listed sample instead. `tasks`: name -> options of the tasks to read.
    A rendered dataset (dataset.synthetic set) is made later and is not checked here.
    Returns the number of files found; raises UserError naming the first bad file.
    """
    from ..errors import UserError
    from .formats import resolve_listed_path

    if cfg.synthetic is not None:
        return 0
    if not cfg.root:
        raise UserError(_needs_root(cfg))
    root = Path(cfg.root).expanduser().absolute()
    try:
        fmt = get_format(cfg.format)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset.root={cfg.root}: no such folder; set it to the folder holding "
                                    f"{fmt.root_holds}")
        names = splits or (cfg.train_split, cfg.test_split)
        listings = {split: fmt.list_split(str(root), split, tasks) for split in names}
        total = sum(len(listing.entries) * len(listing.entries[0]) for listing in listings.values())
        found = 0
        for split, listing in listings.items():
            entries = listing.entries
            if fmt.check is not None:
                for entry in entries:
                    fmt.check(str(root), entry, split, listing.source, tasks)
                    found += len(entry)
                continue
            step = 1 if split != cfg.train_split or total <= CHECK_ALL_FILES else max(1, total // CHECK_ALL_FILES)
            for entry in entries[::step]:
                for p in entry:
                    resolve_listed_path(str(root), p, listing.alt_dirs, listing.source)
                    found += 1
            for entry in entries[:decode] + entries[-decode:]:
                fmt.read(str(root), entry, split, listing.source, tasks)
        if any(o.get("class_weights") == "stored" for o in tasks.values()):
            fmt.class_weights(str(root))
    except (FileNotFoundError, ValueError) as err:
        raise UserError(str(err)) from None
    return found
