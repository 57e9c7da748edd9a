"""Credible regions of probability maps, in image coordinates.

The region of one map at level ``q`` is the smallest set of highest-probability pixels
holding at least ``q`` of its mass (:func:`credible_mask`); :func:`credible_polygons` gives its
outlines in image coordinates and :func:`covariance_ellipse` the map's mean and covariance
carried through the window's heatmap -> image affine. Maps are (..., H, W) in heatmap pixels
(x right, y down, pixel centres at integers, UDP). These are what the node publishes as
uncertainty regions; calibration.py makes the levels mean what they say.
"""
import cv2
import numpy as np

from . import geometry
from .errors import InputError


def flat_maps(prob_maps) -> np.ndarray:
    """Maps (..., H, W) as float64 rows (M, H*W); InputError for fewer than 2 dims."""
    p = np.asarray(prob_maps, dtype=np.float64)
    if p.ndim < 2:
        raise InputError(f"probability maps must be (..., H, W), got shape {p.shape}")
    return p.reshape(-1, p.shape[-2] * p.shape[-1])



def credible_mask(prob_map, q: float) -> np.ndarray:
    """Credible region at level ``q``: bool (..., H, W).

    The highest-probability pixels holding at least ``q`` of each map's mass: pixel ``x`` is in
    it exactly when the mass of the pixels more probable than ``x`` is below ``q`` (so pixels
    tied at the boundary are all in, and zero-probability pixels never). ``q <= 0``: empty.
    """
    p_nd = np.asarray(prob_map, dtype=np.float64)
    p = flat_maps(p_nd)
    if q <= 0:
        return np.zeros(p_nd.shape, dtype=bool)
    if p.shape[0] == 1:  # one map: only its support matters (Sparsemax maps are compact)
        row = p[0]
        positive = row[row > 0]
        if positive.size == 0:
            return np.zeros(p_nd.shape, dtype=bool)
        ordered = -np.sort(-positive)
        cumsum = np.cumsum(ordered)
        needed = min(int((cumsum < min(float(q), 1.0) * cumsum[-1]).sum()), ordered.size - 1)
        return ((row >= ordered[needed]) & (row > 0)).reshape(p_nd.shape)
    ordered = -np.sort(-p, axis=1)
    cumsum = np.cumsum(ordered, axis=1)
    target = min(float(q), 1.0) * cumsum[:, -1:]
    needed = np.minimum((cumsum < target).sum(axis=1), p.shape[1] - 1)  # index of the last pixel
    threshold = ordered[np.arange(p.shape[0]), needed][:, None]
    return ((p >= threshold) & (p > 0)).reshape(p_nd.shape)


def credible_polygons(prob_map, q: float, center, scale) -> list[np.ndarray]:
    """Outlines of the credible region of one map (H, W) at level ``q``, in image coordinates.

    Returns a list of ``(M, 2)`` float arrays, one per connected part (cv2 external contours
    through the centres of the region's boundary pixels; a one-pixel part is a single point),
    largest part first. ``center``/``scale``: the activation window of the map (geometry).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    if p.ndim != 2:
        raise InputError(f"credible_polygons takes one (H, W) map, got shape {p.shape}")
    mask = credible_mask(p, q).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contours = sorted(contours, key=lambda c: (-cv2.contourArea(c), -len(c)))
    size = (p.shape[1], p.shape[0])
    return [geometry.heatmap_to_image(c.reshape(-1, 2).astype(np.float64), center, scale, size)
            for c in contours]


def map_moments(prob_maps) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(..., 2)`` (x, y) and covariance ``(..., 2, 2)`` of maps (..., H, W), heatmap pixels.

    Maps are normalised by their own mass; an all-zero map gives NaN.
    """
    p = np.asarray(prob_maps)
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
    h, w = p.shape[-2:]
    xs, ys = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    px, py = p.sum(axis=-2, dtype=np.float64), p.sum(axis=-1, dtype=np.float64)  # marginals (..., W), (..., H)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = px.sum(-1)
        px, py = px / total[..., None], py / total[..., None]
        mx, my = px @ xs, py @ ys
        dx, dy = xs - mx[..., None], ys - my[..., None]  # (..., W), (..., H)
        vxx = (px * dx ** 2).sum(-1)
        vyy = (py * dy ** 2).sum(-1)
        vxy = ((p @ dx[..., None])[..., 0] * dy).sum(-1) / total  # sum_hw p dy dx, as a matmul
    mean = np.stack([mx, my], axis=-1)
    cov = np.stack([np.stack([vxx, vxy], -1), np.stack([vxy, vyy], -1)], -2)
    return mean, cov


def covariance_ellipse(prob_map, center, scale) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(..., 2)`` and covariance ``(..., 2, 2)`` of maps in image coordinates.

    prob_map: (H, W) with ``center``/``scale`` (2,), or (N, K, H, W) with (N, 2) windows (one
    per instance). The heatmap moments are carried through the window's heatmap -> image
    affine: ``mean_img = A mean + b``, ``cov_img = A cov A^T``. A one-pixel map has zero
    covariance (no sub-pixel spread is added).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    center, scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    size = (p.shape[-1], p.shape[-2])
    mean_hm, cov_hm = map_moments(p)
    if p.ndim == 2:
        to_image = geometry.invert_affine(geometry.udp_affine(center, scale, size))
        lin = to_image[:, :2]
        return geometry.apply_affine(to_image, mean_hm), lin @ cov_hm @ lin.T
    if p.ndim != 4 or center.shape != (p.shape[0], 2) or scale.shape != (p.shape[0], 2):
        raise InputError(f"maps {p.shape} need (H, W) with (2,) windows or (N, K, H, W) with (N, 2) windows")
    mean, cov = np.empty_like(mean_hm), np.empty_like(cov_hm)
    for n in range(p.shape[0]):  # one affine per instance; keypoints vectorised
        to_image = geometry.invert_affine(geometry.udp_affine(center[n], scale[n], size))
        lin = to_image[:, :2]
        mean[n] = geometry.apply_affine(to_image, mean_hm[n])
        cov[n] = lin @ cov_hm[n] @ lin.T
    return mean, cov


def ellipse_axes(cov, q: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes ``(..., 2)`` (major, minor) and angle ``(...,)`` in degrees of the level-``q`` ellipse.

    For a Gaussian with covariance ``cov (..., 2, 2)`` the ellipse holding ``q`` of the mass has
    semi-axes ``sqrt(-2 ln(1 - q) * eigenvalue)``; the angle is that of the major axis from +x
    towards +y (image y down), as cv2.ellipse expects.
    """
    cov = np.asarray(cov, dtype=np.float64)
    values, vectors = np.linalg.eigh(cov)  # ascending
    radius2 = -2.0 * np.log1p(-min(max(float(q), 0.0), 1.0 - 1e-12))
    axes = np.sqrt(np.clip(values[..., ::-1], 0, None) * radius2)
    major = vectors[..., :, 1]
    angle = np.degrees(np.arctan2(major[..., 1], major[..., 0]))
    return axes, angle
