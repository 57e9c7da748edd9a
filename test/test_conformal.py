"""conformal.py: the conformal quantile, the region / ellipse scores on maps with known answers,
the coverage table (lookups, refusal of uncalibrated levels, plain-data round trip) and the
split-conformal guarantee on exchangeable synthetic data."""
import math

import numpy as np
import pytest

from probpose_core import conformal, regions
from probpose_core.errors import InputError


def test_conformal_quantile_is_the_ceil_n_plus_1_q_order_statistic():
    scores = np.arange(1.0, 11.0)[::-1]  # 10 scores, 1..10, unsorted
    assert conformal.conformal_quantile(scores, 0.5) == 6.0  # ceil(11 * 0.5) = 6th smallest
    assert conformal.conformal_quantile(scores, 0.9) == 10.0  # ceil(9.9) = 10
    assert conformal.conformal_quantile(scores, 0.05) == 1.0
    with pytest.raises(InputError, match="too few"):
        conformal.conformal_quantile(scores, 0.95)  # ceil(10.45) = 11 > 10
    with pytest.raises(InputError):
        conformal.conformal_quantile(scores, 1.0)
    with pytest.raises(InputError):
        conformal.conformal_quantile([1.0, np.nan], 0.3)


def test_region_score_inside_the_support_is_the_level_where_the_truth_cell_enters():
    p = np.zeros((1, 6, 8))
    p[0, 2, 3], p[0, 2, 4], p[0, 3, 3] = 0.5, 0.3, 0.2
    truths = np.array([[3.0, 2.0], [4.4, 1.6], [2.6, 3.4]])  # cells (3, 2), (4, 2), (3, 3)
    s = conformal.region_scores(np.repeat(p, 3, axis=0), truths)
    np.testing.assert_allclose(s, [0.0, 0.5, 0.8], atol=1e-12)
    # the credible set holds the truth's cell at any level above s, and at s itself it does not
    for (x, y), level in zip(truths, s):
        ix, iy = regions.cell_index(np.array([x, y]), (8, 6))
        assert regions.credible_mask(p[0], level + 1e-9)[iy, ix]
        assert not regions.credible_mask(p[0], level)[iy, ix]


def test_region_score_outside_the_support_is_one_plus_the_distance_to_its_cells():
    p = np.zeros((3, 10, 10))
    p[:, 4, 4] = 1.0
    # the support's cell is [3.5, 4.5]^2: 3 px right of it; (3, 4) px off; 0.1 px right (in the next cell)
    truths = np.array([[7.5, 4.0], [7.5, 8.5], [4.6, 4.4]])
    s = conformal.region_scores(p, truths)
    np.testing.assert_allclose(s, [1.0 + 3.0, 1.0 + math.hypot(3.0, 4.0), 1.0 + 0.1], rtol=1e-12)
    assert np.isnan(conformal.region_scores(p[:1], [[12.0, 4.0]]))[0]  # off the map
    with pytest.raises(InputError):
        conformal.region_scores(p, truths[:2])


def test_ellipse_score_is_the_mahalanobis_distance_about_the_point():
    p = np.zeros((1, 8, 12))
    p[0, 3, 2], p[0, 3, 8] = 0.7, 0.3
    point = np.array([[2.0, 3.0]])
    m = regions.point_moment(p, point)[0]  # diag(10.8 + 1/12, 1/12)
    truth = np.array([[5.0, 3.5]])
    want = 9.0 / m[0, 0] + 0.25 / m[1, 1]
    np.testing.assert_allclose(conformal.ellipse_scores(p, point, truth), [want])


def _table(by_bucket=False, by_border=False):
    groups = conformal.GROUPS
    keys = [f"{g}/{b}" for g in groups for b in conformal.CELL_BUCKETS["names"]] if by_bucket else list(groups)
    keys = [f"{k}/{b}" for k in keys for b in conformal.BORDER_NAMES] if by_border else keys
    cells = {k: {"region": [0.3 + i * 0.01, 1.5 + i], "ellipse_r2": [1.0 + i, 5.0 + i], "n": 100 + i}
             for i, k in enumerate(keys)}
    return conformal.CoverageTable(levels=(0.5, 0.9), groups=groups, cells=cells, by_bucket=by_bucket,
                                   by_border=by_border, data="test")


def _boxes(*areas):
    return np.array([[50.0, 50.0, a ** 0.5, a ** 0.5] for a in areas])


