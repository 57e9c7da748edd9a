"""Lifting to 3D: a rendered synthetic scene gives keypoints within 2 cm of the truth without
noise; the covariance propagation matches Monte Carlo; edge cases (no depth, NaN, zeros,
points outside the image, absent keypoints, bad inputs)."""
import numpy as np
import pytest
from synthetic_scene import HEIGHT, K, WIDTH, human_from, project, random_covariance, render_depth, skeleton

from probpose_core.errors import InputError
from probpose_core.keypoints import INDEX, NUM_KEYPOINTS
from probpose_core.lifting import (DepthNoise, LiftConfig, back_project, back_project_covariance,
                                   check_camera_matrix, depth_in_metres, lift_humans, region_samples, robust_depth,
                                   robust_depths)

EARS = [INDEX["left_ear"], INDEX["right_ear"]]
TIGHT = [np.eye(2) * 0.25] * NUM_KEYPOINTS  # a sharp 2D estimate (0.5 px)


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_noise_free_scene_gives_keypoints_within_2cm(encoding):
    rng = np.random.default_rng(0)
    errors = []
    for _ in range(20):
        joints, head = skeleton(rng, distance=rng.uniform(2.6, 4.0), x=rng.uniform(-0.4, 0.4))
        depth = render_depth(joints, head)
        depth = (depth * 1000).round().astype(np.uint16) if encoding == "16UC1" else depth.astype(np.float32)
        kp3d = lift_humans([human_from(project(joints), TIGHT)], depth, K)[0]
        assert kp3d.valid.all()
        assert (kp3d.depth_pixels >= 10).all()
        errors.append(np.linalg.norm(kp3d.position - joints, axis=1))
    errors = np.array(errors)
    others = np.delete(errors, EARS, axis=1)
    print(f"\n{encoding}: 3D error over 20 poses at 2.6-4 m: median {np.median(others) * 100:.2f} cm, "
          f"max {others.max() * 100:.2f} cm (15 keypoints); ears (on the head's silhouette) max "
          f"{errors[:, EARS].max() * 100:.2f} cm")
    assert others.max() < 0.02
    assert errors[:, EARS].max() < 0.06  # the region straddles the head's edge: the nearer head surface pulls


def test_covariance_is_the_first_order_propagation():
    """Monte Carlo of (u, v, z) -> X agrees with J Sigma J^T (the Jacobian is right)."""
    rng = np.random.default_rng(1)
    k = np.array([[520.0, 0.0, 300.0], [0.0, 500.0, 250.0], [0.0, 0.0, 1.0]])
    uv0, z0 = np.array([420.0, 120.0]), 2.5
    cov_uv = np.array([[9.0, 3.0], [3.0, 4.0]])
    sigma_z = 0.02
    analytic = back_project_covariance(uv0[None], [z0], cov_uv[None], [sigma_z], k)[0]
    uv = rng.multivariate_normal(uv0, cov_uv, 200_000)
    z = rng.normal(z0, sigma_z, 200_000)
    empirical = np.cov(back_project(uv, z, k).T)
    np.testing.assert_allclose(empirical, analytic, rtol=0.03, atol=1e-7)
    np.testing.assert_allclose(back_project(uv0[None], [z0], k)[0], [(420 - 300) / 520 * 2.5, (120 - 250) / 500 * 2.5, 2.5])


def test_depth_noise_model():
    noise = DepthNoise()
    assert noise.sigma(1.0) == pytest.approx(0.003)
    assert noise.sigma(3.0) == pytest.approx(0.019)
    assert DepthNoise(a=0.0, b=0.01).sigma(2.0) == pytest.approx(0.04)


def test_robust_depth_ignores_background_and_near_outliers():
    rng = np.random.default_rng(2)
    cfg = LiftConfig()
    body = rng.normal(2.0, 0.01, 40)
    wall = np.full(60, 5.0)
    near = np.full(4, 0.5)  # 4 of 104 samples in front (< the 10th percentile)
    assert robust_depth(np.concatenate([body, wall, near]), cfg) == pytest.approx(2.0, abs=0.01)
    assert np.isnan(robust_depth([2.0, 2.0], cfg))  # fewer than min_pixels
    assert np.isnan(robust_depth([25.0] * 10, cfg))  # out of depth_range


