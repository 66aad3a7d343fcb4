"""The five branching blocks of the TreeMTL backbones (Deeplab-ResNet34, MobileNetV2).

A branched multi-task model copies block b once per task set at branching point b,
so each backbone is described here only as its list of 5 blocks. Inputs are the
already normalized images [B, 3, H, W]; the last block outputs
[B, feature_channels(name, width), H/stride, W/stride].

``width`` scales every block's channels (1.0 = the paper's backbone; 0.25 gives
DeepLab-ResNet34 stages of 16/32/64/128 channels). The 5 blocks, their strides and
hence every layout and model index are the same at any width.

No ImageNet weights are used: backbone convolutions get N(0, 0.01) weights and
BatchNorm gets gamma 1, beta 0 (TreeMTL `main/models.py`, `main/auto_models.py`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

BACKBONES: tuple[str, ...] = ("resnet34", "mobilenetv2")
NUM_BLOCKS = 5
_FEATURE_CHANNELS = {"resnet34": 512, "mobilenetv2": 1280}
_OUTPUT_STRIDE = {"resnet34": 8, "mobilenetv2": 32}
CONV_INIT_STD = 0.01


def check_backbone(name: str) -> str:
    """Return `name` if it is a known backbone, else raise a one-line ValueError."""
    if name not in _FEATURE_CHANNELS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return name


def check_width(width: float) -> float:
    """Return `width` as a float if it is a positive number, else raise a one-line ValueError."""
    if isinstance(width, bool) or not isinstance(width, (int, float)) or not width > 0:
        raise ValueError(f"backbone.width must be a positive number (1.0 = the paper's channels), got {width!r}")
    return float(width)


def scaled(channels: int, width: float) -> int:
    """A ResNet stage's channels at `width` (at least 1): 64 at 0.25 -> 16."""
    return max(1, round(channels * check_width(width)))


def make_divisible(value: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: the nearest multiple of `divisor`, never 10% below `value`."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def feature_channels(name: str, width: float = 1.0) -> int:
    """Channels of the last block's output (512 for resnet34, 1280 for mobilenetv2 at width 1)."""
    base = _FEATURE_CHANNELS[check_backbone(name)]
    return scaled(base, width) if name == "resnet34" else make_divisible(base * check_width(width))


def output_stride(name: str) -> int:
    """Input size / feature size of the full backbone (8 for resnet34, 32 for mobilenetv2)."""
    return _OUTPUT_STRIDE[check_backbone(name)]


def min_input_size(name: str) -> int:
    """The smallest input side (pixels) whose features are at least 2 x 2: 16 for resnet34, 64 for
    mobilenetv2. Below it every head sees one feature pixel and the model cannot locate anything."""
    return 2 * output_stride(name)


# ----------------------------------------------------------------------------- ResNet34


class BasicBlock(nn.Module):
    """ResNet basic unit: relu(shortcut(x) + bn2(conv2(relu(bn1(conv1(x)))))).

    Both 3x3 convolutions use padding = dilation, so only `stride` changes the size.
    The shortcut is a strided 1x1 conv + BN when `project` is set (first unit of a
    stage whose shape changes), else the identity.
    """

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1, project: bool = False):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride, padding=dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, 1, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        if project:
            self.shortcut: nn.Module = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride, bias=False), nn.BatchNorm2d(out_ch)
            )
        else:
            self.shortcut = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        # Not in place on x: a parent block's output feeds several children.
        return F.relu(self.shortcut(x) + out)


def _resnet_stage(in_ch: int, out_ch: int, units: int, stride: int, dilation: int) -> nn.Sequential:
    project = stride != 1 or in_ch != out_ch or dilation != 1
    layers = [BasicBlock(in_ch, out_ch, stride, dilation, project)]
    layers += [BasicBlock(out_ch, out_ch, 1, dilation) for _ in range(units - 1)]
    return nn.Sequential(*layers)


