"""The layers of the house, checked in fresh interpreters (what a module imports shows in sys.modules):

- ``probpose_core`` imports no ROS (rclpy);
- the ONNX Runtime inference path (pipeline + ORT runner + detectors + decode, double heatmap
  included, and ``probpose predict``'s module) imports no torch;
- the codec imports nothing from ``evaluation`` or ``data``;
- ``data`` imports nothing from ``pipeline``.
"""
import json
import pkgutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import probpose_core

ROOT = Path(__file__).resolve().parents[1]


def modules_after(code: str) -> set[str]:
    """The names in sys.modules after running ``code`` in a fresh interpreter."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return set(json.loads(done.stdout.strip().splitlines()[-1]))


def under(modules: set[str], package: str) -> list[str]:
    return sorted(m for m in modules if m == package or m.startswith(package + "."))


def all_modules(package) -> list[str]:
    return sorted(m.name for m in pkgutil.walk_packages(package.__path__, package.__name__ + "."))


def test_probpose_core_imports_no_ros():
    names = all_modules(probpose_core)
    assert "probpose_core.pipeline" in names and "probpose_core.models.checkpoints" in names
    loaded = modules_after("import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names))
    assert not under(loaded, "rclpy") and not under(loaded, "probpose_ros") and not under(loaded, "rosidl_runtime_py")


@pytest.fixture(scope="module")
def double_heatmap_onnx(tmp_path_factory):
    """A tiny double-heatmap CNN exported to ONNX (exporting needs torch; running it must not)."""
    import torch

    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(0)
    model = build_model(cnn_config(double_heatmap=True)).eval()
    return export_onnx(model, tmp_path_factory.mktemp("layers") / "double.onnx")


def test_onnx_runtime_inference_path_imports_no_torch(double_heatmap_onnx):
    loaded = modules_after(f"""
        import numpy as np
        from probpose_core.detection import make_detector
        from probpose_core.pipeline import Pipeline
        from probpose_core.predict import predict_images
        from probpose_core.runtime import make_runner
        from probpose_core.spec import model_spec

        runner = make_runner({str(double_heatmap_onnx)!r}, runtime="ort")
        assert model_spec(runner).double_heatmap and "wide_prob_maps" in runner.output_names
        pipe = Pipeline(runner, detector=make_detector("full_frame"), credible_levels=(0.5,), presence_threshold=0.0)
        frame = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
        [human] = pipe(frame)
        assert any(kp.regions for kp in human.keypoints)  # decoded, with regions, through the double-heatmap path
        for name in ("picodet", "nanodet", "hog"):
            make_detector(name)
    """)
    assert not under(loaded, "torch"), under(loaded, "torch")[:5]


def test_codec_imports_nothing_from_evaluation_or_data():
    loaded = modules_after("import probpose_core.codec")
    assert not under(loaded, "probpose_core.evaluation") and not under(loaded, "probpose_core.data")


def test_data_imports_nothing_from_the_pipeline():
    names = all_modules(probpose_core.data)
    assert "probpose_core.data.dataset" in names
    loaded = modules_after("import importlib\n" + "".join(f"importlib.import_module({n!r})\n" for n in names))
    assert not under(loaded, "probpose_core.pipeline") and not under(loaded, "probpose_core.predict")
