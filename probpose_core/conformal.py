"""Split-conformal coverage calibration of credible regions and covariance ellipses.

A model's raw credible region at level q (the pixels holding q of its Sparsemax map's mass,
:func:`regions.credible_mask`) need not hold the truth in q of the cases: gross errors lie
outside any compact support. This module turns held-out labelled keypoints into a
:class:`CoverageTable` whose regions do, by split conformal prediction:

- **Region score** (:func:`region_scores`) of a truth point ``t`` and its map: with ``c`` the
  pixel whose cell holds ``t`` (:func:`regions.cell_index`), ``s = `` the mass of the pixels
  MORE probable than ``c`` when ``p(c) > 0``: the level at which ``c``'s cell enters the
  credible set (:func:`regions.credible_mask` holds it at every level above ``s``; the
  published mass level is the table's ``s_q`` nudged up by one float step, so a score equal to
  ``s_q`` is held). When ``p(c) = 0``, ``s = 1 + d`` with ``d``
  the distance (heatmap pixels, i.e. box-relative) from ``t`` to the union of the support's
  cells: the support grown by any radius ``>= d`` holds ``t``. The whole cell, not a bilinear
  neighbourhood, is used because a region is a set of whole cells.
- **Ellipse score** (:func:`ellipse_scores`): the squared Mahalanobis distance of ``t`` from
  the published point under the map's second moment about that point
  (:func:`regions.point_moment`, the published covariance).
- **Conformal quantile** (:func:`conformal_quantile`): for ``n`` calibration scores and level
  ``q`` the ``ceil((n + 1) q)``-th smallest. For a fresh keypoint exchangeable with the
  calibration ones, ``P(score <= s_q) >= q``.
- **Mondrian cells**: one quantile per keypoint group (:data:`GROUPS`: face, arms, legs) and,
  optionally, per person-box size bucket (:data:`CELL_BUCKETS`: COCO's medium-or-smaller /
  large by box area; COCO's small alone is too rare to fill a cell) and per box position: ``border`` when the box comes within
  :data:`BORDER_MARGIN_PX` of an image edge (the person may be cut off: CropCOCO's case, where
  the maps are much less reliable), else ``inside`` (:func:`box_at_border`). All are observable
  at run time, so the claim holds per cell, not only on average.
- **Published region at level q** of a keypoint in cell ``g``: the credible set at mass level
  ``min(s_q, 1)`` grown by ``max(s_q - 1, 0)`` heatmap pixels (:meth:`CoverageTable.region_params`,
  drawn by :func:`regions.region_masks`); the **level-q ellipse** is ``d^T M^-1 d <= r_q^2``
  with ``r_q^2`` the cell's ellipse quantile (instead of a Gaussian's ``chi2_2(q)``).

Only the levels in the table are calibrated: any other level is refused
(:meth:`CoverageTable.check_level`), never interpolated or defaulted. Plain numpy; the table
is plain data (``to_dict`` / ``from_dict``) stored in the checkpoint and the ONNX sidecar and
read through :class:`spec.ModelSpec`.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .regions import cell_index, flat_maps, point_moment

#: keypoint groups (COCO-17 indices) with a quantile each
GROUPS = {"face": (0, 1, 2, 3, 4), "arms": (5, 6, 7, 8, 9, 10), "legs": (11, 12, 13, 14, 15, 16)}
#: person-box size buckets by box area (w * h, image px^2), COCO's small / medium / large edges
BOX_BUCKETS = {"edges": (32.0 ** 2, 96.0 ** 2), "names": ("small", "medium", "large")}
#: the size buckets of Mondrian cells (``by_bucket``): COCO's small and medium together, large
CELL_BUCKETS = {"edges": (96.0 ** 2,), "names": ("small_medium", "large")}
#: a person box within this many pixels of an image edge is "border" (the person may be cut off)
BORDER_MARGIN_PX = 4.0
BORDER_NAMES = ("inside", "border")
#: calibrated levels by default: 0.975 is the per-endpoint level behind keep_out_coverage 0.95
#: (keep_out.py: two endpoints at (1 + c) / 2 each hold both with probability >= c)
DEFAULT_LEVELS = (0.5, 0.9, 0.95, 0.975)
TABLE_FORMAT = 1
_LEVEL_TOL = 1e-9


def conformal_quantile(scores, q: float) -> float:
    """The ``ceil((n + 1) q)``-th smallest of ``n`` finite ``scores``: for a fresh exchangeable
    score ``P(score <= result) >= q``. InputError when ``n`` is too small for ``q`` (the rank
    would exceed ``n``) or ``q`` is not in (0, 1)."""
    s = np.sort(np.asarray(scores, dtype=np.float64).reshape(-1))
    if not 0.0 < float(q) < 1.0:
        raise InputError(f"coverage levels must lie in (0, 1), got {q}")
    if not np.all(np.isfinite(s)):
        raise InputError("conformal scores must be finite")
    rank = math.ceil((len(s) + 1) * float(q) - 1e-9)
    if rank > len(s):
        raise InputError(f"{len(s)} calibration scores are too few for level {q}: it needs at least "
                         f"{math.ceil(float(q) / (1.0 - float(q)) - 1e-9)}")
    return float(s[rank - 1])


def support_distance(prob_maps, points) -> np.ndarray:
    """Distance ``(M,)`` (heatmap pixels) from ``points (M, 2)`` to the union of the cells of the
    pixels with ``p > 0`` of maps ``(M, H, W)``; 0 inside, inf for an all-zero map."""
    p = np.asarray(prob_maps)
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    out = np.full(len(p), np.inf)
    for i in range(len(p)):
        ys, xs = np.nonzero(p[i] > 0)
        if len(xs):
            dx = np.maximum(np.abs(pts[i, 0] - xs) - 0.5, 0.0)
            dy = np.maximum(np.abs(pts[i, 1] - ys) - 0.5, 0.0)
            out[i] = float(np.sqrt(dx * dx + dy * dy).min())
    return out


def region_scores(prob_maps, truth) -> np.ndarray:
    """Nonconformity score ``(M,)`` of truth points ``(M, 2)`` (heatmap coordinates) for maps
    ``(M, H, W)`` (module docstring): the mass strictly above the truth cell's probability, or
    ``1 + distance`` to the support when that cell has none. NaN for a point off the map."""
    p_nd = np.asarray(prob_maps, dtype=np.float64)
    if p_nd.ndim != 3:
        raise InputError(f"region_scores takes maps (M, H, W), got shape {p_nd.shape}")
    t = np.asarray(truth, dtype=np.float64).reshape(-1, 2)
    if len(t) != len(p_nd):
        raise InputError(f"{len(p_nd)} maps but {len(t)} truth points")
    h, w = p_nd.shape[1:]
    ix, iy = cell_index(t, (w, h))
    on_map = ix >= 0
    p = flat_maps(p_nd)
    total = p.sum(axis=1)
    p_truth = p[np.arange(len(p)), np.where(on_map, iy * w + ix, 0)]
    with np.errstate(invalid="ignore", divide="ignore"):
        mass = np.where(p > p_truth[:, None], p, 0.0).sum(axis=1) / total
    score = np.where(p_truth > 0, mass, np.nan)
    zero = on_map & ~(p_truth > 0)
    if zero.any():
        score[zero] = 1.0 + support_distance(p_nd[zero], t[zero])
    return np.where(on_map & (total > 0), score, np.nan)


def ellipse_scores(prob_maps, points, truth) -> np.ndarray:
    """Squared Mahalanobis distance ``(M,)`` of ``truth (M, 2)`` from the published ``points
    (M, 2)`` under the maps' second moment about the points (heatmap coordinates; the distance
    is the same in image coordinates, the affine cancels)."""
    moment = point_moment(prob_maps, points)
    d = np.asarray(truth, dtype=np.float64).reshape(-1, 2) - np.asarray(points, dtype=np.float64).reshape(-1, 2)
    with np.errstate(invalid="ignore"):
        return np.einsum("mi,mij,mj->m", d, np.linalg.inv(moment), d)


def box_bucket(box_area, edges=BOX_BUCKETS["edges"]) -> np.ndarray:
    """Index ``(...,)`` of the size bucket of each person-box area (``edges`` split them)."""
    return np.searchsorted(np.asarray(edges, dtype=np.float64), np.asarray(box_area, dtype=np.float64), side="right")


def box_at_border(boxes, frame_size, margin: float = BORDER_MARGIN_PX) -> np.ndarray:
    """Whether each person box ``(N, 4)`` xywh comes within ``margin`` px of an edge of its image;
    ``frame_size``: (W, H) for all, or ``(N, 2)`` one per box."""
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    size = np.broadcast_to(np.asarray(frame_size, dtype=np.float64), (len(b), 2))
    return ((b[:, 0] <= margin) | (b[:, 1] <= margin) | (b[:, 0] + b[:, 2] >= size[:, 0] - margin)
            | (b[:, 1] + b[:, 3] >= size[:, 1] - margin))


def keypoint_groups(num_keypoints: int) -> dict:
    """:data:`GROUPS` for COCO-17 models; one group "all" for any other keypoint set."""
    return dict(GROUPS) if num_keypoints == 17 else {"all": tuple(range(num_keypoints))}


@dataclass(frozen=True)
class CoverageTable:
    """Calibrated levels and, per Mondrian cell, the region score quantile ``region[i]`` and the
    ellipse radius^2 ``ellipse_r2[i]`` for ``levels[i]``, with the cell's sample size ``n``.

    Cells are keyed ``group``, ``group/bucket`` with ``by_bucket`` (names of ``groups`` and
    ``buckets["names"]``), then ``/inside`` or ``/border`` with ``by_border``. ``data``: a
    description of the calibration data; ``score``: the score definitions (for readers).
    Lookups take the people's boxes ``(N, 4)`` xywh and their image size (W, H) (needed only
    ``by_border``).
    """

    levels: tuple
    groups: dict
    cells: dict
    by_bucket: bool = False
    buckets: dict = field(default_factory=lambda: {k: tuple(v) for k, v in CELL_BUCKETS.items()})
    by_border: bool = False
    border_margin: float = BORDER_MARGIN_PX
    data: str = ""
    score: str = ("region: mass strictly above the truth cell's probability, else 1 + distance (heatmap px) "
                  "to the support's cells; ellipse: squared Mahalanobis distance about the published point")

    def __post_init__(self):
        levels = tuple(float(q) for q in self.levels)
        if not levels or any(not 0.0 < q < 1.0 for q in levels) or list(levels) != sorted(set(levels)):
            raise InputError(f"coverage levels must be distinct, increasing and in (0, 1), got {self.levels}")
        object.__setattr__(self, "levels", levels)
        object.__setattr__(self, "groups", {str(g): tuple(int(k) for k in ks) for g, ks in self.groups.items()})
        cells = {}
        for key in self._keys():
            cell = self.cells.get(key)
            if cell is None:
                raise InputError(f"the coverage table has no cell {key!r} (cells: {sorted(self.cells)})")
            region = tuple(float(v) for v in cell["region"])
            radius2 = tuple(float(v) for v in cell["ellipse_r2"])
            if len(region) != len(levels) or len(radius2) != len(levels) or not all(
                    np.isfinite(v) and v >= 0 for v in region + radius2):
                raise InputError(f"coverage cell {key!r} needs one finite value >= 0 per level {levels}")
            cells[key] = {"region": region, "ellipse_r2": radius2, "n": int(cell.get("n", 0))}
        object.__setattr__(self, "cells", cells)

    def _keys(self) -> list:
        return _all_keys(self.groups, self.buckets["names"] if self.by_bucket else None, self.by_border)

    # -- plain data -----------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"format": TABLE_FORMAT, "levels": list(self.levels), "groups": {g: list(k) for g, k in self.groups.items()},
                "by_bucket": bool(self.by_bucket), "buckets": {k: list(v) for k, v in self.buckets.items()},
                "by_border": bool(self.by_border), "border_margin": float(self.border_margin),
                "cells": {k: {"region": list(c["region"]), "ellipse_r2": list(c["ellipse_r2"]), "n": c["n"]}
                          for k, c in self.cells.items()},
                "data": self.data, "score": self.score}

    @classmethod
    def from_dict(cls, table: dict) -> "CoverageTable":
        if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
            raise InputError(f"unknown coverage table (format {table.get('format') if isinstance(table, dict) else table!r}, "
                             f"expected {TABLE_FORMAT})")
        try:
            return cls(levels=tuple(table["levels"]), groups=table["groups"], cells=table["cells"],
                       by_bucket=bool(table.get("by_bucket", False)),
                       buckets={k: tuple(v) for k, v in (table.get("buckets") or CELL_BUCKETS).items()},
                       by_border=bool(table.get("by_border", False)),
                       border_margin=float(table.get("border_margin", BORDER_MARGIN_PX)),
                       data=str(table.get("data", "")), score=str(table.get("score", cls.score)))
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"bad coverage table in the model's metadata: {exc!r}") from None

    # -- lookups --------------------------------------------------------------------
    def level_index(self, q: float) -> int:
        """Index of level ``q`` in :attr:`levels`; InputError naming the calibrated levels otherwise."""
        for i, level in enumerate(self.levels):
            if abs(level - float(q)) <= _LEVEL_TOL:
                return i
        raise InputError(f"level {q} is not calibrated for this model: its coverage table holds "
                         f"{', '.join(f'{v:g}' for v in self.levels)} (recalibrate with that level, "
                         f"training.calibrate --coverage-levels)")

    def check_level(self, q: float) -> None:
        self.level_index(q)

    def cell_keys(self, boxes, frame_size=None) -> np.ndarray:
        """Cell key ``(N, K)`` (object array) of every keypoint of people with ``boxes (N, 4)``
        xywh in images of ``frame_size`` (W, H) or ``(N, 2)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        num_k = 1 + max(k for ks in self.groups.values() for k in ks)
        group_of = np.empty(num_k, dtype=object)
        for g, ks in self.groups.items():
            group_of[list(ks)] = g
        keys = np.tile(group_of, (len(boxes), 1))
        if self.by_bucket:
            bucket = box_bucket(boxes[:, 2] * boxes[:, 3], self.buckets["edges"])
            keys = keys + "/" + np.asarray(self.buckets["names"], dtype=object)[bucket][:, None]
        if self.by_border:
            if frame_size is None:
                raise InputError("this coverage table has cells per box position: the image size is needed")
            border = box_at_border(boxes, frame_size, self.border_margin).astype(int)
            keys = keys + "/" + np.asarray(BORDER_NAMES, dtype=object)[border][:, None]
        return keys

    def _values(self, kind: str, q: float, boxes, frame_size) -> np.ndarray:
        i = self.level_index(q)
        keys = self.cell_keys(boxes, frame_size)
        lookup = {k: c[kind][i] for k, c in self.cells.items()}
        return np.vectorize(lookup.__getitem__, otypes=[np.float64])(keys) if keys.size else np.zeros(keys.shape)

    def region_params(self, q: float, boxes, frame_size=None) -> tuple[np.ndarray, np.ndarray]:
        """``(mass level (N, K), dilation (N, K) heatmap px)`` of the level-q regions of people with
        ``boxes (N, 4)`` in images of ``frame_size``: ``min(s_q, 1)`` (one float step above ``s_q``,
        so that a truth cell whose score is ``s_q`` is in) and ``max(s_q - 1, 0)`` of each
        keypoint's cell."""
        s = self._values("region", q, boxes, frame_size)
        return np.minimum(np.nextafter(s, np.inf), 1.0), np.maximum(s - 1.0, 0.0)

    def ellipse_radius2(self, q: float, boxes, frame_size=None) -> np.ndarray:
        """Squared Mahalanobis radius ``(N, K)`` of the level-q ellipses of people with ``boxes (N, 4)``."""
        return self._values("ellipse_r2", q, boxes, frame_size)


