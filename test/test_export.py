"""ONNX export: parity with torch (exact sparsemax) on every output and on the decoded keypoints
of well-conditioned maps, the parity tolerances, the sidecar, the dynamic batch axis, int8, the
TensorRT constraint check and `probpose export`."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from probpose_core import keypoints
from probpose_core.errors import InputError
from probpose_core.models.checkpoints import save_checkpoint
from probpose_core.models.pose_model import build_model, cnn_config, vit_config
from probpose_core.runtime.base import file_sha256, sidecar_path
from probpose_core.runtime.export import (
    PARITY_TOLERANCES,
    TRT8_MAX_TOPK,
    check_tensorrt_constraints,
    export_model,
    export_onnx,
    parity_problems,
    parity_report,
    peaked,
    quantize_int8,
    sample_images,
)
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.torch_runner import TorchRunner

TINY_VIT = dict(embed_dim=64, depth=2, num_heads=2, head_channels=32, aux_channels=32)
FIXTURE = Path(__file__).resolve().parents[1] / "demo" / "fixture"


def peaked_model(config, target_std: float = 1.0, seed: int = 0):
    """A randomly initialised model whose map logits are scaled to ``target_std`` per map.

    At initialisation the 1x1 map layer gives near-flat logits, so sparsemax spreads over
    thousands of pixels; a trained model's maps have small supports. Scaling the layer gives
    maps like that (supports of a few to a few tens of pixels) without training.
    """
    torch.manual_seed(seed)
    model = build_model(config).eval()
    images = torch.from_numpy(sample_images(4, config.input_size, seed=seed + 100))
    with torch.no_grad():
        out = model(images, return_logits=True)
        for layer_name, key in (("final_layer", "map_logits"), ("wide_final_layer", "wide_map_logits")):
            if key in out:
                layer = getattr(model.head, layer_name)
                factor = target_std / out[key].std(dim=(2, 3)).mean()
                layer.weight.mul_(factor)
                layer.bias.mul_(factor)
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, onnx path) of a tiny peaked ViT exported with the defaults."""
    model = peaked_model(vit_config("t", **TINY_VIT))
    path = export_onnx(model, tmp_path_factory.mktemp("export") / "tiny.onnx")
    return model, path


@pytest.mark.parametrize("config", [vit_config("t", **TINY_VIT), cnn_config(double_heatmap=True)],
                         ids=["vit", "cnn-double-heatmap"])
def test_parity_with_torch_on_every_output_and_decoded_keypoints(config, tmp_path):
    model = peaked_model(config)
    path = export_onnx(model, tmp_path / "m.onnx")
    images = sample_images(5, config.input_size, seed=1)  # batch 5: not the traced example batch of 2
    report = parity_report(TorchRunner(model), OrtRunner(path), images)
    expected = {"prob_maps", "presence", "visibility", "oks_quality"} | (
        {"wide_prob_maps"} if config.double_heatmap else set())
    assert set(report["max_abs_diff"]) == expected
    assert max(report["max_abs_diff"].values()) <= 1e-4, report
    assert report["keypoints_compared"] > 0 and report["keypoints_max_px_diff"] <= 1e-3, report
    assert parity_problems(report, PARITY_TOLERANCES["fp32"]) == []


def test_parity_report_detects_a_different_model(tiny, tmp_path):
    model, path = tiny
    other = peaked_model(vit_config("t", **TINY_VIT), seed=1)
    report = parity_report(TorchRunner(other), OrtRunner(path), sample_images(3, model.config.input_size))
    assert max(report["max_abs_diff"].values()) > 1e-2
    assert report["keypoints_compared"] > 0 and report["keypoints_max_px_diff"] > 1.0
    problems = parity_problems(report, PARITY_TOLERANCES["fp16"])
    assert any(p.startswith("prob_maps differ by up to") for p in problems)
    assert any(p.startswith("decoded keypoints differ by up to") for p in problems)


