"""Credible regions of probability maps, in image coordinates.

The region of one map at level ``q`` is the smallest set of highest-probability pixels
holding at least ``q`` of its mass (:func:`credible_mask`); :func:`credible_polygons` gives its
outlines in image coordinates (:func:`credible_polygons_batch` / :func:`keypoint_regions` for
many maps in one go) and :func:`covariance_ellipse` the map's mean and covariance
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
    """Credible region at level ``q``: bool (..., H, W) for non-negative maps (..., H, W).

    The highest-probability pixels holding at least ``q`` of each map's mass: pixel ``x`` is in
    it exactly when the mass of the pixels more probable than ``x`` is below ``q`` (so pixels
    tied at the boundary are all in, and zero-probability pixels never). ``q <= 0``: empty.
    Only each map's support is sorted (Sparsemax maps are compact), all maps in one sort.
    """
    p_nd = np.asarray(prob_map)
    if p_nd.dtype not in (np.float32, np.float64):  # float32 stays: its values are exact in float64
        p_nd = p_nd.astype(np.float64)
    if p_nd.ndim < 2:
        raise InputError(f"probability maps must be (..., H, W), got shape {p_nd.shape}")
    p = p_nd.reshape(-1, p_nd.shape[-2] * p_nd.shape[-1])
    if q <= 0 or p.size == 0:
        return np.zeros(p_nd.shape, dtype=bool)
    positive = p > 0
    flat = np.flatnonzero(positive)  # row-major: each map's support is one run
    if flat.size == 0:
        return np.zeros(p_nd.shape, dtype=bool)
    rows = flat // p.shape[1]
    counts = np.bincount(rows, minlength=p.shape[0])
    starts = np.cumsum(counts) - counts
    support = np.zeros((p.shape[0], int(counts.max())))  # each map's positive values, then zeros
    support[rows, np.arange(flat.size) - starts[rows]] = p.reshape(-1)[flat]
    ordered = -np.sort(-support, axis=1)
    cumsum = np.cumsum(ordered, axis=1)  # sequential sums: the same values for one map or many
    target = min(float(q), 1.0) * cumsum[:, -1:]
    needed = np.minimum((cumsum < target).sum(axis=1), np.maximum(counts - 1, 0))  # index of the last pixel
    threshold = ordered[np.arange(p.shape[0]), needed][:, None]
    return (positive & (p >= threshold)).reshape(p_nd.shape)


def credible_polygons(prob_map, q: float, center, scale) -> list[np.ndarray]:
    """Outlines of the credible region of one map (H, W) at level ``q``, in image coordinates.

    Returns a list of ``(M, 2)`` float arrays, one per connected part (cv2 external contours
    through the centres of the region's boundary pixels; a one-pixel part is a single point),
    largest part first. ``center``/``scale``: the activation window of the map (geometry).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    if p.ndim != 2:
        raise InputError(f"credible_polygons takes one (H, W) map, got shape {p.shape}")
    return credible_polygons_batch(p[None], q, np.reshape(center, (1, 2)), np.reshape(scale, (1, 2)))[0]


def credible_polygons_batch(prob_maps, q: float, center, scale) -> list[list[np.ndarray]]:
    """:func:`credible_polygons` of maps ``(M, H, W)`` with windows ``center``/``scale (M, 2)``.

    One support sort for all maps (:func:`credible_mask`), ONE cv2.findContours over the masks
    stacked with a zero row between them (a zero row keeps 8-connected parts apart), and one
    closed-form heatmap -> image affine over every outline point. Returns per map its outlines.
    """
    p = np.asarray(prob_maps, dtype=np.float64)
    if p.ndim != 3:
        raise InputError(f"credible_polygons_batch takes maps (M, H, W), got shape {p.shape}")
    m, h, w = p.shape
    center = np.broadcast_to(np.asarray(center, dtype=np.float64), (m, 2))
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (m, 2))
    if m == 0:
        return []
    stacked = np.zeros((m, h + 1, w), dtype=np.uint8)
    stacked[:, :h] = credible_mask(p, q)
    contours, _ = cv2.findContours(stacked.reshape(m * (h + 1), w), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    per_map: list[list] = [[] for _ in range(m)]
    for c in contours:
        per_map[int(c[0, 0, 1]) // (h + 1)].append(c)
    outlines, owners = [], []
    for i, parts in enumerate(per_map):
        parts.sort(key=lambda c: (-cv2.contourArea(c), -len(c)))
        outlines.extend(parts)
        owners.extend([i] * len(parts))
    if not outlines:
        return [[] for _ in range(m)]
    lengths = [len(c) for c in outlines]
    owner = np.repeat(np.asarray(owners), lengths)
    points = np.concatenate(outlines).reshape(-1, 2).astype(np.float64)
    points[:, 1] -= owner * (h + 1)
    image = geometry.heatmap_to_image(points, center[owner], scale[owner], (w, h))
    pieces = np.split(image, np.cumsum(lengths)[:-1])
    result: list[list[np.ndarray]] = [[] for _ in range(m)]
    for i, piece in zip(owners, pieces):
        result[i].append(piece)
    return result


def keypoint_regions(prob_maps, present, center, scale, levels) -> list[list[dict]]:
    """``{q: outlines}`` per instance and keypoint of maps ``(N, K, H, W)`` at each of ``levels``.

    Only keypoints with ``present (N, K)`` True get outlines (:func:`credible_polygons`), the
    others ``{}``; ``center``/``scale (N, 2)`` are the instances' windows. One batched call per
    level for all present maps of all instances.
    """
    maps = np.asarray(prob_maps)
    present = np.asarray(present, dtype=bool).reshape(maps.shape[:2])
    out: list[list[dict]] = [[{} for _ in range(maps.shape[1])] for _ in range(maps.shape[0])]
    n_idx, k_idx = np.nonzero(present)
    if n_idx.size == 0:
        return out
    center, scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    for q in levels:
        polys = credible_polygons_batch(maps[n_idx, k_idx], q, center[n_idx], scale[n_idx])
        for n, k, outlines in zip(n_idx.tolist(), k_idx.tolist(), polys):
            out[n][k][q] = outlines
    return out


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
