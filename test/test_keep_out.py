"""Keep-out capsules on the synthetic scene: with 2D and depth noise the capsules contain the
true limb segments in at least the stated fraction of many random trials (fractions printed);
the incomplete rule and its bounding capsule; the radius formula; edge cases."""
import numpy as np
import pytest
from scipy.stats import chi2
from synthetic_scene import (HEIGHT, K, WIDTH, human_from, project, random_covariance, render_depth, skeleton,
                             spheres)

from probpose_core.errors import InputError
from probpose_core.keep_out import (PART_RADIUS, Capsule, KeepOutConfig, keep_out_humans, limb_part,
                                    segment_distance, uncertainty_radius)
from probpose_core.keypoints import INDEX, NUM_KEYPOINTS, SKELETON
from probpose_core.lifting import JOINT_DEPTH, DepthNoise, lift_humans

EARS = {INDEX["left_ear"], INDEX["right_ear"]}
COVERAGE = 0.95


def noisy_frame(rng, joints, head, hole_fraction=0.03):
    """(Human with noisy 2D keypoints and their covariances, noisy uint16 depth) of a scene."""
    covs = np.stack([random_covariance(rng) for _ in range(NUM_KEYPOINTS)])
    uv = project(joints) + np.stack([rng.multivariate_normal(np.zeros(2), c) for c in covs])
    depth = render_depth(joints, head)
    depth = depth + rng.normal(size=depth.shape) * DepthNoise().sigma(depth)
    depth[rng.random(depth.shape) < hole_fraction] = 0.0
    return human_from(uv, covs), np.clip(depth * 1000, 0, 65535).round().astype(np.uint16)


def contained(capsule, joints, tube=0.0) -> bool:
    """Whether ``capsule`` contains the true segment of its limb thickened by ``tube`` metres."""
    a, b = capsule.limb
    return bool(np.all(segment_distance(joints[[a, b]], capsule.start, capsule.end) + tube <= capsule.radius))


def test_capsules_contain_the_true_limbs_at_the_stated_coverage():
    rng = np.random.default_rng(0)
    no_part = KeepOutConfig(coverage=COVERAGE, part_radius={p: 0.0 for p in PART_RADIUS})
    default = KeepOutConfig(coverage=COVERAGE)
    hits_stat, hits_stat_no_ears, hits_seg, hits_tube, people_all, radii = [], [], [], [], [], []
    for _ in range(25):  # poses
        joints, head = skeleton(rng, distance=rng.uniform(2.6, 4.0), x=rng.uniform(-0.4, 0.4))
        for _ in range(8):  # noise draws
            human, depth = noisy_frame(rng, joints, head)
            kp3d = lift_humans([human], depth, K)
            assert kp3d[0].valid.sum() >= 15
            statistical = keep_out_humans([human], kp3d, depth, K, no_part)[0]
            out = keep_out_humans([human], kp3d, depth, K, default)[0]
            for cap in statistical.capsules:
                hits_stat.append(contained(cap, joints))
                if not EARS & set(cap.limb):
                    hits_stat_no_ears.append(hits_stat[-1])
            person = []
            for cap in out.capsules:
                if cap.limb is None:
                    continue
                a, b = cap.limb
                tube = max(JOINT_DEPTH[a], JOINT_DEPTH[b]) if not {a, b} & set(range(5)) else 0.0
                hits_seg.append(contained(cap, joints))
                hits_tube.append(contained(cap, joints, tube))
                person.append(hits_tube[-1])
                radii.append(cap.radius)
            people_all.append(all(person))
    frac = {name: float(np.mean(v)) for name, v in (
        ("uncertainty radius only (the statistical claim)", hits_stat),
        ("  same, limbs without the ears", hits_stat_no_ears),
        ("default part radii: true segment", hits_seg),
        ("default part radii: true limb tube", hits_tube),
        ("default part radii: all limbs of a person at once", people_all))}
    print(f"\ncapsule coverage at stated level {COVERAGE} over 200 noisy frames "
          f"({len(hits_stat)} limb capsules; median radius {np.median(radii):.3f} m):")
    for name, f in frac.items():
        print(f"  {name}: {f:.4f}")
    assert frac["uncertainty radius only (the statistical claim)"] >= COVERAGE
    assert frac["default part radii: true limb tube"] >= COVERAGE


