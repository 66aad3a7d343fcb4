"""The interface every on-disk format gives: :class:`Format`, and what its reader returns.

A reader returns one sample at its stored size H x W as plain numpy arrays::

    {"image": uint8 [H,W,3] RGB (0-255) or float [H,W,3] RGB in [0,1],
     "targets": {task: array}, "valid": {task: bool [H,W]}}

with targets by task kind: segmentation int64 [H,W] class ids (255 = ignored),
normal float32 [H,W,3] unit vectors, depth float32 [H,W], regression float32
[H,W] or [H,W,C]. Values at invalid pixels are 0 (never read).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from .common import SplitListing

Sample = dict  # {"image": ndarray, "targets": {task: ndarray}, "valid": {task: ndarray}}


@dataclass(frozen=True)
class Rendered:
    """How the scene renderer (:mod:`mtl_attack.data.synth`) writes this format.

    scene: the scene family rendered ("nyuv2": rooms with NYU-40 classes, "taskonomy");
    classes: the class names of the written labels;
    write(root, split, index, scene) -> (paths of the sample relative to root, its labels
    int64 [H,W] in the written classes, negative or >= len(classes) where ignored);
    finish(root, paths, train_class_pixels, n_test_small): writes split files and anything
    else the format keeps beside its samples (paths: split -> per-sample path lists).
    """

    scene: str
    classes: tuple[str, ...]
    write: Callable[[str, str, int, dict], tuple[list[str], np.ndarray]]
    finish: Callable[[str, dict, np.ndarray, int], None]


@dataclass(frozen=True)
class Format:
    """One on-disk format.

    name: as `dataset.format` spells it.
    provides: task name -> task kind of the maps the format stores; None: any task the
    dataset declares (the folder format reads root/<split>/<task>/).
    list_split(root, split, tasks) -> :class:`SplitListing` (one-line errors for a missing
    or empty split); tasks: the declared task specs (name -> options mapping).
    read(root, entry, split, source, tasks) -> :data:`Sample` of one listed entry.
    check(root, entry, split, source, tasks): what preflight runs on each listed entry
    (None: every listed file exists, and the first and last samples decode).
    root_holds: what `dataset.root` must hold, for error messages.
    default_input_size: network input side (pixels) when the config gives none.
    base_ratio: square pre-resize as a multiple of the input size (None = none).
    train_prescale: (stored height, training input) of the real data as its authors use
    it (pixels), see :func:`~mtl_attack.data.datasets.train_prescale_factor`; None = none.
    class_weights(root) -> float32 [C] segmentation loss weights stored with the data
    (tasks that declare `class_weights: stored`); None = the format stores none.
    rendered: how the renderer writes the format (None: it cannot).
    """

    name: str
    provides: Mapping[str, str] | None
    list_split: Callable[[str, str, Mapping[str, Any]], SplitListing]
    read: Callable[[str, list, str, str, Mapping[str, Any]], Sample]
    root_holds: str
    default_input_size: int
    check: Callable[[str, list, str, str, Mapping[str, Any]], None] | None = None
    base_ratio: float | None = None
    train_prescale: tuple[int, int] | None = None
    class_weights: Callable[[str], np.ndarray] | None = None
    rendered: Rendered | None = None
