"""On-disk formats of NYUv2 (AdaShare's copy and MTAN's / LibMTL's copy) and Tiny-Taskonomy.

Pure numpy encoders/decoders, writers (atomic, used by the synthetic renderer)
and validating readers (used by :mod:`mtl_attack.data.datasets`).

Layout written here (and read from a user's copy of the real data)::

    NYUv2      root/nyu_v2_3task.json   {"train": [[img, seg, normal, depth], ...], "test": [...]}
               root/img/<stem>.png          8-bit RGB
               root/seg/<stem>.png          8-bit gray, classes 0-39, 255 void
               root/normal_mask/<stem>.png  8-bit RGB, (n+1)/2*255, white = invalid
               root/depth/<stem>.npy        float32 [H,W] metres, valid where > 3e-5
    Taskonomy  root/taskonomy.json      {"train": [[rgb, seg, normal, depth, kp, edge], ...],
                                         "test": [...], "test_small": [...]}
               root/semseg_prior_factor.npy   17 class weights
               root/rgb/<stem>.png               8-bit RGB
               root/segment_semantic/<stem>.png  8-bit gray, raw = class + 1, 0 = unlabeled
               root/normal/<stem>.png            8-bit RGB, (n+1)/2*255
               root/depth_zbuffer/<stem>.png     16-bit, 1/512 m per unit, >= 64500 invalid
               root/keypoints2d/<stem>.png       16-bit, raw/2^16 clipped to [0, 0.005]
               root/edge_texture/<stem>.png      16-bit, raw/2^16 clipped to [0, 0.08]
    NYUv2 MTAN root/{train,val}/image/<i>.npy   float32 [H,W,3] RGB in [0,1] (288x384 in the public copy)
    (LibMTL)   root/{train,val}/label/<i>.npy   float [H,W], classes 0-12, -1 = ignored
               root/{train,val}/depth/<i>.npy   float32 [H,W,1] metres, 0 = invalid
               root/{train,val}/normal/<i>.npy  float32 [H,W,3] unit vectors, all-zero = invalid
               (no split json: a split is the numbers i = 0..N-1 found in its four folders,
               which must hold the same numbers; 795 train / 654 val in the public copy)

Listing a split (:class:`SplitListing`: one path list per sample, and where the
list came from, named in errors): the json kinds read their split json
(:func:`list_json_split`), the MTAN kind scans its folders (:func:`list_mtan_split`).

The folder names follow AdaShare's NYUv2 sample copy (img, seg, normal_mask,
depth) and Taskonomy's task names.

Resolving a path listed in a split json (first existing candidate wins):
an absolute path that exists is used as is; otherwise the path (leading "/"
stripped) is joined onto root, as AdaShare does; for Taskonomy it is then
tried under root/train (split "train") or root/test (splits "test",
"test_small"), as TreeMTL's loader does.

Facts from the authors' loaders (TreeMTL data/nyuv2_dataloader_adashare.py
and data/taskonomy_dataloader_adashare.py, the same as MTLAttack-DGBA
data/nyuv2_dataloader_adashare.py and AdaShare dataloaders/*.py; losses in
TreeMTL data/pixel2pixel_loss.py):

- NYUv2 test: image and labels resized to a crop_h x crop_w square (321x321,
  aspect ratio not kept); image bilinear (cv2 default), labels nearest.
- NYUv2 train: scale s = U[0.5, 1.5), size int(h*s) x int(w*s) (image
  bilinear, labels nearest); mirror with p = 0.5 WITHOUT negating the normal's
  x component; pad to at least the crop size with the image centred (image 0
  = black, seg 255, normal 255 = invalid, depth 0 = invalid), then a uniform
  random crop.
- NYUv2 normals are read with cv2 (BGR) and fed raw 0..255 to F.normalize in
  the loss and the metric, i.e. never decoded to [-1, 1]; a pixel is invalid
  when ANY channel is 255. AdaShare's normal_mask PNGs also hold clusters of
  pure grey (127,127,127) pixels (about 1% of each image); the authors count
  them as valid, with direction (1,1,1)/sqrt3 after F.normalize.
  This module decodes (n+1)/2*255 back to unit vectors; a pixel is invalid
  when it is white (255,255,255, SPEC's rule) or when its decoded vector is
  (near) zero (norm < NORMAL_MIN_NORM, which catches greys 127 and 128), since
  such a vector has no direction.
- NYUv2 depth valid where depth > 3e-5 (pixel2pixel_loss depth_loss).
- Taskonomy: every map is first resized to 256x256 with nearest (the RGB
  image too); train then scale 0.5-1.5, mirror (normal x negated: sn[..., 0]
  *= -1), pad/crop to 224 (labels padded with 255, which every loss treats as
  invalid); test resizes 256 -> 224.
- Taskonomy seg: raw 0 (unlabeled) is turned into class 0 (raw 0 -> 1, then
  -1); the mask raw > 0 times prior_factor[class] is computed but TreeMTL's
  loss ignores it. This module maps raw 0 to ignore (255) instead.
- semseg_prior_factor.npy: the class weights of the seg cross-entropy
  (nn.CrossEntropyLoss(weight=prior_factor, ignore_index=255)), in training
  and in the Taskonomy seg metric.
- Taskonomy validity: depth raw < 64500; the normal's mask IS the depth mask;
  keypoints2d and edge_texture have no mask (only padding is ignored). This
  module also drops (near) zero normals there (the same rule as NYUv2).
- Depth target log(1 + raw) / log(2^16); keypoints raw/2^16 clipped to
  [0, 0.005], edges to [0, 0.08], each mapped linearly onto [-1, 1].

Facts from LibMTL's NYUv2 example (examples/nyu/create_dataset.py and utils.py,
from MTAN's loader): split "test" reads root/val; item i loads <i>.npy of each
folder for i in range(number of .npy files in image/); labels -1 are ignored by
the cross-entropy (ignore_index=-1); a depth pixel is valid where depth != 0 and
a normal pixel where its channel sum != 0 (this module: where its length is at
least NORMAL_MIN_NORM, so all-zero is invalid, as in the other formats); images,
depth and normals are used as stored (no resize; predictions are upsampled to
288x384). This module maps label -1 to IGNORE_LABEL (255) when decoding.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .. import atomic

IGNORE_LABEL = 255

NYUV2_JSON = "nyu_v2_3task.json"
NYUV2_SPLITS = ("train", "test")
NYUV2_DIRS = ("img", "seg", "normal_mask", "depth")
NYUV2_NUM_CLASSES = 40
NYUV2_DEPTH_MIN = 3e-5  # metres; at or below means no measurement
# A decoded normal shorter than this has no direction -> invalid. A real unit
# normal decodes to norm >= 1 - sqrt(3)/255 ~ 0.993 (each channel rounds by at
# most half a step, 1/255 after decoding); greys 127 and 128 decode to
# norm sqrt(3)/255 ~ 0.0068. 0.5 sits far from both.
NORMAL_MIN_NORM = 0.5

MTAN_SPLITS = ("train", "val")  # the public copy's folders; LibMTL's "test" split reads val/
MTAN_DIRS = ("image", "label", "depth", "normal")  # the path order of one listed sample
MTAN_NUM_CLASSES = 13
MTAN_IGNORE = -1  # the stored label of ignored pixels (decoded to IGNORE_LABEL)
# Loose bounds that catch another encoding (0-255 images, mean-subtracted images,
# (n+1)/2*255 normals) without rejecting interpolation or rounding noise of the real copy.
MTAN_IMAGE_TOL = 0.05  # image values in [-tol, 1 + tol] are clipped into [0, 1]
MTAN_NORMAL_MAX_NORM = 1.5  # a longer normal vector is not a unit-vector map
_NUMBERED_NPY = re.compile(r"(0|[1-9][0-9]*)\.npy")

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

_U16 = 2.0**16
_MODES_8BIT_GRAY = ("L", "P")
_MODES_16BIT = ("I;16", "I;16B", "I;16L", "I")
_MODE_WORDS = {
    "rgb": "an 8-bit RGB PNG (mode RGB)",
    "gray8": "an 8-bit single-channel PNG (mode L)",
    "gray16": "a 16-bit single-channel PNG (mode I;16)",
}


# --------------------------------------------------------------------------- codecs


def encode_normal_png(normal: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Unit normals float [H,W,3] in [-1,1] -> uint8 [H,W,3] = round((n+1)/2*255).

    Pixels where ``valid`` (bool [H,W]) is False become white (255,255,255).
    A unit normal decodes back with norm >= 0.99, so it never reads as a
    near-zero (invalid) vector; a zero or short vector does.
    """
    raw = np.clip(np.rint((np.asarray(normal, np.float64) + 1.0) * 0.5 * 255.0), 0, 255).astype(np.uint8)
    if valid is not None:
        raw[~np.asarray(valid, bool)] = 255
    return raw


