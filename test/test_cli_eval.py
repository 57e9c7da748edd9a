"""`probpose eval` as a subprocess: table, --json keys, --extended, and one-line errors."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

from gen_cases import generate_case

ROOT = Path(__file__).resolve().parents[1]
STANDARD_KEYS = ["AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl"]
EXTENDED_KEYS = STANDARD_KEYS + ["Ex-" + k for k in STANDARD_KEYS] + ["presence_threshold"]


def _run(*args):
    return subprocess.run([sys.executable, "-m", "probpose_core.cli", "eval", *map(str, args)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    gt, preds, _, _ = generate_case(7)
    folder = tmp_path_factory.mktemp("eval")
    (folder / "gt.json").write_text(json.dumps(gt))
    (folder / "pred.json").write_text(json.dumps(preds))
    return folder / "gt.json", folder / "pred.json", gt, preds


def test_table_and_json_keys(files, tmp_path):
    gt, pred, *_ = files
    out = tmp_path / "res.json"
    proc = _run("--gt", gt, "--pred", pred, "--json", out)
    assert proc.returncode == 0, proc.stderr
    assert all(any(line.split()[:1] == [k] for line in proc.stdout.splitlines()) for k in STANDARD_KEYS)
    assert list(json.loads(out.read_text())) == STANDARD_KEYS


def test_extended_best_threshold(files, tmp_path):
    gt, pred, gt_data, preds = files
    out = tmp_path / "res.json"
    proc = _run("--gt", gt, "--pred", pred, "--extended", "--presence-threshold", "best", "--json", out)
    assert proc.returncode == 0, proc.stderr
    res = json.loads(out.read_text())
    assert list(res) == EXTENDED_KEYS
    assert all(isinstance(v, float) for v in res.values())
    assert "Ex-OKS" in proc.stdout and "presence threshold" in proc.stdout
    fixed = tmp_path / "fixed.json"
    assert _run("--gt", gt, "--pred", pred, "--extended", "--presence-threshold", "0.45",
                "--json", fixed).returncode == 0
    assert res["Ex-AP"] >= json.loads(fixed.read_text())["Ex-AP"]


def _good_pred():
    return {"image_id": 1, "score": 0.5, "keypoints": [10.0, 10.0, 0.9] * 17, "visibilities": [0.5] * 17}


@pytest.mark.parametrize("name, content, message", [
    ("missing key", [{"image_id": 1, "keypoints": [1.0] * 51}], "has no 'score'"),
    ("wrong count", [{**_good_pred(), "keypoints": [1.0] * 50}], "must hold 51 numbers"),
    ("nan", "[" + json.dumps(_good_pred()).replace('"score": 0.5', '"score": NaN') + "]", "finite"),
    ("unknown image", [{**_good_pred(), "image_id": 4242}], "unknown image id 4242"),
    ("bad json", "[{\"image_id\": 1,", "not valid JSON"),
    ("not a list", {"predictions": []}, "expected a JSON list"),
])
def test_malformed_predictions_exit_2_with_one_line(tmp_path, name, content, message):
    gt = {"images": [{"id": 1}], "annotations": [
        {"id": 1, "image_id": 1, "bbox": [0, 0, 40, 80], "keypoints": [12.0, 11.0, 2] * 17}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(content if isinstance(content, str) else json.dumps(content))
    proc = _run("--gt", tmp_path / "gt.json", "--pred", tmp_path / "pred.json", "--extended")
    _assert_one_line_error(proc, message)


def test_missing_files_and_bad_gt_exit_2(tmp_path, files):
    gt, pred, *_ = files
    _assert_one_line_error(_run("--gt", tmp_path / "nope.json", "--pred", pred), "not found")
    _assert_one_line_error(_run("--gt", gt, "--pred", tmp_path / "nope.json"), "not found")
    (tmp_path / "bad_gt.json").write_text(json.dumps({"images": [{"id": 1}]}))
    _assert_one_line_error(_run("--gt", tmp_path / "bad_gt.json", "--pred", pred), "annotations")


def _assert_one_line_error(proc, message):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("probpose: error:"), proc.stderr
    assert message in lines[0]
    assert "Traceback" not in proc.stderr + proc.stdout
