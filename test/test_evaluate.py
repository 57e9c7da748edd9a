"""training.evaluate: predictions through the pipeline, metrics equal to the evaluation module
and to pycocotools, detections files, GT-instance calibration pass, CLI outputs and errors.

Most tests use an *oracle runner*: a Runner that recognises each crop of the synthetic set
(by its bytes) and answers with maps built from that instance's jittered ground truth, so the
metrics are far from zero and the pipeline, file writing and scoring are exercised for real.
"""
import hashlib
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.codec import ProbMapCodec
from probpose_core.data.coco import load_coco
from probpose_core.data.instances import load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.evaluation import evaluate, load_gt, load_predictions
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.image_io import read_image
from probpose_core.pipeline import Pipeline
from training.evaluate import evaluate_model, gt_outputs, keypoint_metrics, logits_runner, main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_coco(root, num_images=3, seed=3)
    return root / "annotations.json", root / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = cnn_config()
    model = build_model(config).eval()
    with torch.no_grad():  # structured maps instead of near-uniform ones (init std 0.001)
        model.head.final_layer.weight.mul_(300.0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model, config, presence_threshold=0.3)


class OracleRunner:
    """Maps centred on a jittered copy of each GT instance's keypoints, presence from the
    presence target with noise; looked up by the crop's bytes (no flip test)."""

    input_size = (192, 256)
    max_batch = 64

    def __init__(self, ann, images, seed=0, threshold=0.3):
        self.meta = {"presence_threshold": threshold}
        codec, rng = ProbMapCodec(), np.random.default_rng(seed)
        pipe = Pipeline(self, codec=codec)
        self.table = {}
        for inst in load_instances(ann)[0]:
            crop, center, scale = pipe.crops(read_image(images / inst.file_name), inst.bbox[None])
            kpts = inst.keypoints[None, :, :2] + rng.normal(scale=0.04 * np.sqrt(inst.area), size=(1, NUM_KEYPOINTS, 2))
            t = codec.encode(kpts, inst.keypoints[None, :, 2].astype(int), [inst.area], center, scale)
            maps = t["oks_maps"][0] / np.maximum(t["oks_maps"][0].sum(axis=(1, 2), keepdims=True), 1e-12)
            presence = np.clip(0.15 + 0.7 * t["presence"][0] + rng.normal(scale=0.15, size=NUM_KEYPOINTS), 0, 1)
            self.table[self.key(crop[0])] = {"prob_maps": maps.astype(np.float32), "presence": presence,
                                             "visibility": presence, "oks_quality": np.full(NUM_KEYPOINTS, 0.8)}

    @staticmethod
    def key(crop) -> str:
        return hashlib.sha1(np.ascontiguousarray(crop).tobytes()).hexdigest()

    def run(self, images):
        found = [self.table[self.key(img)] for img in images]
        return {k: np.stack([f[k] for f in found]).astype(np.float32) for k in found[0]}


@pytest.fixture(scope="module")
def oracle(dataset):
    return OracleRunner(*dataset)


def test_metrics_equal_evaluation_module_and_pycocotools(dataset, oracle, tmp_path):
    ann, images = dataset
    metrics = evaluate_model(oracle, ann, images, flip_test=False, out_dir=tmp_path, progress=False)
    gt = load_gt(ann)
    preds = load_predictions(tmp_path / "predictions.json", gt)
    assert len(preds) == len(gt["annotations"])  # one prediction per GT box
    assert metrics["AP"] > 0.3 and metrics["Ex-AP"] > 0.3  # far from a trivial zero
    best = evaluate(gt, preds, extended=True, presence_threshold="best")
    for key, value in best.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    at_model = evaluate(gt, preds, extended=True, presence_threshold=0.3)
    assert metrics["checkpoint_presence_threshold"] == 0.3
    for key, value in metrics["at_checkpoint_threshold"].items():
        assert value == pytest.approx(at_model[key], abs=1e-12), key
    assert max(ap for _, ap in metrics["presence_threshold_curve"]) == pytest.approx(metrics["Ex-AP"])
    from coco_reference import pycocotools_stats

    for key, value in pycocotools_stats(gt, preds).items():
        assert metrics[key] == pytest.approx(value, abs=1e-9), key


def test_metrics_json_and_plots_written(dataset, oracle, tmp_path):
    ann, images = dataset
    metrics = evaluate_model(oracle, ann, images, flip_test=False, out_dir=tmp_path, progress=False)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["Ex-AP"] == pytest.approx(metrics["Ex-AP"])
    assert saved["areas"]["keypoints"] == sum(sum(v > 0 for v in a["keypoints"][2::3])
                                              for a in load_coco(ann)["annotations"])
    for name in ("presence_reliability.png", "map_coverage.png", "presence_threshold.png"):
        assert (tmp_path / name).read_bytes()[:8] == PNG_MAGIC
    presence = saved["calibration"]["presence"]
    assert presence["keypoints"] == saved["areas"]["keypoints"]  # every annotated keypoint judged
    assert 0 <= presence["ece"] <= 1 and 0 <= presence["brier"] <= 1
    maps = saved["calibration"]["maps"]
    assert len(maps["coverage"]) == len(maps["grid"]) and maps["keypoints"] > 0


