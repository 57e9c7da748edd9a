"""TrtRunner's logic against test/fake_tensorrt.py (TensorRT itself cannot be installed here).

What this checks: engine cache key and rebuild-only-on-change, the optimisation profile and
build flags, binding inputs/outputs by name, batch splitting above the profile max, that the
configured device is current for building, deserialising and running, the FP32 marks on the
Sparsemax under FP16, TF32 off for FP32 builds, the parity refusal of a new engine (per-precision
tolerances; keypoints only where the map is well-conditioned), and the error when tensorrt is
missing. What it cannot check: real TensorRT parsing/building (layer naming, fusions), FP16
accuracy (the stand-in computes in FP32), CUDA memory (TorchCudaBuffers).
"""
import sys
from collections import Counter

import fake_tensorrt
import numpy as np
import onnx
import pytest
from test_export import TINY_VIT, peaked_model

from probpose_core.errors import InputError
from probpose_core.models.pose_model import cnn_config, vit_config
from probpose_core.runtime import make_runner
from probpose_core.runtime.base import RuntimeUnavailableError, file_sha256
from probpose_core.models.pose_model import build_model
from probpose_core.runtime.export import PARITY_TOLERANCES, export_onnx, parity_report, sample_images
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.trt_runner import (
    PARITY_IMAGES,
    EngineParityError,
    TrtRunner,
    engine_cache_key,
)


@pytest.fixture(scope="module")
def onnx_path(tmp_path_factory):
    return export_onnx(peaked_model(vit_config("t", **TINY_VIT)), tmp_path_factory.mktemp("trt") / "tiny.onnx")


@pytest.fixture
def trt(monkeypatch):
    fake_tensorrt.reset()
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    return fake_tensorrt


def _calls(kind):
    return [c for c in fake_tensorrt.CALLS if c[0] == kind]


def test_builds_with_fp16_workspace_and_batch_profile(trt, onnx_path, tmp_path):
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(), workspace_bytes=1 << 28)
    assert runner.built and runner.engine_path.exists() and runner.engine_path.parent == tmp_path
    (build,) = _calls("build")
    _, flags, pools, profiles, device = build
    assert flags == ["FP16", "PREFER_PRECISION_CONSTRAINTS", "TF32"] and pools == {"WORKSPACE": 1 << 28} and device == 0
    assert profiles == [{"images": ((1, 3, 256, 192), (4, 3, 256, 192), (16, 3, 256, 192))}]
    assert _calls("create_network") == [("create_network", 0)]  # TensorRT 10: explicit batch is implicit
    assert runner.max_batch == 16 and runner.input_size == (192, 256) and runner.name == "trt"
    assert runner.meta["input_size"] == [192, 256]


def test_outputs_bound_by_name_match_onnxruntime(trt, onnx_path, tmp_path):
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    images = sample_images(3, (192, 256))
    got, want = runner.run(images), OrtRunner(onnx_path).run(images)
    assert list(got) == ["prob_maps", "presence", "visibility", "oks_quality"]
    for k in want:
        np.testing.assert_allclose(got[k], want[k], atol=1e-6)
    bound = {c[1] for c in _calls("set_tensor_address")}
    assert bound == {"images", "prob_maps", "presence", "visibility", "oks_quality"}


def test_batches_above_the_profile_max_are_split_not_dropped(trt, onnx_path, tmp_path):
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    trt.CALLS.clear()  # the build's parity check ran a batch already
    images = sample_images(37, (192, 256), seed=3)
    out = runner.run(images)
    assert out["prob_maps"].shape == (37, 17, 64, 48)
    assert [c[2][0] for c in _calls("set_input_shape")] == [16, 16, 5]
    np.testing.assert_allclose(out["presence"], OrtRunner(onnx_path).run(images)["presence"], atol=1e-6)


def test_small_k_export_counts_possibly_truncated_maps(trt, onnx_path, tmp_path):
    import torch

    from probpose_core.models.pose_model import build_model

    assert TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers()).support_check.k is None  # exact export
    torch.manual_seed(0)
    flat = build_model(vit_config("t", **TINY_VIT)).eval()  # untrained: supports of thousands of pixels
    small_k = export_onnx(flat, tmp_path / "k128.onnx", sparsemax_topk=128)  # the TensorRT 8.6 variant
    runner = TrtRunner(small_k, tmp_path, buffers=trt.FakeBuffers())
    runner.run(sample_images(3, (192, 256)))
    assert runner.support_check.k == 128
    assert runner.support_check.maps_checked == runner.support_check.truncated_maps == 3 * 17


