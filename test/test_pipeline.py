"""pipeline.py: crops, batching, decode to image coordinates, bad input, predict -> eval."""
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.models.pose_model import NORMALIZE_MEAN, NORMALIZE_STD
from probpose_core.pipeline import Pipeline, box_problems, predict_images

FIXTURE = Path(__file__).resolve().parents[1] / "demo" / "fixture"
MEAN, STD = np.array(NORMALIZE_MEAN, np.float32), np.array(NORMALIZE_STD, np.float32)
IN_W, IN_H = geometry.INPUT_SIZE
HM_W, HM_H = geometry.HEATMAP_SIZE


class DotRunner:
    """Stand-in network: finds the brightest input pixel of each crop and puts a Gaussian blob
    (sum 1) at the matching heatmap point (UDP) in every channel; records batch sizes."""

    name, input_size = "dot", geometry.INPUT_SIZE

    def __init__(self, max_batch=16, presence=0.9):
        self.max_batch, self.presence, self.batches = max_batch, presence, []

    def run(self, images):
        assert images.dtype == np.float32 and images.shape[1:] == (3, IN_H, IN_W)
        assert len(images) <= self.max_batch
        self.batches.append(len(images))
        rgb = images.transpose(0, 2, 3, 1) * STD + MEAN  # undo the normalisation
        n = len(images)
        flat = rgb.sum(-1).reshape(n, -1).argmax(-1)
        u, v = flat % IN_W, flat // IN_W
        hx, hy = u * (HM_W - 1) / (IN_W - 1), v * (HM_H - 1) / (IN_H - 1)
        xs, ys = np.arange(HM_W), np.arange(HM_H)
        blob = np.exp(-((xs[None, None, :] - hx[:, None, None]) ** 2 + (ys[None, :, None] - hy[:, None, None]) ** 2) / 2.0)
        blob /= blob.sum(axis=(1, 2), keepdims=True)
        maps = np.repeat(blob[:, None], NUM_KEYPOINTS, axis=1).astype(np.float32)
        k = np.arange(NUM_KEYPOINTS)
        presence = np.tile(np.where(k % 2 == 0, self.presence, 0.1), (n, 1)).astype(np.float32)
        return {"prob_maps": maps, "presence": presence, "visibility": np.full((n, NUM_KEYPOINTS), 0.6, np.float32),
                "oks_quality": np.tile(np.linspace(0.2, 0.9, NUM_KEYPOINTS), (n, 1)).astype(np.float32)}


def dot_frame(points, shape=(240, 320)):
    frame = np.zeros(shape + (3,), np.uint8)
    for x, y in points:
        frame[int(y), int(x)] = 255
    return frame


