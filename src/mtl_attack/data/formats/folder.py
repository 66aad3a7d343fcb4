"""The user's own data: one folder per split, one sub-folder per map, files matched by name.

    root/<split>/image/<id>.png|.jpg|.npy   RGB: 8-bit PNG/JPEG, or .npy uint8 or float in [0,1], [H,W,3]
    root/<split>/<task>/<id>.png|.npy       one map per declared task, the image's height and width

The tasks are the dataset's declared tasks (`dataset.tasks`), each read by its kind:

- segmentation: 8- or 16-bit single-channel PNG, or integer .npy [H,W]; classes 0..classes-1,
  the task's `ignore` value (default 255) for pixels without a label.
- normal: 8-bit RGB PNG holding (n + 1) / 2 * 255, or float .npy [H,W,3] unit vectors; a
  vector shorter than 0.5 (all-zero, grey 127/128) is invalid.
- depth: 16-bit PNG or float .npy [H,W] (or [H,W,1]), divided by the task's `scale` (stored
  units per unit, e.g. 1000 for millimetre PNGs; default 1); the stored value `invalid`
  (default 0) and non-finite values are invalid; negative values are an error.
- regression: PNG (8-bit / 255, 16-bit / 65535) or float .npy [H,W] or [H,W,channels].

A split is the sorted ids of root/<split>/image/; every task folder must hold exactly those
ids. Preflight decodes every file of both splits, so a missing, extra or unreadable file, a
wrong shape or a label outside the declared classes stops the job before any work, naming
the file.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from .base import Format
from .common import IGNORE_LABEL, NORMAL_MIN_NORM, SplitListing, _check_split_name, _load_npy

IMAGE_DIR = "image"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".npy")
MAP_SUFFIXES = (".png", ".npy")
NORMAL_MAX_NORM = 1.5  # a longer normal vector is not a unit-vector map
IMAGE_TOL = 0.05  # float images in [-tol, 1 + tol] are clipped into [0, 1]


def _ids(folder: str, suffixes: tuple[str, ...]) -> dict[str, str]:
    """id -> file name of the files in `folder`; an unknown suffix or two files of one id is an error."""
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if name.startswith("."):
            continue
        stem, suffix = os.path.splitext(name)
        path = os.path.join(folder, name)
        if suffix.lower() not in suffixes or not os.path.isfile(path):
            raise ValueError(f"{path} is not a {' or '.join(suffixes)} file; remove it from {folder}")
        if stem in found:
            raise ValueError(f"{folder} holds both {found[stem]} and {name}; keep one file per id")
        found[stem] = name
    return found


def list_folder_split(root: str, split: str, tasks: Mapping[str, Any]) -> SplitListing:
    """The samples of root/<split>: per id, [split/image/<id>.x, split/<task>/<id>.y for each task in order].

    Raises a one-line FileNotFoundError (a missing folder or file) or ValueError (an extra or
    foreign file) naming it.
    """
    _check_split_name(split)
    folder = os.path.join(root, split)
    if not os.path.isdir(folder):
        have = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, IMAGE_DIR))) \
            if os.path.isdir(root) else []
        holds = f"it holds split folders {', '.join(have)}" if have else \
            f"a folder dataset holds <split>/{IMAGE_DIR}/ and <split>/<task>/ for each task"
        raise FileNotFoundError(f"{folder} does not exist; {holds} (set dataset.train_split / dataset.test_split)")
    image_dir = os.path.join(folder, IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise FileNotFoundError(f"{image_dir} does not exist; put the split's pictures there as <id>.png, .jpg or .npy")
    images = _ids(image_dir, IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{image_dir} holds no pictures; expected <id>.png, <id>.jpg or <id>.npy files")
    columns = []
    for task in tasks:
        sub = os.path.join(folder, task)
        if not os.path.isdir(sub):
            raise FileNotFoundError(f"{sub} does not exist; task {task} needs one map per picture there "
                                    "(or leave the task out with tasks=[...])")
        maps = _ids(sub, MAP_SUFFIXES)
        missing = [i for i in images if i not in maps]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise FileNotFoundError(f"{os.path.join(sub, missing[0])}.png or .npy does not exist{more}; "
                                    f"every picture of {image_dir} needs a {task} map")
        extra = [i for i in maps if i not in images]
        if extra:
            raise ValueError(f"{os.path.join(sub, maps[extra[0]])} has no picture in {image_dir}; "
                             "remove it or add its picture")
        columns.append({i: f"{split}/{task}/{maps[i]}" for i in images})
    entries = [[f"{split}/{IMAGE_DIR}/{images[i]}"] + [col[i] for col in columns] for i in images]
    return SplitListing(entries, folder)


# --------------------------------------------------------------------------- decoding


def _load(path: str) -> np.ndarray:
    """A PNG/JPEG as an array (mode kept: 8-bit, 16-bit, RGB) or a .npy array; one-line errors."""
    if path.lower().endswith(".npy"):
        return _load_npy(path, "")
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return np.array(im).astype(np.int64)
            if im.mode == "P":
                return np.array(im)
            if im.mode not in ("L", "RGB"):
                raise ValueError(f"{path} is a {im.format} of mode {im.mode}; expected RGB, 8-bit or 16-bit gray")
            return np.array(im)
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path} cannot be read as an image ({type(e).__name__})") from None


def _image(path: str) -> np.ndarray:
    arr = _load(path)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path} is {list(arr.shape)}; expected an RGB picture [H,W,3]")
    if arr.dtype == np.uint8:
        return arr
    if not np.issubdtype(arr.dtype, np.floating) or not np.all(np.isfinite(arr)) \
            or arr.min(initial=0) < -IMAGE_TOL or arr.max(initial=0) > 1 + IMAGE_TOL:
        raise ValueError(f"{path} holds {arr.dtype} values outside [0, 1]; store uint8 0-255 or float 0-1")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def _plane(path: str, arr: np.ndarray, what: str) -> np.ndarray:
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"{path} is {list(arr.shape)}; expected a single-channel {what} [H,W]")
    return arr


def _segmentation(path: str, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = _plane(path, _load(path), "label map")
    classes, ignore = int(spec["classes"]), int(spec.get("ignore", IGNORE_LABEL))
    if np.issubdtype(arr.dtype, np.floating):
        if not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr)):
            raise ValueError(f"{path} holds non-integer labels; expected class ids 0-{classes - 1} (and {ignore})")
    elif not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{path} holds {arr.dtype}; expected integer class ids")
    labels = arr.astype(np.int64)
    valid = labels != ignore
    bad = valid & ((labels < 0) | (labels >= classes))
    if bad.any():
        raise ValueError(f"{path} holds label {int(labels[bad][0])}, outside the declared classes 0-{classes - 1} "
                         f"(ignore value {ignore}); fix the file or dataset.tasks")
    return np.where(valid, labels, IGNORE_LABEL), valid


def _normal(path: str, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = _load(path)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{path} is {list(arr.shape)}; expected a normal map [H,W,3]")
    if arr.dtype == np.uint8:
        n = arr.astype(np.float32) / 255.0 * 2.0 - 1.0
    elif np.issubdtype(arr.dtype, np.floating):
        n = np.where(np.isfinite(arr), arr, 0.0).astype(np.float32)
    else:
        raise ValueError(f"{path} holds {arr.dtype}; expected an 8-bit RGB PNG or float unit vectors")
    norm = np.linalg.norm(n, axis=-1)
    if norm.max(initial=0) > NORMAL_MAX_NORM:
        raise ValueError(f"{path} holds a normal of length {float(norm.max()):g}; expected unit vectors")
    valid = norm >= NORMAL_MIN_NORM
    out = np.zeros_like(n)
    out[valid] = n[valid] / norm[valid][:, None]
    return out, valid


def _depth(path: str, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = _plane(path, _load(path), "depth map")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{path} holds {arr.dtype}; expected a 16-bit PNG or a float depth map")
    raw = arr.astype(np.float64)
    valid = np.isfinite(raw) & (raw != float(spec.get("invalid", 0.0)))
    if np.any(raw[valid] < 0):
        raise ValueError(f"{path} holds depth {float(raw[valid].min()):g}; expected values >= 0")
    depth = np.where(valid, raw / float(spec.get("scale", 1.0)), 0.0).astype(np.float32)
    valid &= depth > 0
    return depth, valid


def _regression(path: str, spec: Any) -> tuple[np.ndarray, np.ndarray]:
    arr = _load(path)
    channels = int(spec.get("channels", 1))
    if arr.dtype == np.uint8:
        arr = arr / 255.0
    elif not path.lower().endswith(".npy") and np.issubdtype(arr.dtype, np.integer):
        arr = arr / 65535.0
    elif not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{path} holds {arr.dtype}; expected a PNG or a float map")
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] != channels:
        raise ValueError(f"{path} is {list(arr.shape)}; expected [H,W] or [H,W,{channels}] ({channels} channels)")
    arr = arr.astype(np.float32)
    valid = np.all(np.isfinite(arr), axis=-1)
    arr = np.where(valid[..., None], arr, 0.0)
    return (arr[..., 0] if channels == 1 else arr), valid


DECODERS = {"segmentation": _segmentation, "normal": _normal, "depth": _depth, "regression": _regression}


def read_folder_sample(root: str, entry: list, split: str, source: str, tasks: Mapping[str, Any]) -> dict:
    """One listed sample [image, map per task] as a format :data:`~.base.Sample` (module docstring);
    tasks: name -> the checked options (:func:`mtl_attack.tasks.check_task_spec`: plain values)."""
    if len(entry) != 1 + len(tasks):
        raise ValueError(f"a folder sample lists the image and {len(tasks)} maps, got {len(entry)} paths")
    image_path = os.path.join(root, entry[0])
    image = _image(image_path)
    sample = {"image": image, "targets": {}, "valid": {}}
    for (task, spec), rel in zip(tasks.items(), entry[1:]):
        path = os.path.join(root, rel)
        target, valid = DECODERS[spec["kind"]](path, spec)
        if tuple(target.shape[:2]) != tuple(image.shape[:2]):
            raise ValueError(f"{path} is {target.shape[0]}x{target.shape[1]} but its picture {image_path} is "
                             f"{image.shape[0]}x{image.shape[1]}; maps must match their picture")
        sample["targets"][task], sample["valid"][task] = target, valid
    return sample


FORMAT = Format(
    name="folder", provides=None, list_split=list_folder_split, read=read_folder_sample,
    check=read_folder_sample,  # preflight decodes every file
    root_holds="<split>/image/ and <split>/<task>/ for each declared task",
    default_input_size=64)
