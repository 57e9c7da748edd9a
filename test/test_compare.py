"""training.compare_thunder: the in/out-of-window error, the balanced subset, the CropCOCO twin,
the student's per-keypoint pass against gt_outputs, and the whole run on a tiny synthetic set
with an untrained model and a stand-in thunder (an oracle that returns the GT keypoints of a
box). The real-data run (coco_train + MoveNet thunder) is skipped where ../shared or the
teachers are absent (CI)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from probpose_core.codec import ProbMapCodec
from probpose_core.data.coco import keypoints_array, load_coco
from probpose_core.data.instances import load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.runtime.torch_runner import TorchRunner
from training.compare_thunder import (balanced_subset, compare, coverage_at, cropcoco_twin, format_report, inout_error,
                                      inout_summary, limit_set, main, student_scores)
from training.evaluate import gt_outputs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "coco_train"
TEACHERS = REPO / "out" / "build_models" / "teachers"


# ------------------------------------------------------------------------------ in / out error

def test_inout_error_hand_example():
    scores = [0.1, 0.2, 0.3, 0.4, 0.9]
    truth = [0, 0, 1, 0, 1]
    # t=0.1: 3 false positives; 0.2: 2; 0.3: 1 (0.4); 0.4: 0.4 wrong and 0.3 missed; 0.9: 0.3 missed;
    # above 0.9: both positives missed. Best 1/5, lowest threshold 0.3.
    assert inout_error(scores, truth) == (pytest.approx(0.2), pytest.approx(0.3))


def test_inout_error_edges():
    error, t = inout_error([0.2, 0.8, 0.9], [0, 1, 1])
    assert error == 0.0 and 0.2 < t <= 0.8
    error, t = inout_error([0.5, 0.7], [0, 0])  # nothing positive: threshold above the largest score
    assert error == 0.0 and t > 0.7
    assert inout_error([0.3, 0.3], [1, 1]) == (0.0, 0.3)
    assert inout_error([np.nan, 0.4], [0, 1]) == (0.0, 0.4)  # non-finite scores are left out
    assert np.isnan(inout_error([], [])[0])


def test_inout_error_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        scores = np.round(rng.random(n), 1)  # ties
        truth = rng.random(n) < 0.4
        brute = min(np.mean((scores >= t) != truth) for t in np.append(scores, 2.0))
        error, t = inout_error(scores, truth)
        assert error == pytest.approx(brute)
        assert np.mean((scores >= t) != truth) == pytest.approx(error)


def test_balanced_subset():
    truth = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0], bool)
    index = balanced_subset(truth, seed=3)
    assert len(index) == 6 and truth[index].sum() == 3
    assert np.array_equal(index, balanced_subset(truth, seed=3))
    assert balanced_subset(np.ones(4, bool)) is None


def test_inout_summary_ratio():
    truth = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool)
    scalars = {"student_presence": truth * 0.8 + 0.1,  # perfect
               "student_map_max": np.array([0.9, 0.2, 0.9, 0.5, 0.1, 0.9, 0.9, 0.9]),  # 1 error of 8
               "thunder_score": np.array([0.9, 0.9, 0.9, 0.95, 0.1, 0.05, 0.9, 0.9])}  # 2 of 8 at best
    out = inout_summary(scalars, truth, seed=0)
    assert out["all"]["student_map_max"]["error"] == pytest.approx(1 / 8)
    assert out["all"]["thunder_score"]["error"] == pytest.approx(2 / 8)
    assert out["all"]["ratio"] == 0.0
    assert out["balanced"]["keypoints"] == 4 and out["balanced"]["in_window"] == 2
    scalars["student_presence"] = np.array([0.9, 0.9, 0.9, 0.9, 0.95, 0.9, 0.9, 0.9])  # 2 errors at best
    assert inout_summary(scalars, truth)["all"]["ratio"] == pytest.approx(2.0)


def test_coverage_at_reads_the_curve():
    grid = [round(0.05 * i, 10) for i in range(1, 20)]
    cal = {"maps": {"grid": grid, "coverage": [g / 2 for g in grid]}}
    assert coverage_at(cal) == {"0.5": pytest.approx(0.25), "0.9": pytest.approx(0.45)}
    assert coverage_at(None) == {"0.5": None, "0.9": None}


# ------------------------------------------------------------------------------ tiny synthetic set

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_coco(root, num_images=3, seed=5)
    return root / "annotations.json", root / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = cnn_config()
    model = build_model(config).eval()
    with torch.no_grad():  # structured maps instead of near-uniform ones
        model.head.final_layer.weight.mul_(300.0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model, config, presence_threshold=0.3)


class OracleThunder:
    """Stand-in thunder: the GT keypoints of the annotation with this box, score 0.9 for keypoints
    in the image (v 1, 2) and 0.1 for the others (a box it does not know: the box centre, 0.05)."""

    name = "oracle"

    def __init__(self, *ann_paths):
        self.table = {}
        for path in ann_paths:
            for ann in load_coco(path)["annotations"]:
                kpts = keypoints_array(ann)
                self.table[self.key(ann["bbox"])] = np.concatenate(
                    [kpts[:, :2], np.where(np.isin(kpts[:, 2], (1, 2)), 0.9, 0.1)[:, None]], axis=1)
        self.calls = 0

    @staticmethod
    def key(box):
        return tuple(round(float(v), 3) for v in box)

    def predict(self, frame_rgb, box_xywh):
        assert frame_rgb.ndim == 3 and frame_rgb.dtype == np.uint8
        self.calls += 1
        found = self.table.get(self.key(box_xywh))
        if found is None:
            x, y, w, h = box_xywh
            return np.tile([x + w / 2, y + h / 2, 0.05], (17, 1))
        return found.copy()


def test_limit_set(dataset, tmp_path):
    ann, _ = dataset
    assert limit_set(ann, tmp_path / "x.json", None) == Path(ann)
    first = load_coco(limit_set(ann, tmp_path / "first2.json", 2))
    assert [i["id"] for i in first["images"]] == [1, 2]
    assert {a["image_id"] for a in first["annotations"]} <= {1, 2}


def test_cropcoco_twin_is_reused(dataset, tmp_path, capsys):
    ann, images = dataset
    path, img_dir = cropcoco_twin(ann, images, tmp_path / "twin", seed=1, progress=False)
    stamp = path.stat().st_mtime_ns
    assert img_dir.is_dir() and load_coco(path)["info"]["cropcoco"]["seed"] == 1
    assert cropcoco_twin(ann, images, tmp_path / "twin", seed=1, progress=False)[0].stat().st_mtime_ns == stamp
    assert "reusing" in capsys.readouterr().out
    cropcoco_twin(ann, images, tmp_path / "twin", seed=2, progress=False)  # another seed: made again
    assert load_coco(path)["info"]["cropcoco"]["seed"] == 2


def test_student_scores_match_gt_outputs(dataset, checkpoint):
    ann, images = dataset
    model, _ = load_checkpoint(checkpoint)
    runner = TorchRunner(model)
    instances, _ = load_instances(ann, images_dir=images)
    for flip in (False, True):
        mine = student_scores(runner, instances, images, ProbMapCodec(), flip_test=flip)
        ref = gt_outputs(runner, instances, images, flip_test=flip)
        for key in ("presence", "presence_target", "keypoint_weights"):
            np.testing.assert_allclose(mine[key], ref[key], atol=1e-6)
        assert mine["map_max"].shape == ref["presence"].shape
        assert np.all((mine["map_max"] > 0) & (mine["map_max"] <= 1 + 1e-6))


def test_compare_end_to_end(dataset, checkpoint, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))  # the .pt's ONNX export goes here
    ann, images = dataset
    out = tmp_path / "compare"
    twin, _ = cropcoco_twin(ann, images, out / "cropcoco", seed=0, progress=False)
    thunder = OracleThunder(ann, twin)
    result = compare(checkpoint, ann, images, out, thunder=thunder, speed_people=2, speed_repeats=2,
                     progress=False)
    assert json.loads((out / "compare.json").read_text()) == json.loads(json.dumps(result))
    assert result["settings"]["student_runtime"] == "ort"
    for name in ("coco_train", "cropcoco"):
        s = result["sets"][name]
        assert (out / name / "student" / "metrics.json").is_file()
        assert len(json.loads((out / name / "thunder_predictions.json").read_text())) == s["thunder"]["predictions"]
        assert s["thunder"]["AP"] == pytest.approx(1.0)  # the oracle's keypoints are the GT
        assert 0.0 <= s["student"]["AP"] <= 1.0
        assert all(v is None or 0.0 <= v <= 1.0 for v in s["student"]["coverage"].values())
        # thunder's in/out error: the oracle says "in the image"; truth is "in the window"
        instances, _ = load_instances(s["ann"], images_dir=s["images"])
        ref = gt_outputs(TorchRunner(load_checkpoint(checkpoint)[0]), instances, s["images"])
        labelled = ref["keypoint_weights"] > 0
        in_image = np.stack([np.isin(i.keypoints[:, 2], (1, 2)) for i in instances])[labelled]
        truth = ref["presence_target"][labelled] > 0
        expected = min(np.mean(in_image != truth), np.mean(truth), np.mean(~truth))
        inout = s["inout"]["all"]
        assert inout["keypoints"] == labelled.sum() and inout["in_window"] == truth.sum()
        assert inout["thunder_score"]["error"] == pytest.approx(expected)
    assert result["sets"]["cropcoco"]["inout"]["all"]["out_of_window"] > 0
    speed = result["speed"]
    assert speed["people"] == 2 and speed["student_pipeline_ms"] > 0 and speed["thunder_ms"] > 0
    report = format_report(result)
    assert "| student (presence) |" in report and "| thunder |" in report and "| target | value | verdict |" in report
    assert {v["ok"] for v in result["verdicts"]} <= {True, False, None}


def test_cli_missing_teacher_is_one_error_line(dataset, tmp_path, checkpoint, capsys):
    pytest.importorskip("training.teachers")
    ann, images = dataset
    code = main(["--model", str(checkpoint), "--gt", str(ann), "--images", str(images), "--teachers",
                 str(tmp_path / "none"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "movenet-thunder.onnx" in err[0]


@pytest.mark.skipif(not (SHARED / "gt.json").is_file() or not (TEACHERS / "movenet-thunder.onnx").is_file(),
                    reason="needs ../shared/data/coco_train and out/build_models/teachers (not in CI)")
def test_real_data_quick_run(checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))
    code = main(["--model", str(checkpoint), "--gt", str(SHARED / "gt.json"), "--images", str(SHARED / "images"),
                 "--teachers", str(TEACHERS), "--out", str(tmp_path / "o"), "--limit", "3", "--speed-people", "2",
                 "--speed-repeats", "1", "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert result["settings"]["thunder"] == "movenet"
    assert "| thunder |" in capsys.readouterr().out
