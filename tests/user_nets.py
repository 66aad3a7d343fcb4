"""Multi-task networks written as a user would write them, for tests of `model=custom`.

Importable as `user_nets` when tests/ is on the path (pytest; subprocesses set PYTHONPATH).
"""
import torch
from torch import nn


class TinyMultiTask(nn.Module):
    """One strided conv encoder shared by three 1x1 heads; outputs keyed seg/normal/depth
    (not the dataset's task names, so the runner's `model.outputs` mapping is needed)."""

    def __init__(self, width: int = 8, seg_classes: int = 40, normal_channels: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.seg = nn.Conv2d(width, seg_classes, 1)
        self.normal = nn.Conv2d(width, normal_channels, 1)
        self.depth = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> dict:
        f = self.encoder(x)
        return {"seg": self.seg(f), "normal": self.normal(f), "depth": self.depth(f)}


class Normalized(nn.Module):
    """`net` behind a hand-written ImageNet normalization (the reference for model.input=imagenet)."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.net((x - self.mean) / self.std)


class TwoTask(nn.Module):
    """A segmentation + depth network (outputs keyed seg/depth), as most published two-task models are."""

    def __init__(self, width: int = 8, classes: int = 3):
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, width, 3, stride=2, padding=1), nn.BatchNorm2d(width), nn.ReLU())
        self.seg = nn.Conv2d(width, classes, 1)
        self.depth = nn.Conv2d(width, 1, 1)

    def forward(self, x: torch.Tensor) -> dict:
        f = self.encoder(x)
        return {"seg": self.seg(f), "depth": self.depth(f)}
