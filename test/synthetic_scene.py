"""A synthetic depth scene for the lifting / keep-out tests: a known 3D skeleton with a body
made of spheres, a pinhole camera, a rendered z-depth image and the 2D keypoints.

The body: a head sphere (radius :data:`HEAD_RADIUS`) whose surface carries the face keypoints,
and sphere sweeps (radius interpolated between the endpoints' radii) along the torso, arm and
leg limbs, with the radius at each joint equal to ``lifting.JOINT_DEPTH`` (so a joint centre
lies exactly that far behind the skin seen along its ray). A wall stands behind the person.
Poses: a person facing the camera (yaw within +-25 degrees), arms away from the body, so that no
keypoint's viewing ray meets another body part first.
"""
import numpy as np

from probpose_core.keypoints import INDEX, NAMES, NUM_KEYPOINTS
from probpose_core.lifting import JOINT_DEPTH
from probpose_core.results import Human, Keypoint

WIDTH, HEIGHT, FOCAL = 320, 240, 300.0
K = np.array([[FOCAL, 0.0, 159.5], [0.0, FOCAL, 119.5], [0.0, 0.0, 1.0]])
HEAD_RADIUS = 0.10
WALL_Z = 6.0
BODY_LIMBS = (("left_shoulder", "right_shoulder"), ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
              ("right_shoulder", "right_hip"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
              ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_hip", "left_knee"),
              ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"))


def _unit(v):
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def skeleton(rng=None, distance: float = 3.0, x: float = 0.0):
    """Joint centres ``(K, 3)`` (camera frame, metres) of a person facing the camera at ``distance``;
    with ``rng`` the arms, legs and yaw are random and ``distance``/``x`` are used as given."""
    r = (lambda lo, hi: rng.uniform(lo, hi)) if rng is not None else (lambda lo, hi: (lo + hi) / 2)
    p = np.zeros((NUM_KEYPOINTS, 3))
    head = np.array([0.0, -0.68, 0.0])
    for side, sign in (("left", 1.0), ("right", -1.0)):  # the person's left is the image's right
        shoulder = np.array([sign * 0.19, -0.46, 0.0])
        up = r(0.35, 1.1)  # arm abduction from hanging down (radians)
        upper = np.array([sign * np.sin(up), np.cos(up), r(-0.3, 0.3)])
        elbow = shoulder + 0.28 * _unit(upper)
        fore = r(-0.3, 0.5)
        lower = np.array([sign * np.sin(up + fore), np.cos(up + fore), r(-0.3, 0.3)])
        hip = np.array([sign * 0.10, 0.0, 0.0])
        spread = r(0.02, 0.2)
        knee = hip + 0.42 * _unit([sign * np.sin(spread), np.cos(spread), r(-0.15, 0.15)])
        ankle = knee + 0.40 * _unit([sign * np.sin(spread), np.cos(spread), r(-0.1, 0.2)])
        for name, value in (("shoulder", shoulder), ("elbow", elbow), ("wrist", elbow + 0.25 * _unit(lower)),
                            ("hip", hip), ("knee", knee), ("ankle", ankle)):
            p[INDEX[f"{side}_{name}"]] = value
        p[INDEX[f"{side}_eye"]] = head + HEAD_RADIUS * _unit([sign * 0.35, -0.25, -1.0])
        p[INDEX[f"{side}_ear"]] = head + HEAD_RADIUS * _unit([sign * 2.7, -0.1, -1.0])
    p[INDEX["nose"]] = head + HEAD_RADIUS * _unit([0.0, 0.05, -1.0])
    yaw = r(-0.44, 0.44)
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    centre = np.array([x, 0.1, distance])
    joints = p @ rot.T + centre
    return joints, head @ rot.T + centre


def spheres(joints, head_centre, step: float = 0.005):
    """Centres ``(S, 3)`` and radii ``(S,)`` of the body (head sphere + limb sweeps)."""
    centres, radii = [head_centre[None]], [np.array([HEAD_RADIUS])]
    for a, b in BODY_LIMBS:
        ia, ib = INDEX[a], INDEX[b]
        n = max(int(np.linalg.norm(joints[ib] - joints[ia]) / step), 1) + 1
        t = np.linspace(0.0, 1.0, n)[:, None]
        centres.append(joints[ia] + t * (joints[ib] - joints[ia]))
        radii.append(JOINT_DEPTH[ia] + t[:, 0] * (JOINT_DEPTH[ib] - JOINT_DEPTH[ia]))
    return np.concatenate(centres), np.concatenate(radii)


def render_depth(joints, head_centre) -> np.ndarray:
    """Z-depth ``(HEIGHT, WIDTH)`` float64 metres: the body in front of a wall at :data:`WALL_Z`."""
    depth = np.full((HEIGHT, WIDTH), WALL_Z)
    k_inv = np.linalg.inv(K)
    for c, r in zip(*spheres(joints, head_centre)):
        u, v = (K @ c)[:2] / c[2]
        reach = r * FOCAL / (c[2] - r) + 2
        x0, x1 = max(int(u - reach), 0), min(int(u + reach) + 2, WIDTH)
        y0, y1 = max(int(v - reach), 0), min(int(v + reach) + 2, HEIGHT)
        if x0 >= x1 or y0 >= y1:
            continue
        xs, ys = np.meshgrid(np.arange(x0, x1), np.arange(y0, y1))
        rays = np.stack([xs, ys, np.ones_like(xs)], -1).astype(np.float64) @ k_inv.T  # z component 1
        dc = rays @ c
        dd = (rays ** 2).sum(-1)
        disc = dc ** 2 - dd * (c @ c - r * r)
        hit = disc >= 0
        z = np.where(hit, (dc - np.sqrt(np.where(hit, disc, 0))) / dd, np.inf)
        depth[y0:y1, x0:x1] = np.minimum(depth[y0:y1, x0:x1], z)
    return depth


def project(points) -> np.ndarray:
    """Pixels ``(N, 2)`` of camera-frame points ``(N, 3)``."""
    p = np.asarray(points, dtype=np.float64) @ K.T
    return p[:, :2] / p[:, 2:]


def random_covariance(rng, lo: float = 1.0, hi: float = 4.0) -> np.ndarray:
    """A random 2x2 pixel covariance with standard deviations in [lo, hi] px."""
    major = rng.uniform(lo, hi)
    minor = rng.uniform(lo, major)
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return rot @ np.diag([major ** 2, minor ** 2]) @ rot.T


def human_from(points, covariances, bbox=None, presence=None, track_id=None) -> Human:
    """A Human with keypoints ``points (K, 2)``, ``covariances (K, 2, 2)``, presence (default 0.95)
    and a box around the points (10 % margin) unless given."""
    points = np.asarray(points, dtype=np.float64)
    presence = np.full(NUM_KEYPOINTS, 0.95) if presence is None else np.asarray(presence, dtype=np.float64)
    if bbox is None:
        lo, hi = points.min(axis=0), points.max(axis=0)
        pad = 0.1 * (hi - lo)
        bbox = (*(lo - pad), *(hi - lo + 2 * pad))
    kps = [Keypoint(name=n, x=float(x), y=float(y), presence=float(pr), visibility=0.9, oks_quality=0.9,
                    covariance=np.asarray(c, dtype=np.float64))
           for n, (x, y), c, pr in zip(NAMES, points, covariances, presence)]
    return Human(bbox=tuple(float(v) for v in bbox), score=0.9, keypoints=kps, id=track_id, box_score=0.9)