def test_engine_is_cached_and_rebuilt_only_when_the_key_changes(trt, onnx_path, tmp_path):
    first = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    second = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert first.built and not second.built and second.engine_path == first.engine_path
    assert len(_calls("build")) == 1
    other_gpu = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(gpu_name="Orin", capability="8.7"))
    assert other_gpu.built and other_gpu.engine_path != first.engine_path
    assert other_gpu.cache_key["gpu"] == "Orin" and other_gpu.cache_key["compute_capability"] == "8.7"
    assert len(_calls("build")) == 2 and len(list(tmp_path.glob("*.engine"))) == 2


def test_cache_key_covers_gpu_capability_version_and_onnx():
    base = dict(gpu_name="H100", compute_capability="9.0", trt_version="10.0.1", onnx_sha256="ab" * 32,
                fp16=True, profile=(1, 4, 16))
    key = engine_cache_key(**base)["key"]
    assert engine_cache_key(**base)["key"] == key
    for field, value in [("gpu_name", "A100"), ("compute_capability", "8.0"), ("trt_version", "10.1.0"),
                         ("onnx_sha256", "cd" * 32), ("fp16", False), ("profile", (1, 8, 32)),
                         ("recipe", 1)]:  # engines built before the FP32 Sparsemax / parity check
        assert engine_cache_key(**{**base, field: value})["key"] != key, field


def test_changed_onnx_or_tensorrt_version_rebuilds(trt, onnx_path, tmp_path, monkeypatch):
    TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    monkeypatch.setattr(trt, "__version__", "10.3.0")
    assert TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers()).built
    changed = onnx.load(str(onnx_path))
    changed.doc_string = "re-exported"  # different bytes, same graph
    onnx.save(changed, str(tmp_path / "tiny.onnx"))
    (tmp_path / "tiny.json").write_text(onnx_path.with_suffix(".json").read_text())  # its calibration too
    rebuilt = TrtRunner(tmp_path / "tiny.onnx", tmp_path, buffers=trt.FakeBuffers())
    assert rebuilt.built and rebuilt.cache_key["onnx_sha256"] != file_sha256(onnx_path)
    assert len(_calls("build")) == 3


def test_unreadable_cached_engine_is_rebuilt(trt, onnx_path, tmp_path):
    first = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    first.engine_path.write_bytes(b"garbage from an older TensorRT")
    again = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert again.built and again.engine_path.read_bytes().startswith(b"FAKE-TRT-ENGINE")


def test_tensorrt_8_gets_the_explicit_batch_flag(trt, onnx_path, tmp_path, monkeypatch):
    monkeypatch.setattr(trt, "__version__", "8.6.1")
    monkeypatch.setattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH", 0)
    TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert _calls("create_network") == [("create_network", 1)]


def test_wrong_image_size_is_an_input_error(trt, onnx_path, tmp_path):
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    with pytest.raises(InputError, match=r"\(N, 3, 256, 192\) float32"):
        runner.run(np.zeros((2, 3, 128, 96), np.float32))


def test_missing_tensorrt_is_a_clear_error(monkeypatch, onnx_path, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import tensorrt -> ImportError
    with pytest.raises(RuntimeUnavailableError, match="TensorRT is not installed"):
        TrtRunner(onnx_path, tmp_path)
    with pytest.raises(RuntimeUnavailableError, match="--runtime ort"):
        make_runner(onnx_path, runtime="trt", cache_dir=tmp_path)


def test_make_runner_trt_uses_the_cache_dir(trt, onnx_path, tmp_path):
    runner = make_runner(onnx_path, runtime="trt", cache_dir=tmp_path, buffers=trt.FakeBuffers())
    assert isinstance(runner, TrtRunner) and runner.engine_path.parent == tmp_path / "trt"


# --- device, FP32 Sparsemax under FP16, parity (issue 10 item 14) ---

def test_configured_device_is_current_for_build_deserialise_and_run(trt, onnx_path, tmp_path):
    """TensorRT takes no device argument: the runner's device must be current for each call."""
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(device=1))
    runner.run(sample_images(2, (192, 256)))
    assert [c[-1] for c in _calls("build")] == [1]
    assert [c[-1] for c in _calls("deserialize")] == [1]
    assert {c[-1] for c in _calls("context")} == {1}
    assert {c[-1] for c in _calls("execute")} == {1}  # parity check and the run above
    assert trt.CURRENT_DEVICE == 0  # restored after each call
    trt.CALLS.clear()
    cached = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(device=1))  # from the cache
    cached.run(sample_images(1, (192, 256)))
    assert not cached.built and [c[-1] for c in _calls("deserialize")] == [1]
    assert {c[-1] for c in _calls("execute")} == {1}


