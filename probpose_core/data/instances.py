"""Top-down instances: one person box (and its keypoints) per item, from COCO files.

Two sources, same :class:`Instance`:

- ground truth (training, validation with GT boxes): the non-crowd annotations of a COCO
  keypoints file, ``keypoints (K, 3)`` x, y, v as annotated (v = 3: outside the image);
- person detections (evaluation): a COCO results-format bbox file
  ``[{"image_id", "bbox": [x, y, w, h], "score", "category_id"}]``; keypoints are zeros
  (v = 0) and ``area`` is exococotools' ``0.53 * w * h``.

Single bad items are skipped and counted by reason (the returned Counter), never raised:
crowd annotations, too few annotated keypoints (GT only, ``min_keypoints``), boxes that are
degenerate (a side < 1 px) or not finite, image ids absent from the annotation file, image
files missing under ``images_dir`` (when given), detections below ``score_threshold`` or of
another category. A file that is not JSON or not the expected structure raises InputError
(the GT file goes through :func:`coco.validate_coco`).
"""
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..codec import AREA_FACTOR
from ..errors import InputError
from ..jsonio import load_json
from ..keypoints import NUM_KEYPOINTS
from .coco import keypoints_array, validate_coco

#: Reasons counted in the skip Counter (other code may test for them by name).
SKIP_CROWD = "crowd"
SKIP_FEW_KEYPOINTS = "too few keypoints"
SKIP_DEGENERATE = "degenerate box"
SKIP_NON_FINITE = "non-finite box"
SKIP_UNKNOWN_IMAGE = "unknown image id"
SKIP_MISSING_FILE = "missing image file"
SKIP_LOW_SCORE = "low score"
SKIP_NOT_PERSON = "not a person"
MIN_BOX_SIDE = 1.0  # px; a box with a shorter side is degenerate


@dataclass(frozen=True, eq=False)
class Instance:
    """One person to crop: a box in one image, with its keypoints when known.

    bbox: (4,) COCO xywh float64; keypoints: (K, 3) float64 x, y, v (zeros for detections);
    area: segmentation area in image px^2, or ``0.53 * w * h`` without one; score: 1.0 for
    ground truth, the detector's score for detections; ann_id: None for detections.
    The arrays are read-only.
    """

    image_id: int
    ann_id: int | None
    file_name: str
    width: int
    height: int
    bbox: np.ndarray
    keypoints: np.ndarray
    area: float
    score: float = 1.0

    def __post_init__(self):
        for name in ("bbox", "keypoints"):
            arr = np.array(getattr(self, name), dtype=np.float64)
            arr.flags.writeable = False
            object.__setattr__(self, name, arr)


def _finite_box(bbox) -> bool:
    return (isinstance(bbox, list) and len(bbox) == 4
            and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox))


def _box_problem(bbox) -> str | None:
    """Skip reason of a bbox, or None when it is usable."""
    if not _finite_box(bbox):
        return SKIP_NON_FINITE
    if bbox[2] < MIN_BOX_SIDE or bbox[3] < MIN_BOX_SIDE:
        return SKIP_DEGENERATE
    return None


def _prefilter(data, skipped: Counter) -> dict:
    """A copy of the GT dict without the annotations that would fail validation one by one
    (unknown image id, non-finite or negative box); those are counted in ``skipped``."""
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        return data  # validate_coco names the structural problem
    ids = {img.get("id") for img in data["images"] if isinstance(img, dict)}
    kept = []
    for ann in data["annotations"]:
        if isinstance(ann, dict) and "image_id" in ann and ann["image_id"] not in ids:
            skipped[SKIP_UNKNOWN_IMAGE] += 1
        elif isinstance(ann, dict) and "bbox" in ann and isinstance(ann["bbox"], list) \
                and len(ann["bbox"]) == 4 and _box_problem(ann["bbox"]) == SKIP_NON_FINITE:
            skipped[SKIP_NON_FINITE] += 1
        elif isinstance(ann, dict) and _finite_box(ann.get("bbox")) and min(ann["bbox"][2:]) < 0:
            skipped[SKIP_DEGENERATE] += 1
        else:
            # validate_coco fills defaults in place: keep the caller's dicts untouched, and
            # remember whether a real (segmentation) area was given
            kept.append(dict(ann, _has_area=isinstance(ann, dict) and "area" in ann) if isinstance(ann, dict) else ann)
    return dict(data, annotations=kept)


