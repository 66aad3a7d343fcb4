"""Tiny-Taskonomy as TreeMTL prepares it: a split json listing six maps per sample, class weights beside it.

    root/taskonomy.json      {"train": [[rgb, seg, normal, depth, kp, edge], ...],
                              "test": [...], "test_small": [...]}
    root/semseg_prior_factor.npy   17 class weights
    root/rgb/<stem>.png               8-bit RGB
    root/segment_semantic/<stem>.png  8-bit gray, raw = class + 1, 0 = unlabeled
    root/normal/<stem>.png            8-bit RGB, (n+1)/2*255
    root/depth_zbuffer/<stem>.png     16-bit, 1/512 m per unit, >= 64500 invalid
    root/keypoints2d/<stem>.png       16-bit, raw/2^16 clipped to [0, 0.005]
    root/edge_texture/<stem>.png      16-bit, raw/2^16 clipped to [0, 0.08]

The authors' loader facts behind these rules are in :mod:`mtl_attack.data.formats`.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

import numpy as np

from ... import atomic
from ..labels import TASKONOMY_CLASSES, class_weights
from .base import Format, Rendered
from .common import (IGNORE_LABEL, JSON_SPLITS, JsonSplits, _U16, _check_array, _check_hw, _check_same_hw,
                     _check_stem, _load_npy, _load_png, _npy_bytes, _png_bytes, _where, decode_normal_png,
                     encode_normal_png, list_json_split, resolve_listed_path, write_split_json)

TASKONOMY_JSON = "taskonomy.json"
TASKONOMY_SPLITS = ("train", "test", "test_small")
TASKONOMY_DIRS = ("rgb", "segment_semantic", "normal", "depth_zbuffer", "keypoints2d", "edge_texture")
TASKONOMY_NUM_CLASSES = 17
TASKONOMY_DEPTH_PER_METRE = 512.0  # raw units per metre
TASKONOMY_DEPTH_INVALID = 64500  # raw >= this is invalid
TASKONOMY_DEPTH_INVALID_RAW = 65535  # what the writer stores for invalid pixels
KEYPOINTS_MAX = 0.005  # clip range of raw/2^16
EDGES_MAX = 0.08
SEMSEG_PRIOR = "semseg_prior_factor.npy"

def encode_taskonomy_seg(seg: np.ndarray) -> np.ndarray:
    """Class ids uint8 [H,W] (0-16, 255 = unlabeled) -> raw uint8 = id + 1, 0 for unlabeled."""
    seg = np.asarray(seg)
    raw = seg.astype(np.int64) + 1
    raw[seg == IGNORE_LABEL] = 0
    return raw.astype(np.uint8)


def decode_taskonomy_seg(raw: np.ndarray) -> np.ndarray:
    """Raw uint8 [H,W] -> class ids uint8 = raw - 1, with raw 0 (unlabeled) -> 255."""
    seg = raw.astype(np.int64) - 1
    seg[raw == 0] = IGNORE_LABEL
    return seg.astype(np.uint8)


def encode_taskonomy_depth(depth_m: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth in metres float [H,W] + valid bool [H,W] -> uint16 raw (1/512 m units).

    Valid depths are clipped into [0, 64499] so they stay valid; invalid pixels get 65535.
    """
    raw = np.clip(np.rint(np.asarray(depth_m, np.float64) * TASKONOMY_DEPTH_PER_METRE), 0, TASKONOMY_DEPTH_INVALID - 1)
    raw = raw.astype(np.uint16)
    raw[~np.asarray(valid, bool)] = TASKONOMY_DEPTH_INVALID_RAW
    return raw