def _detections(ann, path, drop=(), jitter=0.0, seed=0):
    rng = np.random.default_rng(seed)
    dets = [{"image_id": a["image_id"], "category_id": 1, "score": float(rng.uniform(0.5, 1.0)),
             "bbox": [float(v) + (rng.normal(scale=jitter) if jitter else 0.0) for v in a["bbox"]]}
            for a in load_coco(ann)["annotations"] if a["id"] not in drop]
    dets.append({"image_id": dets[0]["image_id"], "category_id": 2, "score": 0.9, "bbox": [1, 1, 20, 40]})
    path.write_text(json.dumps(dets))
    return dets


def test_detections_equal_to_gt_boxes_give_the_same_poses(dataset, oracle, tmp_path):
    ann, images = dataset
    gt_run = evaluate_model(oracle, ann, images, flip_test=False, out_dir=tmp_path / "gt", progress=False)
    dets = _detections(ann, tmp_path / "dets.json")
    det_run = evaluate_model(oracle, ann, images, detections=tmp_path / "dets.json", flip_test=False,
                             out_dir=tmp_path / "det", progress=False)
    by_gt = json.loads((tmp_path / "gt" / "predictions.json").read_text())
    by_det = json.loads((tmp_path / "det" / "predictions.json").read_text())
    assert len(by_det) == len(dets) - 1  # the non-person detection is skipped
    for g, d, det in zip(by_gt, by_det, dets):
        assert d["keypoints"] == pytest.approx(g["keypoints"])
        assert d["score"] == pytest.approx(det["score"] * g["score"])  # box score times pose quality
    assert det_run["settings"]["detections"].endswith("dets.json")
    # the ranking changed with the scores, the localisation did not: recall is the same
    assert det_run["AR"] == pytest.approx(gt_run["AR"])


def test_missed_detection_lowers_recall(dataset, oracle, tmp_path):
    ann, images = dataset
    first = load_coco(ann)["annotations"][0]["id"]
    _detections(ann, tmp_path / "dets.json", drop={first})
    full = evaluate_model(oracle, ann, images, flip_test=False, progress=False)
    missing = evaluate_model(oracle, ann, images, detections=tmp_path / "dets.json", flip_test=False, progress=False)
    assert missing["AR"] < full["AR"]
    assert missing["counts"]["predictions"] == full["counts"]["predictions"] - 1


def test_gt_outputs_targets_and_logits(dataset, checkpoint):
    ann, images = dataset
    model, meta = load_checkpoint(checkpoint)
    instances, _ = load_instances(ann, images_dir=images)
    instances = instances[::2] + instances[1::2]  # images interleaved: rows must still follow this order
    out = gt_outputs(logits_runner(model), instances, images, logits=True)
    n = len(instances)
    assert out["map_logits"].shape == (n, NUM_KEYPOINTS, 64, 48) and out["presence"].shape == (n, NUM_KEYPOINTS)
    codec = ProbMapCodec()
    for i, inst in enumerate(instances):  # targets are the codec's for the pipeline's window of the GT box
        from probpose_core.geometry import bbox_to_center_scale

        center, scale = bbox_to_center_scale(inst.bbox[None])
        t = codec.encode(inst.keypoints[None, :, :2], inst.keypoints[None, :, 2].astype(int), [inst.area],
                         center, scale)
        np.testing.assert_array_equal(out["presence_target"][i], t["presence"][0])
        np.testing.assert_allclose(out["keypoints_map"][i], t["keypoints_map"][0])
    # the maps' credible intervals are those of sparsemax(logits / head temperature)
    from probpose_core.calibration import credible_interval, temperature_maps

    lo, hi = credible_interval(temperature_maps(out["map_logits"], model.head.temperature), out["keypoints_map"])
    np.testing.assert_allclose(out["level_lo"], lo, atol=1e-5)
    np.testing.assert_allclose(out["level_hi"], hi, atol=1e-5)
    assert ((out["level_lo"] > 0.02) & (out["level_lo"] < 0.98)).any()  # structured maps: a real test


@pytest.fixture(scope="module")
def cli_run(dataset, checkpoint, tmp_path_factory):
    """(exit code, printed text, output folder) of one CLI run on the random checkpoint."""
    import contextlib
    import io

    ann, images = dataset
    out = tmp_path_factory.mktemp("cli")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        rc = main(["--checkpoint", str(checkpoint), "--ann", str(ann), "--images", str(images),
                   "--out", str(out), "--quiet", "--no-flip-test"])
    return rc, printed.getvalue(), out


