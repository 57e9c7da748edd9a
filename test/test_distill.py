"""training.distill / training.teachers: the agreement rule, sources, held-out refusal, output the
trainer reads, resume; crop geometry of the teachers. Stand-in teachers and detector, so no ONNX
file and no ../shared data are needed; the checks on the real teachers skip without them."""
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from probpose_core.codec import AREA_FACTOR
from probpose_core.data import load_instances
from probpose_core.data.coco import load_coco
from probpose_core.data.dataset import TopDownDataset
from probpose_core.keypoints import SIGMAS
from training import agreement, distill, teachers
from training.distill import Rule, Source, agree, person_keypoints

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
TEACHERS = ROOT / "out" / "build_models" / "teachers"
BOX = [40.0, 10.0, 60.0, 100.0]
# a standing figure inside BOX (x, y) for the 17 COCO keypoints
SKELETON = np.array([[70, 20], [73, 17], [67, 17], [76, 19], [64, 19], [80, 35], [60, 35], [84, 55], [56, 55],
                     [86, 72], [54, 72], [76, 70], [64, 70], [77, 88], [63, 88], [78, 105], [62, 105]], float)
SHIFTED = tuple(range(11, 17))  # the keypoints the second stand-in teacher gets wrong


class FixedTeacher:
    """A stand-in teacher: SKELETON relative to the box, plus ``offset`` on ``shifted`` keypoints;
    counts its calls."""

    def __init__(self, name, offset=0.0, shifted=(), score=0.9):
        self.name, self.offset, self.shifted, self.score, self.calls = name, offset, shifted, score, 0

    def predict(self, frame, box):
        self.calls += 1
        out = np.empty((17, 3))
        out[:, :2] = SKELETON - [BOX[0], BOX[1]] + [box[0], box[1]]
        out[list(self.shifted), 0] += self.offset
        out[:, 2] = self.score
        return out


class FixedDetector:
    name = "fixed"
    score_threshold = 0.5

    def __init__(self):
        self.calls = 0

    def detect(self, frame):
        self.calls += 1
        return np.array([BOX, [0, 0, 10, 10]]), np.array([0.9, 0.8])  # the second box is below --min-box


def pair():
    return [FixedTeacher("a"), FixedTeacher("b", offset=25.0, shifted=SHIFTED)]


def write_video(path: Path, frames: int, size=(160, 120)):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 40, np.uint8)
        cv2.rectangle(img, (40 + i % 5, 10), (100, 110), (200, 180, 160), -1)
        writer.write(img)
    writer.release()


# ---- the rule ----------------------------------------------------------------------------------

def test_agree_keeps_exactly_where_the_teachers_agree():
    a, b = FixedTeacher("a"), FixedTeacher("b", offset=25.0, shifted=SHIFTED)
    preds = np.stack([a.predict(None, BOX), b.predict(None, BOX)])
    xy, keep, oks = agree(preds, BOX, 160, 120, Rule(tau=0.5, min_score=0.3))
    assert keep.tolist() == [k not in SHIFTED for k in range(17)]
    area = AREA_FACTOR * BOX[2] * BOX[3]
    np.testing.assert_allclose(oks[list(SHIFTED)], np.exp(-25.0 ** 2 / (2 * area * (2 * SIGMAS[list(SHIFTED)]) ** 2)))
    np.testing.assert_allclose(xy, SKELETON)  # the first teacher's points
    xy = agree(preds, BOX, 160, 120, Rule(tau=0.5, point="mean"))[0]
    np.testing.assert_allclose(xy[11:, 0], SKELETON[11:, 0] + 12.5)  # the mean of the two
    # tau right at a keypoint's OKS keeps it, just above drops it
    k = 11
    assert agree(preds, BOX, 160, 120, Rule(tau=oks[k]))[1][k]
    assert not agree(preds, BOX, 160, 120, Rule(tau=oks[k] + 1e-9))[1][k]


