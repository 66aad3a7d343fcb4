"""Harder per-task attack losses: what an attack maximises instead of a task's own loss.

The task's metric and the reported ARP never change; only the attack's target does
(docs/attack_losses.md). Every loss takes ``(pred, target, mask, progress)`` and returns
a per-sample ``[B]`` mean over valid pixels, with the target handling of the task's
plain loss (:mod:`mtl_attack.tasks`: targets resized nearest to the prediction, 255
ignored for labels, no valid pixel gives 0). ``progress`` = (t - 1) / T at step t of T.

- segpgd (Gu et al., "SegPGD: An Effective and Efficient Adversarial Attack for
  Evaluating and Boosting Segmentation Robustness", ECCV 2022, Eq. 4-5): cross-entropy
  of correctly classified pixels weighted 1 - lam, of wrongly classified ones lam, with
  lam = (t - 1) / (2T): early steps push pixels still correct, later ones all.
- jsd (one of the four losses of SEA, Croce et al., "Towards Reliable Evaluation and
  Fast Training of Robust Semantic Segmentation Models", ECCV 2024): Jensen-Shannon
  divergence between softmax(pred) and the one-hot label, bounded by log 2 per pixel,
  so pixels already wrong saturate instead of dominating as in cross-entropy.
- clipped (normals, depth): the per-pixel error capped at the widest threshold of the
  task's metrics (30 degrees as 1 - cos; depth relative error 1.25^3 - 1): pixels
  already beyond it give no gradient, so the budget goes to pixels still counted as
  accurate (the regression analogue of SegPGD's focus on correct pixels).
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

from ..tasks import (DEPTH_DELTA_THRESHOLDS, DEPTH_PRED_FLOOR, IGNORE_INDEX, NORMAL_THRESHOLDS_DEG, _check_pred,
                     _check_seg_labels, _prepare, _sample_mean, _unit, l1_loss, normal_loss, segmentation_loss)

__all__ = ["SEG_LOSSES", "REGRESSION_LOSSES", "REGRESSION_KINDS", "NORMAL_CAP", "DEPTH_CAP", "segpgd_loss",
           "jsd_loss", "clipped_normal_loss", "clipped_depth_loss", "attack_loss"]

SEG_LOSSES = ("ce", "segpgd", "jsd")
REGRESSION_LOSSES = ("plain", "clipped")
# Meter kinds with a clipped loss; other regression tasks (kind "loss") keep their own.
REGRESSION_KINDS = ("normal", "depth", "depth_err")
NORMAL_CAP = 1.0 - math.cos(math.radians(max(NORMAL_THRESHOLDS_DEG)))
DEPTH_CAP = DEPTH_DELTA_THRESHOLDS[-1] - 1.0

LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None", float], torch.Tensor]


def _labels(logits: torch.Tensor, labels: torch.Tensor, mask):
    _check_pred("segmentation", logits)
    target, valid = _prepare("segmentation", logits, labels, mask, 3, logits.shape[-2:])
    target = target.long()
    valid = valid & (target != IGNORE_INDEX)
    _check_seg_labels("segmentation", target, valid, logits.shape[1])
    return torch.where(valid, target, torch.zeros_like(target)), valid


def segpgd_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None,
                progress: float = 0.0, class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """SegPGD's loss ``[B]``: (1 - lam) CE over correct pixels + lam CE over wrong ones, each
    summed and divided by the valid pixels, lam = progress / 2 (logits ``[B,C,h,w]``,
    labels int ``[B,H,W]``). With class_weights ``[C]`` each pixel's CE is weighted as in
    the task's loss (normalised by the valid pixels' weights)."""
    safe, valid = _labels(logits, labels, mask)
    ce = F.cross_entropy(logits, safe, reduction="none")
    correct = (logits.detach().argmax(1) == safe)
    lam = float(progress) / 2.0
    weight = torch.where(correct, torch.full_like(ce, 1.0 - lam), torch.full_like(ce, lam))
    pixel = None
    if class_weights is not None:
        pixel = torch.as_tensor(class_weights, device=logits.device, dtype=ce.dtype)[safe]
    # _sample_mean divides by the (class-weighted) valid pixels: sum(w_pixel * part * ce) / sum(w_pixel).
    return _sample_mean(weight * ce, valid, pixel)


def jsd_loss(logits: torch.Tensor, labels: torch.Tensor, mask: torch.Tensor | None = None,
             progress: float = 0.0) -> torch.Tensor:
    """Mean over valid pixels of JS(softmax(logits) || one-hot(label)) in nats, ``[B]``, in [0, log 2]."""
    safe, valid = _labels(logits, labels, mask)
    p = logits.float().softmax(1)
    q = F.one_hot(safe, logits.shape[1]).permute(0, 3, 1, 2).to(p.dtype)
    m = 0.5 * (p + q)
    # p log(p / m) with 0 log 0 = 0; m >= p / 2, so the ratio is at most 2 and never 0/0 where p > 0.
    kl_p = torch.where(p > 0, p * (torch.log(p.clamp(min=1e-30)) - torch.log(m.clamp(min=1e-30))),
                       torch.zeros_like(p)).sum(1)
    # q is one-hot: KL(q || m) = -log m_y.
    kl_q = -torch.log(m.gather(1, safe.unsqueeze(1)).squeeze(1).clamp(min=1e-30))
    return _sample_mean(0.5 * (kl_p + kl_q), valid)


def clipped_normal_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                        progress: float = 0.0) -> torch.Tensor:
    """Mean over valid pixels of min(1 - cos, 1 - cos 30 deg), ``[B]`` (pred ``[B,3,h,w]``, target ``[B,3,H,W]``)."""
    _check_pred("normal", pred, 3)
    target, valid = _prepare("normal", pred, target, mask, 4, pred.shape[-2:], 3)
    target = torch.where(valid.unsqueeze(1), target.to(pred.dtype), torch.zeros_like(pred))
    err = 1.0 - (_unit(pred) * _unit(target)).sum(1)
    return _sample_mean(err.clamp(max=NORMAL_CAP), valid)


def clipped_depth_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                       progress: float = 0.0) -> torch.Tensor:
    """Mean over valid pixels (target > 0) of min(|p - y| / y, 1.25^3 - 1), ``[B]`` (pred, target ``[B,1,h|H,w|W]``)."""
    _check_pred("depth", pred, 1)
    target, valid = _prepare("depth", pred, target, mask, 4, pred.shape[-2:], 1)
    target = target.to(pred.dtype)
    valid = valid & (target[:, 0] > 0)
    safe = torch.where(valid.unsqueeze(1), target, torch.ones_like(target))
    rel = ((pred - safe).abs() / safe.clamp(min=DEPTH_PRED_FLOOR))[:, 0]
    return _sample_mean(rel.clamp(max=DEPTH_CAP), valid)


def _plain(fn) -> LossFn:
    def loss(pred, target, mask=None, progress=0.0):
        return fn(pred, target, mask)

    return loss


def attack_loss(kind: str, name: str, class_weights: torch.Tensor | None = None) -> LossFn:
    """The attack loss ``name`` for a task of meter kind ``kind`` (see the module docstring):
    ``fn(pred, target, mask, progress) -> [B]``. ce / plain give the task's own loss."""
    if kind == "segmentation":
        if name not in SEG_LOSSES:
            raise ValueError(f"unknown segmentation attack loss {name!r}; choose from {', '.join(SEG_LOSSES)}")
        if name == "ce":
            return lambda pred, target, mask=None, progress=0.0: segmentation_loss(pred, target, mask, class_weights)
        if name == "segpgd":
            return lambda pred, target, mask=None, progress=0.0: segpgd_loss(pred, target, mask, progress,
                                                                              class_weights)
        return jsd_loss
    if name not in REGRESSION_LOSSES:
        raise ValueError(f"unknown regression attack loss {name!r}; choose from {', '.join(REGRESSION_LOSSES)}")
    if kind not in REGRESSION_KINDS:
        # Tasks scored by their own loss (kind "loss") keep it: TaskLoss.harder never asks.
        raise ValueError(f"attack losses exist for task kinds segmentation, {', '.join(REGRESSION_KINDS)}, "
                         f"not {kind!r}")
    if name == "plain":
        return _plain(normal_loss if kind == "normal" else l1_loss)
    return clipped_normal_loss if kind == "normal" else clipped_depth_loss