# One top-k Sparsemax as sparsemax._topk_last exports it (shift, TopK, CumSum, support, threshold,
# top-k mask, clamp, renormalise), then the reshape to (N, K, H, W) and the model's clamp to [0, 1].
# The support count (a bool -> int64 Cast and an int64 ReduceSum) has no float tensor: not marked.
SPARSEMAX_OPS = Counter({"ReduceMax": 1, "Sub": 3, "TopK": 1, "CumSum": 1, "Mul": 1, "Add": 1, "Greater": 1,
                         "Cast": 1, "ReduceSum": 2, "Where": 2, "Div": 2, "Slice": 1, "GreaterOrEqual": 1,
                         "Clip": 2, "Reshape": 1})


def _marks():
    (marks,) = [c[1] for c in _calls("precisions")]
    return marks


@pytest.mark.parametrize("config, maps", [(vit_config("t", **TINY_VIT), 1), (cnn_config(double_heatmap=True), 2)],
                         ids=["vit", "cnn-double-heatmap"])
def test_fp16_keeps_exactly_the_sparsemax_layers_in_fp32(trt, config, maps, tmp_path):
    path = export_onnx(peaked_model(config), tmp_path / "m.onnx")
    TrtRunner(path, tmp_path, buffers=trt.FakeBuffers())
    marks = _marks()
    assert Counter(op for op, _, _ in marks.values()) == Counter({op: n * maps for op, n in SPARSEMAX_OPS.items()})
    model = onnx.load(str(path))
    types = {v.name: v.type.tensor_type.elem_type
             for v in onnx.shape_inference.infer_shapes(model).graph.value_info}
    types.update({o.name: onnx.TensorProto.FLOAT for o in model.graph.output})
    for node in model.graph.node:
        if node.name in marks:
            _, precision, outputs = marks[node.name]
            floats = {k for k, name in enumerate(node.output) if types[name] == onnx.TensorProto.FLOAT}
            assert precision == "FLOAT" and outputs == {k: "FLOAT" for k in floats}, node.name
    ends = {node.output[0] for node in model.graph.node if node.name in marks and node.op_type == "Clip"}
    assert {"prob_maps", "wide_prob_maps"} & ends == ({"prob_maps", "wide_prob_maps"} if maps == 2 else {"prob_maps"})
    flags = _calls("build")[0][1]
    assert "PREFER_PRECISION_CONSTRAINTS" in flags and "FP16" in flags


def test_fp32_build_marks_nothing_and_is_not_tf32(trt, onnx_path, tmp_path):
    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(), fp16=False)
    assert _marks() == {}
    assert _calls("build")[0][1] == []  # TF32 (on by default) cleared: FP32 tolerances assume FP32
    assert runner.parity["tolerances"] == PARITY_TOLERANCES["fp32"]


def test_small_k_export_is_marked_too(trt, tmp_path):
    path = export_onnx(peaked_model(vit_config("t", **TINY_VIT)), tmp_path / "k128.onnx", sparsemax_topk=128)
    TrtRunner(path, tmp_path, buffers=trt.FakeBuffers())
    assert Counter(op for op, _, _ in _marks().values()) == SPARSEMAX_OPS


def _shift_maps(pixels):
    def hook(name, value):
        return np.roll(value, pixels, axis=-1) if name == "prob_maps" else value
    return hook


