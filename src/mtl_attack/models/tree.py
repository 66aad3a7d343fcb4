"""The branched (tree) multi-task model: one backbone block copy per task set per point.

Built from a layout (TreeMTL `main/models.py` Deeplab_ASPP_Layout,
`main/auto_models.py` MTSeqModel): at branching point b every task set owns one
copy of backbone block b, fed by the block of the set at b-1 that contains it;
each task has its own ASPP head on the last block it passes. A shared set is one
module object, computed once per forward.

Every layout starts from the same weights: `init_state` draws ONE copy of each
block and each head from a seed (independent of the layout) and `load_init`
copies block b's state into every copy of block b. So AS and IND built from the
same state compute identical outputs until training moves them apart.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .backbones import (
    NUM_BLOCKS,
    backbone_blocks,
    check_backbone,
    check_width,
    feature_channels,
    init_backbone_block_,
    output_stride,
    paper_module_params,
)
from .heads import DEFAULT_HEAD_WIDTH, ASPPHead, init_head_
from .inputs import CAFFE_BGR_MEAN, NORMALIZATIONS, InputNormalizer  # noqa: F401 (re-exported)

INIT_FORMAT = 1

TaskSet = tuple[int, ...]


def layout_points(layout_or_points: Any, num_tasks: int, num_points: int = NUM_BLOCKS) -> list[list[TaskSet]]:
    """Validated task sets per branching point: each set a sorted tuple of task ids,
    the sets of a point sorted (the same canonical form as `Layout.points`).

    Accepts a `Layout` (anything with `.points`) or the raw nested list, e.g.
    [[{0,1,2}], [{0,1,2}], [{1,2},{0}], [{0},{2},{1}], [{0},{2},{1}]].
    """
    raw = getattr(layout_or_points, "points", layout_or_points)
    try:
        points = [[tuple(sorted(int(t) for t in s)) for s in point] for point in raw]
    except (TypeError, ValueError):
        raise ValueError(
            f"layout must be a Layout or a list (one entry per branching point) of task-id sets, "
            f"got {layout_or_points!r}"
        ) from None
    if len(points) != num_points:
        raise ValueError(f"layout has {len(points)} branching points but the backbone has {num_points} blocks")
    for b, point in enumerate(points):
        if any(len(s) == 0 for s in point):
            raise ValueError(f"layout point {b} has an empty task set: {point}")
        flat = sorted(t for s in point for t in s)
        if flat != list(range(num_tasks)):
            raise ValueError(
                f"layout point {b} {point} must put each task 0..{num_tasks - 1} in exactly one set"
            )
        if b > 0:
            for s in point:
                if not any(set(s) <= set(p) for p in points[b - 1]):
                    raise ValueError(
                        f"task set {set(s)} at point {b} is not inside one set at point {b - 1} "
                        f"(branches may split going deeper, never merge)"
                    )
    # Canonical order of the sets within a point, so equal layouts build identical models.
    return [sorted(point) for point in points]


def set_key(task_set: Sequence[int]) -> str:
    """Module name of a task set's block copy, e.g. (0, 2) -> "t0_2"."""
    return "t" + "_".join(str(t) for t in sorted(task_set))


def _check_tasks(task_names: Sequence[str], task_channels: Sequence[int]) -> None:
    if len(task_names) == 0 or len(task_names) != len(task_channels):
        raise ValueError(
            f"need one output channel count per task: got {len(task_names)} names and {len(task_channels)} counts"
        )
    if len(set(task_names)) != len(task_names) or any(not n or "." in n for n in task_names):
        raise ValueError(f"task names must be unique, non-empty and free of '.', got {list(task_names)}")
    _check_channels(task_channels)


def _check_channels(task_channels: Sequence[int]) -> None:
    if len(task_channels) == 0 or any(isinstance(c, bool) or int(c) != c or c < 1 for c in task_channels):
        raise ValueError(f"task channels must be positive integers, got {list(task_channels)}")


def _part_generator(seed: int, part: str) -> torch.Generator:
    # One independent stream per block / head, so a part's init depends only on (seed, part).
    digest = hashlib.sha256(f"mtl-attack-init/{int(seed)}/{part}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def init_state(
    backbone: str, task_channels: Sequence[int], head_width: int = DEFAULT_HEAD_WIDTH, seed: int = 0,
    width: float = 1.0,
) -> dict[str, Any]:
    """Deterministic initial weights for one copy of each backbone block (at channel `width`)
    and each task head.

    Returns {"format", "backbone", "width", "task_channels", "head_width", "seed",
    "blocks": [state_dict of block b for b in 0..4], "heads": [state_dict of head i]}.
    Independent of any layout: `TreeMTLModel.load_init` copies block b's state into
    every copy of block b. Block b uses its own generator seeded from (seed, backbone, b),
    head i one seeded from (seed, i), so e.g. the backbone init does not depend on the tasks.
    """
    check_backbone(backbone)
    _check_channels(task_channels)
    blocks = []
    for b, block in enumerate(backbone_blocks(backbone, materialize=False, width=width)):
        block = init_backbone_block_(block.to_empty(device="cpu"), _part_generator(seed, f"{backbone}/block{b}"))
        blocks.append(dict(block.state_dict()))
    heads = []
    for i, channels in enumerate(task_channels):
        with torch.device("meta"):
            head = ASPPHead(feature_channels(backbone, width), int(channels), head_width)
        head = init_head_(head.to_empty(device="cpu"), _part_generator(seed, f"head{i}"))
        heads.append(dict(head.state_dict()))
    return {
        "format": INIT_FORMAT,
        "backbone": backbone,
        "width": float(width),
        "task_channels": [int(c) for c in task_channels],
        "head_width": int(head_width),
        "seed": int(seed),
        "blocks": blocks,
        "heads": heads,
    }


