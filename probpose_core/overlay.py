"""Annotated images: keypoints coloured by presence, skeleton between present keypoints,
credible-region outlines and boxes. Used by the demo, `probpose predict` and the ROS node.
"""
import cv2
import numpy as np

from .keypoints import SKELETON


def presence_color(presence: float) -> tuple[int, int, int]:
    """RGB colour from red (absent, 0) through yellow to green (present, 1)."""
    p = float(np.clip(presence, 0.0, 1.0))
    return (int(255 * min(1.0, 2 * (1 - p))), int(255 * min(1.0, 2 * p)), 0)


def draw_pose(image: np.ndarray, keypoints, presence, threshold: float = 0.5, bbox=None,
              regions=None, label: str | None = None) -> np.ndarray:
    """Draw one person onto ``image (H, W, 3) uint8 RGB`` in place and return it.

    keypoints: (K, 2) image coordinates; presence: (K,); bbox: xywh or None;
    regions: optional list (per keypoint) of lists of (M, 2) polygons in image coordinates.
    Keypoints below ``threshold`` are drawn as small hollow markers and get no skeleton lines.
    """
    kp = np.asarray(keypoints, dtype=np.float64)
    pres = np.asarray(presence, dtype=np.float64)
    present = pres >= threshold
    thick = max(1, round(max(image.shape[:2]) / 400))
    if bbox is not None:
        x, y, w, h = (float(v) for v in bbox)
        cv2.rectangle(image, (round(x), round(y)), (round(x + w), round(y + h)), (80, 160, 255), thick)
        if label:
            cv2.putText(image, label, (round(x), max(12, round(y) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, (80, 160, 255), thick, cv2.LINE_AA)
    if regions is not None:
        for k, polys in enumerate(regions):
            if present[k]:
                for poly in polys:
                    pts = np.round(np.asarray(poly)).astype(np.int32).reshape(-1, 1, 2)
                    cv2.polylines(image, [pts], True, presence_color(pres[k]), 1, cv2.LINE_AA)
    for a, b in SKELETON:
        if present[a] and present[b]:
            cv2.line(image, tuple(np.round(kp[a]).astype(int)), tuple(np.round(kp[b]).astype(int)),
                     (0, 200, 255), thick, cv2.LINE_AA)
    for k in range(len(kp)):
        center = tuple(np.round(kp[k]).astype(int))
        if present[k]:
            cv2.circle(image, center, 2 * thick + 1, presence_color(pres[k]), -1, cv2.LINE_AA)
        else:
            cv2.circle(image, center, thick + 1, presence_color(pres[k]), 1, cv2.LINE_AA)
    return image
