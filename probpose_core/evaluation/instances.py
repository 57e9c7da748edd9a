"""Ground truth and predictions flattened into arrays, grouped the way the COCO protocol groups them.

A *group* is one (category, image) pair that holds a GT instance or a prediction; groups are
ordered by category, then image id (sorted), as pycocotools walks them. Within a group the GT
instances keep their file order and the predictions are sorted by score (stable, so ties keep
file order) and cut to ``MAX_DETS``. ``pair_dt``/``pair_gt`` list every (prediction, GT) pair of
a group: the similarity is computed on those pairs only.

Two conventions, one per reference (documented in evaluation/__init__.py):

- standard (pycocotools ``COCOeval(iouType='keypoints')``): a GT is ignored when it is a crowd
  or its ``num_keypoints`` field is 0; every prediction takes part.
- extended (exococotools ``extended_oks=True``): a GT is ignored only when none of its
  keypoints is labelled (v > 0), crowds included (they still match many predictions);
  ``pad_to_contain`` (if present) re-labels points beyond the padding as v = 3; predictions
  with no presence > 0 are dropped.
"""
from collections import Counter
from typing import NamedTuple

import numpy as np

from ..errors import InputError
from ..jsonio import require_finite
from ..keypoints import NUM_KEYPOINTS

MAX_DETS = 20


class EvalSet(NamedTuple):
    """Arrays of one evaluation (NG GT instances, ND kept predictions, P pairs, N groups)."""

    extended: bool
    num_categories: int
    group_category: np.ndarray  # (N,) category index of each group
    gt_group: np.ndarray        # (NG,) group index, GTs sorted by group then file order
    gt_pos: np.ndarray          # (NG,) position inside the group
    gt_keypoints: np.ndarray    # (NG, K, 3) x, y, v (v as the convention reads it)
    gt_bbox: np.ndarray         # (NG, 4) xywh
    gt_area: np.ndarray         # (NG,)
    gt_crowd: np.ndarray        # (NG,) bool
    gt_ignore: np.ndarray       # (NG,) bool, before area ranges
    gt_counts: np.ndarray       # (NG,) bool: a match to this GT counts (the references' id quirks)
    dt_group: np.ndarray        # (ND,) group index, predictions sorted by group then rank
    dt_rank: np.ndarray         # (ND,) rank by score inside the group (< MAX_DETS)
    dt_keypoints: np.ndarray    # (ND, K, 3) x, y, presence
    dt_score: np.ndarray        # (ND,)
    dt_area: np.ndarray         # (ND,)
    pair_dt: np.ndarray         # (P,) index into the predictions
    pair_gt: np.ndarray         # (P,) index into the GT instances

    @property
    def num_groups(self) -> int:
        return len(self.group_category)


def _gt_visibility(ann, kpts: np.ndarray, extended: bool, padding: float) -> np.ndarray:
    """The visibilities the convention evaluates (exococotools' ``pad_to_contain`` rule)."""
    v = kpts[:, 2].copy()
    if extended and "pad_to_contain" in ann:
        pad = ann["pad_to_contain"]
        if not isinstance(pad, list) or len(pad) != NUM_KEYPOINTS:
            raise InputError(f"annotation {ann.get('id')}: 'pad_to_contain' must hold {NUM_KEYPOINTS} numbers")
        require_finite(pad, f"annotation {ann.get('id')} 'pad_to_contain'")
        pad = np.asarray(pad, dtype=np.float64)
        out = (pad > padding) & (v > 0)
        v[(v > 2) & ~out] = 1
        v[out] = 3
    return v


def _match_counts(ann_id, extended: bool) -> bool:
    """pycocotools stores matches as GT ids with 0 meaning "none", exococotools with -1."""
    if isinstance(ann_id, bool) or not isinstance(ann_id, (int, float)):
        return True
    return ann_id >= 0 if extended else ann_id != 0


def _prediction_areas(preds: list, keypoints: np.ndarray, from_bbox: bool) -> np.ndarray:
    """pycocotools' ``loadRes``: bbox w*h when the first result has a bbox, else the keypoints' extent.

    keypoints: (ND, K, 3) of ``preds``. Returns (ND,).
    """
    if from_bbox:
        if not all(isinstance(p.get("bbox"), list) and len(p["bbox"]) == 4 for p in preds):
            raise InputError("predictions: the first prediction has a 'bbox', so every one needs "
                             "[x, y, w, h] (its area decides the area ranges, as in pycocotools)")
        return np.array([p["bbox"][2] * p["bbox"][3] for p in preds], dtype=np.float64)
    extent = keypoints[:, :, :2].max(axis=1) - keypoints[:, :, :2].min(axis=1)
    return extent[:, 0] * extent[:, 1]


