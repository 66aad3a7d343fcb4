"""A short human-readable summary of a split (for `mtl-attack data`)."""
from __future__ import annotations

import torch


def describe_split(name: str, split, limit: int = 8) -> str:
    """Count, image shape and per-task target statistics over the first `limit` items.

    Reading the items also checks their files, so a broken dataset fails here
    with the loader's one-line error.
    """
    n = min(limit, len(split))
    lines = [f"  {name}: {len(split)} images"]
    if n == 0:
        return lines[0]
    items = [split[i] for i in range(n)]
    img = items[0]["image"]
    lo = min(float(it["image"].min()) for it in items)
    hi = max(float(it["image"].max()) for it in items)
    lines[0] += f", image {tuple(img.shape)} in [{lo:.2f}, {hi:.2f}] (first {n} checked)"
    for task in items[0]["targets"]:
        target = items[0]["targets"][task]
        valid = torch.stack([it["masks"][task] for it in items]).float().mean().item()
        desc = f"    {task}: {tuple(target.shape)} {str(target.dtype).replace('torch.', '')}, valid {valid:.1%}"
        if target.dtype == torch.int64:
            ids = torch.cat([it["targets"][task][it["masks"][task]] for it in items]).unique()
            desc += f", {len(ids)} classes seen"
        else:
            vals = torch.cat([it["targets"][task][:, it["masks"][task]].flatten() for it in items])
            if vals.numel():
                desc += f", range [{vals.min().item():.3f}, {vals.max().item():.3f}]"
        lines.append(desc)
    return "\n".join(lines)
