"""Input conventions of networks: from the attacks' RGB images in [0, 1] to what a network expects.

Attacks always work on RGB images in [0, 1] (eps is in those units); a network
trained on another convention gets its input converted by :class:`InputNormalizer`,
inside the model, so the gradient flows through the conversion.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["NORMALIZATIONS", "CAFFE_BGR_MEAN", "IMAGENET_MEAN", "IMAGENET_STD", "InputNormalizer"]

# unit: RGB in [0, 1] as is; imagenet: (x - mean) / std per RGB channel (torchvision, timm, smp);
# caffe_bgr: the authors' DeepLab models, BGR in 0-255 minus the channel means.
NORMALIZATIONS: tuple[str, ...] = ("unit", "imagenet", "caffe_bgr")
# BGR channel means of the authors' models (Caffe DeepLab), in 0-255 pixel units.
CAFFE_BGR_MEAN: tuple[float, float, float] = (104.00698793, 116.66876762, 122.67891434)
# RGB channel means and standard deviations of ImageNet, in [0, 1] units.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


class InputNormalizer(nn.Module):
    """Maps RGB images in [0, 1] to a network's input space, [B, 3, H, W] -> [B, 3, H, W].

    "unit": identity. "imagenet": (x - IMAGENET_MEAN) / IMAGENET_STD.
    "caffe_bgr": x * 255, RGB -> BGR, minus CAFFE_BGR_MEAN (no std), as the authors' models.
    """

    def __init__(self, mode: str = "caffe_bgr"):
        super().__init__()
        if mode not in NORMALIZATIONS:
            raise ValueError(f"unknown input normalization {mode!r}; choose one of {', '.join(NORMALIZATIONS)}")
        self.mode = mode
        mean, std = {"unit": ((0.0,) * 3, (1.0,) * 3), "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
                     "caffe_bgr": (CAFFE_BGR_MEAN, (1.0,) * 3)}[mode]
        # Not persistent: constants, not weights; they must not enter checkpoints.
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode == "unit":
            return x
        if self.mode == "imagenet":
            return (x - self.mean) / self.std
        return x.flip(1) * 255.0 - self.mean

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}"
