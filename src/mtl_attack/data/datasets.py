"""A torch dataset over any on-disk format (:mod:`mtl_attack.data.formats`) and any declared tasks.

An item is ``{"image": float32 [3,S,S] RGB in [0,1], "targets": {task: tensor},
"masks": {task: bool [S,S]}}`` with S = input_size; targets are, by task kind
(:mod:`mtl_attack.tasks.kinds`), segmentation int64 [S,S] (255 = ignore), normal
float32 [3,S,S] unit vectors, depth and regression float32 [C,S,S]; invalid
pixels hold 0 and have mask False. Nothing here names a task: each task's kind
says how its target is resized, mirrored and padded.

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
- Mirroring negates a normal task's x component (channel 0) unless the task
  declares ``negate_x_on_flip: false``. The authors do that for Taskonomy but
  not for NYUv2.

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
from typing import Mapping, Sequence
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .. import tasks as T
from .formats import get_format

SCALE_RANGE = (0.5, 1.5)
NYUV2_STORED_HEIGHT = 480  # pixels; AdaShare's NYUv2 images are 480x640
NYUV2_PAPER_INPUT = 321  # pixels; the paper's NYUv2 crop and test side
# Decoded samples kept in memory per dataset (bytes): the rendered stand-ins (about 0.1 MB a
# sample) fit whole, so training stops paying the PNG decode every epoch; real NYUv2 (about
# 6 MB a sample) mostly reads from disk.
MEMO_BYTES = 512 * 2**20


# --------------------------------------------------------------------------- geometry (pure)

Fields = dict[str, torch.Tensor]


nearest_resize = T.nearest_resize


def bilinear_resize(image: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize an image [3,H,W] to ``size`` = (h, w), bilinear with half-pixel centres (as cv2.INTER_LINEAR)."""
    if tuple(image.shape[-2:]) == tuple(size):
        return image
    out = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0]
    return out.clamp_(0.0, 1.0)


Kinds = dict  # task name -> (TaskKind, options): how each target is resized, mirrored and padded


def resize_sample(image: torch.Tensor, targets: Fields, masks: Fields, size: tuple[int, int],
                  kinds: Kinds) -> tuple[torch.Tensor, Fields, Fields]:
    """Resize image (bilinear) and every target (as its kind says) and mask (nearest) to ``size`` = (h, w)."""
    return (
        bilinear_resize(image, size),
        {t: kinds[t][0].resize(v, size) for t, v in targets.items()},
        {t: nearest_resize(v, size) for t, v in masks.items()},
    )


def flip_sample(image: torch.Tensor, targets: Fields, masks: Fields, kinds: Kinds) -> tuple[torch.Tensor, Fields, Fields]:
    """Mirror left-right, each target as its kind mirrors it (normals negate x unless told not to)."""
    targets = {t: kinds[t][0].mirror(v, kinds[t][1]) for t, v in targets.items()}
    return image.flip(-1), targets, {t: v.flip(-1) for t, v in masks.items()}


def _pad_crop(x: torch.Tensor, fill, pad_hw: tuple[int, int], off: tuple[int, int], start: tuple[int, int], crop: tuple[int, int]) -> torch.Tensor:
    h, w = x.shape[-2:]
    canvas = torch.full((*x.shape[:-2], *pad_hw), fill, dtype=x.dtype)
    canvas[..., off[0] : off[0] + h, off[1] : off[1] + w] = x
    return canvas[..., start[0] : start[0] + crop[0], start[1] : start[1] + crop[1]].contiguous()


