"""ProbMapCodec: training targets from keypoints, and keypoints from probability maps.

Everything is in IMAGE coordinates per instance, given its activation window (``center``,
``scale`` from :func:`geometry.bbox_to_center_scale`); map pixels are reached only through
:mod:`geometry` (UDP: the window maps onto pixel centres ``[0, W-1] x [0, H-1]``).

OKS in map pixels. OKS is isotropic in the image, but the UDP factors
``kx = (W-1)/scale_w`` and ``ky = (H-1)/scale_h`` (map pixels per image pixel) differ slightly
(47/48 vs 63/64 of the 3:4 ratio). Rather than one ``area_map = area * kx * ky``, both axes
are kept exact: a map offset ``(dx, dy)`` is the image distance ``(dx/kx)^2 + (dy/ky)^2``,
fed to the one formula in :mod:`oks`. Because the OKS kernel is Gaussian it is
separable, ``exp(-rx dx^2) * exp(-ry dy^2)`` with per-axis rates ``r = oks_exponent(1/k^2)``.

Decoding (``method="expected_oks"``, the default). For a map ``p`` the expected OKS of a
guess ``x`` is ``E(x) = sum_y p(y) OKS(x, y)``, a separable Gaussian filter of ``p``
(computed as ``Gy @ p @ Gx`` with Toeplitz kernel matrices; zero outside the map). The
decoded point maximises ``E``: the best pixel, then Newton steps on ``log E`` with the exact
gradient and Hessian of the *continuous* function ``E(x) = gy(y)^T p gx(x)``. No finite-
difference stencil is used, so points next to the map border need no special case; steps are
kept within 1 px of the best pixel and inside the map. Work is done on the crop holding every
map's support (sparsemax maps are compact), which gives the same answer as the whole map.
Map values count as point masses at pixel centres: where the OKS kernel is much narrower
than a pixel (std << 1 map px, tiny or very thin persons) ``E`` peaks at pixel centres and
the result tends to the best pixel. Mass a map lacks beyond its edge (a blob cut by the
border) moves the maximum of ``E`` inwards; that is the map's answer, not a refinement
error (the refinement is exact there too). The returned confidence is ``E`` at
the decoded point (the expected OKS of the estimate, given the map). Map values below 1e-12,
negative ones included (heatmaps from other models), count as 0.

Decode sharpness. ``decode_sharpness = c >= 1`` makes every method read ``sharpen_maps(p, c)
= sparsemax(c * p)`` instead of ``p``. For a Sparsemax map ``p = sparsemax(z / T)`` this is
exactly ``sparsemax(z / (T / c))``, the map the same logits give at the c-times lower
temperature (the sharper map's support lies inside ``p``'s, where ``z / T = p + tau``, and
Sparsemax ignores a common shift), so the decode can read a sharper map than the calibrated one
the credible regions come from. Why: the temperature that calibrates the regions spreads mass
over gross errors (T = 174 for the shipped student), and expected-OKS maximisation over that
wider map lands further from the true point than over a sharper one (coco_train AP 0.390 at
T = 174 vs 0.411 at T = 20, GT boxes, no flip). ``training.calibrate`` fits ``c`` on the
calibration split; 1 (the default) decodes the map as given.

Baselines: ``"argmax"`` (best pixel, map value) and ``"udp"`` (DARK-style: Gaussian blur of
std ``blur_sigma`` map px, best pixel, one Newton step on the log of the blurred map from
central differences on the grid, replicated at the border; confidence = map value there).

Horizontal flip under UDP: mirroring the input about the window centre maps heatmap column
``x`` to ``W-1-x`` exactly, so :func:`flip_merge` needs no one-pixel shift.

Model outputs other than one prob map per keypoint: :func:`read_heatmaps` (a heatmap
baseline: UDP decode, presence = the map maximum, the heatmap made a distribution for regions)
and :func:`read_double` (the double-heatmap variant: the wide map decides, the expert map
refines); the pipeline, calibration and coverage read them through these two.
"""
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from . import geometry
from .errors import InputError
from .oks import keypoint_oks, oks_exponent
from .keypoints import FLIP_INDEX, SIGMAS
from .sparsemax import sparsemax_rows

