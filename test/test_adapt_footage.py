"""Adapt to your own footage (README "Adapt to your own footage"): the whole user chain through
the command-line entry points, each one a subprocess, on a 12-frame synthetic clip:

    python -m training.distill --video clip.mp4     -> pseudo_labels.json + images/
    python -m training.train   --set run.init_weights=shipped.pt ...   -> last.pt (fine-tuned)
    python -m training.calibrate --checkpoint last.pt ...              -> cal.pt
    probpose export  --model cal.pt --onnx out.onnx                    -> out.onnx + out.json
    probpose predict --images ... --model out.onnx --detector full_frame -> pred.json

Stand-ins keep it CI-sized and offline: the two stand-in teachers and the fixed detector of
test_distill.py (given to ``--teachers`` / ``--detector`` as ``module:factory``), a small CNN
"shipped" model (tiny_cpu.yaml's), two training iterations of 4 crops. ~30-60 s on 2 cores.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import save_checkpoint
from test_distill import BOX, SKELETON, FixedDetector, pair

ROOT = Path(__file__).resolve().parents[1]
TINY_YAML = ROOT / "training" / "configs" / "tiny_cpu.yaml"
LIMBS = [(5, 7), (7, 9), (6, 8), (8, 10), (5, 6), (11, 12), (5, 11), (6, 12), (11, 13), (13, 15), (12, 14),
         (14, 16), (0, 5), (0, 6)]


# ``module:factory`` stand-ins for ``python -m training.distill`` (called without arguments)
def teacher_a():
    return pair()[0]


def teacher_b():
    return pair()[1]


def detector():
    return FixedDetector()


def write_clip(path: Path, frames: int = 12, size=(160, 120)) -> Path:
    """A stick figure at SKELETON (inside test_distill.BOX), swaying a little; .mp4 where this
    OpenCV can write it, else MJPG .avi."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, size)
    if not writer.isOpened():
        path = path.with_suffix(".avi")
        writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, size)
    assert writer.isOpened()
    for i in range(frames):
        img = np.full((size[1], size[0], 3), 50 + 5 * i, np.uint8)
        pts = SKELETON.copy()
        pts[[9, 10], 1] -= 3 * (i % 4)  # the wrists move
        for a, b in LIMBS:
            cv2.line(img, tuple(int(v) for v in pts[a]), tuple(int(v) for v in pts[b]), (220, 200, 180), 3)
        cv2.circle(img, tuple(int(v) for v in pts[0]), 6, (230, 210, 190), -1)
        writer.write(img)
    writer.release()
    return path


def run(*args, module: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "test"), str(ROOT),
                                                                     os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, f"{module} {args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_distill_finetune_calibrate_export_predict(tmp_path):
    # (a) the user's footage
    clip = write_clip(tmp_path / "my_robot.mp4")

    # (b) pseudo-labels from two (stand-in) teachers that agree, on the detector's boxes
    distilled = tmp_path / "distill"
    proc = run("--video", clip, "--out", distilled, "--every", 3, "--no-progress",
               "--teachers", "test_adapt_footage:teacher_a,test_adapt_footage:teacher_b",
               "--detector", "test_adapt_footage:detector", module="training.distill")
    labels, images = distilled / "pseudo_labels.json", distilled / "images"
    data = json.loads(labels.read_text())
    assert [i["file_name"] for i in data["images"]] == [f"{clip.stem}_{k:06d}.jpg" for k in (0, 3, 6, 9)]
    assert len(data["annotations"]) == 4 and all(a["bbox"] == BOX for a in data["annotations"])
    assert all((images / i["file_name"]).is_file() for i in data["images"])
    assert "people seen 4, kept 4" in proc.stdout

    # (c) fine-tune from the "shipped" model on the pseudo-labels
    config = cnn_config(temperature=4.0)  # tiny_cpu.yaml's model, 192x256 input
    torch.manual_seed(1)
    shipped = save_checkpoint(tmp_path / "shipped.pt", build_model(config), config)
    run_dir = tmp_path / "finetune"
    proc = run("--config", TINY_YAML, "--out", run_dir,
               "--set", f"data.train_ann={labels}", "--set", f"data.train_images={images}",
               "--set", f"data.val_ann={labels}", "--set", f"data.val_images={images}",
               "--set", "data.synthetic_images=0", "--set", "data.batch_size=4", "--set", "data.workers=0",
               "--set", f"run.init_weights={shipped}", "--set", "schedule.epochs=1",
               "--set", "run.max_iters_per_epoch=2", "--set", "run.val_every=0", "--set", "run.progress=false",
               "--set", "run.log_every=1", module="training.train")
    n_tensors = len(build_model(config).state_dict())
    assert f"initial weights: {n_tensors} tensors from {shipped}\n" in proc.stderr  # every tensor, none fresh
    last = run_dir / "last.pt"
    assert last.is_file()
    start, tuned = (torch.load(p, weights_only=True)["state_dict"] for p in (shipped, last))
    fresh = build_model(config).state_dict()  # another random initialisation
    weights = [k for k, v in start.items() if v.is_floating_point() and "running_" not in k]
    moved, apart = (sum(float((other[k] - start[k]).abs().sum()) for k in weights) for other in (tuned, fresh))
    assert 0 < moved < 0.01 * apart  # a few small steps away from the shipped weights, not a fresh start

    # (d) calibrate (here on the pseudo-labels themselves; a user holds a split back)
    calibrated = tmp_path / "cal.pt"
    run("--checkpoint", last, "--ann", labels, "--images", images, "--out", calibrated, "--quiet",
        module="training.calibrate")
    meta = torch.load(calibrated, weights_only=True)
    assert meta["temperature"] > 0 and 0 < meta["presence_threshold"] < 1

    # (e) export
    onnx = tmp_path / "out.onnx"
    run("export", "--model", calibrated, "--onnx", onnx, module="probpose_core.cli")
    assert onnx.is_file() and onnx.with_suffix(".json").is_file()

    # (f) predict with the exported model
    pred = tmp_path / "pred.json"
    run("predict", "--images", images, "--model", onnx, "--detector", "full_frame", "--out", pred,
        module="probpose_core.cli")
    results = json.loads(pred.read_text())
    assert sorted(r["file_name"] for r in results) == sorted(i["file_name"] for i in data["images"])
    assert all(len(r["keypoints"]) == 17 * 3 and np.isfinite(r["keypoints"]).all() for r in results)
