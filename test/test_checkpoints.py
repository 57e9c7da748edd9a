"""Checkpoints: our format round trip, official MMPose / ViTPose files (exact manifests), bad files, CLI."""
import collections
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.keypoints import FLIP_INDEX, NAMES, SIGMAS
from probpose_core.models import build_model, vit_config
from probpose_core.models.checkpoints import (codec_from_settings, convert_checkpoint, empty_model, load_checkpoint,
                                              save_checkpoint, weights_hash)

MANIFESTS = Path(__file__).parent / "data" / "checkpoint_manifests"
ROOT = Path(__file__).resolve().parents[1]


def manifest(name: str) -> list[tuple[str, tuple]]:
    rows = [line.split("\t") for line in (MANIFESTS / name).read_text().splitlines() if line]
    return [(k, () if s == "scalar" else tuple(int(v) for v in s.split("x"))) for k, s in rows]


def random_state_dict(rows, seed: int) -> collections.OrderedDict:
    """Random tensors with exactly the manifest's keys and shapes (BN variances positive)."""
    g = torch.Generator().manual_seed(seed)
    sd = collections.OrderedDict()
    for key, shape in rows:
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(1000, dtype=torch.int64)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.05
    sd._metadata = collections.OrderedDict({"": {"version": 2}})  # as mmengine saves it
    return sd


def official_file(path: Path, state_dict) -> Path:
    """Wrapped as the released files are: mmengine meta with numpy arrays + state_dict."""
    meta = {"epoch": 210, "iter": 1000, "mmengine_version": "0.10.3",
            "dataset_meta": {"dataset_name": "coco", "sigmas": np.asarray(SIGMAS, np.float32),
                             "flip_indices": list(FLIP_INDEX), "keypoint_id2name": dict(enumerate(NAMES))}}
    torch.save({"meta": meta, "state_dict": state_dict}, path)
    return path


@pytest.fixture(scope="module")
def images():
    return torch.randn(2, 3, 256, 192, generator=torch.Generator().manual_seed(7))


@pytest.fixture(scope="module")
def probpose_file(tmp_path_factory):
    sd = random_state_dict(manifest("probpose_s_state_dict.tsv"), seed=1)
    sd["data_preprocessor.mean"] = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)  # ignored if present
    return official_file(tmp_path_factory.mktemp("mmpose") / "probpose-s.pth", sd), sd


def outputs(model, images):
    with torch.no_grad():
        return model.eval()(images)


def test_mmpose_convert_save_load_keeps_outputs(probpose_file, images, tmp_path):
    path, raw = probpose_file
    reference = empty_model(vit_config("s"))
    reference.load_state_dict({k: v for k, v in raw.items() if not k.startswith("data_")}, strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy arrays in meta load without full unpickling
        out = convert_checkpoint(path, tmp_path / "probpose-s.pt", source="mmpose")
    model, meta = load_checkpoint(out)
    assert not model.training
    assert meta["config"] == vit_config("s")
    assert meta["extra"]["source"] == "mmpose" and not meta["heatmap_only"]
    assert meta["keypoints"]["names"] == list(NAMES) and meta["keypoints"]["flip_index"] == list(FLIP_INDEX)
    assert meta["presence_threshold"] == 0.45 and meta["temperature"] == 1.0
    assert meta["model_hash"] == weights_hash(model.state_dict())
    expected, got = outputs(reference, images), outputs(model, images)
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], atol=0, rtol=0)


def test_vitpose_convert_maps_every_key(tmp_path, images):
    rows = manifest("vitpose_s_state_dict.tsv")
    raw = random_state_dict(rows, seed=2)
    path = tmp_path / "vitpose-s.pth"
    torch.save({"meta": {"epoch": 210}, "state_dict": raw, "optimizer": {}}, path)
    model, meta = load_checkpoint(convert_checkpoint(path, tmp_path / "vitpose-s.pt", source="vitpose"))
    assert meta["heatmap_only"] and meta["config"] == vit_config("s")
    keymap = [line.split("\t") for line in (MANIFESTS / "vitpose_orig_to_mmpose1x_keymap.tsv").read_text().splitlines()]
    ours = model.state_dict()
    pos = raw["backbone.pos_embed"]
    for src, dst, _ in keymap:
        expected = pos[:, 1:] + pos[:, :1] if src == "backbone.pos_embed" else raw[src]
        torch.testing.assert_close(ours[dst], expected, atol=0, rtol=0)
    # reference forward: the same weights loaded by hand, ViTPose's pos-embed rule applied
    reference = build_model(vit_config("s"))  # random aux branches: only the maps are compared
    reference.load_state_dict({**reference.state_dict(), **{dst: ours[dst] for _, dst, _ in keymap}})
    got, expected = outputs(model, images), outputs(reference, images)
    torch.testing.assert_close(got["prob_maps"], expected["prob_maps"], atol=0, rtol=0)
    for key in ("presence", "visibility", "oks_quality"):  # no such branches in ViTPose: a constant 0.5
        torch.testing.assert_close(got[key], torch.full((2, 17), 0.5))


