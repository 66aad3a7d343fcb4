"""Torch datasets over NYUv2 (AdaShare's and MTAN's copies) and Tiny-Taskonomy folders.

Formats: :mod:`mtl_attack.data.formats`.

An item is ``{"image": float32 [3,S,S] RGB in [0,1], "targets": {task: tensor},
"masks": {task: bool [S,S]}}`` with S = input_size; targets are
segment_semantic int64 [S,S] (255 = ignore), normal float32 [3,S,S] unit
vectors, depth_zbuffer / keypoints2d / edge_texture float32 [1,S,S]; invalid
pixels hold 0 and have mask False.

Preprocessing follows the authors' loaders (see the formats docstring):

- test (augment=False): image and labels resized to S x S (aspect ratio not
  kept); image bilinear, labels nearest (floor(dst*in/out), as cv2 and
  torch's "nearest").
- train (augment=True): scale s ~ U[0.5, 1.5) (``scale_range``) to int(h*s) x int(w*s); mirror
  with p = 0.5; pad to at least S x S with the picture centred (image 0, seg
  255, other targets 0 with mask False); uniform random S x S crop.
- NYUv2 train at S below the paper's 321 first scales the stored picture by
  :func:`train_prescale_factor` (image bilinear, labels nearest), so the crop
  covers the same share of the scene as the paper's 321 crop of a 480-high
  image, and train sees the scale the test resize gives. Never an upscale:
  S = 321 and the rendered stand-in (stored near S) are unchanged. The MTAN
  copy (288x384, used at its stored scale by LibMTL) is pre-scaled by S/288,
  so a crop at s = 1 sees the scale of the test resize (288x384 -> S x S).
- Taskonomy first resizes every map to a square base of round(S*256/224)
  (256 for S = 224), as the authors' fixed 256 pre-resize. The authors use
  nearest for the image in this step; here the image is bilinear throughout.
- Mirroring negates the normal's x component (channel 0) by default. The
  authors do that for Taskonomy but not for NYUv2; pass
  ``negate_normal_x_on_flip=False`` for their NYUv2 behaviour.

Decoded files of a split are kept in memory up to :data:`MEMO_BYTES` per dataset (per
process: DataLoader workers keep their own), so later epochs skip the file decode; items
are the same either way.

Randomness: with ``seed`` set, item i of epoch e (see :meth:`set_epoch`) uses
numpy's default_rng((seed, e, i)), so augmentation is reproducible and the
same across DataLoader workers; with seed None it draws from torch's global
generator (which DataLoader seeds per worker).
"""

from __future__ import annotations

import os
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from . import formats
from .registry import get_dataset

SEG = "segment_semantic"
SCALE_RANGE = (0.5, 1.5)
NYUV2_STORED_HEIGHT = 480  # pixels; AdaShare's NYUv2 images are 480x640
NYUV2_PAPER_INPUT = 321  # pixels; the paper's NYUv2 crop and test side
# Decoded samples kept in memory per dataset (bytes): the rendered stand-ins (about 0.1 MB a
# sample) fit whole, so training stops paying the PNG decode every epoch; real NYUv2 (about
# 6 MB a sample) mostly reads from disk.
MEMO_BYTES = 512 * 2**20


# --------------------------------------------------------------------------- geometry (pure)

Fields = dict[str, torch.Tensor]


def _fill(task: str) -> int:
    return formats.IGNORE_LABEL if task == SEG else 0