def test_agree_min_score_and_image_border():
    preds = np.stack([FixedTeacher("a").predict(None, BOX), FixedTeacher("b", score=0.2).predict(None, BOX)])
    assert not agree(preds, BOX, 160, 120, Rule(min_score=0.3))[1].any()
    assert agree(preds, BOX, 160, 120, Rule(min_score=0.2))[1].all()
    # the ankles (y = 105) lie outside a 100-pixel-high image: never emitted
    keep = agree(preds, BOX, 160, 100, Rule(min_score=0.0))[1]
    assert keep.tolist() == [k < 15 for k in range(17)]


def test_person_rule_and_labels_win():
    preds = np.stack([t.predict(None, BOX) for t in pair()])
    kp = person_keypoints(preds, BOX, 160, 120, Rule(tau=0.5, min_keypoints=11))
    assert kp is not None and (kp[:, 2] == 2).sum() == 11 and (kp[11:, 2] == 0).all()
    assert person_keypoints(preds, BOX, 160, 120, Rule(tau=0.5, min_keypoints=12)) is None
    labels = np.zeros((17, 3))
    labels[5:] = np.c_[SKELETON[5:] + 3.0, np.full(12, 2)]  # human labels 3 px off the teachers
    kp = person_keypoints(preds, BOX, 160, 120, Rule(tau=0.5, min_keypoints=6), labels)
    np.testing.assert_allclose(kp[5:], labels[5:])  # labels win, also where teachers disagree
    np.testing.assert_allclose(kp[:5, :2], SKELETON[:5])  # the face filled by the agreeing teachers
    assert (kp[:5, 2] == 2).all()
    kp = person_keypoints(preds, BOX, 160, 120, Rule(tau=0.5, min_keypoints=6), labels, fill=(0,))
    assert kp[0, 2] == 2 and (kp[1:5, 2] == 0).all()


# ---- the chain on a synthetic video and labelled images ---------------------------------------

def labelled_set(tmp_path: Path) -> tuple[Path, Path]:
    images = tmp_path / "lsp" / "images"
    images.mkdir(parents=True)
    anns, imgs = [], []
    for i in range(2):
        cv2.imwrite(str(images / f"im{i:05d}.jpg"), np.full((120, 160, 3), 90, np.uint8))
        kp = np.zeros((17, 3))
        kp[5:] = np.c_[SKELETON[5:] + 2.0, np.full(12, 2)]
        imgs.append({"id": 10 + i, "file_name": f"im{i:05d}.jpg", "width": 160, "height": 120})
        anns.append({"id": 100 + i, "image_id": 10 + i, "category_id": 1, "iscrowd": 0, "bbox": BOX,
                     "area": 3000.0, "keypoints": kp.ravel().tolist(), "num_keypoints": 12})
    ann = tmp_path / "lsp" / "lspet.json"
    ann.write_text(json.dumps({"images": imgs, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}))
    return images, ann


def test_chain_video_and_labelled_resume(tmp_path):
    video = tmp_path / "clip.avi"
    write_video(video, 12)
    images, ann = labelled_set(tmp_path)
    out = tmp_path / "out"
    ts, det = pair(), FixedDetector()
    sources = [Source("video", video), Source("labelled", images, ann)]
    counts = distill.distill(sources, out, ts, det, Rule(tau=0.5, min_score=0.3, min_keypoints=6), every=4,
                             progress=False)
    assert counts["frames"] == 3 + 2 and counts["people_kept"] == 5
    assert sorted(p.name for p in (out / "images").glob("*.jpg")) == [f"clip_{i:06d}.jpg" for i in (0, 4, 8)]
    data = load_coco(out / "pseudo_labels.json")
    by_source = {}
    for a in data["annotations"]:
        by_source.setdefault(a["source"], []).append(np.array(a["keypoints"]).reshape(17, 3))
    assert len(by_source["teachers"]) == 3 and len(by_source["lspet+teachers"]) == 2
    for kp in by_source["teachers"]:
        assert (kp[:11, 2] == 2).all() and (kp[11:, 2] == 0).all()  # the disagreeing hips/knees/ankles dropped
    for kp in by_source["lspet+teachers"]:
        np.testing.assert_allclose(kp[5:, :2], SKELETON[5:] + 2.0)  # labels win
        assert (kp[:5, 2] == 2).all() and (kp[5:, 2] == 2).all()
    # the trainer's reader finds every image (frames and symlinked labelled images)
    instances, skipped = load_instances(out / "pseudo_labels.json", min_keypoints=1, images_dir=out / "images")
    assert len(instances) == 5 and not skipped
    assert {i.file_name for i in instances} >= {"lspet/im00000.jpg", "clip_000004.jpg"}
    assert (out / "images" / "lspet" / "im00000.jpg").is_symlink()
    sample = TopDownDataset(instances, out / "images")[4]  # the trainer's dataset reads through the symlink
    assert sample["image"].shape == (3, 256, 192) and sample["keypoint_flags"].tolist() == [2] * 17
    # resume: nothing is run again; a new rule only re-applies the cached outputs
    calls = [t.calls for t in ts] + [det.calls]
    distill.distill(sources, out, ts, det, Rule(tau=0.0, min_score=0.3, min_keypoints=6), every=4, progress=False)
    assert [t.calls for t in ts] + [det.calls] == calls
    data = load_coco(out / "pseudo_labels.json")
    assert all(a["num_keypoints"] == 17 for a in data["annotations"])