def test_cli_writes_metrics_predictions_and_plots(cli_run):
    rc, printed, out = cli_run
    assert rc == 0
    assert "Ex-OKS" in printed and "presence calibration" in printed and "A-E areas" in printed
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["settings"]["flip_test"] is False and saved["checkpoint_presence_threshold"] == 0.3
    for name in ("presence_reliability.png", "map_coverage.png", "presence_threshold.png"):
        assert (out / name).read_bytes()[:8] == PNG_MAGIC
    assert len(json.loads((out / "predictions.json").read_text())) == saved["counts"]["predictions"] > 0


def test_in_memory_model_agrees_with_checkpoint(dataset, checkpoint, cli_run):
    ann, images = dataset
    saved = json.loads((cli_run[2] / "metrics.json").read_text())
    model, _ = load_checkpoint(checkpoint)
    model.train()
    in_memory = evaluate_model(model, ann, images, flip_test=False, progress=False)
    assert model.training  # handed back in the mode it came in
    for key in ("AP", "AR", "Ex-AP", "Ex-AR"):
        assert in_memory[key] == pytest.approx(saved[key], abs=1e-9)
    assert in_memory["calibration"]["maps"]["calibration_error"] == pytest.approx(
        saved["calibration"]["maps"]["calibration_error"], abs=1e-6)


def test_onnx_model_with_ort(dataset, checkpoint, cli_run, tmp_path, monkeypatch):
    from probpose_core.runtime import onnx_for_checkpoint

    ann, images = dataset
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))
    onnx = onnx_for_checkpoint(checkpoint, tmp_path / "onnx")
    by_ort = evaluate_model(onnx, ann, images, flip_test=False, runtime="ort", progress=False)
    by_torch = json.loads((cli_run[2] / "metrics.json").read_text())
    assert by_ort["checkpoint_presence_threshold"] == 0.3  # from the ONNX sidecar
    assert by_ort["counts"] == by_torch["counts"]
    # the presence branch does not depend on the Sparsemax variant: same reliability numbers
    for key in ("ece", "brier"):
        assert by_ort["calibration"]["presence"][key] == pytest.approx(by_torch["calibration"]["presence"][key],
                                                                       abs=1e-4)


@pytest.mark.parametrize("problem", ["missing images", "malformed ann", "missing checkpoint", "malformed detections"])
def test_cli_bad_input_one_line_exit_2(dataset, checkpoint, tmp_path, capsys, problem):
    ann, images = dataset
    args = {"--checkpoint": str(checkpoint), "--ann": str(ann), "--images": str(images)}
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": [')
    if problem == "missing images":
        args["--images"] = str(tmp_path / "nowhere")
    elif problem == "malformed ann":
        args["--ann"] = str(bad)
    elif problem == "missing checkpoint":
        args["--checkpoint"] = str(tmp_path / "none.pt")
    else:
        args["--detections"] = str(bad)
    rc = main([v for kv in args.items() for v in kv] + ["--out", str(tmp_path / "out"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("evaluate: error: ") and "\n" not in err


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**31), threshold=st.floats(0.0, 1.0))
def test_keypoint_metrics_equal_evaluate(dataset, seed, threshold):
    """keypoint_metrics (one Ex preparation for both thresholds) == evaluation.evaluate."""
    ann, _ = dataset
    gt = load_gt(ann)
    rng = np.random.default_rng(seed)
    preds = []
    for a in gt["annotations"]:
        if rng.random() < 0.2:
            continue  # a missed person
        kpts = np.asarray(a["keypoints"], dtype=np.float64).reshape(-1, 3)
        xy = kpts[:, :2] + rng.normal(scale=rng.uniform(1, 15), size=(NUM_KEYPOINTS, 2))
        presence = np.clip((kpts[:, 2] > 0) * 0.6 + rng.normal(scale=0.25, size=NUM_KEYPOINTS), 0, 1)
        preds.append({"image_id": a["image_id"], "category_id": 1, "score": float(rng.random()),
                      "keypoints": [float(v) for row in np.column_stack([xy, presence]) for v in row]})
    metrics = keypoint_metrics(gt, preds, threshold)
    best = evaluate(gt, preds, extended=True, presence_threshold="best")
    at = evaluate(gt, preds, extended=True, presence_threshold=threshold)
    for key, value in best.items():
        assert metrics[key] == pytest.approx(value, abs=1e-12), key
    for key, value in metrics["at_checkpoint_threshold"].items():
        assert value == pytest.approx(at[key], abs=1e-12), key
