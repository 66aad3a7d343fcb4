"""Dense prediction tasks: per-sample losses, split-level metric meters, directions.

A :class:`Task` bundles what the rest of the toolkit needs to know about one
task: its output channels, its per-sample loss, the metrics it reports (in a
fixed order, each with its direction) and a factory for a metric meter that
accumulates over a whole split.

Shapes (B = batch, C = output channels, h×w = prediction size, H×W = ground truth size):

- predictions: float ``[B, C, h, w]`` (the model's raw head output).
- ``segment_semantic`` target: int64 ``[B, H, W]`` class ids, 255 = ignore.
- ``normal`` target: float ``[B, 3, H, W]`` (unit vectors at valid pixels).
- ``depth_zbuffer`` / ``keypoints2d`` / ``edge_texture`` target: float ``[B, 1, H, W]``.
- masks: bool ``[B, H, W]``, True = valid pixel (``None`` = every pixel valid).

Losses are computed at the prediction's resolution (target and mask resized with
nearest, sampled at each output cell's centre); meters upsample the prediction to
the target's resolution (bilinear, ``align_corners=False``, which puts output cell i
at that same centre, (i + 0.5) H / h - 0.5; segmentation upsamples logits, then
takes the argmax). Sampling at the cells' top-left pixels instead (torch's legacy
"nearest", the authors' code) trains each cell on the label half a cell up and left
of where the metric scores it: at the miniature's 9x9 outputs of 64-pixel inputs
that cost 15 points of mIoU.
Values of the target at invalid pixels never matter (they are replaced before
any arithmetic, so even NaN there is harmless). Predictions must be finite.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Callable, Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "IGNORE_INDEX",
    "NORMAL_HIST_BIN_DEG",
    "NORMAL_THRESHOLDS_DEG",
    "DEPTH_DELTA_THRESHOLDS",
    "DEPTH_PRED_FLOOR",
    "IMAGE_HIST_BIN_DEG",
    "Meter",
    "summed_stats",
    "SCORERS",
    "Task",
    "segmentation_task",
    "normal_task",
    "depth_task",
    "l1_task",
    "resize_nearest",
    "upsample_prediction",
    "segmentation_loss",
    "normal_loss",
    "l1_loss",
    "confusion_matrix",
    "confusion_matrices",
    "segmentation_scores",
    "normal_angles_deg",
    "SegmentationMeter",
    "NormalMeter",
    "DepthMeter",
    "DepthErrorMeter",
    "LossMeter",
]

IGNORE_INDEX = 255
# Median of the normal angles comes from a histogram with this bin width
# (degrees); the reported median is within half a bin (0.0005 deg) of the exact one.
NORMAL_HIST_BIN_DEG = 1e-3
# Per-image angle histograms (for bootstrap intervals) use coarser bins: a median scored
# from them is within half a bin (0.05 deg) of the exact one.
IMAGE_HIST_BIN_DEG = 0.1
NORMAL_THRESHOLDS_DEG = (11.25, 22.5, 30.0)
# "within t" counts angle <= t + this tolerance (deg): float32 inputs put an
# exact-boundary angle ~1e-5 deg either side of t, so a strict compare is noise.
NORMAL_THRESHOLD_TOL_DEG = 1e-4
DEPTH_DELTA_THRESHOLDS = (1.25, 1.25**2, 1.25**3)
# Depth predictions are floored at this value for the ratio max(p/g, g/p) only,
# so p <= 0 counts as far outside every threshold instead of dividing by zero.
DEPTH_PRED_FLOOR = 1e-8
# Normalising a vector shorter than this leaves it (near) zero rather than NaN.
_NORM_EPS = 1e-12

SEG_METRICS = {"miou": True, "pixel_acc": True}
NORMAL_METRICS = {
    "angle_mean": False,
    "angle_median": False,
    "within_11_25": True,
    "within_22_5": True,
    "within_30": True,
}
DEPTH_METRICS = {
    "abs_err": False,
    "rel_err": False,
    "delta_1": True,
    "delta_2": True,
    "delta_3": True,
}
# LibMTL's NYUv2 depth metrics (examples/nyu/utils.py DepthMetric): the errors, no deltas.
DEPTH_ERROR_METRICS = {"abs_err": False, "rel_err": False}
LOSS_METRICS = {"loss": False}


# ----------------------------------------------------------------------------- helpers


def resize_nearest(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize the last two dims of ``x`` ([B, H, W] or [B, C, H, W], any dtype) to
    ``size`` with nearest-neighbour sampling at the output cells' centres: output i reads
    input floor((i + 0.5) * H / h) (torch's ``mode="nearest-exact"``), the pixel nearest to
    where bilinear ``align_corners=False`` places cell i.

    Integer labels survive exactly (up to 2**24); bool masks stay bool.
    """
    size = (int(size[0]), int(size[1]))
    if tuple(x.shape[-2:]) == size:
        return x
    squeeze = x.dim() == 3
    y = x.unsqueeze(1) if squeeze else x
    out = F.interpolate(y.to(torch.float32), size=size, mode="nearest-exact")
    if squeeze:
        out = out.squeeze(1)
    if x.dtype == torch.bool:
        return out > 0.5
    return out.to(x.dtype)