def decode_normal_png(raw: np.ndarray, white_is_invalid: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """uint8 [H,W,3] -> (unit normals float32 [H,W,3], valid bool [H,W]).

    n = raw/255*2-1, renormalised to unit length; invalid pixels are zero.
    A pixel whose n has norm < NORMAL_MIN_NORM (e.g. grey 127 or 128) is
    invalid; with ``white_is_invalid`` (NYUv2) a white pixel is invalid too.
    """
    n = raw.astype(np.float32) / 255.0 * 2.0 - 1.0
    norm = np.linalg.norm(n, axis=-1)
    valid = norm >= NORMAL_MIN_NORM
    if white_is_invalid:
        valid &= ~np.all(raw == 255, axis=-1)
    out = np.zeros_like(n)
    out[valid] = n[valid] / norm[valid][:, None]
    return out, valid


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


def _png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


def _check_stem(stem: str) -> None:
    if not isinstance(stem, str) or not stem or "/" in stem or "\\" in stem or stem in (".", ".."):
        raise ValueError(f"sample stem {stem!r} must be a non-empty file name without path separators")


def _check_array(name: str, arr: Any, shape: tuple, kind: str) -> np.ndarray:
    """Check dtype family ('uint8', 'float', 'bool') and shape (None = any size, matched later)."""
    arr = np.asarray(arr)
    ok = {
        "uint8": arr.dtype == np.uint8,
        "float": np.issubdtype(arr.dtype, np.floating),
        "bool": arr.dtype == np.bool_,
    }[kind]
    shape_ok = arr.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, arr.shape))
    if not ok or not shape_ok:
        want = "x".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must be a {kind} array of shape [{want}], got {arr.dtype} {list(arr.shape)}")
    return arr