def _ranks(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For sorted ``keys``: start index of each element's run and the position inside it."""
    if len(keys) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    new_run = np.r_[True, keys[1:] != keys[:-1]]
    starts = np.maximum.accumulate(np.where(new_run, np.arange(len(keys)), 0))
    return starts, np.arange(len(keys)) - starts


def _check_gt(gt: dict) -> None:
    """What the protocol needs of a GT beyond data.coco.validate_coco: category ids, unique annotation ids."""
    if not all(isinstance(c, dict) and "id" in c for c in gt.get("categories", [])):
        raise InputError("ground truth: every entry of 'categories' needs an 'id'")
    seen_ids = Counter(a.get("id") for a in gt["annotations"])
    if len(seen_ids) != len(gt["annotations"]):
        dup = next(i for i, n in seen_ids.items() if n > 1)
        raise InputError(f"ground truth: annotation id {dup!r} is used twice (COCO tools index annotations by id)")


def _gt_keypoints_and_ignore(anns: list, extended: bool, padding: float):
    """``keypoints (NG, K, 3)`` with the convention's visibilities, ``crowd (NG,)`` and ``ignore (NG,)``."""
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    for i, a in enumerate(anns):
        kpts[i, :, 2] = _gt_visibility(a, kpts[i], extended, padding)
    crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], dtype=bool)
    if extended:
        ignore = ~(kpts[:, :, 2] > 0).any(axis=1)
    else:
        ignore = crowd | np.array([a["num_keypoints"] == 0 for a in anns], dtype=bool)
    return kpts, crowd, ignore


def _ranked_predictions(preds: list, group_key, img_index: dict, cat_index: dict, extended: bool):
    """The predictions the protocol keeps, sorted by group then score (stable) and cut to
    ``MAX_DETS`` per group: ``(kept, keys (ND,), ranks (ND,), scores (ND,))``."""
    kept = []
    for p in preds:
        if p.get("category_id", 1) not in cat_index:
            continue
        if p["image_id"] not in img_index:
            raise InputError(f"predictions: image_id {p['image_id']!r} is not in the ground truth")
        if extended and not any(c > 0 for c in p["keypoints"][2::3]):
            continue
        kept.append(p)
    key = np.array([group_key(p) for p in kept], dtype=np.int64)
    score = np.array([p["score"] for p in kept], dtype=np.float64)
    order = np.lexsort((np.arange(len(kept)), -score, key))
    _, rank = _ranks(key[order])
    order, rank = order[rank < MAX_DETS], rank[rank < MAX_DETS]
    return [kept[i] for i in order], key[order], rank, score[order]


def _pairs(gt_key_sorted: np.ndarray, dt_key: np.ndarray):
    """Groups and every (prediction, GT) pair inside a group, from the sorted group keys of the
    GTs and of the (sorted) predictions: ``group_keys, gt_group, gt_pos, dt_group, pair_dt, pair_gt``."""
    group_keys = np.unique(np.concatenate([gt_key_sorted, dt_key]))
    gt_group = np.searchsorted(group_keys, gt_key_sorted)
    dt_group = np.searchsorted(group_keys, dt_key)
    gt_start, gt_pos = _ranks(gt_group)
    gt_count = np.bincount(gt_group, minlength=len(group_keys))
    first_gt = np.zeros(len(group_keys), dtype=np.int64)
    first_gt[gt_group] = gt_start
    per_dt = gt_count[dt_group]
    pair_dt = np.repeat(np.arange(len(dt_key)), per_dt)
    offsets = np.arange(per_dt.sum()) - np.repeat(np.cumsum(per_dt) - per_dt, per_dt)
    return group_keys, gt_group, gt_pos, dt_group, pair_dt, first_gt[dt_group][pair_dt] + offsets


def prepare(gt: dict, preds: list, extended: bool = False, padding: float = 1.25) -> EvalSet:
    """Flatten a validated GT dict (see data.coco.validate_coco) and predictions into an EvalSet."""
    _check_gt(gt)
    cat_ids = sorted({c["id"] for c in gt.get("categories", [])})
    cat_index = {c: i for i, c in enumerate(cat_ids)}
    img_ids = sorted({img["id"] for img in gt["images"]})
    img_index = {i: n for n, i in enumerate(img_ids)}
    n_img = max(len(img_ids), 1)

    def group_key(entry) -> int:  # category-major, then image: the order pycocotools walks
        return cat_index[entry.get("category_id", 1)] * n_img + img_index[entry["image_id"]]

    anns = [a for a in gt["annotations"] if a.get("category_id", 1) in cat_index and a["image_id"] in img_index]
    gt_key = np.array([group_key(a) for a in anns], dtype=np.int64)
    gt_kpts, crowd, ignore = _gt_keypoints_and_ignore(anns, extended, padding)
    gt_order = np.argsort(gt_key, kind="stable")
    kept, dt_key, dt_rank, dt_score = _ranked_predictions(preds, group_key, img_index, cat_index, extended)
    group_keys, gt_group, gt_pos, dt_group, pair_dt, pair_gt = _pairs(gt_key[gt_order], dt_key)
    dt_kpts = np.array([p["keypoints"] for p in kept], dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    return EvalSet(
        extended=extended,
        num_categories=len(cat_ids),
        group_category=group_keys // n_img,
        gt_group=gt_group,
        gt_pos=gt_pos,
        gt_keypoints=gt_kpts[gt_order],
        gt_bbox=np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)[gt_order],
        gt_area=np.array([a["area"] for a in anns], dtype=np.float64)[gt_order],
        gt_crowd=crowd[gt_order],
        gt_ignore=ignore[gt_order],
        gt_counts=np.array([_match_counts(a.get("id"), extended) for a in anns], dtype=bool)[gt_order],
        dt_group=dt_group,
        dt_rank=dt_rank,
        dt_keypoints=dt_kpts,
        dt_score=dt_score,
        dt_area=_prediction_areas(kept, dt_kpts, from_bbox=bool(preds) and bool(preds[0].get("bbox"))),
        pair_dt=pair_dt,
        pair_gt=pair_gt,
    )
