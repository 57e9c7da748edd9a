"""Our mAP / Ex-mAP against the references on generated GT / prediction sets, to 1e-9.

mAP is compared with pycocotools COCOeval('keypoints') (all 10 stats), Ex-mAP with
exococotools COCOeval(extended_oks=True, confidence_thr=T, padding=P) overall stats. The
references are test dependencies only (coco_reference.py). Run this file as a script to print
the case count, the largest difference and the runtime.
"""
import copy
import time

import numpy as np
import pytest

from coco_reference import METRICS, exococotools_stats, pycocotools_stats
from gen_cases import generate_case
from probpose_core.data.coco import validate_coco
from probpose_core.evaluation import evaluate, validate_predictions

NUM_CASES = 240
TOL = 1e-9


def _case(seed: int):
    raw, preds, threshold, padding = generate_case(seed)
    gt = validate_coco(copy.deepcopy(raw))
    return gt, validate_predictions(preds, gt), threshold, padding


def _differences(gt, preds, threshold, padding, ours=None):
    ours = ours or evaluate(gt, preds, extended=True, presence_threshold=threshold, padding=padding)
    standard = pycocotools_stats(gt, preds)
    extended = exococotools_stats(gt, preds, threshold, padding)
    return ({m: abs(ours[m] - standard[m]) for m in METRICS},
            {m: abs(ours["Ex-" + m] - extended[m]) for m in METRICS}, ours, standard, extended)


@pytest.mark.parametrize("seed", range(NUM_CASES))
def test_equal_to_references(seed):
    d_std, d_ex, ours, standard, extended = _differences(*_case(seed))
    assert max(d_std.values()) <= TOL, (seed, ours, standard)
    assert max(d_ex.values()) <= TOL, (seed, ours, extended)


@pytest.mark.parametrize("seed", [3, 17, 40, 77])
def test_empty_predictions_equal_references(seed):
    gt, _, threshold, padding = _case(seed)
    d_std, d_ex, ours, _, _ = _differences(gt, [], threshold, padding)
    assert max(d_std.values()) <= TOL and max(d_ex.values()) <= TOL
    assert ours["AP"] in (0.0, -1.0)


@pytest.mark.parametrize("seed", [1, 5, 8, 13, 21])
def test_best_threshold_equals_reference_at_that_threshold(seed):
    gt, preds, _, padding = _case(seed)
    ours = evaluate(gt, preds, extended=True, presence_threshold="best", padding=padding)
    extended = exococotools_stats(gt, preds, ours["presence_threshold"], padding)
    assert max(abs(ours["Ex-" + m] - extended[m]) for m in METRICS) <= TOL


def test_generator_covers_the_special_cases():
    seen = dict.fromkeys(["crowd", "v0", "v1", "v2", "v3", "outside_window", "image_without_gt",
                          "image_without_pred", "more_preds_than_gts", "over_20_preds", "tied_scores",
                          "zero_width_box", "num_keypoints_0", "no_labelled_kpt", "gt_id_0", "pad_to_contain",
                          "pred_all_absent", "presence_out_of_range", "pred_bbox", "two_categories",
                          "padding_not_1.25", "integer_coordinates"], 0)
    for seed in range(NUM_CASES):
        gt, preds, _, padding = _case(seed)
        anns = gt["annotations"]
        kp = np.array([a["keypoints"] for a in anns], dtype=float).reshape(-1, 17, 3)
        window_out = False
        for a, k in zip(anns, kp):
            x, y, w, h = a["bbox"]
            window_out |= bool(np.any((k[:, 2] > 0) & ((k[:, 0] < x - w) | (k[:, 0] > x + 2 * w))))
        per_image_gt = {img["id"]: 0 for img in gt["images"]}
        per_image_pred = dict(per_image_gt)
        for a in anns:
            per_image_gt[a["image_id"]] += 1
        for p in preds:
            per_image_pred[p["image_id"]] += 1
        presence = np.array([p["keypoints"][2::3] for p in preds]).reshape(-1, 17)
        scores = [p["score"] for p in preds]
        flags = {
            "crowd": any(a["iscrowd"] for a in anns),
            "v0": (kp[..., 2] == 0).any(), "v1": (kp[..., 2] == 1).any(),
            "v2": (kp[..., 2] == 2).any(), "v3": (kp[..., 2] == 3).any(),
            "outside_window": window_out,
            "image_without_gt": 0 in per_image_gt.values(),
            "image_without_pred": 0 in per_image_pred.values(),
            "more_preds_than_gts": any(per_image_pred[i] > per_image_gt[i] for i in per_image_gt),
            "over_20_preds": any(n > 20 for n in per_image_pred.values()),
            "tied_scores": len(set(scores)) < len(scores),
            "zero_width_box": any(min(a["bbox"][2:]) == 0 for a in anns),
            "num_keypoints_0": any(a["num_keypoints"] == 0 and (k[:, 2] > 0).any() for a, k in zip(anns, kp)),
            "no_labelled_kpt": bool((kp[..., 2] == 0).all(axis=1).any()),
            "gt_id_0": any(a["id"] == 0 for a in anns),
            "pad_to_contain": any("pad_to_contain" in a for a in anns),
            "pred_all_absent": bool((presence <= 0).all(axis=1).any()),
            "presence_out_of_range": bool(((presence < 0) | (presence > 1)).any()),
            "pred_bbox": bool(preds) and "bbox" in preds[0],
            "two_categories": len(gt["categories"]) > 1,
            "padding_not_1.25": padding != 1.25,
            "integer_coordinates": isinstance(anns[0]["bbox"][0], int),
        }
        for name, flag in flags.items():
            seen[name] += bool(flag)
    assert all(n >= 3 for n in seen.values()), seen


if __name__ == "__main__":
    start = time.perf_counter()
    worst = 0.0
    for s in range(NUM_CASES):
        d_std, d_ex, *_ = _differences(*_case(s))
        worst = max(worst, *d_std.values(), *d_ex.values())
    print(f"{NUM_CASES} cases, max |ours - reference| = {worst:.3g}, {time.perf_counter() - start:.1f} s")
