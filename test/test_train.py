"""training.train: resume reproduces the loss trajectory, DDP gradients, the CLI end to end.

The overfit check (mean OKS > 0.9 on 32 crops) lives in test_train_overfit.py (slow).
"""
import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.errors import InputError
from probpose_core.models import build_model, vit_config
from probpose_core.models.checkpoints import load_checkpoint
from training import distributed as D
from training.config import TrainConfig, load_config
from training.data import epoch_batches
from training.train import train

REPO = Path(__file__).resolve().parent.parent
TINY_YAML = REPO / "training" / "configs" / "tiny_cpu.yaml"
SMALL = dict(input_size=(96, 128), heatmap_size=(24, 32))  # 4x fewer pixels than 192x256: fast on CPU


def tiny_vit():
    return vit_config("t", embed_dim=32, depth=2, num_heads=2, drop_path=0.5, head_channels=16, aux_channels=8,
                      **SMALL)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_coco(root / "train", num_images=8, seed=0)
    write_synthetic_coco(root / "val", num_images=3, seed=1)
    return root


def small_config(root: Path, out: Path, **run) -> TrainConfig:
    config = TrainConfig()
    config.model = tiny_vit()
    d = config.data
    d.train_ann, d.train_images = str(root / "train" / "annotations.json"), str(root / "train" / "images")
    d.val_ann, d.val_images = str(root / "val" / "annotations.json"), str(root / "val" / "images")
    d.batch_size, d.workers = 4, 0
    config.optim.lr, config.optim.lr_batch, config.optim.layer_decay = 1e-3, None, 0.8
    s = config.schedule
    s.epochs, s.warmup_iters, s.milestones = 2, 2, [1]
    r = config.run
    r.out_dir, r.val_every, r.log_every, r.max_iters_per_epoch, r.progress, r.num_threads = str(out), 0, 1, 3, False, 0
    for key, value in run.items():
        setattr(r, key, value)
    return config


def read_log(path) -> list[dict]:
    with open(path, newline="") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_resume_reproduces_loss_trajectory(synthetic, tmp_path):
    """6 iterations straight == 4 iterations, interrupt (mid-epoch 2), resume, 2 more."""
    straight = train(small_config(synthetic, tmp_path / "straight", ))
    assert straight["iteration"] == 6 and not straight["interrupted"]
    config = small_config(synthetic, tmp_path / "resumed")
    config.data.workers = 1  # the resumed run also goes through a worker process
    first = train(config, stop_after=4)
    assert first["interrupted"] and first["iteration"] == 4
    assert (tmp_path / "resumed" / "last.pt").is_file() and (tmp_path / "resumed" / "last.state.pt").is_file()
    second = train(config, resume="auto")
    assert second["iteration"] == 6 and not second["interrupted"]
    a = read_log(tmp_path / "straight" / "train_log.csv")
    b = read_log(tmp_path / "resumed" / "train_log.csv")
    assert [r["iteration"] for r in b] == [1, 2, 3, 4, 5, 6]  # no duplicated / lost rows
    losses = [k for k in a[0] if k.startswith("loss_")]
    assert {"loss_total", "loss_map", "loss_presence"} <= set(losses)
    for ra, rb in zip(a, b):
        for key in losses + ["lr", "grad_norm"]:
            assert rb[key] == pytest.approx(ra[key], rel=1e-6, abs=1e-7), (ra["iteration"], key)
    # the model learnt something different from its initial state, and the last weights agree
    wa = torch.load(tmp_path / "straight" / "last.pt", weights_only=True)["state_dict"]
    wb = torch.load(tmp_path / "resumed" / "last.pt", weights_only=True)["state_dict"]
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-6)


def test_resume_needs_state_file(synthetic, tmp_path):
    config = small_config(synthetic, tmp_path / "run", max_iters_per_epoch=1)
    config.schedule.epochs = 1
    train(config)
    (tmp_path / "run" / "last.state.pt").unlink()
    with pytest.raises(InputError, match="training state"):
        train(config, resume=str(tmp_path / "run" / "last.pt"))


def test_epoch_batches_split_the_global_batch():
    single = epoch_batches(50, 6, seed=3, epoch=2, info=D.DistInfo())
    ranks = [epoch_batches(50, 3, seed=3, epoch=2, info=D.DistInfo(rank=r, world_size=2)) for r in range(2)]
    assert len(single) == len(ranks[0]) == 50 // 6
    for b, batch in enumerate(single):
        assert batch == ranks[0][b] + ranks[1][b]
    flat = [i for batch in single for i in batch]
    assert len(set(flat)) == len(flat)
    assert epoch_batches(50, 6, 3, 3, D.DistInfo()) != single  # another epoch, another order
    with pytest.raises(InputError, match="global batch"):
        epoch_batches(5, 4, 0, 0, D.DistInfo(rank=0, world_size=2))