def upsample_prediction(pred: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinearly resize a prediction ``[B, C, h, w]`` to ``size`` (align_corners=False)."""
    size = (int(size[0]), int(size[1]))
    if tuple(pred.shape[-2:]) == size:
        return pred
    if not pred.is_floating_point():
        pred = pred.to(torch.float32)
    return F.interpolate(pred, size=size, mode="bilinear", align_corners=False)


def _unit(x: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """x / max(||x||, eps) along ``dim``; finite value and gradient even at x = 0."""
    sq = (x * x).sum(dim=dim, keepdim=True)
    # clamp before sqrt: sqrt'(0) is inf, and clamp's gradient is 0 below eps^2.
    return x / sq.clamp_min(_NORM_EPS**2).sqrt()


def _check_pred(task: str, pred: torch.Tensor, channels: int | None = None) -> None:
    if pred.dim() != 4:
        raise ValueError(
            f"{task}: prediction must be [B, C, h, w], got shape {tuple(pred.shape)}"
        )
    if channels is not None and pred.shape[1] != channels:
        raise ValueError(
            f"{task}: prediction has {pred.shape[1]} channels, expected {channels}"
        )


def _prepare(
    task: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None,
    target_dims: int,
    size: tuple[int, int],
    target_channels: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check shapes and return (target, valid mask) resized to ``size`` on pred's device."""
    if target.dim() != target_dims:
        want = "[B, H, W]" if target_dims == 3 else "[B, C, H, W]"
        raise ValueError(
            f"{task}: target must be {want}, got shape {tuple(target.shape)}"
        )
    if target_channels is not None and target.shape[1] != target_channels:
        raise ValueError(
            f"{task}: target has {target.shape[1]} channels, expected {target_channels}"
        )
    if target.shape[0] != pred.shape[0]:
        raise ValueError(
            f"{task}: prediction batch {pred.shape[0]} != target batch {target.shape[0]}"
        )
    hw = tuple(target.shape[-2:])
    if mask is None:
        mask = torch.ones((target.shape[0], *hw), dtype=torch.bool, device=target.device)
    elif tuple(mask.shape) != (target.shape[0], *hw):
        raise ValueError(
            f"{task}: mask must be [B, H, W] = {(target.shape[0], *hw)}, got {tuple(mask.shape)}"
        )
    target = resize_nearest(target.to(pred.device), size)
    mask = resize_nearest(mask.to(pred.device).bool(), size)
    return target, mask


def _sample_mean(
    values: torch.Tensor, valid: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample (weighted) mean of ``values`` [B, h, w] over valid pixels -> [B].

    A sample without valid pixels (or zero total weight) gives 0.
    """
    w = valid.to(values.dtype)
    if weights is not None:
        w = w * weights
    num = torch.where(valid, values, torch.zeros_like(values)) * w
    num = num.flatten(1).sum(1)
    den = w.flatten(1).sum(1)
    return num / torch.where(den > 0, den, torch.ones_like(den))


def _check_seg_labels(task: str, labels: torch.Tensor, valid: torch.Tensor, classes: int) -> None:
    bad = valid & ((labels < 0) | (labels >= classes))
    if bool(bad.any()):
        v = int(labels[bad][0])
        raise ValueError(
            f"{task}: label {v} outside [0, {classes}) at a valid pixel; "
            f"use {IGNORE_INDEX} (or mask=False) for pixels to ignore"
        )


# ----------------------------------------------------------------------------- losses


def segmentation_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-sample cross-entropy over valid pixels -> ``[B]``.

    pred: logits ``[B, C, h, w]``; target: int64 ``[B, H, W]`` (255 = ignore);
    mask: bool ``[B, H, W]``. Target and mask are resized to ``h×w`` with nearest.
    Valid = mask & target != 255. With ``class_weights`` ``[C]`` the per-sample
    loss is sum(w[y] * ce) / sum(w[y]) over valid pixels (what torch's weighted
    ``CrossEntropyLoss`` mean does, per sample). No valid pixel -> 0.
    """
    _check_pred("segment_semantic", pred)
    classes = pred.shape[1]
    target, valid = _prepare("segment_semantic", pred, target, mask, 3, pred.shape[-2:])
    target = target.long()
    valid = valid & (target != IGNORE_INDEX)
    _check_seg_labels("segment_semantic", target, valid, classes)
    safe = torch.where(valid, target, torch.zeros_like(target))
    ce = F.cross_entropy(pred, safe, reduction="none")
    weights = None
    if class_weights is not None:
        cw = torch.as_tensor(class_weights, device=pred.device, dtype=ce.dtype)
        if cw.shape != (classes,):
            raise ValueError(
                f"segment_semantic: class_weights has shape {tuple(cw.shape)}, expected ({classes},)"
            )
        weights = cw[safe]
    return _sample_mean(ce, valid, weights)


def normal_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample ``1 - cos(normalize(pred), normalize(target))`` over valid pixels -> ``[B]``.

    pred ``[B, 3, h, w]``, target ``[B, 3, H, W]`` resized to ``h×w`` (nearest).
    Both are normalised along the channel dim with a floor of 1e-12 on the norm,
    so a zero vector has cosine 0 (loss 1) and a finite gradient. Range [0, 2].
    """
    _check_pred("normal", pred, 3)
    target, valid = _prepare("normal", pred, target, mask, 4, pred.shape[-2:], 3)
    target = torch.where(valid.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
    cos = (_unit(pred) * _unit(target)).sum(1)
    return _sample_mean(1.0 - cos, valid)


def l1_loss(
    pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Per-sample mean absolute error over valid pixels (and channels) -> ``[B]``.

    pred ``[B, C, h, w]``; target ``[B, C, H, W]`` resized to ``h×w`` (nearest).
    Used for depth, keypoints and edges.
    """
    _check_pred("l1", pred)
    target, valid = _prepare("l1", pred, target, mask, 4, pred.shape[-2:], pred.shape[1])
    # zero the target where invalid: garbage (even NaN) there must not reach the gradient
    target = torch.where(valid.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
    err = (pred - target).abs().mean(1)
    return _sample_mean(err, valid)


# ----------------------------------------------------------------------------- pure metric math


def confusion_matrix(
    pred_labels: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, classes: int
) -> torch.Tensor:
    """Confusion counts int64 ``[classes, classes]``: rows = ground truth, cols = prediction.

    pred_labels, target: integer tensors of the same shape; valid: bool, same shape.
    """
    flat = [x.reshape(1, -1) for x in (pred_labels, target, valid)]
    return confusion_matrices(*flat, classes)[0]


def confusion_matrices(
    pred_labels: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, classes: int
) -> torch.Tensor:
    """One confusion matrix per image, int64 ``[B, classes, classes]`` (rows = ground truth).

    pred_labels, target: integer ``[B, ...]``; valid: bool, same shape. One bincount for
    the batch: each image's (truth, prediction) pairs are offset into its own matrix.
    """
    b = target.shape[0]
    image = torch.arange(b, device=target.device).view(b, *[1] * (target.dim() - 1)).expand_as(target)
    idx = (image * classes + target.long()) * classes + pred_labels.long()
    return torch.bincount(idx[valid], minlength=b * classes * classes).reshape(b, classes, classes).cpu()


def segmentation_scores(conf: torch.Tensor) -> dict[str, float]:
    """mIoU and pixel accuracy in percent from a confusion matrix (rows = truth).

    IoU_c = conf[c,c] / (row_c + col_c - conf[c,c]); mIoU averages the classes whose
    union is > 0 (present in the truth or predicted). Pixel acc = trace / total.
    """
    c = conf.to(torch.float64)
    total = c.sum()
    if total <= 0:
        raise ValueError("segment_semantic: no valid pixels were accumulated; nothing to score")
    diag = c.diagonal()
    union = c.sum(0) + c.sum(1) - diag
    present = union > 0
    iou = diag[present] / union[present]
    return {
        "miou": float(iou.mean() * 100.0),
        "pixel_acc": float(diag.sum() / total * 100.0),
    }


def normal_angles_deg(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Angle in degrees (float64) between normalised ``pred`` and ``target`` along dim 1.

    ``[B, 3, H, W]`` -> ``[B, H, W]``; a zero vector on either side gives 90 deg.
    """
    cos = (_unit(pred.to(torch.float64)) * _unit(target.to(torch.float64))).sum(1)
    return torch.rad2deg(torch.acos(cos.clamp(-1.0, 1.0)))


# ----------------------------------------------------------------------------- meters


class Meter(Protocol):
    """Accumulates one task's metrics over a split: ``update`` per batch, ``compute`` at the end.

    Every meter also keeps per-image sufficient statistics (``image_stats``: arrays whose
    first axis is the image, in update order) and scores any non-negative weighting of
    them (``score``: metrics of the images counted by ``weights``), so a bootstrap over
    images needs no second pass over the data.
    """

    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None: ...

    def compute(self) -> dict[str, float]: ...

    def image_stats(self) -> dict[str, np.ndarray]: ...

    def score(self, stats: Mapping[str, np.ndarray]) -> dict[str, float]: ...


def summed_stats(stats: Mapping[str, np.ndarray], weights: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-image statistics ``[N, ...]`` summed over images, each image counted ``weights[..., i]``
    times (``[N]``, or ``[R, N]`` for R weightings at once, giving ``[R, ...]``; None = once)."""
    if weights is None:
        return {k: v.sum(0) for k, v in stats.items()}
    weights = np.asarray(weights)
    return {k: np.tensordot(weights, v, axes=(weights.ndim - 1, 0)) for k, v in stats.items()}


class _PerImage:
    """Collects per-image statistics batch by batch."""

    def __init__(self) -> None:
        self._rows: dict[str, list[np.ndarray]] = {}

    def add(self, **arrays: torch.Tensor) -> None:
        for k, v in arrays.items():
            self._rows.setdefault(k, []).append(v.detach().cpu().numpy())

    def stats(self, empty: Mapping[str, tuple]) -> dict[str, np.ndarray]:
        if not self._rows:
            return {k: np.zeros((0, *shape)) for k, shape in empty.items()}
        return {k: np.concatenate(v) for k, v in self._rows.items()}


class SegmentationMeter:
    """mIoU (%) and pixel accuracy (%) from ONE confusion matrix over the whole split.

    ``update(pred, target, mask)``: pred is logits ``[B, C, h, w]`` (bilinearly
    upsampled to the target, then argmax) or integer class ids ``[B, h, w]``
    (nearest-resized); target int64 ``[B, H, W]`` with 255 = ignore.
    Per-image statistics: ``conf`` int64 ``[N, C, C]``.
    """

    kind = "segmentation"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self, classes: int):
        self.classes = int(classes)
        self.conf = torch.zeros(self.classes, self.classes, dtype=torch.int64)
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        size = tuple(target.shape[-2:])
        if pred.dim() == 3 and not pred.is_floating_point():
            labels = resize_nearest(pred, size).long()
            if bool(((labels < 0) | (labels >= self.classes)).any()):
                raise ValueError(
                    f"segment_semantic: predicted class ids must lie in [0, {self.classes})"
                )
            ref = labels.unsqueeze(1)
        else:
            _check_pred("segment_semantic", pred, self.classes)
            labels = upsample_prediction(pred.detach(), size).argmax(1)
            ref = pred
        target, valid = _prepare("segment_semantic", ref, target, mask, 3, size)
        target = target.long()
        valid = valid & (target != IGNORE_INDEX)
        _check_seg_labels("segment_semantic", target, valid, self.classes)
        per_image = confusion_matrices(labels.to(target.device), target, valid, self.classes)
        self.conf += per_image.sum(0)
        self._images.add(conf=per_image)

    def compute(self) -> dict[str, float]:
        return segmentation_scores(self.conf)

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"conf": (self.classes, self.classes)})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return segmentation_scores(torch.as_tensor(np.asarray(stats["conf"])))


def _hist_median(hist: np.ndarray | torch.Tensor, count: float, bin_deg: float) -> float:
    """Median of values binned in ``hist`` (bin width ``bin_deg``): mean of the two middle ranks'
    bin centres. ``count`` is the total (it may be fractional only with integral ranks)."""
    cum = torch.cumsum(torch.as_tensor(hist, dtype=torch.float64), 0)
    count = int(round(float(count)))
    lo_rank, hi_rank = (count - 1) // 2, count // 2  # 0-based middle ranks
    lo = int(torch.searchsorted(cum, torch.tensor(lo_rank + 1, dtype=torch.float64)))
    hi = int(torch.searchsorted(cum, torch.tensor(hi_rank + 1, dtype=torch.float64)))
    return (lo + hi + 1) * 0.5 * bin_deg


class NormalMeter:
    """Angle statistics (degrees) over all valid pixels of the split.

    angle_mean and angle_median (lower is better); within_11_25 / within_22_5 /
    within_30: % of pixels with angle <= t (inclusive, tolerance 1e-4 deg).
    The median is NOT computed from stored angles: angles go into a histogram
    of bin width 1e-3 deg over [0, 180] and the median is read from it (mean of
    the two middle ranks' bin centres), so it is exact to within 0.0005 deg.
    Per-image statistics: ``count``, ``angle_sum`` ``[N]``, ``within`` ``[N, 3]`` and a
    coarser histogram ``hist`` ``[N, 1800]`` (bins of :data:`IMAGE_HIST_BIN_DEG`), so a
    median scored from them is within 0.05 deg.
    """

    kind = "normal"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self) -> None:
        self.bins = int(round(180.0 / NORMAL_HIST_BIN_DEG))
        self.hist = torch.zeros(self.bins, dtype=torch.int64)
        self.count = 0
        self.angle_sum = 0.0
        self.within = [0 for _ in NORMAL_THRESHOLDS_DEG]
        self.image_bins = int(round(180.0 / IMAGE_HIST_BIN_DEG))
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        _check_pred("normal", pred, 3)
        size = tuple(target.shape[-2:])
        pred = upsample_prediction(pred.detach(), size)
        target, valid = _prepare("normal", pred, target, mask, 4, size, 3)
        target = torch.where(valid.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
        full = normal_angles_deg(pred, target)
        ang = full[valid]
        self.count += ang.numel()
        self.angle_sum += float(ang.sum())
        for i, t in enumerate(NORMAL_THRESHOLDS_DEG):
            self.within[i] += int((ang <= t + NORMAL_THRESHOLD_TOL_DEG).sum())
        idx = (ang / NORMAL_HIST_BIN_DEG).floor().long().clamp(0, self.bins - 1)
        self.hist += torch.bincount(idx, minlength=self.bins).cpu()
        # Per image: the same sums, and the coarse histogram (offset by image so one bincount serves all).
        b = full.shape[0]
        inside = torch.stack([(full <= t + NORMAL_THRESHOLD_TOL_DEG) & valid for t in NORMAL_THRESHOLDS_DEG], 1)
        coarse = (full / IMAGE_HIST_BIN_DEG).floor().long().clamp(0, self.image_bins - 1)
        coarse = coarse + torch.arange(b, device=coarse.device).view(b, 1, 1) * self.image_bins
        hist = torch.bincount(coarse[valid], minlength=b * self.image_bins).view(b, self.image_bins)
        self._images.add(count=valid.sum((1, 2)), angle_sum=torch.where(valid, full, 0.0).sum((1, 2)),
                         within=inside.sum((2, 3)), hist=hist)

    @staticmethod
    def _scores(count: float, angle_sum: float, within, hist, bin_deg: float) -> dict[str, float]:
        if count <= 0:
            raise ValueError("normal: no valid pixels were accumulated; nothing to score")
        out = {"angle_mean": float(angle_sum) / float(count), "angle_median": _hist_median(hist, count, bin_deg)}
        for name, n in zip(("within_11_25", "within_22_5", "within_30"), within):
            out[name] = float(n) / float(count) * 100.0
        return out

    def compute(self) -> dict[str, float]:
        return self._scores(self.count, self.angle_sum, self.within, self.hist, NORMAL_HIST_BIN_DEG)

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"count": (), "angle_sum": (), "within": (3,), "hist": (self.image_bins,)})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return NormalMeter._scores(float(stats["count"]), float(stats["angle_sum"]), np.asarray(stats["within"]),
                            np.asarray(stats["hist"]), IMAGE_HIST_BIN_DEG)


