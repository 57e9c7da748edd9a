"""Training losses of ProbPose (torch): OKS risk + Sobel smoothness, presence, visibility, OKS quality.

Shapes: ``prob_maps``/``oks_maps`` (N, K, H, W); per-keypoint predictions, targets and
``weights`` (N, K). Every loss is a *weighted mean over keypoints*::

    loss = sum_{n,k} w_nk * l_nk / sum_{n,k} w_nk        (0 when all weights are 0)

so a keypoint with weight 0 contributes neither value nor gradient. The codec's targets go
straight in (numpy or torch): ``map_weights`` for the map and OKS-quality losses (zero outside
the activation window, where the presence head takes over), ``keypoint_weights`` for the
presence and visibility losses.

Training glue: :class:`LossConfig` + :func:`training_losses` turn a model's outputs and a
collated batch of ``data.dataset.TopDownDataset`` samples into the dict of loss terms the
trainer back-propagates (``"total"``). Two kinds share the backbone, head and data code:

- ``kind="probmap"`` (ProbPose): ``map_weight * prob_map_loss`` (OKS risk + Sobel smoothness)
  ``+ presence_weight * presence_loss + visibility_weight * visibility_loss
  + oks_quality_weight * oks_quality_loss``; the OKS-quality target is the OKS of the point
  decoded (expected-OKS, on CPU, detached) from the predicted maps.
- ``kind="heatmap"`` (ViTPose-style baseline): ``heatmap_weight * heatmap_mse_loss`` against
  the Gaussian targets of :func:`codec.gaussian_heatmaps`; no other term (the presence /
  visibility / OKS-quality branches exist but are not trained).

The seed's Table 2 ablation is configuration only, no code path:

==========================  ==================  ===============  ==========================
row                         ``model.map_kind``  ``loss.kind``    ``data.augment.crop_prob``
==========================  ==================  ===============  ==========================
heatmap + MSE               ``heatmap``         ``heatmap``      0
heatmap + MSE + crop aug.   ``heatmap``         ``heatmap``      > 0 (e.g. 0.5)
probability maps            ``probmap``         ``probmap``      0
probability maps + crop     ``probmap``         ``probmap``      > 0
==========================  ==================  ===============  ==========================

(heatmap rows also set ``data.heatmap_sigma`` (2.0) so the dataset emits ``"heatmaps"``).
A mismatch (a heatmap model with ``loss.kind="probmap"`` or a batch without the targets the
kind needs) raises InputError naming what is missing.
"""
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .errors import InputError
from .oks import keypoint_oks
from .keypoints import SIGMAS

#: Weight of the smoothness term in the official ProbPose config (0.95 risk + 0.05 smoothness).
DEFAULT_ALPHA = 0.05

# Sobel kernels divided by 8, so that they estimate the derivative per pixel
# (a ramp p = x gives d/dx = 1). Row-major (dy, dx) layout, x to the right, y down.
_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_SOBEL = torch.stack([_SOBEL_X, _SOBEL_X.T])[:, None]  # (2, 1, 3, 3): d/dx, d/dy