def test_vtest_frames_600_on_are_refused(tmp_path):
    video = tmp_path / "vtest.avi"
    write_video(video, 605, size=(32, 32))
    assert [i for i, _ in distill.video_frames(video, 100)] == [0, 100, 200, 300, 400, 500]
    assert [i for i, _ in distill.video_frames(tmp_path.joinpath("vtest.avi"), 1)][-1] == 599
    other = tmp_path / "other.avi"
    video.rename(other)
    assert [i for i, _ in distill.video_frames(other, 100)][-1] == 600


def test_held_out_stills_are_refused(tmp_path):
    stills = tmp_path / "stills"
    stills.mkdir()
    for name in ("bus.jpg", "mine.jpg"):
        cv2.imwrite(str(stills / name), np.full((120, 160, 3), 90, np.uint8))
    out = tmp_path / "out"
    counts = distill.distill([Source("images", stills)], out, pair(), FixedDetector(), Rule(), progress=False)
    assert counts["frames"] == 1
    assert [i["file_name"] for i in load_coco(out / "pseudo_labels.json")["images"]] == ["stills/mine.jpg"]


def test_cli(tmp_path, monkeypatch, capsys):
    video_dir = tmp_path / "videos"
    video_dir.mkdir()
    write_video(video_dir / "one.avi", 6)
    write_video(video_dir / "two.avi", 6)
    monkeypatch.setattr(distill, "make_teachers", lambda *a, **k: pair())
    monkeypatch.setattr(distill, "make_detector_for", lambda *a, **k: FixedDetector())
    out = tmp_path / "out"
    assert distill.main(["--out", str(out), "--video", str(video_dir), "--every", "3", "--tau", "0.5",
                         "--no-progress"]) == 0
    assert "people seen 4, kept 4" in capsys.readouterr().out
    assert len(load_coco(out / "pseudo_labels.json")["images"]) == 4
    with pytest.raises(SystemExit):
        distill.main(["--ann", "x.json"])  # --ann without its --images


def test_measure_agreement(tmp_path):
    images, ann = labelled_set(tmp_path)
    rows = agreement.measure_agreement(ann, images, tmp_path / "out", pair(), [0.0, 0.5], [0.3], 6, progress=False)
    loose, strict = rows
    assert loose["labelled"] == 24 and loose["kept"] == 24
    assert strict["kept"] == 2 * 6  # shoulders..wrists agree; hips..ankles do not
    assert strict["right_rule"] == 1.0 and strict["kept_unlabelled"] == 2 * 5  # the agreeing face
    assert not list((tmp_path / "out").glob("images/**/*.jpg"))  # measuring writes no training data


# ---- teacher crops -----------------------------------------------------------------------------