class DepthMeter:
    """Depth errors over all valid pixels of the split (pixel-pooled, float64).

    abs_err = mean |p - g|; rel_err = mean |p - g| / g; delta_k = % of pixels with
    max(p/g, g/p) < 1.25**k (strict). For the ratio only, p is floored at 1e-8,
    so p <= 0 lands far outside every threshold. Ground truth must be > 0 at
    valid pixels (otherwise ValueError: mark such pixels invalid in the mask).
    Per-image statistics: ``count``, ``abs_sum``, ``rel_sum`` ``[N]`` and ``delta`` ``[N, 3]``.
    """

    kind = "depth"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self) -> None:
        self.count = 0
        self.abs_sum = 0.0
        self.rel_sum = 0.0
        self.delta = [0 for _ in DEPTH_DELTA_THRESHOLDS]
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        _check_pred("depth_zbuffer", pred, 1)
        size = tuple(target.shape[-2:])
        pred = upsample_prediction(pred.detach(), size)
        target, valid = _prepare("depth_zbuffer", pred, target, mask, 4, size, 1)
        p_full = pred[:, 0].to(torch.float64)
        g_full = torch.where(valid, target[:, 0].to(torch.float64), torch.ones_like(p_full))
        p, g = p_full[valid], g_full[valid]
        if bool((g <= 0).any()) or not bool(torch.isfinite(g).all()):
            raise ValueError(
                "depth_zbuffer: ground truth must be finite and > 0 at valid pixels; "
                "set mask=False where depth is missing"
            )
        err = (p - g).abs()
        self.count += g.numel()
        self.abs_sum += float(err.sum())
        self.rel_sum += float((err / g).sum())
        pf = p.clamp_min(DEPTH_PRED_FLOOR)
        ratio = torch.maximum(pf / g, g / pf)
        for i, t in enumerate(DEPTH_DELTA_THRESHOLDS):
            self.delta[i] += int((ratio < t).sum())
        err_full = torch.where(valid, (p_full - g_full).abs(), 0.0)
        pf_full = p_full.clamp_min(DEPTH_PRED_FLOOR)
        ratio_full = torch.maximum(pf_full / g_full, g_full / pf_full)
        inside = torch.stack([(ratio_full < t) & valid for t in DEPTH_DELTA_THRESHOLDS], 1)
        self._images.add(count=valid.sum((1, 2)), abs_sum=err_full.sum((1, 2)),
                         rel_sum=(err_full / g_full).sum((1, 2)), delta=inside.sum((2, 3)))

    @staticmethod
    def _scores(count: float, abs_sum: float, rel_sum: float, delta) -> dict[str, float]:
        if count <= 0:
            raise ValueError("depth_zbuffer: no valid pixels were accumulated; nothing to score")
        out = {"abs_err": float(abs_sum) / float(count), "rel_err": float(rel_sum) / float(count)}
        for i, n in enumerate(delta):
            out[f"delta_{i + 1}"] = float(n) / float(count) * 100.0
        return out

    def compute(self) -> dict[str, float]:
        return self._scores(self.count, self.abs_sum, self.rel_sum, self.delta)

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"count": (), "abs_sum": (), "rel_sum": (), "delta": (3,)})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return DepthMeter._scores(float(stats["count"]), float(stats["abs_sum"]), float(stats["rel_sum"]),
                            np.asarray(stats["delta"]))