class TreeMTLModel(nn.Module):
    """Branched multi-task model: images [B, 3, H, W] RGB in [0, 1] -> {task: [B, C_task, h, w]}.

    h, w are the feature resolution (H/8 for resnet34, H/32 for mobilenetv2, with the
    convolutions' rounding). The model owns its input normalization (`normalize`).
    Weights come from `init` (an `init_state` dict) if given, else from
    `init_state(backbone, task_channels, head_width, seed, width)`. `width` scales the
    backbone's channels (1.0 = the paper's).
    """

    def __init__(
        self,
        backbone: str,
        layout_or_points: Any,
        task_names: Sequence[str],
        task_channels: Sequence[int],
        head_width: int = DEFAULT_HEAD_WIDTH,
        normalize: str = "caffe_bgr",
        *,
        init: Mapping[str, Any] | None = None,
        seed: int = 0,
        width: float = 1.0,
    ):
        super().__init__()
        check_backbone(backbone)
        self.width = check_width(width)
        _check_tasks(task_names, task_channels)
        self.backbone_name = backbone
        self.task_names: tuple[str, ...] = tuple(task_names)
        self.task_channels: tuple[int, ...] = tuple(int(c) for c in task_channels)
        self.head_width = int(head_width)
        self.points: list[list[TaskSet]] = layout_points(layout_or_points, len(self.task_names))
        self.normalizer = InputNormalizer(normalize)

        # Copies are allocated uninitialized (meta templates); load_init fills every value.
        templates = backbone_blocks(backbone, materialize=False, width=self.width)
        self.blocks = nn.ModuleList()
        self._parent: list[dict[str, str]] = []  # point b: set key -> key of its parent at b-1
        for b, point in enumerate(self.points):
            copies = nn.ModuleDict()
            parents: dict[str, str] = {}
            for s in point:
                copies[set_key(s)] = copy.deepcopy(templates[b]).to_empty(device="cpu")
                parents[set_key(s)] = (
                    "" if b == 0 else next(set_key(p) for p in self.points[b - 1] if set(s) <= set(p))
                )
            self.blocks.append(copies)
            self._parent.append(parents)
        # The feature a task's head reads: its set's block at the last point.
        self._final_key = [next(set_key(s) for s in self.points[-1] if i in s) for i in range(len(self.task_names))]

        heads = nn.ModuleDict()
        for name, channels in zip(self.task_names, self.task_channels):
            with torch.device("meta"):
                heads[name] = ASPPHead(feature_channels(backbone, self.width), channels, self.head_width)
        self.heads = heads.to_empty(device="cpu")

        self.load_init(init if init is not None
                       else init_state(backbone, self.task_channels, self.head_width, seed, self.width))

    @property
    def output_stride(self) -> int:
        return output_stride(self.backbone_name)

    def load_init(self, state: Mapping[str, Any]) -> None:
        """Copy an `init_state` dict in: block b's state into every copy of block b, head i's into task i's head."""
        missing = [k for k in ("backbone", "task_channels", "head_width", "blocks", "heads") if k not in state]
        if missing:
            raise ValueError(f"init state lacks {missing}; make it with init_state(...)")
        expected = (self.backbone_name, self.width, list(self.task_channels), self.head_width)
        got = (state["backbone"], float(state.get("width", 1.0)), [int(c) for c in state["task_channels"]],
               int(state["head_width"]))
        if got != expected:
            raise ValueError(
                f"init state is for (backbone, width, task channels, head width) {got} but the model is {expected}; "
                f"make a matching one with init_state"
            )
        for b, copies in enumerate(self.blocks):
            for module in copies.values():
                module.load_state_dict(state["blocks"][b])
        for i, name in enumerate(self.task_names):
            self.heads[name].load_state_dict(state["heads"][i])

    def block_modules(self) -> Iterator[tuple[int, TaskSet, nn.Module]]:
        """(point b, task set, block module) for every block copy, point by point."""
        for b, point in enumerate(self.points):
            for s in point:
                yield b, s, self.blocks[b][set_key(s)]

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected RGB images [B, 3, H, W] in [0, 1], got shape {tuple(x.shape)}")
        feats = {"": self.normalizer(x)}
        for copies, parents in zip(self.blocks, self._parent):
            feats = {key: block(feats[parents[key]]) for key, block in copies.items()}
        return {name: self.heads[name](feats[key]) for name, key in zip(self.task_names, self._final_key)}

    def extra_repr(self) -> str:
        return (f"backbone={self.backbone_name!r}, width={self.width:g}, tasks={list(self.task_names)}, "
                f"points={self.points}")


def param_counts(model: TreeMTLModel) -> dict[str, int]:
    """Parameter counts of a tree model.

    torch / backbone_torch / heads_torch: ordinary torch counts (whole model, block
    copies only, heads only). backbone_paper: the paper's #Params of the block tree
    (conv weights plus one per BatchNorm channel, heads excluded).
    """

    def count(module: nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    return {
        "torch": count(model),
        "backbone_torch": count(model.blocks),
        "heads_torch": count(model.heads),
        "backbone_paper": sum(paper_module_params(m) for _, _, m in model.block_modules()),
    }
