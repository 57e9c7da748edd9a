"""Keypoint predictions in the exococotools results format: loading with validation.

A predictions file is a JSON list with one object per detected person::

    {"image_id": 1, "category_id": 1, "score": 0.93,
     "keypoints": [x, y, presence, ...],      # 17 triplets, presence in [0, 1]
     "visibilities": [v, ...],               # 17 numbers, optional
     "bbox": [x, y, w, h]}                   # optional

``category_id`` defaults to 1. ``visibilities`` is optional in both modes: neither reference
scores it (exococotools copies the presence there when it is missing), so it is only checked
when given. ``bbox`` is optional, but as in pycocotools' ``loadRes``, when the FIRST prediction
has one, every prediction's area (which decides the area ranges) is its bbox ``w * h``, so then
all of them need one; otherwise the area is the extent of the 17 keypoints.
"""
from pathlib import Path

from ..errors import InputError
from ..jsonio import load_json, require_finite
from ..keypoints import NUM_KEYPOINTS


def _check_list(pred: dict, key: str, length: int, name: str, what: str) -> None:
    values = pred[key]
    if not isinstance(values, list) or len(values) != length:
        n = len(values) if isinstance(values, list) else type(values).__name__
        raise InputError(f"{name}: '{key}' must hold {length} numbers ({what}), got {n}")
    require_finite(values, f"{name} '{key}'")


def validate_predictions(data, gt: dict, where: str = "predictions") -> list:
    """Check predictions against the image ids of ``gt``; returns copies with ``category_id`` filled."""
    if not isinstance(data, list):
        raise InputError(f"{where}: expected a JSON list of predictions, got {type(data).__name__}")
    image_ids = {img["id"] for img in gt["images"]}
    need_bbox = bool(data) and isinstance(data[0], dict) and bool(data[0].get("bbox"))
    out = []
    for i, pred in enumerate(data):
        name = f"{where}: prediction #{i}"
        if not isinstance(pred, dict):
            raise InputError(f"{name} is not an object")
        for key in ("image_id", "keypoints", "score"):
            if key not in pred:
                raise InputError(f"{name} has no '{key}'")
        if pred["image_id"] not in image_ids:
            raise InputError(f"{name} refers to unknown image id {pred['image_id']!r}")
        _check_list(pred, "keypoints", 3 * NUM_KEYPOINTS, name, f"{NUM_KEYPOINTS} x, y, presence")
        require_finite([pred["score"]], f"{name} 'score'")
        if "visibilities" in pred:
            _check_list(pred, "visibilities", NUM_KEYPOINTS, name, "one per keypoint")
        if need_bbox or pred.get("bbox"):
            if "bbox" not in pred:
                raise InputError(f"{name} has no 'bbox' (the first prediction has one, so all need one)")
            _check_list(pred, "bbox", 4, name, "x, y, w, h")
        out.append({**pred, "category_id": pred.get("category_id", 1)})
    return out


def load_predictions(path, gt: dict) -> list:
    """Load and validate a predictions file (see ``validate_predictions``)."""
    return validate_predictions(load_json(path, "predictions file"), gt, where=str(Path(path)))