def test_table_lookups_and_refusal_of_levels_it_does_not_hold():
    table = _table()
    mass, grow = table.region_params(0.9, _boxes(100.0, 20000.0))
    assert mass.shape == grow.shape == (2, 17)
    np.testing.assert_allclose(mass[:, 0], 1.0)  # face s_0.9 = 1.5: the whole support ...
    np.testing.assert_allclose(grow[:, 0], 0.5)  # ... grown by half a pixel
    np.testing.assert_allclose(grow[:, 16], 2.5)  # legs: 3.5 - 1
    mass, grow = table.region_params(0.5, _boxes(100.0))
    np.testing.assert_allclose(mass[0, [0, 5, 11]], [0.30, 0.31, 0.32], rtol=1e-12)
    assert (mass[0, [0, 5, 11]] > [0.30, 0.31, 0.32]).all()  # one float step up: a score equal to s_q is in
    assert not grow.any()
    np.testing.assert_allclose(table.ellipse_radius2(0.9, _boxes(1.0))[0, [4, 10, 11]], [5.0, 6.0, 7.0])
    with pytest.raises(InputError, match="0.5, 0.9"):
        table.region_params(0.8, _boxes(1.0))
    with pytest.raises(InputError):
        conformal.CoverageTable(levels=(0.9, 0.5), groups=conformal.GROUPS, cells={})
    with pytest.raises(InputError, match="no cell"):
        conformal.CoverageTable(levels=(0.5,), groups=conformal.GROUPS, cells={"face": {"region": [1], "ellipse_r2": [1]}})


def test_table_by_bucket_and_border_and_plain_data_round_trip():
    table = _table(by_bucket=True)
    keys = table.cell_keys(_boxes(31.0 ** 2, 50.0 ** 2, 200.0 ** 2))
    assert list(keys[:, 0]) == ["face/small_medium", "face/small_medium", "face/large"] and keys[2, 16] == "legs/large"
    back = conformal.CoverageTable.from_dict(table.to_dict())
    assert back == table
    table = _table(by_border=True)
    boxes = np.array([[10.0, 10.0, 50, 80], [0.0, 10.0, 50, 80], [10.0, 10.0, 287, 80], [10.0, 10.0, 50, 227]])
    keys = table.cell_keys(boxes, (300, 240))  # 4 px from an edge counts as the border
    assert list(keys[:, 5]) == ["arms/inside", "arms/border", "arms/border", "arms/border"]
    np.testing.assert_array_equal(conformal.box_at_border(boxes, (300, 240)), [False, True, True, True])
    with pytest.raises(InputError, match="image size"):
        table.region_params(0.5, boxes)
    assert conformal.CoverageTable.from_dict(table.to_dict()) == table
    with pytest.raises(InputError):
        conformal.CoverageTable.from_dict({"format": 99})


def _synthetic(rng, n):
    """Maps that are right most of the time and grossly wrong sometimes (the truth off the
    support): a blob at a random point, the truth drawn from a wider, heavier-tailed law."""
    h, w = 24, 20
    ys, xs = np.mgrid[0:h, 0:w]
    centre = rng.uniform(6, 14, (n, 2))
    width = rng.uniform(0.8, 2.0, n)
    z = 1.0 - ((xs - centre[:, 0, None, None]) ** 2 + (ys - centre[:, 1, None, None]) ** 2) / (2 * width[:, None, None] ** 2 * 4)
    maps = np.clip(z, 0, None)
    maps /= maps.sum(axis=(1, 2), keepdims=True)
    spread = np.where(rng.random(n) < 0.15, 4.0, 1.0) * width
    truth = np.clip(centre + rng.standard_normal((n, 2)) * spread[:, None], -0.4, [w - 0.6, h - 0.6])
    return maps, centre, truth


def test_calibrated_regions_hold_q_on_a_fresh_split():
    """Exchangeable synthetic data: the table fitted on one half makes the regions (their actual
    masks, dilation included) and ellipses hold the truth in ~q of the OTHER half, while the raw
    credible sets fall short (the maps are over-confident)."""
    rng = np.random.default_rng(7)
    maps, centre, truth = _synthetic(rng, 3000)
    keypoint = rng.integers(0, 17, len(maps))
    area = np.tile([[100.0, 100.0, 70.0, 70.0]], (len(maps), 1))  # person boxes
    cal, test = slice(0, 1500), slice(1500, None)
    table = conformal.calibrate_table(conformal.region_scores(maps[cal], truth[cal]),
                                      conformal.ellipse_scores(maps[cal], centre[cal], truth[cal]),
                                      keypoint[cal], area[cal], levels=(0.5, 0.9, 0.95))
    assert table.cells["face"]["n"] + table.cells["arms"]["n"] + table.cells["legs"]["n"] == 1500
    for q in (0.5, 0.9, 0.95):
        mass, grow = table.region_params(q, area[test])
        rows = np.arange(len(keypoint[test]))
        mass, grow = mass[rows, keypoint[test]], grow[rows, keypoint[test]]
        masks = regions.region_masks(maps[test], mass, grow, upsample=regions.DILATION_UPSAMPLE)
        ix, iy = regions.cell_index(truth[test], (20, 24), regions.DILATION_UPSAMPLE)
        inside = masks[rows, iy, ix]
        assert abs(inside.mean() - q) < 0.04, (q, inside.mean())
        r2 = table.ellipse_radius2(q, area[test])[rows, keypoint[test]]
        in_ellipse = conformal.ellipse_scores(maps[test], centre[test], truth[test]) <= r2
        assert abs(in_ellipse.mean() - q) < 0.04, (q, in_ellipse.mean())
    raw = regions.credible_mask(maps[test], 0.9)
    rix, riy = regions.cell_index(truth[test], (20, 24))
    assert raw[np.arange(len(rix)), riy, rix].mean() < 0.85  # what calibration fixes