#: exococotools' instance-area estimate when there is no segmentation area: 0.53 * w * h.
AREA_FACTOR = 0.53
DECODE_METHODS = ("expected_oks", "argmax", "udp")
# Kernel values below this are set to 0 (changing E by < 1e-12): float32 denormals in the
# products of two kernel tails would make the matmuls several times slower.
_TINY = 1e-12


def sharpen_maps(prob_maps, factor: float) -> np.ndarray:
    """``sparsemax(factor * p)`` over each map's pixels (N, K, H, W) float32: the map at a
    ``factor``-times lower temperature (module docstring); ``factor`` 1 returns the maps
    (float32). Exact for any input (:func:`sparsemax.sparsemax_rows`)."""
    maps = np.asarray(prob_maps, dtype=np.float32)
    if factor == 1.0 or maps.size == 0:
        return maps
    flat = maps.reshape(-1, maps.shape[-2] * maps.shape[-1]).astype(np.float64) * float(factor)
    return sparsemax_rows(flat).astype(np.float32).reshape(maps.shape)


def pixel_scale(scale, heatmap_size=geometry.HEATMAP_SIZE) -> np.ndarray:
    """Map pixels per image pixel ``(kx, ky)`` (N, 2) of windows with ``scale (N, 2)`` (UDP)."""
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    return np.array([heatmap_size[0] - 1, heatmap_size[1] - 1], dtype=np.float64) / scale


def window_area(scale, padding: float = geometry.PADDING, factor: float = AREA_FACTOR) -> np.ndarray:
    """Instance area (N,) estimated from window sizes ``scale (N, 2)``: ``factor * w * h``.

    ``w, h = scale / padding`` is the 3:4 box the window was padded from. It equals the
    detection box for boxes already at 3:4 and exceeds it for boxes that were widened, so
    prefer ``AREA_FACTOR * box_w * box_h`` from the real box when it is at hand.
    """
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    return factor * scale[:, 0] * scale[:, 1] / padding ** 2


def oks_rates(area, pixel_scale_xy=None, sigmas=SIGMAS) -> np.ndarray:
    """Per-axis OKS kernel rates (N, K, 2): ``OKS = exp(-rx dx^2 - ry dy^2)`` in map pixels.

    area: (N,) instance areas in image px^2; pixel_scale_xy: (N, 2) map px per image px, or
    None when ``area`` is already in map px^2 (isotropic).
    """
    area = np.asarray(area, dtype=np.float64).reshape(-1)
    ps = np.ones((len(area), 2)) if pixel_scale_xy is None else np.asarray(pixel_scale_xy, np.float64).reshape(-1, 2)
    unit_sq = (1.0 / ps ** 2)[:, :, None]  # image px^2 of one map pixel, per axis: (N, 2, 1)
    rates = oks_exponent(unit_sq, area[:, None, None], sigmas)  # (N, 2, K)
    return np.ascontiguousarray(np.moveaxis(rates, 1, 2))


def _toeplitz_kernels(rates, n: int) -> np.ndarray:
    """Symmetric kernel matrices ``exp(-rate (i - j)^2)``: rates (...,) -> (..., n, n) float32."""
    offsets = np.arange(1 - n, n, dtype=np.float64)  # row i of the matrix is offsets[n-1-i:][:n]
    line = np.exp(-rates[..., None] * offsets ** 2)
    line = np.where(line < _TINY, 0.0, line).astype(np.float32)  # no denormals
    return np.ascontiguousarray(sliding_window_view(line, n, axis=-1)[..., ::-1, :])


def gaussian_filter_maps(maps, rates) -> np.ndarray:
    """Separable Gaussian filter ``sum_y maps(y) exp(-rx dx^2 - ry dy^2)``, zero outside.

    maps: (N, K, H, W); rates: (N, K, 2) per-axis rates (x, y). Returns (N, K, H, W) float32.
    """
    maps = np.asarray(maps, dtype=np.float32)
    h, w = maps.shape[-2:]
    gx = _toeplitz_kernels(rates[..., 0], w)
    gy = _toeplitz_kernels(rates[..., 1], h)
    return gy @ maps @ gx


