"""Object Keypoint Similarity, the one formula used by codec, losses and evaluation.

COCO: ``OKS_k = exp(-d_k^2 / (2 * area * (2 sigma_k)^2))`` with ``area`` the instance area
(segmentation area in COCO, in the same units as ``d``) and sigmas from keypoints.SIGMAS.
"""
import numpy as np

from .keypoints import SIGMAS


def oks_exponent(sq_dist, area, sigmas=SIGMAS):
    """``d^2 / (2 area (2 sigma)^2)``, broadcasting ``sq_dist`` (..., K) against sigmas (K,).

    ``area`` broadcasts against ``sq_dist``; the tiny ``np.spacing(1)`` guard is COCO's.
    Works on numpy arrays and (via operator overloading) torch tensors.
    """
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    if hasattr(sq_dist, "new_tensor"):  # torch: keep the graph, dtype and device
        variances = sq_dist.new_tensor(variances)
    return sq_dist / variances / (area + np.spacing(1)) / 2


def keypoint_oks(sq_dist, area, sigmas=SIGMAS):
    """Per-keypoint OKS ``exp(-oks_exponent)`` for squared distances ``(..., K)`` (numpy or torch)."""
    e = oks_exponent(sq_dist, area, sigmas)
    return e.neg().exp() if hasattr(e, "new_tensor") else np.exp(-e)




def box_distance_sq(points, window) -> np.ndarray:
    """Squared distance of ``points (..., K, 2)`` to the box ``window (..., 4)`` x0, y0, x1, y1.

    Zero inside; per axis the overshoot beyond either edge (COCO's rule for a GT instance
    with no labelled keypoint, where ``window`` is the bbox doubled about its centre).
    """
    p = np.asarray(points, dtype=np.float64)
    w = np.asarray(window, dtype=np.float64)[..., None, :]
    x, y = p[..., 0], p[..., 1]
    dx = np.maximum(0, w[..., 0] - x) + np.maximum(0, x - w[..., 2])
    dy = np.maximum(0, w[..., 1] - y) + np.maximum(0, y - w[..., 3])
    return dx ** 2 + dy ** 2


def doubled_bbox(bbox) -> np.ndarray:
    """COCO's ignore region of ``bbox (..., 4)`` xywh: the box doubled, as x0, y0, x1, y1."""
    b = np.asarray(bbox, dtype=np.float64)
    x, y, w, h = np.moveaxis(b, -1, 0)
    return np.stack([x - w, y - h, x + w * 2, y + h * 2], axis=-1)


def instance_oks(gt_keypoints, gt_bbox, gt_area, pred_xy, sigmas=SIGMAS) -> np.ndarray:
    """COCO instance OKS (pycocotools' ``computeOks``) of pairs, broadcasting over ``...``.

    gt_keypoints: (..., K, 3) x, y, v; gt_bbox: (..., 4) xywh; gt_area: (...); pred_xy: (..., K, 2).
    Returns (...): the mean keypoint OKS over labelled keypoints (v > 0, so v = 3 counts like
    any labelled point); an instance with none labelled scores the mean over all K keypoints
    of the distance to its doubled bbox.
    """
    g = np.asarray(gt_keypoints, dtype=np.float64)
    p = np.asarray(pred_xy, dtype=np.float64)
    area = np.asarray(gt_area, dtype=np.float64)[..., None]
    labelled = g[..., 2] > 0
    k1 = labelled.sum(axis=-1)
    sq = (p[..., 0] - g[..., 0]) ** 2 + (p[..., 1] - g[..., 1]) ** 2
    near = np.sum(np.where(labelled, keypoint_oks(sq, area, sigmas), 0.0), axis=-1) / np.maximum(k1, 1)
    far = np.mean(keypoint_oks(box_distance_sq(p, doubled_bbox(gt_bbox)), area, sigmas), axis=-1)
    return np.where(k1 > 0, near, far)