def nearest_resize(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two dims of ``x`` (any dtype) to ``size`` = (h, w) with nearest.

    Source index = floor(dst * in / out) in exact integer arithmetic, the rule of
    cv2.INTER_NEAREST and torch "nearest" (which round in floating point).
    """
    h_in, w_in = x.shape[-2:]
    h, w = size
    if (h_in, w_in) == (h, w):
        return x  # the identity (callers never write into it)
    ih = torch.arange(h) * h_in // h  # exact integer floor
    iw = torch.arange(w) * w_in // w
    return x.index_select(-2, ih).index_select(-1, iw)


def bilinear_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an image [3,H,W] to ``size`` = (h, w), bilinear with half-pixel centres (as cv2.INTER_LINEAR)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    return out.clamp_(0.0, 1.0)


def resize_sample(image: torch.Tensor, targets: Fields, masks: Fields, size: tuple[int, int]) -> tuple[torch.Tensor, Fields, Fields]:
    """Resize image (bilinear) and every target and mask (nearest) to ``size`` = (h, w)."""
    return (
        bilinear_resize(image, size),
        {t: nearest_resize(v, size) for t, v in targets.items()},
        {t: nearest_resize(v, size) for t, v in masks.items()},
    )


def flip_sample(image: torch.Tensor, targets: Fields, masks: Fields, negate_normal_x: bool) -> tuple[torch.Tensor, Fields, Fields]:
    """Mirror left-right; with ``negate_normal_x`` the normal's channel 0 changes sign."""
    targets = {t: v.flip(-1) for t, v in targets.items()}
    if negate_normal_x and "normal" in targets:
        targets["normal"][0].neg_()
    return image.flip(-1), targets, {t: v.flip(-1) for t, v in masks.items()}


def _pad_crop(x: torch.Tensor, fill, pad_hw: tuple[int, int], off: tuple[int, int], start: tuple[int, int], crop: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    canvas = torch.full((*x.shape[:-2], *pad_hw), fill, dtype=x.dtype)
    canvas[..., off[0] : off[0] + h, off[1] : off[1] + w] = x
    return canvas[..., start[0] : start[0] + crop[0], start[1] : start[1] + crop[1]].contiguous()


def pad_crop_sample(
    image: torch.Tensor, targets: Fields, masks: Fields, crop: tuple[int, int], start: tuple[int, int]
) -> tuple[torch.Tensor, Fields, Fields]:
    """Pad to at least ``crop`` with the picture centred, then cut ``crop`` = (h, w) at ``start`` = (top, left).

    ``start`` indexes the padded canvas; valid tops are 0..max(H, h) - h. Padding:
    image 0, seg 255, other targets 0, masks False.
    """
    h, w = image.shape[-2:]
    pad_hw = (max(h, crop[0]), max(w, crop[1]))
    off = ((pad_hw[0] - h) // 2, (pad_hw[1] - w) // 2)
    if not (0 <= start[0] <= pad_hw[0] - crop[0] and 0 <= start[1] <= pad_hw[1] - crop[1]):
        raise ValueError(f"crop start {start} outside 0..{(pad_hw[0] - crop[0], pad_hw[1] - crop[1])}")
    return (
        _pad_crop(image, 0.0, pad_hw, off, start, crop),
        {t: _pad_crop(v, _fill(t), pad_hw, off, start, crop) for t, v in targets.items()},
        {t: _pad_crop(v, False, pad_hw, off, start, crop) for t, v in masks.items()},
    )


def augment_sample(
    image: torch.Tensor,
    targets: Fields,
    masks: Fields,
    crop: int,
    rng: np.random.Generator,
    scale_range: tuple[float, float] = SCALE_RANGE,
    negate_normal_x: bool = True,
) -> tuple[torch.Tensor, Fields, Fields]:
    """The authors' training augmentation: random scale, mirror (p = 0.5), pad and random crop to crop x crop.

    Draws from ``rng`` in this order: scale, flip, crop top, crop left.
    """
    h, w = image.shape[-2:]
    s = scale_range[0] + rng.random() * (scale_range[1] - scale_range[0])
    size = (max(1, int(h * s)), max(1, int(w * s)))
    flip = rng.random() > 0.5
    image, targets, masks = resize_sample(image, targets, masks, size)
    if flip:
        image, targets, masks = flip_sample(image, targets, masks, negate_normal_x)
    top = int(rng.integers(0, max(size[0], crop) - crop + 1))
    left = int(rng.integers(0, max(size[1], crop) - crop + 1))
    return pad_crop_sample(image, targets, masks, (crop, crop), (top, left))


def train_prescale_factor(stored_height: int, input_size: int,
                          reference: tuple[int, int] = (NYUV2_STORED_HEIGHT, NYUV2_PAPER_INPUT)) -> float:
    """Factor (unitless, <= 1) to scale a stored picture by before training augmentation.

    ``input_size * H0 / (S0 * stored_height)`` with ``reference`` = (H0, S0),
    the real data's stored height and its authors' training input (all in
    pixels; NYUv2: 480 and 321, the MTAN copy: 288 and 288), capped at 1. The
    paper crops 321 from 480-high images; at a smaller input the crop would
    cover a smaller part of the scene than the test resize of the whole image
    shows, so the picture is first shrunk by the same ratio (480-high at input
    64: 64/321). Never above 1: an upscale would only blur, and pictures
    stored near the input size (the rendered stand-ins) keep their size.
    """
    h0, s0 = reference
    return min(1.0, input_size * h0 / (s0 * stored_height))


def prescale_sample(image: torch.Tensor, targets: Fields, masks: Fields, input_size: int,
                    reference: tuple[int, int] = (NYUV2_STORED_HEIGHT, NYUV2_PAPER_INPUT)) -> tuple[torch.Tensor, Fields, Fields]:
    """Apply :func:`train_prescale_factor` to a sample (image [3,H,W] bilinear, labels nearest); sizes round to nearest."""
    h, w = image.shape[-2:]
    f = train_prescale_factor(h, input_size, reference)
    if f >= 1.0:
        return image, targets, masks
    return resize_sample(image, targets, masks, (max(1, round(h * f)), max(1, round(w * f))))


# --------------------------------------------------------------------------- dataset


def decoded_to_tensors(decoded: dict[str, np.ndarray], tasks: tuple[str, ...]) -> tuple[torch.Tensor, Fields, Fields]:
    """Numpy dict from a formats reader -> (image float32 [3,H,W] in [0,1], targets, masks) at the stored size.

    The reader's image is uint8 [H,W,3] (0-255) or float [H,W,3] already in [0,1] (the MTAN copy).
    """
    image = torch.from_numpy(np.ascontiguousarray(decoded["image"])).permute(2, 0, 1).float()
    if decoded["image"].dtype == np.uint8:
        image = image.div_(255.0)
    seg = torch.from_numpy(decoded["seg"].astype(np.int64))
    targets: Fields = {
        SEG: seg,
        "normal": torch.from_numpy(np.ascontiguousarray(decoded["normal"], np.float32)).permute(2, 0, 1).contiguous(),
        "depth_zbuffer": torch.from_numpy(np.asarray(decoded["depth"], np.float32))[None],
    }
    masks: Fields = {
        SEG: seg != formats.IGNORE_LABEL,
        "normal": torch.from_numpy(decoded["normal_valid"]),
        "depth_zbuffer": torch.from_numpy(decoded["depth_valid"]),
    }
    for t in tasks[3:]:
        targets[t] = torch.from_numpy(np.asarray(decoded[t], np.float32))[None]
        masks[t] = torch.ones(seg.shape, dtype=torch.bool)
    return image, targets, masks


class MultiTaskDataset(Dataset):
    """A split on disk of any dataset kind, yielding items in the shared convention (module docstring).

    The kind's listing (:class:`~mtl_attack.data.registry.DatasetSpec` list_split)
    gives the split's samples: a split json's entries ("nyuv2", "taskonomy") or
    the numbered files of the split's folders ("nyuv2_mtan").

    Args:
        kind: a key of :data:`~mtl_attack.data.registry.DATASETS` ("nyuv2", "taskonomy", "nyuv2_mtan").
        root: folder holding the data (the split json, or MTAN's train/ and val/ folders).
        split: "train", "test" (Taskonomy also "test_small"; MTAN: "train", "val").
        input_size: side S of the square output; default the kind's (321 NYUv2, 224 Taskonomy, 288 MTAN).
        augment: training augmentation (pre-scale, random scale, mirror, crop) instead of a resize.
        scale_range: (low, high) of the augmentation's random scale (unitless; the paper's 0.5-1.5).
        seed: makes augmentation reproducible (None: torch's global generator).
        negate_normal_x_on_flip: mirror also negates the normal's x (authors: Taskonomy only).

    Attributes: ``tasks`` (task names in the fixed order), ``class_weights``
    (Taskonomy: float32 [17] seg cross-entropy weights from
    semseg_prior_factor.npy; NYUv2: None), ``source`` (where the list came from).
    """

    def __init__(
        self,
        kind: str,
        root: str,
        split: str,
        input_size: int | None = None,
        augment: bool = False,
        seed: int | None = None,
        negate_normal_x_on_flip: bool = True,
        scale_range: tuple[float, float] = SCALE_RANGE,
    ) -> None:
        self.kind = get_dataset(kind)
        root = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"dataset root {root} does not exist; set dataset.root to the folder holding {self.kind.root_holds} (or use a synthetic dataset)"
            )
        listing = self.kind.list_split(root, split)
        size = self.kind.default_input_size if input_size is None else input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        self.root = root
        self.split = split
        self.entries: list[list[str]] = listing.entries
        self.input_size = int(size)
        self.base_size = None if self.kind.base_ratio is None else int(round(self.input_size * self.kind.base_ratio))
        self.augment = bool(augment)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.seed = seed
        self.negate_normal_x_on_flip = bool(negate_normal_x_on_flip)
        self.tasks = self.kind.task_names
        self.source = listing.source
        self.class_weights = None if self.kind.class_weights is None else torch.from_numpy(self.kind.class_weights(root))
        self.epoch = 0
        self._memo: dict[int, dict[str, np.ndarray]] = {}
        self._memo_bytes = 0
        self._memo_budget = MEMO_BYTES

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)  # workers start with an empty memo, not a pickled copy
        state["_memo"], state["_memo_bytes"] = {}, 0
        return state

    def _decoded(self, index: int) -> dict[str, np.ndarray]:
        """The reader's arrays for item ``index``, from the memo when held. Callers never
        write into them (every step below copies before changing values)."""
        decoded = self._memo.get(index)
        if decoded is None:
            decoded = self.kind.read(self.root, self.entries[index], self.split, self.source)
            size = sum(np.asarray(v).nbytes for v in decoded.values())
            if self._memo_bytes + size <= self._memo_budget:
                self._memo[index] = decoded
                self._memo_bytes += size
        return decoded

    def __len__(self) -> int:
        return len(self.entries)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation draws of a seeded dataset (call once per epoch)."""
        self.epoch = int(epoch)

    def sample_paths(self, index: int) -> list[str]:
        """The paths of item ``index`` as listed (by the split json or the folder scan)."""
        return list(self.entries[index])

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        return np.random.default_rng((int(self.seed), self.epoch, int(index)))

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self.entries):
            raise IndexError(f"index {index} out of range for {len(self.entries)} samples of {self.source}")
        image, targets, masks = decoded_to_tensors(self._decoded(index), self.tasks)
        if self.base_size is not None:
            image, targets, masks = resize_sample(image, targets, masks, (self.base_size, self.base_size))
        s = self.input_size
        if self.augment:
            if self.kind.train_prescale is not None:
                image, targets, masks = prescale_sample(image, targets, masks, s, self.kind.train_prescale)
            image, targets, masks = augment_sample(
                image, targets, masks, s, self._rng(index), self.scale_range,
                negate_normal_x=self.negate_normal_x_on_flip
            )
        else:
            image, targets, masks = resize_sample(image, targets, masks, (s, s))
        masks[SEG] = targets[SEG] != formats.IGNORE_LABEL
        for t in self.tasks:
            if t != SEG:
                targets[t] = targets[t] * masks[t]  # invalid pixels hold 0
        return {"image": image.contiguous(), "targets": targets, "masks": masks}


def build_dataset(
    kind: str,
    root: str,
    split: str,
    input_size: int | None = None,
    augment: bool = False,
    seed: int | None = None,
    negate_normal_x_on_flip: bool = True,
    scale_range: tuple[float, float] = SCALE_RANGE,
) -> MultiTaskDataset:
    """Open split ``split`` of the ``kind`` dataset under ``root`` (see :class:`MultiTaskDataset`)."""
    return MultiTaskDataset(kind, root, split, input_size, augment, seed, negate_normal_x_on_flip, scale_range)
