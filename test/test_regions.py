import math

import cv2
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from probpose_core import calibration as cal
from probpose_core import geometry
from probpose_core import regions
from probpose_core.errors import InputError

SMALL = np.array([[0.5, 0.3], [0.2, 0.0]])  # (H=2, W=2)


def test_credible_mask_hand_values():
    assert regions.credible_mask(SMALL, 0.0).sum() == 0
    np.testing.assert_array_equal(regions.credible_mask(SMALL, 0.5), [[True, False], [False, False]])
    np.testing.assert_array_equal(regions.credible_mask(SMALL, 0.6), [[True, True], [False, False]])
    np.testing.assert_array_equal(regions.credible_mask(SMALL, 1.0), [[True, True], [True, False]])
    batch = regions.credible_mask(np.stack([SMALL, SMALL.T]), 0.6)
    assert batch.shape == (2, 2, 2) and batch[1, 1, 0] and not batch[1, 0, 1]


maps_strategy = hnp.arrays(np.float64, (4, 5), elements=st.sampled_from([0.0, 0.0, 0.1, 0.25, 0.5, 1.0, 2.0, 3.7]))


@settings(max_examples=80, deadline=None)
@given(maps_strategy, st.floats(0.01, 1.0), st.floats(0.01, 1.0))
def test_credible_mask_is_the_hpd_set_and_matches_levels(raw, q, q2):
    assume(raw.sum() > 0)
    p = raw / raw.sum()
    mask = regions.credible_mask(p, q)
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
    assert np.all(regions.credible_mask(p, lo) <= regions.credible_mask(p, hi))


def test_credible_polygons_in_image_coordinates():
    h, w = 16, 12
    p = np.zeros((h, w))
    p[3:6, 2:5] = 1.0  # 3x3 block, 9 / 9.5 of the mass
    p[10, 8] = 0.5  # lone pixel, the rest
    p /= p.sum()
    center, scale = np.array([100.0, 200.0]), np.array([60.0, 80.0])
    polys = regions.credible_polygons(p, 0.95, center, scale)
    assert len(polys) == 2
    block_hm = geometry.image_to_heatmap(polys[0], center, scale, (w, h))
    assert {tuple(v) for v in np.rint(block_hm).astype(int)} == {(2, 3), (4, 3), (4, 5), (2, 5)}
    np.testing.assert_allclose(polys[1], geometry.heatmap_to_image(np.array([[8.0, 10.0]]), center, scale, (w, h)))
    assert len(regions.credible_polygons(p, 0.5, center, scale)) == 1
    with pytest.raises(InputError):
        regions.credible_polygons(np.zeros((2, 4, 4)), 0.5, center, scale)


def test_covariance_ellipse_hand_values_and_batch(rng):
    h, w = 16, 12
    p = np.zeros((h, w))
    p[3, 2] = p[3, 4] = 0.5  # mean (3, 3), var_x 1, var_y 0
    center, scale = np.array([50.0, 60.0]), np.array([33.0, 45.0])
    mean, cov = regions.covariance_ellipse(p, center, scale)
    kx = scale[0] / (w - 1)
    np.testing.assert_allclose(mean, geometry.heatmap_to_image(np.array([3.0, 3.0]), center, scale, (w, h)))
    np.testing.assert_allclose(cov, [[kx ** 2, 0], [0, 0]], atol=1e-12)

    maps = rng.random((3, 4, h, w)) ** 4
    centers, scales = rng.uniform(0, 500, (3, 2)), rng.uniform(20, 200, (3, 2))
    means, covs = regions.covariance_ellipse(maps, centers, scales)
    assert means.shape == (3, 4, 2) and covs.shape == (3, 4, 2, 2)
    ys, xs = np.mgrid[0:h, 0:w]
    for n in range(3):
        for k in range(4):
            m1, c1 = regions.covariance_ellipse(maps[n, k], centers[n], scales[n])
            np.testing.assert_allclose(means[n, k], m1)
            np.testing.assert_allclose(covs[n, k], c1)
            pts = geometry.heatmap_to_image(np.stack([xs.ravel(), ys.ravel()], -1), centers[n], scales[n], (w, h))
            ref = np.cov(pts.T, aweights=maps[n, k].ravel(), bias=True)
            np.testing.assert_allclose(c1, ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError):
        regions.covariance_ellipse(maps, centers[:2], scales[:2])


