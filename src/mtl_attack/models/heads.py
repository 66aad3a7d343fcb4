"""DeepLab-v2 ASPP task head (TreeMTL `main/head.py`: ASPPHeadNode / Classification_Module).

The head is the sum of 4 branches with dilation 6, 12, 18, 24; each branch is
conv3x3(feat -> W, padding = dilation) ReLU Dropout(0.5) conv1x1(W -> W) ReLU
Dropout(0.5) conv1x1(W -> C), all convolutions with bias. The output keeps the
feature resolution: [B, feat, h, w] -> [B, C, h, w].

Heads are never shared and, as in TreeMTL, keep torch's default conv init
(kaiming-uniform with a = sqrt(5), i.e. weights and biases U(-1/sqrt(fan_in),
1/sqrt(fan_in))), not the backbone's N(0, 0.01).

Two exact shortcuts keep small inputs fast without changing the function: a
branch whose dilation reaches past the feature map (dilation >= h and >= w, as
12, 18 and 24 on the miniature's 9x9 features) reads only padding with its
off-centre taps, so it runs as the 1x1 convolution of its centre tap; and
dropout draws its mask with `torch.rand` (about 2.5x faster than bernoulli_ on
CPUs; the same Bernoulli(1 - p) keep mask, scaled by 1 / (1 - p)).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

ASPP_RATES: tuple[int, ...] = (6, 12, 18, 24)
DEFAULT_HEAD_WIDTH = 1024
DROPOUT = 0.5


class Dropout(nn.Dropout):
    """Inverted dropout (as nn.Dropout) whose keep mask comes from torch.rand: same distribution,
    a faster draw on CPUs. Identity in eval mode."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        keep = torch.rand_like(x) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def centre_tap_suffices(conv: nn.Conv2d, size: tuple[int, int]) -> bool:
    """True when every off-centre tap of the 3x3 dilated `conv` reads zero padding on an
    h x w input (dilation >= h and >= w): the conv then equals the 1x1 conv of its centre tap."""
    return conv.kernel_size == (3, 3) and all(d >= n for d, n in zip(conv.dilation, size))


class ASPPBranch(nn.Module):
    """One dilated branch: [B, in_ch, h, w] -> [B, out_ch, h, w]."""

    def __init__(self, in_ch: int, out_ch: int, width: int, rate: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 3, padding=rate, dilation=rate)
        self.conv2 = nn.Conv2d(width, width, 1)
        self.conv3 = nn.Conv2d(width, out_ch, 1)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.conv1
        if centre_tap_suffices(c, tuple(x.shape[-2:])):
            x = F.conv2d(x, c.weight[:, :, 1:2, 1:2], c.bias)
        else:
            x = c(x)
        x = self.dropout(self.relu(x))
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