class _ImageIndex:
    """Image entries by id, with a cached "is the file there" check under ``images_dir``."""

    def __init__(self, images: list, images_dir):
        self.entries = {img["id"]: img for img in images}
        self.images_dir = None if images_dir is None else Path(images_dir)
        self._exists: dict = {}

    def file_problem(self, image_id) -> str | None:
        """SKIP_MISSING_FILE when ``images_dir`` is set and lacks the image's file, else None."""
        if self.images_dir is None:
            return None
        if image_id not in self._exists:
            name = self.entries[image_id].get("file_name", "")
            self._exists[image_id] = bool(name) and (self.images_dir / name).is_file()
        return None if self._exists[image_id] else SKIP_MISSING_FILE

    def fields(self, image_id) -> dict:
        img = self.entries[image_id]
        return {"image_id": image_id, "file_name": str(img.get("file_name", "")),
                "width": int(img.get("width", 0) or 0), "height": int(img.get("height", 0) or 0)}


def _gt_instances(data: dict, index: _ImageIndex, min_keypoints: int, skipped: Counter) -> list[Instance]:
    out = []
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            skipped[SKIP_CROWD] += 1
            continue
        kpts = keypoints_array(ann)
        if int(np.sum(kpts[:, 2] > 0)) < min_keypoints:
            skipped[SKIP_FEW_KEYPOINTS] += 1
            continue
        problem = _box_problem(ann["bbox"]) or index.file_problem(ann["image_id"])
        if problem:
            skipped[problem] += 1
            continue
        x, y, w, h = (float(v) for v in ann["bbox"])
        area = float(ann["area"]) if ann.get("_has_area") and ann["area"] > 0 else AREA_FACTOR * w * h
        out.append(Instance(ann_id=ann["id"], bbox=np.array([x, y, w, h]), keypoints=kpts, area=area,
                            score=1.0, **index.fields(ann["image_id"])))
    return out


def _detection_instances(dets, index: _ImageIndex, score_threshold: float, skipped: Counter,
                         where: str) -> list[Instance]:
    if not isinstance(dets, list):
        raise InputError(f"{where}: expected a JSON list of detections [{{image_id, bbox, score, category_id}}]")
    out = []
    for i, det in enumerate(dets):
        if not isinstance(det, dict) or "image_id" not in det or "bbox" not in det:
            raise InputError(f"{where}: detection #{i} is not an object with 'image_id' and 'bbox'")
        if det.get("category_id", 1) != 1:
            skipped[SKIP_NOT_PERSON] += 1
            continue
        score = det.get("score", 1.0)
        if not isinstance(score, (int, float)) or isinstance(score, bool):
            raise InputError(f"{where}: detection #{i} has a non-numeric score {score!r}")
        if not math.isfinite(score) or score < score_threshold:
            skipped[SKIP_LOW_SCORE] += 1
            continue
        problem = (SKIP_UNKNOWN_IMAGE if det["image_id"] not in index.entries
                   else _box_problem(det["bbox"]) or index.file_problem(det["image_id"]))
        if problem:
            skipped[problem] += 1
            continue
        x, y, w, h = (float(v) for v in det["bbox"])
        out.append(Instance(ann_id=None, bbox=np.array([x, y, w, h]), keypoints=np.zeros((NUM_KEYPOINTS, 3)),
                            area=AREA_FACTOR * w * h, score=float(score), **index.fields(det["image_id"])))
    return out


def load_instances(ann_path, detections_path=None, min_keypoints: int = 1, images_dir=None,
                   score_threshold: float = 0.0) -> tuple[list[Instance], Counter]:
    """Instances of a COCO keypoints file, or of a detections file over its images.

    ann_path: COCO keypoints file (images, and GT annotations when ``detections_path`` is
    None). detections_path: COCO results-format person boxes; detections scoring below
    ``score_threshold`` are skipped. min_keypoints: GT instances need this many annotated
    keypoints (v > 0). images_dir: when given, items whose image file is missing are skipped.
    Returns ``(instances, skipped)`` with ``skipped`` counting the skipped items by reason.
    """
    skipped: Counter = Counter()
    where = str(Path(ann_path))
    # with detections the GT annotations are not used: their skips are not counted
    gt_skipped = skipped if detections_path is None else Counter()
    data = validate_coco(_prefilter(load_json(ann_path, "annotation file"), gt_skipped), where=where)
    index = _ImageIndex(data["images"], images_dir)
    if detections_path is None:
        instances = _gt_instances(data, index, int(min_keypoints), skipped)
    else:
        instances = _detection_instances(load_json(detections_path, "detections file"), index,
                                         float(score_threshold), skipped, str(Path(detections_path)))
    return instances, skipped