def test_ellipse_axes():
    q = 1 - math.exp(-0.5)  # radius^2 = 1
    axes, angle = regions.ellipse_axes(np.diag([4.0, 1.0]), q)
    np.testing.assert_allclose(axes, [2.0, 1.0])
    assert angle % 180 == pytest.approx(0.0, abs=1e-9)
    axes, angle = regions.ellipse_axes(np.array([[[1.0, 0.0], [0.0, 9.0]]]), q)
    np.testing.assert_allclose(axes, [[3.0, 1.0]])
    assert abs(angle[0]) == pytest.approx(90.0)


def test_many_maps_at_once_equal_each_map_on_its_own(rng):
    for _ in range(50):
        maps = rng.uniform(size=(5, 6, 5)) * (rng.uniform(size=(5, 6, 5)) < rng.uniform(0.1, 1.0))
        maps[1] = 0.0  # an all-zero map among others: empty region
        maps[2] = np.round(maps[2], 1)  # ties at the boundary
        for dtype in (np.float64, np.float32):
            p = maps.astype(dtype)
            for q in (0.1, 0.5, 0.9, 1.0):
                batched = regions.credible_mask(p, q)
                for i in range(len(p)):
                    np.testing.assert_array_equal(regions.credible_mask(p[i], q), batched[i])
    assert not regions.credible_mask(np.zeros((3, 3)), 0.5).any()


def _reference_polygons(p, q, center, scale):
    """One map at a time, straight from the definition (cv2 contours of the mask, largest first)."""
    contours, _ = cv2.findContours(regions.credible_mask(p, q).astype(np.uint8), cv2.RETR_EXTERNAL,
                                   cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=lambda c: (-cv2.contourArea(c), -len(c)))
    return [geometry.heatmap_to_image(c.reshape(-1, 2).astype(np.float64), center, scale, (p.shape[1], p.shape[0]))
            for c in contours]


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(2, 9), st.integers(2, 9)),
                  elements=st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.3, 1.0, 2.5])),
       st.sampled_from([0.2, 0.5, 0.9, 1.0]), st.integers(0, 2**31 - 1))
def test_polygon_batch_equals_maps_one_by_one(maps, q, seed):
    """Stacking the masks for one findContours never joins or splits parts, also at map edges."""
    rng = np.random.default_rng(seed)
    centers, scales = rng.uniform(0, 400, (len(maps), 2)), rng.uniform(20, 200, (len(maps), 2))
    batch = regions.credible_polygons_batch(maps, q, centers, scales)
    assert len(batch) == len(maps)
    for i, p in enumerate(maps):
        expected = _reference_polygons(p, q, centers[i], scales[i])
        assert len(batch[i]) == len(expected)
        for got, want in zip(batch[i], expected):
            np.testing.assert_array_equal(got, want)
        single = regions.credible_polygons(p, q, centers[i], scales[i])
        assert len(single) == len(expected) and all(np.array_equal(a, b) for a, b in zip(single, expected))


def test_keypoint_regions_only_for_present_keypoints(rng):
    maps = rng.uniform(size=(2, 3, 8, 6)) * (rng.uniform(size=(2, 3, 8, 6)) < 0.3)
    maps[..., 4, 3] += 1.0
    present = np.array([[True, False, True], [False, False, True]])
    centers, scales = np.array([[50.0, 60.0], [200.0, 100.0]]), np.array([[40.0, 80.0], [60.0, 90.0]])
    got = regions.keypoint_regions(maps, present, centers, scales, (0.5, 0.9))
    assert [[set(d) for d in row] for row in got] == [[{0.5, 0.9}, set(), {0.5, 0.9}], [set(), set(), {0.5, 0.9}]]
    for n, k in zip(*np.nonzero(present)):
        for q in (0.5, 0.9):
            want = _reference_polygons(maps[n, k], q, centers[n], scales[n])
            assert len(got[n][k][q]) == len(want)
            assert all(np.array_equal(a, b) for a, b in zip(got[n][k][q], want))
    assert regions.keypoint_regions(maps, np.zeros((2, 3), bool), centers, scales, (0.5,)) == [[{}] * 3] * 2
    with pytest.raises(InputError):
        regions.credible_polygons_batch(maps, 0.5, centers, scales)  # (N, K, H, W): flatten first
