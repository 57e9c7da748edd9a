"""COCO keypoints files: loading with validation.

A keypoints annotation file is the COCO format with one extension: ``v == 3`` marks a
keypoint annotated outside the image (CropCOCO). Validation errors are InputError with the
offending annotation named, so the CLI can print one line.
"""
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..geometry import padding_to_contain
from ..jsonio import load_json, require_finite
from ..keypoints import NUM_KEYPOINTS


def _check_annotation(ann, i: int, image_ids: set, where: str) -> None:
    if not isinstance(ann, dict):
        raise InputError(f"{where}: annotations[{i}] is not an object")
    name = f"{where}: annotation {ann.get('id', f'#{i}')}"
    for key in ("image_id", "keypoints", "bbox"):
        if key not in ann:
            raise InputError(f"{name} has no '{key}'")
    if ann["image_id"] not in image_ids:
        raise InputError(f"{name} refers to unknown image id {ann['image_id']!r}")
    kpts = ann["keypoints"]
    if not isinstance(kpts, list) or len(kpts) != 3 * NUM_KEYPOINTS:
        n = len(kpts) if isinstance(kpts, list) else type(kpts).__name__
        raise InputError(f"{name}: 'keypoints' must hold {3 * NUM_KEYPOINTS} numbers (17 x, y, v), got {n}")
    require_finite(kpts, f"{name} 'keypoints'")
    vis = kpts[2::3]
    if any(v not in (0, 1, 2, 3) for v in vis):
        raise InputError(f"{name}: keypoint visibility must be 0, 1, 2 or 3, got {sorted(set(vis))}")
    bbox = ann["bbox"]
    if not isinstance(bbox, list) or len(bbox) != 4:
        raise InputError(f"{name}: 'bbox' must be [x, y, w, h]")
    require_finite(bbox, f"{name} 'bbox'")
    if bbox[2] < 0 or bbox[3] < 0:
        raise InputError(f"{name}: 'bbox' has a negative width or height: {bbox}")
    if "area" in ann:
        require_finite([ann["area"]], f"{name} 'area'")


def validate_coco(data, where: str = "annotations") -> dict:
    """Check a COCO keypoints dict in place and return it (InputError on the first problem).

    Missing ``area`` is filled as bbox w*h, missing ``iscrowd`` as 0, missing ``category_id``
    as 1, missing ``id`` with a running number, missing ``num_keypoints`` from v > 0.
    """
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a JSON object with 'images' and 'annotations'")
    for key in ("images", "annotations"):
        if not isinstance(data.get(key), list):
            raise InputError(f"{where}: missing '{key}' list")
    image_ids = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise InputError(f"{where}: images[{i}] has no 'id'")
        image_ids.add(img["id"])
    used_ids = {a.get("id") for a in data["annotations"] if isinstance(a, dict)}
    next_id = 1 + max((x for x in used_ids if isinstance(x, int)), default=0)
    for i, ann in enumerate(data["annotations"]):
        _check_annotation(ann, i, image_ids, where)
        if "id" not in ann:
            ann["id"], next_id = next_id, next_id + 1
        ann.setdefault("area", float(ann["bbox"][2] * ann["bbox"][3]))
        ann.setdefault("iscrowd", 0)
        ann.setdefault("category_id", 1)
        ann.setdefault("num_keypoints", int(sum(v > 0 for v in ann["keypoints"][2::3])))
    data.setdefault("categories", [{"id": 1, "name": "person"}])
    return data


def load_coco(path) -> dict:
    """Load and validate a COCO keypoints file (see ``validate_coco``)."""
    return validate_coco(load_json(path, "annotation file"), where=str(Path(path)))


def pad_to_contain(ann: dict) -> list[float]:
    """CropCOCO's per-keypoint ``pad_to_contain``: the padding its activation window needs.

    exococotools reads it to decide presence: a keypoint whose value exceeds the evaluation
    padding is outside the window (v = 3), an out-of-image keypoint (v = 3) within it counts
    as present (v = 1) — the same rule as the codec's presence target. Unannotated: -1.
    """
    kpts = keypoints_array(ann)
    pad = padding_to_contain(kpts[:, :2], ann["bbox"])
    return [float(p) if v > 0 else -1.0 for p, v in zip(pad, kpts[:, 2])]


def keypoints_array(ann: dict) -> np.ndarray:
    """An annotation's keypoints as (K, 3) float64: x, y, v."""
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
