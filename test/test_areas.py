"""A-E area table: hand-placed keypoints, partition property, the `probpose areas` command."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.errors import InputError
from probpose_core.evaluation.areas import AREAS, area_table, format_area_table, keypoint_areas
from probpose_core.geometry import activation_window

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "demo" / "fixture"


def _ann(ann_id, image_id, bbox, points, iscrowd=0):
    """An annotation with the given (x, y, v) points first, the rest unannotated."""
    kpts = [0.0] * 51
    for i, (x, y, v) in enumerate(points):
        kpts[3 * i:3 * i + 3] = [float(x), float(y), v]
    return {"id": ann_id, "image_id": image_id, "bbox": list(bbox), "keypoints": kpts, "iscrowd": iscrowd}


def _gt():
    # bbox [40, 40, 20, 20] -> window 25 x 33.3 about (50, 50): x in [37.5, 62.5], y in [33.3, 66.7]
    # bbox [0, 40, 20, 20]  -> window about (10, 50): x in [-2.5, 22.5]
    return {
        "images": [{"id": 1, "width": 100, "height": 100, "file_name": "a.png"}],
        "annotations": [
            _ann(1, 1, [40, 40, 20, 20], [(50, 50, 2), (38, 50, 1), (10, 10, 2), (55, 45, 0)]),
            _ann(2, 1, [0, 40, 20, 20], [(-1, 50, 3), (-50, 50, 3), (100, 100, 2)]),
            _ann(3, 1, [0, 0, 100, 100], [(50, 50, 2)] * 17, iscrowd=1),
        ],
    }


def test_hand_placed_keypoints_land_in_their_areas():
    table = area_table(_gt())
    counts = {k: table["areas"][k]["count"] for k in AREAS}
    # (100, 100) is on the image corner (inclusive edges), outside box 2 and its window -> C
    assert counts == {"A": 1, "B": 1, "C": 2, "D": 1, "E": 1}
    assert table["areas"]["B"]["by_visibility"] == {"1": 1, "2": 0, "3": 0}
    assert table["areas"]["D"]["by_visibility"] == {"1": 0, "2": 0, "3": 1}
    assert table["keypoints"] == 6 and table["instances"] == 2  # crowd and v=0 left out
    assert table["in_image"] == 4 and table["out_of_image"] == 2
    assert table["instances_out_of_image"] == 1 and table["inconsistent"] == 0
    assert sum(table["areas"][k]["percent"] for k in AREAS) == pytest.approx(100.0)
    assert table["areas"]["C"]["percent"] == pytest.approx(100 * 2 / 6)
    json.dumps(table, allow_nan=False)
    text = format_area_table(table)
    assert "outside image, inside activation window" in text and "6 annotated keypoints" in text


def test_padding_moves_keypoints_between_window_areas():
    gt = _gt()
    assert area_table(gt, padding=1.0)["areas"]["B"]["count"] == 0  # window 20 wide: x=38 falls out
    assert area_table(gt, padding=5.0)["areas"]["C"]["count"] == 1  # (10, 10) now in the window


def test_flags_that_disagree_with_positions_are_counted():
    gt = _gt()
    gt["annotations"].append(_ann(4, 1, [40, 40, 20, 20], [(50, 50, 3), (-5, 50, 2)]))
    table = area_table(gt)
    assert table["inconsistent"] == 2
    assert table["areas"]["A"]["by_visibility"]["3"] == 1
    assert "disagrees" in format_area_table(table)


def test_missing_image_size_is_an_input_error():
    gt = _gt()
    del gt["images"][0]["width"]
    with pytest.raises(InputError, match="width"):
        area_table(gt)
    with pytest.raises(InputError):
        area_table({"images": []})


@settings(max_examples=200, deadline=None)
@given(
    pts=st.lists(st.tuples(st.floats(-300, 600), st.floats(-300, 600)), min_size=1, max_size=17),
    box=st.tuples(*[st.floats(0, hi).map(lambda v: round(v, 2)) for hi in (300, 300, 200, 200)]),
    size=st.tuples(st.integers(1, 400), st.integers(1, 400)),
    padding=st.floats(1.01, 2.0),
)
def test_areas_partition_keypoints_by_image_box_and_window(pts, box, size, padding):
    pts = np.asarray(pts)
    width, height = size
    area = keypoint_areas(pts, box, width, height, padding)
    x0, y0, x1, y1 = activation_window(box, padding=padding)
    for (x, y), a in zip(pts, area):
        inside_img = 0 <= x <= width and 0 <= y <= height
        inside_box = box[0] <= x <= box[0] + box[2] and box[1] <= y <= box[1] + box[3]
        inside_win = x0 <= x <= x1 and y0 <= y <= y1
        assert (a <= 2) == inside_img
        if inside_img:
            assert a == (0 if inside_box else 1 if inside_win else 2)
        else:
            assert a == (3 if inside_win else 4)
        if inside_box:  # the window always holds the box (widened, padding >= 1)
            assert inside_win


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "probpose_core.cli", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli_areas_prints_table_and_writes_json(tmp_path):
    out = tmp_path / "areas.json"
    proc = _cli("areas", "--ann", str(FIXTURE / "annotations.json"), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "outside image and activation window" in proc.stdout
    table = json.loads(out.read_text())
    assert set(table["areas"]) == set(AREAS)
    assert table["out_of_image"] > 0  # the fixture keeps out-of-image keypoints as v=3
    assert table["keypoints"] == sum(r["count"] for r in table["areas"].values())


@pytest.mark.parametrize("content", ["{not json", '{"images": 3}'])
def test_cli_areas_bad_file_is_one_error_line(tmp_path, content):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    proc = _cli("areas", "--ann", str(bad))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probpose: error:")
    assert "Traceback" not in proc.stderr
