"""A small CNN backbone for CPU real time: images (N, 3, H, W) -> features (N, C, H/16, W/16).

MobileNet-style: a strided 3x3 stem, then stages of depthwise-separable blocks (3x3
depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU; a residual where shapes match), each
stage starting with a stride-2 block. Four stride-2 steps give stride 16, so a 256x192
input gives the same 16x12 grid as the ViT and the same ProbMap head applies (with fewer
channels, see :func:`pose_model.cnn_config`). About 0.6 M parameters and 0.3 GMACs with
its head (FACTS.md budget).
"""
from torch import nn

#: (out_channels, blocks) per stage after the stem; each stage halves the resolution.
STAGES = ((32, 2), (64, 3), (96, 4))


def conv_bn_relu(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class SeparableBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.dw = conv_bn_relu(c_in, c_in, 3, stride, groups=c_in)
        self.pw = conv_bn_relu(c_in, c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


class SmallCNN(nn.Module):
    """Stride-16 CNN: images (N, 3, H, W) -> features (N, out_channels, H/16, W/16)."""

    def __init__(self, out_channels: int = 128, stem_channels: int = 16, stages=STAGES):
        super().__init__()
        self.embed_dim = out_channels
        layers = [conv_bn_relu(3, stem_channels, 3, 2)]
        c = stem_channels
        for c_out, blocks in stages:
            layers.append(SeparableBlock(c, c_out, stride=2))
            layers += [SeparableBlock(c_out, c_out) for _ in range(blocks - 1)]
            c = c_out
        layers.append(conv_bn_relu(c, out_channels))
        self.layers = nn.Sequential(*layers)

    def forward(self, images):
        return self.layers(images)
