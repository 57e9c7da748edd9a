"""`probpose demo` on the shipped clip: the real detector and pipeline, its files and their schema.

The pose model is the shipped one when models/probpose_student.onnx is there, else an untrained
small CNN written into tmp_path (the files and their schema do not depend on the weights).
Labelled set for the calibration section: the synthetic fixture (demo/fixture); one test runs it
on ../shared/data/coco_train (skipped when that is absent), the held-out half of the shipped model.
"""
import json
from pathlib import Path

import cv2
import pytest

from probpose_core.cli import main
from probpose_core.demo import CREDIBLE_LEVEL, DEFAULT_COCO, STAGES, TWIN, run_demo
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.results import humans_from_json, humans_to_json
from probpose_core.tracking import TrackerConfig

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "demo" / "fixture"
FRAMES = 6
CALIBRATION_FILES = ("coverage_reliability.png", "coverage_reliability_twin.png", "presence_reliability.png",
                     "calibration.json")


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
                 "presence_reliability.png", "calibration.json"):
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

    _check_calibration_section(out, FIXTURE / "annotations.json", printed, "fixture odd half")


def _check_calibration_section(out: Path, ann: Path, printed: str, held_label: str) -> dict:
    """The held-out half is exactly the odd image ids of ``ann`` and the printout says so; per set
    the presence numbers and, where the model declares keypoints present, the coverage report
    (``probpose coverage``'s) whose printed rows are its own numbers. Returns calibration.json."""
    gt = json.loads(ann.read_text())
    odd = sorted(i["id"] for i in gt["images"] if i["id"] % 2 == 1)
    held = json.loads((out / "held_out" / "odd.json").read_text())
    assert sorted(i["id"] for i in held["images"]) == odd
    assert {a["image_id"] for a in held["annotations"]} <= set(odd)
    calibration = json.loads((out / "calibration.json").read_text())
    assert set(calibration["sets"]) == {held_label, TWIN}
    assert f"held out: the {len(odd)} odd-id images of" in calibration["held_out"]
    assert f"the other {len(gt['images']) - len(odd)} (even ids" in calibration["held_out"]
    assert calibration["held_out"] in printed and "raw map (uncalibrated)" in printed
    assert "map_calibration" not in printed and not (out / "map_calibration.png").exists()
    for label, numbers in calibration["sets"].items():
        assert numbers["instances"] > 0 and numbers["labelled_keypoints"] > 0
        assert 0.0 <= numbers["presence_ece"] <= 1.0 and 0.0 <= numbers["presence_brier"] <= 1.0
        report = numbers["coverage"]
        if report is None:  # e.g. the untrained stand-in model declares no keypoint present
            continue
        assert report["levels"] == calibration["levels"] and set(report["raw"]) == {str(q) for q in report["levels"]}
        for reading, name in (("calibrated", "calibrated"), ("raw", "raw map (uncalibrated)")):
            for q, entry in (report[reading] or {}).items():
                for kind in ("region", "ellipse"):
                    overall = entry[kind]["overall"]
                    assert overall["n"] == report["n"] and 0.0 <= overall["coverage"] <= 1.0
                    assert f"| {name} | {float(q):g} | {kind} | {overall['coverage']:.3f} (n {report['n']}) |" in printed
    files = set(calibration["files"])
    assert {"presence_reliability.png", "calibration.json"} <= files <= set(CALIBRATION_FILES)
    assert all((out / f).read_bytes()[:4] == b"\x89PNG" for f in files if f.endswith(".png"))
    return calibration


@pytest.mark.skipif(not (DEFAULT_COCO / "gt.json").is_file(),
                    reason=f"no labelled set at {DEFAULT_COCO} (../shared/data/coco_train)")
def test_demo_reports_published_coverage_on_the_held_out_half(tmp_path, model, capsys):
    """On ../shared/data/coco_train: the odd-id half (the shipped model was calibrated on the even
    one) and its twin; with the shipped model its calibrated regions hold each level within 0.05
    on the odd half (measured 0.489 / 0.903 / 0.944: far from any rounding edge)."""
    out = tmp_path / "demo"
    summary = run_demo(out, model=model, coco=DEFAULT_COCO, max_frames=1, progress=False)
    printed = capsys.readouterr().out
    calibration = _check_calibration_section(out, DEFAULT_COCO / "gt.json", printed, "coco_train odd half")
    assert summary["calibration"]["held_out"] == calibration["held_out"]  # (its report keys are floats, not strings)
    assert {f"{out}/{f}" for f in CALIBRATION_FILES} <= set(summary["files"])
    if model is None:  # the shipped model: calibrated, on the even half (its table says so)
        assert calibration["levels"] == [0.5, 0.9, 0.95]
        assert "even.json" in calibration["coverage_table"] and "odd.json" not in calibration["coverage_table"]
        report = calibration["sets"]["coco_train odd half"]["coverage"]
        for q, entry in report["calibrated"].items():
            assert abs(entry["region"]["overall"]["coverage"] - float(q)) < 0.05, (q, entry["region"]["overall"])
            assert abs(entry["ellipse"]["overall"]["coverage"] - float(q)) < 0.05, (q, entry["ellipse"]["overall"])


def test_cli_demo_skips_the_plots_without_a_labelled_set(tmp_path, model, capsys):
    out = tmp_path / "demo"
    argv = ["demo", "--out", str(out), "--max-frames", "2", "--coco", str(tmp_path / "absent")]
    assert main(argv + (["--model", str(model)] if model else [])) == 0
    assert "calibration section skipped" in capsys.readouterr().out
    assert json.loads((out / "timing.json").read_text())["frames"] == 2
    assert not any((out / f).exists() for f in CALIBRATION_FILES)


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
