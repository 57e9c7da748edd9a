import json

import pytest

from probpose_core.data.coco import keypoints_array, load_coco, validate_coco
from probpose_core.errors import InputError


def _gt():
    kp = [10.0, 20.0, 2] * 17
    return {"images": [{"id": 1, "width": 64, "height": 64}],
            "annotations": [{"image_id": 1, "keypoints": kp, "bbox": [0, 0, 30, 40]}]}


def test_defaults_are_filled():
    data = validate_coco(_gt())
    ann = data["annotations"][0]
    assert ann["area"] == 1200 and ann["iscrowd"] == 0 and ann["id"] == 1 and ann["num_keypoints"] == 17
    assert keypoints_array(ann).shape == (17, 3)


@pytest.mark.parametrize("mutate, message", [
    (lambda d: d.pop("annotations"), "missing 'annotations'"),
    (lambda d: d["annotations"][0].pop("bbox"), "has no 'bbox'"),
    (lambda d: d["annotations"][0].__setitem__("keypoints", [1.0] * 50), "must hold 51 numbers"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(4, float("nan")), "finite"),
    (lambda d: d["annotations"][0].__setitem__("image_id", 7), "unknown image id 7"),
    (lambda d: d["annotations"][0]["keypoints"].__setitem__(2, 5), "visibility"),
    (lambda d: d["annotations"][0].__setitem__("bbox", [0, 0, -1, 3]), "negative"),
])
def test_malformed_input_is_named(mutate, message):
    data = _gt()
    mutate(data)
    with pytest.raises(InputError, match=message):
        validate_coco(data)


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_coco(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{ not json")
    with pytest.raises(InputError, match="not valid JSON"):
        load_coco(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(_gt()))
    assert len(load_coco(good)["annotations"]) == 1


def test_pad_to_contain_marks_the_window_edge():
    from probpose_core.data.coco import pad_to_contain

    ann = _gt()["annotations"][0]  # bbox 0,0,30,40 (already 3:4): window 37.5 x 50 about (15, 20)
    ann["keypoints"][0:3] = [15.0, 20.0, 2]  # centre
    ann["keypoints"][3:6] = [15.0 + 37.5, 20.0, 3]  # outside the image, 2x the half-width: padding 2.0
    ann["keypoints"][6:9] = [0.0, 0.0, 0]  # unannotated
    pad = pad_to_contain(ann)
    assert pad[0] == 0.0 and pad[1] == pytest.approx(2.0 * 1.25) and pad[2] == -1.0