def _check_same_hw(hw: tuple[int, int], **arrays: np.ndarray) -> None:
    for name, arr in arrays.items():
        if tuple(arr.shape[:2]) != hw:
            raise ValueError(f"{name} has height x width {tuple(arr.shape[:2])} but rgb has {hw}; all maps must match")


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


def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split in (".", ".."):
        raise ValueError(f"split {split!r} must be a non-empty folder name without path separators")


def write_mtan_sample(
    root: str,
    split: str,
    index: int,
    image: np.ndarray,
    label: np.ndarray,
    depth: np.ndarray,
    normal: np.ndarray,
) -> list[str]:
    """Write sample `index` of folder `split` in MTAN's NYUv2 format; return [image, label, depth, normal] relative to root.

    image float [H,W,3] RGB in [0,1]; label integer or float [H,W], classes 0-12
    or -1 (ignored); depth float [H,W] (or [H,W,1]) metres, 0 = invalid; normal
    float [H,W,3] unit vectors, all-zero = invalid. Stored as float32 .npy
    (label [H,W], depth [H,W,1]).
    """
    _check_split_name(split)
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ValueError(f"sample index must be an integer >= 0, got {index!r}")
    image = _check_array("image", image, (None, None, 3), "float")
    hw = image.shape[:2]
    label = np.asarray(label)
    if label.ndim != 2 or not (np.issubdtype(label.dtype, np.integer) or np.issubdtype(label.dtype, np.floating)):
        raise ValueError(f"label must be a numeric array of shape [?x?], got {label.dtype} {list(label.shape)}")
    depth = np.asarray(depth)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    depth = _check_array("depth", depth, (None, None), "float")
    normal = _check_array("normal", normal, (None, None, 3), "float")
    _check_same_hw(hw, label=label, depth=depth, normal=normal)
    if not np.all(np.isfinite(image)) or image.min(initial=0) < 0 or image.max(initial=0) > 1:
        raise ValueError("image must hold finite values in [0, 1]")
    bad = (label != MTAN_IGNORE) & ~np.isin(label, np.arange(MTAN_NUM_CLASSES))
    if bad.any():
        raise ValueError(f"label holds value {label[bad][0]}; MTAN NYUv2 classes are 0-12 with -1 for ignored")
    if not np.all(depth >= 0):  # also rejects NaN
        raise ValueError("depth must be >= 0 metres everywhere (0 = invalid)")
    rel = [f"{split}/{d}/{int(index)}.npy" for d in MTAN_DIRS]
    payloads = [
        _npy_bytes(image.astype(np.float32)),
        _npy_bytes(label.astype(np.float32)),
        _npy_bytes(depth.astype(np.float32)[..., None]),
        _npy_bytes(normal.astype(np.float32)),
    ]
    for r, data in zip(rel, payloads):
        atomic.write_bytes(os.path.join(root, r), data)
    return rel


