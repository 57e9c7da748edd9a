"""The A-E area table: where the annotated keypoints of a COCO set lie.

Each annotated keypoint (v in {1, 2, 3}) of a non-crowd instance falls into exactly one of
five areas, decided by three regions of its instance: the GT bbox, the bbox's activation
window (geometry.activation_window: widened to 3:4 and padded, as exococotools does) and
the image ``[0, width] x [0, height]`` (edges inclusive, taken from the ``images`` entries):

    A  in the image, inside the bbox
    B  in the image, outside the bbox, inside the activation window
    C  in the image, outside the activation window
    D  outside the image, inside the activation window
    E  outside the image and outside the activation window

A-C are the keypoints a plain COCO model is evaluated on; D and E exist only where
out-of-image keypoints are annotated (v = 3, CropCOCO). D is what ProbPose can localise
(inside its activation window), E is what it should report as absent. The area is decided
by the coordinates; a flag that disagrees with them (v = 3 inside the image, v in {1, 2}
outside it) is counted in ``inconsistent`` but does not change the area.
"""
import numpy as np

from ..errors import InputError
from ..geometry import activation_window, in_window
from ..keypoints import NUM_KEYPOINTS

AREAS = ("A", "B", "C", "D", "E")
AREA_DESCRIPTIONS = {
    "A": "in image, inside the bbox",
    "B": "in image, outside bbox, inside activation window",
    "C": "in image, outside activation window",
    "D": "outside image, inside activation window",
    "E": "outside image and activation window",
}
VISIBILITIES = (1, 2, 3)


def in_image(points, width: float, height: float) -> np.ndarray:
    """True where ``points (..., 2)`` lie in the image ``[0, width] x [0, height]`` (edges inclusive)."""
    return in_window(points, (0.0, 0.0, float(width), float(height)))


def keypoint_areas(points, bbox, width: float, height: float, padding: float = 1.25) -> np.ndarray:
    """Area index (0..4 for A..E) of each keypoint of one instance.

    points: (K, 2) image coordinates; bbox: COCO xywh (4,). Returns (K,) int.
    """
    points = np.asarray(points, dtype=np.float64)
    x, y, w, h = np.asarray(bbox, dtype=np.float64)
    inside_image = in_image(points, width, height)
    inside_bbox = in_window(points, (x, y, x + w, y + h))
    inside_window = in_window(points, activation_window(bbox, padding=padding))
    return np.where(inside_image,
                    np.where(inside_bbox, 0, np.where(inside_window, 1, 2)),
                    np.where(inside_window, 3, 4)).astype(np.int64)


def _coco_dict(gt) -> dict:
    """The COCO dict of ``gt``: a dict, or an object holding one in ``.dataset`` (pycocotools COCO)."""
    data = getattr(gt, "dataset", gt)
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise InputError("area table: expected a COCO keypoints dict with 'images' and 'annotations'")
    return data


def _image_sizes(data: dict) -> dict:
    sizes = {}
    for img in data["images"]:
        w, h = img.get("width"), img.get("height")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in (w, h)):
            raise InputError(f"image {img.get('id')!r} has no positive 'width'/'height' "
                             "(needed to tell in-image from out-of-image keypoints)")
        sizes[img["id"]] = (float(w), float(h))
    return sizes


def area_table(gt, padding: float = 1.25) -> dict:
    """Count the annotated keypoints of ``gt`` (COCO keypoints dict) per area A-E.

    Crowd instances and unannotated keypoints (v = 0) are left out. Returns a JSON-ready
    dict: ``areas[X] = {description, count, percent, by_visibility: {"1", "2", "3"}}`` and
    totals (``keypoints``, ``instances``, ``images``, ``in_image``, ``out_of_image``,
    ``instances_out_of_image`` = instances with at least one keypoint outside the image,
    ``inconsistent`` = flags that disagree with the coordinates).
    """
    if not padding > 0:
        raise InputError(f"activation-window padding must be positive, got {padding}")
    data = _coco_dict(gt)
    sizes = _image_sizes(data)
    counts = np.zeros((len(AREAS), len(VISIBILITIES)), dtype=np.int64)  # (area, v - 1)
    instances = instances_out = inconsistent = 0
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        vis = kpts[:, 2].astype(np.int64)
        annotated = vis > 0
        if not annotated.any():
            continue
        if ann["image_id"] not in sizes:
            raise InputError(f"annotation {ann.get('id')!r} refers to unknown image id {ann['image_id']!r}")
        width, height = sizes[ann["image_id"]]
        area = keypoint_areas(kpts[:, :2], ann["bbox"], width, height, padding)[annotated]
        v = vis[annotated]
        np.add.at(counts, (area, v - 1), 1)
        instances += 1
        outside = area >= 3
        instances_out += bool(outside.any())
        inconsistent += int(np.sum(outside != (v == 3)))
    total = int(counts.sum())
    per_area = counts.sum(axis=1)
    return {
        "padding": float(padding),
        "images": len(data["images"]),
        "instances": instances,
        "keypoints": total,
        "areas": {
            name: {
                "description": AREA_DESCRIPTIONS[name],
                "count": int(per_area[i]),
                "percent": 100.0 * float(per_area[i]) / total if total else 0.0,
                "by_visibility": {str(v): int(counts[i, v - 1]) for v in VISIBILITIES},
            }
            for i, name in enumerate(AREAS)
        },
        "in_image": int(per_area[:3].sum()),
        "out_of_image": int(per_area[3:].sum()),
        "instances_out_of_image": instances_out,
        "inconsistent": inconsistent,
    }


def format_area_table(table: dict) -> str:
    """Plain-text rendering of an ``area_table`` result."""
    lines = [
        f"A-E areas of {table['keypoints']} annotated keypoints "
        f"({table['instances']} instances, {table['images']} images, "
        f"activation-window padding {table['padding']:g})",
        f"{'area':<5} {'where':<48} {'count':>7} {'%':>6} {'v=1':>6} {'v=2':>6} {'v=3':>6}",
    ]
    for name in AREAS:
        row = table["areas"][name]
        vis = row["by_visibility"]
        lines.append(f"{name:<5} {row['description']:<48} {row['count']:>7} {row['percent']:>6.1f} "
                     f"{vis['1']:>6} {vis['2']:>6} {vis['3']:>6}")
    total = table["keypoints"]
    out_pct = 100.0 * table["out_of_image"] / total if total else 0.0
    lines.append(f"{'all':<5} {'':<48} {total:>7} {100.0 if total else 0.0:>6.1f}")
    lines.append(f"out of image: {table['out_of_image']} keypoints ({out_pct:.1f} %), "
                 f"in {table['instances_out_of_image']} of {table['instances']} instances")
    if table["inconsistent"]:
        lines.append(f"note: {table['inconsistent']} keypoints have a flag that disagrees with their "
                     "position (v=3 inside the image or v=1/2 outside it); counted by position")
    return "\n".join(lines)
