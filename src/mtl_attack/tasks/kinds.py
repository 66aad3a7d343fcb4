"""Task kinds: what a dataset's task is, declared as data.

A dataset declares its tasks by name and kind (`dataset.tasks: {name: {kind: ..., options}}`).
A kind owns everything the toolkit needs of a task: its loss, its metric meter and the
metrics' directions, its trivial predictor, how its target is mirrored, resized and padded.
The loader, training, attacks, records and reports work from :class:`Task` objects and
never name a task.

Kinds and their options (every option may be left out unless marked required):

- ``segmentation``: ``classes`` (required, 1-255); ``ignore`` (the stored label of pixels
  without one, for the folder format; default 255); ``class_weights`` (a list of C positive
  floats, or ``stored`` for the weights a format keeps with its data); ``metrics``: ``full``
  (mIoU and pixel accuracy) or ``loss``.
- ``normal``: 3 channels; ``metrics``: ``full`` (angle mean, median, within 11.25/22.5/30
  degrees) or ``loss``; ``negate_x_on_flip`` (mirroring negates the x component; default true).
- ``depth``: 1 channel; ``metrics``: ``full`` (abs and rel error, delta thresholds), ``errors``
  (abs and rel error, LibMTL's) or ``loss``; ``invalid`` and ``scale`` (folder format: the
  stored value of missing depth, default 0, and the stored units per unit, default 1).
- ``regression``: an L1-regressed map scored by its loss (edges, keypoints, saliency);
  ``channels`` (default 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch

from .losses import IGNORE_INDEX, l1_loss, normal_loss, segmentation_loss
from .meters import (DEPTH_ERROR_METRICS, DEPTH_METRICS, LOSS_METRICS, NORMAL_METRICS, SEG_METRICS, DepthErrorMeter,
                     DepthMeter, LossMeter, Meter, NormalMeter, SegmentationMeter)

__all__ = ["Task", "TaskKind", "TASK_KINDS", "build_task", "build_tasks", "check_task_spec", "nearest_resize",
           "segmentation_task", "normal_task", "depth_task", "l1_task", "task_options"]


@dataclass(frozen=True, eq=False)
class Task:
    """One dense prediction task.

    name: task key (e.g. ``"normal"``); kind: its :data:`TASK_KINDS` key; channels: head output
    channels; loss(pred, target, mask) -> per-sample loss ``[B]``; metrics: read-only ordered
    mapping metric name -> higher_is_better; meter() -> a fresh :class:`Meter` whose ``compute()``
    returns exactly ``metrics``' keys; options: the declared options (plain values).
    """

    name: str
    channels: int
    loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]
    metrics: Mapping[str, bool]
    meter: Callable[[], Meter]
    kind: str = "regression"
    options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def task_kind(self) -> "TaskKind":
        return TASK_KINDS[self.kind]


# ----------------------------------------------------------------------------- geometry (pure)


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


# ----------------------------------------------------------------------------- kinds


class TaskKind:
    """A kind of task (the base is a plain L1 regression).

    Targets are float ``[C, H, W]`` (labels: int64 ``[H, W]``); ``fill`` is the target's value
    where padding adds pixels. Every target is resized with nearest (:func:`nearest_resize`):
    labels cannot be interpolated, and the authors resize normals and depth the same way.
    """

    name = "regression"
    label = False  # targets are integer class ids
    fill = 0
    options: tuple[str, ...] = ("channels", "metrics")
    metric_sets: tuple[str, ...] = ("loss",)

    def channels(self, options: Mapping[str, Any]) -> int:
        return int(options.get("channels") or 1)

    def resize(self, target: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        return nearest_resize(target, size)

    def mirror(self, target: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
        """A copy mirrored left-right."""
        return target.flip(-1)

    def trivial(self, values: torch.Tensor, channels: int) -> torch.Tensor:
        """The trivial predictor's constant output ``[C]`` from the valid train target values
        (``[N, C]`` floats, or ``[N]`` class ids): here their per-channel mean."""
        return values.double().mean(0).float()

    def build(self, name: str, options: Mapping[str, Any], class_weights=None) -> Task:
        return _loss_task(name, self.channels(options), l1_loss, self.name, options)


class SegmentationKind(TaskKind):
    name = "segmentation"
    label = True
    fill = IGNORE_INDEX
    options = ("classes", "ignore", "class_weights", "metrics")
    metric_sets = ("full", "loss")

    def channels(self, options: Mapping[str, Any]) -> int:
        return int(options["classes"])

    def trivial(self, values: torch.Tensor, channels: int) -> torch.Tensor:
        """Logits with the most frequent class highest."""
        logits = torch.full((channels,), -10.0)
        logits[torch.bincount(values, minlength=channels)[:channels].argmax()] = 10.0
        return logits

    def build(self, name: str, options: Mapping[str, Any], class_weights=None) -> Task:
        return segmentation_task(int(options["classes"]), class_weights, name,
                                 loss_metric=options.get("metrics") == "loss", options=options)


class NormalKind(TaskKind):
    name = "normal"
    options = ("metrics", "negate_x_on_flip")
    metric_sets = ("full", "loss")

    def channels(self, options: Mapping[str, Any]) -> int:
        return 3

    def mirror(self, target: torch.Tensor, options: Mapping[str, Any]) -> torch.Tensor:
        """Mirrored, with the x component negated unless ``negate_x_on_flip`` is false (the
        authors' NYUv2 loader keeps it; their Taskonomy loader negates it)."""
        out = target.flip(-1)
        if options.get("negate_x_on_flip", True) is not False:
            out[0].neg_()
        return out

    def trivial(self, values: torch.Tensor, channels: int) -> torch.Tensor:
        """The mean normal, renormalised to unit length."""
        mean = values.double().mean(0).float()
        return mean / mean.norm().clamp_min(1e-12)

    def build(self, name: str, options: Mapping[str, Any], class_weights=None) -> Task:
        return normal_task(name, loss_metric=options.get("metrics") == "loss", options=options)


class DepthKind(TaskKind):
    name = "depth"
    options = ("metrics", "invalid", "scale")
    metric_sets = ("full", "errors", "loss")

    def channels(self, options: Mapping[str, Any]) -> int:
        return 1

    def build(self, name: str, options: Mapping[str, Any], class_weights=None) -> Task:
        metrics = options.get("metrics") or "full"
        return depth_task(name, loss_metric=metrics == "loss", deltas=metrics == "full", options=options)


TASK_KINDS: dict[str, TaskKind] = {k.name: k for k in (SegmentationKind(), NormalKind(), DepthKind(), TaskKind())}


# ----------------------------------------------------------------------------- building


def task_options(spec: Any) -> dict[str, Any]:
    """A declared task spec (a mapping or the schema's TaskSpec) as plain options without unset ones:
    {"kind": str, option: value, ...}."""
    from omegaconf import DictConfig, OmegaConf

    if isinstance(spec, DictConfig):
        spec = OmegaConf.to_container(spec, resolve=True, enum_to_str=True)
    out = {k: getattr(v, "value", v) for k, v in dict(spec).items() if v is not None}
    return out


def check_task_spec(name: str, spec: Any, key: str = "dataset.tasks") -> dict[str, Any]:
    """The options of task `name`, checked: a known kind, only its options, sane values.
    Raises ValueError in one line naming `key`.<name>.<option>."""
    options = task_options(spec)
    if not name or "." in name or "/" in name:
        raise ValueError(f"{key}: task name {name!r} must be non-empty and free of '.' and '/'")
    kind = options.get("kind")
    if kind not in TASK_KINDS:
        raise ValueError(f"{key}.{name}.kind={kind} is not a task kind; kinds: {', '.join(TASK_KINDS)}")
    tk = TASK_KINDS[kind]
    for opt in options:
        if opt != "kind" and opt not in tk.options:
            raise ValueError(f"{key}.{name}.{opt} is not an option of {kind} tasks; their options: "
                             f"{', '.join(tk.options)}")
    metrics = options.get("metrics", tk.metric_sets[0])
    if metrics not in tk.metric_sets:
        raise ValueError(f"{key}.{name}.metrics={metrics} is not one of {', '.join(tk.metric_sets)} for {kind} tasks")
    if kind == "segmentation":
        classes = options.get("classes")
        if isinstance(classes, bool) or not isinstance(classes, int) or not 1 <= classes <= 255:
            raise ValueError(f"{key}.{name}.classes={classes} must be a whole number of classes from 1 to 255")
        weights = options.get("class_weights")
        if weights is not None and weights != "stored":
            _as_class_weights(weights, classes, f"{key}.{name}.class_weights")
    if kind == "regression":
        channels = options.get("channels", 1)
        if isinstance(channels, bool) or not isinstance(channels, int) or channels < 1:
            raise ValueError(f"{key}.{name}.channels={channels} must be a whole number >= 1")
    if kind == "depth" and options.get("scale") is not None and not float(options["scale"]) > 0:
        raise ValueError(f"{key}.{name}.scale={options['scale']} must be > 0 (stored units per unit)")
    return options


def build_task(name: str, spec: Any, stored_class_weights=None) -> Task:
    """The :class:`Task` of a declared spec; `stored_class_weights` ([C] floats or None) serve
    a segmentation task that declares ``class_weights: stored``."""
    options = check_task_spec(name, spec)
    weights = options.get("class_weights")
    if weights == "stored":
        weights = stored_class_weights
    return TASK_KINDS[options["kind"]].build(name, options, weights)


def build_tasks(specs: Mapping[str, Any], stored_class_weights=None) -> list[Task]:
    """Tasks of declared specs (name -> spec), in the mapping's order."""
    return [build_task(name, spec, stored_class_weights) for name, spec in specs.items()]


# ----------------------------------------------------------------------------- factories


def _as_class_weights(weights, classes: int, what: str = "seg_class_weights") -> torch.Tensor | None:
    if weights is None:
        return None
    w = torch.as_tensor(weights, dtype=torch.float32).detach().cpu().flatten().clone()
    if w.numel() != classes:
        raise ValueError(f"{what} has {w.numel()} values, the segmentation task has {classes} classes")
    if not bool(torch.isfinite(w).all()) or bool((w <= 0).any()):
        raise ValueError(f"{what} must be finite and > 0")
    return w


def _seg_loss_fn(class_weights: torch.Tensor | None):
    def loss(pred, target, mask=None):
        return segmentation_loss(pred, target, mask, class_weights)

    loss.class_weights = class_weights  # an attack's harder loss of this task keeps the weights
    return loss


def _task(name: str, channels: int, loss, metrics: Mapping[str, bool], meter: Callable[[], Meter], kind: str,
          options: Mapping[str, Any] | None) -> Task:
    return Task(name=name, channels=channels, loss=loss, metrics=MappingProxyType(dict(metrics)), meter=meter,
                kind=kind, options=MappingProxyType(dict(options or {"kind": kind})))


def _loss_task(name: str, channels: int, loss, kind: str, options: Mapping[str, Any] | None) -> Task:
    """A task whose only metric is its own loss over the split (lower is better)."""
    return _task(name, channels, loss, LOSS_METRICS, lambda: LossMeter(loss), kind, options)


def segmentation_task(classes: int, class_weights: Sequence[float] | torch.Tensor | None = None,
                      name: str = "segment_semantic", loss_metric: bool = False,
                      options: Mapping[str, Any] | None = None) -> Task:
    """Semantic segmentation over `classes` classes (255 ignored): cross-entropy, optionally class-weighted.

    Metrics: mIoU and pixel accuracy in % (higher is better), or with `loss_metric` the loss itself.
    """
    loss = _seg_loss_fn(_as_class_weights(class_weights, classes))
    options = options or {"kind": "segmentation", "classes": classes}
    if loss_metric:
        return _loss_task(name, classes, loss, "segmentation", options)
    return _task(name, classes, loss, SEG_METRICS, lambda: SegmentationMeter(classes), "segmentation", options)


def normal_task(name: str = "normal", loss_metric: bool = False, options: Mapping[str, Any] | None = None) -> Task:
    """Surface normals (3 channels): 1 - cos loss; angle metrics in degrees, or the loss itself."""
    if loss_metric:
        return _loss_task(name, 3, normal_loss, "normal", options)
    return _task(name, 3, normal_loss, NORMAL_METRICS, NormalMeter, "normal", options)


def depth_task(name: str = "depth_zbuffer", loss_metric: bool = False, deltas: bool = True,
               options: Mapping[str, Any] | None = None) -> Task:
    """Depth (1 channel, metres): L1 loss over valid pixels; abs/rel error (lower is better) and, with
    `deltas`, the delta thresholds in % (higher is better); or with `loss_metric` the loss itself."""
    if loss_metric:
        return _loss_task(name, 1, l1_loss, "depth", options)
    if not deltas:
        return _task(name, 1, l1_loss, DEPTH_ERROR_METRICS, DepthErrorMeter, "depth", options)
    return _task(name, 1, l1_loss, DEPTH_METRICS, DepthMeter, "depth", options)


def l1_task(name: str, channels: int = 1, options: Mapping[str, Any] | None = None) -> Task:
    """A regression map (e.g. keypoints2d, edge_texture) with L1 loss, scored by its loss."""
    return _loss_task(name, channels, l1_loss, "regression", options or {"kind": "regression", "channels": channels})
