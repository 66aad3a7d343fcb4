"""Trivial predictors a trained model must beat: majority class, mean normal, mean depth."""
from __future__ import annotations

import torch
from torch import nn


def constant_predictions(train_set, tasks, limit: int = 256) -> dict[str, torch.Tensor]:
    """Per task, the constant output [C] of the trivial predictor fitted on train items.

    Class tasks (int64 targets): logits with the most frequent valid class highest.
    Other tasks: the per-channel mean over valid pixels (normals then re-normalized).
    """
    n = min(limit, len(train_set))
    consts = {}
    for t in tasks:
        vals = []
        for i in range(n):
            item = train_set[i]
            target, mask = item["targets"][t.name], item["masks"][t.name]
            vals.append(target[mask] if target.dtype == torch.int64 else target[:, mask].T)
        v = torch.cat(vals)
        if v.dtype == torch.int64:
            counts = torch.bincount(v, minlength=t.channels)[: t.channels]
            logits = torch.full((t.channels,), -10.0)
            logits[counts.argmax()] = 10.0
            consts[t.name] = logits
        else:
            mean = v.double().mean(0).float()
            if t.name == "normal":
                mean = mean / mean.norm().clamp_min(1e-12)
            consts[t.name] = mean
    return consts


class ConstantModel(nn.Module):
    """A 'model' that outputs the same [C] vector at every pixel of every image (1x1 maps)."""

    def __init__(self, consts: dict[str, torch.Tensor]):
        super().__init__()
        self.names = list(consts)
        for k, v in consts.items():
            self.register_buffer(f"c_{k}", v.clone())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        b = x.shape[0]
        return {k: getattr(self, f"c_{k}").view(1, -1, 1, 1).expand(b, -1, 1, 1) for k in self.names}