def test_crops_are_the_geometry_warp_normalised():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 50, 70], [100, 5, 80, 30]], np.float64)  # second one crosses the border
    images, center, scale = Pipeline(DotRunner()).crops(frame, boxes)
    assert images.shape == (2, 3, IN_H, IN_W) and images.dtype == np.float32 and images.flags.c_contiguous
    for i in range(2):
        c, s = geometry.bbox_to_center_scale(boxes[i])
        np.testing.assert_allclose(center[i], c)
        np.testing.assert_allclose(scale[i], s)
        ref = (geometry.warp_crop(frame, c, s).astype(np.float32) - MEAN) / STD
        np.testing.assert_allclose(images[i], ref.transpose(2, 0, 1), atol=1e-5)
    # outside the frame the crop is black, i.e. -mean/std after normalisation
    np.testing.assert_allclose(images[1, :, -1, -1], -MEAN / STD, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(x=st.floats(20, 300), y=st.floats(20, 220), w=st.floats(20, 150), h=st.floats(20, 150),
       fx=st.floats(0.1, 0.9), fy=st.floats(0.1, 0.9))
def test_keypoints_come_back_in_image_coordinates(x, y, w, h, fx, fy):
    dot = (min(x + fx * w, 319), min(y + fy * h, 239))
    frame = dot_frame([dot])
    [human] = Pipeline(DotRunner(), credible_levels=()).estimate(frame, [[x, y, w, h]])
    _, scale = geometry.bbox_to_center_scale([x, y, w, h])
    tol = 0.5 * scale[0] / (IN_W - 1) + 0.5 * scale[1] / (IN_H - 1) + 1.0  # one input pixel + the frame pixel
    for kp in human.keypoints:
        assert abs(kp.x - int(dot[0])) <= tol and abs(kp.y - int(dot[1])) <= tol
    assert human.bbox == (x, y, w, h)


def test_many_people_are_split_never_dropped():
    rng = np.random.default_rng(1)
    boxes = np.column_stack([rng.uniform(0, 250, 11), rng.uniform(0, 180, 11), rng.uniform(30, 60, (11, 2))])
    scores = rng.uniform(0.3, 1, 11)
    runner = DotRunner(max_batch=5)
    pipe = Pipeline(runner, max_batch=8)
    assert pipe.max_batch == 5  # the runner's own limit wins
    humans = pipe.estimate(dot_frame([(100, 100)]), boxes, scores)
    assert runner.batches == [5, 5, 1]
    assert [h.bbox for h in humans] == [tuple(b) for b in boxes]
    np.testing.assert_allclose([h.box_score for h in humans], scores)


def test_presence_threshold_gates_regions_and_score():
    frame = dot_frame([(100, 120)])
    pipe = Pipeline(DotRunner(presence=0.9), credible_levels=(0.5, 0.9), presence_threshold=0.45)
    [h] = pipe.estimate(frame, [[60, 60, 80, 120]], [0.5])
    quality = np.linspace(0.2, 0.9, NUM_KEYPOINTS)
    for k, kp in enumerate(h.keypoints):
        if k % 2 == 0:
            assert set(kp.regions) == {0.5, 0.9}
            area50, area90 = (sum(abs(_shoelace(p)) for p in kp.regions[q]) for q in (0.5, 0.9))
            assert area90 > area50 > 0
            for poly in kp.regions[0.9]:  # the outline surrounds the keypoint
                assert poly[:, 0].min() <= kp.x <= poly[:, 0].max() and poly[:, 1].min() <= kp.y <= poly[:, 1].max()
        else:
            assert kp.regions == {}
        assert np.all(np.linalg.eigvalsh(kp.covariance) > 0)
    assert h.score == pytest.approx(0.5 * quality[::2].mean())
    # nobody present: the score averages every keypoint's OKS quality
    [h] = Pipeline(DotRunner(presence=0.2)).estimate(frame, [[60, 60, 80, 120]], [0.5])
    assert h.score == pytest.approx(0.5 * quality.mean())
    assert all(kp.regions == {} for kp in h.keypoints)


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * (x @ np.roll(y, 1) - y @ np.roll(x, 1))


def test_flip_test_keeps_symmetric_predictions():
    frame = dot_frame([(150, 100)])
    box = [[110, 50, 90, 130]]
    plain = Pipeline(DotRunner(), credible_levels=()).estimate(frame, box)[0]
    runner = DotRunner()
    flipped = Pipeline(runner, credible_levels=(), flip_test=True).estimate(frame, box)[0]
    assert runner.batches == [1, 1]
    for a, b in zip(plain.keypoints, flipped.keypoints):
        assert abs(a.x - b.x) < 1.0 and abs(a.y - b.y) < 1e-6
    # presence is merged with the flip partner's (FLIP_INDEX swaps left/right channels)
    assert flipped.keypoints[0].presence == pytest.approx(0.9)  # the nose is its own partner
    assert flipped.keypoints[1].presence == pytest.approx((0.1 + 0.9) / 2)  # left_eye (odd) <-> right_eye (even)
    assert flipped.keypoints[6].presence == pytest.approx((0.9 + 0.1) / 2)  # right_shoulder <-> left_shoulder


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((10, 10), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    ([[1, 2, 3]], "numpy"),
])
def test_bad_frames_raise(frame, message):
    with pytest.raises(InputError, match=message):
        Pipeline(DotRunner()).estimate(frame, [[0, 0, 5, 5]])


