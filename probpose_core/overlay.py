"""Annotated images: keypoints coloured by presence, skeleton between present keypoints,
credible-region outlines and boxes. Used by the demo, `probpose predict` and the ROS node
(per frame there: coordinates are rounded once, limbs go to cv2 in one call).
"""
import cv2
import numpy as np

from .keypoints import SKELETON

BOX_RGB = (80, 160, 255)
LIMB_RGB = (0, 200, 255)
_SKELETON = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)


def presence_color(presence: float) -> tuple[int, int, int]:
    """RGB colour from red (absent, 0) through yellow to green (present, 1); NaN counts as 0."""
    return presence_colors(np.array([presence], dtype=np.float64))[0]


def presence_colors(presence) -> list[tuple[int, int, int]]:
    """:func:`presence_color` of every value of ``presence (K,)``."""
    p = np.asarray(presence, dtype=np.float64).reshape(-1)
    p = np.clip(np.where(np.isnan(p), 0.0, p), 0.0, 1.0)
    red = (255 * np.minimum(1.0, 2 * (1 - p))).astype(np.int64)
    green = (255 * np.minimum(1.0, 2 * p)).astype(np.int64)
    return [(r, g, 0) for r, g in zip(red.tolist(), green.tolist())]


def draw_pose(image: np.ndarray, keypoints, presence, threshold: float = 0.5, bbox=None,
              regions=None, label: str | None = None, antialias: bool = True) -> np.ndarray:
    """Draw one person onto ``image (H, W, 3) uint8 RGB`` in place and return it.

    keypoints: (K, 2) image coordinates; presence: (K,); bbox: xywh or None;
    regions: optional list (per keypoint) of lists of (M, 2) polygons in image coordinates.
    Keypoints below ``threshold`` are drawn as small hollow markers and get no skeleton lines.
    antialias: smooth lines, circles and text (cv2.LINE_AA); False draws the same shapes with
    cv2.LINE_8 in about half the time (the ROS node's per-frame choice).
    """
    line = cv2.LINE_AA if antialias else cv2.LINE_8
    kp = np.asarray(keypoints, dtype=np.float64).reshape(-1, 2)
    pres = np.asarray(presence, dtype=np.float64).reshape(-1)
    present = pres >= threshold
    colors = presence_colors(pres)
    thick = max(1, round(max(image.shape[:2]) / 400))
    if bbox is not None:
        x, y, w, h = (float(v) for v in bbox)
        cv2.rectangle(image, (round(x), round(y)), (round(x + w), round(y + h)), BOX_RGB, thick)
        if label:
            cv2.putText(image, label, (round(x), max(12, round(y) - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                        0.4 * thick, BOX_RGB, thick, line)
    if regions is not None:
        for k, polys in enumerate(regions):
            if present[k] and len(polys):
                outlines = [np.rint(np.asarray(poly)).astype(np.int32).reshape(-1, 1, 2) for poly in polys]
                cv2.polylines(image, outlines, True, colors[k], 1, line)
    points = np.rint(kp).astype(np.int32)
    limbs = _SKELETON[(_SKELETON < len(kp)).all(axis=1)]
    limbs = limbs[present[limbs].all(axis=1)]
    if len(limbs):  # one open 2-point polyline per limb: the same pixels as cv2.line each
        cv2.polylines(image, list(points[limbs]), False, LIMB_RGB, thick, line)
    for center, is_present, color in zip(map(tuple, points.tolist()), present.tolist(), colors):
        if is_present:
            cv2.circle(image, center, 2 * thick + 1, color, -1, line)
        else:
            cv2.circle(image, center, thick + 1, color, 1, line)
    return image


def draw_humans(canvas: np.ndarray, humans, threshold: float, antialias: bool = True) -> np.ndarray:
    """Draw every human (keypoints, skeleton, regions, box and label) onto ``canvas (H, W, 3)`` RGB
    in place. The label is the track id (``id 7``, as in HumanArray's ``Human.id``), or ``#i``, the
    index in ``humans``, for a person on no confirmed track."""
    for i, human in enumerate(humans):
        kp = human.keypoint_array()
        regions = [[poly for polys in k.regions.values() for poly in polys] for k in human.keypoints]
        draw_pose(canvas, kp[:, :2], kp[:, 2], threshold, bbox=human.bbox, regions=regions,
                  label=f"id {human.id}" if human.id else f"#{i}", antialias=antialias)
    return canvas
