"""Split-level metric meters of the dense tasks, with per-image statistics for intervals."""
from __future__ import annotations

from typing import Callable, Mapping, Protocol

import numpy as np
import torch

from .losses import (DEPTH_DELTA_THRESHOLDS, DEPTH_ERROR_METRICS, DEPTH_METRICS, DEPTH_PRED_FLOOR, IGNORE_INDEX,  # noqa: F401
                     IMAGE_HIST_BIN_DEG, LOSS_METRICS, NORMAL_METRICS, SEG_METRICS,
                     NORMAL_THRESHOLD_TOL_DEG, NORMAL_THRESHOLDS_DEG, _check_pred, _check_seg_labels, _prepare, _unit,
                     resize_nearest, upsample_prediction)

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
        raise ValueError("segmentation: no valid pixels were accumulated; nothing to score")
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
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        size = tuple(target.shape[-2:])
        if pred.dim() == 3 and not pred.is_floating_point():
            labels = resize_nearest(pred, size).long()
            if bool(((labels < 0) | (labels >= self.classes)).any()):
                raise ValueError(
                    f"segmentation: predicted class ids must lie in [0, {self.classes})"
                )
            ref = labels.unsqueeze(1)
        else:
            _check_pred("segmentation", pred, self.classes)
            labels = upsample_prediction(pred.detach(), size).argmax(1)
            ref = pred
        target, valid = _prepare("segmentation", ref, target, mask, 3, size)
        target = target.long()
        valid = valid & (target != IGNORE_INDEX)
        _check_seg_labels("segmentation", target, valid, self.classes)
        per_image = confusion_matrices(labels.to(target.device), target, valid, self.classes)
        self._images.add(conf=per_image)

    def compute(self) -> dict[str, float]:
        return self.score(summed_stats(self.image_stats()))

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


