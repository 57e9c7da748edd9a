"""Box conversions, IoU, greedy non-maximum suppression (numpy, class-agnostic) and the final
step every detector shares (clip to the image, NMS, sort, xywh)."""
import cv2
import numpy as np


def cxcywh_to_xyxy(boxes) -> np.ndarray:
    """``boxes (..., 4)`` as centre x, centre y, width, height -> x0, y0, x1, y1."""
    boxes = np.asarray(boxes, dtype=np.float64)
    half = boxes[..., 2:4] / 2
    return np.concatenate([boxes[..., :2] - half, boxes[..., :2] + half], axis=-1)


def box_iou(box, boxes) -> np.ndarray:
    """IoU of one ``box (4,)`` with each of ``boxes (M, 4)``, all x0, y0, x1, y1 -> ``(M,)``.

    Boxes with no area have IoU 0 with everything.
    """
    box = np.asarray(box, dtype=np.float64)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    lo = np.maximum(box[:2], boxes[:, :2])
    hi = np.minimum(box[2:], boxes[:, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=1)
    area = np.prod(np.clip(box[2:] - box[:2], 0.0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None), axis=1)
    union = area + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def pairwise_iou(boxes) -> np.ndarray:
    """IoU ``(M, M)`` between all ``boxes (M, 4)`` x0, y0, x1, y1 (0 where a box has no area)."""
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.float64).reshape(-1, 4).T
    inter_w = np.clip(np.minimum(x1[:, None], x1) - np.maximum(x0[:, None], x0), 0.0, None)
    inter_h = np.clip(np.minimum(y1[:, None], y1) - np.maximum(y0[:, None], y0), 0.0, None)
    inter = inter_w * inter_h
    areas = np.clip(x1 - x0, 0.0, None) * np.clip(y1 - y0, 0.0, None)
    union = areas[:, None] + areas - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def nms(boxes_xyxy, scores, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of the kept boxes, highest score first.

    ``boxes_xyxy (M, 4)``, ``scores (M,)``. Visiting boxes by decreasing score (ties in input
    order), a box is kept unless its IoU with an already kept box is strictly above
    ``iou_threshold``. OpenCV's ``cv2.dnn.NMSBoxes`` does the work (the same boxes as the numpy
    loop it replaced, 4-9x faster: 0.04 vs 0.34 ms for 100 candidates, 30 vs 166 ms for 2000);
    it is given the scores' ranks, so scores <= 0 (which it would drop) and float32 rounding
    (which could tie close scores) change nothing.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64)
    ranks = np.unique(scores, return_inverse=True)[1].reshape(-1) + 1.0  # ties stay ties, all > 0
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    has_area = np.all(xywh[:, 2:] > 0, axis=1)  # boxes without area have IoU 0: always kept (OpenCV
    solid = np.flatnonzero(has_area)  # would let two such boxes at one point suppress each other)
    kept = cv2.dnn.NMSBoxes(xywh[solid].tolist(), ranks[solid].tolist(), 0.0, float(iou_threshold))
    kept = np.concatenate([solid[np.asarray(kept, dtype=np.int64).reshape(-1)], np.flatnonzero(~has_area)])
    return kept[np.lexsort((kept, -ranks[kept]))]


def finish_detections(boxes_xyxy, scores, image_size, iou_threshold: float, max_detections: int | None = None):
    """Candidate boxes in image coordinates -> the detector's answer.

    ``boxes_xyxy (M, 4)`` are clipped to an image of ``image_size`` (W, H); boxes left with no
    area (e.g. ones lying wholly in a letterbox's padding) are dropped; NMS runs on the clipped
    boxes, so no two returned boxes overlap by more than ``iou_threshold``. Returns
    ``boxes (M', 4)`` xywh float64 and ``scores (M',)`` float64, highest score first, at most
    ``max_detections``.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    width, height = image_size
    boxes = np.clip(boxes, 0.0, [width, height, width, height])
    keep = np.all(boxes[:, 2:] > boxes[:, :2], axis=1) & np.isfinite(scores)
    boxes, scores = boxes[keep], scores[keep]
    kept = nms(boxes, scores, iou_threshold)[:max_detections]
    boxes, scores = boxes[kept], scores[kept]
    return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), scores