def test_default_export_is_exact_for_wide_maps_and_small_k_is_counted(tmp_path):
    # a flat untrained model: supports of thousands of pixels. The default export (TopK over all
    # pixels) and the bisection export stay exact; the explicit small-k export (TensorRT 8.6)
    # differs there, and its runner counts every map whose support reached k.
    torch.manual_seed(0)
    model = build_model(vit_config("t", **TINY_VIT)).eval()
    images = sample_images(2, model.config.input_size)
    default = OrtRunner(export_onnx(model, tmp_path / "d.onnx"))
    exact = parity_report(TorchRunner(model), default, images)
    assert exact["max_support"] > 1000 and exact["max_abs_diff"]["prob_maps"] <= 1e-5, exact
    assert exact["keypoints_compared"] == 0, exact  # flat maps: no well-conditioned point to compare
    assert default.support_check.k is None and default.support_check.truncated_maps == 0
    bisect = parity_report(TorchRunner(model),
                           OrtRunner(export_onnx(model, tmp_path / "b.onnx", sparsemax_method="bisect")), images)
    assert bisect["max_abs_diff"]["prob_maps"] <= 1e-5
    small = OrtRunner(export_onnx(model, tmp_path / "k.onnx", sparsemax_topk=128))
    assert small.meta["sparsemax"] == {**small.meta["sparsemax"], "method": "topk", "k": 128, "exact": False}
    assert small.meta["exporter"]["sparsemax_topk"] == 128
    topk = parity_report(TorchRunner(model), small, images)
    assert topk["max_abs_diff"]["prob_maps"] > 1e-4
    assert small.support_check.maps_checked == small.support_check.truncated_maps == 2 * 17  # every map
    assert check_tensorrt_constraints(tmp_path / "k.onnx", max_topk=TRT8_MAX_TOPK) == []


def test_small_k_export_is_exact_and_uncounted_while_supports_are_below_k(tiny, tmp_path):
    model, _ = tiny
    runner = OrtRunner(export_onnx(model, tmp_path / "k.onnx", sparsemax_topk=128))
    report = parity_report(TorchRunner(model), runner, sample_images(3, model.config.input_size, seed=2))
    assert report["max_support"] < 128 and report["max_abs_diff"]["prob_maps"] <= 1e-5
    assert runner.support_check.maps_checked == 3 * 17 and runner.support_check.truncated_maps == 0
    with pytest.raises(InputError, match="sparsemax_topk"):
        export_onnx(model, tmp_path / "x.onnx", sparsemax_method="bisect", sparsemax_topk=128)