def test_engine_whose_maps_and_keypoints_differ_from_ort_is_refused_and_not_cached(trt, onnx_path, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.setattr(trt, "ENGINE_OUTPUT_HOOK", _shift_maps(1))  # one map pixel = 4 crop pixels
    with pytest.raises(EngineParityError, match=r"prob_maps differ by up to .*; decoded keypoints differ by up to "
                                                r"(\d+\.\d+) px \(tolerance 1 px") as refused:
        TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    stated = float(str(refused.value).split("keypoints differ by up to ")[1].split(" px")[0])
    images = sample_images(PARITY_IMAGES, (192, 256))

    class Shifted:
        def run(self, x):
            out = OrtRunner(onnx_path).run(x)
            return dict(out, prob_maps=np.roll(out["prob_maps"], 1, axis=-1))

    expected = parity_report(OrtRunner(onnx_path), Shifted(), images)["keypoints_max_px_diff"]
    assert stated == pytest.approx(expected, abs=1e-3) and stated > 1.0
    assert "not cached" in str(refused.value)
    assert list(tmp_path.iterdir()) == []  # no engine, no record, no temporary file
    assert len(_calls("build")) == 1
    # the tolerances are the caller's: the same engine is accepted with looser ones
    loose = dict(PARITY_TOLERANCES["fp16"], maps=1.0, keypoints_px=10.0)
    accepted = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers(), parity_tolerances=loose)
    assert accepted.built and accepted.parity["keypoints_max_px_diff"] == pytest.approx(stated, abs=1e-3)
    assert accepted.parity["tolerances"] == loose


def _add_block(name, value):
    """+2e-3 on a 5x5 block of every map: far inside the FP16 tolerance, and enough to pull a flat
    map's decoded point to that corner (a half-precision engine's logit noise does the like)."""
    if name == "prob_maps":
        value = value.copy()
        value[..., 2:7, 2:7] += 2e-3
    return value


def test_small_map_noise_on_a_flat_model_is_accepted(trt, tmp_path, monkeypatch):
    """Issue 19: an untrained model's maps are flat, so their decoded points are ill-conditioned:
    map noise of 2e-3 moved them by up to ~225 crop px and the old check refused the engine though
    every output agreed to half precision. Now the outputs are compared, and these points are not."""
    import torch

    torch.manual_seed(0)
    path = export_onnx(build_model(vit_config("t", **TINY_VIT)).eval(), tmp_path / "flat.onnx")
    monkeypatch.setattr(trt, "ENGINE_OUTPUT_HOOK", _add_block)
    runner = TrtRunner(path, tmp_path, buffers=trt.FakeBuffers())
    assert runner.built and runner.parity["keypoints_compared"] == 0  # no flat map decides its point
    assert runner.parity["max_abs_diff"]["prob_maps"] == pytest.approx(2e-3, rel=1e-3)


def test_nan_keypoints_are_refused(trt, onnx_path, tmp_path, monkeypatch):
    monkeypatch.setattr(trt, "ENGINE_OUTPUT_HOOK", lambda name, v: np.full_like(v, np.nan) if name == "prob_maps" else v)
    with pytest.raises(EngineParityError, match="engine refused"):
        TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert list(tmp_path.iterdir()) == []


def test_good_engine_passes_parity_and_is_cached_with_its_report(trt, onnx_path, tmp_path):
    import json

    runner = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert runner.built and runner.engine_path.exists()
    assert runner.parity["keypoints_max_px_diff"] <= 1e-3 and runner.parity["images"] == PARITY_IMAGES
    assert runner.parity["keypoints_compared"] > 0 and runner.parity["tolerances"] == PARITY_TOLERANCES["fp16"]
    record = json.loads(runner.engine_path.with_suffix(".json").read_text())
    assert record["parity"] == runner.parity and record["key"] == runner.cache_key["key"]
    executions = len(_calls("execute"))
    assert executions >= 1  # the parity check ran the engine
    cached = TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    assert not cached.built and cached.parity == runner.parity
    assert len(_calls("execute")) == executions  # no second parity run for a cached engine


def test_bisection_export_has_no_topk_to_mark(trt, tmp_path):
    path = export_onnx(peaked_model(vit_config("t", **TINY_VIT)), tmp_path / "bisect.onnx", sparsemax_method="bisect")
    TrtRunner(path, tmp_path, buffers=trt.FakeBuffers())
    assert _marks() == {} and "PREFER_PRECISION_CONSTRAINTS" not in _calls("build")[0][1]


def test_a_sparsemax_input_missing_from_the_network_is_an_error(trt, onnx_path):
    from probpose_core.runtime.trt_runner import keep_fp32

    network = trt.Builder(trt.Logger()).create_network(0)
    assert trt.OnnxParser(network, None).parse(onnx_path.read_bytes())
    with pytest.raises(InputError, match=r"no layer of the TensorRT network reads the Sparsemax input\(s\) \['gone'\]"):
        keep_fp32(trt, network, ["gone"])
    assert not any(layer.precision_is_set for layer in network.layers)
