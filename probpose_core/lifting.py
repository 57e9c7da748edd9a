"""Lifting keypoints to 3D with an aligned depth image: positions, covariances, valid flags.

Input per frame: the pipeline's ``Human`` list, a depth image aligned to the colour image
(same size and pixel grid: ``uint16`` millimetres as ROS ``16UC1``, or ``float32`` metres as
``32FC1``; 0, NaN, inf and values outside ``depth_range`` are no measurement) and the camera
matrix ``K (3, 3)`` of that image. Output per human: :class:`Keypoints3D` in the camera's
optical frame (x right, y down, z forward, metres), the frame of the depth image.

Per keypoint ``k`` with ``presence >= presence_threshold``:

1. **Sampling region** (image px): the union of the keypoint's credible-region outlines at
   ``sample_level`` (``Keypoint.regions``, when the pipeline computed that level), the ellipse
   of its 2D covariance (the map's second moment about the published point) at
   ``sample_level`` (:func:`regions.ellipse_axes`: with the model's coverage table in
   ``LiftConfig.coverage`` its calibrated radius for the keypoint's group and box, else a
   Gaussian's ``chi2_2``) and a disc
   of ``min_radius_px`` about ``(x, y)``: a pixel belongs to it when its centre lies in the
   ellipse or the disc, or when cv2 fills it inside an outline (:func:`region_samples`, all
   keypoints of all people in one call). The level is 0.9 by default, not the pipeline's 0.5,
   so that a thin limb is inside the region even when the estimate is off it.
2. **Robust depth** of the valid pixels of that region: the region also holds background
   (farther) and, rarely, something in front. ``z_ref`` = the ``near_percentile`` (10) of the
   samples; the depth is the median of the samples no farther than ``z_ref + band_m +
   3 sigma_z(z_ref)``: the nearest surface cluster, robust to the 10 % nearest outliers and to
   any amount of background. Fewer than ``min_pixels`` valid samples: not valid.
3. **Back-projection** ``X = z_s * K^-1 [u, v, 1]``, then pushed along the viewing ray by
   :data:`JOINT_DEPTH` ``[k]``: the depth camera sees the skin, the keypoint is a joint centre
   (``joint_offset=False`` keeps the surface point).
4. **Covariance** ``(3, 3)``: first-order propagation through the back-projection,
   ``J diag(Sigma_uv + pixel_sigma^2 I, sigma_z^2) J^T`` with the Jacobian of ``(u, v, z) ->
   X``: ``J = [z K^-1[:, 0], z K^-1[:, 1], K^-1 [u, v, 1]]``, and ``sigma_z = a + b z^2``
   (:class:`DepthNoise`, a parameter: the default is of the order of an active-stereo camera's
   RMS error, not a measurement of the user's camera). ``pixel_sigma`` (1 image px) keeps a
   small probability map from claiming more than the image's resolution. The joint offset is a
   constant: its error is not in the covariance (the keep-out body-part radius covers it).

``valid[k]`` is True exactly when the keypoint is present, ``(x, y)`` is finite and inside
the image, its 2D covariance is finite, and a robust depth was found.
"""
from dataclasses import dataclass, field

import cv2
import numpy as np

from .errors import InputError
from .keypoints import NAMES, NUM_KEYPOINTS
from .regions import ellipse_axes
from .spec import DEFAULT_PRESENCE_THRESHOLD

#: Depth of the joint centre behind the visible skin for a person facing the camera (metres),
#: per COCO keypoint: 0 for the face landmarks (they are on the surface); about half the
#: limb's thickness for shoulders (0.05), elbows (0.04), wrists (0.03), hips (0.07),
#: knees (0.05) and ankles (0.04).
JOINT_DEPTH = np.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.05, 0.05, 0.04, 0.04, 0.03, 0.03,
                        0.07, 0.07, 0.05, 0.05, 0.04, 0.04])
JOINT_DEPTH.flags.writeable = False


@dataclass(frozen=True)
class DepthNoise:
    """Depth noise ``sigma_z(z) = a + b * z^2`` (metres): ``a`` 1 mm, ``b`` 0.002 / m gives 3 mm at
    1 m, 1.9 cm at 3 m, 5.1 cm at 5 m (the z^2 growth of stereo / structured-light cameras)."""

    a: float = 0.001
    b: float = 0.002

    def sigma(self, z):
        return self.a + self.b * np.square(z)


