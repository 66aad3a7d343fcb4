"""What every on-disk format shares: PNG and .npy codecs, checks, split jsons and listings."""
from __future__ import annotations

import io
import json
import os
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ... import atomic

IGNORE_LABEL = 255
# A decoded normal shorter than this has no direction -> invalid. A real unit
# normal decodes to norm >= 1 - sqrt(3)/255 ~ 0.993 (each channel rounds by at
# most half a step, 1/255 after decoding); greys 127 and 128 decode to
# norm sqrt(3)/255 ~ 0.0068. 0.5 sits far from both.
NORMAL_MIN_NORM = 0.5


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



def _check_split_name(split: str) -> None:
    if not isinstance(split, str) or not split or "/" in split or "\\" in split or split in (".", ".."):
        raise ValueError(f"split {split!r} must be a non-empty folder name without path separators")


@dataclass(frozen=True)
class JsonSplits:
    """A format whose splits are listed in a json file under root: its file name, the split
    keys it must hold, the number of paths per sample, and alt_dirs(split): the sub-folders
    of root also tried for a relative path (None: none)."""

    file: str
    splits: tuple[str, ...]
    n_paths: int
    alt_dirs: Any = None


# Format name -> its split json; filled by the format modules that list splits this way.
JSON_SPLITS: dict[str, JsonSplits] = {}


def _split_spec(kind: str) -> tuple[str, tuple[str, ...], int]:
    if kind not in JSON_SPLITS:
        raise ValueError(f"format {kind!r} has no split json; formats with one: {sorted(JSON_SPLITS)}")
    spec = JSON_SPLITS[kind]
    return spec.file, spec.splits, spec.n_paths


def split_json_path(root: str, kind: str) -> str:
    """Path of the split json of format `kind` ("nyuv2" or "taskonomy") under root."""
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
    alt_fn = JSON_SPLITS[kind].alt_dirs
    alt = alt_fn(split) if alt_fn is not None else ()
    return SplitListing([list(e) for e in splits[split]], f"{json_name} ({split})", alt)


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


