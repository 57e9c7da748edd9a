"""Credible regions of probability maps, in image coordinates.

The region of one map at mass level ``m`` is the smallest set of highest-probability pixels
holding at least ``m`` of its mass (:func:`credible_mask`), optionally dilated by a distance
(:func:`region_masks`: what a calibrated coverage table asks for, see :mod:`conformal`);
:func:`credible_polygons` gives its outlines in image coordinates (:func:`credible_polygons_batch`
/ :func:`keypoint_regions` for many maps in one go) and :func:`covariance_ellipse` the map's
second moment about the published point carried through the window's heatmap -> image affine.

Maps are (..., H, W) in heatmap pixels (x right, y down, pixel centres at integers, UDP). Each
pixel stands for its unit CELL ``[x - 0.5, x + 0.5] x [y - 0.5, y + 0.5]``: a point belongs to
the pixel whose cell holds it (:func:`cell_index`), an outline encloses the cells of its region
(:func:`mask_outlines`: it runs along cell edges, so a one-pixel region is a unit square), and
the map's density spreads each pixel's mass uniformly over its cell (:data:`CELL_VARIANCE`).
These are what the node publishes as uncertainty regions; :mod:`conformal` makes the levels
mean what they say.
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


def credible_mask(prob_map, q) -> np.ndarray:
    """Credible region at level ``q``: bool (..., H, W) for non-negative maps (..., H, W).

    The highest-probability pixels holding at least ``q`` of each map's mass: pixel ``x`` is in
    it exactly when the mass of the pixels more probable than ``x`` is below ``q`` (so pixels
    tied at the boundary are all in, and zero-probability pixels never). ``q <= 0``: empty.
    ``q``: one level, or one per map (an array broadcasting to the maps' leading shape).
    Only each map's support is sorted (Sparsemax maps are compact), all maps in one sort.
    """
    p_nd = np.asarray(prob_map)
    if p_nd.dtype not in (np.float32, np.float64):  # float32 stays: its values are exact in float64
        p_nd = p_nd.astype(np.float64)
    if p_nd.ndim < 2:
        raise InputError(f"probability maps must be (..., H, W), got shape {p_nd.shape}")
    p = p_nd.reshape(-1, p_nd.shape[-2] * p_nd.shape[-1])
    try:
        q = np.broadcast_to(np.asarray(q, dtype=np.float64), p_nd.shape[:-2]).reshape(-1)
    except ValueError:
        raise InputError(f"levels {np.shape(q)} do not match maps {p_nd.shape}") from None
    if p.size == 0 or not (q > 0).any():
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
    target = np.minimum(q, 1.0)[:, None] * cumsum[:, -1:]
    needed = np.minimum((cumsum < target).sum(axis=1), np.maximum(counts - 1, 0))  # index of the last pixel
    threshold = ordered[np.arange(p.shape[0]), needed][:, None]
    return (positive & (p >= threshold) & (q > 0)[:, None]).reshape(p_nd.shape)


#: sub-cells per heatmap pixel (per axis) on which a dilated region is drawn
DILATION_UPSAMPLE = 4


def cell_index(points, map_size, upsample: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``(ix, iy)`` int arrays (...,) of the (sub-)cell holding each heatmap point ``(..., 2)``.

    A pixel's cell is ``[x - 0.5, x + 0.5)``; with ``upsample`` U each pixel splits into U x U
    sub-cells (the grid of :func:`region_masks`). Points off the grid (or NaN) get -1.
    """
    w, h = int(map_size[0]) * int(upsample), int(map_size[1]) * int(upsample)
    xy = np.asarray(points, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        fx, fy = np.floor((xy[..., 0] + 0.5) * upsample), np.floor((xy[..., 1] + 0.5) * upsample)
        inside = np.isfinite(fx) & np.isfinite(fy) & (fx >= 0) & (fx < w) & (fy >= 0) & (fy < h)
    return np.where(inside, np.nan_to_num(fx), -1).astype(np.int64), np.where(inside, np.nan_to_num(fy), -1).astype(np.int64)


def dilate_mask(mask, radius: float, upsample: int = DILATION_UPSAMPLE) -> np.ndarray:
    """The cells of ``mask (H, W)`` grown by ``radius`` heatmap pixels, on a grid of U x U
    sub-cells per pixel: bool ``(H U, W U)``.

    Holds every point within ``radius`` of the cells (conservative: a sub-cell is in when its
    centre lies within ``radius + sqrt(2) / U`` of the centre of a sub-cell of the mask, which
    takes in every sub-cell that any point within ``radius`` falls in).
    """
    u = int(upsample)
    fine = np.repeat(np.repeat(np.asarray(mask, dtype=bool), u, axis=0), u, axis=1)
    if radius <= 0 or not fine.any():
        return fine
    outside = (~fine).astype(np.uint8)
    distance = cv2.distanceTransform(outside, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)  # sub-cells to the mask
    return distance <= float(radius) * u + np.sqrt(2.0)


def grown_cells(mask, radius: float, upsample: int = DILATION_UPSAMPLE):
    """``(fine (h U, w U) bool, (x0, y0))``: :func:`dilate_mask` of ``mask (H, W)`` computed on the
    crop of cells that the grown region can reach (the mask's bounding box plus the radius), with
    the crop's first cell ``(x0, y0)``; None for an empty mask. Sparsemax supports are compact, so
    this is what keeps a dilated region cheap."""
    mask = np.asarray(mask, dtype=bool)
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    pad = int(np.ceil(float(radius) + 2.0)) if radius > 0 else 0
    h, w = mask.shape
    x0, y0 = max(int(xs.min()) - pad, 0), max(int(ys.min()) - pad, 0)
    x1, y1 = min(int(xs.max()) + pad + 1, w), min(int(ys.max()) + pad + 1, h)
    return dilate_mask(mask[y0:y1, x0:x1], radius, upsample), (x0, y0)


def region_masks(prob_maps, levels, dilations=None, upsample: int | None = None) -> np.ndarray:
    """Regions of maps ``(M, H, W)``: the credible set at mass level ``levels (M,)`` (or one),
    each grown by ``dilations (M,)`` heatmap pixels (:func:`dilate_mask`). Bool ``(M, H U, W U)``
    with ``upsample`` U: 1 when nothing is dilated, else :data:`DILATION_UPSAMPLE` (default)."""
    masks, grow, u = _credible_cells(prob_maps, levels, dilations, upsample)
    if u == 1:
        return masks
    m, h, w = masks.shape
    out = np.zeros((m, h * u, w * u), dtype=bool)
    for i in range(m):
        grown = grown_cells(masks[i], grow[i], u)
        if grown is not None:
            fine, (x0, y0) = grown
            out[i, y0 * u:y0 * u + fine.shape[0], x0 * u:x0 * u + fine.shape[1]] = fine
    return out


def _credible_cells(prob_maps, levels, dilations, upsample):
    """Checked ``(credible masks (M, H, W), dilations (M,), upsample)`` for :func:`region_masks`."""
    p = np.asarray(prob_maps)
    if p.ndim != 3:
        raise InputError(f"region maps must be (M, H, W), got shape {p.shape}")
    masks = credible_mask(p, np.broadcast_to(np.asarray(levels, dtype=np.float64), p.shape[:1]))
    grow = np.zeros(len(p)) if dilations is None else np.broadcast_to(np.asarray(dilations, dtype=np.float64),
                                                                      p.shape[:1])
    if not np.all(np.isfinite(grow)) or (grow < 0).any():
        raise InputError(f"dilations must be finite and >= 0, got {grow}")
    u = (DILATION_UPSAMPLE if (grow > 0).any() else 1) if upsample is None else int(upsample)
    if u == 1 and (grow > 0).any():
        raise InputError("dilated regions need upsample > 1")
    return masks, grow, u


def mask_outlines(masks, upsample: int = 1) -> list[list[np.ndarray]]:
    """Outlines of the cells of each of ``masks (M, h, w)`` in heatmap coordinates: per mask its
    connected parts (8-connected), largest first, each ``(P, 2)`` float along the OUTER cell edges.

    The cells of a grid with ``upsample`` U sub-cells per heatmap pixel are ``1/U`` wide. Edges
    and corners go on a grid twice as fine (index ``2 i + 1`` a cell centre, even indices its
    edges), each cell marks its 3 x 3 block there, and ONE cv2.findContours over all masks
    stacked (a zero row between them keeps parts of different masks apart) traces the marked
    points' outer boundary, which lies on cell edges: index ``j`` -> ``j / (2 U) - 0.5``. So an
    outline holds exactly its cells (point-in-outline agrees with the mask test for cell
    centres) and a one-pixel region is a unit square.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise InputError(f"mask_outlines takes masks (M, h, w), got shape {masks.shape}")
    m, h, w = masks.shape
    if m == 0:
        return []
    stacked = np.zeros((m, 2 * h + 2, 2 * w + 1), dtype=np.uint8)  # rows 0..2h, then a zero row
    for dy in range(3):  # cell (i, j), centre (2 i + 1, 2 j + 1), marks rows 2i..2i+2, columns 2j..2j+2
        for dx in range(3):
            stacked[:, dy:dy + 2 * h:2, dx:dx + 2 * w:2] |= masks
    rows = stacked.shape[1]
    flat = np.ascontiguousarray(stacked.reshape(m * rows, 2 * w + 1))
    contours, _ = cv2.findContours(flat, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    per_map: list[list] = [[] for _ in range(m)]
    for c in contours:
        c = _edge_path(c.reshape(-1, 2), flat)
        per_map[int(c[0, 1]) // rows].append(c)
    out: list[list[np.ndarray]] = [[] for _ in range(m)]
    for i, parts in enumerate(per_map):
        parts.sort(key=lambda c: (-cv2.contourArea(c), -len(c)))
        for c in parts:
            points = c.astype(np.float64)
            points[:, 1] -= i * rows
            out[i].append(points / (2 * upsample) - 0.5)
    return out


def _edge_path(points, marked) -> np.ndarray:
    """A cv2 contour ``(P, 2)`` (x, y) of the marked edge grid as a path along cell edges: a
    diagonal step (the 8-connected trace cutting a concave corner through an empty cell) goes
    round by the marked corner point instead; then only the vertices where the direction turns."""
    nxt = np.concatenate([points[1:], points[:1]])
    diagonal = (points[:, 0] != nxt[:, 0]) & (points[:, 1] != nxt[:, 1])
    if diagonal.any():
        via_x = marked[points[:, 1], nxt[:, 0]] > 0  # the corner (next x, this y) is marked
        via_y = marked[nxt[:, 1], points[:, 0]] > 0
        insert = diagonal & (via_x != via_y)
        corner = np.where(via_x[:, None], np.stack([nxt[:, 0], points[:, 1]], -1),
                          np.stack([points[:, 0], nxt[:, 1]], -1))
        at = np.arange(len(points)) + np.concatenate([[0], np.cumsum(insert)[:-1]])
        path = np.empty((len(points) + int(insert.sum()), 2), dtype=points.dtype)
        path[at] = points
        path[at[insert] + 1] = corner[insert]
    else:
        path = points
    if len(path) < 3:
        return path
    step = np.sign(np.concatenate([path[1:], path[:1]]) - path)
    turns = np.any(step != np.concatenate([step[-1:], step[:-1]]), axis=1)
    return path[turns] if turns.any() else path


def credible_polygons(prob_map, q: float, center, scale, dilation: float = 0.0) -> list[np.ndarray]:
    """Outlines of the credible region of one map (H, W) at level ``q``, in image coordinates.

    Returns a list of ``(M, 2)`` float arrays, one per connected part (along the outer edges of
    the region's pixel cells, :func:`mask_outlines`), largest part first. ``center``/``scale``:
    the activation window of the map (geometry); ``dilation``: grow the region by this many
    heatmap pixels first (:func:`region_masks`).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    if p.ndim != 2:
        raise InputError(f"credible_polygons takes one (H, W) map, got shape {p.shape}")
    return credible_polygons_batch(p[None], q, np.reshape(center, (1, 2)), np.reshape(scale, (1, 2)),
                                   dilations=dilation)[0]


def credible_polygons_batch(prob_maps, q, center, scale, dilations=None) -> list[list[np.ndarray]]:
    """:func:`credible_polygons` of maps ``(M, H, W)`` with windows ``center``/``scale (M, 2)``.

    ``q``: one mass level or one per map; ``dilations``: None or heatmap pixels per map (or one).
    One support sort for all maps (:func:`region_masks`), one cv2.findContours for all
    (:func:`mask_outlines`) and one closed-form heatmap -> image affine over every outline point.
    Returns per map its outlines.
    """
    p = np.asarray(prob_maps, dtype=np.float64)
    if p.ndim != 3:
        raise InputError(f"credible_polygons_batch takes maps (M, H, W), got shape {p.shape}")
    m, h, w = p.shape
    center = np.broadcast_to(np.asarray(center, dtype=np.float64), (m, 2))
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), (m, 2))
    if m == 0:
        return []
    masks, grow, u = _credible_cells(p, q, dilations, None)
    plain = np.flatnonzero(grow == 0)
    outlines: list = [[] for _ in range(m)]
    for i, parts in zip(plain, mask_outlines(masks[plain], 1)):  # one findContours for all undilated maps
        outlines[i] = parts
    for i in np.flatnonzero(grow > 0):  # each grown region on its own small crop
        grown = grown_cells(masks[i], grow[i], u)
        if grown is not None:
            fine, offset = grown
            outlines[i] = [o + offset for o in mask_outlines(fine[None], u)[0]]
    return [[geometry.heatmap_to_image(o, center[i], scale[i], (w, h)) for o in parts]
            for i, parts in enumerate(outlines)]


def keypoint_regions(prob_maps, present, center, scale, levels, region_params=None) -> list[list[dict]]:
    """``{q: outlines}`` per instance and keypoint of maps ``(N, K, H, W)`` at each of ``levels``.

    Only keypoints with ``present (N, K)`` True get outlines (:func:`credible_polygons`), the
    others ``{}``; ``center``/``scale (N, 2)`` are the instances' windows. ``region_params``:
    None (the region at level q is the credible set holding q of the mass: uncalibrated), or
    ``q -> (mass level (N, K), dilation (N, K))`` (a calibrated coverage table,
    :meth:`conformal.CoverageTable.region_params`). One batched call per level for all present
    maps of all instances.
    """
    maps = np.asarray(prob_maps)
    present = np.asarray(present, dtype=bool).reshape(maps.shape[:2])
    out: list[list[dict]] = [[{} for _ in range(maps.shape[1])] for _ in range(maps.shape[0])]
    n_idx, k_idx = np.nonzero(present)
    if n_idx.size == 0:
        return out
    center, scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    for q in levels:
        mass, grow = (q, None) if region_params is None else (a[n_idx, k_idx] for a in region_params(q))
        polys = credible_polygons_batch(maps[n_idx, k_idx], mass, center[n_idx], scale[n_idx], grow)
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


#: variance per axis of a unit cell: each pixel's mass spreads uniformly over its cell
CELL_VARIANCE = 1.0 / 12.0


def point_moment(prob_maps, points) -> np.ndarray:
    """Second moment ``(..., 2, 2)`` of maps (..., H, W) about ``points (..., 2)``, heatmap pixels.

    ``E[(X - p)(X - p)^T] = cov + (mean - p)(mean - p)^T + CELL_VARIANCE I`` with ``X`` drawn
    from the map's density (each pixel's mass uniform over its cell): the spread of the truth
    about the published point, which a map with two peaks puts far above its spread about
    the mean. Always positive definite for a map with mass; NaN for an all-zero map.
    """
    mean, cov = map_moments(prob_maps)
    offset = mean - np.asarray(points, dtype=np.float64)
    return cov + offset[..., :, None] * offset[..., None, :] + CELL_VARIANCE * np.eye(2)


def covariance_ellipse(prob_map, center, scale, about=None) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``(..., 2)`` and second moment ``(..., 2, 2)`` about ``about`` of maps in image coordinates.

    prob_map: (H, W) with ``center``/``scale`` (2,), or (N, K, H, W) with (N, 2) windows (one
    per instance); about: the published points ``(..., 2)`` in IMAGE coordinates (None: the
    map's own mean, i.e. its covariance). The heatmap moments (:func:`point_moment`, cells
    included) are carried through the window's heatmap -> image affine: ``mean_img = A mean +
    b``, ``M_img = A M A^T`` (the offset to the point transforms with ``A`` too, so the moment
    about the image point is exactly the moment about its heatmap image).
    """
    p = np.asarray(prob_map, dtype=np.float64)
    center, scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    size = (p.shape[-1], p.shape[-2])
    mean_hm, cov_hm = map_moments(p)
    cov_hm = cov_hm + CELL_VARIANCE * np.eye(2)
    if p.ndim == 2:
        to_image = geometry.invert_affine(geometry.udp_affine(center, scale, size))
        lin = to_image[:, :2]
        mean, cov = geometry.apply_affine(to_image, mean_hm), lin @ cov_hm @ lin.T
    elif p.ndim != 4 or center.shape != (p.shape[0], 2) or scale.shape != (p.shape[0], 2):
        raise InputError(f"maps {p.shape} need (H, W) with (2,) windows or (N, K, H, W) with (N, 2) windows")
    else:
        mean, cov = np.empty_like(mean_hm), np.empty_like(cov_hm)
        for n in range(p.shape[0]):  # one affine per instance; keypoints vectorised
            to_image = geometry.invert_affine(geometry.udp_affine(center[n], scale[n], size))
            lin = to_image[:, :2]
            mean[n] = geometry.apply_affine(to_image, mean_hm[n])
            cov[n] = lin @ cov_hm[n] @ lin.T
    if about is not None:
        about = np.asarray(about, dtype=np.float64)
        if about.shape != mean.shape:
            raise InputError(f"points {about.shape} do not match the maps' means {mean.shape}")
        offset = mean - about
        cov = cov + offset[..., :, None] * offset[..., None, :]
    return mean, cov


def gaussian_radius2(q: float) -> float:
    """``chi2_2(q) = -2 ln(1 - q)``: the squared Mahalanobis radius of a 2D Gaussian's level-q ellipse."""
    return float(-2.0 * np.log1p(-min(max(float(q), 0.0), 1.0 - 1e-12)))


def ellipse_axes(cov, q: float = 0.5, radius2=None) -> tuple[np.ndarray, np.ndarray]:
    """Semi-axes ``(..., 2)`` (major, minor) and angle ``(...,)`` in degrees of the level-``q`` ellipse.

    The ellipse ``d^T cov^-1 d <= r^2`` has semi-axes ``sqrt(r^2 * eigenvalue)``; ``radius2``:
    ``r^2`` (a number or one per covariance: a calibrated coverage table's,
    :meth:`conformal.CoverageTable.ellipse_radius2`), or None for a Gaussian's
    :func:`gaussian_radius2` (q). The angle is that of the major axis from +x towards +y (image
    y down), as cv2.ellipse expects.
    """
    cov = np.asarray(cov, dtype=np.float64)
    values, vectors = np.linalg.eigh(cov)  # ascending
    radius2 = gaussian_radius2(q) if radius2 is None else np.asarray(radius2, dtype=np.float64)[..., None]
    axes = np.sqrt(np.clip(values[..., ::-1], 0, None) * radius2)
    major = vectors[..., :, 1]
    angle = np.degrees(np.arctan2(major[..., 1], major[..., 0]))
    return axes, angle
