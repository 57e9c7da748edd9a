"""evaluation/coverage.py, `probpose coverage` and training.calibrate's coverage step, end to end
on a small synthetic COCO set with a small CNN (presence threshold 0: every keypoint counts)."""
import json

import numpy as np
import pytest
import torch

from probpose_core import cli
from probpose_core.conformal import CoverageTable, region_scores
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.evaluation.coverage import collect_keypoints, coverage_report, fit_table
from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.runtime.torch_runner import TorchRunner
from probpose_core.spec import model_spec


@pytest.fixture(scope="module")
def small_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("coverage")
    write_synthetic_coco(root, num_images=4, seed=3)
    torch.manual_seed(0)
    config = cnn_config()
    model = build_model(config).eval()
    with torch.no_grad():  # structured maps instead of near-uniform ones
        model.head.final_layer.weight.mul_(3000.0)
    ckpt = save_checkpoint(root / "m.pt", model, config, presence_threshold=0.0)
    return root / "annotations.json", root / "images", ckpt


def test_samples_and_report_on_the_model_itself(small_set):
    ann, images, ckpt = small_set
    model, meta = load_checkpoint(ckpt)
    runner = TorchRunner(model, meta=meta)
    samples = collect_keypoints(runner, model_spec(runner), ann, images, progress=False)
    assert len(samples) > 20 and samples.maps.shape[1:] == (64, 48)
    np.testing.assert_allclose(samples.maps.sum(axis=(1, 2)), 1.0, atol=1e-4)
    # the calibrated table fitted on these very samples holds each level on them (in-sample check:
    # conformal quantiles hold at least q of their own calibration scores)
    table = fit_table(samples, levels=(0.5,), by_border=False)
    report = coverage_report(samples, table)
    assert report["calibrated"][0.5]["region"]["overall"]["coverage"] >= 0.5
    assert report["calibrated"][0.5]["ellipse"]["overall"]["coverage"] >= 0.5
    raw = report["raw"][0.5]["region"]["overall"]["coverage"]
    assert raw == pytest.approx(np.mean(region_scores(samples.maps, samples.truth) < 0.5 + 1e-12), abs=1e-9)
    assert set(report["raw"][0.5]["region"]["groups"]) == {"face", "arms", "legs"}


def test_calibrate_stores_the_table_and_probpose_coverage_prints_it(small_set, tmp_path, capsys):
    from training.calibrate import main as calibrate_main

    ann, images, ckpt = small_set
    out = tmp_path / "cov.pt"
    rc = calibrate_main(["--checkpoint", str(ckpt), "--ann", str(ann), "--images", str(images), "--out", str(out),
                         "--coverage-only", "--coverage-levels", "0.5", "--no-coverage-by-border", "--quiet"])
    assert rc == 0
    assert "coverage table" in capsys.readouterr().out
    _, meta = load_checkpoint(out)
    table = CoverageTable.from_dict(meta["extra"]["coverage"])
    assert table.levels == (0.5,) and set(table.cells) == {"face", "arms", "legs"}
    assert meta["presence_threshold"] == 0.0  # everything else kept
    rc = cli.main(["coverage", "--images", str(images), "--ann", str(ann), "--model", str(out), "--runtime", "torch",
                   "--out", str(tmp_path / "report"), "--quiet"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| calibrated | 0.5 | region |" in printed and "| raw map (uncalibrated) | 0.5 | ellipse |" in printed
    report = json.loads((tmp_path / "report" / "coverage.json").read_text())
    assert report["levels"] == [0.5]
    assert (tmp_path / "report" / "coverage_reliability.png").read_bytes()[:4] == b"\x89PNG"
    # a level the model's table does not hold is refused, one line, exit 2
    rc = cli.main(["coverage", "--images", str(images), "--ann", str(ann), "--model", str(out), "--runtime", "torch",
                   "--levels", "0.9", "--quiet"])
    assert rc == 2 and "not calibrated" in capsys.readouterr().err
    # too few keypoints for a level: --coverage-only fails with one line
    rc = calibrate_main(["--checkpoint", str(ckpt), "--ann", str(ann), "--images", str(images), "--out",
                         str(tmp_path / "x.pt"), "--coverage-only", "--coverage-levels", "0.999", "--quiet"])
    assert rc == 2 and "too few" in capsys.readouterr().err
