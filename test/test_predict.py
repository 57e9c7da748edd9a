"""predict.py: batch prediction over a folder (``probpose predict``), built from the model's ModelSpec."""
import json
import logging

import numpy as np
import pytest
from test_pipeline import FIXTURE, DotRunner, dot_frame

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.pipeline import Pipeline
from probpose_core.predict import predict_images
from probpose_core.spec import codec_settings


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
                             progress=False).results
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


def predict_torch_and_ort(ckpt, onnx_path, tmp_path) -> list[tuple[dict, dict]]:
    """``predict_images`` on the fixture's GT boxes with the checkpoint on torch and its export on
    ONNX Runtime: the results paired (same image, same order)."""
    ann = FIXTURE / "annotations.json"
    by_torch = predict_images(FIXTURE / "images", tmp_path / "t.json", ckpt, ann=ann, runtime="torch",
                              progress=False).results
    by_ort = predict_images(FIXTURE / "images", tmp_path / "o.json", onnx_path, ann=ann, runtime="ort",
                            progress=False).results
    assert len(by_torch) == len(by_ort) > 0
    assert [t["image_id"] for t in by_torch] == [o["image_id"] for o in by_ort]
    return list(zip(by_torch, by_ort))


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
    for t, o in predict_torch_and_ort(ckpt, onnx_path, tmp_path):
        kt, ko = np.reshape(t["keypoints"], (-1, 3)), np.reshape(o["keypoints"], (-1, 3))
        np.testing.assert_allclose(ko[:, :2], kt[:, :2], atol=0.01)  # image px
        np.testing.assert_allclose(ko[:, 2], kt[:, 2], atol=1e-4)  # presence
        np.testing.assert_allclose(o["visibilities"], t["visibilities"], atol=1e-4)


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


class CornerRunner(DotRunner):
    """A model whose every map has all its mass on the top-left map pixel (the window's corner),
    with the given codec settings in its metadata (as a checkpoint or ONNX sidecar has them)."""

    def __init__(self, codec: ProbMapCodec):
        super().__init__()
        self.meta = {"codec": codec_settings(codec), "presence_threshold": 0.3}

    def run(self, images):
        out = super().run(images)
        out["prob_maps"][:] = 0.0
        out["prob_maps"][:, :, 0, 0] = 1.0
        return out


def test_predict_uses_the_models_codec_not_the_default(tmp_path):
    """A model trained with another padding: its maps are over ITS windows, so the corner of the
    map is the corner of the window of that padding (the default codec would put it elsewhere)."""
    codec = ProbMapCodec(padding=1.6)
    ann = FIXTURE / "annotations.json"
    results = predict_images(FIXTURE / "images", tmp_path / "p.json", CornerRunner(codec), ann=ann,
                             progress=False).results
    gt = json.loads(ann.read_text())
    boxes = np.array([a["bbox"] for a in gt["annotations"] if not a.get("iscrowd", 0)], np.float64)
    assert len(results) == len(boxes) > 0

    def corners(padding):
        center, scale = geometry.bbox_to_center_scale(boxes, padding=padding)
        return center - scale / 2

    for r in results:
        point = np.reshape(r["keypoints"], (-1, 3))[:, :2]
        assert np.abs(point - point[0]).max() < 1e-9  # every keypoint on the corner
        assert np.abs(corners(1.6) - point[0]).max(axis=1).min() < 1e-6
        assert np.abs(corners(1.25) - point[0]).max(axis=1).min() > 1.0  # not the default window's
        assert np.reshape(r["keypoints"], (-1, 3))[0, 2] == pytest.approx(0.9)


def test_predict_onnx_model_of_another_input_size(tmp_path, capsys):
    """`probpose predict --runtime ort` with a model exported at 128x96: crops, codec and
    threshold from its sidecar (the default 256x192 codec refuses such a runner)."""
    import torch

    from probpose_core.cli import main
    from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(3)
    config = cnn_config(input_size=(96, 128), heatmap_size=(24, 32))
    model = build_model(config).eval()
    codec = ProbMapCodec(input_size=(96, 128), heatmap_size=(24, 32), padding=1.3)
    ckpt = save_checkpoint(tmp_path / "small.pt", model, config, codec=codec, presence_threshold=0.2)
    _, meta = load_checkpoint(ckpt)
    onnx_path = export_onnx(model, tmp_path / "small.onnx", meta=meta)
    out = tmp_path / "pred.json"
    code = main(["predict", "--images", str(FIXTURE / "images"), "--ann", str(FIXTURE / "annotations.json"),
                 "--out", str(out), "--model", str(onnx_path), "--runtime", "ort"])
    assert code == 0, capsys.readouterr().err
    assert "wrote" in capsys.readouterr().out
    results = json.loads(out.read_text())
    assert len(results) > 0 and all(np.isfinite(r["keypoints"]).all() for r in results)


def test_predict_reports_through_its_return_value_and_logging(tmp_path, capsys, caplog):
    """The library prints nothing: the summary is returned (and logged at INFO); the CLI prints it."""
    ann = FIXTURE / "annotations.json"
    with caplog.at_level(logging.INFO, logger="probpose_core.predict"):
        run = predict_images(FIXTURE / "images", tmp_path / "p.json", DotRunner(), ann=ann, progress=False)
    assert capsys.readouterr().out == ""
    assert run.images == len(json.loads(ann.read_text())["images"]) and run.out_path == tmp_path / "p.json"
    assert run.summary().startswith(f"wrote {len(run.results)} predictions for {run.images} images")
    assert run.summary() in caplog.text