def expected_oks_maps(prob_maps, area, pixel_scale_xy=None, sigmas=SIGMAS) -> np.ndarray:
    """Expected OKS of every map pixel as a guess: (N, K, H, W).

    prob_maps: (N, K, H, W); area: (N,) in image px^2 with ``pixel_scale_xy (N, 2)`` from
    :func:`pixel_scale`, or area in map px^2 (``area_map``) when ``pixel_scale_xy`` is None.
    """
    prob_maps = np.asarray(prob_maps, dtype=np.float32)
    prob_maps = np.where(prob_maps > _TINY, prob_maps, np.float32(0))
    return gaussian_filter_maps(prob_maps, oks_rates(area, pixel_scale_xy, sigmas))


def _best_pixel(maps) -> tuple[np.ndarray, np.ndarray]:
    """Integer (x, y) of each map's maximum (N, K, 2) and the maximum (N, K)."""
    n, k, h, w = maps.shape
    flat = maps.reshape(n, k, h * w)
    idx = flat.argmax(axis=-1)
    best = np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]
    return np.stack([idx % w, idx // w], axis=-1).astype(np.float64), best


def _axis_kernels(pos, rate, n: int) -> np.ndarray:
    """Kernel value, first and second derivative along one axis at ``pos``: (N, K, 3, n) float32."""
    d = pos[..., None] - np.arange(n)
    r = rate[..., None]
    g = np.exp(-r * d * d)
    g = np.where(g < _TINY, 0.0, g)
    return np.stack([g, -2 * r * d * g, (4 * r * r * d * d - 2 * r) * g], axis=-2).astype(np.float32)


def refine_expected_oks(prob_maps, rates, start, n_iter: int = 2):
    """Newton ascent of ``log E`` from integer ``start (N, K, 2)``; returns points and ``E``.

    ``E(x, y) = gy(y)^T p gx(x)`` and its derivatives are evaluated exactly at continuous
    positions (no grid stencil). prob_maps: (N, K, H, W) non-negative; rates: (N, K, 2).
    Points stay within 1 px of ``start`` and inside the map.
    """
    p = np.asarray(prob_maps, dtype=np.float32)
    h, w = p.shape[-2:]
    lo = np.maximum(start - 1, 0)
    hi = np.minimum(start + 1, [w - 1, h - 1])
    pos = start.astype(np.float64).copy()
    for it in range(n_iter + 1):
        gx = _axis_kernels(pos[..., 0], rates[..., 0], w)  # (N, K, 3, W)
        gy = _axis_kernels(pos[..., 1], rates[..., 1], h)  # (N, K, 3, H)
        # m[a, b] = (d/dy)^a gy . p . (d/dx)^b gx, (N, K, 3, 3)
        m = (gy @ (p @ np.swapaxes(gx, -1, -2))).astype(np.float64)
        e = m[..., 0, 0]
        if it == n_iter:
            return pos, e
        safe = np.where(e > 0, e, 1.0)
        lx, ly = m[..., 0, 1] / safe, m[..., 1, 0] / safe
        lxx = m[..., 0, 2] / safe - lx * lx
        lyy = m[..., 2, 0] / safe - ly * ly
        lxy = m[..., 1, 1] / safe - lx * ly
        det = lxx * lyy - lxy * lxy
        ok = (e > 0) & (lxx < 0) & (det > 0)
        det = np.where(ok, det, 1.0)
        step = np.stack([-(lyy * lx - lxy * ly) / det, -(lxx * ly - lxy * lx) / det], axis=-1)
        pos = np.clip(pos + np.where(ok[..., None], step, 0.0), lo, hi)
    return pos, e


def _support_crop(maps):
    """Crop every map to one common size that holds each map's non-zero bounding box.

    maps: (N, K, H, W) >= 0. Returns ``crops (N, K, h, w)`` and ``origin (N, K, 2)`` (x, y),
    or the maps themselves and a zero origin when the crop would not save much.
    """
    n, k, h, w = maps.shape
    nonzero = maps > 0
    rows, cols = nonzero.any(axis=-1), nonzero.any(axis=-2)  # (N, K, H), (N, K, W)
    y0, x0 = rows.argmax(-1), cols.argmax(-1)
    y1, x1 = h - 1 - rows[..., ::-1].argmax(-1), w - 1 - cols[..., ::-1].argmax(-1)
    ch = int(np.max(y1 - y0, initial=0)) + 1
    cw = int(np.max(x1 - x0, initial=0)) + 1
    if ch * cw > h * w // 2:
        return maps, np.zeros((n, k, 2))
    y0, x0 = np.minimum(y0, h - ch), np.minimum(x0, w - cw)
    crops = np.take_along_axis(maps, (y0[..., None] + np.arange(ch))[..., None], axis=2)
    crops = np.take_along_axis(crops, (x0[..., None] + np.arange(cw))[..., None, :], axis=3)
    return crops, np.stack([x0, y0], axis=-1).astype(np.float64)


def decode_expected_oks(prob_maps, rates, n_iter: int = 2):
    """Maximise the expected OKS of each map: points (N, K, 2) in map pixels and ``E`` (N, K).

    prob_maps: (N, K, H, W), values below 1e-12 (negative ones too) set to 0; rates: (N, K, 2) from
    :func:`oks_rates`. The maximum of ``E`` (a positive mixture of equal Gaussians) lies in
    the convex hull of the map's support, and so does the best grid pixel (moving a pixel
    towards the support's bounding box raises every term), so the work is done on the
    crop that holds every map's support (the whole map for dense maps).
    """
    maps = np.asarray(prob_maps, dtype=np.float32)
    maps = np.where(maps > _TINY, maps, np.float32(0))  # no negatives, no float32 denormals
    crops, origin = _support_crop(maps)
    start, _ = _best_pixel(gaussian_filter_maps(crops, rates))
    points, e = refine_expected_oks(crops, rates, start, n_iter)
    return points + origin, e


def _dark_refine(blurred, start) -> np.ndarray:
    """One Newton step on log(blurred) from grid central differences (edge-replicated)."""
    n, k, h, w = blurred.shape
    logm = np.log(np.maximum(blurred, 1e-10))
    padded = np.pad(logm, ((0, 0), (0, 0), (1, 1), (1, 1)), mode="edge")
    x = start[..., 0].astype(int) + 1
    y = start[..., 1].astype(int) + 1
    ni, ki = np.meshgrid(np.arange(n), np.arange(k), indexing="ij")

    def at(dx, dy):
        return padded[ni, ki, y + dy, x + dx]

    c = at(0, 0)
    gx, gy = (at(1, 0) - at(-1, 0)) / 2, (at(0, 1) - at(0, -1)) / 2
    hxx, hyy = at(1, 0) - 2 * c + at(-1, 0), at(0, 1) - 2 * c + at(0, -1)
    hxy = (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1)) / 4
    det = hxx * hyy - hxy * hxy
    ok = (hxx < 0) & (det > 0)
    det = np.where(ok, det, 1.0)
    step = np.stack([-(hyy * gx - hxy * gy) / det, -(hxx * gy - hxy * gx) / det], axis=-1)
    step = np.clip(np.where(ok[..., None], step, 0.0), -1, 1)
    return np.clip(start + step, 0, [w - 1, h - 1])


def _flip_w(x):
    return x.flip(-1) if hasattr(x, "flip") and not isinstance(x, np.ndarray) else x[..., ::-1]


def flip_merge(values, flipped_values, flip_index=FLIP_INDEX):
    """Average predictions with those of the horizontally flipped input, flipped back.

    values, flipped_values: maps (N, K, H, W) or per-keypoint scalars (N, K); numpy or torch.
    The flipped prediction's keypoint channels are swapped with ``flip_index`` and, for maps,
    mirrored along W (exact under UDP). Maps that sum to 1 still sum to 1.
    """
    index = list(flip_index)
    back = flipped_values[:, index]
    if back.ndim == 4:
        back = _flip_w(back)
    elif back.ndim != 2:
        raise InputError(f"flip_merge expects (N, K, H, W) maps or (N, K) scalars, got {back.ndim}-D")
    return (values + back) / 2


def gaussian_heatmaps(keypoints_map, weights, heatmap_size=geometry.HEATMAP_SIZE, sigma: float = 2.0) -> np.ndarray:
    """Gaussian-regression targets of the heatmap baseline (ViTPose-style, UDP grid): (N, K, H, W).

    keypoints_map: (N, K, 2) keypoints in map pixels (the codec's ``keypoints_map``: pixel
    centres at integer coordinates, UDP); weights: (N, K), a map is all zero where the weight
    is 0. Value at pixel (x, y): ``exp(-((x - kx)^2 + (y - ky)^2) / (2 sigma^2))``, so the
    peak is 1 at the exact (sub-pixel) keypoint position; not truncated. heatmap_size: (W, H);
    sigma in map pixels. Returns float32.
    """
    kpts = np.asarray(keypoints_map, dtype=np.float64)
    weights = np.asarray(weights)
    if kpts.ndim != 3 or kpts.shape[-1] != 2 or weights.shape != kpts.shape[:2]:
        raise InputError(f"keypoints_map must be (N, K, 2) and weights (N, K), got {kpts.shape} and {weights.shape}")
    if not sigma > 0:
        raise InputError(f"heatmap sigma must be positive, got {sigma}")
    w, h = (int(v) for v in heatmap_size)
    # Separable: exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2); non-finite keypoints give zero maps.
    kpts = np.where(np.isfinite(kpts), kpts, np.inf)
    gx = np.exp(-(np.arange(w) - kpts[..., 0:1]) ** 2 / (2 * sigma ** 2))  # (N, K, W)
    gy = np.exp(-(np.arange(h) - kpts[..., 1:2]) ** 2 / (2 * sigma ** 2))  # (N, K, H)
    maps = gy[..., :, None] * gx[..., None, :]
    return np.where((weights != 0)[..., None, None], maps, 0.0).astype(np.float32)


def _windows(center, scale, n: int):
    center = np.asarray(center, dtype=np.float64).reshape(-1, 2)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 2)
    if len(center) != n or len(scale) != n:
        raise InputError(f"center/scale must hold one window per instance ({n}), got {len(center)}/{len(scale)}")
    if not (scale > 0).all():
        raise InputError("window scale must be positive")
    return center, scale


