"""The ProbMap head: probability maps plus presence / visibility / OKS-quality branches.

Map path (ProbPose, Purkrabek & Matas 2025): features (N, C, 16, 12) ->
``deconv_layers`` = 2x (ConvTranspose 4x4 s2 p1 no bias, BN, ReLU) -> ``final_layer``
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
(same centre, 2x the scale, same 64x48 resolution). Decode rule (:func:`decode_double`): the
wide map decides where the keypoint is; when that point falls inside the ordinary (expert)
window, the expert map's finer estimate replaces it. With this variant the presence output
refers to the wide window (a keypoint is "present" when it lies inside the 2x window).
"""
import numpy as np
import torch
from torch import nn

from .. import geometry
from ..codec import ProbMapCodec, window_area
from ..sparsemax import sparsemax_maps

AUX_BRANCHES = ("probability_layers", "visibility_layers", "oks_layers", "error_layers")
#: name of each used branch's output
AUX_OUTPUTS = {"probability_layers": "presence", "visibility_layers": "visibility", "oks_layers": "oks_quality"}
#: the wide window of the double-heatmap variant is this many times the activation window
WIDE_FACTOR = 2.0


def deconv_layers(in_channels: int, channels: int) -> nn.Sequential:
    """2x (ConvTranspose 4x4 stride 2 padding 1, no bias, BN, ReLU): 4x upsampling."""
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
                 map_kind: str = "probmap"):
        super().__init__()
        if map_kind not in ("probmap", "heatmap"):
            raise ValueError(f"map_kind must be 'probmap' or 'heatmap', got {map_kind!r}")
        self.map_kind = map_kind
        aux_channels = aux_channels or in_channels
        self.temperature = float(temperature)
        self.sparsemax_method = sparsemax_method
        self.deconv_layers = deconv_layers(in_channels, channels)
        self.final_layer = nn.Conv2d(channels, num_keypoints, 1)
        for name in AUX_BRANCHES:
            act = nn.ReLU() if name == "error_layers" else nn.Sigmoid()
            setattr(self, name, aux_branch(in_channels, aux_channels, num_keypoints, act))
        self.double_heatmap = bool(double_heatmap)
        if self.double_heatmap:
            self.wide_deconv_layers = deconv_layers(in_channels, channels)
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


def wide_window(center, scale, factor: float = WIDE_FACTOR):
    """The double-heatmap window: same ``center (N, 2)``, ``scale (N, 2)`` times ``factor``."""
    return np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64) * factor


def decode_double(codec: ProbMapCodec, prob_maps, wide_prob_maps, center, scale, area=None,
                  method: str = "expected_oks"):
    """Decode the double-heatmap variant: the wide map decides, the expert map refines.

    prob_maps, wide_prob_maps: (N, K, H, W) over the activation window ``center, scale (N, 2)``
    and over the wide window (2x scale), respectively. area: (N,) instance areas (default: from
    the ordinary window, so both maps use the same OKS kernel in image pixels).
    Returns ``keypoints (N, K, 2)`` image coords, ``confidence (N, K)`` (of the map that gave
    the point) and ``refined (N, K)`` bool: True where the wide estimate fell inside the
    expert window and the expert map's estimate was used.
    """
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    if area is None:
        area = window_area(scale, codec.padding, codec.area_factor)
    wide_center, wide_scale = wide_window(center, scale)
    wide_pts, wide_conf = codec.decode(wide_prob_maps, wide_center, wide_scale, area=area, method=method)
    expert_pts, expert_conf = codec.decode(prob_maps, center, scale, area=area, method=method)
    refined = np.stack([geometry.in_window(wide_pts[i], geometry.window_xyxy(center[i], scale[i]))
                        for i in range(len(center))]) if len(center) else np.zeros(wide_conf.shape, bool)
    keypoints = np.where(refined[..., None], expert_pts, wide_pts)
    confidence = np.where(refined, expert_conf, wide_conf)
    return keypoints, confidence, refined
