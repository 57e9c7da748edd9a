"""Runners: input validation, batch splitting (never dropping), TorchRunner vs OrtRunner,
load-time checks of the ONNX input size, static-batch models, providers and make_runner."""
import warnings

import numpy as np
import onnx
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from test_export import TINY_VIT, peaked_model

from probpose_core.errors import InputError
from probpose_core.models.checkpoints import save_checkpoint
from probpose_core.models.pose_model import vit_config
from probpose_core.runtime import Runner, as_runner, make_runner
from probpose_core.runtime import export
from probpose_core.runtime.base import SupportCheck, run_in_chunks, sidecar_path, topk_bound, validate_images
from probpose_core.runtime.export import export_onnx, sample_images
from probpose_core.runtime.ort_runner import OrtRunner, default_providers
from probpose_core.runtime.torch_runner import TorchRunner

SIZE = (192, 256)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("runtime")
    config = vit_config("t", **TINY_VIT)
    model = peaked_model(config)
    save_checkpoint(folder / "tiny.pt", model, config, presence_threshold=0.4)
    return model, export_onnx(model, folder / "tiny.onnx"), folder / "tiny.pt"


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 3, 256, 192), np.float64), "got dtype float64"),
    (np.zeros((3, 256, 192), np.float32), r"got shape \(3, 256, 192\)"),
    (np.zeros((2, 3, 128, 96), np.float32), r"got shape \(2, 3, 128, 96\)"),
    (np.zeros((2, 256, 192, 3), np.float32), r"got shape \(2, 256, 192, 3\)"),
    ([[0.0]], "got list"),
])
def test_bad_images_name_expected_and_got(images, message):
    with pytest.raises(InputError, match=r"\(N, 3, 256, 192\) float32") as info:
        validate_images(images, SIZE)
    assert info.match(message)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(0, 40), max_batch=st.integers(1, 17))
def test_chunks_cover_every_image_in_order(n, max_batch):
    images = np.arange(n, dtype=np.float32).reshape(n, 1, 1, 1) * np.ones((1, 3, 2, 2), np.float32)
    sizes = []

    def run_batch(batch):
        sizes.append(len(batch))
        return {"presence": batch[:, 0, 0, :1] * 2, "prob_maps": batch[:, :1]}

    out = run_in_chunks(run_batch, images, max_batch)
    assert all(0 < s <= max_batch for s in sizes)
    assert sum(sizes) == max(n, 1) if n == 0 else sum(sizes) == n
    np.testing.assert_array_equal(out["presence"][:, 0], np.arange(n) * 2)
    assert out["prob_maps"].shape == (n, 1, 2, 2)


def test_torch_and_ort_runners_agree_and_split_large_batches(tiny):
    model, onnx_path, _ = tiny
    calls = []
    hook = model.register_forward_hook(lambda m, args, out: calls.append(len(args[0])))
    try:
        images = sample_images(20, SIZE, seed=5)
        torch_out = TorchRunner(model).run(images)
    finally:
        hook.remove()
    assert calls == [16, 4]
    ort_runner = OrtRunner(onnx_path, max_batch=6)
    ort_out = ort_runner.run(images)
    for runner in (TorchRunner(model), ort_runner):
        assert isinstance(runner, Runner)
    for key in ("prob_maps", "presence", "visibility", "oks_quality"):
        assert torch_out[key].dtype == np.float32 and torch_out[key].shape[0] == 20
        np.testing.assert_allclose(ort_out[key], torch_out[key], atol=1e-4)
    with torch.inference_mode():  # splitting does not change results
        whole = model(torch.from_numpy(images))["presence"].numpy()
    np.testing.assert_allclose(torch_out["presence"], whole, atol=1e-6)


def test_empty_batch_gives_empty_outputs(tiny):
    out = OrtRunner(tiny[1]).run(np.zeros((0, 3, 256, 192), np.float32))
    assert out["prob_maps"].shape == (0, 17, 64, 48) and out["presence"].shape == (0, 17)


