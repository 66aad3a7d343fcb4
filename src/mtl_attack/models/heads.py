"""DeepLab-v2 ASPP task head (TreeMTL `main/head.py`: ASPPHeadNode / Classification_Module).

The head is the sum of 4 branches with dilation 6, 12, 18, 24; each branch is
conv3x3(feat -> W, padding = dilation) ReLU Dropout(0.5) conv1x1(W -> W) ReLU
Dropout(0.5) conv1x1(W -> C), all convolutions with bias. The output keeps the
feature resolution: [B, feat, h, w] -> [B, C, h, w].

Heads are never shared and, as in TreeMTL, keep torch's default conv init
(kaiming-uniform with a = sqrt(5), i.e. weights and biases U(-1/sqrt(fan_in),
1/sqrt(fan_in))), not the backbone's N(0, 0.01).
"""

from __future__ import annotations

import math

import torch
from torch import nn

ASPP_RATES: tuple[int, ...] = (6, 12, 18, 24)
DEFAULT_HEAD_WIDTH = 1024
DROPOUT = 0.5


class ASPPBranch(nn.Module):
    """One dilated branch: [B, in_ch, h, w] -> [B, out_ch, h, w]."""

    def __init__(self, in_ch: int, out_ch: int, width: int, rate: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=rate, dilation=rate)
        self.conv2 = nn.Conv2d(width, width, 1)
        self.conv3 = nn.Conv2d(width, out_ch, 1)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.relu(self.conv1(x)))
        x = self.dropout(self.relu(self.conv2(x)))
        return self.conv3(x)


class ASPPHead(nn.Module):
    """Sum of the 4 ASPP branches: [B, in_ch, h, w] -> [B, out_ch, h, w]."""

    def __init__(self, in_ch: int, out_ch: int, width: int = DEFAULT_HEAD_WIDTH):
        super().__init__()
        for name, value in (("feature channels", in_ch), ("output channels", out_ch), ("head width", width)):
            if int(value) != value or value < 1:
                raise ValueError(f"ASPP head {name} must be a positive integer, got {value!r}")
        self.in_channels, self.out_channels, self.width = int(in_ch), int(out_ch), int(width)
        self.branches = nn.ModuleList(ASPPBranch(in_ch, out_ch, width, r) for r in ASPP_RATES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out


def init_head_(head: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Initialize every conv of `head` in place like torch's default: weight and bias
    U(-b, b) with b = 1/sqrt(fan_in), drawn from `generator` (global RNG if None)."""
    with torch.no_grad():
        for m in head.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                bound = 1.0 / math.sqrt(fan_in)
                m.weight.uniform_(-bound, bound, generator=generator)
                if m.bias is not None:
                    m.bias.uniform_(-bound, bound, generator=generator)
    return head


def build_head(
    in_ch: int, out_ch: int, width: int = DEFAULT_HEAD_WIDTH, generator: torch.Generator | None = None
) -> ASPPHead:
    """A fresh CPU ASPP head initialized by `init_head_` from `generator`."""
    with torch.device("meta"):  # skip torch's own init; init_head_ draws every value
        head = ASPPHead(in_ch, out_ch, width)
    return init_head_(head.to_empty(device="cpu"), generator)
