"""Unit tests of evaluation/: OKS and Ex-OKS by hand, the protocol on tiny sets, threshold search."""
import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.data.coco import validate_coco
from probpose_core.errors import InputError
from probpose_core.evaluation import EX_METRICS, METRICS, evaluate, format_table, validate_predictions
from probpose_core.evaluation.exoks import ex_oks, reference_window
from probpose_core.oks import instance_oks
from probpose_core.evaluation.threshold import GRID, candidate_thresholds
from probpose_core.keypoints import SIGMAS

K = 17
BOX = [0.0, 0.0, 60.0, 80.0]      # aspect 3:4 already; window (padding 1.25): x -7.5..67.5, y -10..90
AREA = 2000.0


def _kpts(points, v):
    """(17, 3) array with keypoint 0 set to ``points`` / ``v`` and the rest unlabelled."""
    k = np.zeros((K, 3))
    k[0, :2], k[0, 2] = points, v
    return k


def _hand_oks(sq, k=0, area=AREA):
    return np.exp(-sq / (2 * area * (2 * SIGMAS[k]) ** 2))


# --- OKS and Ex-OKS by hand ------------------------------------------------------------------

def test_oks_matches_hand_computation():
    gt = _kpts((10, 20), 2)
    pred = gt[:, :2].copy()
    pred[0] += (3, 4)  # distance 5
    assert instance_oks(gt, BOX, AREA, pred) == pytest.approx(_hand_oks(25.0), rel=1e-12)
    gt[5] = (30, 30, 3)  # v = 3 counts like any labelled point in standard OKS
    pred[5] = (30, 36)
    expected = (_hand_oks(25.0) + _hand_oks(36.0, 5)) / 2
    assert instance_oks(gt, BOX, AREA, pred) == pytest.approx(expected, rel=1e-12)


def test_oks_of_unlabelled_gt_uses_the_doubled_box():
    gt = np.zeros((K, 3))
    pred = np.full((K, 2), 30.0)
    pred[0] = (130.0, 30.0)  # the doubled box spans x -60..120: 10 px beyond
    expected = (16 + _hand_oks(100.0)) / 17
    assert instance_oks(gt, BOX, AREA, pred) == pytest.approx(expected, rel=1e-12)


def test_eval_sigmas_are_pycocotools_bit_for_bit():
    from pycocotools.cocoeval import Params

    assert np.array_equal(SIGMAS, Params("keypoints").kpt_oks_sigmas)


def _pred(xy, presence):
    p = np.zeros((K, 3))
    p[0] = (*xy, presence)
    return p


def test_ex_oks_both_absent_scores_one():
    assert ex_oks(_kpts((100, 20), 3), BOX, AREA, _pred((5, 5), 0.2), 0.45) == 1.0


def test_ex_oks_gt_in_pred_absent_uses_gt_edge_distance():
    # GT (10, 20): closest edges x -7.5 (17.5) and y -10 (30)
    assert ex_oks(_kpts((10, 20), 2), BOX, AREA, _pred((50, 50), 0.1), 0.45) == pytest.approx(
        _hand_oks(17.5 ** 2 + 30 ** 2), rel=1e-12)


def test_ex_oks_gt_out_pred_present_uses_pred_edge_distance():
    # prediction (60, 50): edges x 67.5 (7.5) and y 90 (40)
    assert ex_oks(_kpts((100, 20), 3), BOX, AREA, _pred((60, 50), 0.9), 0.45) == pytest.approx(
        _hand_oks(7.5 ** 2 + 40 ** 2), rel=1e-12)


def test_ex_oks_both_in_is_plain_oks_and_threshold_is_inclusive():
    gt = _kpts((10, 20), 1)
    assert ex_oks(gt, BOX, AREA, _pred((13, 24), 0.45), 0.45) == pytest.approx(_hand_oks(25.0), rel=1e-12)
    assert ex_oks(gt, BOX, AREA, _pred((13, 24), 1.7), 1.0) == pytest.approx(_hand_oks(25.0), rel=1e-12)
    assert ex_oks(gt, BOX, AREA, _pred((13, 24), 0.449), 0.45) < _hand_oks(25.0)


def test_reference_window_is_exococotools_bit_for_bit():
    from coco_reference import _exococotools

    fix = _exococotools()[0].cocoeval.fix_bbox_aspect_ratio
    rng = np.random.default_rng(1)
    boxes = np.c_[rng.uniform(-500, 500, (300, 2)), rng.uniform(0, 300, (300, 2)) ** rng.choice([1, 0.5], (300, 2))]
    boxes[::7, 2] = 0
    boxes[::11, 3] = 0
    for box, padding in zip(boxes, rng.choice([1.0, 1.25, 1.1, 1.5], 300).tolist()):  # Python floats, as the CLI passes
        xyxy = np.array([box[0], box[1], box[0] + box[2], box[1] + box[3]])
        assert np.array_equal(reference_window(box, padding), fix(xyxy, padding=padding, bbox_format="xyxy"))


