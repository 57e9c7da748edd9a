"""training.config: YAML <-> TrainConfig round trip, path resolution, overrides, clear errors."""
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.errors import InputError
from training.config import TrainConfig, dump_config, load_config, save_config

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "training" / "configs").glob("*.yaml"))


def _write(tmp_path, data, name="exp.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_shipped_configs_load_and_round_trip(tmp_path):
    assert {p.name for p in CONFIGS} >= {"probpose_vit_s_coco.yaml", "heatmap_mse_vit_s_coco.yaml", "tiny_cpu.yaml"}
    for path in CONFIGS:
        config = load_config(path)
        saved = save_config(config, tmp_path / path.name)
        again = load_config(saved)
        assert again == config
        assert dump_config(again) == saved.read_text()  # text round trip too


def test_shipped_configs_settings():
    probpose = load_config(CONFIGS[0].with_name("probpose_vit_s_coco.yaml"))
    baseline = load_config(CONFIGS[0].with_name("heatmap_mse_vit_s_coco.yaml"))
    assert (probpose.model.embed_dim, probpose.model.depth, probpose.model.num_heads) == (384, 12, 12)
    assert probpose.optim.lr == 5e-5 and probpose.optim.lr_batch == 512 and probpose.optim.layer_decay == 0.8
    assert probpose.schedule.milestones == [170, 200] and probpose.schedule.epochs == 210
    assert probpose.data.augment.crop_prob > 0 and probpose.run.flip_test
    assert baseline.model.map_kind == "heatmap" and baseline.loss.kind == "heatmap"
    assert baseline.data.heatmap_sigma == 2.0 and baseline.data.augment.crop_prob == 0
    # the two differ only where the baseline has to
    assert baseline.optim == probpose.optim and baseline.schedule == probpose.schedule


def test_default_round_trip(tmp_path):
    config = TrainConfig()
    config.run.out_dir = str(tmp_path / "out")
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        setattr(config.data, key, str(tmp_path / key))
    assert load_config(save_config(config, tmp_path / "c.yaml")) == config


def test_paths_relative_to_yaml_file(tmp_path, monkeypatch):
    sub = tmp_path / "configs"
    sub.mkdir()
    path = _write(sub, {"data": {"train_ann": "../data/a.json", "val_detections": "/abs/dets.json"},
                        "run": {"out_dir": "runs/x"}})
    monkeypatch.chdir(tmp_path.parent)
    config = load_config(path)
    assert config.data.train_ann == str((tmp_path / "data" / "a.json").resolve())
    assert config.data.val_detections == "/abs/dets.json"
    assert config.run.out_dir == str((sub / "runs" / "x").resolve())
    # a path given on the command line is relative to the current directory
    config = load_config(path, ["run.out_dir=elsewhere"])
    assert config.run.out_dir == str((tmp_path.parent / "elsewhere").resolve())


def test_overrides(tmp_path):
    path = _write(tmp_path, {"optim": {"lr": 5e-5}})
    config = load_config(path, ["optim.lr=1e-4", "schedule.milestones=[3, 4]", "run.max_iters_per_epoch=5",
                                "data.augment.crop_prob=0", "model.backbone=cnn", "optim.grad_clip=null",
                                "optim.betas=[0.8, 0.9]"])
    assert config.optim.lr == 1e-4 and isinstance(config.optim.lr, float)
    assert config.schedule.milestones == [3, 4] and config.run.max_iters_per_epoch == 5
    assert config.data.augment.crop_prob == 0.0 and config.model.backbone == "cnn"
    assert config.optim.grad_clip is None and config.optim.betas == (0.8, 0.9)


def test_yaml_float_without_dot(tmp_path):
    path = tmp_path / "e.yaml"
    path.write_text("optim:\n  lr: 5e-5\n")  # YAML 1.1 reads this as a string
    assert load_config(path).optim.lr == 5e-5


@pytest.mark.parametrize("data, needle", [
    ({"optim": {"lrr": 1}}, "optim.lrr"),
    ({"bogus": 1}, "bogus"),
    ({"data": {"augment": {"flip_probability": 0.5}}}, "data.augment.flip_probability"),
    ({"optim": {"lr": "fast"}}, "optim.lr"),
    ({"data": {"batch_size": 2.5}}, "data.batch_size"),
    ({"data": {"batch_size": True}}, "data.batch_size"),
    ({"run": {"amp": "yes"}}, "run.amp"),
    ({"schedule": {"milestones": [1, "x"]}}, "schedule.milestones[1]"),
    ({"optim": {"betas": [0.9]}}, "optim.betas"),
    ({"optim": 3}, "optim"),
    ({"model": {"backbone": "resnet"}}, "model"),
    ({"loss": {"kind": "l2"}}, "loss"),
])
def test_bad_keys_and_types_name_the_key(tmp_path, data, needle):
    with pytest.raises(InputError) as info:
        load_config(_write(tmp_path, data))
    message = str(info.value)
    assert needle in message and "\n" not in message


@pytest.mark.parametrize("override, needle", [
    ("optim.nope=1", "optim.nope"), ("nope.lr=1", "nope"), ("optim.lr", "key.path=value"),
    ("run.seed=abc", "run.seed"), ("model.temperature=0", "model.temperature")])
def test_bad_overrides(tmp_path, override, needle):
    with pytest.raises(InputError, match=needle.replace(".", r"\.")):
        load_config(_write(tmp_path, {}), [override])


def test_missing_or_invalid_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_config(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [unclosed\n")
    with pytest.raises(InputError, match="YAML"):
        load_config(bad)


@settings(max_examples=25, deadline=None)
@given(lr=st.floats(1e-8, 1.0), seed=st.integers(0, 2 ** 31), epochs=st.integers(1, 500),
       milestones=st.lists(st.integers(1, 500), max_size=4), clip=st.one_of(st.none(), st.floats(0.01, 10.0)),
       crop=st.floats(0.0, 1.0), sigma=st.one_of(st.none(), st.floats(0.5, 4.0)))
def test_round_trip_property(tmp_path_factory, lr, seed, epochs, milestones, clip, crop, sigma):
    config = TrainConfig()
    config.optim.lr, config.optim.grad_clip, config.run.seed = lr, clip, seed
    config.schedule.epochs, config.schedule.milestones = epochs, milestones
    config.data.augment.crop_prob, config.data.heatmap_sigma = crop, sigma
    path = save_config(config, tmp_path_factory.mktemp("rt") / "c.yaml")
    loaded = load_config(path)
    # paths come back absolute (resolved against the file); everything else exactly
    for key in ("train_ann", "train_images", "val_ann", "val_images"):
        setattr(config.data, key, getattr(loaded.data, key))
    config.run.out_dir = loaded.run.out_dir
    assert loaded == config
