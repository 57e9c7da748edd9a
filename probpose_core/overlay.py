"""Annotated images: keypoints coloured by presence, skeleton between present keypoints,
credible regions and boxes. Used by the demo and the ROS node's annotated image
(:func:`draw_humans`; per frame there: coordinates are rounded once, limbs go to cv2 in one call).

Credible regions of present keypoints are filled translucently (:data:`REGION_ALPHA`) in the
colour of the keypoint's body side (:data:`SIDE_RGB`: left, right, centre) with a 1-px outline
in the same colour on top, so the area a keypoint may lie in is visible, not only its border.
Which keypoints count as present is the caller's ``threshold``: the model's ModelSpec's
(``Pipeline.presence_threshold``), never a default here.
"""
import cv2
import numpy as np

from .keypoints import NAMES, SKELETON

BOX_RGB = (80, 160, 255)
LIMB_RGB = (0, 200, 255)
#: credible-region colour per body side (RGB): left_* keypoints, right_* ones, the others (nose)
SIDE_RGB = {"left": (70, 110, 255), "right": (255, 80, 170), "centre": (255, 255, 255)}
#: opacity of the region fill (the outline is opaque)
REGION_ALPHA = 0.35
_SKELETON = np.asarray(SKELETON, dtype=np.intp).reshape(-1, 2)
_SIDE_OF = tuple(n.split("_")[0] if n.startswith(("left_", "right_")) else "centre" for n in NAMES)


def body_side(k: int) -> str:
    """``"left"``, ``"right"`` or ``"centre"``: the body side of keypoint ``k`` (COCO order;
    keypoints beyond the table: centre), the key of its region colour in :data:`SIDE_RGB`."""
    return _SIDE_OF[k] if 0 <= k < len(_SIDE_OF) else "centre"


def side_color(k: int) -> tuple[int, int, int]:
    """The region colour of keypoint ``k``: ``SIDE_RGB[body_side(k)]``."""
    return SIDE_RGB[body_side(k)]


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


def draw_pose(image: np.ndarray, keypoints, presence, threshold: float, bbox=None,
              regions=None, label: str | None = None, antialias: bool = True) -> np.ndarray:
    """Draw one person onto ``image (H, W, 3) uint8 RGB`` in place and return it.

    keypoints: (K, 2) image coordinates; presence: (K,); threshold: presence from which a
    keypoint is present (the model's, required); bbox: xywh or None; regions: optional list (per
    keypoint) of lists of (M, 2) polygons in image coordinates, drawn for present keypoints
    (:func:`draw_regions`). Keypoints below ``threshold`` are drawn as small hollow markers and
    get no skeleton lines and no region.
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
        draw_regions(image, [polys if present[k] else [] for k, polys in enumerate(regions)], line, max(1, thick // 2))
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


def draw_regions(image: np.ndarray, regions, line: int = cv2.LINE_AA, thickness: int = 1) -> np.ndarray:
    """Fill the polygons ``regions[k] (list of (M, 2), image px)`` of every keypoint ``k`` onto
    ``image (H, W, 3) uint8 RGB`` in place, translucent (:data:`REGION_ALPHA`) in
    :func:`side_color` ``(k)`` (each polygon on its own: nested levels stay filled), then outline
    them opaquely in the same colour (``thickness`` px, ``line`` type; left, right, then centre
    ones on top). The blend touches only the regions' bounding box (plus the anti-aliased edge)."""
    polys = [(side_color(k), poly) for k, polys in enumerate(regions) for poly in polys if len(poly)]
    if not polys:
        return image
    corners = np.rint(np.concatenate([np.asarray(poly, dtype=np.float64).reshape(-1, 2) for _, poly in polys]))
    corners = corners.astype(np.int32)  # every polygon's vertices, rounded once
    ends = np.cumsum([len(poly) for _, poly in polys]).tolist()
    spans = list(zip([0] + ends[:-1], ends))  # each polygon's rows of corners
    colors = [color for color, _ in polys]
    height, width = image.shape[:2]
    x0, y0 = np.clip(corners.min(axis=0) - 2, 0, (width, height))
    x1, y1 = np.clip(corners.max(axis=0) + 3, 0, (width, height))
    if x0 < x1 and y0 < y1:
        roi = image[y0:y1, x0:x1]
        layer = roi.copy()
        local = corners - np.array([x0, y0], dtype=np.int32)
        for color, (a, b) in zip(colors, spans):
            cv2.fillPoly(layer, [local[a:b]], color, line)
        cv2.addWeighted(layer, REGION_ALPHA, roi, 1.0 - REGION_ALPHA, 0.0, dst=roi)
    shapes = [corners[a:b] for a, b in spans]
    for color in SIDE_RGB.values():  # outlines: one call per colour (opaque, so order within one is moot)
        outlines = [poly for c, poly in zip(colors, shapes) if c == color]
        if outlines:
            cv2.polylines(image, outlines, True, color, thickness, line)
    return image


def draw_humans(canvas: np.ndarray, humans, threshold: float, antialias: bool = True) -> np.ndarray:
    """Draw every human (keypoints, skeleton, the credible regions of its present keypoints at
    every level it carries, box and label) onto ``canvas (H, W, 3)`` RGB in place; ``threshold``:
    the model's presence threshold (``Pipeline.presence_threshold``). The label is the track id (``id 7``, as in HumanArray's ``Human.id``), or ``#i``, the
    index in ``humans``, for a person on no confirmed track."""
    for i, human in enumerate(humans):
        kp = human.keypoint_array()
        regions = [[poly for polys in k.regions.values() for poly in polys] for k in human.keypoints]
        draw_pose(canvas, kp[:, :2], kp[:, 2], threshold, bbox=human.bbox, regions=regions,
                  label=f"id {human.id}" if human.id else f"#{i}", antialias=antialias)
    return canvas