@dataclass(frozen=True)
class ProbMapCodec:
    """Settings of the probability-map codec; ``encode``/``decode`` keep no state.

    A value object: codecs with the same settings compare equal and hash alike (usable as
    dict keys, in sets, in ``functools.cache``). Sizes are (W, H) tuples of ints; ``sigmas``
    (one per keypoint) may be given as any 1-D sequence or array and is stored as a tuple of
    floats, :attr:`sigma_array` gives it as a float64 array. ``blur_sigma`` is the DARK blur of
    ``method="udp"`` in map pixels; ``refine_iters`` the Newton steps of the expected-OKS
    refinement (2 converge to ~1e-6 px on smooth maps; 1 leaves up to ~0.01 px);
    ``decode_sharpness`` (>= 1) the factor of :func:`sharpen_maps` every decode applies first
    (module docstring; 1 = decode the maps as given).
    """

    input_size: tuple = geometry.INPUT_SIZE
    heatmap_size: tuple = geometry.HEATMAP_SIZE
    sigmas: tuple = tuple(float(s) for s in SIGMAS)
    padding: float = geometry.PADDING
    area_factor: float = AREA_FACTOR
    blur_sigma: float = 2.0
    refine_iters: int = 2
    decode_sharpness: float = 1.0

    def __post_init__(self):
        if not float(self.decode_sharpness) >= 1.0:  # NaN fails too
            raise InputError(f"decode_sharpness must be >= 1, got {self.decode_sharpness}")
        object.__setattr__(self, "decode_sharpness", float(self.decode_sharpness))
        sigmas = np.asarray(self.sigmas, dtype=np.float64)
        if sigmas.ndim != 1 or sigmas.size == 0:
            raise InputError(f"sigmas must be a non-empty 1-D sequence (one per keypoint), got shape {sigmas.shape}")
        # frozen: normalise the given values in place, so equal settings are equal values
        object.__setattr__(self, "sigmas", tuple(float(v) for v in sigmas))
        for name in ("input_size", "heatmap_size"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))

    @property
    def sigma_array(self) -> np.ndarray:
        """The sigmas as a new float64 array (K,)."""
        return np.array(self.sigmas, dtype=np.float64)

    def encode(self, keypoints, visibility, area, center, scale) -> dict:
        """Training targets for N instances.

        keypoints: (N, K, 2) image coordinates; visibility: (N, K) COCO v in {0, 1, 2, 3}
        (3 = annotated outside the image); area: (N,) image px^2; center, scale: (N, 2).
        Returns numpy arrays:

        - ``oks_maps (N, K, H, W)``: OKS of each map pixel (as a guess) against the keypoint.
        - ``keypoints_map (N, K, 2)``: the keypoints in map pixel coordinates.
        - ``keypoint_weights (N, K)``: 1 where annotated (v > 0): weights of the presence and
          visibility targets.
        - ``presence (N, K)``: 1 where annotated (v in 1..3; v = 3 points have a location too)
          and inside the activation window (edges included).
        - ``map_weights (N, K)``: ``keypoint_weights * presence``: weights of the map and
          OKS-quality losses (a keypoint outside the window has no pixel to be found at).
        - ``visibility (N, K)``: 1 where v == 2.
        """
        kpts = np.asarray(keypoints, dtype=np.float64)
        vis = np.asarray(visibility)
        if kpts.ndim != 3 or kpts.shape[-1] != 2 or vis.shape != kpts.shape[:2]:
            raise InputError(f"keypoints must be (N, K, 2) and visibility (N, K), got {kpts.shape} and {vis.shape}")
        n, k = vis.shape
        if len(self.sigmas) != k:
            raise InputError(f"{k} keypoints per instance but {len(self.sigmas)} sigmas")
        area = np.asarray(area, dtype=np.float64).reshape(-1)
        if len(area) != n:
            raise InputError(f"area must hold one value per instance ({n}), got {len(area)}")
        center, scale = _windows(center, scale, n)
        w, h = self.heatmap_size
        oks_maps = np.empty((n, k, h, w), dtype=np.float32)
        kpts_map = np.empty_like(kpts)
        inside = np.empty((n, k), dtype=bool)
        diagonal = np.stack([np.arange(max(w, h))] * 2, axis=-1).astype(np.float64)
        sigmas = self.sigma_array
        for i in range(n):
            # The window is axis-aligned, so pixel column x sits at image x_img(x) for every row:
            # OKS = exp(-e(dx^2)) * exp(-e(dy^2)) since the exponent is linear in d^2 (separable).
            grid_img = geometry.heatmap_to_image(diagonal, center[i], scale[i], self.heatmap_size)
            dx2 = (grid_img[:w, 0][None, :] - kpts[i, :, 0:1]) ** 2  # (K, W)
            dy2 = (grid_img[:h, 1][None, :] - kpts[i, :, 1:2]) ** 2  # (K, H)
            ox = keypoint_oks(dx2.T, area[i], sigmas).T  # (K, W)
            oy = keypoint_oks(dy2.T, area[i], sigmas).T  # (K, H)
            oks_maps[i] = oy[:, :, None] * ox[:, None, :]
            kpts_map[i] = geometry.image_to_heatmap(kpts[i], center[i], scale[i], self.heatmap_size)
            inside[i] = geometry.in_window(kpts[i], geometry.window_xyxy(center[i], scale[i]))
        annotated = vis > 0
        presence = annotated & inside
        f32 = np.float32
        return {
            "oks_maps": oks_maps,
            "keypoints_map": kpts_map,
            "keypoint_weights": annotated.astype(f32),
            "presence": presence.astype(f32),
            "map_weights": presence.astype(f32),
            "visibility": (vis == 2).astype(f32),
        }

    def decode(self, prob_maps, center, scale, area=None, method: str = "expected_oks"):
        """Keypoints from maps: returns ``keypoints (N, K, 2)`` image coords, ``confidence (N, K)``.

        prob_maps: (N, K, H, W) (numpy or CPU torch); center, scale: (N, 2) activation windows;
        area: (N,) instance areas in image px^2, or None to use :func:`window_area`.
        ``confidence`` is the expected OKS of the returned point for "expected_oks" and the map
        value at the best pixel for "argmax" and "udp", both of the map sharpened by
        ``decode_sharpness`` (:func:`sharpen_maps`).
        """
        maps = np.asarray(prob_maps, dtype=np.float32)
        w, h = self.heatmap_size
        if maps.ndim != 4 or maps.shape[2:] != (h, w):
            raise InputError(f"prob_maps must be (N, K, {h}, {w}), got {maps.shape}")
        if method not in DECODE_METHODS:
            raise InputError(f"unknown decode method {method!r}; choose from {', '.join(DECODE_METHODS)}")
        n = maps.shape[0]
        center, scale = _windows(center, scale, n)
        maps = sharpen_maps(maps, self.decode_sharpness)
        if method == "expected_oks":
            if area is None:
                area = window_area(scale, self.padding, self.area_factor)
            rates = oks_rates(area, pixel_scale(scale, self.heatmap_size), self.sigma_array)
            points, confidence = decode_expected_oks(maps, rates, self.refine_iters)
        elif method == "argmax":
            points, confidence = _best_pixel(maps)
        else:
            rate = 1.0 / (2 * self.blur_sigma ** 2)
            blurred = gaussian_filter_maps(maps, np.full(maps.shape[:2] + (2,), rate))
            start, _ = _best_pixel(blurred)
            points = _dark_refine(blurred, start)
            xi, yi = start[..., 0].astype(int), start[..., 1].astype(int)
            confidence = np.take_along_axis(maps.reshape(*maps.shape[:2], -1), (yi * w + xi)[..., None], -1)[..., 0]
        keypoints = np.stack([geometry.heatmap_to_image(points[i], center[i], scale[i], self.heatmap_size)
                              for i in range(n)]) if n else np.zeros((0,) + points.shape[1:])
        return keypoints, confidence.astype(np.float64)