class DepthErrorMeter(DepthMeter):
    """abs_err and rel_err only (LibMTL's NYUv2 depth metrics), from the statistics of :class:`DepthMeter`."""

    kind = "depth_err"  # names its scorer in a saved statistics file (SCORERS)

    def compute(self) -> dict[str, float]:
        return {k: v for k, v in super().compute().items() if k in DEPTH_ERROR_METRICS}

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return {k: v for k, v in DepthMeter.score(stats).items() if k in DEPTH_ERROR_METRICS}


class LossMeter:
    """Mean of per-sample losses over the split -> ``{"loss": value}`` (lower is better).

    The loss is evaluated at the prediction's resolution, exactly as in training.
    Per-image statistics: ``loss`` and ``count`` (1 per image) ``[N]``.
    """

    kind = "loss"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self, loss_fn: Callable[..., torch.Tensor]):
        self.loss_fn = loss_fn
        self.total = 0.0
        self.count = 0
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        per_sample = self.loss_fn(pred.detach(), target, mask).to(torch.float64)
        self.total += float(per_sample.sum())
        self.count += per_sample.numel()
        self._images.add(loss=per_sample, count=torch.ones_like(per_sample))

    @staticmethod
    def _scores(total: float, count: float) -> dict[str, float]:
        if count <= 0:
            raise ValueError("loss meter: no samples were accumulated; nothing to score")
        return {"loss": float(total) / float(count)}

    def compute(self) -> dict[str, float]:
        return self._scores(self.total, self.count)

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"loss": (), "count": ()})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return LossMeter._scores(float(stats["loss"]), float(stats["count"]))


