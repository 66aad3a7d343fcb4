"""The numbered-.npy layout of MTAN and LibMTL (NYUv2, Cityscapes): list, write and read one sample.

    root/<split>/image/<i>.npy   float32 [H,W,3] RGB in [0,1]
    root/<split>/label/<i>.npy   float [H,W], classes 0..C-1, -1 = ignored
    root/<split>/depth/<i>.npy   float32 [H,W,1] metres (or inverse depth), 0 = invalid
    root/<split>/normal/<i>.npy  float32 [H,W,3] unit vectors, all-zero = invalid (NYUv2 only)

There is no split json: a split is the numbers i = 0..N-1 found in its folders, which
must hold the same numbers (LibMTL reads range(N)). :class:`NpyLayout` names the
folders and the classes of one format; :mod:`.mtan` and :mod:`.cityscapes` use it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

import numpy as np

from ... import atomic
from .common import (IGNORE_LABEL, NORMAL_MIN_NORM, SplitListing, _check_array, _check_hw, _check_same_hw,
                     _check_split_name, _float_map, _load_npy, _npy_bytes, _where, resolve_listed_path)

IGNORE = -1  # the stored label of ignored pixels (decoded to IGNORE_LABEL)
# Loose bounds that catch another encoding (0-255 images, mean-subtracted images,
# (n+1)/2*255 normals) without rejecting interpolation or rounding noise of the real copies.
IMAGE_TOL = 0.05  # image values in [-tol, 1 + tol] are clipped into [0, 1]
NORMAL_MAX_NORM = 1.5  # a longer normal vector is not a unit-vector map
_NUMBERED_NPY = re.compile(r"(0|[1-9][0-9]*)\.npy")
_COUNT_WORDS = {3: "three", 4: "four"}


@dataclass(frozen=True)
class NpyLayout:
    """dirs: the folders of one split in the path order of a listed sample (image, label, depth
    and optionally normal); classes: label classes 0..classes-1; name: the format in errors
    ("MTAN NYUv2"), with its article."""

    dirs: tuple[str, ...]
    classes: int
    name: str
    article: str = "a"
    splits: tuple[str, ...] = ("train", "val")

    @property
    def what(self) -> str:
        return f"{self.article} {self.name}"

    @property
    def has_normal(self) -> bool:
        return "normal" in self.dirs

    def _same(self) -> str:
        return f"the {_COUNT_WORDS.get(len(self.dirs), len(self.dirs))} folders must hold the same numbers"

    def write(self, root: str, split: str, index: int, image: np.ndarray, label: np.ndarray, depth: np.ndarray,
              normal: np.ndarray | None = None) -> list[str]:
        """Write sample `index` of folder `split`; return its paths relative to root (in `dirs` order).

        image float [H,W,3] RGB in [0,1]; label integer or float [H,W], classes or -1 (ignored);
        depth float [H,W] (or [H,W,1]), 0 = invalid; normal float [H,W,3] unit vectors (formats
        with normals). Stored as float32 .npy (label [H,W], depth [H,W,1]).
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
        maps = {"label": label, "depth": depth}
        if self.has_normal:
            maps["normal"] = normal = _check_array("normal", normal, (None, None, 3), "float")
        _check_same_hw(hw, **maps)
        if not np.all(np.isfinite(image)) or image.min(initial=0) < 0 or image.max(initial=0) > 1:
            raise ValueError("image must hold finite values in [0, 1]")
        bad = (label != IGNORE) & ~np.isin(label, np.arange(self.classes))
        if bad.any():
            raise ValueError(f"label holds value {label[bad][0]}; {self.name} classes are 0-{self.classes - 1} "
                             "with -1 for ignored")
        if not np.all(depth >= 0):  # also rejects NaN
            raise ValueError("depth must be >= 0 everywhere (0 = invalid)")
        arrays = {"image": image.astype(np.float32), "label": label.astype(np.float32),
                  "depth": depth.astype(np.float32)[..., None]}
        if self.has_normal:
            arrays["normal"] = normal.astype(np.float32)
        rel = [f"{split}/{d}/{int(index)}.npy" for d in self.dirs]
        for r, d in zip(rel, self.dirs):
            atomic.write_bytes(os.path.join(root, r), _npy_bytes(arrays[d]))
        return rel

    def list_split(self, root: str, split: str) -> SplitListing:
        """The samples of folder `split`, found by scanning its numbered .npy files.

        Sample i lists [split/<dir>/i.npy for each dir] (relative to root) for i = 0..N-1;
        other file names are ignored. Raises a one-line FileNotFoundError (a missing folder
        or file) or ValueError naming the folder.
        """
        _check_split_name(split)
        if not os.path.isdir(root):
            raise FileNotFoundError(f"dataset root {root} does not exist; it must hold {' and '.join(self.splits)}/")
        folder = os.path.join(root, split)
        if not os.path.isdir(folder):
            have = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d, self.dirs[0])))
            holds = f"it holds split folders {', '.join(have)}" if have else \
                f"{self.what} root holds {' and '.join(self.splits)}/, each with {', '.join(d + '/' for d in self.dirs)}"
            raise FileNotFoundError(f"{folder} does not exist; {holds} (set dataset.test_split to one of them)")
        numbers = {}
        for d in self.dirs:
            sub = os.path.join(folder, d)
            if not os.path.isdir(sub):
                raise FileNotFoundError(f"{sub} does not exist; each split folder of {self.what} root holds "
                                        f"{', '.join(d + '/' for d in self.dirs)} of numbered .npy files")
            numbers[d] = sorted(int(m.group(1)) for name in os.listdir(sub) if (m := _NUMBERED_NPY.fullmatch(name)))
        first = os.path.join(folder, self.dirs[0])
        want = numbers[self.dirs[0]]
        if not want:
            raise ValueError(f"{first} holds no numbered .npy files; expected 0.npy, 1.npy, ...")
        for d in self.dirs[1:]:
            if numbers[d] != want:
                sub, have = os.path.join(folder, d), set(numbers[d])
                missing = [i for i in want if i not in have]
                if missing:
                    more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
                    raise FileNotFoundError(f"{sub} has no {missing[0]}.npy{more}, which {first} holds; {self._same()}")
                extra = sorted(have - set(want))
                raise ValueError(f"{sub} holds {extra[0]}.npy, which {first} lacks; {self._same()}")
        gap = next((i for i, n in enumerate(want) if n != i), None)
        if gap is not None:
            raise FileNotFoundError(f"{first} holds {len(want)} numbered .npy files but no {gap}.npy; "
                                    "the files must be numbered 0..N-1")
        return SplitListing([[f"{split}/{d}/{i}.npy" for d in self.dirs] for i in want], folder)

    def read(self, root: str, paths, source: str = "") -> dict[str, np.ndarray]:
        """Read and validate one sample listed as [image, label, depth(, normal)] (.npy files).

        Returns numpy arrays at the stored size H x W: image float32 [H,W,3] RGB in [0,1];
        seg uint8 [H,W] (255 where the file holds -1); depth float32 [H,W] (0 where invalid);
        depth_valid bool [H,W] (depth > 0; NaN is invalid); with normals also normal float32
        [H,W,3] unit vectors (0 where invalid) and normal_valid bool [H,W] (length >=
        NORMAL_MIN_NORM: all-zero and NaN are invalid). ``source`` is named in errors.
        """
        if len(paths) != len(self.dirs):
            raise ValueError(f"{self.what} sample lists {len(self.dirs)} paths [{', '.join(self.dirs)}], "
                             f"got {len(paths)} in {source or 'paths'}")
        found = dict(zip(self.dirs, (resolve_listed_path(root, p, (), source) for p in paths)))
        img_p, lab_p, dep_p = found["image"], found["label"], found["depth"]
        image = _float_map(img_p, source, _load_npy(img_p, source), 3, "image in [0, 1]")
        lo, hi = (float(image.min()), float(image.max())) if image.size else (0.0, 0.0)
        if not np.all(np.isfinite(image)) or lo < -IMAGE_TOL or hi > 1 + IMAGE_TOL:
            raise ValueError(f"{_where(img_p, source)} holds values in [{lo:g}, {hi:g}]; expected a finite RGB image in [0, 1]")
        hw = image.shape[:2]
        label = _float_map(lab_p, source, _load_npy(lab_p, source), None, "label")
        _check_hw(lab_p, source, label, hw, img_p)
        bad = (label != IGNORE) & ~np.isin(label, np.arange(self.classes))  # NaN and 2.5 are bad too
        if bad.any():
            raise ValueError(f"{_where(lab_p, source)} holds label {label[bad][0]}; expected classes "
                             f"0-{self.classes - 1} and -1 for ignored")
        seg = np.where(label == IGNORE, IGNORE_LABEL, label).astype(np.uint8)
        depth = _float_map(dep_p, source, _load_npy(dep_p, source), None, "depth map")
        _check_hw(dep_p, source, depth, hw, img_p)
        if np.any(depth < 0):
            raise ValueError(f"{_where(dep_p, source)} holds depth {float(depth.min()):g}; expected values >= 0 (0 = invalid)")
        depth_valid = depth > 0  # NaN compares False -> invalid
        out = {"image": np.clip(image, 0.0, 1.0).astype(np.float32), "seg": seg,
               "depth": np.where(depth_valid, depth, 0.0).astype(np.float32), "depth_valid": depth_valid}
        if self.has_normal:
            nrm_p = found["normal"]
            raw = _float_map(nrm_p, source, _load_npy(nrm_p, source), 3, "normal map").astype(np.float32)
            _check_hw(nrm_p, source, raw, hw, img_p)
            norm = np.linalg.norm(raw, axis=-1)
            norm = np.where(np.isfinite(norm), norm, 0.0)
            if norm.max(initial=0) > NORMAL_MAX_NORM:
                raise ValueError(f"{_where(nrm_p, source)} holds a normal of length {float(norm.max()):g}; "
                                 "expected unit vectors (all-zero = invalid)")
            normal_valid = norm >= NORMAL_MIN_NORM
            normal = np.zeros_like(raw)
            normal[normal_valid] = raw[normal_valid] / norm[normal_valid][:, None]
            out.update(normal=normal, normal_valid=normal_valid)
        return out