def pad_crop_sample(
    image: torch.Tensor, targets: Fields, masks: Fields, crop: tuple[int, int], start: tuple[int, int], kinds: Kinds
) -> tuple[torch.Tensor, Fields, Fields]:
    """Pad to at least ``crop`` with the picture centred, then cut ``crop`` = (h, w) at ``start`` = (top, left).

    ``start`` indexes the padded canvas; valid tops are 0..max(H, h) - h. Padding:
    image 0, each target its kind's fill (segmentation 255, others 0), masks False.
    """
    h, w = image.shape[-2:]
    pad_hw = (max(h, crop[0]), max(w, crop[1]))
    off = ((pad_hw[0] - h) // 2, (pad_hw[1] - w) // 2)
    if not (0 <= start[0] <= pad_hw[0] - crop[0] and 0 <= start[1] <= pad_hw[1] - crop[1]):
        raise ValueError(f"crop start {start} outside 0..{(pad_hw[0] - crop[0], pad_hw[1] - crop[1])}")
    return (
        _pad_crop(image, 0.0, pad_hw, off, start, crop),
        {t: _pad_crop(v, kinds[t][0].fill, pad_hw, off, start, crop) for t, v in targets.items()},
        {t: _pad_crop(v, False, pad_hw, off, start, crop) for t, v in masks.items()},
    )


def augment_sample(
    image: torch.Tensor,
    targets: Fields,
    masks: Fields,
    crop: int,
    rng: np.random.Generator,
    kinds: Kinds,
    scale_range: tuple[float, float] = SCALE_RANGE,
) -> tuple[torch.Tensor, Fields, Fields]:
    """The authors' training augmentation: random scale, mirror (p = 0.5), pad and random crop to crop x crop.

    Draws from ``rng`` in this order: scale, flip, crop top, crop left.
    """
    h, w = image.shape[-2:]
    s = scale_range[0] + rng.random() * (scale_range[1] - scale_range[0])
    size = (max(1, int(h * s)), max(1, int(w * s)))
    flip = rng.random() > 0.5
    image, targets, masks = resize_sample(image, targets, masks, size, kinds)
    if flip:
        image, targets, masks = flip_sample(image, targets, masks, kinds)
    top = int(rng.integers(0, max(size[0], crop) - crop + 1))
    left = int(rng.integers(0, max(size[1], crop) - crop + 1))
    return pad_crop_sample(image, targets, masks, (crop, crop), (top, left), kinds)


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


def prescale_sample(image: torch.Tensor, targets: Fields, masks: Fields, input_size: int, kinds: Kinds,
                    reference: tuple[int, int] = (NYUV2_STORED_HEIGHT, NYUV2_PAPER_INPUT)) -> tuple[torch.Tensor, Fields, Fields]:
    """Apply :func:`train_prescale_factor` to a sample (image [3,H,W] bilinear, labels nearest); sizes round to nearest."""
    h, w = image.shape[-2:]
    f = train_prescale_factor(h, input_size, reference)
    if f >= 1.0:
        return image, targets, masks
    return resize_sample(image, targets, masks, (max(1, round(h * f)), max(1, round(w * f))), kinds)


# --------------------------------------------------------------------------- dataset



def sample_to_tensors(sample: dict, tasks: Sequence[str]) -> tuple[torch.Tensor, Fields, Fields]:
    """A format reader's sample (:data:`~mtl_attack.data.formats.Sample`) -> (image float32 [3,H,W]
    in [0,1], targets, masks) of `tasks` at the stored size.

    The reader's image is uint8 [H,W,3] (0-255) or float [H,W,3] already in [0,1]. Class ids
    become int64 [H,W]; other maps float32 [C,H,W] ([H,W] maps get C = 1).
    """
    raw = sample["image"]
    image = torch.from_numpy(np.ascontiguousarray(raw)).permute(2, 0, 1).float()
    if raw.dtype == np.uint8:
        image = image.div_(255.0)
    targets: Fields = {}
    masks: Fields = {}
    for t in tasks:
        arr = np.asarray(sample["targets"][t])
        if np.issubdtype(arr.dtype, np.integer):
            targets[t] = torch.from_numpy(arr.astype(np.int64))
        else:
            arr = np.ascontiguousarray(arr, np.float32)
            targets[t] = torch.from_numpy(arr)[None] if arr.ndim == 2 else torch.from_numpy(arr).permute(2, 0, 1).contiguous()
        masks[t] = torch.from_numpy(np.asarray(sample["valid"][t], bool))
    return image, targets, masks


class MultiTaskDataset(Dataset):
    """A split on disk of any format, yielding items in the shared convention (module docstring).

    The format's listing gives the split's samples: a split json's entries (nyuv2, taskonomy),
    the numbered files of the split's folders (nyuv2_mtan, cityscapes) or the ids of the
    split's image folder (folder).

    Args:
        format: a key of :data:`~mtl_attack.data.formats.FORMATS`.
        root: folder holding the data.
        split: the split's name in the format (e.g. "train", "test", "val").
        tasks: the declared tasks to read, name -> options (:func:`mtl_attack.data.registry.selected_tasks`).
        input_size: side S of the square output; default the format's.
        augment: training augmentation (pre-scale, random scale, mirror, crop) instead of a resize.
        scale_range: (low, high) of the augmentation's random scale (unitless; the paper's 0.5-1.5).
        seed: makes augmentation reproducible (None: torch's global generator).

    Attributes: ``tasks`` (task names in order), ``class_weights`` (float32 [C] segmentation loss
    weights stored with the data, for tasks declaring ``class_weights: stored``; None when no task
    does), ``source`` (where the list came from).
    """

    def __init__(
        self,
        format: str,
        root: str,
        split: str,
        tasks: Mapping[str, Mapping],
        input_size: int | None = None,
        augment: bool = False,
        seed: int | None = None,
        scale_range: tuple[float, float] = SCALE_RANGE,
    ) -> None:
        fmt = get_format(format)
        self.format = fmt.name
        root = os.path.abspath(os.path.expanduser(str(root)))
        if not os.path.isdir(root):
            raise FileNotFoundError(
                f"dataset root {root} does not exist; set dataset.root to the folder holding {fmt.root_holds} (or use a synthetic dataset)"
            )
        self.task_specs = {str(k): dict(v) for k, v in tasks.items()}
        listing = fmt.list_split(root, split, self.task_specs)
        size = fmt.default_input_size if input_size is None else input_size
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ValueError(f"input_size must be a positive integer, got {input_size!r}")
        self.root = root
        self.split = split
        self.entries: list[list[str]] = listing.entries
        self.input_size = int(size)
        self.base_size = None if fmt.base_ratio is None else int(round(self.input_size * fmt.base_ratio))
        self.train_prescale = fmt.train_prescale
        self.augment = bool(augment)
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.seed = seed
        self.tasks = tuple(self.task_specs)
        self.kinds: Kinds = {t: (T.TASK_KINDS[o["kind"]], o) for t, o in self.task_specs.items()}
        self.source = listing.source
        stored = any(o.get("class_weights") == "stored" for o in self.task_specs.values())
        self.class_weights = torch.from_numpy(fmt.class_weights(root)) if stored else None
        self.epoch = 0
        self._memo: dict[int, dict] = {}
        self._memo_bytes = 0
        self._memo_budget = MEMO_BYTES

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)  # workers start with an empty memo, not a pickled copy
        state["_memo"], state["_memo_bytes"] = {}, 0
        return state

    def _decoded(self, index: int) -> dict:
        """The reader's sample for item ``index``, from the memo when held. Callers never
        write into it (every step below copies before changing values)."""
        decoded = self._memo.get(index)
        if decoded is None:
            decoded = get_format(self.format).read(self.root, self.entries[index], self.split, self.source,
                                                   self.task_specs)
            size = np.asarray(decoded["image"]).nbytes + sum(
                np.asarray(decoded[part][t]).nbytes for part in ("targets", "valid") for t in self.tasks)
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
        image, targets, masks = sample_to_tensors(self._decoded(index), self.tasks)
        kinds = self.kinds
        if self.base_size is not None:
            image, targets, masks = resize_sample(image, targets, masks, (self.base_size, self.base_size), kinds)
        s = self.input_size
        if self.augment:
            if self.train_prescale is not None:
                image, targets, masks = prescale_sample(image, targets, masks, s, kinds, self.train_prescale)
            image, targets, masks = augment_sample(image, targets, masks, s, self._rng(index), kinds,
                                                   self.scale_range)
        else:
            image, targets, masks = resize_sample(image, targets, masks, (s, s), kinds)
        for t, (kind, _) in kinds.items():
            if kind.label:
                masks[t] = targets[t] != T.IGNORE_INDEX
            else:
                targets[t] = targets[t] * masks[t]  # invalid pixels hold 0
        return {"image": image.contiguous(), "targets": targets, "masks": masks}


def build_dataset(
    format: str,
    root: str,
    split: str,
    tasks: Mapping[str, Mapping],
    input_size: int | None = None,
    augment: bool = False,
    seed: int | None = None,
    scale_range: tuple[float, float] = SCALE_RANGE,
) -> MultiTaskDataset:
    """Open split ``split`` of the ``format`` dataset under ``root`` (see :class:`MultiTaskDataset`)."""
    return MultiTaskDataset(format, root, split, tasks, input_size, augment, seed, scale_range)
