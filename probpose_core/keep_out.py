"""Keep-out capsules: where a person's body may be, in metres, at a stated coverage level.

Per person, from its :class:`lifting.Keypoints3D` (camera optical frame of the depth image):

**Limb capsules.** One capsule per limb of the COCO skeleton (:data:`keypoints.SKELETON`,
19 limbs) whose two keypoints are both valid in 3D. Its axis runs between the two estimated
joint centres; its radius is ``part radius + uncertainty radius``:

- the part radius (:data:`PART_RADIUS`, per body part, parameters) bounds the body around the
  segment between the TRUE joint centres: head 0.15 m (half a head's length plus hair),
  neck 0.12 m, torso 0.15 m (half a chest's depth, ~0.25 m, plus clothing), upper arm 0.07 m,
  forearm 0.15 m (the forearm and most of the hand: a hand reaches ~0.19 m past the wrist),
  thigh 0.10 m, shank 0.12 m (the shank and most of the foot). Hands and feet are covered only
  within that radius of the wrist / ankle; a held tool is not;
- the uncertainty radius is ``max_e sqrt(R2_e * lambda_e)`` over the two endpoints ``e``, with
  ``lambda_e`` the largest eigenvalue of the endpoint's 3x3 covariance, ``q' = (1 + coverage) /
  2`` the per-endpoint level and ``R2_e = max(r2_e(q'), chi2_3(q'))``: ``r2_e(q')`` the squared
  Mahalanobis radius of the endpoint's level-q' 2D ellipse in the model's coverage table
  (``lift.coverage``, :mod:`conformal`: measured on held-out data, per keypoint group and box),
  ``chi2_3(q')`` the Gaussian value (the floor, and all there is for a model without a table).

**What is promised.** In the image plane the claim is measured: with the model's coverage
table, each endpoint's true 2D position lies within Mahalanobis radius ``r(q')`` of its
published point (under its published 2D covariance) in a fraction ``q'`` of held-out cases
(README: per keypoint group, the measured numbers and where they miss). In depth it still rests
on the depth-noise model of :class:`lifting.DepthNoise` holding for the camera (the ``chi2_3``
floor), and the part radius must bound the body part. Then for each limb, with probability at
least ``coverage``, the capsule contains that body part (every point within the part radius of
the true segment), the true segment included. Why: the sphere of the uncertainty radius
contains each endpoint's ``q'``-region, so each true joint lies within that radius of its
estimate with probability ``>= q'``, both with probability ``>= 2 q' - 1 = coverage`` (union
bound, no independence assumed); and when both do, every point of the true segment lies within
that radius of the matching point of the estimated one (convexity), so the part radius adds up.
The claim is per limb, not for a whole person at once. ``coverage`` must have its per-endpoint
level ``q'`` in the model's table (0.975 for the default 0.95): any other is refused. Without a
table the capsules use the Gaussian value only, an unmeasured claim (the raw maps are
over-confident, README: read such capsules as too small).

**Incomplete persons.** ``incomplete`` is True, with the reasons, when (a) a present
keypoint (``presence >= lift.presence_threshold``) has no valid 3D point (no depth there, off the
image, no covariance), or (b) a keypoint is absent and the person's box comes within
``border_margin_px`` of an image edge (the missing part may be outside the field of view), or
(c) no keypoint is valid. Absent keypoints away from the border are taken as hidden behind
something the controller sees itself: no capsule, not incomplete. An incomplete person gets,
besides the limb capsules it has, one **bounding capsule** (``limb`` None) built by this rule:

- ``z_near`` = the nearest of: the robust depth of the valid depth pixels inside the person
  box (:func:`lifting.robust_depth`, the nearest-surface cluster) and, per valid keypoint,
  ``z - 3 sigma_z`` of its 3D point; minus ``bounding_margin_m``;
- the person box is widened by ``bounding_margin_m`` on every side and by
  ``border_extension_m`` beyond every image edge it comes within ``border_margin_px`` of
  (metres converted to pixels at ``z_near``, which over-covers at larger depths);
- the capsule contains the slice of that box's viewing frustum between ``z_near`` and
  ``z_near + body_depth_m``: its axis joins the centres of the slice's two end faces along
  the box's longer side, its radius is the largest distance of the slice's 8 corners from the
  axis (a capsule is convex, so containing the corners contains the slice).

No depth at all in the box and no valid keypoint: no bounding capsule can be placed; the
person is incomplete with reason "no depth" and the controller must treat it as unknown.
"""
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy.stats import chi2