def _resnet34_blocks(width: float = 1.0) -> list[nn.Module]:
    c1, c2, c3, c4 = (scaled(c, width) for c in (64, 128, 256, 512))
    stem = nn.Sequential(
        nn.Conv2d(3, c1, 7, 2, padding=3, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(3, 2, padding=1, ceil_mode=True),
    )
    # Deeplab: layer3/layer4 trade stride for dilation, so the output stride stays 8.
    return [
        stem,
        _resnet_stage(c1, c1, 3, stride=1, dilation=1),
        _resnet_stage(c1, c2, 4, stride=2, dilation=1),
        _resnet_stage(c2, c3, 6, stride=1, dilation=2),
        _resnet_stage(c3, c4, 3, stride=1, dilation=4),
    ]


# ----------------------------------------------------------------------------- MobileNetV2

# torchvision `features` index ranges of the 5 blocks: up to the 24-ch stage |
# 32- and 64-ch stages | 96-ch stage | 160-ch stage + conv to 320 | 1x1 conv to 1280.
_MOBILENETV2_SPLITS = ((0, 4), (4, 11), (11, 14), (14, 18), (18, 19))


def _relu6_to_relu(module: nn.Module) -> None:
    # TreeMTL's MobileNetV2 prototxt uses plain ReLU.
    for name, child in module.named_children():
        if isinstance(child, nn.ReLU6):
            setattr(module, name, nn.ReLU(inplace=True))
        else:
            _relu6_to_relu(child)


def _mobilenetv2_blocks(width: float = 1.0) -> list[nn.Module]:
    from torchvision.models import mobilenet_v2
    from torchvision.ops.misc import Conv2dNormActivation

    features = mobilenet_v2(weights=None, width_mult=check_width(width)).features
    if width < 1:
        # torchvision keeps the last conv at 1280 below width 1; here every channel scales.
        last = features[-1][0]
        features[-1] = Conv2dNormActivation(last.in_channels, feature_channels("mobilenetv2", width),
                                            kernel_size=1, activation_layer=nn.ReLU6)
    _relu6_to_relu(features)
    return [nn.Sequential(*features[a:b]) for a, b in _MOBILENETV2_SPLITS]


_BUILDERS = {"resnet34": _resnet34_blocks, "mobilenetv2": _mobilenetv2_blocks}


# ----------------------------------------------------------------------------- public API


def init_backbone_block_(block: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Initialize `block` in place: conv weights N(0, 0.01) (biases 0), BN gamma 1, beta 0,
    running mean 0, running var 1. Draws from `generator` (the global RNG if None)."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, CONV_INIT_STD, generator=generator)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # gamma 1, beta 0 and fresh running statistics
    return block


def backbone_blocks(
    name: str, generator: torch.Generator | None = None, materialize: bool = True, width: float = 1.0
) -> list[nn.Module]:
    """The 5 branching blocks of backbone `name` at channel `width` as fresh modules.

    With `materialize` (default) they are CPU modules initialized by
    `init_backbone_block_` from `generator`; otherwise they stay on the meta
    device (shapes only, for counting parameters without allocating them).
    """
    builder = _BUILDERS[check_backbone(name)]
    with torch.device("meta"):  # skip torch's default init; ours overwrites it anyway
        blocks = builder(check_width(width))
    if not materialize:
        return blocks
    return [init_backbone_block_(b.to_empty(device="cpu"), generator) for b in blocks]


def paper_module_params(module: nn.Module) -> int:
    """The paper's parameter count of `module`: conv weights plus one per BatchNorm channel.

    (The ordinary torch count adds a second BN parameter per channel and any conv bias.)
    """
    total = 0
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            total += m.weight.numel()
        elif isinstance(m, nn.BatchNorm2d):
            total += m.num_features
    return total


def paper_block_params(name: str, width: float = 1.0) -> list[int]:
    """Per-block paper parameter counts of backbone `name` at `width` (5 ints).

    resnet34 gives [9472, 221568, 1115264, 6819072, 13110784] (sum 21,276,160) at width 1.
    """
    return [paper_module_params(b) for b in backbone_blocks(name, materialize=False, width=width)]


def torch_block_params(name: str, width: float = 1.0) -> list[int]:
    """Per-block ordinary torch parameter counts of backbone `name` at `width` (5 ints)."""
    return [sum(p.numel() for p in b.parameters()) for b in backbone_blocks(name, materialize=False, width=width)]