def peak_at_the_first_map_pixel(model, height: float = 0.9):
    """Give every heatmap of a (cnn, map_kind "heatmap") model one maximum at map pixel (0, 0),
    ~``height`` above the rest whatever the input, so its argmax cannot tie (issue 19: a random
    model's heatmaps were flat at ~1e-9 and a tie flipped with the CPU's rounding).

    The first deconv's channel 0 becomes the constant 1 (BN scale 0, shift 1); the second deconv
    turns it alone into its channel 0 with the kernel a ⊗ a, a = (0, 1, 0, -1): a stride-2 4x4
    transposed conv gives output pixel 0 the tap a1 = 1, every other pixel a1 + a3 = 0 or
    a0 + a2 = 0 (the last one a2 = 0), all exact in float, so that channel is ``height`` at (0, 0)
    and exactly 0 elsewhere; the map layer adds it to every keypoint's map. The rest of the map
    stays the random model's (small weights: values ~1e-4)."""
    import torch

    first_bn, second, second_bn = model.head.deconv_layers[1], model.head.deconv_layers[3], model.head.deconv_layers[4]
    a = torch.tensor([0.0, 1.0, 0.0, -1.0])
    with torch.no_grad():
        model.head.final_layer.weight.normal_(std=0.3)
        first_bn.weight[0], first_bn.bias[0] = 0.0, 1.0
        second.weight[0], second.weight[:, 0] = 0.0, 0.0  # channel 0 feeds and is fed by nothing else
        second.weight[0, 0] = torch.outer(a, a)
        second_bn.weight[0], second_bn.bias[0] = height, 0.0
        model.head.final_layer.weight[:, 0] = 1.0
    return model


def test_heatmap_model_through_torch_onnx_export_and_ort(tmp_path):
    import onnx
    import torch

    from probpose_core.models.checkpoints import save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx, parity_report
    from probpose_core.runtime.ort_runner import OrtRunner
    from probpose_core.runtime.torch_runner import TorchRunner

    torch.manual_seed(2)
    model = peak_at_the_first_map_pixel(build_model(cnn_config(map_kind="heatmap")).eval())
    ckpt = save_checkpoint(tmp_path / "hm.pt", model, model.config)
    onnx_path = export_onnx(model, tmp_path / "hm.onnx")
    assert [o.name for o in onnx.load(str(onnx_path)).graph.output] == list(model.output_names)
    assert model.output_names[0] == "heatmaps"
    sidecar = json.loads(onnx_path.with_suffix(".json").read_text())
    assert sidecar["output_names"][0] == "heatmaps" and sidecar["sparsemax"] is None
    images = Pipeline(DotRunner()).crops(dot_frame([(100, 100)]), [[60, 40, 80, 120], [10, 10, 50, 90]])[0]
    heatmaps = TorchRunner(model).run(images)["heatmaps"]
    rest = heatmaps.reshape(2, NUM_KEYPOINTS, -1)[..., 1:]
    assert (heatmaps[:, :, 0, 0] - np.abs(rest).max(-1) > 0.8).all()  # the unique peak, by construction
    report = parity_report(TorchRunner(model), OrtRunner(onnx_path), images)
    assert report["keypoints_compared"] == report["keypoints_total"] == 2 * NUM_KEYPOINTS
    assert report["max_abs_diff"]["heatmaps"] < 1e-3 and report["keypoints_max_px_diff"] < 0.05
    for t, o in predict_torch_and_ort(ckpt, onnx_path, tmp_path):
        kt, ko = np.reshape(t["keypoints"], (-1, 3)), np.reshape(o["keypoints"], (-1, 3))
        np.testing.assert_allclose(ko[:, :2], kt[:, :2], atol=0.05)  # image px
        np.testing.assert_allclose(ko[:, 2], kt[:, 2], atol=1e-3)  # presence: the map maximum
        assert ((kt[:, 2] >= 0) & (kt[:, 2] <= 1)).all()


def test_predict_cli_detector_threshold(tiny_model, tmp_path, capsys):
    """`probpose predict --detector-threshold`: the shipped PicoDet keeps more boxes at 0.1 than at
    its default 0.46 and none at 0.99 on the fixture images (23 / 5 / 0 when written); a threshold
    outside [0, 1] is one clear error."""
    from probpose_core.cli import main
    from probpose_core.models.checkpoints import save_checkpoint

    ckpt = save_checkpoint(tmp_path / "m.pt", tiny_model, tiny_model.config)
    counts = []
    for extra in (["--detector-threshold", "0.1"], [], ["--detector-threshold", "0.99"]):
        out = tmp_path / "pred.json"
        assert main(["predict", "--images", str(FIXTURE / "images"), "--out", str(out), "--model", str(ckpt),
                     "--runtime", "torch", *extra]) == 0
        counts.append(len(json.loads(out.read_text())))
    assert counts[0] > counts[1] > counts[2] == 0
    assert main(["predict", "--images", str(FIXTURE / "images"), "--out", str(tmp_path / "x.json"),
                 "--model", str(ckpt), "--detector-threshold", "1.5"]) == 2
    assert "score_threshold" in capsys.readouterr().err