from .errors import InputError
from .keypoints import NAMES, SKELETON
from .lifting import LiftConfig, back_project, check_camera_matrix, depth_in_metres, robust_depth

#: Body-part radius (metres) around the segment between the true joint centres (module docstring).
PART_RADIUS = {"head": 0.15, "neck": 0.12, "torso": 0.15, "upper_arm": 0.07, "forearm": 0.15,
               "thigh": 0.10, "shank": 0.12}


@lru_cache(maxsize=None)
def limb_part(a: int, b: int) -> str:
    """The body part (a :data:`PART_RADIUS` key) of the limb between keypoints ``a`` and ``b``
    (cached: the capsule messages ask for it per limb and frame)."""
    names = {NAMES[a].split("_", 1)[-1], NAMES[b].split("_", 1)[-1]}
    if names <= {"nose", "eye", "ear"}:
        return "head"
    if "ear" in names:
        return "neck"
    if names <= {"shoulder", "hip"}:
        return "torso"
    for part, pair in (("upper_arm", {"shoulder", "elbow"}), ("forearm", {"elbow", "wrist"}),
                       ("thigh", {"hip", "knee"}), ("shank", {"knee", "ankle"})):
        if names == pair:
            return part
    raise InputError(f"no body part for the limb {NAMES[a]} - {NAMES[b]}")


@dataclass(frozen=True)
class KeepOutConfig:
    """Parameters of :func:`keep_out` (module docstring)."""

    coverage: float = 0.95
    part_radius: dict = field(default_factory=lambda: dict(PART_RADIUS))
    border_margin_px: float = 10.0
    border_extension_m: float = 1.0
    body_depth_m: float = 0.8
    bounding_margin_m: float = 0.10
    #: the lifting parameters: presence threshold, the robust-depth rule for the box, sigma_z
    lift: LiftConfig = field(default_factory=LiftConfig)

    def __post_init__(self):
        if not 0.0 < self.coverage < 1.0:
            raise InputError(f"coverage must lie in (0, 1), got {self.coverage}")
        table = self.lift.coverage
        if table is not None:
            q = endpoint_level(self.coverage)
            try:
                table.check_level(q)
            except InputError:
                usable = ", ".join(f"{2 * v - 1:g}" for v in table.levels if v > 0.5)
                raise InputError(f"keep_out_coverage {self.coverage:g} needs its per-endpoint level {q:g} in the "
                                 f"model's coverage table, which holds {', '.join(f'{v:g}' for v in table.levels)}: "
                                 f"use one of {usable}, or recalibrate with that level") from None
        missing = set(PART_RADIUS) - set(self.part_radius)
        if missing or any(float(r) < 0 for r in self.part_radius.values()):
            raise InputError(f"part_radius needs a radius >= 0 for each of {sorted(PART_RADIUS)} "
                             f"(missing {sorted(missing)})")


@dataclass
class Capsule:
    """Points within ``radius`` (metres) of the segment ``start``-``end`` ``(3,)``; ``limb`` the
    keypoint index pair, None for a bounding capsule."""

    start: np.ndarray
    end: np.ndarray
    radius: float
    limb: tuple | None = None

    def contains(self, points) -> np.ndarray:
        """Whether each of ``points (N, 3)`` lies in the capsule."""
        return segment_distance(points, self.start, self.end) <= self.radius


@dataclass
class KeepOut:
    """One person's capsules, ``incomplete`` flag with its ``reasons``, and track ``id``."""

    capsules: list
    incomplete: bool
    reasons: tuple = ()
    id: object = None