finite = st.floats(-300, 300, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(finite, finite, finite, finite, st.sampled_from([0, 1, 2, 3]), st.floats(-0.5, 1.5)),
                min_size=K, max_size=K),
       st.floats(1, 200), st.floats(1, 200), st.floats(0, 1))
def test_ex_oks_properties(rows, w, h, threshold):
    rows = np.array(rows)
    gt = np.c_[rows[:, :2], rows[:, 4]]
    pred = np.c_[rows[:, 2:4], rows[:, 5]]
    bbox, area = [0, 0, w, h], w * h
    value = ex_oks(gt, bbox, area, pred, threshold)
    assert 0.0 <= value <= 1.0
    if (gt[:, 2] > 0).any() and (gt[:, 2] < 3).all():
        everything_present = pred.copy()
        everything_present[:, 2] = 1.0
        assert ex_oks(gt, bbox, area, everything_present, threshold) == pytest.approx(
            instance_oks(gt, bbox, area, pred[:, :2]), rel=1e-12, abs=1e-300)
    if (gt[:, 2] > 0).any() and (gt[:, 2][gt[:, 2] > 0] == 3).all():
        nothing_present = pred.copy()
        nothing_present[:, 2] = -1.0
        assert ex_oks(gt, bbox, area, nothing_present, max(threshold, 1e-9)) == 1.0


# --- the protocol on tiny sets -----------------------------------------------------------------

def _gt(instances, images=(1, 2)):
    anns = [{"image_id": img, "bbox": list(box), "area": area, "keypoints": np.asarray(k).ravel().tolist(), **extra}
            for img, box, area, k, extra in instances]
    return validate_coco({"images": [{"id": i} for i in images], "annotations": anns})


def _person(rng, x=100.0, y=100.0, v=2):
    k = np.c_[x + rng.uniform(0, 60, K), y + rng.uniform(0, 80, K), np.full(K, v)]
    return k


def _perfect(gt, presence_of=lambda v: 1.0 if v < 3 else 0.0, score=0.9):
    return [{"image_id": a["image_id"], "score": score,
             "keypoints": [c if i % 3 < 2 else presence_of(c) for i, c in enumerate(a["keypoints"])]}
            for a in gt["annotations"]]


def test_perfect_predictions_score_one(rng):
    people = [_person(rng), _person(rng, 300), _person(rng, 50, 10)]
    people[1][::3, 2] = 3  # some points outside the image, predicted absent
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, people[0], {}), (1, [300, 100, 60, 80], 12000.0, people[1], {}),
              (2, [50, 10, 60, 80], 3000.0, people[2], {})])
    res = evaluate(gt, _perfect(gt), extended=True)
    for name in ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"):
        assert res[name] == pytest.approx(1.0) and res["Ex-" + name] == pytest.approx(1.0), name
    assert res["presence_threshold"] == 0.45


def test_undefined_entries_are_minus_one_and_empty_inputs_do_not_crash(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {})])
    res = evaluate(gt, [], extended=True, presence_threshold="best")
    assert res["AP"] == 0.0 and res["AR"] == 0.0 and res["APl"] == -1.0 and res["Ex-APl"] == -1.0
    no_gt = validate_coco({"images": [{"id": 1}], "annotations": []})
    preds = [{"image_id": 1, "score": 1.0, "keypoints": [1.0] * 51}]
    assert all(v == -1.0 for k, v in evaluate(no_gt, preds, extended=True).items() if k != "presence_threshold")


def test_crowd_is_ignored_in_standard_but_counted_in_extended(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {"iscrowd": 1})])
    res = evaluate(gt, _perfect(gt), extended=True)
    assert res["AP"] == -1.0 and res["Ex-AP"] == pytest.approx(1.0)


def test_predictions_on_an_image_without_gt(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {})])
    stray = {"image_id": 2, "score": 0.95, "keypoints": [5.0, 5.0, 0.9] * K}
    res = evaluate(gt, [stray] + _perfect(gt), extended=True)
    assert res["AP"] < 1.0        # pycocotools: a false positive ranked first
    assert res["Ex-AP"] == pytest.approx(1.0)  # exococotools: ignored, the image has no GT


def test_score_ties_keep_file_order(rng):
    person = _person(rng)
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, person, {})])
    good = _perfect(gt, score=0.5)[0]
    bad = {**good, "keypoints": [c + 40 if i % 3 < 2 else c for i, c in enumerate(good["keypoints"])]}
    assert evaluate(gt, [good, bad])["AP"] == pytest.approx(1.0)
    assert evaluate(gt, [bad, good])["AP"] < 0.9


@settings(max_examples=15, deadline=None)
@given(st.randoms(use_true_random=False))
def test_result_does_not_depend_on_the_order_of_images(random):
    from gen_cases import generate_case

    raw, preds, threshold, padding = generate_case(random.randrange(10_000))
    gt = validate_coco(copy.deepcopy(raw))
    preds = validate_predictions(preds, gt)
    shuffled = copy.deepcopy(gt)
    random.shuffle(shuffled["images"])
    assert evaluate(gt, preds, True, threshold, padding) == evaluate(shuffled, preds, True, threshold, padding)


