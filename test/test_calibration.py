
import cv2
import numpy as np
import pytest

from probpose_core import calibration as cal
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