def segment_distance(points, start, end) -> np.ndarray:
    """Distance ``(N,)`` of ``points (N, 3)`` to the segment ``start``-``end``."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    a, b = np.asarray(start, dtype=np.float64), np.asarray(end, dtype=np.float64)
    d = b - a
    length2 = float(d @ d)
    t = np.zeros(len(p)) if length2 == 0 else np.clip((p - a) @ d / length2, 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * d), axis=1)


@lru_cache(maxsize=16)
def _chi2_3(q: float) -> float:
    """``chi2_3(q)``, the q-quantile of chi-square with 3 degrees of freedom (cached: scipy's ppf
    was two thirds of keep_out's time, 19 calls per person with one coverage per node)."""
    return float(chi2.ppf(q, 3))


def endpoint_level(coverage: float) -> float:
    """``(1 + coverage) / 2``: the level each endpoint must hold for a limb to hold ``coverage``."""
    return (1.0 + float(coverage)) / 2.0


def endpoint_radius(cov, coverage: float, radius2=None) -> np.ndarray:
    """``sqrt(R2 * lambda)`` of endpoint covariances ``cov (..., 3, 3)`` (module docstring): ``lambda``
    the largest eigenvalue (0 when negative), ``R2 = max(radius2, chi2_3(q'))`` (``radius2 (...)``:
    the calibrated 2D radius^2 at ``q'``; None or NaN: ``chi2_3(q')`` alone). Shape ``(...)``."""
    floor = _chi2_3(endpoint_level(coverage))
    largest = np.linalg.eigvalsh(np.asarray(cov, dtype=np.float64))[..., -1]
    r2 = floor if radius2 is None else np.fmax(floor, np.asarray(radius2, dtype=np.float64))
    return np.sqrt(r2 * np.maximum(largest, 0.0))


def uncertainty_radius(cov_a, cov_b, coverage: float, radius2=(None, None)):
    """``max_e sqrt(R2_e * lambda_e)`` over the two endpoint covariances ``(..., 3, 3)`` (module
    docstring, :func:`endpoint_radius`): a float for one pair, an array ``(...)`` for stacks."""
    r = np.maximum(endpoint_radius(cov_a, coverage, radius2[0]), endpoint_radius(cov_b, coverage, radius2[1]))
    return float(r) if r.ndim == 0 else r


#: (L, 2) keypoint pairs of the COCO skeleton and the body part of each (:func:`limb_part`)
_LIMBS = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)
_LIMB_PARTS = tuple(limb_part(a, b) for a, b in _LIMBS.tolist())


def limb_capsules(kp3d, config: KeepOutConfig = KeepOutConfig(), radius2=None) -> list[Capsule]:
    """A capsule per limb whose two keypoints are valid (module docstring); ``radius2 (K,)``: each
    keypoint's calibrated 2D radius^2 at the per-endpoint level (None: Gaussian only). The
    endpoint radii of all keypoints are computed at once."""
    valid = np.asarray(kp3d.valid, dtype=bool)
    limbs = np.flatnonzero(valid[_LIMBS].all(axis=1))
    if not len(limbs):
        return []
    a, b = _LIMBS[limbs].T
    cov = np.asarray(kp3d.covariance, dtype=np.float64)
    r2 = (None, None) if radius2 is None else (np.asarray(radius2, dtype=np.float64)[a],
                                               np.asarray(radius2, dtype=np.float64)[b])
    part = np.array([float(config.part_radius[_LIMB_PARTS[i]]) for i in limbs.tolist()])
    radius = (part + uncertainty_radius(cov[a], cov[b], config.coverage, r2)).tolist()
    position = np.asarray(kp3d.position, dtype=np.float64)
    return [Capsule(position[i].copy(), position[j].copy(), r, (i, j))
            for i, j, r in zip(a.tolist(), b.tolist(), radius)]


def calibrated_radius2(humans, config: KeepOutConfig, frame_size):
    """The people's per-keypoint calibrated radius^2 ``(N, K)`` at the per-endpoint level (images of
    ``frame_size`` (W, H)), or None without a coverage table."""
    table = config.lift.coverage
    if table is None or not len(humans):
        return None
    return table.ellipse_radius2(endpoint_level(config.coverage), [h.bbox for h in humans], frame_size)


def _touches(bbox, image_size, margin: float) -> dict:
    x, y, w, h = (float(v) for v in bbox)
    width, height = image_size
    return {"left": x <= margin, "top": y <= margin, "right": x + w >= width - margin,
            "bottom": y + h >= height - margin}


