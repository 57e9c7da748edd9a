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
    block_hm = geometry.image_to_heatmap(polys[0], center, scale, (w, h))  # along the cells' outer edges
    assert {tuple(v) for v in np.round(block_hm, 9)} == {(1.5, 2.5), (4.5, 2.5), (4.5, 5.5), (1.5, 5.5)}
    lone_hm = geometry.image_to_heatmap(polys[1], center, scale, (w, h))
    assert {tuple(v) for v in np.round(lone_hm, 9)} == {(7.5, 9.5), (8.5, 9.5), (8.5, 10.5), (7.5, 10.5)}
    kx, ky = scale[0] / (w - 1), scale[1] / (h - 1)
    assert cv2.contourArea(polys[1].astype(np.float32)) == pytest.approx(kx * ky, rel=1e-5)  # a one-pixel region has area
    assert len(regions.credible_polygons(p, 0.5, center, scale)) == 1
    with pytest.raises(InputError):
        regions.credible_polygons(np.zeros((2, 4, 4)), 0.5, center, scale)


def _holes(mask):
    """Cells outside ``mask`` that 4-connected background cannot reach from beyond the border."""
    h, w = mask.shape
    background = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    flood = np.zeros((h + 4, w + 4), np.uint8)
    cv2.floodFill(background, flood, (0, 0), 2, flags=4)
    return (background[1:-1, 1:-1] == 1)


@settings(max_examples=60, deadline=None)
@given(hnp.arrays(np.float64, st.tuples(st.integers(2, 9), st.integers(2, 9)),
                  elements=st.sampled_from([0.0, 0.0, 0.0, 0.1, 0.3, 1.0, 2.5])),
       st.sampled_from([0.2, 0.5, 0.9, 1.0]), st.integers(0, 2**31 - 1))
def test_point_in_outline_agrees_with_the_pixel_mask(p, q, seed):
    """Every cell centre is inside an outline (image coordinates, cv2.pointPolygonTest) exactly
    when its pixel is in the region or in a hole the region encloses; no centre lies ON an outline."""
    rng = np.random.default_rng(seed)
    center, scale = rng.uniform(0, 400, 2), rng.uniform(20, 200, 2)
    h, w = p.shape
    mask = regions.credible_mask(p, q)
    polys = regions.credible_polygons(p, q, center, scale)
    ys, xs = np.mgrid[0:h, 0:w]
    centres = geometry.heatmap_to_image(np.stack([xs.ravel(), ys.ravel()], -1).astype(np.float64), center, scale, (w, h))
    tests = np.array([[cv2.pointPolygonTest(poly.astype(np.float32), (float(x), float(y)), False) for x, y in centres]
                      for poly in polys]).reshape(len(polys), h, w) if polys else np.full((1, h, w), -1.0)
    assert not (tests == 0).any()
    np.testing.assert_array_equal((tests > 0).any(axis=0), mask | _holes(mask))


def test_dilated_region_holds_every_point_within_the_radius(rng):
    h, w = 10, 12
    p = np.zeros((h, w))
    p[4, 5] = 1.0
    for radius in (0.0, 0.7, 2.3):
        [mask] = regions.region_masks(p[None], 0.5, radius)
        u = mask.shape[0] // h
        assert mask.shape == (h * u, w * u)
        pts = rng.uniform(-0.5, 11.4, (4000, 2))
        dist = np.hypot(np.maximum(np.abs(pts[:, 0] - 5) - 0.5, 0), np.maximum(np.abs(pts[:, 1] - 4) - 0.5, 0))
        ix, iy = regions.cell_index(pts, (w, h), u)
        ok = iy < h * u
        inside = mask[iy[ok], ix[ok]]
        assert inside[dist[ok] <= radius].all()  # conservative: all of the dilated cell is in
        assert not inside[dist[ok] > radius + 2 * np.sqrt(2) / u].any()  # ... and not much more
    with pytest.raises(InputError):
        regions.region_masks(p[None], 0.5, -1.0)


def test_dilated_outline_agrees_with_its_sub_cell_mask():
    """The outline of a grown region (drawn on its own crop) holds exactly the sub-cells of the
    full-size mask: point-in-outline at every sub-cell centre, in image coordinates."""
    h, w = 12, 10
    p = np.zeros((h, w))
    p[3:5, 2:4], p[8, 7] = 1.0, 0.5  # two parts that merge once grown
    center, scale = np.array([60.0, 80.0]), np.array([40.0, 50.0])
    for radius in (0.6, 1.9):
        [mask] = regions.region_masks(p[None], 1.0, radius)
        u = mask.shape[0] // h
        polys = regions.credible_polygons(p, 1.0, center, scale, dilation=radius)
        fy, fx = np.mgrid[0:h * u, 0:w * u]
        pts = np.stack([(fx.ravel() + 0.5) / u - 0.5, (fy.ravel() + 0.5) / u - 0.5], -1)
        image = geometry.heatmap_to_image(pts, center, scale, (w, h))
        tests = np.array([[cv2.pointPolygonTest(poly.astype(np.float32), (float(x), float(y)), False)
                           for x, y in image] for poly in polys])
        assert not (tests == 0).any()
        inside = (tests > 0).any(axis=0).reshape(mask.shape)
        np.testing.assert_array_equal(inside, mask | _holes(mask))


