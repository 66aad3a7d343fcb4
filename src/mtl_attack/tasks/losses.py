"""Per-sample losses of the dense tasks, and the resizing rules they and the meters share.

Each loss takes a batch and returns one value per sample; a task kind
(:mod:`.kinds`) picks its loss, and its meter (:mod:`.meters`) scores a split.

Shapes (B = batch, C = output channels, h×w = prediction size, H×W = ground truth size):

- predictions: float ``[B, C, h, w]`` (the model's raw head output).
- segmentation target: int64 ``[B, H, W]`` class ids, 255 = ignore.
- normal target: float ``[B, 3, H, W]`` (unit vectors at valid pixels).
- depth and regression targets: float ``[B, C, H, W]`` (depth: C = 1).
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

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255
# The normal median comes from per-image angle histograms of this bin width (degrees), the
# statistics behind the record, the intervals and the paired differences alike: it is
# within half a bin (0.05 deg) of the exact median.
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
    _check_pred("segmentation", pred)
    classes = pred.shape[1]
    target, valid = _prepare("segmentation", pred, target, mask, 3, pred.shape[-2:])
    target = target.long()
    valid = valid & (target != IGNORE_INDEX)
    _check_seg_labels("segmentation", target, valid, classes)
    safe = torch.where(valid, target, torch.zeros_like(target))
    ce = F.cross_entropy(pred, safe, reduction="none")
    weights = None
    if class_weights is not None:
        cw = torch.as_tensor(class_weights, device=pred.device, dtype=ce.dtype)
        if cw.shape != (classes,):
            raise ValueError(
                f"segmentation: class_weights has shape {tuple(cw.shape)}, expected ({classes},)"
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