@dataclass(frozen=True)
class LiftConfig:
    """Parameters of :func:`lift_frame` (see the module docstring)."""

    presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD
    sample_level: float = 0.9
    min_radius_px: float = 2.0
    near_percentile: float = 10.0
    band_m: float = 0.10
    min_pixels: int = 3
    depth_range: tuple = (0.05, 20.0)
    pixel_sigma: float = 1.0
    noise: DepthNoise = field(default_factory=DepthNoise)
    joint_offset: bool = True
    #: the model's conformal.CoverageTable (spec.coverage), or None: Gaussian ellipse radii
    coverage: object = None

    def __post_init__(self):
        if not 0.0 < self.sample_level < 1.0:
            raise InputError(f"sample_level must lie in (0, 1), got {self.sample_level}")
        if self.coverage is not None:
            self.coverage.check_level(self.sample_level)
        if int(self.min_pixels) < 1 or self.min_radius_px < 0 or self.band_m < 0:
            raise InputError("min_pixels must be >= 1, min_radius_px and band_m >= 0")


@dataclass
class Keypoints3D:
    """One person's keypoints in 3D (camera optical frame, metres): ``position (K, 3)`` (NaN where
    not valid), ``covariance (K, 3, 3)`` (NaN where not valid), ``valid (K,)``, ``presence (K,)``
    (copied from the 2D keypoints), ``depth_pixels (K,)`` (valid depth samples used) and the
    human's track ``id``."""

    position: np.ndarray
    covariance: np.ndarray
    valid: np.ndarray
    presence: np.ndarray
    depth_pixels: np.ndarray
    id: object = None


def depth_in_metres(depth) -> np.ndarray:
    """``(H, W)`` float32 metres of a ``uint16`` millimetre or ``float32`` / ``float64`` metre
    image; 0, NaN and inf become NaN. InputError for other shapes or dtypes."""
    d = np.asarray(depth)
    if d.ndim != 2 or d.size == 0:
        raise InputError(f"depth must be an (H, W) image, got shape {d.shape}")
    if d.dtype == np.uint16:
        out = d.astype(np.float32) * np.float32(0.001)
    elif d.dtype in (np.float32, np.float64):
        out = d.astype(np.float32, copy=True)
    else:
        raise InputError(f"depth must be uint16 millimetres (16UC1) or float32 metres (32FC1), got {d.dtype}")
    out[~np.isfinite(out) | (out <= 0)] = np.nan
    return out


def check_camera_matrix(camera_matrix) -> np.ndarray:
    """``K`` as a (3, 3) float64 array with positive focal lengths, or InputError."""
    k = np.asarray(camera_matrix, dtype=np.float64)
    if k.size == 9:
        k = k.reshape(3, 3)
    if k.shape != (3, 3) or not np.isfinite(k).all() or k[0, 0] <= 0 or k[1, 1] <= 0 or k[2, 2] == 0:
        raise InputError(f"camera matrix must be a finite 3x3 K with positive fx, fy, got {k.tolist()}")
    return k / k[2, 2]


def back_project(uv, z, camera_matrix) -> np.ndarray:
    """Points ``(N, 3)`` at depth ``z (N,)`` on the rays of pixels ``uv (N, 2)``: ``z K^-1 [u, v, 1]``."""
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    rays = np.column_stack([uv, np.ones(len(uv))]) @ np.linalg.inv(camera_matrix).T
    return rays * np.asarray(z, dtype=np.float64).reshape(-1, 1)


def back_project_covariance(uv, z, cov_uv, sigma_z, camera_matrix) -> np.ndarray:
    """Covariance ``(N, 3, 3)`` of :func:`back_project` for pixel covariance ``cov_uv (N, 2, 2)``
    and depth standard deviation ``sigma_z (N,)`` (independent), to first order."""
    k_inv = np.linalg.inv(camera_matrix)
    uv = np.asarray(uv, dtype=np.float64).reshape(-1, 2)
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    rays = np.column_stack([uv, np.ones(len(uv))]) @ k_inv.T
    jac = np.empty((len(uv), 3, 3))
    jac[:, :, 0] = z[:, None] * k_inv[:, 0]
    jac[:, :, 1] = z[:, None] * k_inv[:, 1]
    jac[:, :, 2] = rays
    cov_in = np.zeros((len(uv), 3, 3))
    cov_in[:, :2, :2] = np.asarray(cov_uv, dtype=np.float64).reshape(-1, 2, 2)
    cov_in[:, 2, 2] = np.square(np.asarray(sigma_z, dtype=np.float64).reshape(-1))
    return jac @ cov_in @ jac.transpose(0, 2, 1)