def _at_truth(kind: str, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
              channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A map prediction ``[B, C, h, w]`` upsampled to its target ``[B, C, H, W]`` (bilinear), with the
    target and its valid mask ``[B, H, W]`` checked: what a map meter scores."""
    _check_pred(kind, pred, channels)
    size = tuple(target.shape[-2:])
    pred = upsample_prediction(pred.detach(), size)
    target, valid = _prepare(kind, pred, target, mask, 4, size, channels)
    return pred, target, valid


class NormalMeter:
    """Angle statistics (degrees) over all valid pixels of the split.

    angle_mean and angle_median (lower is better); within_11_25 / within_22_5 /
    within_30: % of pixels with angle <= t (inclusive, tolerance 1e-4 deg).
    Per-image statistics: ``count``, ``angle_sum`` ``[N]``, ``within`` ``[N, 3]`` and a
    histogram ``hist`` ``[N, 1800]`` of bins of :data:`IMAGE_HIST_BIN_DEG` (0.1 deg) over
    [0, 180]. The split's metrics are scored from their sums (:meth:`compute` is
    :meth:`score` of the summed statistics), so the record, the intervals and the paired
    differences all read the same numbers: the median is the mean of the two middle ranks'
    bin centres, within 0.05 deg of the exact one.
    """

    kind = "normal"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self) -> None:
        self.image_bins = int(round(180.0 / IMAGE_HIST_BIN_DEG))
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        pred, target, valid = _at_truth("normal", pred, target, mask, 3)
        target = torch.where(valid.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
        full = normal_angles_deg(pred, target)
        # Per image (offset by image so one bincount serves the batch).
        b = full.shape[0]
        inside = torch.stack([(full <= t + NORMAL_THRESHOLD_TOL_DEG) & valid for t in NORMAL_THRESHOLDS_DEG], 1)
        bins = (full / IMAGE_HIST_BIN_DEG).floor().long().clamp(0, self.image_bins - 1)
        bins = bins + torch.arange(b, device=bins.device).view(b, 1, 1) * self.image_bins
        hist = torch.bincount(bins[valid], minlength=b * self.image_bins).view(b, self.image_bins)
        self._images.add(count=valid.sum((1, 2)), angle_sum=torch.where(valid, full, 0.0).sum((1, 2)),
                         within=inside.sum((2, 3)), hist=hist)

    def compute(self) -> dict[str, float]:
        return self.score(summed_stats(self.image_stats()))

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"count": (), "angle_sum": (), "within": (3,), "hist": (self.image_bins,)})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        count = float(stats["count"])
        if count <= 0:
            raise ValueError("normal: no valid pixels were accumulated; nothing to score")
        out = {"angle_mean": float(stats["angle_sum"]) / count,
               "angle_median": _hist_median(np.asarray(stats["hist"]), count, IMAGE_HIST_BIN_DEG)}
        for name, n in zip(("within_11_25", "within_22_5", "within_30"), np.asarray(stats["within"])):
            out[name] = float(n) / count * 100.0
        return out


class DepthMeter:
    """Depth errors over all valid pixels of the split (pixel-pooled, float64).

    abs_err = mean |p - g|; rel_err = mean |p - g| / g; delta_k = % of pixels with
    max(p/g, g/p) < 1.25**k (strict). For the ratio only, p is floored at 1e-8,
    so p <= 0 lands far outside every threshold. Ground truth must be > 0 at
    valid pixels (otherwise ValueError: mark such pixels invalid in the mask).
    Per-image statistics: ``count``, ``abs_sum``, ``rel_sum`` ``[N]`` and ``delta`` ``[N, 3]``;
    the split's metrics are scored from their sums.
    """

    kind = "depth"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self) -> None:
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        pred, target, valid = _at_truth("depth", pred, target, mask, 1)
        p_full = pred[:, 0].to(torch.float64)
        g_full = torch.where(valid, target[:, 0].to(torch.float64), torch.ones_like(p_full))
        g = g_full[valid]
        if bool((g <= 0).any()) or not bool(torch.isfinite(g).all()):
            raise ValueError(
                "depth: ground truth must be finite and > 0 at valid pixels; "
                "set mask=False where depth is missing"
            )
        err_full = torch.where(valid, (p_full - g_full).abs(), 0.0)
        pf_full = p_full.clamp_min(DEPTH_PRED_FLOOR)
        ratio_full = torch.maximum(pf_full / g_full, g_full / pf_full)
        inside = torch.stack([(ratio_full < t) & valid for t in DEPTH_DELTA_THRESHOLDS], 1)
        self._images.add(count=valid.sum((1, 2)), abs_sum=err_full.sum((1, 2)),
                         rel_sum=(err_full / g_full).sum((1, 2)), delta=inside.sum((2, 3)))

    @staticmethod
    def _scores(count: float, abs_sum: float, rel_sum: float, delta) -> dict[str, float]:
        if count <= 0:
            raise ValueError("depth: no valid pixels were accumulated; nothing to score")
        out = {"abs_err": float(abs_sum) / float(count), "rel_err": float(rel_sum) / float(count)}
        for i, n in enumerate(delta):
            out[f"delta_{i + 1}"] = float(n) / float(count) * 100.0
        return out

    def compute(self) -> dict[str, float]:
        return self.score(summed_stats(self.image_stats()))

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

    Scored where every other metric is: at the ground truth's resolution. The prediction is
    upsampled to the target's size (bilinear, ``align_corners=False``; segmentation logits
    before the cross-entropy) and the task's loss taken there, so a prediction is scored on
    the same pixels whatever its output size (a trivial predictor's 1x1 map included).
    Training takes the same loss at the head's resolution instead (the targets resampled).
    Per-image statistics: ``loss`` and ``count`` (1 per image) ``[N]``.
    """

    kind = "loss"  # names its scorer in a saved statistics file (SCORERS)

    def __init__(self, loss_fn: Callable[..., torch.Tensor]):
        self.loss_fn = loss_fn
        self._images = _PerImage()

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        pred = upsample_prediction(pred.detach(), tuple(target.shape[-2:]))
        per_sample = self.loss_fn(pred, target, mask).to(torch.float64)
        self._images.add(loss=per_sample, count=torch.ones_like(per_sample))

    @staticmethod
    def _scores(total: float, count: float) -> dict[str, float]:
        if count <= 0:
            raise ValueError("loss meter: no samples were accumulated; nothing to score")
        return {"loss": float(total) / float(count)}

    def compute(self) -> dict[str, float]:
        return self.score(summed_stats(self.image_stats()))

    def image_stats(self) -> dict[str, np.ndarray]:
        return self._images.stats({"loss": (), "count": ()})

    @staticmethod
    def score(stats: Mapping[str, np.ndarray]) -> dict[str, float]:
        return LossMeter._scores(float(stats["loss"]), float(stats["count"]))


# Meter kind -> metrics from summed per-image statistics; a statistics file names each task's kind.
SCORERS: dict[str, Callable[[Mapping[str, np.ndarray]], dict[str, float]]] = {
    m.kind: m.score for m in (SegmentationMeter, NormalMeter, DepthMeter, DepthErrorMeter, LossMeter)
}

