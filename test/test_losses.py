import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core import losses
from probpose_core.oks import keypoint_oks


def _oks_maps(gt_xy, h, w, area=20.0, sigma=0.1):
    """OKS of every pixel of an (H, W) grid against ``gt_xy (N, K, 2)``: (N, K, H, W) float64."""
    ys, xs = np.mgrid[0:h, 0:w]
    gt = np.asarray(gt_xy, dtype=np.float64)
    sq = (xs - gt[..., 0, None, None]) ** 2 + (ys - gt[..., 1, None, None]) ** 2
    return torch.from_numpy(keypoint_oks(sq[..., None], area, sigmas=[sigma])[..., 0])


def _random_maps(gen, shape=(1, 2, 5, 4)):
    p = torch.rand(shape, generator=gen, dtype=torch.float64) + 0.05
    return p / p.sum(dim=(-2, -1), keepdim=True)


# ---------------------------------------------------------------------------------- gradcheck

def test_gradcheck_map_losses():
    gen = torch.Generator().manual_seed(0)
    p = _random_maps(gen).requires_grad_()
    oks = _oks_maps([[[1.0, 2.0], [3.0, 0.0]]], 5, 4)
    w = torch.tensor([[1.0, 0.5]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: losses.oks_risk(x, oks, w), (p,))
    assert torch.autograd.gradcheck(lambda x: losses.smoothness_loss(x, w), (p,))
    assert torch.autograd.gradcheck(lambda x: losses.prob_map_loss(x, oks, w, alpha=0.3), (p,))


@pytest.mark.parametrize("from_logits", [False, True])
def test_gradcheck_keypoint_losses(from_logits):
    gen = torch.Generator().manual_seed(1)
    pred = (torch.rand((3, 4), generator=gen, dtype=torch.float64) * 0.8 + 0.1)
    if from_logits:
        pred = torch.logit(pred)
    pred.requires_grad_()
    target = torch.tensor([[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 1, 0]], dtype=torch.float64)
    one_class = torch.ones((3, 4), dtype=torch.float64)
    w = torch.rand((3, 4), generator=gen, dtype=torch.float64)
    for fn in (losses.presence_loss, losses.visibility_loss):
        assert torch.autograd.gradcheck(lambda x: fn(x, target, w, from_logits=from_logits), (pred,))
    assert torch.autograd.gradcheck(lambda x: losses.visibility_loss(x, one_class, w, from_logits), (pred,))
    assert torch.autograd.gradcheck(lambda x: losses.oks_quality_loss(x, target * 0.7, w), (pred,))


# ---------------------------------------------------------------------------------- weights

def test_zero_weight_gives_no_gradient():
    gen = torch.Generator().manual_seed(2)
    p = _random_maps(gen, (2, 3, 6, 5)).requires_grad_()
    oks = _oks_maps(np.full((2, 3, 2), 2.0), 6, 5)
    w = torch.tensor([[1.0, 0.0, 1.0], [0.0, 2.0, 1.0]], dtype=torch.float64)
    losses.prob_map_loss(p, oks, w).backward()
    assert torch.all(p.grad[0, 1] == 0) and torch.all(p.grad[1, 0] == 0)
    assert torch.any(p.grad[0, 0] != 0) and torch.any(p.grad[1, 1] != 0)

    pred = torch.full((2, 3), 0.4, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    for fn in (losses.presence_loss, losses.visibility_loss, losses.oks_quality_loss):
        pred.grad = None
        fn(pred, target, w).backward()
        assert pred.grad[0, 1] == 0 and pred.grad[1, 0] == 0
        assert pred.grad[0, 0] != 0 and pred.grad[1, 1] != 0


def test_all_weights_zero_is_zero_loss_without_nan():
    pred = torch.full((2, 3), 0.4, dtype=torch.float64, requires_grad=True)
    w = torch.zeros((2, 3), dtype=torch.float64)
    for fn in (losses.presence_loss, losses.visibility_loss, losses.oks_quality_loss):
        pred.grad = None
        value = fn(pred, torch.ones((2, 3)), w)
        value.backward()
        assert value.item() == 0.0 and torch.all(pred.grad == 0)


# ---------------------------------------------------------------------------------- hand values

def test_risk_hand_value():
    p = torch.tensor([[[[0.5, 0.5], [0.0, 0.0]], [[0.0, 0.0], [0.0, 1.0]]]])
    oks = torch.tensor([[[[1.0, 0.5], [0.2, 0.0]], [[1.0, 1.0], [1.0, 0.4]]]])
    np.testing.assert_allclose(losses.keypoint_risk(p, oks).numpy(), [[0.25, 0.6]], rtol=1e-6)
    w = torch.tensor([[1.0, 3.0]])
    assert losses.oks_risk(p, oks, w).item() == pytest.approx((0.25 + 3 * 0.6) / 4)


def test_sobel_energy_hand_values():
    spike = torch.zeros((1, 1, 5, 5), dtype=torch.float64)
    spike[0, 0, 2, 2] = 1.0
    assert losses.sobel_energy(spike).item() == pytest.approx(24 / 64)
    ramp = torch.arange(5, dtype=torch.float64).expand(4, 5)[None, None]  # p = x on 4x5
    assert losses.sobel_energy(ramp).item() == pytest.approx(2 * 3 * 1.0)
    assert losses.sobel_energy(torch.ones((1, 2, 4, 4))).abs().max().item() == 0.0


def test_alpha_mixes_risk_and_smoothness():
    gen = torch.Generator().manual_seed(3)
    p = _random_maps(gen, (2, 2, 6, 5))
    oks = _oks_maps(np.full((2, 2, 2), 1.5), 6, 5)
    w = torch.tensor([[1.0, 0.5], [0.0, 1.0]], dtype=torch.float64)
    risk, smooth = losses.oks_risk(p, oks, w), losses.smoothness_loss(p, w)
    assert losses.prob_map_loss(p, oks, w, alpha=0.0).item() == risk.item()
    assert losses.prob_map_loss(p, oks, w, alpha=1.0).item() == pytest.approx(smooth.item())
    assert losses.prob_map_loss(p, oks, w).item() == pytest.approx(0.95 * risk.item() + 0.05 * smooth.item())


def test_bce_hand_values():
    pred = torch.tensor([[0.8, 0.3]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w = torch.ones((1, 2), dtype=torch.float64)
    expected = (-math.log(0.8) - math.log(0.7)) / 2
    assert losses.presence_loss(pred, target, w).item() == pytest.approx(expected)
    assert losses.presence_loss(torch.logit(pred), target, w, from_logits=True).item() == pytest.approx(expected)


def test_visibility_balanced_hand_values():
    pred = torch.tensor([[0.9, 0.9, 0.9, 0.2]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    w = torch.ones((1, 4), dtype=torch.float64)
    # each class half, not 3:1 as plain BCE would weigh them
    expected = 0.5 * -math.log(0.9) + 0.5 * -math.log(0.8)
    assert losses.visibility_loss(pred, target, w).item() == pytest.approx(expected)
    # one class only: that class's mean
    only_visible = losses.visibility_loss(torch.tensor([[0.9, 0.6]]), torch.ones((1, 2)), torch.ones((1, 2)))
    assert only_visible.item() == pytest.approx((-math.log(0.9) - math.log(0.6)) / 2, rel=1e-6)
    # a zero-weighted keypoint of the other class does not make that class present
    w2 = torch.tensor([[1.0, 1.0, 1.0, 0.0]], dtype=torch.float64)
    assert losses.visibility_loss(pred, target, w2).item() == pytest.approx(-math.log(0.9))


def test_oks_quality_hand_value_and_decoded_oks():
    pred = torch.tensor([[0.5, 1.0]], dtype=torch.float64)
    target = torch.tensor([[0.7, 0.2]], dtype=torch.float64)
    assert losses.oks_quality_loss(pred, target, torch.ones((1, 2))).item() == pytest.approx(0.34)

    gt = np.array([[[10.0, 20.0], [5.0, 5.0]]])
    dec = np.array([[[10.0, 20.0], [8.0, 9.0]]])
    sig = np.array([0.05, 0.1])
    oks = losses.decoded_oks(dec, gt, np.array([400.0]), sigmas=sig)
    np.testing.assert_allclose(oks, keypoint_oks(np.array([[0.0, 25.0]]), 400.0, sig))
    assert oks[0, 0] == 1.0
    out = losses.decoded_oks(torch.tensor(dec, dtype=torch.float32, requires_grad=True),
                             torch.tensor(gt), torch.tensor([400.0]), sigmas=sig)
    assert out.dtype == torch.float32 and not out.requires_grad
    np.testing.assert_allclose(out.numpy(), oks, rtol=1e-6)


# ---------------------------------------------------------------------------------- risk optimum

@settings(max_examples=40, deadline=None)
@given(st.integers(0, 3), st.integers(0, 4), st.integers(0, 2**31 - 1))
def test_risk_is_minimised_by_mass_on_gt_pixel(gx, gy, seed):
    gen = torch.Generator().manual_seed(seed)
    oks = _oks_maps([[[gx, gy]]], 5, 4)
    p = _random_maps(gen, (1, 1, 5, 4))
    delta = torch.zeros_like(p)
    delta[0, 0, gy, gx] = 1.0
    w = torch.ones((1, 1), dtype=torch.float64)
    assert losses.oks_risk(delta, oks, w).item() == pytest.approx(0.0, abs=1e-12)
    assert losses.oks_risk(p, oks, w).item() > losses.oks_risk(delta, oks, w).item()


def test_minimising_risk_moves_mass_to_gt_pixel():
    torch.manual_seed(0)
    logits = torch.zeros((1, 1, 5, 4), dtype=torch.float64, requires_grad=True)
    oks = _oks_maps([[[3.0, 1.0]]], 5, 4)
    opt = torch.optim.Adam([logits], lr=0.3)
    for _ in range(150):
        opt.zero_grad()
        p = torch.softmax(logits.flatten(2), -1).view_as(logits)
        losses.oks_risk(p, oks, torch.ones((1, 1))).backward()
        opt.step()
    p = torch.softmax(logits.flatten(2), -1).view_as(logits)
    assert p[0, 0, 1, 3].item() > 0.9


def test_sobel_energy_matches_cv2_per_map():
    import cv2

    gen = torch.Generator().manual_seed(4)
    p = _random_maps(gen, (2, 3, 7, 6))
    energy = losses.sobel_energy(p).numpy()
    for n in range(2):
        for k in range(3):
            m = p[n, k].numpy()
            gx = cv2.Sobel(m, cv2.CV_64F, 1, 0, ksize=3)[1:-1, 1:-1] / 8
            gy = cv2.Sobel(m, cv2.CV_64F, 0, 1, ksize=3)[1:-1, 1:-1] / 8
            assert energy[n, k] == pytest.approx((gx ** 2 + gy ** 2).sum())


def test_numpy_targets_are_accepted():
    p = torch.full((1, 1, 3, 3), 1 / 9, dtype=torch.float32, requires_grad=True)
    oks = np.zeros((1, 1, 3, 3), dtype=np.float64)
    assert losses.oks_risk(p, oks, np.ones((1, 1))).item() == pytest.approx(1.0)
    pred = torch.tensor([[0.5]], requires_grad=True)
    assert losses.presence_loss(pred, np.ones((1, 1)), np.ones((1, 1))).item() == pytest.approx(math.log(2))


# ---------------------------------------------------------------------------------- heatmap baseline + training glue

from probpose_core.codec import ProbMapCodec, gaussian_heatmaps  # noqa: E402
from probpose_core.errors import InputError  # noqa: E402
from probpose_core.models.pose_model import build_model, cnn_config  # noqa: E402

SMALL = {"input_size": (96, 128), "heatmap_size": (24, 32), "embed_dim": 32, "head_channels": 16, "aux_channels": 8}
SMALL_CODEC = ProbMapCodec(input_size=(96, 128), heatmap_size=(24, 32))


def test_heatmap_mse_is_zero_on_a_perfect_prediction_and_a_pixel_mean():
    target = torch.from_numpy(gaussian_heatmaps(np.array([[[5.3, 7.1], [2.0, 3.0]]]), np.ones((1, 2)),
                                                heatmap_size=(12, 16)))
    w = torch.tensor([[1.0, 1.0]])
    assert losses.heatmap_mse_loss(target.clone(), target, w).item() == 0.0
    shifted = target + 0.5  # every pixel off by 0.5: per-keypoint pixel mean 0.25
    assert losses.heatmap_mse_loss(shifted, target, w).item() == pytest.approx(0.25)
    half = target.clone()
    half[0, 1] += 1.0  # keypoint 1 off by 1, weight 3: weighted mean (0 * 1 + 1 * 3) / 4
    assert losses.heatmap_mse_loss(half, target, torch.tensor([[1.0, 3.0]])).item() == pytest.approx(0.75)
    with pytest.raises(InputError, match="do not match"):
        losses.heatmap_mse_loss(target[:, :1], target, w)


def test_heatmap_mse_gradient_only_where_weight_positive():
    gen = torch.Generator().manual_seed(3)
    pred = torch.rand((2, 3, 6, 5), generator=gen, requires_grad=True)
    target = torch.rand((2, 3, 6, 5), generator=gen)
    w = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.0, 1.0]])
    losses.heatmap_mse_loss(pred, target, w).backward()
    per_kp = pred.grad.abs().sum(dim=(-2, -1))
    assert (per_kp[w == 0] == 0).all() and (per_kp[w > 0] > 0).all()


def make_batch(n=4, seed=0, codec=SMALL_CODEC, sigma=2.0):
    """A collated batch as the dataset gives it (torch tensors), built with codec.encode + gaussian_heatmaps."""
    rng = np.random.default_rng(seed)
    w, h = codec.heatmap_size
    iw, ih = codec.input_size
    center = np.tile([[(iw - 1) / 2, (ih - 1) / 2]], (n, 1))  # the crop's own frame: the window is the crop
    scale = np.tile([[float(iw), float(ih)]], (n, 1))
    kpts = rng.uniform([5, 5], [iw - 6, ih - 6], size=(n, 17, 2))
    vis = rng.choice([0, 1, 2, 2, 2], size=(n, 17))
    kpts[:, 0] = [-30.0, 10.0]  # annotated outside the window: presence 0, map weight 0
    vis[:, 0] = 3
    area = np.full(n, 0.53 * iw * ih / 1.25 ** 2)
    targets = codec.encode(kpts, vis, area, center, scale)
    batch = {k: torch.from_numpy(np.asarray(v)) for k, v in targets.items()}
    batch["heatmaps"] = torch.from_numpy(gaussian_heatmaps(targets["keypoints_map"], targets["map_weights"],
                                                           (w, h), sigma))
    batch.update(image=torch.from_numpy(rng.standard_normal((n, 3, ih, iw)).astype(np.float32)),
                 keypoints=torch.from_numpy(kpts), area=torch.from_numpy(area),
                 center=torch.from_numpy(center), scale=torch.from_numpy(scale))
    return batch


@pytest.mark.parametrize("kind", ["probmap", "heatmap"])
def test_training_losses_are_finite_and_backpropagate(kind):
    torch.manual_seed(0)
    model = build_model(cnn_config(map_kind=kind, **SMALL)).train()
    batch = make_batch()
    terms = losses.training_losses(model(batch["image"]), batch, SMALL_CODEC, losses.LossConfig(kind=kind))
    expected = {"probmap": {"map", "presence", "visibility", "oks_quality", "total"},
                "heatmap": {"heatmap", "total"}}[kind]
    assert set(terms) == expected
    assert all(v.ndim == 0 and v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    if kind == "probmap":
        assert terms["total"].item() == pytest.approx(sum(terms[k].item() for k in expected - {"total"}), rel=1e-5)
    terms["total"].backward()
    final = model.head.final_layer.weight.grad
    assert final is not None and torch.isfinite(final).all() and final.abs().sum() > 0
    branch_grad = model.head.probability_layers[-2].weight.grad  # the presence branch's 1x1 conv
    assert (branch_grad is not None and branch_grad.abs().sum() > 0) == (kind == "probmap")


def test_oks_quality_target_is_the_oks_of_the_decoded_point():
    batch = make_batch(n=2, seed=1)
    # maps that put all mass on the GT pixel nearest each keypoint: decoded OKS close to 1
    w, h = SMALL_CODEC.heatmap_size
    xy = np.clip(np.rint(batch["keypoints_map"].numpy()), 0, [w - 1, h - 1]).astype(int)
    maps = np.zeros((2, 17, h, w), np.float32)
    n_idx, k_idx = np.meshgrid(np.arange(2), np.arange(17), indexing="ij")
    maps[n_idx, k_idx, xy[..., 1], xy[..., 0]] = 1.0
    target = losses.decoded_oks_target(torch.from_numpy(maps), batch, SMALL_CODEC)
    points, _ = SMALL_CODEC.decode(maps, batch["center"].numpy(), batch["scale"].numpy(), area=batch["area"].numpy())
    expected = losses.decoded_oks(points, batch["keypoints"].numpy(), batch["area"].numpy())
    np.testing.assert_allclose(target, expected)
    inside = batch["map_weights"].numpy() > 0
    assert target[inside].min() > 0.8  # rounding to the pixel grid costs a little OKS, not more


def test_training_losses_weights_scale_terms_and_zero_weights_drop_them():
    torch.manual_seed(1)
    model = build_model(cnn_config(**SMALL)).train()
    batch = make_batch(n=2, seed=2)
    out = model(batch["image"])
    base = losses.training_losses(out, batch, SMALL_CODEC, losses.LossConfig())
    cfg = losses.LossConfig(map_weight=2.0, presence_weight=0.0, visibility_weight=0.5, oks_quality_weight=0.0)
    scaled = losses.training_losses(out, batch, SMALL_CODEC, cfg)
    want = 2 * base["map"] + 0.5 * base["visibility"]
    assert scaled["total"].item() == pytest.approx(want.item(), rel=1e-5)
    pure_risk = losses.training_losses(out, batch, SMALL_CODEC, losses.LossConfig(smoothness_alpha=0.0))
    expect_risk = losses.oks_risk(out["prob_maps"], batch["oks_maps"], batch["map_weights"])
    assert pure_risk["map"].item() == pytest.approx(expect_risk.item(), rel=1e-6)


def test_training_losses_name_what_is_missing():
    torch.manual_seed(0)
    batch = make_batch(n=2)
    probmap_out = build_model(cnn_config(**SMALL))(batch["image"])
    heatmap_out = build_model(cnn_config(map_kind="heatmap", **SMALL))(batch["image"])
    with pytest.raises(InputError, match="map_kind 'heatmap'"):
        losses.training_losses(probmap_out, batch, SMALL_CODEC, losses.LossConfig(kind="heatmap"))
    with pytest.raises(InputError, match="map_kind 'probmap'"):
        losses.training_losses(heatmap_out, batch, SMALL_CODEC, losses.LossConfig(kind="probmap"))
    no_heatmaps = {k: v for k, v in batch.items() if k != "heatmaps"}
    with pytest.raises(InputError, match="heatmap_sigma"):
        losses.training_losses(heatmap_out, no_heatmaps, SMALL_CODEC, losses.LossConfig(kind="heatmap"))
    with pytest.raises(InputError, match="oks_maps"):
        losses.training_losses(probmap_out, {k: v for k, v in batch.items() if k != "oks_maps"}, SMALL_CODEC,
                               losses.LossConfig())
    with pytest.raises(InputError, match="double-heatmap"):
        losses.training_losses(dict(probmap_out, wide_prob_maps=probmap_out["prob_maps"]), batch, SMALL_CODEC,
                               losses.LossConfig())
    with pytest.raises(ValueError, match="loss kind"):
        losses.LossConfig(kind="mse")
    with pytest.raises(ValueError, match="presence_weight"):
        losses.LossConfig(presence_weight=-1)


def test_training_losses_under_autocast_are_float32():
    torch.manual_seed(0)
    model = build_model(cnn_config(**SMALL)).train()
    batch = make_batch(n=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(batch["image"])
        terms = losses.training_losses(out, batch, SMALL_CODEC, losses.LossConfig())
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    terms["total"].backward()


@pytest.mark.parametrize("kind", ["probmap", "heatmap"])
def test_optimiser_steps_on_one_batch_reduce_the_total(kind):
    torch.manual_seed(0)
    model = build_model(cnn_config(map_kind=kind, drop_path=0.0, **SMALL)).train()
    batch = make_batch(n=4, seed=5)
    config = losses.LossConfig(kind=kind)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)  # measured: total x0.64 (probmap), x0.55 (heatmap)
    totals = []
    for _ in range(15):
        terms = losses.training_losses(model(batch["image"]), batch, SMALL_CODEC, config)
        opt.zero_grad()
        terms["total"].backward()
        opt.step()
        totals.append(terms["total"].item())
    assert min(totals[-3:]) < 0.8 * totals[0], totals


def test_training_losses_gradients_flow_only_where_weights_are_positive():
    batch = make_batch(n=3, seed=4)
    gen = torch.Generator().manual_seed(0)
    n, k, h, w = batch["oks_maps"].shape
    maps = torch.rand((n, k, h, w), generator=gen)
    outputs = {"prob_maps": (maps / maps.sum(dim=(-2, -1), keepdim=True)).requires_grad_(),
               **{key: torch.rand((n, k), generator=gen).clamp(0.05, 0.95).requires_grad_()
                  for key in ("presence", "visibility", "oks_quality")}}
    losses.training_losses(outputs, batch, SMALL_CODEC, losses.LossConfig())["total"].backward()
    map_w, kp_w = batch["map_weights"] > 0, batch["keypoint_weights"] > 0
    assert (map_w != kp_w).any()  # some keypoints are annotated but outside the window
    for key, weight in (("prob_maps", map_w), ("oks_quality", map_w), ("presence", kp_w), ("visibility", kp_w)):
        grad = outputs[key].grad.abs()
        grad = grad.sum(dim=(-2, -1)) if grad.ndim == 4 else grad
        assert (grad[~weight] == 0).all() and (grad[weight] > 0).all(), key
    heat = {"heatmaps": torch.rand((n, k, h, w), generator=gen, requires_grad=True)}
    losses.training_losses(heat, batch, SMALL_CODEC, losses.LossConfig(kind="heatmap"))["total"].backward()
    grad = heat["heatmaps"].grad.abs().sum(dim=(-2, -1))
    assert (grad[~map_w] == 0).all() and (grad[map_w] > 0).all()


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2 ** 31 - 1), n=st.integers(1, 3), k=st.integers(1, 4))
def test_heatmap_mse_matches_a_direct_numpy_sum(seed, n, k):
    rng = np.random.default_rng(seed)
    pred, target = rng.normal(size=(2, n, k, 5, 4))
    weights = rng.choice([0.0, 0.5, 1.0, 2.0], size=(n, k))
    got = losses.heatmap_mse_loss(torch.from_numpy(pred), torch.from_numpy(target), torch.from_numpy(weights))
    per_kp = ((pred - target) ** 2).mean(axis=(-2, -1))
    want = (weights * per_kp).sum() / weights.sum() if weights.sum() > 0 else 0.0
    assert got.item() == pytest.approx(want, rel=1e-9, abs=1e-12)
