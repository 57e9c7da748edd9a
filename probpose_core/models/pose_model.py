"""PoseModel = backbone (ViT, small CNN or MobileNetV2-FPN) + ProbMap head, built from a PoseModelConfig.

``PoseModel(config)(images)`` takes normalised RGB crops ``images (N, 3, H, W)`` float32
(``(rgb_0_255 - NORMALIZE_MEAN) / NORMALIZE_STD``, H x W = input_size[1] x input_size[0]) and
returns a dict with exactly the keys ``prob_maps (N, K, 64, 48)`` (each map sums to 1),
``presence``, ``visibility``, ``oks_quality`` (N, K) in [0, 1]; the double-heatmap variant adds
``wide_prob_maps (N, K, 64, 48)``. ``return_logits=True`` adds ``map_logits`` (before the
temperature) for calibration. The state_dict keys are those of MMPose-1.x ProbPose
(``backbone.*``, ``head.*``).

``map_kind="heatmap"`` builds the Gaussian heatmap + MSE baseline from the same backbone and
head code: the head's final 1x1 conv output is returned raw under ``heatmaps (N, K, 64, 48)``
instead of ``prob_maps`` (no temperature, no Sparsemax); the presence / visibility /
OKS-quality branches are still there. Decode it with ``codec.decode(method="udp")`` (the
Pipeline does); train it with ``losses.LossConfig(kind="heatmap")``. Both kinds have the same
state_dict keys, so a checkpoint's config (``map_kind`` included) decides how it is read. The
seed's Table 2 ablation as configuration (map_kind x loss kind x crop augmentation): see
:mod:`probpose_core.losses`.
"""
from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from ..geometry import NORMALIZE_MEAN, NORMALIZE_STD  # noqa: F401  (ImageNet, RGB, 0-255; part of the contract)
from ..keypoints import NUM_KEYPOINTS
from ..runtime.base import HEATMAP_OUTPUT, OUTPUT_NAMES, WIDE_OUTPUT
from .cnn import SmallCNN
from .lite_hrnet import LiteHRNet
from .mobilenet_fpn import MobileNetV2FPN
from .probmap_head import ProbMapHead
from .vit import VIT_SIZES, VisionTransformer, patch_grid

MAP_KINDS = ("probmap", "heatmap")
BACKBONES = ("vit", "cnn", "mobilenetv2_fpn", "lite_hrnet")
#: backbones whose features are already at the map resolution (stride 4): the head does not upsample
STRIDE4_BACKBONES = {"mobilenetv2_fpn": MobileNetV2FPN, "lite_hrnet": LiteHRNet}
SPARSEMAX_METHODS = ("exact", "topk", "bisect")