def read_heatmaps(codec: ProbMapCodec, heatmaps, center, scale):
    """Decode a heatmap-baseline model's ``heatmaps (N, K, H, W)`` (Gaussian regression, raw).

    Returns ``points (N, K, 2)`` image coords (UDP/DARK decode), ``presence (N, K)`` = the map
    maximum clipped to [0, 1], ``oks_quality (N, K)`` = the UDP confidence clipped to [0, 1]
    and ``prob_maps (N, K, H, W)``: the heatmaps with negatives set to 0, each divided by its
    sum (uniform where nothing is positive), for covariance and credible regions.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    points, confidence = codec.decode(heatmaps, center, scale, method="udp")
    presence = np.clip(heatmaps.max(axis=(-2, -1)), 0.0, 1.0).astype(np.float64)
    positive = np.maximum(heatmaps, 0.0)
    mass = positive.sum(axis=(-2, -1), keepdims=True)
    uniform = np.float32(1.0 / (heatmaps.shape[-2] * heatmaps.shape[-1]))
    prob_maps = np.where(mass > 0, positive / np.where(mass > 0, mass, 1.0), uniform).astype(np.float32)
    return points, presence, np.clip(confidence, 0.0, 1.0), prob_maps


def read_double(codec: ProbMapCodec, prob_maps, wide_prob_maps, center, scale, area, method: str = "expected_oks"):
    """Decode the double-heatmap variant: the wide map decides, the expert map refines.

    ``prob_maps (N, K, H, W)`` cover the activation windows ``center``/``scale (N, 2)``,
    ``wide_prob_maps`` the wide windows (:func:`geometry.wide_window`: same centre,
    :data:`geometry.WIDE_FACTOR` x the scale). A keypoint whose wide estimate lies inside its
    activation window takes the expert map's estimate; the others keep the wide one. Returns
    ``points (N, K, 2)`` image coords, ``confidence (N, K)`` and ``refined (N, K)`` bool, True
    where the point (and its confidence) came from the expert map.
    """
    wide_points, wide_conf = codec.decode(wide_prob_maps, *geometry.wide_window(center, scale), area=area,
                                          method=method)
    points, confidence = codec.decode(prob_maps, center, scale, area=area, method=method)
    refined = geometry.in_window(wide_points, geometry.window_xyxy(center, scale)[:, None, :])
    return np.where(refined[..., None], points, wide_points), np.where(refined, confidence, wide_conf), refined
