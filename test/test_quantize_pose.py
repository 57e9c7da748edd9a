"""tools/quantize_pose.py: which nodes stay float, and the int8 model + sidecar it writes."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from probpose_core.models.pose_model import build_model, cnn_config
from probpose_core.runtime import make_runner
from probpose_core.runtime.base import OUTPUT_NAMES, file_sha256, load_sidecar
from probpose_core.runtime.export import export_onnx, sample_images

TOOL = Path(__file__).resolve().parents[1] / "tools" / "quantize_pose.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("quantize_pose", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("quantize_pose", module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cnn_onnx(tmp_path_factory):
    return export_onnx(build_model(cnn_config()).eval(), tmp_path_factory.mktemp("quantize") / "cnn.onnx")


def test_float_tail_runs_from_every_output_back_to_its_last_conv(tool, cnn_onnx):
    model = onnx.load(str(cnn_onnx))
    tail = set(tool.float_tail(model))
    nodes = {n.name: n for n in model.graph.node}
    producer = {out: n.name for n in model.graph.node for out in n.output}
    assert {producer[name] for name in OUTPUT_NAMES} <= tail
    assert any(nodes[n].op_type == "Sigmoid" for n in tail)  # presence / visibility / OKS-quality
    ends = [n for n in tail if nodes[n].op_type == "Conv"]
    assert ends
    for name in tail:  # closed upwards up to the convolutions: every input of a tail node
        if nodes[name].op_type != "Conv":  # that some node computes comes from the tail
            assert all(producer[i] in tail for i in nodes[name].input if i in producer)
    assert len(tail) < len(nodes)


def test_quantize_writes_an_int8_model_with_its_sidecar(tool, cnn_onnx, tmp_path):
    out = tool.quantize(cnn_onnx, tmp_path / "cnn.int8.onnx", sample_images(8, (192, 256), seed=1), log=lambda s: None)
    model = onnx.load(str(out))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    tail = set(tool.float_tail(model))
    assert {n.name for n in model.graph.node if n.op_type == "Sigmoid"} <= tail
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    for node in model.graph.node:  # the tail reads no int8 weights; only its convolutions' data input
        if node.name in tail:      # comes from the quantised trunk
            assert not set(node.input[1:] if node.op_type == "Conv" else node.input) & dequantized, node.name
    sidecar = load_sidecar(out)
    assert sidecar["onnx_sha256"] == file_sha256(out)
    assert sidecar["quantization"]["type"] == "onnxruntime static QDQ"
    assert sidecar["quantization"]["float_model_sha256"] == file_sha256(cnn_onnx)
    result = make_runner(out).run(sample_images(3, (192, 256), seed=2))
    assert result["prob_maps"].shape == (3, 17, 64, 48)
    assert np.isfinite(result["presence"]).all()
    np.testing.assert_allclose(result["prob_maps"].sum((2, 3)), 1.0, atol=1e-4)  # Sparsemax kept float
