"""CropCOCO-style set builder and the synthetic generator behind the demo fixture."""
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.data.coco import keypoints_array, load_coco
from probpose_core.data.cropcoco import choose_crop, crop_annotation, make_cropcoco
from probpose_core.data.synthetic import make_synthetic_coco, to_convention, write_synthetic_coco
from probpose_core.errors import InputError
from probpose_core.evaluation.areas import area_table, in_image

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "demo" / "fixture"


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A synthetic set (8 images) on disk, plain-COCO convention (no v=3 before cropping)."""
    root = tmp_path_factory.mktemp("src")
    write_synthetic_coco(root, num_images=8, seed=11)
    return root / "annotations_coco.json", root / "images"


def _build(source, out, seed=0, **kw):
    ann, images = source
    return make_cropcoco(ann, images, out, seed=seed, progress=False, verbose=False, **kw)


@pytest.fixture(scope="module")
def built(source, tmp_path_factory):
    out = tmp_path_factory.mktemp("crop")
    return _build(source, out, seed=0), out


def test_keypoints_move_by_the_crop_offset_and_leave_the_image_as_v3(source, built):
    summary, out = built
    src = load_coco(source[0])
    res = load_coco(out / "annotations.json")
    src_anns = {a["id"]: a for a in src["annotations"]}
    images = {e["id"]: e for e in res["images"]}
    n_v3 = 0
    for ann in res["annotations"]:
        img = images[ann["image_id"]]
        x0, y0, w, h = img["crop"]
        assert (img["width"], img["height"]) == (w, h)
        old, new = keypoints_array(src_anns[ann["id"]]), keypoints_array(ann)
        annotated = old[:, 2] > 0
        np.testing.assert_array_equal(new[annotated, :2], old[annotated, :2] - (x0, y0))
        inside = in_image(new[:, :2], w, h)
        assert np.all(~inside[new[:, 2] == 3]), "v=3 must lie outside the new image"
        assert np.all(inside[np.isin(new[:, 2], (1, 2))]), "v=1/2 must lie inside the new image"
        np.testing.assert_array_equal(new[annotated & inside, 2], old[annotated & inside, 2])
        assert np.all(new[~annotated] == 0)
        n_v3 += int(np.sum(new[:, 2] == 3))
        bx, by, bw, bh = ann["bbox"]
        assert 0 <= bx and 0 <= by and bx + bw <= w + 1e-9 and by + bh <= h + 1e-9 and bw > 0 and bh > 0
        ox, oy, ow, oh = src_anns[ann["id"]]["bbox"]  # the original box clipped to the crop
        clipped = [max(ox - x0, 0), max(oy - y0, 0), min(ox + ow - x0, w), min(oy + oh - y0, h)]
        np.testing.assert_allclose([bx, by, bx + bw, by + bh], clipped)
        np.testing.assert_allclose(ann["area"], src_anns[ann["id"]]["area"] * bw * bh / (ow * oh))
        assert 0 < ann["area"] <= src_anns[ann["id"]]["area"] + 1e-9
        assert ann["num_keypoints"] == int(np.sum(new[:, 2] > 0))
        assert np.sum(inside & annotated) >= 3  # min_in_image
    assert n_v3 == summary["keypoints_pushed_out"] > 0
    assert summary["areas_before"]["out_of_image"] == 0
    assert summary["areas_after"]["out_of_image"] == n_v3
    assert area_table(res)["inconsistent"] == 0
    assert summary["instances_kept"] + summary["instances_dropped"] == summary["instances_in"]
    assert summary["instances_kept"] == len(res["annotations"])


def test_pixels_are_the_same_crop(source, built):
    _, out = built
    res = load_coco(out / "annotations.json")
    for img in res["images"]:
        x0, y0, w, h = img["crop"]
        original = cv2.imread(str(source[1] / img["file_name"]))
        cropped = cv2.imread(str(out / "images" / img["file_name"]))
        np.testing.assert_array_equal(cropped, original[y0:y0 + h, x0:x0 + w])


def _files(out: Path) -> dict:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_same_seed_same_output_other_seed_differs(source, built, tmp_path):
    _, out = built
    _build(source, tmp_path / "again", seed=0)
    assert _files(tmp_path / "again") == _files(out)
    _build(source, tmp_path / "other", seed=1)
    crops = lambda d: [e["crop"] for e in json.loads((d / "annotations.json").read_text())["images"]]
    assert crops(tmp_path / "other") != crops(out)


def test_missing_images_are_counted_not_fatal(source, tmp_path):
    ann, images = source
    partial = tmp_path / "partial"
    partial.mkdir()
    names = sorted(p.name for p in images.iterdir())
    for name in names[1:]:
        (partial / name).write_bytes((images / name).read_bytes())
    (partial / names[2]).write_bytes(b"not an image")
    summary = make_cropcoco(ann, partial, tmp_path / "out", progress=False, verbose=False)
    assert summary["images_missing"] == 2
    assert set(summary["missing_files"]) == {names[0], names[2]}
    res = load_coco(tmp_path / "out" / "annotations.json")
    assert len(res["images"]) == len(names) - 2
    assert {a["image_id"] for a in res["annotations"]} <= {e["id"] for e in res["images"]}


def test_unreadable_annotation_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(InputError):
        make_cropcoco(bad, tmp_path, tmp_path / "out", progress=False, verbose=False)
    with pytest.raises(InputError):
        make_cropcoco(tmp_path / "nope.json", tmp_path, tmp_path / "out", progress=False, verbose=False)


def test_crop_annotation_drops_instances_without_evidence():
    kpts = [0.0] * 51
    for i, (x, y) in enumerate([(10, 10), (12, 30), (14, 50), (90, 90)]):
        kpts[3 * i:3 * i + 3] = [x, y, 2]
    ann = {"id": 1, "image_id": 1, "bbox": [5.0, 5.0, 90.0, 90.0], "area": 4000.0, "keypoints": kpts}
    new, pushed = crop_annotation(ann, (0, 0, 50, 60), min_in_image=3)
    assert pushed == 1 and new["keypoints"][9:12] == [90.0, 90.0, 3]
    assert new["bbox"] == [5.0, 5.0, 45.0, 55.0]
    assert new["area"] == pytest.approx(4000.0 * (45 * 55) / (90 * 90))
    assert crop_annotation(ann, (0, 0, 13, 60), min_in_image=3) == (None, "evidence")
    assert crop_annotation(ann, (96, 0, 120, 60)) == (None, "outside")


@settings(max_examples=200, deadline=None)
@given(size=st.tuples(st.integers(64, 800), st.integers(64, 800)),
       rel=st.tuples(st.floats(0, 1), st.floats(0, 1), st.floats(0, 1), st.floats(0, 1)),
       seed=st.integers(0, 2**31))
def test_choose_crop_stays_in_the_image_and_cuts_the_person(size, rel, seed):
    width, height = size
    bw, bh = 40 + rel[2] * (width - 40), 40 + rel[3] * (height - 40)
    bx, by = rel[0] * (width - bw), rel[1] * (height - bh)
    rng = np.random.default_rng(seed)
    x0, y0, x1, y1 = choose_crop(rng, width, height, [bx, by, bw, bh])
    assert all(isinstance(v, int) for v in (x0, y0, x1, y1))
    assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
    assert x1 - x0 >= 16 and y1 - y0 >= 16
    cut = x0 > bx or y0 > by or x1 < bx + bw or y1 < by + bh
    assert cut, "at least one crop side passes through the person's box"
    # a crop without a person keeps at least half of each side
    x0, y0, x1, y1 = choose_crop(rng, width, height, None)
    assert x1 - x0 >= width // 2 and y1 - y0 >= height // 2


def test_cli_cropcoco_on_the_fixture(tmp_path):
    out = tmp_path / "cc"
    proc = subprocess.run([sys.executable, "-m", "probpose_core.cli", "cropcoco",
                           "--ann", str(FIXTURE / "annotations.json"), "--images", str(FIXTURE / "images"),
                           "--out", str(out), "--seed", "3"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "before" in proc.stdout and "after" in proc.stdout and "activation window" in proc.stdout
    res = load_coco(out / "annotations.json")
    assert len(list((out / "images").glob("*.png"))) == len(res["images"]) == 6
    bad = subprocess.run([sys.executable, "-m", "probpose_core.cli", "cropcoco", "--ann", str(tmp_path / "x.json"),
                          "--images", str(tmp_path), "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("probpose: error:") and "Traceback" not in bad.stderr


# --- the synthetic generator -------------------------------------------------------------

def test_synthetic_is_seeded_and_follows_both_conventions():
    exo, images = make_synthetic_coco(num_images=5, seed=4)
    again, images_again = make_synthetic_coco(num_images=5, seed=4)
    assert exo == again and all(np.array_equal(a, b) for a, b in zip(images, images_again))
    assert make_synthetic_coco(num_images=5, seed=5)[0]["annotations"] != exo["annotations"]
    coco = to_convention(exo, "coco")
    assert len(coco["annotations"]) == len(exo["annotations"])
    for img, entry in zip(images, exo["images"]):
        assert img.shape == (entry["height"], entry["width"], 3) and img.dtype == np.uint8
    for a_exo, a_coco in zip(exo["annotations"], coco["annotations"]):
        k_exo, k_coco = keypoints_array(a_exo), keypoints_array(a_coco)
        assert a_exo["iscrowd"] == 0 and a_exo["num_keypoints"] == 17
        inside = in_image(k_exo[:, :2], 320, 240)
        assert np.all(np.where(inside, np.isin(k_exo[:, 2], (1, 2)), k_exo[:, 2] == 3))
        assert np.all(k_coco[~inside] == 0) and np.array_equal(k_coco[inside], k_exo[inside])
        assert a_coco["num_keypoints"] == int(inside.sum()) >= 4
        x, y, w, h = a_exo["bbox"]
        assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 240 and 0 < a_exo["area"] <= w * h
    assert 1 <= max(np.bincount([a["image_id"] for a in exo["annotations"]])) <= 3
    vis = np.concatenate([keypoints_array(a)[:, 2] for a in exo["annotations"]])
    assert {1, 2, 3} <= set(vis.tolist())


def test_fixture_is_the_generator_output():
    data = load_coco(FIXTURE / "annotations.json")
    expected, _ = make_synthetic_coco(num_images=len(data["images"]), seed=0)
    assert [a["keypoints"] for a in data["annotations"]] == [a["keypoints"] for a in expected["annotations"]]
    assert all((FIXTURE / "images" / e["file_name"]).is_file() for e in data["images"])
    size = sum(p.stat().st_size for p in FIXTURE.rglob("*") if p.is_file())
    assert size < 1_000_000