def bounding_capsule(bbox, depth_m, camera_matrix, kp3d, config: KeepOutConfig = KeepOutConfig()):
    """The bounding capsule of a person (module docstring), or None when no depth places it."""
    height, width = depth_m.shape
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(int(np.floor(x)), 0), max(int(np.floor(y)), 0)
    x1, y1 = min(int(np.ceil(x + w)), width), min(int(np.ceil(y + h)), height)
    candidates = []
    if x0 < x1 and y0 < y1:
        box = depth_m[y0:y1, x0:x1]
        candidates.append(robust_depth(box[np.isfinite(box)], config.lift))
    if kp3d is not None and kp3d.valid.any():
        z = kp3d.position[kp3d.valid, 2]
        candidates.extend(z - 3.0 * np.sqrt(np.clip(kp3d.covariance[kp3d.valid, 2, 2], 0, None)))
    candidates = [c for c in candidates if np.isfinite(c)]
    if not candidates:
        return None
    z_near = max(min(candidates) - config.bounding_margin_m, config.lift.depth_range[0])
    z_far = z_near + config.body_depth_m
    fx, fy = camera_matrix[0, 0], camera_matrix[1, 1]
    margin = np.array([fx, fy]) * config.bounding_margin_m / z_near
    extension = np.array([fx, fy]) * config.border_extension_m / z_near
    touches = _touches(bbox, (width, height), config.border_margin_px)
    lo = np.array([x, y]) - margin - extension * [touches["left"], touches["top"]]
    hi = np.array([x + w, y + h]) + margin + extension * [touches["right"], touches["bottom"]]
    corners2d = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
    corners = np.concatenate([back_project(corners2d, np.full(4, z), camera_matrix) for z in (z_near, z_far)])
    # faces along the longer side: top (corners 0, 1) / bottom (2, 3), or left (0, 3) / right (1, 2)
    ends = ((0, 1), (2, 3)) if hi[1] - lo[1] >= hi[0] - lo[0] else ((0, 3), (1, 2))
    start, end = (corners[[i, j, i + 4, j + 4]].mean(axis=0) for i, j in ends)
    return Capsule(start, end, float(segment_distance(corners, start, end).max()), None)


def keep_out(human, kp3d, depth_m, camera_matrix, config: KeepOutConfig = KeepOutConfig(), radius2=None) -> KeepOut:
    """:class:`KeepOut` of one person: its limb capsules, the incomplete rule and, when
    incomplete, its bounding capsule (module docstring). ``depth_m``: :func:`lifting.depth_in_metres`;
    ``camera_matrix``: :func:`lifting.check_camera_matrix`; ``radius2 (K,)``: the person's row of
    :func:`calibrated_radius2` (None: Gaussian only)."""
    height, width = depth_m.shape
    present = np.asarray(kp3d.presence, dtype=np.float64) >= config.lift.presence_threshold
    reasons = []
    if (present & ~kp3d.valid).any():
        lost = [NAMES[i] for i in np.flatnonzero(present & ~kp3d.valid)]
        reasons.append(f"present keypoints without a valid 3D point: {', '.join(lost)}")
    touches = [side for side, hit in _touches(human.bbox, (width, height), config.border_margin_px).items() if hit]
    if (~present).any() and touches:
        reasons.append(f"absent keypoints with the box at the image border ({', '.join(touches)})")
    if not kp3d.valid.any():
        reasons.append("no valid keypoint")
    capsules = limb_capsules(kp3d, config, radius2)
    if reasons:
        bounding = bounding_capsule(human.bbox, depth_m, camera_matrix, kp3d, config)
        if bounding is None:
            reasons.append("no depth: no bounding capsule could be placed")
        else:
            capsules.append(bounding)
    return KeepOut(capsules=capsules, incomplete=bool(reasons), reasons=tuple(reasons), id=human.id)


def keep_out_frame(humans, keypoints3d, depth_m, camera_matrix, config: KeepOutConfig = KeepOutConfig()) -> list[KeepOut]:
    """:func:`keep_out` of every person of a frame with its :class:`lifting.Keypoints3D` (same
    order); the calibrated radii of all people come from one table look-up."""
    if len(humans) != len(keypoints3d):
        raise InputError(f"got {len(keypoints3d)} 3D keypoint sets for {len(humans)} humans")
    height, width = depth_m.shape
    radius2 = calibrated_radius2(humans, config, (width, height))
    return [keep_out(h, p, depth_m, camera_matrix, config, None if radius2 is None else radius2[i])
            for i, (h, p) in enumerate(zip(humans, keypoints3d))]


def keep_out_humans(humans, keypoints3d, depth, camera_matrix,
                    config: KeepOutConfig = KeepOutConfig()) -> list[KeepOut]:
    """Per frame: :func:`keep_out_frame` with ``depth`` (uint16 mm or float32 m) and
    ``camera_matrix (3, 3)``."""
    return keep_out_frame(humans, keypoints3d, depth_in_metres(depth), check_camera_matrix(camera_matrix), config)
