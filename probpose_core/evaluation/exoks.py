"""Extended OKS (Ex-OKS, ProbPose), exactly as the authors' ``exococotools`` 1.0.0 scores it.

Ground truth ``v == 3`` marks a keypoint annotated outside the image; a prediction's keypoint
is *present* when its presence (clipped to [0, 1]) is >= the presence threshold. Per labelled
GT keypoint (v > 0), with the GT's activation window (bbox widened to 3:4 and padded):

    GT in (v = 1, 2), prediction present   d = |pred - gt|              (plain OKS)
    GT in,            prediction absent    d = edge distance of the GT
    GT out (v = 3),   prediction present   d = edge distance of the prediction
    GT out,           prediction absent    d = 0                        (scores 1)

where the "edge distance" of a point is, as the reference computes it,
``min(x - x0, x1 - x)^2 + min(y - y0, y1 - y)^2`` (squared). A GT with no labelled keypoint
scores the distance of the prediction to the activation window (COCO's rule with the window
in place of the doubled bbox). Ex-OKS is the mean of ``exp(-d^2 / (2 area (2 sigma)^2))``.

The terms that do not depend on the threshold are computed once (``ex_oks_terms``) so that a
threshold search only re-selects them (``ex_oks_from_terms``).
"""
from typing import NamedTuple

import numpy as np

from ..geometry import PADDING, activation_window
from ..keypoints import SIGMAS
from ..oks import box_distance_sq, keypoint_oks
from ..spec import DEFAULT_PRESENCE_THRESHOLD


def reference_window(bbox, padding: float = PADDING) -> np.ndarray:
    """Activation window (..., 4) x0, y0, x1, y1 of ``bbox (..., 4)`` xywh, bit-equal to exococotools.

    The reference converts the box to corners and back (``w' = (x + w) - x``) and computes
    the window size in float32; both are reproduced here on top of geometry.activation_window.
    """
    b = np.asarray(bbox, dtype=np.float64)
    x, y, w, h = np.moveaxis(b, -1, 0)
    roundtrip = np.stack([x, y, (x + w) - x, (y + h) - y], axis=-1)
    return activation_window(roundtrip, padding=padding, dtype=np.float32)


def _edge_distance_sq(x, y, window):
    """The reference's squared "distance to the closest window edge" of points (..., K)."""
    x0, y0, x1, y1 = (window[..., i, None] for i in range(4))
    return np.minimum(x - x0, x1 - x) ** 2 + np.minimum(y - y0, y1 - y) ** 2


class ExOksTerms(NamedTuple):
    """Threshold-independent parts of Ex-OKS for P (prediction, GT) pairs."""

    labelled: np.ndarray      # (P, K) bool, GT v > 0
    gt_out: np.ndarray        # (P, K) bool, GT v == 3
    presence: np.ndarray      # (P, K) prediction presence clipped to [0, 1]
    both_in: np.ndarray       # (P, K) keypoint OKS of the plain distance
    gt_edge: np.ndarray       # (P, K) keypoint OKS of the GT's edge distance
    pred_edge: np.ndarray     # (P, K) keypoint OKS of the prediction's edge distance
    num_labelled: np.ndarray  # (P,) int
    unlabelled: np.ndarray    # (P,) score of pairs whose GT has no labelled keypoint


def ex_oks_terms(gt_keypoints, gt_bbox, gt_area, pred_keypoints, padding: float = PADDING,
                 sigmas=SIGMAS) -> ExOksTerms:
    """Precompute Ex-OKS of pairs. gt_keypoints: (P, K, 3) x, y, v; gt_bbox: (P, 4) xywh;
    gt_area: (P,); pred_keypoints: (P, K, 3) x, y, presence."""
    g = np.asarray(gt_keypoints, dtype=np.float64)
    p = np.asarray(pred_keypoints, dtype=np.float64)
    area = np.asarray(gt_area, dtype=np.float64)[..., None]
    window = reference_window(gt_bbox, padding)
    xg, yg, vg = g[..., 0], g[..., 1], g[..., 2]
    xd, yd = p[..., 0], p[..., 1]
    labelled = vg > 0

    def score(sq):
        return keypoint_oks(sq, area, sigmas)

    unlabelled = np.mean(score(box_distance_sq(p[..., :2], window)), axis=-1)
    return ExOksTerms(
        labelled=labelled,
        gt_out=vg >= 3,
        presence=np.clip(p[..., 2], 0, 1),
        both_in=score((xd - xg) ** 2 + (yd - yg) ** 2),
        gt_edge=score(_edge_distance_sq(xg, yg, window)),
        pred_edge=score(_edge_distance_sq(xd, yd, window)),
        num_labelled=labelled.sum(axis=-1),
        unlabelled=unlabelled,
    )


def ex_oks_from_terms(terms: ExOksTerms, presence_threshold: float) -> np.ndarray:
    """Ex-OKS (P,) of precomputed pairs at one presence threshold."""
    present = terms.presence >= presence_threshold
    per_keypoint = np.where(terms.gt_out,
                            np.where(present, terms.pred_edge, 1.0),
                            np.where(present, terms.both_in, terms.gt_edge))
    k1 = terms.num_labelled
    labelled_mean = np.sum(np.where(terms.labelled, per_keypoint, 0.0), axis=-1) / np.maximum(k1, 1)
    return np.where(k1 > 0, labelled_mean, terms.unlabelled)


def ex_oks(gt_keypoints, gt_bbox, gt_area, pred_keypoints,
           presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD, padding: float = PADDING,
           sigmas=SIGMAS) -> np.ndarray:
    """Ex-OKS of (prediction, GT) pairs, shapes as in ``ex_oks_terms``; (K, 3) inputs give a scalar array."""
    g = np.asarray(gt_keypoints, dtype=np.float64)
    k = g.shape[-2]
    terms = ex_oks_terms(g.reshape(-1, k, 3), np.reshape(gt_bbox, (-1, 4)), np.reshape(gt_area, -1),
                         np.reshape(pred_keypoints, (-1, k, 3)), padding, sigmas)
    out = ex_oks_from_terms(terms, presence_threshold)
    return out[0] if g.ndim == 2 else out