@dataclass
class PoseModelConfig:
    """Everything needed to build a PoseModel. Sizes are (W, H). Defaults: ProbPose-s."""

    backbone: str = "vit"  # "vit" | "cnn" | "mobilenetv2_fpn" | "lite_hrnet"
    embed_dim: int = 384  # backbone output channels (ViT width)
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    drop_path: float = 0.1
    patch_size: int = 16
    patch_padding: int = 2
    input_size: tuple = (192, 256)
    heatmap_size: tuple = (48, 64)
    num_keypoints: int = NUM_KEYPOINTS
    head_channels: int = 256  # deconv channels of the map head
    aux_channels: int = 0  # channels of the presence/visibility/OKS branches (0: embed_dim)
    temperature: float = 0.5  # sparsemax temperature of the map head (logits / temperature)
    double_heatmap: bool = False
    sparsemax_method: str = "exact"  # "exact" | "topk" | "bisect" (export)
    map_kind: str = "probmap"  # "probmap" (Sparsemax prob_maps) | "heatmap" (raw Gaussian-regression heatmaps)

    def __post_init__(self):
        self.input_size = tuple(int(v) for v in self.input_size)
        self.heatmap_size = tuple(int(v) for v in self.heatmap_size)
        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if self.sparsemax_method not in SPARSEMAX_METHODS:
            raise ValueError(f"sparsemax_method must be one of {SPARSEMAX_METHODS}, got {self.sparsemax_method!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be positive, got {self.temperature}")
        if self.map_kind not in MAP_KINDS:
            raise ValueError(f"map_kind must be one of {MAP_KINDS}, got {self.map_kind!r}")
        fixed = STRIDE4_BACKBONES.get(self.backbone)
        if fixed is not None and self.embed_dim != fixed.embed_dim:
            raise ValueError(f"the {self.backbone} backbone gives {fixed.embed_dim} channels: "
                             f"embed_dim must be {fixed.embed_dim}, got {self.embed_dim}")
        if self.map_kind == "heatmap" and self.double_heatmap:
            raise ValueError("the double-heatmap variant needs map_kind 'probmap'")

    @property
    def feature_grid(self) -> tuple[int, int]:
        """Backbone feature grid (h, w): the ViT patch grid, input / 4 for mobilenetv2_fpn / lite_hrnet, else input / 16."""
        if self.backbone == "vit":
            return patch_grid(self.input_size, self.patch_size, self.patch_padding)
        stride = 4 if self.backbone in STRIDE4_BACKBONES else 16
        return self.input_size[1] // stride, self.input_size[0] // stride

    @property
    def head_upsamples(self) -> bool:
        """True when the head's deconvolutions take the features 4x up to the maps (all but stride-4 backbones)."""
        return self.backbone not in STRIDE4_BACKBONES

    def to_dict(self) -> dict:
        """Plain Python types only (lists for tuples): safe for ``torch.load(weights_only=True)``/JSON."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> "PoseModelConfig":
        """Inverse of :meth:`to_dict`; unknown fields raise ValueError naming them."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown model config fields: {', '.join(unknown)}")
        return cls(**data)


def lite_hrnet_config(**overrides) -> PoseModelConfig:
    """The CPU student started from PP-TinyPose 256x192: Lite-HRNet-18 "wider naive" (stride-4
    features of 40 ch, models/lite_hrnet.py), PP-TinyPose's last layers as the map layer
    (depthwise 3x3 + 1x1 to 40 ch + ReLU), 32-ch branches. Temperature 0.1: PP-TinyPose's
    heatmaps peak near 1, so logits / 0.1 give compact Sparsemax maps."""
    return PoseModelConfig(**{"backbone": "lite_hrnet", "embed_dim": LiteHRNet.embed_dim, "depth": 0,
                              "num_heads": 0, "drop_path": 0.0, "head_channels": LiteHRNet.embed_dim,
                              "aux_channels": 32, "temperature": 0.1, **overrides})


def vit_config(size: str = "s", **overrides) -> PoseModelConfig:
    """ProbPose config with a ViT-T ("t"), ViT-S ("s", the official ProbPose-s) or ViT-B ("b")."""
    if size.lower() not in VIT_SIZES:
        raise ValueError(f"unknown ViT size {size!r}; choose from {sorted(VIT_SIZES)}")
    dim, depth, heads = VIT_SIZES[size.lower()]
    return PoseModelConfig(**{"backbone": "vit", "embed_dim": dim, "depth": depth, "num_heads": heads, **overrides})


def cnn_config(**overrides) -> PoseModelConfig:
    """The small CPU real-time model: SmallCNN (128 ch) + a slim head (64-ch deconvs, 32-ch branches)."""
    return PoseModelConfig(**{"backbone": "cnn", "embed_dim": 128, "depth": 0, "num_heads": 0, "drop_path": 0.0,
                              "head_channels": 64, "aux_channels": 32, **overrides})


