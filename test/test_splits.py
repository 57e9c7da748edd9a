"""data/splits.py: the even / odd image-id halves (the house's calibration / test split)."""
import json

from probpose_core.data.splits import CALIBRATION_HALF, HELD_OUT_HALF, half, people, write_halves


def _coco():
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 10, "height": 10} for i in (1, 2, 3, 4, 7)]
    anns = [{"id": 10 + i, "image_id": i, "num_keypoints": 1 if i != 3 else 0, "iscrowd": 0} for i in (1, 2, 3, 4, 7)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}


def test_halves_partition_by_parity_and_keep_the_rest(tmp_path):
    data = _coco()
    even, odd = half(data, CALIBRATION_HALF), half(data, HELD_OUT_HALF)
    assert [i["id"] for i in even["images"]] == [2, 4] and [i["id"] for i in odd["images"]] == [1, 3, 7]
    assert [a["image_id"] for a in odd["annotations"]] == [1, 3, 7] and even["categories"] == data["categories"]
    assert people(odd) == 2  # image 3's person has no keypoints
    (tmp_path / "gt.json").write_text(json.dumps(data))
    paths = write_halves(tmp_path / "gt.json", tmp_path / "splits")
    assert {name: json.loads(p.read_text()) for name, p in paths.items()} == {"even": even, "odd": odd}
