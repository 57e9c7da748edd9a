import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core import losses
from probpose_core.evaluation.oks import keypoint_oks


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