def _pixel_run(lo, hi, width: int) -> np.ndarray:
    """``(R, 2)`` first and last column of the pixels of a row whose centres lie in ``[lo, hi] (R,)``
    within ``[0, width - 1]``; an empty run (none, or ``lo`` / ``hi`` NaN) has last = first - 1."""
    empty = ~(lo <= hi)
    first = np.clip(np.ceil(np.where(empty, 0.0, lo)), 0, width).astype(np.intp)
    last = np.clip(np.floor(np.where(empty, -1.0, hi)), -1, width - 1).astype(np.intp)
    return np.stack([first, np.maximum(last, first - 1)], axis=1)


def region_samples(depth_m, centres, cov, level: float, min_radius_px: float, radius2=None, polygons=None):
    """The valid depths (metres) of the pixels in the sampling regions (module docstring, step 1) of
    keypoints at ``centres (M, 2)`` (image px) with pixel covariances ``cov (M, 2, 2)``, all at once.

    A pixel belongs to keypoint ``m``'s region when its centre lies in the level-``level`` ellipse of
    ``cov[m]`` (:func:`regions.ellipse_axes`; ``radius2 (M,)``: the level's calibrated squared
    Mahalanobis radii, None for a Gaussian's; an ellipse with a zero axis adds nothing) or within
    ``min_radius_px`` of ``centres[m]``, or inside one of the outlines ``polygons[m]`` (a list of
    ``(P, 2)`` arrays per keypoint, filled by cv2 as one even-odd area; None: no outlines). The
    ellipse and the disc are cut into one or two runs of pixels per image row, so only the pixels
    of the region are read. Returns ``values (S,)`` float32, keypoint after keypoint, and
    ``counts (M,)``: how many of them are keypoint ``m``'s; pixels off ``depth_m`` or without a
    measurement (NaN) are not samples.
    """
    h, w = depth_m.shape
    centres = np.asarray(centres, dtype=np.float64).reshape(-1, 2)
    m = len(centres)
    if m == 0:
        return np.empty(0, dtype=depth_m.dtype), np.zeros(0, dtype=np.intp)
    axes, angle = ellipse_axes(np.asarray(cov, dtype=np.float64).reshape(m, 2, 2), level, radius2)
    major, minor = (np.where(np.isfinite(axes[:, i]), axes[:, i], 0.0) for i in (0, 1))
    disc = max(float(min_radius_px), 0.0)
    reach = np.fmax(major, disc)
    # the rows each keypoint's ellipse or disc may reach, one after the other
    row0 = np.clip(np.ceil(centres[:, 1] - reach), 0, h).astype(np.intp)
    rows = np.clip(np.floor(centres[:, 1] + reach), -1, h - 1).astype(np.intp) + 1 - row0
    rows = np.where(np.isfinite(centres).all(axis=1), np.maximum(rows, 0), 0)  # a NaN centre: no region
    owner = np.repeat(np.arange(m), rows)
    y = row0[owner] + np.arange(int(rows.sum())) - np.repeat(np.cumsum(rows) - rows, rows)
    dy, cx = y - centres[owner, 1], centres[owner, 0]
    # ellipse d^T S^-1 d <= 1 with S = R diag(major^2, minor^2) R^T, times major^2 minor^2:
    # a dx^2 + 2 b dx dy + c dy^2 <= major^2 minor^2
    cos, sin = np.cos(np.radians(angle)), np.sin(np.radians(angle))
    big, small = np.square(major), np.square(minor)
    qa, qb, qc = cos ** 2 * small + sin ** 2 * big, cos * sin * (small - big), sin ** 2 * small + cos ** 2 * big
    ok = (major > 0) & (minor > 0)
    qa, qb, qc, rhs = (np.where(ok, v, 1.0)[owner] for v in (qa, qb, qc, big * small))
    root = np.square(qb * dy) - qa * (qc * np.square(dy) - rhs)
    root = np.sqrt(np.where(ok[owner] & (root >= 0), root, np.nan))  # NaN: no ellipse on this row
    half = np.sqrt(np.where(disc ** 2 >= np.square(dy), disc ** 2 - np.square(dy), np.nan))  # NaN: off the disc
    ellipse = _pixel_run(cx + (-qb * dy - root) / qa, cx + (-qb * dy + root) / qa, w)
    dot = _pixel_run(cx - half, cx + half, w)
    # the union of the two runs of a row: one run where they overlap or touch, else both
    join = (ellipse[:, 0] <= ellipse[:, 1]) & (dot[:, 0] <= dot[:, 1]) \
        & (np.maximum(ellipse[:, 0], dot[:, 0]) <= np.minimum(ellipse[:, 1], dot[:, 1]) + 1)
    ellipse[join] = np.stack([np.minimum(ellipse[join, 0], dot[join, 0]), np.maximum(ellipse[join, 1], dot[join, 1])],
                             axis=1)
    dot[join] = [0, -1]
    span = np.stack([ellipse, dot], axis=1).reshape(-1, 2)  # (2 R, 2) first, last pixel; keypoint after keypoint
    span_owner, span_y = np.repeat(owner, 2), np.repeat(y, 2)
    length = span[:, 1] - span[:, 0] + 1
    outlined = [] if polygons is None else [i for i, polys in enumerate(polygons) if len(polys)]
    extra_values, extra_owner = [], []
    for i in outlined:  # only keypoints with outlines at the level (the node publishes another level)
        shapes = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons[i]]
        corners = np.concatenate(shapes + [centres[i] + [[-reach[i]], [reach[i]]]])
        first = np.maximum(np.floor(corners.min(axis=0)).astype(np.intp) - 1, 0)
        end = np.minimum(np.ceil(corners.max(axis=0)).astype(np.intp) + 2, [w, h])
        if (end <= first).any():
            continue
        mask = np.zeros((end[1] - first[1], end[0] - first[0]), dtype=np.uint8)
        shift = 4  # cv2 drawing with 1/16-pixel precision
        cv2.fillPoly(mask, [np.round((p - first) * (1 << shift)).astype(np.int32) for p in shapes], 1, cv2.LINE_8,
                     shift)
        mine = (span_owner == i) & (length > 0)
        edges = np.zeros((mask.shape[0], mask.shape[1] + 1), dtype=np.intp)  # the runs, as +1 / -1 edges
        np.add.at(edges, (span_y[mine] - first[1], span[mine, 0] - first[0]), 1)
        np.add.at(edges, (span_y[mine] - first[1], span[mine, 1] + 1 - first[0]), -1)
        inside = (mask > 0) | (np.cumsum(edges, axis=1)[:, :-1] > 0)
        length[mine] = 0
        extra_values.append(depth_m[first[1]:end[1], first[0]:end[0]][inside])
        extra_owner.append(np.full(len(extra_values[-1]), i))
    total = int(length.sum())
    pixel = np.repeat(span_y * w + span[:, 0] - (np.cumsum(length) - length), length) + np.arange(total)
    values = np.concatenate([depth_m.reshape(-1)[pixel]] + extra_values)
    owner = np.concatenate([np.repeat(span_owner, length)] + extra_owner)
    finite = np.isfinite(values)
    values, owner = values[finite], owner[finite]
    if outlined:
        order = np.argsort(owner, kind="stable")
        values, owner = values[order], owner[order]
    return values, np.bincount(owner, minlength=m)


