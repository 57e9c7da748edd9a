"""Calibration of probability maps (temperature) and of presence, with plots.

Probability maps (paper §3.3): a map is calibrated when, for every level ``q``, the smallest
set of pixels holding ``q`` of its mass (the *credible set*, highest-probability pixels first)
contains the true keypoint in a fraction ``q`` of cases.

- The *credible interval* of the ground-truth pixel ``g`` is ``[lo, hi]``: ``lo`` the mass of
  the pixels more probable than ``g``, ``hi = lo +`` the mass of the pixels tied with ``g``
  (``g`` included). The credible set at level ``q`` contains ``g`` exactly when ``lo < q``.
  A pixel outside the support (p = 0) has ``lo = hi = 1``: no credible set below 1 holds it.
- Its *credible level* is ``lo + u (hi - lo)``; with ``u ~ U(0, 1)`` (randomised PIT) the level
  is exactly uniform on [0, 1] when ``g`` is drawn from the map itself.
- The *coverage curve* ``coverage(q) = P(level <= q)``, computed as the expectation over ``u``
  (each keypoint counts with the fraction of its interval below ``q``): deterministic, and the
  identity for a calibrated model however coarse the maps.
- *Calibration error* = mean over a grid of ``q`` of ``|coverage(q) - q|``.
- *Temperature scaling*: ``prob_maps = sparsemax(logits / T)``; :func:`fit_temperature` picks
  the ``T`` minimising the calibration error on held-out data by 1-D search.

Presence (a per-keypoint probability): reliability curve, expected calibration error, Brier score.

Model outputs next to the codec's targets on GT instances (:func:`gt_outputs`): the one pass
behind evaluation, calibration and the demo's plots.

Credible regions (mask, polygons, covariance ellipse) live in :mod:`probpose_core.regions`.
Maps are (..., H, W) in heatmap pixels (x right, y down, pixel centres at integers, UDP).
"""
import sys
from pathlib import Path

import numpy as np

from .errors import InputError
from .regions import flat_maps

#: Default grid of credible levels for the coverage curve and calibration error.
Q_GRID = np.round(np.linspace(0.05, 0.95, 19), 10)
#: Search range of the total temperature T of ``sparsemax(logits / T)``. Wide: a model whose logits
#: reach ~20 (e.g. the MoveNet-started student) or an over-confident one needs T well above 20
#: (the first shipped student hit the old upper end, 20).
T_RANGE = (0.05, 500.0)


# ------------------------------------------------------------------------------ map calibration

