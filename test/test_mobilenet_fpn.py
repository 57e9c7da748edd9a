"""MobileNetV2-FPN student (MoveNet-multipose layout): shapes, TF-SAME strides, the converter's
input-scaling fold, ONNX Runtime parity, and (when tools/build_models.sh has run) the real
conversion against MoveNet-multipose in ONNX Runtime."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probpose_core.models.mobilenet_fpn import TAPS, MobileNetV2FPN
from probpose_core.models.pose_model import PoseModelConfig, build_model, gmacs, mobilenet_fpn_config, num_params
from probpose_core.runtime.export import export_onnx, parity_report, sample_images
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.torch_runner import TorchRunner

ROOT = Path(__file__).resolve().parents[1]


def converter():
    spec = importlib.util.spec_from_file_location("movenet_student_init", ROOT / "tools" / "movenet_student_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(mobilenet_fpn_config()).eval()


def test_stride4_features_feed_the_head_without_deconvolution(model):
    config = model.config
    assert config.feature_grid == (64, 48) and not config.head_upsamples
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    images = torch.from_numpy(sample_images(2, config.input_size))
    with torch.no_grad():
        features = model.backbone(images)
        out = model(images)
    assert features.shape == (2, 24, 64, 48)
    assert out["prob_maps"].shape == (2, 17, 64, 48)
    assert torch.allclose(out["prob_maps"].sum(dim=(2, 3)), torch.ones(2, 17), atol=1e-5)
    for key in ("presence", "visibility", "oks_quality"):
        assert out[key].shape == (2, 17) and bool(((out[key] >= 0) & (out[key] <= 1)).all())
    assert 0.6 < gmacs(model) < 0.8 and num_params(model) < 5.5e6  # measured 0.74 GMACs, 4.81 M


def test_pyramid_taps_are_at_strides_4_8_16_32(model):
    x = torch.zeros(1, 3, 256, 192)
    sizes = {}
    with torch.no_grad():
        for i, layer in enumerate(model.backbone.features):
            x = layer(x)
            sizes[i] = tuple(x.shape[-2:])
    assert {s: sizes[i] for s, i in TAPS.items()} == {4: (64, 48), 8: (32, 24), 16: (16, 12)}
    assert sizes[len(model.backbone.features) - 1] == (8, 6)


def test_strided_convs_pad_like_tensorflow_same():
    # TF SAME on an even input, kernel 3, stride 2: no padding before, one pixel after. A delta at
    # the bottom-right input pixel reaches the last output; with PyTorch's symmetric padding it would not.
    stem = MobileNetV2FPN().features[0][:2].eval()
    with torch.no_grad():
        stem[1].weight.fill_(1.0), stem[1].bias.zero_()
        x = torch.zeros(1, 3, 8, 6)
        x[..., -1, -1] = 1.0
        y = stem(x)
        x0 = torch.zeros(1, 3, 8, 6)
        x0[..., 0, 0] = 1.0
        y0 = stem(x0)
    assert y.shape[-2:] == (4, 3) and float(y[0, 0, -1, -1]) == 3.0
    assert float(y0[0, 0, 0, 0]) == 3.0  # the first input pixel is the first window's top-left corner


def test_fpn_embed_dim_is_checked():
    with pytest.raises(ValueError, match="embed_dim must be 24"):
        PoseModelConfig(backbone="mobilenetv2_fpn", embed_dim=128)


def test_input_scaling_fold_moves_movenet_normalisation_into_the_stem():
    tool = converter()
    torch.manual_seed(4)
    model = build_model(mobilenet_fpn_config()).eval()
    stem = model.backbone.features[0]
    with torch.no_grad():
        stem[1].bias.normal_()
    crops = (np.random.default_rng(0).random((2, 256, 192, 3)) * 255).astype(np.uint8)
    with torch.no_grad():
        before = stem(tool.normalise(crops, movenet=True))
        tool.fold_input_scaling(model)
        after = stem(tool.normalise(crops))
    interior = (slice(None), slice(None), slice(0, -1), slice(0, -1))  # the padded last row / column differ
    assert torch.allclose(after[interior], before[interior], atol=1e-4)


def test_balance_fpn_keeps_the_function_and_brings_activations_to_unit_scale():
    tool = converter()
    torch.manual_seed(5)
    model = build_model(mobilenet_fpn_config()).eval()
    fpn = model.backbone
    with torch.no_grad():  # MoveNet-like scales: big sums into small 1x1 weights
        fpn.top.weight.mul_(5000), fpn.smooth[2][0].weight.mul_(20), fpn.smooth[2][1].weight.div_(300)
    images = torch.from_numpy(sample_images(3, model.config.input_size, seed=6))
    seen = {}
    for i, smooth in enumerate(fpn.smooth):
        smooth[0].register_forward_hook(lambda m, inp, out, i=i: seen.update({i: (float(inp[0].abs().mean()),
                                                                                 float(out.abs().mean()))}))
    with torch.no_grad():
        before = model.backbone(images)
        scales = tool.balance_fpn(model, images)
        after = model.backbone(images)
    assert set(scales) == {0, 1, 2} and scales[0][0] > 5  # the top-level sum was large
    assert torch.allclose(after, before, rtol=1e-4, atol=1e-5 * float(before.abs().max()))
    for i in range(3):
        assert seen[i] == pytest.approx((1.0, 1.0), rel=1e-3)  # last forward: the balanced one


def test_onnx_runtime_equals_torch(tmp_path):
    torch.manual_seed(1)
    model = build_model(mobilenet_fpn_config()).eval()
    images = torch.from_numpy(sample_images(2, model.config.input_size, seed=5))
    with torch.no_grad():  # peaked maps with small supports, as a trained model's (decoding flat maps is ill-posed)
        factor = 4.0 / model(images, return_logits=True)["map_logits"].std(dim=(2, 3)).mean()
        model.head.final_layer.weight.mul_(factor), model.head.final_layer.bias.mul_(factor)
    path = export_onnx(model, tmp_path / "student.onnx")
    report = parity_report(TorchRunner(model), OrtRunner(path, threads=2), sample_images(3, model.config.input_size))
    assert max(report["max_abs_diff"].values()) <= 1e-4, report
    assert report["keypoints_max_px_diff"] <= 1e-3, report


MOVENET = ROOT / "out" / "build_models" / "detectors" / "movenet-multipose.onnx"


@pytest.mark.skipif(not MOVENET.is_file(), reason="MoveNet-multipose ONNX not built here (tools/build_models.sh)")
def test_real_conversion_reproduces_movenet_heatmap_logits(tmp_path):
    from probpose_core.models.checkpoints import load_checkpoint

    out = tmp_path / "init.pt"
    assert converter().main(["--onnx", str(MOVENET), "--out", str(out)]) == 0  # exits above 5e-3
    loaded, meta = load_checkpoint(out)
    assert meta["config"] == mobilenet_fpn_config()
    assert meta["extra"]["parity_max_abs_logit"] <= 5e-3


def test_student_training_config_builds_the_default_student():
    from training.config import load_config

    config = load_config(ROOT / "training" / "configs" / "student_fpn.yaml")
    assert config.model == mobilenet_fpn_config()
    assert config.loss.kind == "probmap" and config.data.augment.crop_prob > 0
    assert config.optim.frozen == ["backbone.features."]
    assert Path(config.run.init_weights).name == "student_fpn_init.pt"  # tools/movenet_student_init.py's output