def test_round_trip_of_settings(tmp_path):
    cfg = vit_config("t", depth=2, double_heatmap=True, sparsemax_method="topk")
    model = build_model(cfg)
    codec = ProbMapCodec(refine_iters=3, blur_sigma=1.5)
    path = save_checkpoint(tmp_path / "m.pt", model, cfg, codec=codec, temperature=0.8, presence_threshold=0.3,
                           extra={"note": "x", "list": [1, 2.5]})
    data = torch.load(path, weights_only=True)  # plain types only
    assert data["format_version"] == 1
    loaded, meta = load_checkpoint(path)
    assert meta["config"] == cfg and meta["temperature"] == 0.8 and meta["presence_threshold"] == 0.3
    rebuilt = codec_from_settings(meta["codec"])
    np.testing.assert_array_equal(rebuilt.sigmas, codec.sigmas)
    assert (rebuilt.refine_iters, rebuilt.blur_sigma, rebuilt.heatmap_size) == (3, 1.5, codec.heatmap_size)
    assert meta["extra"] == {"note": "x", "list": [1, 2.5]}
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)
    with pytest.raises(ValueError, match="plain"):
        save_checkpoint(tmp_path / "bad.pt", model, cfg, extra={"a": np.zeros(2)})


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    cfg = vit_config("t", depth=1)
    return save_checkpoint(tmp_path_factory.mktemp("ck") / "t.pt", build_model(cfg), cfg)


def test_truncated_file_is_one_input_error(small_checkpoint, tmp_path):
    data = small_checkpoint.read_bytes()
    bad = tmp_path / "cut.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match="cut.pt.*corrupt or truncated"):
        load_checkpoint(bad)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError, match="junk.pt"):
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(InputError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_shape_mismatch_and_keys_are_named(small_checkpoint, tmp_path):
    data = torch.load(small_checkpoint, weights_only=True)
    sd = data["state_dict"]
    sd["head.final_layer.weight"] = torch.zeros(5, 256, 1, 1)
    sd["head.bogus"] = torch.zeros(1)
    del sd["backbone.ln1.bias"]
    torch.save(data, tmp_path / "mismatch.pt")
    with pytest.raises(InputError) as err:
        load_checkpoint(tmp_path / "mismatch.pt")
    message = str(err.value)
    assert "head.final_layer.weight (5, 256, 1, 1) vs model (17, 256, 1, 1)" in message
    assert "unexpected keys head.bogus" in message and "missing keys backbone.ln1.bias" in message
    assert "\n" not in message


def test_altered_weights_fail_the_hash(small_checkpoint, tmp_path):
    data = torch.load(small_checkpoint, weights_only=True)
    data["state_dict"]["backbone.ln1.weight"][0] += 1
    torch.save(data, tmp_path / "altered.pt")
    with pytest.raises(InputError, match="hash"):
        load_checkpoint(tmp_path / "altered.pt")


def test_official_file_is_not_our_format(probpose_file, tmp_path):
    path, _ = probpose_file
    with pytest.raises(InputError, match="probpose convert"):
        load_checkpoint(path)


def test_convert_shape_mismatch_names_the_key(tmp_path):
    rows = [(k, (512, 256, 4, 4) if k == "head.deconv_layers.0.weight" else s)
            for k, s in manifest("probpose_s_state_dict.tsv") if not k.startswith("backbone.layers.")
            or k.startswith("backbone.layers.0.")]
    path = official_file(tmp_path / "bad.pth", random_state_dict(rows, seed=3))
    with pytest.raises(InputError, match=r"head\.deconv_layers\.0\.weight \(512, 256, 4, 4\) vs model \(384, 256"):
        convert_checkpoint(path, tmp_path / "out.pt", source="mmpose")


def test_infer_config_refuses_a_grid_our_vit_cannot_build_with_an_input_error(monkeypatch):
    # The token grid of pos_embed must be what our ViT's patch embedding gives for the inferred
    # input size; a mismatch is a clear InputError (it was an `assert`, gone under python -O).
    from probpose_core.models import checkpoints

    rows = [(k, s) for k, s in manifest("probpose_s_state_dict.tsv") if not k.startswith("backbone.layers.")
            or k.startswith("backbone.layers.0.")]
    state_dict = random_state_dict(rows, seed=4)
    assert checkpoints.infer_config(state_dict, "ok.pth").input_size == (192, 256)
    monkeypatch.setattr(checkpoints, "patch_grid", lambda size, *a, **k: (15, 11))  # as another patch setting would
    with pytest.raises(InputError, match=r"odd\.pth: backbone\.pos_embed holds a 16x12 token grid.*15x11"):
        checkpoints.infer_config(state_dict, "odd.pth")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "probpose_core.cli", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def test_cli_convert(probpose_file, tmp_path):
    path, _ = probpose_file
    out = tmp_path / "cli.pt"
    done = run_cli("convert", "--from", "mmpose", str(path), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert load_checkpoint(out)[1]["extra"]["source_file"] == path.name
    bad = tmp_path / "bad.pth"
    bad.write_bytes(path.read_bytes()[:1000])
    done = run_cli("convert", "--from", "mmpose", str(bad), "--out", str(tmp_path / "x.pt"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probpose: error:") and "bad.pth" in lines[0]


def test_calibration_temperature_is_applied_on_load(tmp_path):
    import torch

    from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.sparsemax import sparsemax_maps

    config = cnn_config()
    model = build_model(config).eval()
    save_checkpoint(tmp_path / "cal.pt", model, config, temperature=2.0)
    loaded, meta = load_checkpoint(tmp_path / "cal.pt")
    assert meta["temperature"] == 2.0
    images = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        out = loaded(images, return_logits=True)
    expected = sparsemax_maps(out["map_logits"], config.temperature * 2.0)
    torch.testing.assert_close(out["prob_maps"], expected.clamp(0, 1))