def test_covariance_ellipse_hand_values_and_batch(rng):
    h, w = 16, 12
    p = np.zeros((h, w))
    p[3, 2] = p[3, 4] = 0.5  # mean (3, 3), var_x 1, var_y 0, plus a unit cell's 1/12 each
    center, scale = np.array([50.0, 60.0]), np.array([33.0, 45.0])
    mean, cov = regions.covariance_ellipse(p, center, scale)
    kx, ky = scale[0] / (w - 1), scale[1] / (h - 1)
    np.testing.assert_allclose(mean, geometry.heatmap_to_image(np.array([3.0, 3.0]), center, scale, (w, h)))
    np.testing.assert_allclose(cov, [[kx ** 2 * (1 + 1 / 12), 0], [0, ky ** 2 / 12]], atol=1e-12)

    maps = rng.random((3, 4, h, w)) ** 4
    centers, scales = rng.uniform(0, 500, (3, 2)), rng.uniform(20, 200, (3, 2))
    means, covs = regions.covariance_ellipse(maps, centers, scales)
    assert means.shape == (3, 4, 2) and covs.shape == (3, 4, 2, 2)
    ys, xs = np.mgrid[0:h, 0:w]
    for n in range(3):
        cell = np.diag(scales[n] / (np.array([w, h]) - 1)) ** 2 / 12
        for k in range(4):
            m1, c1 = regions.covariance_ellipse(maps[n, k], centers[n], scales[n])
            np.testing.assert_allclose(means[n, k], m1)
            np.testing.assert_allclose(covs[n, k], c1)
            pts = geometry.heatmap_to_image(np.stack([xs.ravel(), ys.ravel()], -1), centers[n], scales[n], (w, h))
            ref = np.cov(pts.T, aweights=maps[n, k].ravel(), bias=True) + cell
            np.testing.assert_allclose(c1, ref, rtol=1e-9, atol=1e-9)
    with pytest.raises(InputError):
        regions.covariance_ellipse(maps, centers[:2], scales[:2])


def test_covariance_is_the_second_moment_about_the_published_point():
    """A two-peaked map (70 % at x = 2, 30 % at x = 8): the point sits on the big peak, and the
    truth is 6 px away 30 % of the time: the spread about the point (10.8 px^2) is well above
    the spread about the mean (7.56 px^2)."""
    h, w = 8, 12
    p = np.zeros((h, w))
    p[3, 2], p[3, 8] = 0.7, 0.3
    center, scale = np.array([50.0, 60.0]), np.array([33.0, 21.0])
    point = geometry.heatmap_to_image(np.array([2.0, 3.0]), center, scale, (w, h))
    _, about_mean = regions.covariance_ellipse(p, center, scale)
    _, about_point = regions.covariance_ellipse(p, center, scale, about=point)
    kx, ky = scale[0] / (w - 1), scale[1] / (h - 1)
    np.testing.assert_allclose(about_point, [[kx ** 2 * (10.8 + 1 / 12), 0], [0, ky ** 2 / 12]], atol=1e-12)
    np.testing.assert_allclose(about_mean[0, 0], kx ** 2 * (7.56 + 1 / 12))
    np.testing.assert_allclose(regions.point_moment(p, [2.0, 3.0]), [[10.8 + 1 / 12, 0], [0, 1 / 12]], atol=1e-12)


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


def _check_outlines(outlines, p, q, center, scale):
    """Against the definition: one outline per 8-connected part of the mask (cv2 contours of the
    mask), largest first, and together they cover exactly the region's cells and its holes
    (area in heatmap pixels^2)."""
    mask = regions.credible_mask(p, q)
    parts, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    assert len(outlines) == len(parts)
    areas = [cv2.contourArea(geometry.image_to_heatmap(o, center, scale, (p.shape[1], p.shape[0])).astype(np.float32))
             for o in outlines]
    assert areas == sorted(areas, reverse=True)
    assert sum(areas) == pytest.approx((mask | _holes(mask)).sum(), abs=1e-3)


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
        _check_outlines(batch[i], p, q, centers[i], scales[i])
        single = regions.credible_polygons(p, q, centers[i], scales[i])
        assert len(single) == len(batch[i]) and all(np.array_equal(a, b) for a, b in zip(single, batch[i]))


def test_keypoint_regions_only_for_present_keypoints(rng):
    maps = rng.uniform(size=(2, 3, 8, 6)) * (rng.uniform(size=(2, 3, 8, 6)) < 0.3)
    maps[..., 4, 3] += 1.0
    present = np.array([[True, False, True], [False, False, True]])
    centers, scales = np.array([[50.0, 60.0], [200.0, 100.0]]), np.array([[40.0, 80.0], [60.0, 90.0]])
    got = regions.keypoint_regions(maps, present, centers, scales, (0.5, 0.9))
    assert [[set(d) for d in row] for row in got] == [[{0.5, 0.9}, set(), {0.5, 0.9}], [set(), set(), {0.5, 0.9}]]
    for n, k in zip(*np.nonzero(present)):
        for q in (0.5, 0.9):
            want = regions.credible_polygons(maps[n, k], q, centers[n], scales[n])
            _check_outlines(got[n][k][q], maps[n, k], q, centers[n], scales[n])
            assert len(got[n][k][q]) == len(want)
            assert all(np.array_equal(a, b) for a, b in zip(got[n][k][q], want))
    assert regions.keypoint_regions(maps, np.zeros((2, 3), bool), centers, scales, (0.5,)) == [[{}] * 3] * 2
    with pytest.raises(InputError):
        regions.credible_polygons_batch(maps, 0.5, centers, scales)  # (N, K, H, W): flatten first