def test_onnx_input_size_is_checked_at_load(tiny, tmp_path):
    _, onnx_path, _ = tiny
    with pytest.raises(InputError, match=r"ONNX input is 192x256 .* the caller expects 128x160"):
        OrtRunner(onnx_path, input_size=(128, 160))
    copy = tmp_path / "m.onnx"
    copy.write_bytes(onnx_path.read_bytes())
    sidecar_path(copy).write_text(sidecar_path(onnx_path).read_text().replace('"input_size": [\n    192,\n    256',
                                                                            '"input_size": [\n    96,\n    128'))
    with pytest.raises(InputError, match="the sidecar expects 96x128"):
        OrtRunner(copy)


def test_onnx_with_dynamic_spatial_input_is_refused(tmp_path):
    x = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])
    y = onnx.helper.make_tensor_value_info("prob_maps", onnx.TensorProto.FLOAT, ["n", 3, "h", "w"])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["images"], ["prob_maps"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, ir_version=8), str(tmp_path / "dyn.onnx"))
    with pytest.raises(InputError, match=r"static H, W; got \['\?', 3, '\?', '\?'\]"):
        OrtRunner(tmp_path / "dyn.onnx")


def test_missing_outputs_and_bad_files_are_input_errors(tmp_path):
    x = onnx.helper.make_tensor_value_info("images", onnx.TensorProto.FLOAT, ["n", 3, 256, 192])
    y = onnx.helper.make_tensor_value_info("logits", onnx.TensorProto.FLOAT, ["n", 3, 256, 192])
    graph = onnx.helper.make_graph([onnx.helper.make_node("Identity", ["images"], ["logits"])], "g", [x], [y])
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "other.onnx"))
    with pytest.raises(InputError, match=r"has no output\(s\) \['prob_maps'"):
        OrtRunner(tmp_path / "other.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"\x00\x01junk")
    with pytest.raises(InputError, match="cannot read ONNX model"):
        OrtRunner(tmp_path / "junk.onnx")
    with pytest.raises(InputError, match="not found"):
        OrtRunner(tmp_path / "absent.onnx")


def test_static_batch_model_is_padded_and_split(tiny, tmp_path):
    model, onnx_path, _ = tiny
    fixed = onnx.load(str(onnx_path))
    for value in list(fixed.graph.input) + list(fixed.graph.output):
        value.type.tensor_type.shape.dim[0].dim_value = 4
    onnx.save(fixed, str(tmp_path / "b4.onnx"))
    sidecar_path(tmp_path / "b4.onnx").write_text(sidecar_path(onnx_path).read_text())  # same model, same calibration
    runner = OrtRunner(tmp_path / "b4.onnx")
    assert runner.static_batch == 4 and runner.max_batch == 4
    images = sample_images(6, SIZE, seed=2)
    out = runner.run(images)
    assert out["prob_maps"].shape[0] == 6
    np.testing.assert_allclose(out["presence"], OrtRunner(onnx_path).run(images)["presence"], atol=1e-5)


def test_providers_put_cuda_first_and_threads_apply(tiny, monkeypatch):
    import onnxruntime

    assert default_providers()[-1] == "CPUExecutionProvider"
    runner = OrtRunner(tiny[1], threads=1)
    assert runner.session.get_session_options().intra_op_num_threads == 1
    assert runner.providers == ["CPUExecutionProvider"]
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CPUExecutionProvider", "TensorrtExecutionProvider", "CUDAExecutionProvider"])
    assert default_providers() == ["CUDAExecutionProvider", "CPUExecutionProvider"]


def test_make_runner_from_checkpoint_and_onnx(tiny, tmp_path):
    model, onnx_path, ckpt = tiny
    torch_runner = make_runner(ckpt, runtime="torch")
    assert isinstance(torch_runner, TorchRunner) and torch_runner.meta["presence_threshold"] == 0.4
    ort_runner = make_runner(ckpt, runtime="ort", cache_dir=tmp_path, threads=1)
    exported = list((tmp_path / "onnx").glob("*.onnx"))
    assert isinstance(ort_runner, OrtRunner) and len(exported) == 1
    assert ort_runner.meta["presence_threshold"] == 0.4
    mtime = exported[0].stat().st_mtime_ns
    make_runner(ckpt, runtime="ort", cache_dir=tmp_path)  # second time: the cached export is reused
    assert exported[0].stat().st_mtime_ns == mtime and len(list((tmp_path / "onnx").iterdir())) == 2
    images = sample_images(3, SIZE, seed=4)
    np.testing.assert_allclose(ort_runner.run(images)["prob_maps"], torch_runner.run(images)["prob_maps"], atol=1e-4)
    assert isinstance(make_runner(onnx_path), OrtRunner)


def test_auto_export_cache_is_keyed_by_exporter_version_and_options(tiny, tmp_path, monkeypatch):
    _, _, ckpt = tiny
    first = make_runner(ckpt, runtime="ort", cache_dir=tmp_path)
    assert first.meta["exporter"]["exporter_version"] == export.EXPORTER_VERSION
    assert first.meta["sparsemax"]["exact"] is True
    monkeypatch.setattr(export, "EXPORTER_VERSION", 999, raising=False)  # a changed exporter, same checkpoint
    second = make_runner(ckpt, runtime="ort", cache_dir=tmp_path)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 2  # exported again, not the old file reused
    assert second.meta["exporter"]["exporter_version"] == 999


@pytest.mark.parametrize("sparsemax, k", [
    ({"method": "topk", "k": 128}, 128),  # an explicit small-k export, or an older default export
    ({"method": "topk", "k": 3072, "exact": True}, None),  # all 64x48 pixels: exact
    ({"method": "bisect", "k": None}, None),
    (None, None),  # a heatmap-baseline model: no Sparsemax
])
def test_support_check_bound_from_the_sidecar(sparsemax, k):
    meta = {"sparsemax": sparsemax, "heatmap_size": [48, 64]}
    assert topk_bound(meta) == k
    check = SupportCheck(meta)
    maps = np.zeros((2, 17, 64, 48), np.float32)
    maps[0, 3].reshape(-1)[:200] = 1 / 200  # support 200 >= 128
    maps[1, 5].reshape(-1)[:128] = 1 / 128  # exactly k: possibly truncated
    maps[1, 6].reshape(-1)[:127] = 1 / 127  # below k: exact
    assert check({"prob_maps": maps, "wide_prob_maps": maps[:, :2]}) is not None
    assert (check.maps_checked, check.truncated_maps) == ((2 * 17 + 2 * 2, 2) if k else (0, 0))


@pytest.mark.parametrize("path, runtime, message", [
    ("tiny.onnx", "torch", "needs our .pt checkpoint"),
    ("tiny.pt", "tensorflow", "unknown runtime"),
    ("absent.pt", "ort", "model not found"),
    ("tiny.json", "ort", "must be our checkpoint"),
])
def test_make_runner_errors(tiny, path, runtime, message):
    with pytest.raises(InputError, match=message):
        make_runner(tiny[2].parent / path, runtime=runtime)


def test_onnx_without_its_sidecar_is_refused_unless_explicitly_allowed(tiny, tmp_path):
    """The sidecar holds the calibration (presence threshold, temperature, sharpness): without it a
    model would silently run with the defaults, so every way of loading one refuses it with one
    error naming the missing file; allow_uncalibrated runs it with a warning, once per file."""
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(tiny[1].read_bytes())
    missing = str(sidecar_path(bare))
    for load in (lambda: OrtRunner(bare), lambda: make_runner(bare), lambda: as_runner(str(bare))):
        with pytest.raises(InputError, match="no metadata sidecar") as info:
            load()
        assert missing in str(info.value) and "--allow-uncalibrated" in str(info.value)
    with pytest.warns(UserWarning, match="UNCALIBRATED") as caught:
        runner = make_runner(bare, allow_uncalibrated=True)
    assert len(caught) == 1 and missing in str(caught[0].message)
    assert isinstance(runner, OrtRunner) and runner.meta == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the second load of the same file does not warn again
        assert as_runner(bare, allow_uncalibrated=True).meta == {}
        assert OrtRunner(tiny[1]).meta["presence_threshold"] == 0.45  # with its sidecar: no warning
