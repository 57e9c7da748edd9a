"""load_instances: GT and detection instances, every skip reason counted, bad files refused."""
import json

import numpy as np
import pytest

from probpose_core.codec import AREA_FACTOR
from probpose_core.data import instances as mod
from probpose_core.data.instances import Instance, load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.errors import InputError
from probpose_core.keypoints import NUM_KEYPOINTS

K = NUM_KEYPOINTS


def _kpts(n_annotated: int, v: int = 2) -> list:
    out = []
    for k in range(K):
        out += [10.0 + k, 20.0 + k, v if k < n_annotated else 0]
    return out


def _ann(i, image_id=1, bbox=(5.0, 6.0, 40.0, 80.0), n_annotated=5, **extra):
    return dict({"id": i, "image_id": image_id, "category_id": 1, "bbox": list(bbox),
                 "keypoints": _kpts(n_annotated)}, **extra)


@pytest.fixture
def crafted(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "width": 100, "height": 120},
              {"id": 2, "file_name": "b.png", "width": 50, "height": 60}]
    anns = [
        _ann(1, area=1234.0),                          # kept, segmentation area
        _ann(2, image_id=2, n_annotated=1),            # kept, no area -> 0.53 w h
        _ann(3, iscrowd=1),                            # crowd
        _ann(4, n_annotated=0),                        # no keypoints
        _ann(5, bbox=(1, 2, 0.5, 30)),                 # degenerate (thin)
        _ann(6, bbox=(1, 2, -3, 30)),                  # degenerate (negative side)
        _ann(7, bbox=(1, 2, float("nan"), 30)),        # non-finite
        _ann(8, bbox=(float("inf"), 2, 3, 30)),        # non-finite
        _ann(9, image_id=99),                          # unknown image
    ]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({"images": images, "annotations": anns}))  # NaN/Infinity as Python writes them
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"x")  # only existence is checked here
    return path, tmp_path / "images"


def test_gt_skip_counts(crafted):
    path, _ = crafted
    inst, skipped = load_instances(path)
    assert [i.ann_id for i in inst] == [1, 2]
    assert skipped == {mod.SKIP_CROWD: 1, mod.SKIP_FEW_KEYPOINTS: 1, mod.SKIP_DEGENERATE: 2,
                       mod.SKIP_NON_FINITE: 2, mod.SKIP_UNKNOWN_IMAGE: 1}
    a, b = inst
    assert a.area == 1234.0 and b.area == pytest.approx(AREA_FACTOR * 40 * 80)
    assert (a.file_name, a.width, a.height, a.score) == ("a.png", 100, 120, 1.0)
    assert a.keypoints.shape == (K, 3) and a.bbox.shape == (4,)
    np.testing.assert_array_equal(a.keypoints.ravel(), _kpts(5))
    with pytest.raises(ValueError):
        a.keypoints[0, 0] = 1  # read-only


def test_min_keypoints_and_missing_files(crafted):
    path, images_dir = crafted
    inst, skipped = load_instances(path, min_keypoints=2, images_dir=images_dir)
    assert [i.ann_id for i in inst] == [1]
    assert skipped[mod.SKIP_FEW_KEYPOINTS] == 2  # ann 2 has 1 keypoint, ann 4 none
    inst, skipped = load_instances(path, images_dir=images_dir)
    assert [i.ann_id for i in inst] == [1] and skipped[mod.SKIP_MISSING_FILE] == 1  # b.png absent


def test_caller_dict_untouched_and_file_order(tmp_path):
    data = write_synthetic_coco(tmp_path, num_images=3, seed=0)
    inst, skipped = load_instances(tmp_path / "annotations.json", images_dir=tmp_path / "images")
    assert not skipped
    assert [i.ann_id for i in inst] == [a["id"] for a in data["annotations"]]
    for i, a in zip(inst, data["annotations"]):
        np.testing.assert_array_equal(i.keypoints.ravel(), a["keypoints"])
        assert i.area == a["area"]


def test_detections(crafted, tmp_path):
    path, images_dir = crafted
    dets = [
        {"image_id": 1, "bbox": [1, 2, 30, 60], "score": 0.9, "category_id": 1},
        {"image_id": 2, "bbox": [3, 4, 20, 40], "score": 0.5},                     # no category: person
        {"image_id": 1, "bbox": [1, 2, 30, 60], "score": 0.1, "category_id": 1},   # low score
        {"image_id": 1, "bbox": [1, 2, 30, 60], "score": 0.9, "category_id": 3},   # not a person
        {"image_id": 7, "bbox": [1, 2, 30, 60], "score": 0.9, "category_id": 1},   # unknown image
        {"image_id": 1, "bbox": [1, 2, 0, 60], "score": 0.9, "category_id": 1},    # degenerate
        {"image_id": 1, "bbox": [1, 2, float("nan"), 60], "score": 0.9},           # non-finite
    ]
    det_path = tmp_path / "dets.json"
    det_path.write_text(json.dumps(dets))
    inst, skipped = load_instances(path, detections_path=det_path, score_threshold=0.3)
    assert [(i.image_id, i.score) for i in inst] == [(1, 0.9), (2, 0.5)]
    assert skipped == {mod.SKIP_LOW_SCORE: 1, mod.SKIP_NOT_PERSON: 1, mod.SKIP_UNKNOWN_IMAGE: 1,
                       mod.SKIP_DEGENERATE: 1, mod.SKIP_NON_FINITE: 1}
    d = inst[0]
    assert d.ann_id is None and d.area == pytest.approx(AREA_FACTOR * 30 * 60)
    assert not d.keypoints.any() and d.keypoints.shape == (K, 3)
    inst, skipped = load_instances(path, detections_path=det_path, images_dir=images_dir)
    assert [i.image_id for i in inst] == [1, 1] and skipped[mod.SKIP_MISSING_FILE] == 1


@pytest.mark.parametrize("text, match", [
    ("{not json", "not valid JSON"),
    ("[]", "images"),
    ('{"images": [], "annotations": {}}', "annotations"),
    ('{"images": [{"id": 1}], "annotations": [{"id": 1, "image_id": 1, "bbox": [0, 0, 5, 5], "keypoints": [1, 2]}]}',
     "51 numbers"),
])
def test_malformed_annotation_file(tmp_path, text, match):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_instances(path)


def test_malformed_detections(crafted, tmp_path):
    path, _ = crafted
    for text, match in [('{"a": 1}', "list"), ('[{"bbox": [1, 2, 3, 4]}]', "detection #0"),
                        ('[{"image_id": 1, "bbox": [1, 2, 30, 40], "score": "high"}]', "score")]:
        det_path = tmp_path / "d.json"
        det_path.write_text(text)
        with pytest.raises(InputError, match=match):
            load_instances(path, detections_path=det_path)
    with pytest.raises(InputError, match="not found"):
        load_instances(path, detections_path=tmp_path / "missing.json")


def test_instance_arrays_are_copies():
    kp = np.zeros((K, 3))
    inst = Instance(image_id=1, ann_id=None, file_name="x.png", width=1, height=1,
                    bbox=[0, 0, 2, 2], keypoints=kp, area=1.0)
    kp[0, 0] = 5
    assert inst.keypoints[0, 0] == 0 and inst.bbox.dtype == np.float64
