"""NYUv2 as AdaShare stores it: a split json listing [img, seg, normal_mask, depth] per sample.

    root/nyu_v2_3task.json   {"train": [[img, seg, normal, depth], ...], "test": [...]}
    root/img/<stem>.png          8-bit RGB
    root/seg/<stem>.png          8-bit gray, classes 0-39, 255 void
    root/normal_mask/<stem>.png  8-bit RGB, (n+1)/2*255, white = invalid
    root/depth/<stem>.npy        float32 [H,W] metres, valid where > 3e-5

The authors' loader facts behind these rules are in :mod:`mtl_attack.data.formats`.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ... import atomic
from ..labels import NYU40_CLASSES
from .base import Format, Rendered
from .common import (IGNORE_LABEL, JSON_SPLITS, JsonSplits, _check_array, _check_hw, _check_same_hw, _check_stem,
                     _load_npy, _load_png, _npy_bytes, _png_bytes, _where, decode_normal_png, encode_normal_png,
                     list_json_split, resolve_listed_path, write_split_json)

NYUV2_JSON = "nyu_v2_3task.json"
NYUV2_SPLITS = ("train", "test")
NYUV2_DIRS = ("img", "seg", "normal_mask", "depth")
NYUV2_NUM_CLASSES = 40
NYUV2_DEPTH_MIN = 3e-5  # metres; at or below means no measurement

def write_nyuv2_sample(
    root: str,
    stem: str,
    rgb: np.ndarray,
    seg: np.ndarray,
    normal: np.ndarray,
    normal_valid: np.ndarray,
    depth: np.ndarray,
) -> list[str]:
    """Write one NYUv2 sample in AdaShare's format; return [img, seg, normal, depth] relative to root.

    rgb uint8 [H,W,3]; seg uint8 [H,W] classes 0-39 or 255 (void); normal float
    [H,W,3] unit vectors; normal_valid bool [H,W] (False -> white pixel); depth
    float [H,W] metres (<= 3e-5 means invalid), stored as float32 .npy.
    """
    _check_stem(stem)
    rgb = _check_array("rgb", rgb, (None, None, 3), "uint8")
    hw = rgb.shape[:2]
    seg = _check_array("seg", seg, (None, None), "uint8")
    normal = _check_array("normal", normal, (None, None, 3), "float")
    normal_valid = _check_array("normal_valid", normal_valid, (None, None), "bool")
    depth = _check_array("depth", depth, (None, None), "float")
    _check_same_hw(hw, seg=seg, normal=normal, normal_valid=normal_valid, depth=depth)
    bad = (seg >= NYUV2_NUM_CLASSES) & (seg != IGNORE_LABEL)
    if bad.any():
        raise ValueError(f"seg holds value {int(seg[bad][0])}; NYUv2 classes are 0-39 with 255 for void")
    rel = [f"{NYUV2_DIRS[0]}/{stem}.png", f"{NYUV2_DIRS[1]}/{stem}.png", f"{NYUV2_DIRS[2]}/{stem}.png", f"{NYUV2_DIRS[3]}/{stem}.npy"]
    payloads = [
        _png_bytes(rgb),
        _png_bytes(seg),
        _png_bytes(encode_normal_png(normal, normal_valid)),
        _npy_bytes(depth.astype(np.float32)),
    ]
    for r, data in zip(rel, payloads):
        atomic.write_bytes(os.path.join(root, r), data)
    return rel



def read_nyuv2_sample(root: str, paths: Sequence[str], source: str = "") -> dict[str, np.ndarray]:
    """Read and validate one NYUv2 sample listed as [img, seg, normal, depth].

    Returns numpy arrays at the stored size H x W:
    image uint8 [H,W,3] RGB; seg uint8 [H,W] (0-39, 255 void); normal float32
    [H,W,3] unit vectors (0 where invalid); normal_valid bool [H,W]; depth
    float32 [H,W] metres (0 where invalid); depth_valid bool [H,W] (> 3e-5).
    ``source`` (e.g. "/x/nyu_v2_3task.json (test)") is named in errors.
    """
    if len(paths) != 4:
        raise ValueError(f"an NYUv2 sample lists 4 paths [img, seg, normal, depth], got {len(paths)} in {source or 'paths'}")
    img_p, seg_p, nrm_p, dep_p = (resolve_listed_path(root, p, (), source) for p in paths)
    image = _load_png(img_p, "rgb", source)
    hw = image.shape[:2]
    seg = _load_png(seg_p, "gray8", source)
    _check_hw(seg_p, source, seg, hw, img_p)
    bad = (seg >= NYUV2_NUM_CLASSES) & (seg != IGNORE_LABEL)
    if bad.any():
        raise ValueError(f"{_where(seg_p, source)} holds label {int(seg[bad][0])}; expected classes 0-39 and 255 for void")
    nrm_raw = _load_png(nrm_p, "rgb", source)
    _check_hw(nrm_p, source, nrm_raw, hw, img_p)
    normal, normal_valid = decode_normal_png(nrm_raw, white_is_invalid=True)
    depth = _load_npy(dep_p, source)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.ndim != 2 or not np.issubdtype(depth.dtype, np.floating):
        raise ValueError(f"{_where(dep_p, source)} holds {depth.dtype} {list(depth.shape)}; expected a float [H,W] depth map in metres")
    _check_hw(dep_p, source, depth, hw, img_p)
    depth = depth.astype(np.float32)
    depth_valid = depth > NYUV2_DEPTH_MIN  # NaN compares False -> invalid
    depth = np.where(depth_valid, depth, 0.0).astype(np.float32)
    return {
        "image": image,
        "seg": seg.astype(np.uint8),
        "normal": normal,
        "normal_valid": normal_valid,
        "depth": depth,
        "depth_valid": depth_valid,
    }




JSON_SPLITS["nyuv2"] = JsonSplits(NYUV2_JSON, NYUV2_SPLITS, 4)
TASKS = {"segment_semantic": "segmentation", "normal": "normal", "depth_zbuffer": "depth"}


def sample_from_decoded(decoded: Mapping[str, np.ndarray]) -> dict:
    """A decoded NYUv2-style dict (image, seg, normal, normal_valid, depth, depth_valid) as a
    format :data:`~.base.Sample` of the three NYUv2 tasks."""
    seg = np.asarray(decoded["seg"]).astype(np.int64)
    return {"image": decoded["image"],
            "targets": {"segment_semantic": seg, "normal": decoded["normal"], "depth_zbuffer": decoded["depth"]},
            "valid": {"segment_semantic": seg != IGNORE_LABEL, "normal": decoded["normal_valid"],
                      "depth_zbuffer": decoded["depth_valid"]}}


def _read(root: str, entry: list, split: str, source: str, tasks: Mapping[str, Any]) -> dict:
    return sample_from_decoded(read_nyuv2_sample(root, entry, source))


def _list(root: str, split: str, tasks: Mapping[str, Any]):
    return list_json_split(root, "nyuv2", split)


def _write_rendered(root: str, split: str, index: int, scene: dict) -> tuple[list[str], np.ndarray]:
    paths = write_nyuv2_sample(root, f"{split}_{index:06d}", scene["rgb"], scene["seg"], scene["normal"],
                               scene["normal_valid"], scene["depth"])
    return paths, scene["seg"].astype(np.int64)


def _finish(root: str, paths: dict, counts: np.ndarray, n_test_small: int) -> None:
    write_split_json(root, "nyuv2", {"train": paths["train"], "test": paths["test"]})


FORMAT = Format(
    name="nyuv2", provides=TASKS, list_split=_list, read=_read, root_holds=NYUV2_JSON,
    default_input_size=321,
    train_prescale=(480, 321),  # the paper crops 321 from 480x640 pictures
    rendered=Rendered("nyuv2", NYU40_CLASSES, _write_rendered, _finish))