def test_invalid_boxes_raise_or_are_skipped_with_a_count():
    frame = dot_frame([(50, 50)], shape=(100, 100))
    boxes = [[10, 10, 40, 40], [np.nan, 0, 5, 5], [0, 0, 0, 10], [200, 200, 10, 10], [20, 20, 30, 50]]
    assert box_problems(boxes, frame.shape) == [None, "not finite", "zero or negative size",
                                                "entirely outside the frame", None]
    with pytest.raises(InputError, match=r"3 invalid box\(es\).*#1.*not finite.*#2.*#3"):
        Pipeline(DotRunner()).estimate(frame, boxes)
    pipe = Pipeline(DotRunner(), invalid_boxes="skip")
    humans = pipe.estimate(frame, boxes, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert [h.box_score for h in humans] == [0.1, 0.5]
    assert pipe.last_skipped == [1, 2, 3] and pipe.skipped_total == 3
    assert Pipeline(DotRunner()).estimate(frame, np.zeros((0, 4))) == []
    with pytest.raises(InputError, match=r"\(M, 4\)"):
        Pipeline(DotRunner()).estimate(frame, [1, 2, 3])
    with pytest.raises(InputError, match="2 scores for 1 boxes"):
        Pipeline(DotRunner()).estimate(frame, [[10, 10, 40, 40]], [0.5, 0.6])


def test_bad_settings_and_runner_outputs_raise():
    with pytest.raises(InputError, match="input size"):
        Pipeline(type("R", (DotRunner,), {"input_size": (256, 192)})())
    with pytest.raises(InputError, match="credible"):
        Pipeline(DotRunner(), credible_levels=(1.5,))

    class Broken(DotRunner):
        def run(self, images):
            out = super().run(images)
            del out["visibility"]
            return out

    with pytest.raises(InputError, match="visibility"):
        Pipeline(Broken()).estimate(dot_frame([(5, 5)]), [[0, 0, 50, 50]])


def test_detector_path_skips_its_invalid_boxes():
    class Detector:
        def detect(self, frame):
            return np.array([[10, 10, 60, 90], [0, 0, 0, 0]], np.float64), np.array([0.9, 0.4])

    frame = dot_frame([(40, 50)])
    pipe = Pipeline(DotRunner(), detector=Detector())
    humans = pipe(frame)
    assert len(humans) == 1 and humans[0].box_score == 0.9 and pipe.last_skipped == [1]
    with pytest.raises(InputError, match="no person detector"):
        Pipeline(DotRunner())(frame)


# -- with the real (tiny, random) model ------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_model():
    import torch

    from probpose_core.models.pose_model import build_model, cnn_config

    torch.manual_seed(0)
    return build_model(cnn_config()).eval()


def test_predict_with_gt_boxes_then_eval_extended(tiny_model, tmp_path, capsys):
    from probpose_core.cli import main
    from probpose_core.runtime.torch_runner import TorchRunner

    out = tmp_path / "pred.json"
    results = predict_images(FIXTURE / "images", out, TorchRunner(tiny_model), ann=FIXTURE / "annotations.json",
                             progress=False)
    gt = json.loads((FIXTURE / "annotations.json").read_text())
    assert len(results) == sum(not a.get("iscrowd", 0) for a in gt["annotations"])
    assert {r["image_id"] for r in results} <= {img["id"] for img in gt["images"]}
    assert json.loads(out.read_text()) == results
    code = main(["eval", "--gt", str(FIXTURE / "annotations.json"), "--pred", str(out), "--extended",
                 "--json", str(tmp_path / "eval.json")])
    assert code == 0
    scores = json.loads((tmp_path / "eval.json").read_text())
    assert all(np.isfinite(v) for v in scores.values() if isinstance(v, float))


def test_predict_bad_detector_or_folder_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="unknown detector 'yolo'"):
        predict_images(FIXTURE / "images", tmp_path / "p.json", DotRunner(), detector="yolo")
    with pytest.raises(InputError, match="images folder not found"):
        predict_images(tmp_path / "nope", tmp_path / "p.json", DotRunner(), ann=FIXTURE / "annotations.json")