def test_depth_encodings_and_invalid_values():
    mm = np.array([[0, 1500], [65535, 2000]], dtype=np.uint16)
    np.testing.assert_allclose(depth_in_metres(mm), [[np.nan, 1.5], [65.535, 2.0]])
    m = np.array([[np.nan, 1.5], [np.inf, 0.0]], dtype=np.float32)
    assert np.isnan(depth_in_metres(m)).sum() == 3
    with pytest.raises(InputError):
        depth_in_metres(np.zeros((4, 4), dtype=np.int32))
    with pytest.raises(InputError):
        depth_in_metres(np.zeros((4, 4, 3), dtype=np.uint16))
    with pytest.raises(InputError):
        check_camera_matrix([[0, 0, 1], [0, 500, 1], [0, 0, 1]])
    np.testing.assert_allclose(check_camera_matrix(K.reshape(-1)), K)


@pytest.mark.parametrize("fill", ["zeros", "nan"])
def test_no_depth_gives_no_valid_keypoint(fill):
    joints, head = skeleton()
    depth = np.zeros((HEIGHT, WIDTH), np.uint16) if fill == "zeros" else np.full((HEIGHT, WIDTH), np.nan, np.float32)
    kp3d = lift_humans([human_from(project(joints), TIGHT)], depth, K)[0]
    assert not kp3d.valid.any()
    assert np.isnan(kp3d.position).all() and np.isnan(kp3d.covariance).all()
    assert (kp3d.depth_pixels == 0).all()


def test_outside_absent_and_unknown_covariance_keypoints_are_not_valid():
    joints, head = skeleton()
    depth = render_depth(joints, head).astype(np.float32)
    uv = project(joints)
    uv[INDEX["left_wrist"]] = [WIDTH + 5.0, 50.0]  # outside the image
    uv[INDEX["right_wrist"]] = [np.nan, np.nan]
    covs = list(TIGHT)
    covs[INDEX["nose"]] = np.full((2, 2), np.nan)  # an all-zero map
    presence = np.full(NUM_KEYPOINTS, 0.95)
    presence[INDEX["left_knee"]] = 0.1  # absent
    kp3d = lift_humans([human_from(uv, covs, bbox=(0, 0, 10, 10), presence=presence, track_id=7)], depth, K)[0]
    invalid = {INDEX[n] for n in ("left_wrist", "right_wrist", "nose", "left_knee")}
    assert set(np.flatnonzero(~kp3d.valid)) == invalid
    assert kp3d.id == 7 and kp3d.presence[INDEX["left_knee"]] == pytest.approx(0.1)
    # a hole in the depth where one keypoint is: not valid, the rest unaffected
    u, v = np.round(uv[INDEX["left_hip"]]).astype(int)
    depth[v - 15:v + 16, u - 15:u + 16] = 0.0
    kp3d = lift_humans([human_from(uv, covs, bbox=(0, 0, 10, 10), presence=presence)], depth, K)[0]
    assert not kp3d.valid[INDEX["left_hip"]] and kp3d.valid[INDEX["right_hip"]]


def test_sampling_region_uses_the_credible_region_outline():
    depth = np.full((50, 50), 3.0, np.float32)
    depth[30:40, 5:15] = 1.0  # a patch outside the disc and ellipse about (10, 10), inside the outline
    centre, cov = [[10.0, 10.0]], [TIGHT[0]]
    samples, counts = region_samples(depth, centre, cov, 0.9, 2.0)
    assert samples.max() == 3.0 and counts.tolist() == [len(samples)]
    outline = np.array([[5.0, 5.0], [14.0, 5.0], [14.0, 39.0], [5.0, 39.0]])
    samples, counts = region_samples(depth, centre, cov, 0.9, 2.0, polygons=[[outline]])
    assert (samples == 1.0).sum() == 100 and len(samples) == 10 * 35 and counts.tolist() == [350]
    # lifting takes the outline stored under sample_level, none under another level
    human = human_from(np.full((NUM_KEYPOINTS, 2), 10.0), TIGHT)
    human.keypoints[0].regions = {0.9: [outline]}
    assert lift_humans([human], depth, K, LiftConfig(pixel_sigma=0.0))[0].depth_pixels[0] == 350
    assert lift_humans([human], depth, K, LiftConfig(pixel_sigma=0.0, sample_level=0.5))[0].depth_pixels[0] < 20


