"""Trivial predictors a trained model must beat: each task kind's constant (majority class, mean normal, mean map)."""
from __future__ import annotations

import torch
from torch import nn


def constant_predictions(train_set, tasks, limit: int = 256) -> dict[str, torch.Tensor]:
    """Per task, the constant output [C] of the trivial predictor fitted on train items.

    Each task's kind fits it (:meth:`~mtl_attack.tasks.kinds.TaskKind.trivial`): segmentation
    logits with the most frequent valid class highest, the mean normal re-normalised, the
    per-channel mean of other maps.
    """
    n = min(limit, len(train_set))
    consts = {}
    for t in tasks:
        vals = []
        for i in range(n):
            item = train_set[i]
            target, mask = item["targets"][t.name], item["masks"][t.name]
            vals.append(target[mask] if target.dtype == torch.int64 else target[:, mask].T)
        consts[t.name] = t.task_kind.trivial(torch.cat(vals), t.channels)
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
