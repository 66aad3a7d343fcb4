"""NYUv2 as MTAN and LibMTL store it (examples/nyu): numbered .npy files in train/ and val/.

    root/{train,val}/image/<i>.npy   float32 [H,W,3] RGB in [0,1] (288x384 in the public copy)
    root/{train,val}/label/<i>.npy   float [H,W], classes 0-12, -1 = ignored
    root/{train,val}/depth/<i>.npy   float32 [H,W,1] metres, 0 = invalid
    root/{train,val}/normal/<i>.npy  float32 [H,W,3] unit vectors, all-zero = invalid

795 train / 654 val in the public copy; LibMTL's "test" split reads val/.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from ..labels import NYU13_CLASSES, nyu40_to_nyu13
from .base import Format, Rendered
from .npy import IGNORE as MTAN_IGNORE, NpyLayout
from .nyuv2 import TASKS, sample_from_decoded

MTAN_SPLITS = ("train", "val")  # the public copy's folders; LibMTL's "test" split reads val/
MTAN_DIRS = ("image", "label", "depth", "normal")  # the path order of one listed sample
MTAN_NUM_CLASSES = 13
LAYOUT = NpyLayout(MTAN_DIRS, MTAN_NUM_CLASSES, "MTAN NYUv2", "an", MTAN_SPLITS)
TEST_FOLDER = {"train": "train", "test": "val"}  # the rendered copy's test scenes go to val/

__all__ = ["MTAN_SPLITS", "MTAN_DIRS", "MTAN_NUM_CLASSES", "MTAN_IGNORE", "write_mtan_sample", "list_mtan_split",
           "read_mtan_sample", "FORMAT"]


def write_mtan_sample(root: str, split: str, index: int, image: np.ndarray, label: np.ndarray, depth: np.ndarray,
                      normal: np.ndarray) -> list[str]:
    """Write sample `index` of folder `split`; return [image, label, depth, normal] relative to root
    (arrays as :meth:`NpyLayout.write` takes them: classes 0-12 or -1, depth in metres)."""
    return LAYOUT.write(root, split, index, image, label, depth, normal)


def list_mtan_split(root: str, split: str):
    """The samples of folder `split` of an MTAN NYUv2 root (:meth:`NpyLayout.list_split`)."""
    return LAYOUT.list_split(root, split)


def read_mtan_sample(root: str, paths, source: str = "") -> dict[str, np.ndarray]:
    """One sample listed as [image, label, depth, normal]: image float32 [H,W,3] in [0,1], seg uint8
    (0-12, 255 where the file holds -1), depth metres and normals with their valid masks
    (:meth:`NpyLayout.read`)."""
    return LAYOUT.read(root, paths, source)


def _write_rendered(root: str, split: str, index: int, scene: dict) -> tuple[list[str], np.ndarray]:
    label = nyu40_to_nyu13(scene["seg"])
    paths = LAYOUT.write(root, TEST_FOLDER[split], index, scene["rgb"].astype(np.float32) / 255.0, label,
                         scene["depth"], scene["normal"])
    return paths, label.astype(np.int64)


def _finish(root: str, paths: dict, counts: np.ndarray, n_test_small: int) -> None:
    """Nothing beside the samples: a split is listed by its numbered files."""


def _list(root: str, split: str, tasks: Mapping[str, Any]):
    return LAYOUT.list_split(root, split)


def _read(root: str, entry: list, split: str, source: str, tasks: Mapping[str, Any]) -> dict:
    return sample_from_decoded(LAYOUT.read(root, entry, source))


FORMAT = Format(
    name="nyuv2_mtan", provides=TASKS,
    list_split=_list, read=_read,
    root_holds="train/ and val/, each with image/, label/, depth/ and normal/ of numbered .npy files",
    default_input_size=288,  # the stored 288x384 height: the test resize never upscales
    train_prescale=(288, 288),  # LibMTL trains at the stored scale
    rendered=Rendered("nyuv2", NYU13_CLASSES, _write_rendered, _finish))
