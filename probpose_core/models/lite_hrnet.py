"""Lite-HRNet backbone (PP-TinyPose layout, "wider naive"): images -> stride-4 features.

``LiteHRNet()(images (N, 3, H, W))`` -> ``features (N, 40, H/4, W/4)`` (64 x 48 for a 256 x 192
crop): already the map resolution, so the ProbMap head needs no deconvolution
(``ProbMapHead(..., upsample=False)``: depthwise 3x3 + 1x1 (40 ch) + ReLU, then the 1x1 map layer
-- exactly the last layers of PP-TinyPose, so the student's map logits start as its heatmaps).

The layout is that of PP-TinyPose 256x192 (PaddleDetection, Apache-2.0; its Lite-HRNet-18
"wider_naive" network as published in OpenVINO IR, ``../shared/data/pp_tinypose``), trained on
COCO + AI Challenger keypoints. ``tools/tinypose_student_init.py`` copies its weights; written
here from the graph's structure, with its batch norms folded into the convs (convs with bias, no
BN layer: fine-tuning starts from exactly the trained function):

- ``stem``: 3x3 s2 conv (32) + ReLU, then a shuffle unit of stride 2: the channels split in
  half; one half depthwise 3x3 s2 -> 1x1 + ReLU, the other 1x1 (32) + ReLU -> depthwise 3x3 s2 ->
  1x1 + ReLU; concatenated and channel-shuffled (32 ch at stride 4).
- three stages of 2 / 4 / 2 modules over 2 / 3 / 4 branches of 40 / 80 / 160 / 320 channels at
  stride 4 / 8 / 16 / 32 (a transition adds each new branch: depthwise 3x3 s2 + 1x1 + ReLU from
  the previous coarsest one). A module runs 2 shuffle blocks per branch (half the channels pass,
  the other half 1x1 + ReLU -> depthwise 3x3 -> 1x1 + ReLU; concatenated, shuffled), then fuses:
  output i = ReLU(2 * term_0 + sum over j > 0 of term_j), term_j = branch j brought to branch i's
  resolution (coarser: 1x1 conv, nearest upsampling; finer: depthwise 3x3 s2 + 1x1 per halving,
  ReLU between). Two details of the trained network are kept because its weights depend on them:
  the first term counts twice, and the outputs i > 0 read branch 0's term as the fused,
  not yet ReLU'd, output 0 (the original updates branch 0 in place).
- ``top_down``: from the coarsest branch to the finest: depthwise 3x3 + 1x1 + ReLU, bilinear x2
  (align_corners), added to the next finer branch; the finest sum is the output (40 ch).

The input is the package's (ImageNet-normalised RGB, ``geometry.NORMALIZE_MEAN/STD``), as
PP-TinyPose's.
"""
import torch
from torch import nn
from torch.nn import functional as F

STEM_CHANNELS = 32
BRANCH_CHANNELS = (40, 80, 160, 320)
#: (modules, branches) per stage
STAGES = ((2, 2), (4, 3), (2, 4))
BLOCKS_PER_BRANCH = 2
OUT_CHANNELS = BRANCH_CHANNELS[0]


def conv(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, depthwise: bool = False) -> nn.Conv2d:
    """Conv with bias (a folded batch norm); depthwise when ``depthwise`` (c_in == c_out)."""
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=c_in if depthwise else 1)


def dw_pw(c_in: int, c_out: int, stride: int, relu: bool) -> nn.Sequential:
    """Depthwise 3x3 (stride) -> 1x1 (-> ReLU)."""
    layers = [conv(c_in, c_in, 3, stride, depthwise=True), conv(c_in, c_out)]
    return nn.Sequential(*layers, *([nn.ReLU(inplace=True)] if relu else []))


def pw_dw_pw(c_in: int, c_mid: int, c_out: int, stride: int) -> nn.Sequential:
    """1x1 + ReLU -> depthwise 3x3 (stride) -> 1x1 + ReLU: the working half of a shuffle unit."""
    return nn.Sequential(conv(c_in, c_mid), nn.ReLU(inplace=True), conv(c_mid, c_mid, 3, stride, depthwise=True),
                         conv(c_mid, c_out), nn.ReLU(inplace=True))


def channel_shuffle(x: torch.Tensor, groups: int = 2) -> torch.Tensor:
    n, c, h, w = x.shape
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