def test_sampling_regions_of_many_keypoints_at_once():
    """One call samples every keypoint's region: the same pixels as one call per keypoint, keypoint
    after keypoint; the union of ellipse and disc holds exactly the pixel centres inside either
    (a brute-force check over the image), clipped at the image border; NaN pixels are no samples."""
    rng = np.random.default_rng(4)
    depth = rng.uniform(1.0, 5.0, (40, 60)).astype(np.float32)
    depth[rng.random(depth.shape) < 0.1] = np.nan
    centres = np.column_stack([rng.uniform(-3, 63, 30), rng.uniform(-3, 43, 30)])
    covs = [random_covariance(rng, 0.3, 6.0) for _ in range(30)]
    radius2 = rng.uniform(1.0, 9.0, 30)
    values, counts = region_samples(depth, centres, covs, 0.9, 2.5, radius2)
    assert counts.sum() == len(values)
    ys, xs = np.mgrid[0:40, 0:60]
    start = 0
    for c, cov, r2, n in zip(centres, covs, radius2, counts):
        one, (alone,) = region_samples(depth, [c], [cov], 0.9, 2.5, [r2])
        assert alone == n and np.array_equal(one, values[start:start + n])
        d = np.stack([xs - c[0], ys - c[1]], -1)
        mahalanobis = np.einsum("...i,ij,...j->...", d, np.linalg.inv(cov), d)
        brute = (mahalanobis <= r2 * (1 - 1e-9)) | ((d ** 2).sum(-1) <= 2.5 ** 2 * (1 - 1e-9))
        loose = (mahalanobis <= r2 * (1 + 1e-9)) | ((d ** 2).sum(-1) <= 2.5 ** 2 * (1 + 1e-9))
        finite = np.isfinite(depth)
        assert (brute & finite).sum() <= n <= (loose & finite).sum()  # pixel centres on the edge either way
        assert set(one.tolist()) <= set(depth[loose & finite].tolist())
        start += n
    empty, none = region_samples(depth, np.zeros((0, 2)), np.zeros((0, 2, 2)), 0.9, 2.0)
    assert len(empty) == 0 and len(none) == 0


def test_robust_depths_of_many_runs_equal_one_run_each():
    rng = np.random.default_rng(5)
    cfg = LiftConfig()
    runs = [np.concatenate([rng.normal(rng.uniform(1, 5), 0.02, rng.integers(0, 40)), rng.uniform(0, 25, rng.integers(0, 9))])
            for _ in range(50)]
    many = robust_depths(np.concatenate(runs), [len(r) for r in runs], cfg)
    for r, z in zip(runs, many):
        s = r[(r >= cfg.depth_range[0]) & (r <= cfg.depth_range[1])]
        if len(s) < cfg.min_pixels:
            assert np.isnan(z)
            continue
        z_ref = np.percentile(s, cfg.near_percentile)  # the rule, written with numpy's own functions
        expected = np.median(s[s <= z_ref + cfg.band_m + 3 * cfg.noise.sigma(z_ref)])
        assert z == pytest.approx(expected, abs=1e-9) and robust_depth(r, cfg) == pytest.approx(z, abs=1e-12)


def test_sampling_ellipse_takes_the_calibrated_radius():
    """With a coverage table the sampling ellipse at sample_level has the table's radius^2 for the
    keypoint's group instead of a Gaussian's; a sample_level the table lacks is refused."""
    from probpose_core.conformal import GROUPS, CoverageTable

    depth = np.full((60, 60), 3.0, np.float32)
    depth[10, 22] = 1.0  # 12 px right of the keypoint at (10, 10): outside chi2_2(0.9) = 4.6 (sigma 2 px)
    cov = np.eye(2) * 4.0
    assert 1.0 not in region_samples(depth, [[10.0, 10.0]], [cov], 0.9, 2.0)[0]
    assert 1.0 in region_samples(depth, [[10.0, 10.0]], [cov], 0.9, 2.0, radius2=[40.0])[0]  # radius 12.6 px
    cells = {g: {"region": [0.5, 0.9], "ellipse_r2": [1.0, 40.0]} for g in GROUPS}
    table = CoverageTable(levels=(0.5, 0.9), groups=GROUPS, cells=cells)
    human = human_from(np.full((NUM_KEYPOINTS, 2), 10.0), [cov] * NUM_KEYPOINTS, bbox=(0, 0, 40, 40))
    plain = lift_humans([human], depth, K, LiftConfig(pixel_sigma=0.0))[0]
    wide = lift_humans([human], depth, K, LiftConfig(pixel_sigma=0.0, coverage=table))[0]
    assert wide.depth_pixels[0] > plain.depth_pixels[0]
    with pytest.raises(InputError, match="0.5, 0.9"):
        LiftConfig(sample_level=0.95, coverage=table)