def test_uncertainty_radius_formula():
    s = 0.02
    r = uncertainty_radius(np.eye(3) * s ** 2, np.diag([1e-6, 1e-6, 1e-6]), 0.95)
    assert r == pytest.approx(s * np.sqrt(chi2.ppf(0.975, 3)))
    assert r == pytest.approx(s * 3.0575, rel=1e-3)
    # the largest eigenvalue of either endpoint counts
    cov = np.diag([1e-4, 9e-4, 4e-4])
    assert uncertainty_radius(np.eye(3) * 1e-6, cov, 0.9) == pytest.approx(0.03 * np.sqrt(chi2.ppf(0.95, 3)))


def test_every_limb_has_a_part_and_capsule_geometry():
    parts = [limb_part(a, b) for a, b in SKELETON]
    assert sorted(set(parts)) == sorted(PART_RADIUS)
    assert parts.count("head") == 5 and parts.count("neck") == 2 and parts.count("torso") == 4
    cap = Capsule(np.zeros(3), np.array([1.0, 0, 0]), 0.1)
    assert cap.contains([[0.5, 0.09, 0], [-0.09, 0, 0], [1.05, 0.05, 0]]).all()
    assert not cap.contains([[0.5, 0.11, 0], [1.11, 0, 0]]).any()
    assert segment_distance([[3.0, 4.0, 0.0]], np.zeros(3), np.zeros(3))[0] == pytest.approx(5.0)
    with pytest.raises(InputError):
        KeepOutConfig(coverage=1.0)
    with pytest.raises(InputError):
        KeepOutConfig(part_radius={"head": 0.1})


def test_complete_person_has_no_bounding_capsule():
    joints, head = skeleton()
    depth = render_depth(joints, head).astype(np.float32)
    human = human_from(project(joints), [np.eye(2)] * NUM_KEYPOINTS, track_id=3)
    out = keep_out_humans([human], lift_humans([human], depth, K), depth, K)[0]
    assert not out.incomplete and out.reasons == () and out.id == 3
    assert len(out.capsules) == len(SKELETON) and all(c.limb is not None for c in out.capsules)


def body_points(joints, head):
    """Points on the rendered body's surface and inside it: every sphere's centre +- radius per axis."""
    centres, radii = spheres(joints, head, step=0.02)
    offsets = np.concatenate([np.zeros((1, 3)), np.eye(3), -np.eye(3)])
    return (centres[:, None] + radii[:, None, None] * offsets[None]).reshape(-1, 3)


def test_absent_keypoints_at_the_border_make_a_bounding_capsule_that_holds_the_body():
    joints, head = skeleton(distance=2.2)  # the feet leave the image at the bottom
    depth = render_depth(joints, head).astype(np.float32)
    uv = project(joints)
    outside = (uv[:, 1] >= HEIGHT)
    assert outside.any()
    presence = np.where(outside, 0.05, 0.95)  # the model says: not in the window
    lo = uv[~outside].min(axis=0) - 10
    bbox = (lo[0], lo[1], uv[~outside, 0].max() + 10 - lo[0], HEIGHT - 1 - lo[1])  # the box ends at the border
    human = human_from(uv, [np.eye(2)] * NUM_KEYPOINTS, bbox=bbox, presence=presence)
    out = keep_out_humans([human], lift_humans([human], depth, K), depth, K)[0]
    assert out.incomplete and "border (bottom)" in out.reasons[0]
    bounding = [c for c in out.capsules if c.limb is None]
    assert len(bounding) == 1
    assert bounding[0].contains(joints).all()  # the feet outside the image included
    assert bounding[0].contains(body_points(joints, head)).all()