def decode_taskonomy_depth(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint16 [H,W] -> (target float32 [H,W] = log(1+raw)/log(2^16), valid = raw < 64500).

    Invalid pixels get target 0.
    """
    valid = raw < TASKONOMY_DEPTH_INVALID
    target = (np.log1p(raw.astype(np.float64)) / np.log(_U16)).astype(np.float32)
    target[~valid] = 0.0
    return target, valid


def encode_clipped_16bit(target: np.ndarray, vmax: float) -> np.ndarray:
    """Target float [H,W] in [-1,1] -> uint16 raw with raw/2^16 = (t+1)/2*vmax (inverse of the reader)."""
    v = (np.clip(np.asarray(target, np.float64), -1.0, 1.0) + 1.0) * 0.5 * vmax
    return np.clip(np.rint(v * _U16), 0, 65535).astype(np.uint16)


def decode_clipped_16bit(raw: np.ndarray, vmax: float) -> np.ndarray:
    """uint16 [H,W] -> float32 target = clip(raw/2^16, 0, vmax)/vmax*2-1 in [-1,1]."""
    v = np.clip(raw.astype(np.float64) / _U16, 0.0, vmax)
    return (v / vmax * 2.0 - 1.0).astype(np.float32)


# --------------------------------------------------------------------------- writing



def write_taskonomy_sample(
    root: str,
    stem: str,
    rgb: np.ndarray,
    seg: np.ndarray,
    normal: np.ndarray,
    depth_m: np.ndarray,
    depth_valid: np.ndarray,
    keypoints: np.ndarray,
    edges: np.ndarray,
) -> list[str]:
    """Write one Tiny-Taskonomy sample; return the 6 paths relative to root.

    Order: [rgb, segment_semantic, normal, depth_zbuffer, keypoints2d, edge_texture].
    rgb uint8 [H,W,3]; seg uint8 [H,W] classes 0-16 or 255 (stored raw = seg+1,
    0 for 255); normal float [H,W,3] in [-1,1]; depth_m float [H,W] metres and
    depth_valid bool [H,W] (16-bit raw 1/512 m, 65535 when invalid); keypoints
    and edges float [H,W] in TARGET space [-1,1] (16-bit raw, the inverse of
    the reader's clip-and-map).
    """
    _check_stem(stem)
    rgb = _check_array("rgb", rgb, (None, None, 3), "uint8")
    hw = rgb.shape[:2]
    seg = _check_array("seg", seg, (None, None), "uint8")
    normal = _check_array("normal", normal, (None, None, 3), "float")
    depth_m = _check_array("depth_m", depth_m, (None, None), "float")
    depth_valid = _check_array("depth_valid", depth_valid, (None, None), "bool")
    keypoints = _check_array("keypoints", keypoints, (None, None), "float")
    edges = _check_array("edges", edges, (None, None), "float")
    _check_same_hw(hw, seg=seg, normal=normal, depth_m=depth_m, depth_valid=depth_valid, keypoints=keypoints, edges=edges)
    bad = (seg >= TASKONOMY_NUM_CLASSES) & (seg != IGNORE_LABEL)
    if bad.any():
        raise ValueError(f"seg holds value {int(seg[bad][0])}; Taskonomy classes are 0-16 with 255 for unlabeled")
    rel = [f"{d}/{stem}.png" for d in TASKONOMY_DIRS]
    payloads = [
        _png_bytes(rgb),
        _png_bytes(encode_taskonomy_seg(seg)),
        _png_bytes(encode_normal_png(normal)),
        _png_bytes(encode_taskonomy_depth(depth_m, depth_valid)),
        _png_bytes(encode_clipped_16bit(keypoints, KEYPOINTS_MAX)),
        _png_bytes(encode_clipped_16bit(edges, EDGES_MAX)),
    ]
    for r, data in zip(rel, payloads):
        atomic.write_bytes(os.path.join(root, r), data)
    return rel



def write_semseg_prior(root: str, weights: Sequence[float]) -> str:
    """Write Taskonomy's semseg_prior_factor.npy (17 positive float class weights) atomically; return its path."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (TASKONOMY_NUM_CLASSES,) or not np.all(np.isfinite(w)) or np.any(w < 0):
        raise ValueError(f"semseg prior must be {TASKONOMY_NUM_CLASSES} finite non-negative weights, got shape {list(w.shape)}")
    path = os.path.join(root, SEMSEG_PRIOR)
    atomic.write_bytes(path, _npy_bytes(w))
    return path


def read_semseg_prior(root: str) -> np.ndarray:
    """Read semseg_prior_factor.npy -> float32 [17], the seg cross-entropy class weights."""
    path = os.path.join(root, SEMSEG_PRIOR)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist; a Taskonomy root must hold the 17 seg class weights (write_semseg_prior)")
    w = _load_npy(path, "")
    if w.shape != (TASKONOMY_NUM_CLASSES,) or not np.all(np.isfinite(w)):
        raise ValueError(f"{path} must hold {TASKONOMY_NUM_CLASSES} finite floats, got shape {list(w.shape)}")
    return w.astype(np.float32)


# --------------------------------------------------------------------------- reading


def taskonomy_alt_dirs(split: str | None) -> tuple[str, ...]:
    """Sub-folders of root that TreeMTL's Taskonomy loader prefixes: train -> train, test* -> test."""
    if split is None:
        return ()
    return ("train",) if split.startswith("train") else ("test",)


def read_taskonomy_sample(root: str, paths: Sequence[str], split: str | None = None, source: str = "") -> dict[str, np.ndarray]:
    """Read and validate one Tiny-Taskonomy sample listed as
    [rgb, segment_semantic, normal, depth_zbuffer, keypoints2d, edge_texture].

    Returns numpy arrays at the stored size H x W, already in target space:
    image uint8 [H,W,3]; seg uint8 [H,W] (0-16, 255 unlabeled); normal float32
    [H,W,3] unit vectors (0 where invalid); normal_valid bool [H,W] (= depth
    valid, as the authors); depth float32 [H,W] = log(1+raw)/log(2^16) (0
    where invalid); depth_valid bool [H,W] (raw < 64500); keypoints2d and
    edge_texture float32 [H,W] in [-1,1].
    """
    if len(paths) != 6:
        raise ValueError(f"a Taskonomy sample lists 6 paths [rgb, seg, normal, depth, keypoints, edges], got {len(paths)} in {source or 'paths'}")
    alt = taskonomy_alt_dirs(split)
    rgb_p, seg_p, nrm_p, dep_p, kp_p, ed_p = (resolve_listed_path(root, p, alt, source) for p in paths)
    image = _load_png(rgb_p, "rgb", source)
    hw = image.shape[:2]
    seg_raw = _load_png(seg_p, "gray8", source)
    _check_hw(seg_p, source, seg_raw, hw, rgb_p)
    if seg_raw.max(initial=0) > TASKONOMY_NUM_CLASSES:
        raise ValueError(f"{_where(seg_p, source)} holds raw label {int(seg_raw.max())}; expected 0 (unlabeled) to 17")
    nrm_raw = _load_png(nrm_p, "rgb", source)
    _check_hw(nrm_p, source, nrm_raw, hw, rgb_p)
    dep_raw = _load_png(dep_p, "gray16", source)
    _check_hw(dep_p, source, dep_raw, hw, rgb_p)
    kp_raw = _load_png(kp_p, "gray16", source)
    _check_hw(kp_p, source, kp_raw, hw, rgb_p)
    ed_raw = _load_png(ed_p, "gray16", source)
    _check_hw(ed_p, source, ed_raw, hw, rgb_p)
    depth, depth_valid = decode_taskonomy_depth(dep_raw)
    normal, normal_ok = decode_normal_png(nrm_raw, white_is_invalid=False)
    normal_valid = depth_valid & normal_ok
    normal[~normal_valid] = 0.0
    return {
        "image": image,
        "seg": decode_taskonomy_seg(seg_raw),
        "normal": normal,
        "normal_valid": normal_valid,
        "depth": depth,
        "depth_valid": depth_valid,
        "keypoints2d": decode_clipped_16bit(kp_raw, KEYPOINTS_MAX),
        "edge_texture": decode_clipped_16bit(ed_raw, EDGES_MAX),
    }




JSON_SPLITS["taskonomy"] = JsonSplits(TASKONOMY_JSON, TASKONOMY_SPLITS, 6, taskonomy_alt_dirs)
TASKS = {"segment_semantic": "segmentation", "normal": "normal", "depth_zbuffer": "depth",
         "keypoints2d": "regression", "edge_texture": "regression"}


def _read(root: str, entry: list, split: str, source: str, tasks: Mapping[str, Any]) -> dict:
    d = read_taskonomy_sample(root, entry, split, source)
    seg = d["seg"].astype(np.int64)
    every = np.ones(seg.shape, bool)  # keypoints and edges have no mask (only padding is ignored)
    return {"image": d["image"],
            "targets": {"segment_semantic": seg, "normal": d["normal"], "depth_zbuffer": d["depth"],
                        "keypoints2d": d["keypoints2d"], "edge_texture": d["edge_texture"]},
            "valid": {"segment_semantic": seg != IGNORE_LABEL, "normal": d["normal_valid"],
                      "depth_zbuffer": d["depth_valid"], "keypoints2d": every, "edge_texture": every}}


def _list(root: str, split: str, tasks: Mapping[str, Any]):
    return list_json_split(root, "taskonomy", split)


def _write_rendered(root: str, split: str, index: int, scene: dict) -> tuple[list[str], np.ndarray]:
    paths = write_taskonomy_sample(root, f"{split}_{index:06d}", scene["rgb"], scene["seg"], scene["normal"],
                                   scene["depth"], scene["depth_valid"], scene["keypoints2d"], scene["edge_texture"])
    return paths, scene["seg"].astype(np.int64)


def _finish(root: str, paths: dict, counts: np.ndarray, n_test_small: int) -> None:
    write_semseg_prior(root, class_weights(counts).tolist())
    write_split_json(root, "taskonomy", {"train": paths["train"], "test": paths["test"],
                                         "test_small": paths["test"][:n_test_small]})


FORMAT = Format(
    name="taskonomy", provides=TASKS, list_split=_list, read=_read,
    root_holds=f"{TASKONOMY_JSON} and {SEMSEG_PRIOR}", default_input_size=224,
    base_ratio=256 / 224,  # the authors pre-resize to 256, then crop or test at 224
    class_weights=read_semseg_prior,
    rendered=Rendered("taskonomy", TASKONOMY_CLASSES, _write_rendered, _finish))
