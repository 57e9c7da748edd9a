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
   of ``min_radius_px`` about ``(x, y)``. The level is 0.9 by default, not the pipeline's 0.5,
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
    """Parameters of :func:`lift_human` (see the module docstring)."""

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


def region_samples(depth_m, keypoint, level: float, min_radius_px: float, extra_cov=None, radius2=None) -> np.ndarray:
    """Valid depths (metres) of the pixels in the sampling region of ``keypoint`` (module
    docstring, step 1) in ``depth_m`` (float, NaN = none); empty when it is off the image.
    ``radius2``: the level's squared Mahalanobis radius (calibrated), None for a Gaussian's."""
    h, w = depth_m.shape
    cx, cy = float(keypoint.x), float(keypoint.y)
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in keypoint.regions.get(level, [])]
    cov = np.asarray(keypoint.covariance, dtype=np.float64)
    if extra_cov is not None:
        cov = cov + extra_cov
    (major, minor), angle = ellipse_axes(cov, level, radius2) if np.isfinite(cov).all() else ((0.0, 0.0), 0.0)
    reach = max(float(major), float(min_radius_px), 0.0)
    pts = np.concatenate(polys + [np.array([[cx - reach, cy - reach], [cx + reach, cy + reach]])])
    x0, y0 = np.floor(pts.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(pts.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if x0 >= x1 or y0 >= y1:
        return np.empty(0, dtype=np.float32)
    mask = np.zeros((y1 - y0, x1 - x0), dtype=np.uint8)
    offset = np.array([x0, y0], dtype=np.float64)
    shift = 4  # cv2 drawing with 1/16-pixel precision
    scale = float(1 << shift)
    if polys:
        cv2.fillPoly(mask, [np.round((p - offset) * scale).astype(np.int32) for p in polys], 1, cv2.LINE_8, shift)
    centre = tuple(int(round(v * scale)) for v in (cx - x0, cy - y0))
    if major > 0:
        axes = tuple(int(round(v * scale)) for v in (major, minor))
        cv2.ellipse(mask, centre, axes, float(angle), 0.0, 360.0, 1, -1, cv2.LINE_8, shift)
    cv2.circle(mask, centre, int(round(min_radius_px * scale)), 1, -1, cv2.LINE_8, shift)
    values = depth_m[y0:y1, x0:x1][mask.astype(bool)]
    return values[np.isfinite(values)]


def robust_depth(samples, config: LiftConfig) -> float:
    """The nearest-surface depth of ``samples`` (metres, module docstring step 2), NaN when
    fewer than ``config.min_pixels`` lie in ``config.depth_range``."""
    s = np.asarray(samples, dtype=np.float64)
    lo, hi = config.depth_range
    s = s[(s >= lo) & (s <= hi)]
    if len(s) < int(config.min_pixels):
        return float("nan")
    z_ref = float(np.percentile(s, config.near_percentile))
    near = s[s <= z_ref + config.band_m + 3.0 * float(config.noise.sigma(z_ref))]
    return float(np.median(near))


def lift_human(human, depth_m, camera_matrix, config: LiftConfig = LiftConfig()) -> Keypoints3D:
    """:class:`Keypoints3D` of one ``Human`` from ``depth_m`` (:func:`depth_in_metres`) and a
    checked ``camera_matrix`` (:func:`check_camera_matrix`); see the module docstring."""
    if len(human.keypoints) != NUM_KEYPOINTS:
        raise InputError(f"a human needs {NUM_KEYPOINTS} keypoints ({', '.join(NAMES[:2])}, ...), "
                         f"got {len(human.keypoints)}")
    h, w = depth_m.shape
    extra = np.eye(2) * config.pixel_sigma ** 2
    kp = human.keypoint_array()
    z = np.full(NUM_KEYPOINTS, np.nan)
    counts = np.zeros(NUM_KEYPOINTS, dtype=int)
    cov_uv = np.stack([np.asarray(k.covariance, dtype=np.float64).reshape(2, 2) for k in human.keypoints]) + extra
    radius2 = [None] * NUM_KEYPOINTS if config.coverage is None else \
        config.coverage.ellipse_radius2(config.sample_level, [human.bbox], (w, h))[0]
    for i, k in enumerate(human.keypoints):
        inside = np.isfinite(kp[i, :2]).all() and -0.5 <= kp[i, 0] < w - 0.5 and -0.5 <= kp[i, 1] < h - 0.5
        if kp[i, 2] < config.presence_threshold or not inside or not np.isfinite(cov_uv[i]).all():
            continue
        samples = region_samples(depth_m, k, config.sample_level, config.min_radius_px, extra, radius2[i])
        counts[i] = len(samples)
        z[i] = robust_depth(samples, config)
    valid = np.isfinite(z)
    position = np.full((NUM_KEYPOINTS, 3), np.nan)
    covariance = np.full((NUM_KEYPOINTS, 3, 3), np.nan)
    if valid.any():
        uv, zv = kp[valid, :2], z[valid]
        sigma_z = config.noise.sigma(zv)
        surface = back_project(uv, zv, camera_matrix)
        if config.joint_offset:
            surface += surface / np.linalg.norm(surface, axis=1, keepdims=True) * JOINT_DEPTH[valid, None]
        position[valid] = surface
        covariance[valid] = back_project_covariance(uv, zv, cov_uv[valid], sigma_z, camera_matrix)
    return Keypoints3D(position=position, covariance=covariance, valid=valid, presence=kp[:, 2].copy(),
                       depth_pixels=counts, id=human.id)


def lift_humans(humans, depth, camera_matrix, config: LiftConfig = LiftConfig()) -> list[Keypoints3D]:
    """Per frame: :func:`lift_human` of every human with ``depth`` (uint16 mm or float32 m,
    aligned to the colour image the humans come from) and ``camera_matrix (3, 3)``."""
    depth_m = depth_in_metres(depth)
    k = check_camera_matrix(camera_matrix)
    return [lift_human(h, depth_m, k, config) for h in humans]