def robust_depths(values, counts, config: LiftConfig) -> np.ndarray:
    """The nearest-surface depth (metres, module docstring step 2) of each of the ``len(counts)``
    runs of samples in ``values`` (run ``m``: the next ``counts[m]`` values), all at once: NaN where
    fewer than ``config.min_pixels`` samples lie in ``config.depth_range``. ``z_ref`` is numpy's
    (linear) ``percentile`` and the depth the ``median`` of the samples up to the band."""
    values = np.asarray(values).reshape(-1)
    counts = np.asarray(counts, dtype=np.intp).reshape(-1)
    m = len(counts)
    owner = np.repeat(np.arange(m), counts)
    lo, hi = config.depth_range
    keep = (values >= lo) & (values <= hi)
    values, owner = values[keep], owner[keep]
    kept = np.bincount(owner, minlength=m)
    z = np.full(m, np.nan)
    if not len(values):
        return z
    rows = np.full((m, int(kept.max())), np.inf, dtype=values.dtype)  # one sorted row per run, inf-padded
    rows[owner, np.arange(len(values)) - (np.cumsum(kept) - kept)[owner]] = values
    rows.sort(axis=1)
    ok = np.flatnonzero(kept >= max(int(config.min_pixels), 1))
    rows, count = rows[ok], kept[ok]
    take = lambda index: np.take_along_axis(rows, index[:, None], axis=1)[:, 0].astype(np.float64)  # noqa: E731
    q = config.near_percentile / 100.0
    virtual = (count - 1) * q  # numpy's 'linear' method
    below = np.clip(np.floor(virtual), 0, count - 1).astype(np.intp)
    above = np.minimum(below + 1, count - 1)
    gamma = virtual - below
    a, b = take(below), take(above)
    z_ref = np.where(gamma >= 0.5, b - (b - a) * (1.0 - gamma), a + (b - a) * gamma)  # numpy's _lerp
    near = (rows <= (z_ref + config.band_m + 3.0 * config.noise.sigma(z_ref))[:, None]).sum(axis=1)
    z[ok] = (take((near - 1) // 2) + take(near // 2)) / 2.0  # the median of the near ones
    return z


def robust_depth(samples, config: LiftConfig) -> float:
    """:func:`robust_depths` of one run of ``samples`` (metres)."""
    s = np.asarray(samples, dtype=np.float64).reshape(-1)
    return float(robust_depths(s, [len(s)], config)[0])


def lift_frame(humans, depth_m, camera_matrix, config: LiftConfig = LiftConfig()) -> list[Keypoints3D]:
    """:class:`Keypoints3D` of every ``Human`` of a frame from ``depth_m`` (:func:`depth_in_metres`)
    and a checked ``camera_matrix`` (:func:`check_camera_matrix`), all people and keypoints at once
    (module docstring)."""
    for h in humans:
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise InputError(f"a human needs {NUM_KEYPOINTS} keypoints ({', '.join(NAMES[:2])}, ...), "
                             f"got {len(h.keypoints)}")
    n = len(humans)
    if n == 0:
        return []
    h, w = depth_m.shape
    keypoints = [k for human in humans for k in human.keypoints]
    kp = np.array([(k.x, k.y, k.presence) for k in keypoints], dtype=np.float64)  # (N * K, 3)
    cov_uv = np.array([k.covariance for k in keypoints], dtype=np.float64).reshape(-1, 2, 2) \
        + np.eye(2) * config.pixel_sigma ** 2
    with np.errstate(invalid="ignore"):
        inside = np.isfinite(kp[:, :2]).all(axis=1) & (kp[:, 0] >= -0.5) & (kp[:, 0] < w - 0.5) \
            & (kp[:, 1] >= -0.5) & (kp[:, 1] < h - 0.5)
    sampled = np.flatnonzero((kp[:, 2] >= config.presence_threshold) & inside & np.isfinite(cov_uv).all(axis=(1, 2)))
    radius2 = None if config.coverage is None else \
        config.coverage.ellipse_radius2(config.sample_level, [human.bbox for human in humans], (w, h)).reshape(-1)[sampled]
    polygons = [keypoints[i].regions.get(config.sample_level, []) for i in sampled.tolist()]
    values, counts = region_samples(depth_m, kp[sampled, :2], cov_uv[sampled], config.sample_level,
                                    config.min_radius_px, radius2, polygons if any(polygons) else None)
    z = np.full(n * NUM_KEYPOINTS, np.nan)
    z[sampled] = robust_depths(values, counts, config)
    depth_pixels = np.zeros(n * NUM_KEYPOINTS, dtype=int)
    depth_pixels[sampled] = counts
    valid = np.isfinite(z)
    position = np.full((n * NUM_KEYPOINTS, 3), np.nan)
    covariance = np.full((n * NUM_KEYPOINTS, 3, 3), np.nan)
    if valid.any():
        uv, zv = kp[valid, :2], z[valid]
        surface = back_project(uv, zv, camera_matrix)
        if config.joint_offset:
            joint = np.tile(JOINT_DEPTH, n)[valid, None]
            surface += surface / np.linalg.norm(surface, axis=1, keepdims=True) * joint
        position[valid] = surface
        covariance[valid] = back_project_covariance(uv, zv, cov_uv[valid], config.noise.sigma(zv), camera_matrix)
    per = lambda a: a.reshape(n, NUM_KEYPOINTS, *a.shape[1:])  # noqa: E731
    return [Keypoints3D(position=p, covariance=c, valid=v, presence=pr, depth_pixels=d, id=human.id)
            for human, p, c, v, pr, d in zip(humans, per(position), per(covariance), per(valid), per(kp[:, 2].copy()),
                                               per(depth_pixels))]


def lift_humans(humans, depth, camera_matrix, config: LiftConfig = LiftConfig()) -> list[Keypoints3D]:
    """Per frame: :func:`lift_frame` of ``humans`` with ``depth`` (uint16 mm or float32 m,
    aligned to the colour image the humans come from) and ``camera_matrix (3, 3)``."""
    return lift_frame(humans, depth_in_metres(depth), check_camera_matrix(camera_matrix), config)