def calibrate_table(region_score, ellipse_score, keypoint, boxes, frame_size=None, levels=DEFAULT_LEVELS,
                    groups=None, by_bucket: bool = False, by_border: bool = False, data: str = "") -> CoverageTable:
    """:class:`CoverageTable` from calibration scores ``(M,)`` of keypoints ``keypoint (M,)``
    (indices) of people with ``boxes (M, 4)`` xywh in images of ``frame_size`` ((W, H) or
    ``(M, 2)``; needed ``by_border``): per Mondrian cell and level the :func:`conformal_quantile`
    of each score. ``groups``: default :func:`keypoint_groups` (COCO-17)."""
    region_score = np.asarray(region_score, dtype=np.float64).reshape(-1)
    ellipse_score = np.asarray(ellipse_score, dtype=np.float64).reshape(-1)
    keypoint = np.asarray(keypoint, dtype=np.int64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(region_score) == len(ellipse_score) == len(keypoint) == len(boxes):
        raise InputError("region scores, ellipse scores, keypoints and boxes must have one entry per sample")
    groups = keypoint_groups(17) if groups is None else groups
    skeleton = CoverageTable(levels=tuple(levels), groups=groups, by_bucket=by_bucket, by_border=by_border,
                             cells={k: {"region": [0.0] * len(levels), "ellipse_r2": [0.0] * len(levels)}
                                    for k in _all_keys(groups, CELL_BUCKETS["names"] if by_bucket else None, by_border)})
    keys = skeleton.cell_keys(boxes, frame_size)[np.arange(len(keypoint)), keypoint] if len(keypoint) \
        else np.zeros(0, object)
    cells = {}
    for key in skeleton.cells:
        pick = keys == key
        rs, es = region_score[pick], ellipse_score[pick]
        ok = np.isfinite(rs) & np.isfinite(es)
        try:
            cells[key] = {"region": [conformal_quantile(rs[ok], q) for q in skeleton.levels],
                          "ellipse_r2": [conformal_quantile(es[ok], q) for q in skeleton.levels], "n": int(ok.sum())}
        except InputError as exc:
            raise InputError(f"coverage cell {key!r}: {exc}") from None
    return CoverageTable(levels=skeleton.levels, groups=skeleton.groups, cells=cells, by_bucket=by_bucket,
                         by_border=by_border, data=data)


def _all_keys(groups, bucket_names=None, by_border: bool = False) -> list:
    keys = list(groups)
    if bucket_names is not None:
        keys = [f"{k}/{b}" for k in keys for b in bucket_names]
    if by_border:
        keys = [f"{k}/{b}" for k in keys for b in BORDER_NAMES]
    return keys