def mobilenet_fpn_config(**overrides) -> PoseModelConfig:
    """The CPU real-time student started from MoveNet-multipose: MobileNetV2-FPN (width 1.5, stride-4
    features of 24 ch, models/mobilenet_fpn.py), a MoveNet-style map layer (separable 3x3 to 96 ch),
    32-ch branches. Temperature 1: the map layer starts from MoveNet's heatmap logits."""
    return PoseModelConfig(**{"backbone": "mobilenetv2_fpn", "embed_dim": MobileNetV2FPN.embed_dim, "depth": 0,
                              "num_heads": 0, "drop_path": 0.0, "head_channels": 96, "aux_channels": 32,
                              "temperature": 1.0, **overrides})


class PoseModel(nn.Module):
    """Backbone + ProbMap head (see the module docstring for inputs and outputs)."""

    def __init__(self, config: PoseModelConfig):
        super().__init__()
        self.config = config
        up = 4 if config.head_upsamples else 1
        if tuple(up * v for v in config.feature_grid[::-1]) != tuple(config.heatmap_size):
            raise ValueError(f"heatmap_size {config.heatmap_size} must be {up}x the feature grid "
                             f"{config.feature_grid[::-1]} (W, H) of input_size {config.input_size}")
        if config.backbone == "vit":
            self.backbone = VisionTransformer(config.embed_dim, config.depth, config.num_heads, config.mlp_ratio,
                                              config.drop_path, config.input_size, config.patch_size,
                                              config.patch_padding)
        elif config.backbone in STRIDE4_BACKBONES:
            self.backbone = STRIDE4_BACKBONES[config.backbone]()
        else:
            self.backbone = SmallCNN(config.embed_dim)
        self.head = ProbMapHead(config.embed_dim, config.num_keypoints, config.head_channels,
                                config.aux_channels or None, config.temperature, config.sparsemax_method,
                                config.double_heatmap, config.map_kind, config.head_upsamples)

    @property
    def output_names(self) -> tuple[str, ...]:
        maps = (HEATMAP_OUTPUT,) if self.config.map_kind == "heatmap" else OUTPUT_NAMES[:1]
        return maps + OUTPUT_NAMES[1:] + ((WIDE_OUTPUT,) if self.config.double_heatmap else ())

    def set_sparsemax_method(self, method: str) -> None:
        """Switch the head's sparsemax variant (export uses "topk"); weights are unaffected."""
        if method not in SPARSEMAX_METHODS:
            raise ValueError(f"sparsemax_method must be one of {SPARSEMAX_METHODS}, got {method!r}")
        self.config.sparsemax_method = method
        self.head.sparsemax_method = method

    def forward(self, images: torch.Tensor, return_logits: bool = False) -> dict:
        """images (N, 3, H, W) normalised RGB -> dict of named outputs (see module docstring)."""
        return self.head(self.backbone(images), return_logits)


def build_model(config: PoseModelConfig) -> PoseModel:
    return PoseModel(config)


def num_params(model: nn.Module) -> int:
    """Number of parameters (buffers such as BN statistics not counted)."""
    return sum(p.numel() for p in model.parameters())


def gmacs(model: PoseModel, batch: int = 1) -> float:
    """Multiply-accumulates (GMACs) of one forward pass at ``batch``, counted on conv / linear
    layers and attention matmuls (normalisation, activations and sparsemax not counted)."""
    total = [0]

    def conv_hook(m, inp, out):
        if isinstance(m, nn.ConvTranspose2d):  # every input pixel touches a k x k patch of each output channel
            total[0] += inp[0].numel() * m.out_channels * m.kernel_size[0] * m.kernel_size[1] // m.groups
        else:
            total[0] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    def linear_hook(m, inp, out):
        total[0] += out.numel() * m.in_features

    def attn_hook(m, inp, out):
        n, t, c = inp[0].shape
        total[0] += 2 * n * t * t * c  # q k^T and attn v

    from .vit import Attention
    hooks = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            hooks.append(m.register_forward_hook(linear_hook))
        elif isinstance(m, Attention):
            hooks.append(m.register_forward_hook(attn_hook))
    w, h = model.config.input_size
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(batch, 3, h, w))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return total[0] / 1e9
