"""The optional OpenVINO runtime: the same Runner interface and outputs as OrtRunner on the same
.onnx + sidecar (parity skipped, with the reason, where OpenVINO is not installed), a clear
InputError where it is absent, its place among the CLI's runtimes, and the .onnx bench."""
import subprocess
import sys

import numpy as np
import pytest
from test_export import TINY_VIT, peaked_model

from probpose_core import geometry
from probpose_core.cli import build_parser
from probpose_core.errors import InputError
from probpose_core.models.pose_model import vit_config
from probpose_core.runtime import RUNTIMES, Runner, make_runner
from probpose_core.runtime.export import PARITY_TOLERANCES, clip_crops, export_onnx, parity_problems, \
    parity_report, sample_images
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.shipped import default_pose_model

try:
    import openvino  # noqa: F401
    OPENVINO = None
except ImportError as exc:
    OPENVINO = f"OpenVINO is not installed ({exc}); it is optional: pip install -r requirements-optional.txt"
needs_openvino = pytest.mark.skipif(OPENVINO is not None, reason=OPENVINO or "")


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    model = peaked_model(vit_config("t", **TINY_VIT))
    return export_onnx(model, tmp_path_factory.mktemp("openvino") / "tiny.onnx")


def test_absent_openvino_is_an_input_error_naming_the_install(tiny_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino -> ImportError
    with pytest.raises(InputError, match="pip install openvino"):
        make_runner(tiny_onnx, "openvino")


def test_openvino_is_a_cli_runtime():
    assert "openvino" in RUNTIMES
    for command in ("predict --images i --out o.json", "coverage --images i --ann a.json", "demo"):
        args = build_parser().parse_args(command.split() + ["--runtime", "openvino"])
        assert args.runtime == "openvino"


@needs_openvino
def test_openvino_matches_ort_and_splits_batches(tiny_onnx):
    from probpose_core.runtime.openvino_runner import OpenVinoRunner

    runner = make_runner(tiny_onnx, "openvino", max_batch=4)
    ort = OrtRunner(tiny_onnx)
    assert isinstance(runner, OpenVinoRunner) and isinstance(runner, Runner) and runner.name == "openvino"
    assert runner.meta == ort.meta and runner.input_size == ort.input_size and runner.max_batch == 4
    images = sample_images(7, ort.input_size, seed=3)  # 4 + 3: two calls
    ours, theirs = runner.run(images), ort.run(images)
    assert list(ours) == list(theirs)
    for key, value in theirs.items():
        assert ours[key].dtype == np.float32 and ours[key].shape == value.shape
        np.testing.assert_allclose(ours[key], value, atol=1e-3)
    first = runner.run(images[:1])["prob_maps"]
    runner.run(images[1:3])  # outputs are copies: a later call does not overwrite them
    np.testing.assert_array_equal(first, runner.run(images[:1])["prob_maps"])
    empty = runner.run(np.zeros((0, 3, 256, 192), np.float32))
    assert empty["prob_maps"].shape == (0, 17, 64, 48) and empty["presence"].shape == (0, 17)


@needs_openvino
def test_openvino_refuses_a_model_without_its_sidecar(tiny_onnx, tmp_path):
    bare = tmp_path / "bare.onnx"
    bare.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(InputError, match="no metadata sidecar"):
        make_runner(bare, "openvino")


@needs_openvino
def test_openvino_parity_on_the_shipped_model_with_real_crops():
    """The shipped student on real crops of the demo clip: OpenVINO (f32) within the fp32
    tolerances of export.parity_report against ORT, keypoints included."""
    model = default_pose_model()
    ort = OrtRunner(model)
    images = geometry.normalise(clip_crops(6, seed=1)).astype(np.float32)
    report = parity_report(ort, make_runner(model, "openvino"), images,
                           presence_threshold=ort.meta.get("presence_threshold", 0.45))
    assert report["keypoints_compared"] > 0
    assert parity_problems(report, PARITY_TOLERANCES["fp32"]) == []


def test_onnx_bench_times_session_options_and_runtimes(tiny_onnx):
    from probpose_core.bench_model import ONNX_BATCHES, run_onnx_bench

    lines = []
    tables = run_onnx_bench(tiny_onnx, repeats=1, compare=[tiny_onnx], out=lines.append)
    options, runtimes = tables["onnxruntime session options"], tables["runtimes"]
    assert {"shipped", "intra-op threads 1", "spinning on", "graph opt basic", "parallel execution"} <= set(options)
    assert {"ort", "ort tiny.onnx"} <= set(runtimes) and ("openvino" in runtimes) == (OPENVINO is None)
    assert all(row[b] > 0 for table in tables.values() for row in table.values() for b in ONNX_BATCHES)
    assert all(row["frame"] > 0 for table in tables.values() for row in table.values())
    assert any(line.startswith("runtimes (tiny.onnx") for line in lines)


@needs_openvino
def test_openvino_path_imports_no_torch(tiny_onnx):
    done = subprocess.run([sys.executable, "-c", f"""
import subprocess
import sys
from probpose_core.runtime import make_runner
runner = make_runner({str(tiny_onnx)!r}, "openvino")
runner.run(__import__("numpy").zeros((1, 3, 256, 192), "float32"))
assert "torch" not in sys.modules, "torch imported"
"""], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