def test_crop_maps_points_exactly():
    frame = np.zeros((200, 300, 3), np.uint8)
    frame[120, 80] = 255  # one bright pixel at x=80, y=120
    box = [50.0, 60.0, 80.0, 120.0]
    patch, matrix = teachers.crop(frame, box, 1.25)
    y, x = np.unravel_index(patch[..., 0].argmax(), patch.shape[:2])
    np.testing.assert_allclose(teachers.to_image([x, y], matrix), [80, 120], atol=0.5 * 150 / 256 + 1e-9)
    # the box centre maps to the crop centre; the square side is padding * max(w, h)
    np.testing.assert_allclose(teachers.geometry.apply_affine(matrix, [89.5, 119.5]), [127.5, 127.5])
    np.testing.assert_allclose(matrix[0, 0], 256 / 150)
    turned = teachers.square_affine([100, 100], 50, np.pi / 2)
    np.testing.assert_allclose(teachers.to_image(teachers.geometry.apply_affine(turned, [[3, 7]]), turned), [[3, 7]])


def _shared_or_skip():
    if not (SHARED / "coco_train" / "gt.json").is_file():
        pytest.skip(f"needs {SHARED}/coco_train (the project's shared data)")
    if not (TEACHERS / "movenet-thunder.onnx").is_file() or not (TEACHERS / "blazepose-full.onnx").is_file():
        pytest.skip(f"needs the teacher ONNX files in {TEACHERS} (tools/build_models.sh)")


def test_real_teachers_on_coco_train_people():
    _shared_or_skip()
    gt = json.loads((SHARED / "coco_train" / "gt.json").read_text())
    people = [a for a in teachers.coco_people(gt) if a["num_keypoints"] >= 12][:6]
    g = np.array([a["keypoints"] for a in people]).reshape(-1, 17, 3)
    area = np.array([a["area"] for a in people])[:, None]
    for name, floor in (("movenet", 0.6), ("blazepose", 0.35)):
        pred = np.array(teachers.predict_people(teachers.make_teacher(name, TEACHERS), gt,
                                                SHARED / "coco_train" / "images", people))
        oks = np.exp(-((pred[..., :2] - g[..., :2]) ** 2).sum(-1) / (2 * area * (2 * SIGMAS) ** 2))
        assert oks[g[..., 2] > 0].mean() > floor, name


def test_house_model_teacher_runs_a_shipped_model_on_a_box():
    """HouseModelTeacher (the 'tinypose' teacher's class): a house model through its Pipeline on one
    box -> (17, 3) x, y, presence; a missing model names the file."""
    from probpose_core.shipped import default_pose_model

    teacher = teachers.HouseModelTeacher(default_pose_model(), threads=1, name="shipped")
    frame = np.zeros((240, 320, 3), np.uint8)
    cv2.rectangle(frame, (140, 40), (180, 200), (200, 180, 160), -1)
    pred = teacher.predict(frame, [120, 30, 80, 180])
    assert pred.shape == (17, 3) and np.isfinite(pred).all()
    assert ((pred[:, 2] >= 0) & (pred[:, 2] <= 1)).all()
    assert (pred[:, 0] > 60).all() and (pred[:, 0] < 260).all()  # inside the padded window of the box
    with pytest.raises(FileNotFoundError, match="tinypose_heatmap.onnx"):
        teachers.make_teacher("tinypose", Path("/nonexistent"))


def test_tinypose_teacher_on_coco_train_people():
    if not (SHARED / "coco_train" / "gt.json").is_file():
        pytest.skip(f"needs {SHARED}/coco_train (the project's shared data)")
    if not (TEACHERS / "tinypose_heatmap.onnx").is_file():
        pytest.skip(f"needs {TEACHERS}/tinypose_heatmap.onnx (tools/build_tinypose_student.sh)")
    gt = json.loads((SHARED / "coco_train" / "gt.json").read_text())
    people = [a for a in teachers.coco_people(gt) if a["num_keypoints"] >= 12][:6]
    g = np.array([a["keypoints"] for a in people]).reshape(-1, 17, 3)
    area = np.array([a["area"] for a in people])[:, None]
    pred = np.array(teachers.predict_people(teachers.make_teacher("tinypose", TEACHERS), gt,
                                            SHARED / "coco_train" / "images", people))
    oks = np.exp(-((pred[..., :2] - g[..., :2]) ** 2).sum(-1) / (2 * area * (2 * SIGMAS) ** 2))
    assert oks[g[..., 2] > 0].mean() > 0.7
