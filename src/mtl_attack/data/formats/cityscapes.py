"""Cityscapes as MTAN and LibMTL store it (examples/cityscapes): numbered .npy files in train/ and val/.

    root/{train,val}/image/<i>.npy   float32 [128,256,3] RGB in [0,1]
    root/{train,val}/label/<i>.npy   float [128,256], 7 classes 0-6, -1 = ignored
    root/{train,val}/depth/<i>.npy   float32 [128,256,1] depth as MTAN's release stores it (it calls it
                                     inverse depth), 0 = invalid; used as stored

Two tasks: `segmentation` (7 classes, scored by mIoU and pixel accuracy) and `depth` (scored by
its absolute and relative error over valid pixels, LibMTL's depth metrics; no delta thresholds).
2,975 train / 500 val in the public copy; LibMTL tests on val/ (examples/cityscapes:
create_dataset.py reads <split>/image, label, depth by number; main.py scores mIoU, pixel
accuracy, abs and rel error; a depth pixel is valid where it is not 0, a label where it is not -1).
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..labels import ROOM7_CLASSES, nyu40_to_room7
from .base import Format, Rendered
from .common import IGNORE_LABEL
from .npy import NpyLayout

CITYSCAPES_DIRS = ("image", "label", "depth")
CITYSCAPES_NUM_CLASSES = 7
LAYOUT = NpyLayout(CITYSCAPES_DIRS, CITYSCAPES_NUM_CLASSES, "Cityscapes (MTAN)")
TASKS = {"segmentation": "segmentation", "depth": "depth"}
TEST_FOLDER = {"train": "train", "test": "val"}


def _list(root: str, split: str, tasks: Mapping[str, Any]):
    return LAYOUT.list_split(root, split)


def _read(root: str, entry: list, split: str, source: str, tasks: Mapping[str, Any]) -> dict:
    d = LAYOUT.read(root, entry, source)
    seg = d["seg"].astype(np.int64)
    return {"image": d["image"], "targets": {"segmentation": seg, "depth": d["depth"]},
            "valid": {"segmentation": seg != IGNORE_LABEL, "depth": d["depth_valid"]}}


def _write_rendered(root: str, split: str, index: int, scene: dict) -> tuple[list[str], np.ndarray]:
    # Rendered rooms, their NYU-40 classes grouped into seven room classes (labels.ROOM7_CLASSES).
    label = nyu40_to_room7(scene["seg"])
    depth = np.where(scene["depth_valid"], scene["depth"], 0.0)
    paths = LAYOUT.write(root, TEST_FOLDER[split], index, scene["rgb"].astype(np.float32) / 255.0, label, depth)
    return paths, label.astype(np.int64)


def _finish(root: str, paths: dict, counts: np.ndarray, n_test_small: int) -> None:
    """Nothing beside the samples: a split is listed by its numbered files."""


FORMAT = Format(
    name="cityscapes", provides=TASKS, list_split=_list, read=_read,
    root_holds="train/ and val/, each with image/, label/ and depth/ of numbered .npy files",
    default_input_size=128,  # the stored 128x256 height: the test resize never upscales
    train_prescale=(128, 128),  # trained at the stored scale, as LibMTL does
    rendered=Rendered("nyuv2", ROOM7_CLASSES, _write_rendered, _finish))