# ---------------------------------------------------------------- DDP (2 processes, gloo)

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _model_and_batch(seed: int = 0):
    torch.manual_seed(seed)
    config = tiny_vit()
    config.drop_path = 0.0
    model = build_model(config).eval()  # BatchNorm of the head: fixed statistics, else each half has its own
    g = torch.Generator().manual_seed(1)
    images = torch.randn(4, 3, 128, 96, generator=g)
    target = torch.rand(4, 17, 32, 24, generator=g)
    presence = (torch.rand(4, 17, generator=g) > 0.5).float()
    return model, images, target, presence


def _plain_loss(outputs, target, presence):
    """A per-sample mean over every output (so that the mean over halves equals the mean over the
    whole; the ProbPose losses are weighted means over keypoints, whose weights differ between halves)."""
    bce = torch.nn.functional.binary_cross_entropy
    return ((outputs["prob_maps"] - target).square().mean() + bce(outputs["presence"], presence)
            + bce(outputs["visibility"], presence) + outputs["oks_quality"].square().mean())


def _ddp_worker(rank: int, world: int, port: int, out_dir: str):
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    info = D.init_distributed("cpu")
    try:
        model, images, target, presence = _model_and_batch()
        net = D.wrap_model(model, info)
        half = slice(2 * rank, 2 * rank + 2)
        _plain_loss(net(images[half]), target[half], presence[half]).backward()
        torch.save({n: p.grad for n, p in model.named_parameters()}, Path(out_dir) / f"grads_{rank}.pt")
    finally:
        D.cleanup(info)


def test_ddp_gradients_equal_single_process(tmp_path):
    torch.multiprocessing.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    model, images, target, presence = _model_and_batch()
    _plain_loss(model(images), target, presence).backward()
    for rank in range(2):
        grads = torch.load(tmp_path / f"grads_{rank}.pt")
        for name, param in model.named_parameters():
            torch.testing.assert_close(grads[name], param.grad, rtol=1e-4, atol=1e-6, msg=name)


# ---------------------------------------------------------------- the command line

def test_cli_tiny_cpu_end_to_end(tmp_path):
    data = tmp_path / "data"
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "training.train", "--config", str(TINY_YAML), "--out", str(out),
           "--set", f"data.train_ann={data}/train/annotations.json", "--set", f"data.train_images={data}/train/images",
           "--set", f"data.val_ann={data}/val/annotations.json", "--set", f"data.val_images={data}/val/images",
           "--set", "data.synthetic_images=3", "--set", "data.batch_size=2", "--set", "data.workers=0",
           "--set", "schedule.epochs=1", "--set", "run.max_iters_per_epoch=2", "--set", "run.val_every=1",
           "--set", "run.progress=false", "--set", "run.log_every=1", "--set", f"model.input_size={list(SMALL['input_size'])}",
           "--set", f"model.heatmap_size={list(SMALL['heatmap_size'])}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "writing a synthetic COCO set" in done.stderr
    assert (data / "train" / "annotations.json").is_file() and (data / "val" / "images").is_dir()
    for name in ("last.pt", "last.state.pt", "best.pt", "config.yaml", "train_log.csv"):
        assert (out / name).is_file(), name
    assert list((out / "tb").iterdir()), "no TensorBoard events"
    model, meta = load_checkpoint(out / "last.pt")
    assert meta["config"].backbone == "cnn" and tuple(meta["config"].input_size) == SMALL["input_size"]
    rows = read_log(out / "train_log.csv")
    assert [r["iteration"] for r in rows] == [1, 2] and all(np.isfinite(r["loss_total"]) for r in rows)
    assert all(r["samples_per_s"] > 0 for r in rows)
    assert (out / "val" / "epoch_001" / "metrics.json").is_file()
    # the saved config reproduces the run's settings
    assert load_config(out / "config.yaml").schedule.epochs == 1


def test_cli_bad_config_is_one_line(tmp_path):
    done = subprocess.run([sys.executable, "-m", "training.train", "--config", str(TINY_YAML), "--set",
                           "optim.lrr=1"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "optim.lrr" in done.stderr