# Per kind: split json name, required split keys, number of paths per sample.
_SPLIT_SPEC = {
    "nyuv2": (NYUV2_JSON, NYUV2_SPLITS, 4),
    "taskonomy": (TASKONOMY_JSON, TASKONOMY_SPLITS, 6),
}


def _split_spec(kind: str) -> tuple[str, tuple[str, ...], int]:
    if kind not in _SPLIT_SPEC:
        raise ValueError(f"dataset kind {kind!r} is unknown; use one of {sorted(_SPLIT_SPEC)}")
    return _SPLIT_SPEC[kind]


def split_json_path(root: str, kind: str) -> str:
    """Path of the split json of a dataset kind ("nyuv2" or "taskonomy") under root."""
    return os.path.join(root, _split_spec(kind)[0])


def _check_entries(where: str, split: str, entries: Any, n_paths: int) -> None:
    if not isinstance(entries, list):
        raise ValueError(f"{where}: split {split!r} must be a list of path lists, got {type(entries).__name__}")
    for i, e in enumerate(entries):
        if not isinstance(e, (list, tuple)) or len(e) != n_paths or not all(isinstance(p, str) for p in e):
            raise ValueError(f"{where}: entry {i} of split {split!r} must be a list of {n_paths} path strings, got {e!r}"[:400])


def write_split_json(root: str, kind: str, splits: Mapping[str, Sequence[Sequence[str]]]) -> str:
    """Write nyu_v2_3task.json (kind "nyuv2": train, test) or taskonomy.json
    (kind "taskonomy": train, test, test_small) atomically; return its path.

    ``splits`` maps each split name to a list of per-sample path lists
    (relative to root, as returned by the sample writers).
    """
    name, keys, n_paths = _split_spec(kind)
    missing = [k for k in keys if k not in splits]
    extra = [k for k in splits if k not in keys]
    if missing or extra:
        raise ValueError(f"{kind} splits must have exactly the keys {list(keys)}; missing {missing}, unexpected {extra}")
    data = {k: [list(e) for e in splits[k]] for k in keys}
    for k in keys:
        _check_entries(name, k, data[k], n_paths)
    path = os.path.join(root, name)
    atomic.write_bytes(path, json.dumps(data, indent=1).encode())
    return path