class _OneHotRunner:
    """Maps with all mass on heatmap pixel (x, y) for every keypoint (a stand-in runner)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def run(self, images):
        maps = np.zeros((len(images), 17, 64, 48), np.float32)
        maps[:, :, self.y, self.x] = 1.0
        scalars = np.full((len(images), 17), 0.5, np.float32)
        return {"prob_maps": maps, "presence": scalars, "visibility": scalars, "oks_quality": scalars}


def test_parity_report_measures_in_crop_pixels():
    # UDP (geometry.py): the window [c - s/2, c + s/2] maps onto the pixel centres [0, W-1] of any
    # grid, so the crop itself as a window is center (W-1)/2, scale W-1 and one map pixel is
    # (192-1)/(48-1) crop pixels in x, (256-1)/(64-1) in y.
    images = np.zeros((2, 3, 256, 192), np.float32)
    report = parity_report(_OneHotRunner(20, 30), _OneHotRunner(21, 30), images)
    assert report["keypoints_max_px_diff"] == pytest.approx(191 / 47, abs=1e-6)
    report = parity_report(_OneHotRunner(20, 30), _OneHotRunner(20, 31), images)
    assert report["keypoints_max_px_diff"] == pytest.approx(255 / 63, abs=1e-6)


class _MapsRunner:
    """Returns the given maps (N, K, 64, 48) for any images, presence 0.5 (a stand-in runner)."""

    def __init__(self, maps):
        self.maps = maps

    def run(self, images):
        scalars = np.full(self.maps.shape[:2], 0.5, np.float32)
        return {"prob_maps": self.maps, "presence": scalars, "visibility": scalars, "oks_quality": scalars}


def _bumps(*bumps):
    """One (64, 48) map with mass ``m`` at pixel (x, y) for each (x, y, m)."""
    out = np.zeros((64, 48), np.float32)
    for x, y, m in bumps:
        out[y, x] = m
    return out


def test_peaked_tells_a_stable_point_from_a_tie_a_flat_or_a_vanishing_map():
    maps = np.stack([_bumps((20, 30, 1.0)),  # one peak
                     _bumps((20, 30, 0.4), (21, 30, 0.3), (23, 32, 0.3)),  # one peak spread over 3 px
                     _bumps((20, 30, 0.7), (40, 10, 0.3)),  # a dominant peak and a far weaker one
                     _bumps((10, 30, 0.5), (38, 30, 0.5)),  # a tie: 1e-8 decides which peak wins
                     np.full((64, 48), 1 / (64 * 48), np.float32),  # flat: any point is as good
                     _bumps((20, 30, 1e-6))])[None]  # a vanishing (heatmap) peak: noise-sized
    assert peaked(maps).tolist() == [[True, True, True, False, False, False]]


def test_parity_report_compares_keypoints_only_where_the_map_decides_them():
    """Issue 19: a tie that 2**-20 of map noise flips moved the decoded point by 112 crop px and
    failed the check though the maps agree; now such a map is not compared (and says so)."""
    tie, crop = 0.5 - 2.0 ** -20, np.zeros((1, 3, 256, 192), np.float32)
    single = _bumps((20, 30, 1.0))
    reference = np.stack([_bumps((10, 30, 0.5), (38, 30, tie))] + [single] * 16)[None]
    candidate = np.stack([_bumps((10, 30, tie), (38, 30, 0.5))] + [single] * 16)[None]
    report = parity_report(_MapsRunner(reference), _MapsRunner(candidate), crop)
    assert report["keypoints_compared"] == 16 and report["keypoints_total"] == 17
    assert report["keypoints_max_px_diff"] == 0.0 and report["max_abs_diff"]["prob_maps"] == 2.0 ** -20
    assert parity_problems(report, PARITY_TOLERANCES["fp32"]) == []
    moved = candidate.copy()
    moved[0, 1] = _bumps((21, 30, 1.0))  # a peaked map moved by one map pixel
    report = parity_report(_MapsRunner(reference), _MapsRunner(moved), crop)
    assert report["keypoints_max_px_diff"] == pytest.approx(191 / 47, abs=1e-6)
    assert [p.split(" differ")[0] for p in parity_problems(report, PARITY_TOLERANCES["fp16"])] == [
        "prob_maps", "decoded keypoints"]


def test_parity_tolerances_per_precision():
    """FP16 is looser than FP32 on every output and on the points; a NaN fails both."""
    fp32, fp16 = PARITY_TOLERANCES["fp32"], PARITY_TOLERANCES["fp16"]
    assert fp32.keys() == fp16.keys() and all(fp32[k] < fp16[k] for k in fp32)
    report = {"max_abs_diff": {"prob_maps": 0.01, "presence": 0.01, "visibility": 0.0, "oks_quality": 0.0},
              "keypoints_max_px_diff": 0.5, "keypoints_compared": 3}
    assert parity_problems(report, fp16) == []
    assert len(parity_problems(report, fp32)) == 3
    report["max_abs_diff"]["oks_quality"] = float("nan")
    assert parity_problems(report, fp16) == ["oks_quality differ by up to nan (tolerance 0.05)"]


def test_sidecar_describes_the_model(tiny):
    model, path = tiny
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["input_name"] == "images" and meta["input_size"] == [192, 256] and meta["layout"] == "NCHW"
    assert meta["channel_order"] == "RGB"
    np.testing.assert_allclose(meta["mean"], [123.675, 116.28, 103.53])
    np.testing.assert_allclose(meta["std"], [58.395, 57.12, 57.375])
    assert meta["keypoints"]["names"] == list(keypoints.NAMES)
    np.testing.assert_array_equal(meta["keypoints"]["sigmas"], keypoints.SIGMAS)
    assert meta["keypoints"]["flip_index"] == list(keypoints.FLIP_INDEX)
    assert meta["output_names"] == ["prob_maps", "presence", "visibility", "oks_quality"]
    assert meta["sparsemax"]["method"] == "topk" and meta["sparsemax"]["k"] == 64 * 48  # all pixels
    assert meta["sparsemax"]["exact"] is True
    assert meta["exporter"]["sparsemax_topk"] is None and meta["exporter"]["exporter_version"] >= 2
    assert meta["temperature"] == 1.0 and meta["presence_threshold"] == 0.45
    assert meta["model_temperature"] == model.config.temperature
    assert meta["opset"] == 17 and meta["dynamic_batch"] is True
    assert len(meta["model_hash"]) == 64
    assert meta["onnx_sha256"] == file_sha256(path)
    assert model.config.sparsemax_method == "exact"  # exporting does not touch the caller's model


def test_graph_has_named_io_and_only_a_dynamic_batch_axis(tiny):
    _, path = tiny
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ["images"]
    assert [o.name for o in graph.output] == ["prob_maps", "presence", "visibility", "oks_quality"]
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param and not dims[0].HasField("dim_value")
        assert all(d.HasField("dim_value") for d in dims[1:])
    assert max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")) == 17


def test_export_refuses_a_batch_example_of_one(tiny, tmp_path):
    with pytest.raises(InputError, match="batch_example"):
        export_onnx(tiny[0], tmp_path / "x.onnx", batch_example=1)


def test_tensorrt_check_passes_the_export(tiny):
    assert check_tensorrt_constraints(tiny[1]) == []  # TensorRT 10: TopK k = 3072 <= 3840
    problems = check_tensorrt_constraints(tiny[1], max_topk=TRT8_MAX_TOPK)  # TensorRT 8.6: needs sparsemax_topk
    assert problems and all("k = 3072 > 1024" in p for p in problems)


def _save(graph, path, opset=17):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, str(path))
    return path


def test_tensorrt_check_flags_a_large_topk(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3072])
    values = helper.make_tensor_value_info("values", TensorProto.FLOAT, ["batch", 3072])
    k = helper.make_tensor("k", TensorProto.INT64, [1], [3072])
    node = helper.make_node("TopK", ["x", "k"], ["values", "indices"], name="full_sort")
    path = _save(helper.make_graph([node], "g", [x], [values], initializer=[k]), tmp_path / "topk.onnx")
    problems = check_tensorrt_constraints(path, max_topk=TRT8_MAX_TOPK)
    assert len(problems) == 1 and "k = 3072 > 1024" in problems[0] and "full_sort" in problems[0]
    assert check_tensorrt_constraints(path) == []  # the default: TensorRT 10's limit, 3840


def test_tensorrt_check_flags_dynamic_spatial_axes_old_opset_and_nonzero(tmp_path):
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    y = helper.make_tensor_value_info("where", TensorProto.INT64, [4, "n"])
    node = helper.make_node("NonZero", ["images"], ["where"], name="nz")
    path = _save(helper.make_graph([node], "g", [x], [y]), tmp_path / "bad.onnx", opset=13)
    problems = "\n".join(check_tensorrt_constraints(path))
    assert "opset 13 < 17" in problems
    assert "input 'images'" in problems and "axes [2, 3] are dynamic" in problems
    assert "NonZero 'nz'" in problems
    assert "data-dependent shapes" in problems


def test_int8_model_runs_with_bounded_differences(tiny, tmp_path):
    model, path = tiny
    int8_path = quantize_int8(path, tmp_path / "tiny.int8.onnx")
    sidecar_path(int8_path).write_text(sidecar_path(path).read_text())  # runners refuse a model without one
    ops = {n.op_type for n in onnx.load(str(int8_path)).graph.node}
    assert "MatMulInteger" in ops or "DynamicQuantizeMatMul" in ops
    assert "ConvInteger" not in ops  # convolutions stay float
    images = sample_images(4, model.config.input_size, seed=1)
    report = parity_report(TorchRunner(model), OrtRunner(int8_path), images)
    out = OrtRunner(int8_path).run(images)
    np.testing.assert_allclose(out["prob_maps"].sum(axis=(2, 3)), 1.0, atol=1e-4)
    assert 0 < report["max_abs_diff"]["prob_maps"] < 0.5
    assert report["max_abs_diff"]["presence"] < 0.05


def test_probpose_export_cli(tmp_path):
    config = vit_config("t", **TINY_VIT)
    ckpt = tmp_path / "m.pt"
    save_checkpoint(ckpt, peaked_model(config), config, temperature=0.8, presence_threshold=0.4)
    out = tmp_path / "out" / "m.onnx"
    proc = subprocess.run([sys.executable, "-m", "probpose_core.cli", "export", "--model", str(ckpt),
                           "--onnx", str(out), "--int8", "--sparsemax", "bisect"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "fp32: max |diff| vs torch" in proc.stdout and "int8: max |diff| vs torch" in proc.stdout
    assert "TensorRT check: ok" in proc.stdout
    meta = json.loads(sidecar_path(out).read_text())
    assert meta["temperature"] == 0.8 and meta["presence_threshold"] == 0.4
    assert meta["sparsemax"]["method"] == "bisect"
    assert max(meta["parity"]["max_abs_diff"].values()) <= 1e-4 and meta["tensorrt_problems"] == []
    int8_meta = json.loads((tmp_path / "out" / "m.int8.json").read_text())
    assert int8_meta["quantization"]["weights"] == "int8" and "parity" in int8_meta
    assert int8_meta["onnx_sha256"] == file_sha256(tmp_path / "out" / "m.int8.onnx")


# A meta-path finder refusing the dev-only packages (requirements-dev.txt), as if not installed.
_WITHOUT_DEV_EXTRAS = """
import importlib.abc, sys
class _Absent(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("polygraphy", "onnx_graphsurgeon"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked: dev extra)")
sys.meta_path.insert(0, _Absent())
from probpose_core.cli import main
code = main(sys.argv[1:])
leaked = sorted(m for m in sys.modules if m.split(".")[0] in ("polygraphy", "onnx_graphsurgeon"))
assert not leaked, leaked
sys.exit(code)
"""


def test_probpose_export_needs_only_runtime_requirements(tmp_path):
    """`probpose export` with polygraphy / onnx-graphsurgeon (dev extras) not importable: the
    export, parity and TensorRT check still run to the end."""
    config = cnn_config(embed_dim=32, head_channels=16, aux_channels=8)
    ckpt = save_checkpoint(tmp_path / "m.pt", peaked_model(config), config)
    out = tmp_path / "m.onnx"
    proc = subprocess.run([sys.executable, "-c", _WITHOUT_DEV_EXTRAS, "export", "--model", str(ckpt),
                           "--onnx", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "TensorRT check: ok" in proc.stdout
    assert json.loads(sidecar_path(out).read_text())["tensorrt_problems"] == []


def test_export_model_bad_checkpoint_is_an_input_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError):
        export_model(bad, tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def _keypoints(results):
    return np.array([np.reshape(r["keypoints"], (-1, 3)) for r in results])


def test_default_export_equals_torch_for_untrained_wide_maps_through_predict(tmp_path, monkeypatch):
    """Random-weight ProbPose-s (official shape; untrained maps spread over most of the 64x48
    pixels): `probpose predict --runtime ort` (auto-export with the defaults) equals
    `--runtime torch` on the fixture images within 0.01 px."""
    from probpose_core.cli import main

    torch.manual_seed(0)
    config = vit_config("s")
    model = build_model(config).eval()
    ckpt = save_checkpoint(tmp_path / "probpose_s.pt", model, config)
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))
    args = ["predict", "--images", str(FIXTURE / "images"), "--ann", str(FIXTURE / "annotations.json"),
            "--model", str(ckpt)]
    assert main(args + ["--out", str(tmp_path / "torch.json"), "--runtime", "torch"]) == 0
    assert main(args + ["--out", str(tmp_path / "ort.json"), "--runtime", "ort"]) == 0
    by_torch = json.loads((tmp_path / "torch.json").read_text())
    by_ort = json.loads((tmp_path / "ort.json").read_text())
    assert len(by_torch) == len(by_ort) > 0
    assert [r["image_id"] for r in by_torch] == [r["image_id"] for r in by_ort]
    kt, ko = _keypoints(by_torch), _keypoints(by_ort)
    np.testing.assert_allclose(ko[..., :2], kt[..., :2], atol=0.01, rtol=0)  # image pixels
    np.testing.assert_allclose(ko[..., 2], kt[..., 2], atol=1e-4, rtol=0)  # presence
    # precondition: these maps are wider than a top-k (k = 128) export could represent
    images = sample_images(2, config.input_size)
    maps = TorchRunner(model).run(images)["prob_maps"]
    assert ((maps > 0).sum(axis=(2, 3)) > 128).all()