def test_present_keypoint_without_depth_and_no_depth_at_all():
    joints, head = skeleton()
    depth = render_depth(joints, head).astype(np.float32)
    uv = project(joints)
    u, v = np.round(uv[INDEX["left_wrist"]]).astype(int)
    depth[v - 12:v + 13, u - 12:u + 13] = np.nan  # no depth at the left wrist
    human = human_from(uv, [np.eye(2)] * NUM_KEYPOINTS)
    out = keep_out_humans([human], lift_humans([human], depth, K), depth, K)[0]
    assert out.incomplete and "left_wrist" in out.reasons[0]
    bounding = [c for c in out.capsules if c.limb is None][0]
    assert bounding.contains(joints).all()
    assert len(out.capsules) == len(SKELETON) - 1 + 1  # the forearm is gone, the bounding capsule added

    empty = np.zeros((HEIGHT, WIDTH), np.uint16)
    out = keep_out_humans([human], lift_humans([human], empty, K), empty, K)[0]
    assert out.incomplete and out.capsules == []
    assert any("no depth" in r for r in out.reasons) and any("no valid keypoint" in r for r in out.reasons)
    with pytest.raises(InputError):
        keep_out_humans([human], [], empty, K)


def _coverage_table(r2_face, r2_other, levels=(0.5, 0.9, 0.95, 0.975)):
    from probpose_core.conformal import GROUPS, CoverageTable

    cells = {g: {"region": [0.5] * len(levels), "ellipse_r2": [r2_face if g == "face" else r2_other] * len(levels)}
             for g in GROUPS}
    return CoverageTable(levels=levels, groups=GROUPS, cells=cells)


def test_keep_out_uses_the_calibrated_radius_of_the_coverage_table():
    """With a table, each endpoint's radius^2 is the table's at (1 + coverage) / 2 (per keypoint
    group), floored at the Gaussian chi2_3; a coverage whose endpoint level the table lacks is refused."""
    from probpose_core.lifting import LiftConfig

    s = 0.02
    floor = chi2.ppf(0.975, 3)
    assert uncertainty_radius(np.eye(3) * s ** 2, np.eye(3) * 1e-8, 0.95, (40.0, None)) == pytest.approx(s * np.sqrt(40.0))
    assert uncertainty_radius(np.eye(3) * s ** 2, np.eye(3) * 1e-8, 0.95, (1.0, None)) == pytest.approx(s * np.sqrt(floor))
    # the endpoint with the larger r^2 * lambda decides
    assert uncertainty_radius(np.eye(3) * s ** 2, np.eye(3) * (2 * s) ** 2, 0.95, (40.0, 12.0)) == \
        pytest.approx(2 * s * np.sqrt(max(12.0, floor)))

    joints, head = skeleton()
    depth = render_depth(joints, head).astype(np.float32)
    human = human_from(project(joints), [np.eye(2)] * NUM_KEYPOINTS)
    kp3d = lift_humans([human], depth, K)[0]
    plain = keep_out_humans([human], [kp3d], depth, K, KeepOutConfig())[0]
    table = _coverage_table(r2_face=60.0, r2_other=1.0)
    calibrated = keep_out_humans([human], [kp3d], depth, K, KeepOutConfig(lift=LiftConfig(coverage=table)))[0]
    for a, b in zip(plain.capsules, calibrated.capsules):
        assert a.limb == b.limb
        if limb_part(*a.limb) == "head":  # face keypoints: r^2 60 > chi2_3(0.975) = 9.35
            assert b.radius > a.radius + 1e-4
        elif all(k >= 5 for k in a.limb):  # arms / legs: r^2 1 < the floor: Gaussian radius
            assert b.radius == pytest.approx(a.radius)
    with pytest.raises(InputError, match="0.975"):
        KeepOutConfig(coverage=0.95, lift=LiftConfig(coverage=_coverage_table(9.0, 9.0, levels=(0.5, 0.9, 0.95))))
    KeepOutConfig(coverage=0.9, lift=LiftConfig(coverage=_coverage_table(9.0, 9.0, levels=(0.5, 0.9, 0.95))))