class OracleRunner:
    """Stand-in network that knows the answers: for the i-th crop it returns sharp maps peaked
    at the i-th instance's ground-truth keypoints (codec.encode), and the encoded presence."""

    name, input_size, max_batch = "oracle", geometry.INPUT_SIZE, 4

    def __init__(self, targets):
        self.targets = list(targets)

    def run(self, images):
        from probpose_core.codec import ProbMapCodec

        out = {k: [] for k in ("prob_maps", "presence", "visibility", "oks_quality")}
        for _ in range(len(images)):
            kpts, bbox = self.targets.pop(0)
            center, scale = geometry.bbox_to_center_scale(bbox)
            enc = ProbMapCodec().encode(kpts[None, :, :2], kpts[None, :, 2], [0.53 * bbox[2] * bbox[3]],
                                        center[None], scale[None])
            maps = enc["oks_maps"][0].astype(np.float64) ** 16
            total = maps.sum(axis=(1, 2), keepdims=True)
            maps = np.where(total > 0, maps / np.where(total > 0, total, 1), 1.0 / maps[0].size)  # far away: flat
            out["prob_maps"].append(maps)
            # the codec's presence target (inside the activation window) is what Ex-OKS scores,
            # given the fixture's pad_to_contain (CropCOCO convention)
            out["presence"].append(enc["presence"][0])
            out["visibility"].append(enc["visibility"][0])
            out["oks_quality"].append(np.full(NUM_KEYPOINTS, 0.9, np.float32))
        return {k: np.stack(v).astype(np.float32) for k, v in out.items()}


def test_predictions_from_perfect_maps_score_near_one(tmp_path):
    """The whole path (GT boxes -> crops -> decode -> COCO results -> eval) loses no accuracy."""
    from probpose_core.evaluation import evaluate, load_gt, load_predictions

    gt = json.loads((FIXTURE / "annotations.json").read_text())
    order = [img["id"] for img in gt["images"]]
    anns = sorted((a for a in gt["annotations"] if not a.get("iscrowd", 0)), key=lambda a: order.index(a["image_id"]))
    targets = [(np.array(a["keypoints"], np.float64).reshape(-1, 3), np.array(a["bbox"], np.float64)) for a in anns]
    out = tmp_path / "pred.json"
    predict_images(FIXTURE / "images", out, OracleRunner(targets), ann=FIXTURE / "annotations.json", progress=False)
    gt_data = load_gt(FIXTURE / "annotations.json")
    results = evaluate(gt_data, load_predictions(out, gt_data), extended=True, presence_threshold=0.45)
    assert results["Ex-AP"] > 0.95


def test_double_heatmap_outputs_use_the_wide_map():
    class WideRunner(DotRunner):
        """Expert map: the dot; wide map (2x window): channel 0 at its top-left pixel, others at the dot."""

        def run(self, images):
            out = super().run(images)
            wide = np.zeros_like(out["prob_maps"])
            wide[:, :, (HM_H - 1) // 2, (HM_W - 1) // 2] = 1.0  # the window centre
            wide[:, 0] = 0.0
            wide[:, 0, 0, 0] = 1.0
            out["wide_prob_maps"] = wide
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    [h] = Pipeline(WideRunner(), credible_levels=()).estimate(frame, [box])
    [plain] = Pipeline(DotRunner(), credible_levels=()).estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    np.testing.assert_allclose([h.keypoints[0].x, h.keypoints[0].y], center - scale, atol=1e-6)  # wide corner
    for a, b in zip(h.keypoints[1:], plain.keypoints[1:]):  # inside the window: the expert map refines
        assert (a.x, a.y) == (b.x, b.y)


def test_torch_and_ort_runtimes_give_the_same_keypoints(tmp_path):
    import torch

    from probpose_core.models.checkpoints import save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(1)
    tiny_model = build_model(cnn_config()).eval()
    with torch.no_grad():  # peaked maps, as a trained model gives (a flat map has a flat expected-OKS optimum)
        tiny_model.head.final_layer.weight.normal_(std=30.0)
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, tiny_model, tiny_model.config)
    # A random model's maps cover most of the 3072 pixels, beyond the default top-k (128) export's
    # exact range; the bisection export is exact for any support.
    onnx_path = export_onnx(tiny_model, tmp_path / "tiny.onnx", sparsemax_method="bisect")
    ann = FIXTURE / "annotations.json"
    by_torch = predict_images(FIXTURE / "images", tmp_path / "t.json", ckpt, ann=ann, runtime="torch", progress=False)
    by_ort = predict_images(FIXTURE / "images", tmp_path / "o.json", onnx_path, ann=ann, runtime="ort", progress=False)
    assert len(by_torch) == len(by_ort) > 0
    for t, o in zip(by_torch, by_ort):
        assert t["image_id"] == o["image_id"]
        kt, ko = np.reshape(t["keypoints"], (-1, 3)), np.reshape(o["keypoints"], (-1, 3))
        np.testing.assert_allclose(ko[:, :2], kt[:, :2], atol=0.01)  # image px
        np.testing.assert_allclose(ko[:, 2], kt[:, 2], atol=1e-4)  # presence
        np.testing.assert_allclose(o["visibilities"], t["visibilities"], atol=1e-4)