def gt_pixel_index(gt_xy, map_size) -> tuple[np.ndarray, np.ndarray]:
    """Flat pixel index (...,) of ground-truth points ``(..., 2)`` in heatmap coordinates.

    map_size: (W, H). Points are rounded to the nearest pixel centre. Returns ``(index,
    inside)``; ``index`` is 0 where the point falls outside the map (``inside`` False).
    """
    w, h = int(map_size[0]), int(map_size[1])
    xy = np.asarray(gt_xy, dtype=np.float64)
    ix, iy = np.rint(xy[..., 0]), np.rint(xy[..., 1])
    inside = np.isfinite(ix) & np.isfinite(iy) & (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
    index = np.where(inside, np.nan_to_num(iy) * w + np.nan_to_num(ix), 0).astype(np.int64)
    return index, inside


def _interval(p: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Credible interval of pixel ``index (M,)`` in maps ``p (M, P)`` (any pixel order)."""
    p_gt = p[np.arange(p.shape[0]), index][:, None]
    total = p.sum(axis=1)
    total = np.where(total > 0, total, 1.0)
    lo = np.where(p > p_gt, p, 0.0).sum(axis=1) / total
    tied = np.where(p == p_gt, p, 0.0).sum(axis=1) / total
    return lo, lo + tied


def credible_interval(prob_maps, gt_xy) -> tuple[np.ndarray, np.ndarray]:
    """Credible interval ``(lo, hi)``, each (...,), of the ground-truth pixel of each map.

    prob_maps: (..., H, W); gt_xy: (..., 2) heatmap coordinates. Relative to each map's total
    mass. NaN where the point is off the map.
    """
    p_nd = np.asarray(prob_maps, dtype=np.float64)
    batch = p_nd.shape[:-2]
    p = flat_maps(p_nd)
    index, inside = gt_pixel_index(gt_xy, (p_nd.shape[-1], p_nd.shape[-2]))
    index, inside = index.reshape(-1), inside.reshape(-1)
    if index.shape[0] != p.shape[0]:
        raise InputError(f"{p.shape[0]} maps but {index.shape[0]} ground-truth points")
    lo, hi = _interval(p, index)
    return np.where(inside, lo, np.nan).reshape(batch), np.where(inside, hi, np.nan).reshape(batch)


def credible_level(prob_maps, gt_xy, u=0.5) -> np.ndarray:
    """Credible level ``lo + u (hi - lo)`` of the ground-truth pixel of each map: (...,).

    ``u``: tie fraction, a number or an array broadcasting to (...,) (uniform draws give the
    randomised PIT; 0.5 the mid-point; 0 the boundary ``lo``). NaN where off the map.
    """
    lo, hi = credible_interval(prob_maps, gt_xy)
    return lo + np.asarray(u, dtype=np.float64) * (hi - lo)


def coverage_curve(levels, weights=None, grid=Q_GRID, levels_hi=None) -> np.ndarray:
    """Empirical coverage ``(Q,)``: weighted fraction of levels ``<= q`` for each ``q`` of ``grid``.

    levels: any shape (NaN entries, e.g. keypoints off the map, are ignored); weights: same
    shape or None. With ``levels_hi``, ``levels`` are the lower ends of credible intervals and
    each keypoint counts with the fraction of ``[lo, hi]`` below ``q`` (the expectation over a
    uniform tie fraction). NaN everywhere when no level carries weight.
    """
    lo = np.asarray(levels, dtype=np.float64)
    hi = lo if levels_hi is None else np.asarray(levels_hi, dtype=np.float64)
    w = np.ones(lo.shape) if weights is None else np.asarray(weights, dtype=np.float64)
    try:
        w, hi = np.broadcast_to(w, lo.shape).reshape(-1), np.broadcast_to(hi, lo.shape).reshape(-1)
    except ValueError:
        raise InputError(f"weights {w.shape} / upper levels {hi.shape} do not match levels {lo.shape}") from None
    lo = lo.reshape(-1)
    valid = np.isfinite(lo) & np.isfinite(hi)
    w = np.where(valid, w, 0.0)
    lo, hi = np.where(valid, lo, 1.0), np.where(valid, hi, 1.0)
    grid = np.asarray(grid, dtype=np.float64)
    total = w.sum()
    if total <= 0:
        return np.full(grid.shape, np.nan)
    width = hi - lo
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = np.where(width[None] > 0, np.clip((grid[:, None] - lo[None]) / width[None], 0.0, 1.0),
                        (lo[None] <= grid[:, None]).astype(np.float64))
    return (frac * w[None]).sum(axis=1) / total


def calibration_error(levels, weights=None, grid=Q_GRID, levels_hi=None) -> float:
    """Mean over ``grid`` of ``|coverage(q) - q|`` (0 for a perfectly calibrated model)."""
    grid = np.asarray(grid, dtype=np.float64)
    return float(np.mean(np.abs(coverage_curve(levels, weights, grid, levels_hi) - grid)))


def temperature_maps(logits, temperature: float) -> np.ndarray:
    """``sparsemax(logits / T)`` over each map's pixels: (..., H, W) float64 numpy."""
    import torch

    from .sparsemax import sparsemax_maps

    z = torch.as_tensor(np.asarray(logits, dtype=np.float64))
    shape = z.shape
    with torch.no_grad():
        p = sparsemax_maps(z.reshape(-1, 1, shape[-2], shape[-1]), temperature=float(temperature))
    return p.reshape(shape).numpy()


def _intervals_vs_temperature(logits, gt_heatmap_xy, weights, chunk: int = 2048):
    """``(intervals_at(T) -> (lo (M,), hi (M,)), weights (M,))`` over the weighted on-map keypoints.

    Each map's logits are sorted once: the order does not depend on ``T``, sparsemax of sorted
    input stays sorted, and intervals do not depend on the pixel order. Only the columns inside
    the widest support are used for the intervals.
    """
    import torch

    from .sparsemax import sparsemax

    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 4:
        raise InputError(f"logits must be (N, K, H, W), got shape {logits.shape}")
    gt = np.asarray(gt_heatmap_xy, dtype=np.float64)
    if gt.shape != logits.shape[:2] + (2,):
        raise InputError(f"gt_heatmap_xy must be {logits.shape[:2] + (2,)}, got {gt.shape}")
    h, w = logits.shape[-2:]
    weights = np.ones(logits.shape[:2]) if weights is None else np.asarray(weights, dtype=np.float64)
    weights = np.broadcast_to(weights, logits.shape[:2]).reshape(-1)
    index, inside = gt_pixel_index(gt.reshape(-1, 2), (w, h))
    keep = inside & (weights > 0)
    flat = logits.reshape(-1, h * w)[keep]
    order = np.argsort(-flat, axis=1, kind="stable")
    z_sorted = torch.from_numpy(np.take_along_axis(flat, order, axis=1))
    rank = np.argmax(order == index[keep][:, None], axis=1)

    def intervals_at(temperature: float) -> tuple[np.ndarray, np.ndarray]:
        los, his = [np.zeros(0)], [np.zeros(0)]
        for s in range(0, z_sorted.shape[0], chunk):
            with torch.no_grad():
                p = sparsemax(z_sorted[s:s + chunk] / float(temperature)).numpy()
            width = max(int((p > 0).any(axis=0).sum()), 1)  # columns of the widest support
            r = rank[s:s + chunk]
            lo, hi = _interval(p[:, :width], np.minimum(r, width - 1))
            los.append(np.where(r < width, lo, 1.0))  # off the support: [1, 1]
            his.append(np.where(r < width, hi, 1.0))
        return np.concatenate(los), np.concatenate(his)

    return intervals_at, weights[keep]


def temperature_error(logits, gt_heatmap_xy, temperature: float, weights=None, grid=Q_GRID) -> float:
    """Calibration error of ``sparsemax(logits / T)`` (logits (N, K, H, W), gt (N, K, 2)).

    Weights (N, K) or None; keypoints off the map are skipped.
    """
    intervals_at, w = _intervals_vs_temperature(logits, gt_heatmap_xy, weights)
    lo, hi = intervals_at(temperature)
    return calibration_error(lo, w, grid, hi)


def fit_temperature(logits, gt_heatmap_xy, weights=None, grid=Q_GRID, t_range=T_RANGE,
                    coarse: int = 17, iters: int = 12) -> float:
    """Temperature ``T`` for which ``sparsemax(logits / T)`` is best calibrated.

    logits: (N, K, H, W) map logits (before any temperature); gt_heatmap_xy: (N, K, 2) ground
    truth in heatmap coordinates; weights: (N, K) or None (use e.g. 1 for annotated keypoints;
    points off the map are skipped). Minimises :func:`calibration_error` over ``grid``: a
    log-spaced grid of ``coarse`` temperatures over ``t_range``, then golden-section search on
    log T between the neighbours of the best grid point for ``iters`` steps (the bracket
    shrinks by 0.618 per step: 17 points over 0.05..500 and 12 steps locate T within ~0.4 %).
    """
    intervals_at, w = _intervals_vs_temperature(logits, gt_heatmap_xy, weights)
    if w.sum() <= 0:
        raise InputError("no weighted ground-truth keypoint lies on the maps: nothing to calibrate")

    def error(log_t: float) -> float:
        lo, hi = intervals_at(float(np.exp(log_t)))
        return calibration_error(lo, w, grid, hi)

    log_grid = np.linspace(np.log(t_range[0]), np.log(t_range[1]), coarse)
    errors = [error(x) for x in log_grid]
    best = int(np.argmin(errors))
    lo, hi = log_grid[max(best - 1, 0)], log_grid[min(best + 1, coarse - 1)]
    ratio = (np.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = error(a), error(b)
    for _ in range(iters):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = error(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = error(b)
    candidates = [(fa, a), (fb, b), (errors[best], log_grid[best])]
    return float(np.exp(min(candidates)[1]))


# ------------------------------------------------------------------------------ presence calibration

def _prob_outcome(prob, outcome) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(prob, dtype=np.float64).reshape(-1)
    o = np.asarray(outcome, dtype=np.float64).reshape(-1)
    if p.shape != o.shape:
        raise InputError(f"{p.shape[0]} probabilities but {o.shape[0]} outcomes")
    if p.size and (np.nanmin(p) < 0 or np.nanmax(p) > 1):
        raise InputError("probabilities must lie in [0, 1]")
    keep = np.isfinite(p) & np.isfinite(o)
    return p[keep], o[keep]


def reliability_curve(prob, outcome, bins: int = 10):
    """Reliability diagram data for binary predictions.

    prob: (M,) predicted probabilities; outcome: (M,) 0/1. Equal-width bins over [0, 1]
    (1.0 falls in the last). Returns ``confidence (B,)`` (mean prob per bin), ``accuracy (B,)``
    (mean outcome per bin), both NaN for empty bins, and ``counts (B,)``.
    """
    p, o = _prob_outcome(prob, outcome)
    index = np.clip(np.floor(p * bins).astype(np.int64), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(index, weights=p, minlength=bins) / counts
        accuracy = np.bincount(index, weights=o, minlength=bins) / counts
    return confidence, accuracy, counts


def expected_calibration_error(prob, outcome, bins: int = 10) -> float:
    """``sum_b n_b / n * |accuracy_b - confidence_b|`` over non-empty bins (NaN without data)."""
    confidence, accuracy, counts = reliability_curve(prob, outcome, bins)
    if counts.sum() == 0:
        return float("nan")
    filled = counts > 0
    return float((counts[filled] * np.abs(accuracy[filled] - confidence[filled])).sum() / counts.sum())


def brier_score(prob, outcome) -> float:
    """Mean squared difference between probabilities and 0/1 outcomes (NaN without data)."""
    p, o = _prob_outcome(prob, outcome)
    return float(np.mean((p - o) ** 2)) if p.size else float("nan")


# ------------------------------------------------------------------------------ model outputs on GT instances

GT_BATCH = 32  # crops per forward pass over the GT instances


def _batches(instances, images_dir: Path, pipe, progress: bool):
    """Crops of the instances, image by image, gathered into batches of about GT_BATCH: yields
    ``(images (B, 3, H, W), center (B, 2), scale (B, 2), rows (B,))``, ``rows`` indexing ``instances``."""
    from tqdm import tqdm

    from .image_io import read_image

    by_image: dict = {}
    for row, inst in enumerate(instances):
        by_image.setdefault(inst.file_name, []).append(row)
    parts: list = []
    size = 0
    for file_name, rows in tqdm(by_image.items(), desc="gt instances", unit="img", disable=not progress,
                                file=sys.stderr):
        frame = read_image(images_dir / file_name)
        images, center, scale = pipe.crops(frame, np.stack([instances[r].bbox for r in rows]))
        parts.append((images, center, scale, np.asarray(rows)))
        size += len(rows)
        if size >= GT_BATCH:
            yield tuple(np.concatenate(column) for column in zip(*parts))
            parts, size = [], 0
    if parts:
        yield tuple(np.concatenate(column) for column in zip(*parts))


def gt_outputs(runner, instances, images_dir, codec=None, flip_test: bool = False,
               logits: bool = False, progress: bool = False) -> dict:
    """Run the model over GT ``instances`` (data.instances.Instance, with keypoints) and collect
    its outputs next to the codec's targets: the one pass shared by evaluation and calibration.

    Used by ``training.evaluate``, ``training.calibrate`` and ``probpose demo``. runner: a
    Runner (``logits=True`` needs one that returns ``map_logits``:
    ``training.evaluate.logits_runner``); codec: the model's ProbMapCodec (None: the runner's
    ``spec.ModelSpec``'s). Crops are the pipeline's (:meth:`Pipeline.crops`), the flip test its
    :meth:`Pipeline.infer`. Returns numpy arrays over the N instances, in their order:
    ``presence``, ``presence_target``, ``keypoint_weights``, ``map_weights`` (N, K);
    ``keypoints_map`` (N, K, 2) GT in heatmap pixels; ``level_lo``, ``level_hi`` (N, K) credible
    interval of the GT pixel in each probability map (NaN off the map); ``map_logits``
    (N, K, H, W) float32 only with ``logits``.
    """
    from .pipeline import Pipeline, read_heatmaps
    from .runtime.base import HEATMAP_OUTPUT

    images_dir = Path(images_dir)
    if not instances:
        raise InputError("no GT instance with annotated keypoints to evaluate calibration on")
    pipe = Pipeline(runner, codec=codec, flip_test=flip_test, credible_levels=())
    codec = pipe.codec
    keys = ("presence", "presence_target", "keypoint_weights", "map_weights", "keypoints_map", "level_lo", "level_hi")
    collected: dict = {k: [] for k in keys + ("rows",) + (("map_logits",) if logits else ())}
    for images, center, scale, rows in _batches(instances, images_dir, pipe, progress):
        out = pipe.infer(images)
        kpts = np.stack([instances[r].keypoints for r in rows])
        area = np.array([instances[r].area for r in rows])
        targets = codec.encode(kpts[..., :2], kpts[..., 2].astype(np.int64), area, center, scale)
        if HEATMAP_OUTPUT in out:  # presence and distribution as the pipeline reads a heatmap model
            _, presence, _, maps = read_heatmaps(codec, out[HEATMAP_OUTPUT], center, scale)
        else:
            presence, maps = out["presence"], out["prob_maps"]
        lo, hi = credible_interval(maps, targets["keypoints_map"])
        values = {"presence": np.asarray(presence, dtype=np.float64), "presence_target": targets["presence"],
                  "keypoint_weights": targets["keypoint_weights"], "map_weights": targets["map_weights"],
                  "keypoints_map": targets["keypoints_map"], "level_lo": lo, "level_hi": hi, "rows": rows}
        if logits:
            values["map_logits"] = np.asarray(out["map_logits"], dtype=np.float32)
        for k, v in values.items():
            collected[k].append(v)
    order = np.argsort(np.concatenate(collected.pop("rows")))  # back to the order of ``instances``
    return {k: np.concatenate(v)[order] for k, v in collected.items()}


# ------------------------------------------------------------------------------ plots

def _figure():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.5, 4.5), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def plot_coverage_curve(curves, path, grid=Q_GRID, title: str = "Probability-map calibration") -> Path:
    """Coverage curves (empirical coverage vs credible level ``q``) with the ideal diagonal, as PNG.

    curves: one coverage array (Q,) or a mapping ``label -> (Q,)`` (e.g. before/after the
    temperature fit); grid: the ``q`` values (Q,). Returns the written path.
    """
    if not isinstance(curves, dict):
        curves = {"model": curves}
    grid = np.asarray(grid, dtype=np.float64)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    for label, coverage in curves.items():
        coverage = np.asarray(coverage, dtype=np.float64)
        err = np.nanmean(np.abs(coverage - grid))
        ax.plot(grid, coverage, "o-", markersize=3, label=f"{label} (err {err:.3f})")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="credible level q (mass of the region)",
           ylabel="fraction of ground truths inside", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


def plot_reliability(prob, outcome, path, bins: int = 10, title: str = "Presence reliability") -> Path:
    """Reliability diagram of binary probabilities (bars: accuracy per bin; ECE and Brier in the legend), PNG."""
    confidence, accuracy, counts = reliability_curve(prob, outcome, bins)
    ece, brier = expected_calibration_error(prob, outcome, bins), brier_score(prob, outcome)
    centres = (np.arange(bins) + 0.5) / bins
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="calibrated")
    filled = counts > 0
    ax.bar(centres[filled], accuracy[filled], width=1.0 / bins, edgecolor="black", alpha=0.7,
           label=f"accuracy (ECE {ece:.3f}, Brier {brier:.3f})")
    ax.plot(confidence[filled], accuracy[filled], "o", color="C3", markersize=4, label="bins (mean probability, frequency)")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="predicted probability", ylabel="observed frequency", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)
