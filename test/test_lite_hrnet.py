"""Lite-HRNet student (PP-TinyPose 256x192 layout): shapes, the fusion's two quirks, the
converter's graph walk, and (when ../shared/data/pp_tinypose is there) the real conversion
against PP-TinyPose in ONNX Runtime."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from probpose_core.models.lite_hrnet import HRModule, LiteHRNet
from probpose_core.models.pose_model import PoseModelConfig, build_model, lite_hrnet_config, num_params
from probpose_core.runtime.export import sample_images

ROOT = Path(__file__).resolve().parents[1]
TINYPOSE = ROOT.parent / "shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx"


def converter():
    spec = importlib.util.spec_from_file_location("tinypose_student_init", ROOT / "tools" / "tinypose_student_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(lite_hrnet_config()).eval()


def test_stride4_features_and_probability_maps(model):
    config = model.config
    assert config.feature_grid == (64, 48) and not config.head_upsamples
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in model.modules())
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.backbone.modules())  # folded
    images = torch.from_numpy(sample_images(2, config.input_size))
    with torch.no_grad():
        features = model.backbone(images)
        out = model(images)
    assert features.shape == (2, LiteHRNet.embed_dim, 64, 48)
    assert out["prob_maps"].shape == (2, 17, 64, 48)
    np.testing.assert_allclose(out["prob_maps"].sum(dim=(2, 3)).numpy(), 1.0, atol=1e-5)
    for key in ("presence", "visibility", "oks_quality"):
        assert out[key].shape == (2, 17) and float(out[key].min()) >= 0 and float(out[key].max()) <= 1
    assert 1.3e6 < num_params(model) < 1.6e6


def test_embed_dim_is_checked():
    with pytest.raises(ValueError, match="lite_hrnet backbone gives 40 channels"):
        PoseModelConfig(backbone="lite_hrnet", embed_dim=24)


def test_fusion_counts_the_first_term_twice_and_reads_the_fused_output_0():
    """Output 1 of a 2-branch module = ReLU(2 * down(fused_0) + x1), fused_0 = 2 * x0 + up(conv(x1))
    before its ReLU: the two details of the trained network (module docstring)."""
    torch.manual_seed(1)
    module = HRModule(2).eval()
    for branch in module.branches:  # the blocks are not what this test is about
        for i in range(len(branch)):
            branch[i] = nn.Identity()
    x0, x1 = torch.randn(1, 40, 8, 6), torch.randn(1, 80, 4, 3)
    with torch.no_grad():
        out0, out1 = module([x0, x1])
        fused0 = 2 * x0 + module.fuse[0][1](x1)
        expected1 = torch.relu(2 * module.fuse[1][0](fused0) + x1)
    torch.testing.assert_close(out0, torch.relu(fused0))
    torch.testing.assert_close(out1, expected1)
    assert float((fused0 < 0).float().mean()) > 0.1  # the pre-ReLU input matters here


def test_post_order_lists_every_conv_of_the_map_path_once(model):
    tool = converter()
    convs = tool.student_convs(model)
    map_path = [m for m in list(model.backbone.modules()) + list(model.head.deconv_layers.modules())
                + [model.head.final_layer] if isinstance(m, nn.Conv2d)]
    assert len(convs) == len(map_path) == 269
    assert {id(c) for c in convs} == {id(c) for c in map_path}
    assert convs[-1] is model.head.final_layer  # the output's producer comes last


@pytest.mark.skipif(not TINYPOSE.is_file(), reason=f"{TINYPOSE} not here (../shared/data/pp_tinypose)")
def test_conversion_reproduces_tinypose_heatmaps():
    tool = converter()
    torch.manual_seed(0)
    student = build_model(lite_hrnet_config()).eval()
    assert tool.load_tinypose(student, TINYPOSE) == 269
    assert tool.parity(student, TINYPOSE, tool.parity_crops(2)) < tool.PARITY_LIMIT
    # an untouched model is far from it: the check can fail
    assert tool.parity(build_model(lite_hrnet_config()).eval(), TINYPOSE, tool.parity_crops(1)) > 0.1