def read_split_json(root: str, kind: str) -> dict[str, list[list[str]]]:
    """Read and validate the split json of ``kind`` under root (dict split -> path lists)."""
    name, _, n_paths = _split_spec(kind)
    path = os.path.join(root, name)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"split file {path} does not exist; dataset.root must hold {name} for a {kind} dataset")
    try:
        with open(path) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path} is not valid JSON ({e}); rewrite it or restore the original") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object mapping split names to path lists")
    for k, v in data.items():
        _check_entries(path, k, v, n_paths)
    return data


@dataclass(frozen=True)
class SplitListing:
    """The samples of one split.

    entries: per sample, its file paths (relative to root, or absolute) in the
    order its kind's reader takes them; source: where the list came from, named
    in errors (a split json and the split, or the scanned split folder);
    alt_dirs: sub-folders of root also tried for a relative path
    (:func:`resolve_listed_path`).
    """

    entries: list[list[str]]
    source: str
    alt_dirs: tuple[str, ...] = ()


def list_json_split(root: str, kind: str, split: str) -> SplitListing:
    """The samples of `split` as the split json of `kind` ("nyuv2" or "taskonomy") under root lists them.

    Raises a one-line FileNotFoundError (no json) or ValueError (bad json, unknown or empty split).
    """
    splits = read_split_json(root, kind)
    json_name = split_json_path(root, kind)
    if split not in splits:
        raise ValueError(f"split {split!r} is not in {json_name}; it has {sorted(splits)} (set dataset.test_split)")
    if not splits[split]:
        raise ValueError(f"split {split!r} of {json_name} lists no samples")
    alt = taskonomy_alt_dirs(split) if kind == "taskonomy" else ()
    return SplitListing([list(e) for e in splits[split]], f"{json_name} ({split})", alt)


def _numbered(folder: str) -> list[int]:
    return sorted(int(m.group(1)) for name in os.listdir(folder) if (m := _NUMBERED_NPY.fullmatch(name)))


def list_mtan_split(root: str, split: str) -> SplitListing:
    """The samples of folder `split` of an MTAN NYUv2 root, found by scanning its numbered .npy files.

    Sample i lists [split/image/i.npy, split/label/i.npy, split/depth/i.npy,
    split/normal/i.npy] (relative to root) for i = 0..N-1. The four folders
    must hold the same numbers and the numbers must run 0..N-1 (LibMTL reads
    range(N)); other file names are ignored. Raises a one-line
    FileNotFoundError (a missing folder or file) or ValueError naming the folder.
    """
    _check_split_name(split)
    if not os.path.isdir(root):
        raise FileNotFoundError(f"dataset root {root} does not exist; it must hold {' and '.join(MTAN_SPLITS)}/")
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        have = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, MTAN_DIRS[0])))
        holds = f"it holds split folders {', '.join(have)}" if have else \
            f"an MTAN NYUv2 root holds {' and '.join(MTAN_SPLITS)}/, each with {', '.join(d + '/' for d in MTAN_DIRS)}"
        raise FileNotFoundError(f"{folder} does not exist; {holds} (set dataset.test_split to one of them)")
    numbers = {}
    for d in MTAN_DIRS:
        sub = os.path.join(folder, d)
        if not os.path.isdir(sub):
            raise FileNotFoundError(f"{sub} does not exist; each split folder of an MTAN NYUv2 root holds "
                                    f"{', '.join(d + '/' for d in MTAN_DIRS)} of numbered .npy files")
        numbers[d] = _numbered(sub)
    first = os.path.join(folder, MTAN_DIRS[0])
    want = numbers[MTAN_DIRS[0]]
    if not want:
        raise ValueError(f"{first} holds no numbered .npy files; expected 0.npy, 1.npy, ...")
    for d in MTAN_DIRS[1:]:
        if numbers[d] != want:
            sub, have = os.path.join(folder, d), set(numbers[d])
            missing = [i for i in want if i not in have]
            if missing:
                more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                raise FileNotFoundError(f"{sub} has no {missing[0]}.npy{more}, which {first} holds; "
                                        "the four folders must hold the same numbers")
            extra = sorted(have - set(want))
            raise ValueError(f"{sub} holds {extra[0]}.npy, which {first} lacks; the four folders must hold the same numbers")
    gap = next((i for i, n in enumerate(want) if n != i), None)
    if gap is not None:
        raise FileNotFoundError(f"{first} holds {len(want)} numbered .npy files but no {gap}.npy; "
                                "the files must be numbered 0..N-1")
    return SplitListing([[f"{split}/{d}/{i}.npy" for d in MTAN_DIRS] for i in want], folder)


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


