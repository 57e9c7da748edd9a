"""`probpose demo` on the shipped clip: the real detector and pipeline, its files and their schema.

The pose model is the shipped one when models/probpose_student.onnx is there, else an untrained
small CNN written into tmp_path (the files and their schema do not depend on the weights).
Labelled set for the calibration plots: the synthetic fixture (demo/fixture), not ../shared.
"""
import json
from pathlib import Path

import cv2
import pytest

from probpose_core.cli import main
from probpose_core.demo import CREDIBLE_LEVEL, STAGES, run_demo
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.results import humans_from_json, humans_to_json
from probpose_core.tracking import TrackerConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "demo" / "fixture"
FRAMES = 6


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    """None (the shipped model) when it ships, else the path of an untrained CNN checkpoint."""
    if (ROOT / "models" / "probpose_student.onnx").is_file():
        return None
    import torch

    from probpose_core.models.checkpoints import save_checkpoint
    from probpose_core.models.pose_model import build_model, cnn_config

    torch.manual_seed(0)
    config = cnn_config()
    return save_checkpoint(tmp_path_factory.mktemp("model") / "untrained.pt", build_model(config).eval(), config)


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))  # the .pt's ONNX export goes here


def test_demo_writes_video_sheet_frames_timing_and_plots(tmp_path, model, capsys):
    out = tmp_path / "demo"
    summary = run_demo(out, model=model, coco=FIXTURE, max_frames=FRAMES, progress=False)
    printed = capsys.readouterr().out
    for name in ("annotated.mp4", "contact_sheet.png", "frames.json", "timing.md", "timing.json",
                 "map_calibration.png", "presence_reliability.png", "calibration.json"):
        assert (out / name).stat().st_size > 100, name

    frames = json.loads((out / "frames.json").read_text())
    assert [f["frame"] for f in frames] == list(range(FRAMES))
    assert all(set(f) == {"frame", "humans"} for f in frames)
    assert sum(len(f["humans"]) for f in frames) >= FRAMES  # two people in the clip, the detector finds them
    for f in frames:
        humans = humans_from_json(f["humans"])  # the schema results.humans_to_json writes
        assert humans_to_json(humans) == f["humans"]
        for h in humans:
            assert len(h.keypoints) == NUM_KEYPOINTS
            assert all(0.0 <= k.presence <= 1.0 for k in h.keypoints)
            assert all(set(k.regions) <= {CREDIBLE_LEVEL} == {0.9} for k in h.keypoints)
        assert any(k.regions for h in humans for k in h.keypoints) or not humans
        ids = [h.id for h in humans if h.id is not None]
        assert len(ids) == len(set(ids))  # track ids: one person each
    if model is None:  # the shipped model: the clip's two people are tracked from the 3rd frame on
        assert all(len({h["id"] for h in f["humans"]} - {None}) == 2 for f in frames[TrackerConfig.min_hits - 1:])

    cap = cv2.VideoCapture(str(out / "annotated.mp4"))
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while cap.read()[0]:
        count += 1
    cap.release()
    assert count == FRAMES and size == (1920, 1080)

    sheet = cv2.imread(str(out / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[1] == 4 * 480 and sheet.shape[0] == 2 * 270  # 6 tiles, 4 a row

    timing = json.loads((out / "timing.json").read_text())
    assert {"decode video", "detector", "pose (pipeline)", "drawing"} <= set(timing["stages_ms"])
    assert list(timing["stages_ms"]) == list(STAGES)
    assert all(ms >= 0 for ms in timing["stages_ms"].values())
    assert timing["frames"] == FRAMES and timing["fps"] > 0
    assert timing["people"] == sum(len(f["humans"]) for f in frames)
    assert summary["timing"] == timing
    assert "| stage | median ms per frame |" in printed and "FPS end to end" in printed

    calibration = json.loads((out / "calibration.json").read_text())
    assert set(calibration["sets"]) == {"fixture", "CropCOCO twin"}
    for numbers in calibration["sets"].values():
        assert numbers["keypoints"] > 0 and 0.0 <= numbers["coverage_50"] <= numbers["coverage_90"] <= 1.0


def test_cli_demo_skips_the_plots_without_a_labelled_set(tmp_path, model, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--max-frames", "2", "--coco", str(tmp_path / "absent")]
    assert main(argv + (["--model", str(model)] if model else [])) == 0
    assert "calibration plots skipped" in capsys.readouterr().out
    assert json.loads((out / "timing.json").read_text())["frames"] == 2
    assert not (out / "map_calibration.png").exists()


def test_cli_demo_bad_model_is_one_line_error(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--model", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("probpose: error:") and "missing.onnx" in err and "Traceback" not in err


def test_no_shipped_pose_model_names_the_way_out(monkeypatch, tmp_path):
    from probpose_core import demo
    from probpose_core.errors import InputError

    def absent():
        raise InputError("probpose_student.json is not listed in models/SHA256SUMS")

    monkeypatch.setattr("probpose_core.shipped.default_pose_model", absent)
    with pytest.raises(InputError, match="--model"):
        demo.resolve_model(None)
    assert demo.resolve_model("x.onnx") == Path("x.onnx")
