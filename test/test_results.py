"""results.py: Human/Keypoint JSON round trips, COCO-results format, clear errors."""
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.errors import InputError
from probpose_core.evaluation.predictions import validate_predictions
from probpose_core.keypoints import NAMES
from probpose_core.results import (Human, Keypoint, humans_from_json, humans_to_json, read_humans,
                                   to_coco_results, write_coco_results, write_humans)

finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)
unit = st.floats(0, 1)


@st.composite
def keypoints(draw, name):
    cov = np.array(draw(st.lists(finite, min_size=4, max_size=4))).reshape(2, 2)
    levels = draw(st.lists(st.sampled_from([0.5, 0.9, 0.25]), unique=True, max_size=2))
    regions = {q: [np.array(draw(st.lists(st.tuples(finite, finite), min_size=1, max_size=5)))]
               for q in levels}
    return Keypoint(name=name, x=draw(finite), y=draw(finite), presence=draw(unit), visibility=draw(unit),
                    oks_quality=draw(unit), covariance=cov, regions=regions)


@st.composite
def humans(draw):
    kps = [draw(keypoints(name)) for name in NAMES]
    return Human(bbox=tuple(draw(finite) for _ in range(4)), score=draw(unit), keypoints=kps,
                 id=draw(st.one_of(st.none(), st.integers(0, 100))), box_score=draw(unit))


def assert_same(a: list, b: list):
    assert len(a) == len(b)
    for ha, hb in zip(a, b):
        assert ha.bbox == hb.bbox and ha.score == hb.score and ha.id == hb.id and ha.box_score == hb.box_score
        for ka, kb in zip(ha.keypoints, hb.keypoints, strict=True):
            assert (ka.name, ka.x, ka.y, ka.presence, ka.visibility, ka.oks_quality) == \
                   (kb.name, kb.x, kb.y, kb.presence, kb.visibility, kb.oks_quality)
            np.testing.assert_array_equal(ka.covariance, kb.covariance)
            assert set(ka.regions) == set(kb.regions)
            for q in ka.regions:
                for pa, pb in zip(ka.regions[q], kb.regions[q], strict=True):
                    np.testing.assert_array_equal(pa, pb)


@settings(max_examples=25, deadline=None)
@given(st.lists(humans(), max_size=3))
def test_json_round_trip_is_exact(hs):
    text = json.dumps(humans_to_json(hs), allow_nan=False)  # plain JSON, no NaN
    back = humans_from_json(json.loads(text))
    assert_same(hs, back)
    assert all(isinstance(q, float) for h in back for k in h.keypoints for q in k.regions)


def _human(score=0.8, cov=None):
    kps = [Keypoint(name=n, x=10.0 + i, y=20.0 - i, presence=0.1 * (i % 10), visibility=0.5, oks_quality=0.7,
                    covariance=np.eye(2) if cov is None else cov) for i, n in enumerate(NAMES)]
    return Human(bbox=(1.0, 2.0, 30.0, 60.0), score=score, keypoints=kps)


def test_non_finite_covariance_is_written_as_null(tmp_path):
    h = _human(cov=np.full((2, 2), np.nan))
    data = humans_to_json([h])
    assert all(k["covariance"] is None for k in data[0]["keypoints"])
    write_humans([h], tmp_path / "h.json")
    back = read_humans(tmp_path / "h.json")
    assert np.isnan(back[0].keypoints[0].covariance).all()


@pytest.mark.parametrize("bad, message", [
    ({"bbox": [0, 0, 1, 1], "score": 1}, "keypoints"),
    ({"bbox": [0, 0, 1], "score": 1, "keypoints": []}, "bbox"),
    ({"bbox": [0, 0, 1, 1], "score": "x", "keypoints": []}, "score"),
    ({"bbox": [0, 0, 1, 1], "score": 1, "keypoints": [{"name": "nose", "x": 1}]}, "keypoint #0"),
    ({"bbox": [0, 0, 1, 1], "score": 1, "keypoints": [3]}, "keypoint #0"),
])
def test_malformed_json_names_the_problem(bad, message):
    with pytest.raises(InputError, match=message):
        humans_from_json([bad])
    with pytest.raises(InputError, match="list"):
        humans_from_json({"bbox": []})


def test_coco_results_format_is_what_eval_reads():
    hs = [_human(0.8), _human(0.3)]
    res = to_coco_results(7, hs)
    assert len(res) == 2
    r = res[0]
    assert r["image_id"] == 7 and r["category_id"] == 1 and r["score"] == 0.8 and "bbox" not in r
    assert len(r["keypoints"]) == 51 and len(r["visibilities"]) == 17
    assert r["keypoints"][:3] == [10.0, 20.0, 0.0] and r["keypoints"][3:6] == [11.0, 19.0, 0.1]
    assert r["visibilities"] == [0.5] * 17
    gt = {"images": [{"id": 7}], "annotations": []}
    assert len(validate_predictions(res, gt)) == 2  # the evaluation's own loader accepts it
    with_box = to_coco_results(7, hs, bbox=True)
    assert with_box[0]["bbox"] == [1.0, 2.0, 30.0, 60.0]
    assert len(validate_predictions(with_box, gt)) == 2


def test_coco_results_refuse_bad_humans(tmp_path):
    h = _human()
    h.keypoints[3].x = float("nan")
    with pytest.raises(InputError, match="non-finite"):
        to_coco_results(1, [h])
    short = _human()
    short.keypoints = short.keypoints[:5]
    with pytest.raises(InputError, match="17"):
        to_coco_results(1, [short])
    write_coco_results(to_coco_results(1, [_human()]), tmp_path / "sub" / "pred.json")
    assert len(json.loads((tmp_path / "sub" / "pred.json").read_text())) == 1


def test_keypoint_array():
    arr = _human().keypoint_array()
    assert arr.shape == (17, 5)
    np.testing.assert_allclose(arr[1], [11.0, 19.0, 0.1, 0.5, 0.7])
