"""The ProbMap head: probability maps plus presence / visibility / OKS-quality branches.

Map path (ProbPose, Purkrabek & Matas 2025): features (N, C, 16, 12) ->
``deconv_layers`` = 2x (ConvTranspose 4x4 s2 p1 no bias, BN, ReLU) (``upsample=False``, for
features already at 64 x 48: separable 3x3 conv + ReLU) -> ``final_layer``
1x1 conv to K logits (N, K, 64, 48) -> divided by the temperature -> Sparsemax over the
H*W pixels of each map (:func:`sparsemax.sparsemax_maps`), so every map is a probability
distribution over the activation window. With ``map_kind="heatmap"`` (the Gaussian heatmap
+ MSE baseline) the 1x1 conv output is returned as it is under ``heatmaps`` instead: no
temperature, no Sparsemax; everything else (deconvs, branches, weights' names) is the same.

Scalar branches ``probability_layers`` (presence), ``visibility_layers``, ``oks_layers``
(predicted OKS of the decoded point) and ``error_layers`` (kept only so official checkpoints
load; its output is not used): 3x (3x3 conv, BN, MaxPool (4,3) / 2 / 2, ReLU), 1x1 conv to K,
then Sigmoid (ReLU for ``error_layers``). They read the DETACHED backbone features, so their
losses do not shape the backbone. A 16x12 grid pools to 1x1 exactly; pooling rounds up
(``ceil_mode``) so smaller grids work too, and larger ones are reduced by a max over what is left.

Double-heatmap variant (``double_heatmap=True``): a second map head (``wide_deconv_layers``,
``wide_final_layer``, same layout) predicts ``wide_prob_maps`` over a window twice as large
(same centre, 2x the scale, same 64x48 resolution). Decode rule (:func:`pipeline.read_double`): the
wide map decides where the keypoint is; when that point falls inside the ordinary (expert)
window, the expert map's finer estimate replaces it. With this variant the presence output
refers to the wide window (a keypoint is "present" when it lies inside the 2x window).
"""
import torch
from torch import nn

from ..sparsemax import sparsemax_maps

AUX_BRANCHES = ("probability_layers", "visibility_layers", "oks_layers", "error_layers")
#: name of each used branch's output
AUX_OUTPUTS = {"probability_layers": "presence", "visibility_layers": "visibility", "oks_layers": "oks_quality"}


def deconv_layers(in_channels: int, channels: int, upsample: bool = True) -> nn.Sequential:
    """2x (ConvTranspose 4x4 stride 2 padding 1, no bias, BN, ReLU): 4x upsampling. Without
    ``upsample`` (features already at the map resolution, e.g. the MobileNetV2-FPN's stride 4):
    depthwise 3x3 (no bias) -> 1x1 (bias) -> ReLU, the layout of MoveNet's keypoint-heatmap head."""
    if not upsample:
        return nn.Sequential(nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False),
                             nn.Conv2d(in_channels, channels, 1), nn.ReLU(inplace=True))
    layers = []
    for c_in in (in_channels, channels):
        layers += [nn.ConvTranspose2d(c_in, channels, 4, stride=2, padding=1, output_padding=0, bias=False),
                   nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


def aux_branch(in_channels: int, channels: int, num_keypoints: int, activation: nn.Module) -> nn.Sequential:
    """3x (3x3 conv, BN, MaxPool, ReLU) + 1x1 conv to K + activation (indices as the official head)."""
    layers = []
    for c_in, pool in ((in_channels, (4, 3)), (channels, 2), (channels, 2)):
        layers += [nn.Conv2d(c_in, channels, 3, padding=1), nn.BatchNorm2d(channels),
                   nn.MaxPool2d(pool, ceil_mode=True), nn.ReLU(inplace=True)]
    layers += [nn.Conv2d(channels, num_keypoints, 1), activation]
    return nn.Sequential(*layers)


class ProbMapHead(nn.Module):
    """features (N, C, h, w) -> dict of prob_maps (N, K, 4h, 4w) (``heatmaps`` for map_kind "heatmap"),
    presence, visibility, oks_quality (N, K)."""

    def __init__(self, in_channels: int, num_keypoints: int = 17, channels: int = 256, aux_channels=None,
                 temperature: float = 0.5, sparsemax_method: str = "exact", double_heatmap: bool = False,
                 map_kind: str = "probmap", upsample: bool = True):
        super().__init__()
        if map_kind not in ("probmap", "heatmap"):
            raise ValueError(f"map_kind must be 'probmap' or 'heatmap', got {map_kind!r}")
        self.map_kind = map_kind
        aux_channels = aux_channels or in_channels
        self.temperature = float(temperature)
        self.sparsemax_method = sparsemax_method
        self.deconv_layers = deconv_layers(in_channels, channels, upsample)
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)
        for name in AUX_BRANCHES:
            act = nn.ReLU() if name == "error_layers" else nn.Sigmoid()
            setattr(self, name, aux_branch(in_channels, aux_channels, num_keypoints, act))
        self.double_heatmap = bool(double_heatmap)
        if self.double_heatmap:
            self.wide_deconv_layers = deconv_layers(in_channels, channels, upsample)
            self.wide_final_layer = nn.Conv2d(channels, num_keypoints, 1)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.normal_(m.weight, std=0.001 if m.kernel_size == (1, 1) else 0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, features: torch.Tensor, return_logits: bool = False) -> dict:
        logits = self.final_layer(self.deconv_layers(features))
        if self.map_kind == "heatmap":
            out = {"heatmaps": logits}
        else:
            out = {"prob_maps": sparsemax_maps(logits, self.temperature, self.sparsemax_method).clamp(0, 1)}
        detached = features.detach()
        for name, key in AUX_OUTPUTS.items():
            out[key] = getattr(self, name)(detached).amax(dim=(2, 3))
        if self.double_heatmap:
            wide_logits = self.wide_final_layer(self.wide_deconv_layers(features))
            out["wide_prob_maps"] = sparsemax_maps(wide_logits, self.temperature, self.sparsemax_method).clamp(0, 1)
            if return_logits:
                out["wide_map_logits"] = wide_logits
        if return_logits:
            out["map_logits"] = logits
        return out