def test_heatmap_only_models_take_presence_from_the_map():
    class HeatmapOnlyRunner(DotRunner):
        meta = {"heatmap_only": True}

        def run(self, images):
            out = super().run(images)
            out["presence"][:] = 0.5  # a converted ViTPose: the branch says nothing
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    [h] = Pipeline(HeatmapOnlyRunner(), credible_levels=()).estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    maps = HeatmapOnlyRunner().run(Pipeline(DotRunner()).crops(frame, [box])[0])["prob_maps"]
    _, confidence = ProbMapCodec().decode(maps, center[None], scale[None], area=[0.53 * 60 * 100])
    np.testing.assert_allclose([k.presence for k in h.keypoints], confidence[0], rtol=1e-6)
    assert all(k.presence != 0.5 for k in h.keypoints)


def test_pipeline_needs_no_torch_for_onnx_runtime_deployments():
    import subprocess
    import sys

    code = ("import sys\n"
            "from probpose_core.pipeline import Pipeline\n"
            "from probpose_core.runtime.ort_runner import OrtRunner\n"
            "from probpose_core.detection.onnx_yolo import OnnxYoloDetector\n"
            "class R:\n    input_size, max_batch, name = (192, 256), 4, 'r'\n"
            "Pipeline(R())\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- heatmap baseline models (map_kind="heatmap": a raw "heatmaps" output) ------------------------------

class GaussRunner(DotRunner):
    """A heatmap-baseline stand-in: unnormalised Gaussians (sigma 2) at the dot with a per-keypoint
    peak height (some above 1, some at or below 0) and small negative noise; no ``prob_maps``."""

    PEAKS = np.linspace(-0.2, 1.3, NUM_KEYPOINTS).astype(np.float32)

    def run(self, images):
        out = super().run(images)
        blob = out.pop("prob_maps")
        blob = blob / blob.max(axis=(2, 3), keepdims=True)  # peak 1 at the dot
        noise = np.random.default_rng(len(self.batches)).uniform(-0.02, 0.0, blob.shape).astype(np.float32)
        out["heatmaps"] = blob * self.PEAKS[None, :, None, None] + noise
        return out


def test_heatmap_models_decode_udp_with_presence_from_the_map_maximum():
    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    pipe = Pipeline(GaussRunner(), credible_levels=(0.5,), decode_method="expected_oks")  # heatmaps: always udp
    [h] = pipe.estimate(frame, [box])
    images, center, scale = pipe.crops(frame, [box])
    heatmaps = GaussRunner().run(images)["heatmaps"]
    points, conf = ProbMapCodec().decode(heatmaps, center, scale, method="udp")
    np.testing.assert_allclose([(k.x, k.y) for k in h.keypoints], points[0], atol=1e-9)
    presence = np.array([k.presence for k in h.keypoints])
    np.testing.assert_allclose(presence, np.clip(heatmaps[0].max(axis=(1, 2)), 0, 1), atol=1e-6)
    assert presence[0] == 0.0 and presence[-1] == 1.0  # clipped
    np.testing.assert_allclose([k.oks_quality for k in h.keypoints], np.clip(conf[0], 0, 1), atol=1e-6)
    assert 0 < sum(presence >= pipe.presence_threshold) < NUM_KEYPOINTS
    for k, kp in enumerate(h.keypoints):
        assert (0.5 in kp.regions) == (presence[k] >= pipe.presence_threshold)
        if presence[k] >= pipe.presence_threshold:  # a real peak: the dot, its region, a finite covariance
            assert abs(kp.x - 130) <= 1.5 and abs(kp.y - 110) <= 1.5
            assert kp.regions[0.5] and np.all(np.isfinite(kp.covariance))


def test_read_heatmaps_makes_a_distribution_of_any_heatmap():
    from probpose_core.pipeline import read_heatmaps

    rng = np.random.default_rng(3)
    heatmaps = rng.normal(size=(2, NUM_KEYPOINTS, HM_H, HM_W)).astype(np.float32)
    heatmaps[1, 3] = -1.0  # nothing positive: uniform
    center, scale = np.array([[50.0, 60.0]] * 2), np.array([[90.0, 120.0]] * 2)
    points, presence, quality, prob_maps = read_heatmaps(ProbMapCodec(), heatmaps, center, scale)
    assert points.shape == (2, NUM_KEYPOINTS, 2) and presence.shape == quality.shape == (2, NUM_KEYPOINTS)
    np.testing.assert_allclose(prob_maps.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    assert (prob_maps >= 0).all() and np.allclose(prob_maps[1, 3], 1.0 / (HM_H * HM_W))
    np.testing.assert_array_equal(prob_maps[0, 0] > 0, heatmaps[0, 0] > 0)
    assert presence[1, 3] == 0.0 and ((quality >= 0) & (quality <= 1)).all()


def test_heatmap_model_through_torch_onnx_export_and_ort(tmp_path):
    import onnx
    import torch

    from probpose_core.models.checkpoints import save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx, parity_report
    from probpose_core.runtime.ort_runner import OrtRunner
    from probpose_core.runtime.torch_runner import TorchRunner

    torch.manual_seed(2)
    model = build_model(cnn_config(map_kind="heatmap")).eval()
    with torch.no_grad():  # peaked heatmaps, as a trained model gives
        model.head.final_layer.weight.normal_(std=3.0)
    ckpt = save_checkpoint(tmp_path / "hm.pt", model, model.config)
    onnx_path = export_onnx(model, tmp_path / "hm.onnx")
    assert [o.name for o in onnx.load(str(onnx_path)).graph.output] == list(model.output_names)
    assert model.output_names[0] == "heatmaps"
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    assert sidecar["output_names"][0] == "heatmaps" and sidecar["sparsemax"] is None
    images = Pipeline(DotRunner()).crops(dot_frame([(100, 100)]), [[60, 40, 80, 120], [10, 10, 50, 90]])[0]
    report = parity_report(TorchRunner(model), OrtRunner(onnx_path), images)
    assert report["max_abs_diff"]["heatmaps"] < 1e-3 and report["keypoints_max_px_diff"] < 0.05
    ann = FIXTURE / "annotations.json"
    by_torch = predict_images(FIXTURE / "images", tmp_path / "t.json", ckpt, ann=ann, runtime="torch", progress=False)
    by_ort = predict_images(FIXTURE / "images", tmp_path / "o.json", onnx_path, ann=ann, runtime="ort", progress=False)
    assert len(by_torch) == len(by_ort) > 0
    for t, o in zip(by_torch, by_ort):
        kt, ko = np.reshape(t["keypoints"], (-1, 3)), np.reshape(o["keypoints"], (-1, 3))
        np.testing.assert_allclose(ko[:, :2], kt[:, :2], atol=0.05)  # image px
        np.testing.assert_allclose(ko[:, 2], kt[:, 2], atol=1e-3)  # presence: the map maximum
        assert ((kt[:, 2] >= 0) & (kt[:, 2] <= 1)).all()


def test_predict_cli_with_a_detections_file(tiny_model, tmp_path):
    """`probpose predict --ann --detections`: one result per kept detection, on its image."""
    from probpose_core.cli import main
    from probpose_core.models.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model, tiny_model.config)
    gt = json.loads((FIXTURE / "annotations.json").read_text())
    people = [a for a in gt["annotations"] if not a.get("iscrowd", 0)]
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 0.8} for a in people[1:]]
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "pred.json"
    code = main(["predict", "--images", str(FIXTURE / "images"), "--ann", str(FIXTURE / "annotations.json"),
                 "--detections", str(tmp_path / "dets.json"), "--out", str(out), "--model", str(ckpt),
                 "--runtime", "torch"])
    assert code == 0
    results = json.loads(out.read_text())
    assert len(results) == len(dets) == len(people) - 1
    assert sorted(r["image_id"] for r in results) == sorted(d["image_id"] for d in dets)
