"""A multi-task network built from timm: one encoder shared by a decoder per task.

Hard parameter sharing, the shape LibMTL's NYUv2 example uses (a shared encoder,
one head per task). The encoder is any timm model that supports features_only;
the decoders fuse its last feature maps (each projected to `decoder_width`
channels, upsampled to the finest and summed) and predict at that resolution
(stride 4 for resnet18 with the default out_indices). Outputs are named as in
LibMTL (segmentation, depth, normal); the runner maps them to the dataset's
task names with `model.outputs`. timm encoders expect ImageNet-normalized RGB:
run it with model.input=imagenet.

    pip install -e '.[examples]'
    python run.py -m +experiment=timm_hps
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TimmHardSharing"]


class _Decoder(nn.Module):
    """Feature maps [B, C_i, H/s_i, W/s_i] -> one task's prediction [B, out, H/s_0, W/s_0]."""

    def __init__(self, in_channels: list[int], width: int, out: int):
        super().__init__()
        self.project = nn.ModuleList(nn.Conv2d(c, width, 1) for c in in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                                  nn.ReLU(inplace=True), nn.Conv2d(width, out, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        size = feats[0].shape[-2:]
        fused = sum(F.interpolate(p(f), size=size, mode="bilinear", align_corners=False)
                    for p, f in zip(self.project, feats))
        return self.fuse(fused)


class TimmHardSharing(nn.Module):
    """timm encoder `encoder` (random init unless `pretrained`) shared by three decoders.

    Input: [B, 3, H, W] ImageNet-normalized RGB. Output: {"segmentation": [B, seg_classes, h, w],
    "depth": [B, 1, h, w], "normal": [B, 3, h, w]} with (h, w) the finest used feature map's size.
    """

    def __init__(self, encoder: str = "resnet18", seg_classes: int = 13, decoder_width: int = 64,
                 out_indices: tuple[int, ...] = (1, 2, 3), pretrained: bool = False):
        super().__init__()
        import timm

        self.encoder = timm.create_model(encoder, pretrained=pretrained, features_only=True,
                                         out_indices=tuple(out_indices))
        channels = self.encoder.feature_info.channels()
        self.decoders = nn.ModuleDict({name: _Decoder(channels, decoder_width, out) for name, out in
                                       (("segmentation", seg_classes), ("depth", 1), ("normal", 3))})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        feats = self.encoder(x)
        return {name: decoder(feats) for name, decoder in self.decoders.items()}
