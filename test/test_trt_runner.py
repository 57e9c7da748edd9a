"""TrtRunner's logic against test/fake_tensorrt.py (TensorRT itself cannot be installed here).

What this checks: engine cache key and rebuild-only-on-change, the optimisation profile and
build flags, binding inputs/outputs by name, batch splitting above the profile max, and the
error when tensorrt is missing. What it cannot check: real TensorRT parsing/building, FP16
accuracy, CUDA memory (TorchCudaBuffers).
"""
import sys

import fake_tensorrt
import numpy as np
import onnx
import pytest
from test_export import TINY_VIT, peaked_model

from probpose_core.errors import InputError
from probpose_core.models.pose_model import vit_config
from probpose_core.runtime import make_runner
from probpose_core.runtime.base import RuntimeUnavailableError, file_sha256
from probpose_core.runtime.export import export_onnx, sample_images
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.trt_runner import TrtRunner, engine_cache_key


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
    _, flags, pools, profiles = build
    assert flags == ["FP16"] and pools == {"WORKSPACE": 1 << 28}
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
                         ("onnx_sha256", "cd" * 32), ("fp16", False), ("profile", (1, 8, 32))]:
        assert engine_cache_key(**{**base, field: value})["key"] != key, field


def test_changed_onnx_or_tensorrt_version_rebuilds(trt, onnx_path, tmp_path, monkeypatch):
    TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers())
    monkeypatch.setattr(trt, "__version__", "10.3.0")
    assert TrtRunner(onnx_path, tmp_path, buffers=trt.FakeBuffers()).built
    changed = onnx.load(str(onnx_path))
    changed.doc_string = "re-exported"  # different bytes, same graph
    onnx.save(changed, str(tmp_path / "tiny.onnx"))
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
