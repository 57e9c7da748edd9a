"""training.calibrate on maps with KNOWN miscalibration.

The ground truth of a small synthetic set is replaced by points drawn from the model's own
maps at a true temperature ``T_TRUE`` (``sparsemax(logits / T_TRUE)``), so the model is
exactly calibrated at ``T_TRUE``; the checkpoint is then saved with a wrong head temperature.
Calibration must move the temperature back to ``T_TRUE`` and lower the calibration error.
"""
import json

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.calibration import temperature_error, temperature_maps
from probpose_core.data.coco import pad_to_contain
from probpose_core.data.instances import load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.evaluation.areas import in_image
from probpose_core.geometry import bbox_to_center_scale, heatmap_to_image
from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.codec import ProbMapCodec
from training.calibrate import SHARPNESS_GRID, coverage_at, fit_map_temperature, main
from training.evaluate import gt_outputs, logits_runner

T_TRUE = 0.5


@pytest.fixture(scope="module")
def calibrated_at_t_true(tmp_path_factory):
    """(annotation path, images folder, model) with GT drawn from the model's maps at T_TRUE."""
    root = tmp_path_factory.mktemp("known")
    data = write_synthetic_coco(root, num_images=3, seed=5)
    torch.manual_seed(0)
    model = build_model(cnn_config()).eval()
    with torch.no_grad():  # structured maps instead of near-uniform ones (init std 0.001)
        model.head.final_layer.weight.mul_(3000.0)
    instances, _ = load_instances(root / "annotations.json", images_dir=root / "images")
    logits = gt_outputs(logits_runner(model), instances, root / "images", logits=True)["map_logits"]
    p = temperature_maps(logits, T_TRUE)
    n, k, h, w = p.shape
    rng = np.random.default_rng(0)
    flat = p.reshape(n * k, h * w)
    drawn = np.array([rng.choice(h * w, p=row / row.sum()) for row in flat])
    xy = np.stack([drawn % w, drawn // w], axis=-1).reshape(n, k, 2).astype(np.float64)
    row_of = {inst.ann_id: i for i, inst in enumerate(instances)}
    for ann in data["annotations"]:
        center, scale = bbox_to_center_scale(np.asarray(ann["bbox"]))
        points = heatmap_to_image(xy[row_of[ann["id"]]], center, scale)
        v = np.where(in_image(points, 320, 240), 2, 3)
        ann["keypoints"] = [float(c) for (x, y), vis in zip(points, v) for c in (x, y, vis)]
        ann["pad_to_contain"] = pad_to_contain(ann)
    (root / "known.json").write_text(json.dumps(data))
    return root / "known.json", root / "images", model


def _with_head_temperature(model, temperature, path):
    """Save ``model``'s weights as a checkpoint whose head temperature is ``temperature``."""
    config = cnn_config(temperature=temperature)
    return save_checkpoint(path, model, config, presence_threshold=0.6)


def test_cli_fixes_too_flat_maps_and_stores_the_result(calibrated_at_t_true, tmp_path, capsys):
    ann, images, model = calibrated_at_t_true
    wrong = _with_head_temperature(model, 2.0, tmp_path / "wrong.pt")  # 4x too flat
    out, plots = tmp_path / "calibrated.pt", tmp_path / "plots"
    rc = main(["--checkpoint", str(wrong), "--ann", str(ann), "--images", str(images), "--out", str(out),
               "--plots", str(plots), "--no-flip-test", "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    before, after = (float(x) for x in printed.split("map calibration error: before ")[1].split("\n")[0]
                     .split(", after "))
    assert after < before / 3 and before > 0.05
    calibrated, meta = load_checkpoint(out)
    assert calibrated.head.temperature == pytest.approx(T_TRUE, rel=0.15)
    assert meta["temperature"] == pytest.approx(calibrated.head.temperature / 2.0)  # stored factor
    metrics = json.loads((plots / "metrics.json").read_text())
    assert meta["presence_threshold"] == metrics["presence_threshold"]
    assert metrics["checkpoint_presence_threshold"] == 0.6  # "before" is the input checkpoint's
    assert meta["extra"]["calibration"]["map_error_after"] == pytest.approx(after, abs=1e-4)
    # the decode sharpness with the best Ex-AP on the split is stored in the codec
    tried = {float(c): ap for c, ap in meta["extra"]["calibration"]["sharpness_ex_ap"].items()}
    assert sorted(tried) == list(SHARPNESS_GRID)
    best = max(tried, key=lambda c: (tried[c], -c))
    assert meta["codec"]["decode_sharpness"] == best
    assert f"decode sharpness: {best:g}" in printed
    for name in ("map_coverage_calibration.png", "map_coverage.png", "presence_reliability.png"):
        assert (plots / name).read_bytes()[:4] == b"\x89PNG"
    # fitting the calibrated checkpoint again starts from raw logits: no double temperature
    again = fit_map_temperature(calibrated, load_instances(ann)[0], images, ProbMapCodec(), progress=False)
    assert again["head_temperature_before"] == pytest.approx(calibrated.head.temperature)
    assert again["head_temperature_after"] == pytest.approx(calibrated.head.temperature, rel=0.02)
    assert again["error_before"] == pytest.approx(after, abs=1e-4)


def test_too_sharp_maps_move_up(calibrated_at_t_true):
    ann, images, model = calibrated_at_t_true
    sharp, _ = load_checkpoint(_with_head_temperature(model, 0.1, images.parent / "sharp.pt"))
    fit = fit_map_temperature(sharp, load_instances(ann)[0], images, ProbMapCodec(), progress=False)
    assert fit["head_temperature_before"] == pytest.approx(0.1)
    assert fit["head_temperature_after"] == pytest.approx(T_TRUE, rel=0.15)
    assert fit["error_after"] < fit["error_before"] / 3


@pytest.mark.parametrize("problem", ["missing images", "malformed ann", "not a checkpoint", "no instances"])
def test_bad_input_one_line_exit_2(calibrated_at_t_true, tmp_path, capsys, problem):
    ann, images, model = calibrated_at_t_true
    args = {"--checkpoint": str(_with_head_temperature(model, 0.5, tmp_path / "m.pt")), "--ann": str(ann),
            "--images": str(images)}
    if problem == "missing images":
        args["--images"] = str(tmp_path / "nowhere")
    elif problem == "malformed ann":
        (tmp_path / "bad.json").write_text("[1, 2")
        args["--ann"] = str(tmp_path / "bad.json")
    elif problem == "not a checkpoint":
        (tmp_path / "junk.pt").write_bytes(b"not a torch file")
        args["--checkpoint"] = str(tmp_path / "junk.pt")
    else:  # an empty split: nothing to fit on
        data = json.loads(ann.read_text())
        (tmp_path / "empty.json").write_text(json.dumps(dict(data, annotations=[])))
        args["--ann"] = str(tmp_path / "empty.json")
    rc = main([v for kv in args.items() for v in kv] + ["--out", str(tmp_path / "out.pt"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert rc == 2
    assert err.startswith("calibrate: error: ") and "\n" not in err
    assert not (tmp_path / "out.pt").exists()


def test_heatmap_model_gets_threshold_only(calibrated_at_t_true, tmp_path):
    from training.calibrate import calibrate_checkpoint

    ann, images, _ = calibrated_at_t_true
    torch.manual_seed(1)
    config = cnn_config(map_kind="heatmap")
    model = build_model(config).eval()
    with torch.no_grad():  # heatmap peaks of order 1, so presence (the map maximum) varies
        model.head.final_layer.bias.fill_(0.5)
        model.head.final_layer.weight.mul_(300.0)
    path = save_checkpoint(tmp_path / "heatmap.pt", model, config)
    summary = calibrate_checkpoint(path, ann, images, tmp_path / "out.pt", plots=tmp_path / "plots",
                                   flip_test=False, progress=False)
    assert summary["map"] is None and summary["temperature"] == 1.0
    cal = summary["metrics"]["calibration"]
    assert cal["presence"]["keypoints"] > 0 and cal["maps"]["calibration_error"] is not None
    _, meta = load_checkpoint(tmp_path / "out.pt")
    assert meta["temperature"] == 1.0 and meta["presence_threshold"] == summary["presence_threshold"]
    assert (tmp_path / "plots" / "map_coverage.png").is_file()
    assert not (tmp_path / "plots" / "map_coverage_calibration.png").exists()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), temperature=st.floats(0.05, 5.0), n=st.integers(1, 3))
def test_coverage_at_agrees_with_temperature_error(seed, temperature, n):
    """Two routes to the calibration error of sparsemax(logits / T): maps then credible
    intervals (coverage_at) and the library's sorted-logits route (temperature_error)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(scale=rng.uniform(0.1, 3.0), size=(n, 3, 8, 6))
    gt = rng.uniform(-1.0, [6.0, 8.0], size=(n, 3, 2))  # some off the map
    weights = (rng.random((n, 3)) < 0.8).astype(float)
    if weights.sum() == 0 or not np.any(weights.astype(bool) & (np.rint(gt) >= 0).all(-1)
                                        & (np.rint(gt) < [6, 8]).all(-1)):
        return
    _, err = coverage_at(logits, gt, weights, temperature)
    assert err == pytest.approx(temperature_error(logits, gt, temperature, weights), abs=1e-9)