def weighted_mean(values: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``sum(w * v) / sum(w)`` over all elements; 0 (with zero gradient) when ``sum(w) == 0``.

    values, weights: broadcastable, typically (N, K). Weights are constants (no gradient).
    """
    weights = torch.as_tensor(weights, dtype=values.dtype, device=values.device).detach()
    weights = torch.broadcast_to(weights, values.shape)
    total = weights.sum()
    weighted = torch.where(weights != 0, weights * values, torch.zeros_like(values))
    return weighted.sum() / torch.clamp(total, min=torch.finfo(values.dtype).tiny)


def keypoint_risk(prob_maps: torch.Tensor, oks_maps: torch.Tensor) -> torch.Tensor:
    """Expected OKS loss per keypoint, ``sum_x (1 - OKS(x)) p(x)``: (N, K).

    prob_maps, oks_maps: (N, K, H, W); ``oks_maps[n, k, y, x]`` is the OKS a prediction at
    pixel (x, y) would get against the ground truth (the codec's ``encode`` builds them).
    """
    oks_maps = torch.as_tensor(oks_maps, dtype=prob_maps.dtype, device=prob_maps.device)
    return ((1.0 - oks_maps) * prob_maps).sum(dim=(-2, -1))


def oks_risk(prob_maps: torch.Tensor, oks_maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Expected OKS risk, weighted mean over keypoints of :func:`keypoint_risk` (scalar).

    For a map that sums to 1 it lies in [0, 1] and is minimised by putting all the mass on
    the pixel of highest OKS (the ground-truth pixel).
    """
    return weighted_mean(keypoint_risk(prob_maps, oks_maps), weights)


def sobel_energy(prob_maps: torch.Tensor) -> torch.Tensor:
    """Squared Sobel-gradient magnitude of each map, summed over pixels: (N, K).

    ``sum_{y,x} (d/dx p)^2 + (d/dy p)^2`` with the Sobel kernels scaled by 1/8 (derivative per
    pixel), evaluated only where the 3x3 window fits (no padding, so the map border adds no
    artificial edge). A one-pixel spike of mass 1 scores 24/64 = 0.375; smoother maps less.
    prob_maps: (N, K, H, W) with H, W >= 3.
    """
    n, k, h, w = prob_maps.shape
    # One depthwise conv (groups=K, 2 filters per map). On CPU this is ~5x faster than
    # folding the maps into the batch with a single input channel.
    kernel = _SOBEL.to(dtype=prob_maps.dtype, device=prob_maps.device).repeat(k, 1, 1, 1)
    grads = F.conv2d(prob_maps, kernel, groups=k)  # (N, 2K, H-2, W-2): d/dx, d/dy per map
    return grads.square().sum(dim=(-2, -1)).reshape(n, k, 2).sum(dim=-1)


def smoothness_loss(prob_maps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weighted mean over keypoints of :func:`sobel_energy` (scalar)."""
    return weighted_mean(sobel_energy(prob_maps), weights)


def prob_map_loss(prob_maps: torch.Tensor, oks_maps: torch.Tensor, weights: torch.Tensor,
                  alpha: float = DEFAULT_ALPHA) -> torch.Tensor:
    """``(1 - alpha) * oks_risk + alpha * smoothness_loss`` (scalar); ``alpha = 0`` is the pure risk."""
    risk = oks_risk(prob_maps, oks_maps, weights)
    if alpha == 0:
        return risk
    return (1.0 - alpha) * risk + alpha * smoothness_loss(prob_maps, weights)


def _bce(pred: torch.Tensor, target: torch.Tensor, from_logits: bool) -> torch.Tensor:
    target = torch.as_tensor(target, dtype=pred.dtype, device=pred.device).detach()
    if from_logits:
        return F.binary_cross_entropy_with_logits(pred, target, reduction="none")
    return F.binary_cross_entropy(pred, target, reduction="none")


def presence_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                  from_logits: bool = False) -> torch.Tensor:
    """Binary cross-entropy of the presence probability (keypoint inside the activation window).

    pred: (N, K) probabilities (sigmoid outputs), or logits with ``from_logits=True``;
    target: (N, K) in {0, 1}; weights: (N, K). Scalar.
    """
    return weighted_mean(_bce(pred, target, from_logits), weights)


def visibility_loss(pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor,
                    from_logits: bool = False) -> torch.Tensor:
    """Binary cross-entropy of visibility, balanced so each class contributes half.

    ``0.5 * mean_w(BCE | visible) + 0.5 * mean_w(BCE | invisible)``, each a weighted mean over
    the keypoints of that class (``target >= 0.5`` is visible). When a batch holds only one
    class (among weighted keypoints), that class's mean is the loss. Scalar.
    pred, target, weights: (N, K) as in :func:`presence_loss`.
    """
    bce = _bce(pred, target, from_logits)
    target = torch.as_tensor(target, device=pred.device).detach()
    weights = torch.broadcast_to(torch.as_tensor(weights, dtype=pred.dtype, device=pred.device), bce.shape)
    visible = target >= 0.5
    zeros = torch.zeros_like(weights)
    total, count = bce.new_zeros(()), bce.new_zeros(())
    for mask in (visible, ~visible):
        class_weights = torch.where(mask, weights, zeros)
        present = (class_weights.sum() > 0).to(bce.dtype)  # no host sync, no branch
        total = total + present * weighted_mean(bce, class_weights)
        count = count + present
    return total / torch.clamp(count, min=1.0)


def oks_quality_loss(pred: torch.Tensor, target_oks: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error between the predicted OKS (N, K) and the OKS of the decoded point.

    ``target_oks`` (N, K) is a constant (see :func:`decoded_oks`); no gradient flows into it.
    """
    target = torch.as_tensor(target_oks, dtype=pred.dtype, device=pred.device).detach()
    return weighted_mean((pred - target).square(), weights)


def decoded_oks(decoded_xy, gt_xy, area, sigmas=SIGMAS):
    """Per-keypoint OKS of decoded points against the ground truth: (N, K).

    decoded_xy, gt_xy: (N, K, 2) in the same units as ``area`` (image pixels and the instance
    area, or heatmap pixels and the area mapped into the heatmap); area: (N,) or scalar.
    Uses :func:`probpose_core.oks.keypoint_oks`. Accepts numpy arrays or torch
    tensors; a torch input gives a detached torch tensor of its dtype and device (a target).
    """
    is_torch = isinstance(decoded_xy, torch.Tensor)
    ref = decoded_xy if is_torch else None
    to_np = (lambda a: a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a))
    d = to_np(decoded_xy).astype(np.float64)
    g = to_np(gt_xy).astype(np.float64)
    a = np.asarray(to_np(area), dtype=np.float64)
    sq_dist = np.square(d - g).sum(axis=-1)
    oks = keypoint_oks(sq_dist, a[..., None] if a.ndim else a, sigmas)
    if is_torch:
        return torch.as_tensor(oks, dtype=ref.dtype, device=ref.device)
    return oks


def heatmap_mse_loss(heatmaps_pred: torch.Tensor, heatmaps_target, weights) -> torch.Tensor:
    """Heatmap regression loss of the baseline (ViTPose-style MSE), scalar.

    ``mean over pixels of (pred - target)^2`` per keypoint, then the weighted mean over
    keypoints (:func:`weighted_mean`; a keypoint with weight 0 gets no gradient).
    heatmaps_pred, heatmaps_target: (N, K, H, W); weights: (N, K).
    """
    target = torch.as_tensor(heatmaps_target, dtype=heatmaps_pred.dtype, device=heatmaps_pred.device).detach()
    if target.shape != heatmaps_pred.shape:
        raise InputError(f"heatmap targets {tuple(target.shape)} do not match predictions {tuple(heatmaps_pred.shape)}")
    return weighted_mean((heatmaps_pred - target).square().mean(dim=(-2, -1)), weights)


LOSS_KINDS = ("probmap", "heatmap")


@dataclass
class LossConfig:
    """Which loss trains the model and the weight of each term (see the module docstring).

    kind: "probmap" (ProbPose: map + presence + visibility + OKS-quality terms) or "heatmap"
    (Gaussian heatmap + MSE baseline; pair it with ``PoseModelConfig.map_kind="heatmap"``).
    smoothness_alpha: Sobel-smoothness share of the map loss (official ProbPose: 0.05).
    map_weight, presence_weight, visibility_weight, oks_quality_weight: probmap term weights
    (all 1 by default); heatmap_weight: weight of the MSE term of the heatmap kind.
    """

    kind: str = "probmap"
    smoothness_alpha: float = DEFAULT_ALPHA
    map_weight: float = 1.0
    presence_weight: float = 1.0
    visibility_weight: float = 1.0
    oks_quality_weight: float = 1.0
    heatmap_weight: float = 1.0

    def __post_init__(self):
        if self.kind not in LOSS_KINDS:
            raise ValueError(f"loss kind must be one of {LOSS_KINDS}, got {self.kind!r}")
        if not 0.0 <= self.smoothness_alpha <= 1.0:
            raise ValueError(f"smoothness_alpha must lie in [0, 1], got {self.smoothness_alpha}")
        for name in ("map_weight", "presence_weight", "visibility_weight", "oks_quality_weight", "heatmap_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _need(mapping: dict, keys, what: str, hint: str = "") -> None:
    missing = [k for k in keys if k not in mapping]
    if missing:
        raise InputError(f"{what} lacks {missing} (has {sorted(mapping)}){hint}")


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def decoded_oks_target(prob_maps: torch.Tensor, batch: dict, codec) -> np.ndarray:
    """OKS-quality targets (N, K): OKS of the expected-OKS decode of the DETACHED maps.

    prob_maps: (N, K, H, W) (any device; copied to CPU float32); batch: ``center``, ``scale``
    (N, 2) windows, ``keypoints`` (N, K, 2) and ``area`` (N,) in the same (axis-aligned) frame
    (areas below 1 px^2 count as 1).
    """
    maps = prob_maps.detach().float().cpu().numpy()
    center, scale, area = (_numpy(batch[k]).astype(np.float64) for k in ("center", "scale", "area"))
    area = np.maximum(area.reshape(-1), 1.0)  # a degenerate area would give an infinitely sharp kernel
    points, _ = codec.decode(maps, center, scale, area=area)
    return decoded_oks(points, _numpy(batch["keypoints"]), area, codec.sigmas)


def training_losses(outputs: dict, batch: dict, codec, config: LossConfig) -> dict:
    """Loss terms of one training step: dict of scalar float32 tensors, ``"total"`` included.

    outputs: the model's output dict (``prob_maps`` or ``heatmaps`` (N, K, H, W), ``presence``,
    ``visibility``, ``oks_quality`` (N, K)); batch: the collated dataset dict (tensors, see
    ``data.dataset.TopDownDataset``); codec: the ProbMapCodec of the targets. Terms are
    computed in float32 with autocast off (safe under AMP), on the outputs' device.
    probmap keys: ``map``, ``presence``, ``visibility``, ``oks_quality``; heatmap: ``heatmap``.
    The double-heatmap variant (``wide_prob_maps``) needs wide-window targets and is rejected.
    """
    if "wide_prob_maps" in outputs:
        raise InputError("training_losses cannot train the double-heatmap variant (no wide-window targets)")
    if config.kind == "heatmap":
        _need(outputs, ("heatmaps",), "the model's output", " - loss.kind 'heatmap' needs model.map_kind 'heatmap'")
        _need(batch, ("heatmaps", "map_weights"), "the batch", " - set data.heatmap_sigma for heatmap targets")
    else:
        _need(outputs, ("prob_maps", "presence", "visibility", "oks_quality"), "the model's output",
              " - loss.kind 'probmap' needs model.map_kind 'probmap'")
        _need(batch, ("oks_maps", "map_weights", "presence", "visibility", "keypoint_weights", "keypoints",
                      "area", "center", "scale"), "the batch")
    ref = next(iter(outputs.values()))
    with torch.autocast(device_type=ref.device.type, enabled=False):
        out = {k: v.float() for k, v in outputs.items() if isinstance(v, torch.Tensor)}
        if config.kind == "heatmap":
            heatmap = heatmap_mse_loss(out["heatmaps"], batch["heatmaps"], batch["map_weights"])
            return {"heatmap": heatmap, "total": config.heatmap_weight * heatmap}
        terms = {
            "map": prob_map_loss(out["prob_maps"], batch["oks_maps"], batch["map_weights"], config.smoothness_alpha),
            "presence": presence_loss(out["presence"], batch["presence"], batch["keypoint_weights"]),
            "visibility": visibility_loss(out["visibility"], batch["visibility"], batch["keypoint_weights"]),
            "oks_quality": oks_quality_loss(out["oks_quality"], decoded_oks_target(out["prob_maps"], batch, codec),
                                            batch["map_weights"]),
        }
        weights = {"map": config.map_weight, "presence": config.presence_weight,
                   "visibility": config.visibility_weight, "oks_quality": config.oks_quality_weight}
        terms["total"] = sum(weights[k] * v for k, v in terms.items())
        return terms