def resolve_listed_path(root: str, listed: str, alt_dirs: Sequence[str] = (), source: str = "") -> str:
    """Absolute path of a path listed in a split json (rules in the module docstring).

    Raises a one-line FileNotFoundError naming root/listed when no candidate exists.
    """
    candidates = []
    if os.path.isabs(listed):
        candidates.append(listed)
    rel = listed.lstrip("/\\")
    candidates.append(os.path.join(root, rel))
    candidates.extend(os.path.join(root, d, rel) for d in alt_dirs)
    for c in candidates:
        if os.path.isfile(c):
            return c
    where = f" listed in {source}" if source else ""
    also = f" (also tried under {', '.join(os.path.join(root, d) for d in alt_dirs)})" if alt_dirs else ""
    raise FileNotFoundError(f"{candidates[-1 - len(alt_dirs)]}{where} does not exist{also}; check dataset.root")


def _where(path: str, source: str) -> str:
    return f"{path} (listed in {source})" if source else path


def _load_png(path: str, want: str, source: str) -> np.ndarray:
    """Read a PNG and check its mode; ``want`` is 'rgb', 'gray8' or 'gray16'."""
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            arr = np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ValueError(f"{_where(path, source)} cannot be read as an image ({type(e).__name__}); expected {_MODE_WORDS[want]}") from None
    allowed = {"rgb": ("RGB",), "gray8": _MODES_8BIT_GRAY, "gray16": _MODES_16BIT}[want]
    if fmt != "PNG" or mode not in allowed:
        raise ValueError(f"{_where(path, source)} is a {fmt} of mode {mode}; expected {_MODE_WORDS[want]}")
    if want == "gray16":
        if arr.min(initial=0) < 0 or arr.max(initial=0) > 65535:
            raise ValueError(f"{_where(path, source)} has values outside 0-65535; expected {_MODE_WORDS[want]}")
        arr = arr.astype(np.uint16)
    return arr


def _load_npy(path: str, source: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"{_where(path, source)} cannot be read as a .npy array ({type(e).__name__})") from None


def _check_hw(path: str, source: str, arr: np.ndarray, hw: tuple[int, int], image_path: str) -> None:
    if tuple(arr.shape[:2]) != tuple(hw):
        raise ValueError(
            f"{_where(path, source)} is {arr.shape[0]}x{arr.shape[1]} but its image {image_path} is {hw[0]}x{hw[1]}; maps must match"
        )


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


def _float_map(path: str, source: str, arr: np.ndarray, channels: int | None, what: str) -> np.ndarray:
    """Check a float [H,W] (channels None; [H,W,1] is squeezed) or [H,W,channels] array."""
    if channels is None and arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    ok_shape = arr.ndim == 2 if channels is None else (arr.ndim == 3 and arr.shape[2] == channels)
    numeric = np.issubdtype(arr.dtype, np.floating) or (what == "label" and np.issubdtype(arr.dtype, np.integer))
    if not ok_shape or not numeric:
        want = "HxW" if channels is None else f"HxWx{channels}"
        raise ValueError(f"{_where(path, source)} holds {arr.dtype} {list(arr.shape)}; expected a float {want} {what}")
    return arr