# Meter kind -> metrics from summed per-image statistics; a statistics file names each task's kind.
SCORERS: dict[str, Callable[[Mapping[str, np.ndarray]], dict[str, float]]] = {
    m.kind: m.score for m in (SegmentationMeter, NormalMeter, DepthMeter, DepthErrorMeter, LossMeter)
}


# ----------------------------------------------------------------------------- Task


@dataclass(frozen=True, eq=False)
class Task:
    """One dense prediction task.

    name: task key (e.g. ``"normal"``); channels: head output channels;
    loss(pred, target, mask) -> per-sample loss ``[B]``;
    metrics: read-only ordered mapping metric name -> higher_is_better;
    meter() -> a fresh :class:`Meter` whose ``compute()`` returns exactly ``metrics``' keys.
    """

    name: str
    channels: int
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    metrics: Mapping[str, bool]
    meter: Callable[[], Meter]


def _as_class_weights(weights, classes: int) -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu().flatten().clone()
    if w.numel() != classes:
        raise ValueError(
            f"seg_class_weights has {w.numel()} values, the segmentation task has {classes} classes"
        )
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError("seg_class_weights must be finite and > 0")
    return w


def _seg_loss_fn(class_weights: torch.Tensor | None):
    def loss(pred, target, mask=None):
        return segmentation_loss(pred, target, mask, class_weights)

    loss.class_weights = class_weights  # an attack's harder loss of this task keeps the weights
    return loss