# --- presence-threshold search --------------------------------------------------------------------

def test_threshold_search_finds_the_best(rng):
    people = [_person(rng, 40.0 * i, 0) for i in range(4)]
    for p in people:
        p[::2, 2] = 3
    gt = _gt([(1 + i % 2, [40.0 * i, 0, 60, 80], 5000.0, p, {}) for i, p in enumerate(people)])
    preds = _perfect(gt)
    for j, p in enumerate(preds):  # presence of in-image points spread, out-of-image points low-ish
        p["keypoints"][2::3] = [float(rng.uniform(0.0, 0.3)) if v == 3 else float(rng.uniform(0.25, 0.9))
                                for v in gt["annotations"][j]["keypoints"][2::3]]
        p["score"] = float(rng.random())
    best = evaluate(gt, preds, extended=True, presence_threshold="best")
    tried = {float(t): evaluate(gt, preds, extended=True, presence_threshold=float(t))["Ex-AP"]
             for t in candidate_thresholds([c for p in preds for c in p["keypoints"][2::3]])}
    assert best["Ex-AP"] == max(tried.values())
    assert tried[best["presence_threshold"]] == best["Ex-AP"]
    assert best["Ex-AP"] > tried[0.0] and best["Ex-AP"] > tried[1.0]
    assert all(best["Ex-AP"] >= evaluate(gt, preds, True, float(t))["Ex-AP"] for t in (0.12, 0.33, 0.61))


def test_threshold_search_prefers_the_official_value_on_ties(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {})])
    res = evaluate(gt, _perfect(gt), extended=True, presence_threshold="best")
    assert res["presence_threshold"] == 0.45 and res["Ex-AP"] == pytest.approx(1.0)


def test_candidate_thresholds():
    assert np.array_equal(candidate_thresholds([]), GRID)
    assert {0.37, 1.0, 0.0} <= set(candidate_thresholds([0.37, 1.4, -2]).tolist())
    assert np.array_equal(candidate_thresholds(np.linspace(0, 1, 1000)), GRID)


# --- options, validation, table ---------------------------------------------------------------------

def test_bad_options_and_duplicate_ids_raise_input_error(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {})])
    twice = copy.deepcopy(gt)
    twice["annotations"].append(dict(twice["annotations"][0]))
    with pytest.raises(InputError, match="annotation id 1 is used twice"):
        evaluate(twice, [])
    with pytest.raises(InputError, match="padding"):
        evaluate(gt, [], extended=True, padding=0.5)
    with pytest.raises(InputError, match="presence threshold"):
        evaluate(gt, [], extended=True, presence_threshold=1.5)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.pop("score"), "has no 'score'"),
    (lambda p: p.__setitem__("keypoints", [1.0] * 34), "'keypoints' must hold 51 numbers"),
    (lambda p: p["keypoints"].__setitem__(7, float("nan")), "finite"),
    (lambda p: p.__setitem__("image_id", 99), "unknown image id 99"),
    (lambda p: p.__setitem__("visibilities", [1.0] * 3), "'visibilities' must hold 17"),
    (lambda p: p.__setitem__("score", "high"), "'score'"),
])
def test_prediction_validation(mutate, message):
    gt = validate_coco({"images": [{"id": 1}], "annotations": []})
    pred = {"image_id": 1, "score": 0.5, "keypoints": [1.0] * 51}
    mutate(pred)
    with pytest.raises(InputError, match=message):
        validate_predictions([pred], gt)
    with pytest.raises(InputError, match="list"):
        validate_predictions({"annotations": []}, gt)
    assert validate_predictions([{"image_id": 1, "score": 1, "keypoints": [0] * 51}], gt)[0]["category_id"] == 1


def test_format_table_lists_every_metric(rng):
    gt = _gt([(1, [100, 100, 60, 80], 6000.0, _person(rng), {})])
    res = evaluate(gt, _perfect(gt), extended=True)
    assert set(res) == set(METRICS) | set(EX_METRICS) | {"presence_threshold"}
    assert all(type(v) is float for v in res.values())
    table = format_table(res)
    lines = table.splitlines()
    assert all(any(line.split()[0] == m for line in lines) for m in METRICS)
    assert "Ex-OKS" in lines[0] and "n/a" in table and "presence threshold: 0.45" in table
    assert len({len(line) for line in lines[2:12]}) == 1  # aligned


def test_oks_formula_works_on_torch_tensors_with_gradients():
    import torch

    from probpose_core.oks import keypoint_oks

    d2 = torch.linspace(0, 50, 17, dtype=torch.float64, requires_grad=True)
    oks = keypoint_oks(d2, 400.0)
    np.testing.assert_allclose(oks.detach().numpy(), keypoint_oks(d2.detach().numpy(), 400.0), rtol=1e-15)
    oks.sum().backward()
    assert d2.grad is not None and bool((d2.grad[1:] < 0).all())
