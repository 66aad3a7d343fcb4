"""From config to a model: resolve the layout, build the tree, load the shared init."""
from __future__ import annotations

import functools
from pathlib import Path

import torch
from omegaconf import DictConfig

from ..cache import build_once, content_key
from .backbones import feature_channels, paper_block_params, torch_block_params
from .heads import ASPPHead
from .layout import (Layout, all_shared, independent, layout_by_index, paper_param_count, parse_layout,
                     sample_layouts)
from .tree import TreeMTLModel, init_state

# Bump when the init, the module structure or the training arithmetic changes, so cached inits
# and models are not reused (2: loss targets sampled at the output cells' centres, fused Adam,
# exact 1x1 shortcut of far-dilated head branches, dropout masks from torch.rand; 3: model keys
# hold the declared tasks and every training setting, not the rendered test-set size).
MODEL_VERSION = 3


def _value(x):
    return x.value if hasattr(x, "value") else x


def resolve_layout(cfg: DictConfig, num_tasks: int) -> Layout:
    """The layout named by `layout.spec`, `layout.index` or `layout.preset` (in that precedence)."""
    if cfg.spec is not None and cfg.index is not None:
        raise ValueError("set either layout.spec or layout.index, not both")
    if cfg.spec is not None:
        spec = cfg.spec
        if not isinstance(spec, str):
            from omegaconf import OmegaConf

            spec = OmegaConf.to_container(spec)
        return parse_layout(spec, num_tasks)
    if cfg.index is not None:
        return layout_by_index(num_tasks, int(cfg.index))
    preset = _value(cfg.preset)
    if preset == "all_shared":
        return all_shared(num_tasks)
    if preset == "independent":
        return independent(num_tasks)
    if preset == "random":
        return sample_layouts(num_tasks, 1, seed=int(cfg.seed))[0]
    raise ValueError(f"unknown layout.preset {preset!r}; use all_shared, independent or random")


def resolve_surrogate(text, num_tasks: int) -> Layout:
    """The black-box surrogate's layout from `transfer.surrogate`: all_shared/AS, independent/IND,
    a TreeMTL index (41 or "#41") or a layout spec "[[{0,1,2}], ...]"."""
    name = str(text).strip()
    if name.lower() in ("all_shared", "as"):
        return all_shared(num_tasks)
    if name.lower() in ("independent", "ind"):
        return independent(num_tasks)
    digits = name[1:] if name.startswith("#") else name
    if digits.isdigit():
        return layout_by_index(num_tasks, int(digits))
    if not name.startswith("["):
        raise ValueError(f"transfer.surrogate={name!r}: give all_shared, independent, a layout index such as 41, "
                         "or a layout spec like '[[{0,1,2}], ...]'")
    return parse_layout(name, num_tasks)


def init_path(cache_dir: Path, backbone: str, channels: list[int], head_width: int, seed: int,
              width: float = 1.0) -> Path:
    """The one saved initialization shared by every layout of this backbone (at `width`) and task set."""
    key = {"backbone": backbone, "channels": list(channels), "head_width": head_width, "seed": seed, "v": MODEL_VERSION}
    if float(width) != 1.0:
        key["width"] = float(width)  # the paper's width keeps its old key
    key = content_key(key)
    return Path(cache_dir) / "init" / f"{backbone}-{key}.pt"


def build_model(backbone: str, layout: Layout, tasks, head_width: int, seed: int, cache_dir: Path,
                width: float = 1.0) -> TreeMTLModel:
    """A TreeMTL model for `tasks` with the backbone's saved initial weights (made on first use);
    `width` scales the backbone's channels (1.0 = the paper's)."""
    names = [t.name for t in tasks]
    channels = [t.channels for t in tasks]
    path = init_path(cache_dir, backbone, channels, head_width, seed, width)
    path.parent.mkdir(parents=True, exist_ok=True)
    build_once(path, lambda tmp: torch.save(init_state(backbone, channels, head_width, seed, width), tmp))
    init = torch.load(path, map_location="cpu", weights_only=True)
    return TreeMTLModel(backbone, layout, names, channels, head_width=head_width, init=init, width=width)


@functools.lru_cache(maxsize=None)
def _block_counts(backbone: str, width: float) -> tuple[list[int], list[int]]:
    return torch_block_params(backbone, width), paper_block_params(backbone, width)


@functools.lru_cache(maxsize=None)
def _head_params(backbone: str, width: float, channels: int, head_width: int) -> int:
    with torch.device("meta"):  # count without allocating
        return sum(p.numel() for p in ASPPHead(feature_channels(backbone, width), channels, head_width).parameters())


def layout_size(layout: Layout, backbone: str, task_channels: list[int], head_width: int,
                width: float = 1.0) -> dict:
    """Sizes of a layout's model (backbone at channel `width`) without building it.

    params_torch: ordinary torch count of the whole model (block copies and heads);
    params_backbone_torch: the block copies only; params_paper: the paper's #Params
    (block tree only, conv weights plus one per BN channel; SPEC "Models"); params_paper_M in millions.
    """
    torch_blocks, paper_blocks = _block_counts(backbone, float(width))
    backbone_torch = sum(n * p for n, p in zip(layout.sets_per_point(), torch_blocks))
    heads = sum(_head_params(backbone, float(width), int(c), int(head_width)) for c in task_channels)
    paper = paper_param_count(layout, paper_blocks)
    return {
        "params_torch": backbone_torch + heads,
        "params_backbone_torch": backbone_torch,
        "params_heads_torch": heads,
        "params_paper": paper,
        "params_paper_M": round(paper / 1e6, 2),
    }