def _task(name: str, channels: int, loss, metrics: Mapping[str, bool], meter: Callable[[], Meter]) -> Task:
    return Task(name=name, channels=channels, loss=loss, metrics=MappingProxyType(dict(metrics)), meter=meter)


def _loss_task(name: str, channels: int, loss) -> Task:
    """A task whose only metric is its own loss over the split (lower is better)."""
    return _task(name, channels, loss, LOSS_METRICS, lambda: LossMeter(loss))


def segmentation_task(classes: int, class_weights: Sequence[float] | torch.Tensor | None = None,
                      name: str = "segment_semantic", loss_metric: bool = False) -> Task:
    """Semantic segmentation over `classes` classes (255 ignored): cross-entropy, optionally class-weighted.

    Metrics: mIoU and pixel accuracy in % (higher is better), or with `loss_metric` the loss itself.
    """
    loss = _seg_loss_fn(_as_class_weights(class_weights, classes))
    if loss_metric:
        return _loss_task(name, classes, loss)
    return _task(name, classes, loss, SEG_METRICS, lambda: SegmentationMeter(classes))


def normal_task(name: str = "normal", loss_metric: bool = False) -> Task:
    """Surface normals (3 channels): 1 - cos loss; angle metrics in degrees, or the loss itself."""
    if loss_metric:
        return _loss_task(name, 3, normal_loss)
    return _task(name, 3, normal_loss, NORMAL_METRICS, NormalMeter)


def depth_task(name: str = "depth_zbuffer", loss_metric: bool = False, deltas: bool = True) -> Task:
    """Depth (1 channel, metres): L1 loss over valid pixels; abs/rel error (lower is better) and, with
    `deltas`, the delta thresholds in % (higher is better); or with `loss_metric` the loss itself."""
    if loss_metric:
        return _loss_task(name, 1, l1_loss)
    if not deltas:
        return _task(name, 1, l1_loss, DEPTH_ERROR_METRICS, DepthErrorMeter)
    return _task(name, 1, l1_loss, DEPTH_METRICS, DepthMeter)


def l1_task(name: str, channels: int = 1) -> Task:
    """A regression map (e.g. keypoints2d, edge_texture) with L1 loss, scored by its loss."""
    return _loss_task(name, channels, l1_loss)
