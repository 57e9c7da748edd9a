import math

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probpose_core import calibration as cal
from probpose_core import geometry
from probpose_core.errors import InputError

SMALL = np.array([[0.5, 0.3], [0.2, 0.0]])  # (H=2, W=2)


def _synthetic(n, k, h, w, true_t, rng):
    """Quadratic-bump logits and GT pixels drawn from sparsemax(logits / true_t)."""
    ys, xs = np.mgrid[0:h, 0:w]
    cx = rng.uniform(2, w - 3, (n, k, 1, 1))
    cy = rng.uniform(2, h - 3, (n, k, 1, 1))
    spread = rng.uniform(1.0, 3.0, (n, k, 1, 1))
    gain = rng.uniform(0.5, 2.0, (n, k, 1, 1))
    logits = -gain * ((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * spread ** 2)
    logits = logits + 0.05 * rng.standard_normal((n, k, h, w))
    maps = cal.temperature_maps(logits, true_t).reshape(n * k, h * w)
    cdf = np.cumsum(maps / maps.sum(axis=1, keepdims=True), axis=1)
    index = np.minimum((cdf < rng.uniform(size=(n * k, 1))).sum(axis=1), h * w - 1)  # inverse-CDF draw
    gt = np.stack([index % w, index // w], axis=-1).reshape(n, k, 2).astype(np.float64)
    return logits, gt


# ------------------------------------------------------------------------------ levels, coverage

def test_credible_level_hand_values():
    maps = np.broadcast_to(SMALL, (5, 2, 2))
    gt = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [5, 5]], dtype=np.float64)
    np.testing.assert_allclose(cal.credible_level(maps, gt, u=0.5), [0.25, 0.65, 0.9, 1.0, np.nan])
    np.testing.assert_allclose(cal.credible_level(maps, gt, u=1.0), [0.5, 0.8, 1.0, 1.0, np.nan])
    np.testing.assert_allclose(cal.credible_level(maps, gt, u=0.0), [0.0, 0.5, 0.8, 1.0, np.nan])
    # ties: the two 0.4 pixels share their group mass 0.8
    tied = np.array([[0.4, 0.4], [0.2, 0.0]])
    assert cal.credible_level(tied, np.array([1.0, 0.0]), u=0.5) == pytest.approx(0.4)
    # rounding to the nearest pixel centre
    assert cal.credible_level(SMALL, np.array([0.6, 0.4])) == pytest.approx(0.65)


def test_coverage_and_error_hand_values():
    levels = np.array([0.1, 0.4, 0.6, np.nan])
    weights = np.array([1.0, 1.0, 2.0, 5.0])
    np.testing.assert_allclose(cal.coverage_curve(levels, weights, grid=[0.05, 0.5, 0.7]), [0, 0.5, 1.0])
    assert cal.calibration_error(levels, weights, grid=[0.05, 0.5, 0.7]) == pytest.approx((0.05 + 0 + 0.3) / 3)
    assert np.all(np.isnan(cal.coverage_curve(levels, np.zeros(4))))
    # intervals: each keypoint counts with the fraction of [lo, hi] below q
    cov = cal.coverage_curve([0.2, 0.5], None, grid=[0.1, 0.4, 0.5, 0.7], levels_hi=[0.6, 0.5])
    np.testing.assert_allclose(cov, [0.0, 0.25, 0.375 + 0.5, 1.0])
    lo, hi = cal.credible_interval(np.broadcast_to(SMALL, (3, 2, 2)), np.array([[0, 0], [1, 1], [-3, 0]]))
    np.testing.assert_allclose(lo, [0.0, 1.0, np.nan])
    np.testing.assert_allclose(hi, [0.5, 1.0, np.nan])
    with pytest.raises(InputError):
        cal.coverage_curve(levels, np.ones(3))


def test_levels_of_self_sampled_points_are_uniform(rng):
    maps = rng.dirichlet(np.full(20, 0.3), size=4000).reshape(4000, 4, 5)
    index = np.array([rng.choice(20, p=m.ravel()) for m in maps])
    gt = np.stack([index % 5, index // 5], axis=-1)
    levels = cal.credible_level(maps, gt, u=rng.uniform(size=4000))
    fine = np.linspace(0.01, 0.99, 99)
    assert cal.calibration_error(levels, grid=fine) < 0.02
    lo, hi = cal.credible_interval(maps, gt)  # the expectation over u: no draws needed
    assert cal.calibration_error(lo, grid=fine, levels_hi=hi) < 0.02
    assert cal.calibration_error(hi, grid=fine) > 0.05  # the plain upper end is biased
    # against a sharper (overconfident) map the same points look miscalibrated
    sharp = maps ** 3 / (maps ** 3).sum(axis=(1, 2), keepdims=True)
    assert cal.calibration_error(cal.credible_level(sharp, gt, u=rng.uniform(size=4000))) > 0.05


@pytest.mark.parametrize("true_t", [0.4, 2.0])
def test_fit_temperature_recovers_true_temperature(true_t):
    rng = np.random.default_rng(int(true_t * 10))
    logits, gt = _synthetic(150, 8, 16, 12, true_t, rng)
    weights = np.ones((150, 8))
    # weight-0 keypoints carry garbage ground truth and must not matter
    weights[:, 6:] = 0
    gt[:, 6:] = rng.uniform(0, 12, (150, 2, 2))
    fitted = cal.fit_temperature(logits, gt, weights)
    assert fitted == pytest.approx(true_t, rel=0.1)
    assert cal.temperature_error(logits, gt, fitted, weights) < cal.temperature_error(logits, gt, 1.0, weights)


def test_fit_temperature_rejects_bad_shapes():
    with pytest.raises(InputError):
        cal.fit_temperature(np.zeros((2, 3, 4, 4)), np.zeros((2, 2, 2)))
    with pytest.raises(InputError):
        cal.fit_temperature(np.zeros((3, 4, 4)), np.zeros((3, 2)))


# ------------------------------------------------------------------------------ presence

def test_reliability_ece_brier_hand_values():
    prob = np.array([0.05, 0.15, 0.95, 1.0])
    outcome = np.array([0, 1, 1, 1])
    confidence, accuracy, counts = cal.reliability_curve(prob, outcome, bins=10)
    np.testing.assert_array_equal(counts, [1, 1, 0, 0, 0, 0, 0, 0, 0, 2])
    np.testing.assert_allclose(confidence[[0, 1, 9]], [0.05, 0.15, 0.975])
    np.testing.assert_allclose(accuracy[[0, 1, 9]], [0.0, 1.0, 1.0])
    assert np.isnan(confidence[2]) and np.isnan(accuracy[5])
    assert cal.expected_calibration_error(prob, outcome) == pytest.approx((0.05 + 0.85 + 2 * 0.025) / 4)
    assert cal.brier_score(prob, outcome) == pytest.approx((0.05 ** 2 + 0.85 ** 2 + 0.05 ** 2) / 4)
    assert cal.expected_calibration_error(np.array([0.3, 0.3, 0.3]), np.array([1, 0, 0]), bins=5) == \
        pytest.approx(abs(1 / 3 - 0.3))
    with pytest.raises(InputError):
        cal.brier_score([0.5, 1.2], [0, 1])
    with pytest.raises(InputError):
        cal.reliability_curve([0.5], [0, 1])


# ------------------------------------------------------------------------------ credible regions

def test_credible_mask_hand_values():
    assert cal.credible_mask(SMALL, 0.0).sum() == 0
    np.testing.assert_array_equal(cal.credible_mask(SMALL, 0.5), [[True, False], [False, False]])
    np.testing.assert_array_equal(cal.credible_mask(SMALL, 0.6), [[True, True], [False, False]])
    np.testing.assert_array_equal(cal.credible_mask(SMALL, 1.0), [[True, True], [True, False]])
    batch = cal.credible_mask(np.stack([SMALL, SMALL.T]), 0.6)
    assert batch.shape == (2, 2, 2) and batch[1, 1, 0] and not batch[1, 0, 1]


maps_strategy = hnp.arrays(np.float64, (4, 5), elements=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.7]))


@settings(max_examples=80, deadline=None)
@given(maps_strategy, st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_credible_mask_is_the_hpd_set_and_matches_levels(raw, q, q2):
    assume(raw.sum() > 0)
    p = raw / raw.sum()
    mask = cal.credible_mask(p, q)
    more_probable = np.array([[p[p > v].sum() for v in row] for row in p])
    assume(np.all(np.abs(more_probable - q) > 1e-9))
    # in the region <=> less than q of the mass is more probable (and p > 0)
    np.testing.assert_array_equal(mask, (more_probable < q) & (p > 0))
    assert p[mask].sum() >= q - 1e-12  # holds q of the mass
    if mask.any():  # ... and dropping its least probable pixels leaves less than q
        assert p[mask & (p > p[mask].min())].sum() < q
    # the credible level with u=0 is exactly the boundary
    ys, xs = np.mgrid[0:4, 0:5]
    levels = cal.credible_level(np.broadcast_to(p, (20, 4, 5)), np.stack([xs.ravel(), ys.ravel()], -1), u=0.0)
    np.testing.assert_array_equal(mask.ravel(), (levels < q) & (p.ravel() > 0))
    # nested in q
    lo, hi = sorted((q, q2))
    assert np.all(cal.credible_mask(p, lo) <= cal.credible_mask(p, hi))


def test_credible_polygons_in_image_coordinates():
    h, w = 16, 12
    p = np.zeros((h, w))
    p[3:6, 2:5] = 1.0  # 3x3 block, 9 / 9.5 of the mass
    p[10, 8] = 0.5  # lone pixel, the rest
    p /= p.sum()
    center, scale = np.array([100.0, 200.0]), np.array([60.0, 80.0])
    polys = cal.credible_polygons(p, 0.95, center, scale)
    assert len(polys) == 2
    block_hm = geometry.image_to_heatmap(polys[0], center, scale, (w, h))
    assert {tuple(v) for v in np.rint(block_hm).astype(int)} == {(2, 3), (4, 3), (4, 5), (2, 5)}
    np.testing.assert_allclose(polys[1], geometry.heatmap_to_image(np.array([[8.0, 10.0]]), center, scale, (w, h)))
    assert len(cal.credible_polygons(p, 0.5, center, scale)) == 1
    with pytest.raises(InputError):
        cal.credible_polygons(np.zeros((2, 4, 4)), 0.5, center, scale)


def test_covariance_ellipse_hand_values_and_batch(rng):
    h, w = 16, 12
    p = np.zeros((h, w))
    p[3, 2] = p[3, 4] = 0.5  # mean (3, 3), var_x 1, var_y 0
    center, scale = np.array([50.0, 60.0]), np.array([33.0, 45.0])
    mean, cov = cal.covariance_ellipse(p, center, scale)
    kx, ky = scale[0] / (w - 1), scale[1] / (h - 1)
    np.testing.assert_allclose(mean, geometry.heatmap_to_image(np.array([3.0, 3.0]), center, scale, (w, h)))
    np.testing.assert_allclose(cov, [[kx ** 2, 0], [0, 0]], atol=1e-12)

    maps = rng.random((3, 4, h, w)) ** 4
    centers, scales = rng.uniform(0, 500, (3, 2)), rng.uniform(20, 200, (3, 2))
    means, covs = cal.covariance_ellipse(maps, centers, scales)
    assert means.shape == (3, 4, 2) and covs.shape == (3, 4, 2, 2)
    ys, xs = np.mgrid[0:h, 0:w]
    for n in range(3):
        for k in range(4):
            m1, c1 = cal.covariance_ellipse(maps[n, k], centers[n], scales[n])
            np.testing.assert_allclose(means[n, k], m1)
            np.testing.assert_allclose(covs[n, k], c1)
            pts = geometry.heatmap_to_image(np.stack([xs.ravel(), ys.ravel()], -1), centers[n], scales[n], (w, h))
            ref = np.cov(pts.T, aweights=maps[n, k].ravel(), bias=True)
            np.testing.assert_allclose(c1, ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError):
        cal.covariance_ellipse(maps, centers[:2], scales[:2])


def test_ellipse_axes():
    q = 1 - math.exp(-0.5)  # radius^2 = 1
    axes, angle = cal.ellipse_axes(np.diag([4.0, 1.0]), q)
    np.testing.assert_allclose(axes, [2.0, 1.0])
    assert angle % 180 == pytest.approx(0.0, abs=1e-9)
    axes, angle = cal.ellipse_axes(np.array([[[1.0, 0.0], [0.0, 9.0]]]), q)
    np.testing.assert_allclose(axes, [[3.0, 1.0]])
    assert abs(angle[0]) == pytest.approx(90.0)


# ------------------------------------------------------------------------------ plots

def test_plots_are_written(tmp_path, rng):
    prob = rng.uniform(size=500)
    outcome = (rng.uniform(size=500) < prob).astype(float)
    grid = cal.Q_GRID
    curves = {"before": grid ** 2, "after (T=1.3)": grid}
    paths = [cal.plot_coverage_curve(curves, tmp_path / "cov" / "coverage.png", grid),
             cal.plot_coverage_curve(grid ** 0.5, tmp_path / "single.png", grid),
             cal.plot_reliability(prob, outcome, tmp_path / "reliability.png")]
    for path in paths:
        assert path.exists() and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 5000
        image = cv2.imread(str(path))
        assert image is not None and image.shape[0] > 200 and image.std() > 10