def read_mtan_sample(root: str, paths: Sequence[str], source: str = "") -> dict[str, np.ndarray]:
    """Read and validate one MTAN NYUv2 sample listed as [image, label, depth, normal] (.npy files).

    Returns numpy arrays at the stored size H x W (the reader dict of
    :func:`read_nyuv2_sample`): image float32 [H,W,3] RGB in [0,1]; seg uint8
    [H,W] (0-12, 255 where the file holds -1); normal float32 [H,W,3] unit
    vectors (0 where invalid); normal_valid bool [H,W] (length >= NORMAL_MIN_NORM:
    all-zero and NaN are invalid); depth float32 [H,W] metres (0 where
    invalid); depth_valid bool [H,W] (depth > 0; NaN is invalid).
    ``source`` (e.g. "/x/val") is named in errors.
    """
    if len(paths) != 4:
        raise ValueError(f"an MTAN NYUv2 sample lists 4 paths [image, label, depth, normal], got {len(paths)} in {source or 'paths'}")
    img_p, lab_p, dep_p, nrm_p = (resolve_listed_path(root, p, (), source) for p in paths)
    image = _float_map(img_p, source, _load_npy(img_p, source), 3, "image in [0, 1]")
    lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
    if not np.all(np.isfinite(image)) or lo < -MTAN_IMAGE_TOL or hi > 1 + MTAN_IMAGE_TOL:
        raise ValueError(f"{_where(img_p, source)} holds values in [{lo:g}, {hi:g}]; expected a finite RGB image in [0, 1]")
    hw = image.shape[:2]
    label = _float_map(lab_p, source, _load_npy(lab_p, source), None, "label")
    _check_hw(lab_p, source, label, hw, img_p)
    bad = (label != MTAN_IGNORE) & ~np.isin(label, np.arange(MTAN_NUM_CLASSES))  # NaN and 2.5 are bad too
    if bad.any():
        raise ValueError(f"{_where(lab_p, source)} holds label {label[bad][0]}; expected classes 0-12 and -1 for ignored")
    seg = np.where(label == MTAN_IGNORE, IGNORE_LABEL, label).astype(np.uint8)
    depth = _float_map(dep_p, source, _load_npy(dep_p, source), None, "depth map in metres")
    _check_hw(dep_p, source, depth, hw, img_p)
    if np.any(depth < 0):
        raise ValueError(f"{_where(dep_p, source)} holds depth {float(depth.min()):g}; expected metres >= 0 (0 = invalid)")
    depth_valid = depth > 0  # NaN compares False -> invalid
    depth = np.where(depth_valid, depth, 0.0).astype(np.float32)
    raw = _float_map(nrm_p, source, _load_npy(nrm_p, source), 3, "normal map").astype(np.float32)
    _check_hw(nrm_p, source, raw, hw, img_p)
    norm = np.linalg.norm(raw, axis=-1)
    norm = np.where(np.isfinite(norm), norm, 0.0)
    if norm.max(initial=0) > MTAN_NORMAL_MAX_NORM:
        raise ValueError(f"{_where(nrm_p, source)} holds a normal of length {float(norm.max()):g}; "
                         "expected unit vectors (all-zero = invalid)")
    normal_valid = norm >= NORMAL_MIN_NORM
    normal = np.zeros_like(raw)
    normal[normal_valid] = raw[normal_valid] / norm[normal_valid][:, None]
    return {
        "image": np.clip(image, 0.0, 1.0).astype(np.float32),
        "seg": seg,
        "normal": normal,
        "normal_valid": normal_valid,
        "depth": depth,
        "depth_valid": depth_valid,
    }