class Stem(nn.Module):
    """images -> (N, 32, H/4, W/4)."""

    def __init__(self, channels: int = STEM_CHANNELS):
        super().__init__()
        half = channels // 2
        self.conv1 = nn.Sequential(conv(3, channels, 3, 2), nn.ReLU(inplace=True))
        self.branch1 = dw_pw(half, half, 2, relu=True)
        self.branch2 = pw_dw_pw(half, channels, half, 2)

    def forward(self, x):
        x1, x2 = self.conv1(x).chunk(2, dim=1)
        return channel_shuffle(torch.cat((self.branch1(x1), self.branch2(x2)), dim=1))


class ShuffleBlock(nn.Module):
    """Stride-1 shuffle unit: half the channels pass, the other half pw -> dw -> pw."""

    def __init__(self, channels: int):
        super().__init__()
        half = channels // 2
        self.branch2 = pw_dw_pw(half, half, half, 1)

    def forward(self, x):
        x1, x2 = x.chunk(2, dim=1)
        return channel_shuffle(torch.cat((x1, self.branch2(x2)), dim=1))


def fuse_layer(i: int, j: int) -> nn.Module:
    """Brings branch j to branch i's channels and resolution (see the module docstring)."""
    c_i, c_j = BRANCH_CHANNELS[i], BRANCH_CHANNELS[j]
    if j > i:
        return nn.Sequential(conv(c_j, c_i), nn.Upsample(scale_factor=2 ** (j - i), mode="nearest"))
    steps = [dw_pw(c_j, c_j, 2, relu=True) for _ in range(i - j - 1)]
    return nn.Sequential(*steps, dw_pw(c_j, c_i, 2, relu=False))


class HRModule(nn.Module):
    """Branches of shuffle blocks, then the multi-resolution fusion."""

    def __init__(self, branches: int):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(*(ShuffleBlock(BRANCH_CHANNELS[b]) for _ in range(BLOCKS_PER_BRANCH)))
            for b in range(branches))
        self.fuse = nn.ModuleList(nn.ModuleList(fuse_layer(i, j) if j != i else nn.Identity()
                                                for j in range(branches)) for i in range(branches))

    def forward(self, xs: list) -> list:
        xs = [branch(x) for branch, x in zip(self.branches, xs)]
        fused = []
        for i, layers in enumerate(self.fuse):
            y = xs[0] if i == 0 else layers[0](fused[0])  # branch 0's term: the pre-ReLU output 0
            y = y + y
            for j in range(1, len(xs)):
                y = y + (xs[j] if j == i else layers[j](xs[j]))
            fused.append(y)
        return [F.relu(y) for y in fused]


class LiteHRNet(nn.Module):
    """images (N, 3, H, W) -> features (N, 40, H/4, W/4) (module docstring)."""

    embed_dim = OUT_CHANNELS

    def __init__(self):
        super().__init__()
        self.stem = Stem()
        c_prev = [STEM_CHANNELS]
        transitions, stages = [], []
        for modules, branches in STAGES:
            layers = nn.ModuleList()
            for b in range(branches):
                c_out = BRANCH_CHANNELS[b]
                if b < len(c_prev):
                    layers.append(nn.Identity() if c_prev[b] == c_out else dw_pw(c_prev[b], c_out, 1, relu=True))
                else:
                    layers.append(dw_pw(c_prev[-1], c_out, 2, relu=True))
            transitions.append(layers)
            stages.append(nn.Sequential(*(HRModule(branches) for _ in range(modules))))
            c_prev = list(BRANCH_CHANNELS[:branches])
        self.transitions = nn.ModuleList(transitions)
        self.stages = nn.ModuleList(stages)
        self.top_down = nn.ModuleList(dw_pw(BRANCH_CHANNELS[b], BRANCH_CHANNELS[b - 1], 1, relu=True)
                                      for b in range(len(BRANCH_CHANNELS) - 1, 0, -1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        xs = [self.stem(images)]
        for transition, stage in zip(self.transitions, self.stages):
            xs = [layer(xs[b] if b < len(xs) else xs[-1]) for b, layer in enumerate(transition)]
            for module in stage:
                xs = module(xs)
        y = xs[-1]
        for layer, finer in zip(self.top_down, reversed(xs[:-1])):
            y = finer + F.interpolate(layer(y), scale_factor=2.0, mode="bilinear", align_corners=True)
        return y
