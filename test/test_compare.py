"""training.compare: the in/out-of-window error, the balanced subset, the CropCOCO twin, the
per-keypoint pass (probmap and heatmap models) against gt_outputs, coverage per group and region
size, and the whole run on a tiny synthetic set with an untrained candidate, an untrained heatmap
reference, a stand-in thunder (an oracle that returns the GT keypoints of a box) and a stand-in
original graph; thunder left out when its teachers folder is missing. The real-data run
(coco_train + PP-TinyPose + the shipped student) is skipped where ../shared or out/ lack them (CI).
No timing assertions."""
import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from probpose_core.codec import ProbMapCodec
from probpose_core.data.coco import keypoints_array, load_coco
from probpose_core.data.instances import load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.models import build_model, cnn_config
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.runtime.torch_runner import TorchRunner
from training.compare import (GROUPS, GraphNetwork, balanced_subset, compare, coverage_at, coverage_backend,
                              coverage_summary, cropcoco_twin, format_report, inout_error, inout_ratio, inout_summary,
                              limit_set, main, model_labels, model_scores, published_coverage, split_models, verdicts)
from training.evaluate import gt_outputs

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data" / "coco_train"
REFERENCE = REPO / "out" / "tinypose_heatmap.onnx"
STUDENT = REPO / "models" / "probpose_student.onnx"


# ------------------------------------------------------------------------------ in / out error

def test_inout_error_hand_example():
    scores = [0.1, 0.2, 0.3, 0.4, 0.9]
    truth = [0, 0, 1, 0, 1]
    # t=0.1: 3 false positives; 0.2: 2; 0.3: 1 (0.4); 0.4: 0.4 wrong and 0.3 missed; 0.9: 0.3 missed;
    # above 0.9: both positives missed. Best 1/5, lowest threshold 0.3.
    assert inout_error(scores, truth) == (pytest.approx(0.2), pytest.approx(0.3))


def test_inout_error_edges():
    error, t = inout_error([0.2, 0.8, 0.9], [0, 1, 1])
    assert error == 0.0 and 0.2 < t <= 0.8
    error, t = inout_error([0.5, 0.7], [0, 0])  # nothing positive: threshold above the largest score
    assert error == 0.0 and t > 0.7
    assert inout_error([0.3, 0.3], [1, 1]) == (0.0, 0.3)
    assert inout_error([np.nan, 0.4], [0, 1]) == (0.0, 0.4)  # non-finite scores are left out
    assert np.isnan(inout_error([], [])[0])


def test_inout_error_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(1, 40))
        scores = np.round(rng.random(n), 1)  # ties
        truth = rng.random(n) < 0.4
        brute = min(np.mean((scores >= t) != truth) for t in np.append(scores, 2.0))
        error, t = inout_error(scores, truth)
        assert error == pytest.approx(brute)
        assert np.mean((scores >= t) != truth) == pytest.approx(error)


def test_balanced_subset():
    truth = np.array([1, 0, 0, 1, 0, 0, 1, 0, 0, 0], bool)
    index = balanced_subset(truth, seed=3)
    assert len(index) == 6 and truth[index].sum() == 3
    assert np.array_equal(index, balanced_subset(truth, seed=3))
    assert balanced_subset(np.ones(4, bool)) is None


def test_inout_summary():
    truth = np.array([1, 1, 1, 0, 0, 1, 1, 1], bool)
    scalars = {"presence": truth * 0.8 + 0.1,  # perfect
               "map_max": np.array([0.9, 0.2, 0.9, 0.5, 0.1, 0.9, 0.9, 0.9])}  # 1 error of 8
    out = inout_summary(scalars, truth, seed=0)
    assert out["all"]["presence"]["error"] == 0.0
    assert out["all"]["map_max"]["error"] == pytest.approx(1 / 8)
    assert out["all"]["keypoints"] == 8 and out["all"]["out_of_window"] == 2
    assert out["balanced"]["keypoints"] == 4 and out["balanced"]["in_window"] == 2
    assert inout_summary(scalars, np.ones(8, bool))["balanced"] is None


def test_inout_ratio():
    cand = {"presence": {"error": 0.1, "threshold": 0.5}}
    ref = {"presence": {"error": 0.4, "threshold": 0.3}}
    assert inout_ratio(cand, ref) == pytest.approx(0.25)
    assert inout_ratio(cand, None) is None
    assert inout_ratio(cand, {"presence": {"error": 0.0, "threshold": 0.3}}) is None  # a perfect reference
    assert inout_ratio({"presence": {"error": None, "threshold": None}}, ref) is None


def test_coverage_at_reads_the_curve():
    grid = [round(0.05 * i, 10) for i in range(1, 20)]
    cal = {"maps": {"grid": grid, "coverage": [g / 2 for g in grid]}}
    assert coverage_at(cal) == {"0.5": pytest.approx(0.25), "0.9": pytest.approx(0.45), "0.95": pytest.approx(0.475)}
    assert coverage_at(None) == {"0.5": None, "0.9": None, "0.95": None}


def test_coverage_summary_groups_worst_and_region_size():
    n = 4
    lo = np.full((n, 17), 0.2)  # every GT pixel at credible level 0.2 ...
    lo[:, GROUPS["arms"]] = 0.92  # ... except the arms: inside the 0.95 regions only
    lo[0, 0] = np.nan  # off the map: not counted
    weights = np.ones((n, 17))
    weights[1, :] = 0.0  # no map target: not counted
    share = np.zeros((n, 17, 3))
    share[..., 0], share[..., 1], share[..., 2] = 0.01, 0.02, 0.03
    share[1] = 9.0  # an uncounted person's huge regions do not move the median
    scores = {"level_lo": lo, "level_hi": lo.copy(), "map_weights": weights, "region_share": share}
    out = coverage_summary(scores, None)
    assert out["keypoints"] == 3 * 17 - 1
    assert out["overall"] == {"0.5": None, "0.9": None, "0.95": None}  # no calibration curve given
    assert out["groups"]["face"] == {"0.5": 1.0, "0.9": 1.0, "0.95": 1.0}
    assert out["groups"]["arms"] == {"0.5": 0.0, "0.9": 0.0, "0.95": 1.0}
    assert out["worst"]["0.9"] == {"group": "arms", "coverage": 0.0}
    assert out["worst"]["0.95"]["coverage"] == 1.0
    assert out["overall_recount"]["0.5"] == pytest.approx(1 - 3 * 6 / (3 * 17 - 1))
    assert out["region_share"] == {"0.5": pytest.approx(0.01), "0.9": pytest.approx(0.02), "0.95": pytest.approx(0.03)}


class FakeCoverageModule:
    """Stand-in for probpose_core.evaluation.coverage: a fixed report in its shape."""

    __name__ = "fake.coverage"

    def __init__(self, calibrated: bool):
        self.calibrated = calibrated

    def collect_keypoints(self, runner, spec, ann, images, flip_test=False, progress=True):
        return "samples"

    def coverage_report(self, samples, table, levels):
        def part(overall, face, arms, legs, small, area):
            share = (lambda c, n=10: {"coverage": c, "n": n})
            return {"overall": share(overall), "groups": {"face": share(face), "arms": share(arms), "legs": share(legs)},
                    "buckets": {"small": share(None, 0), "medium": share(small), "large": share(overall)},
                    "median_area_over_box": area}

        entries = {q: {"region": part(q, q, q - 0.1, q + 0.02, q - 0.2, q / 10), "ellipse": part(q / 2, 0, 0, 0, 0, 1)}
                   for q in levels}
        return {"n": 30, "people": 3, "groups": {"face": [0], "arms": [1], "legs": [2]}, "levels": list(levels),
                "raw": entries, "calibrated": entries if self.calibrated else None}


@pytest.mark.parametrize("calibrated", [False, True])
def test_published_coverage_reads_the_coverage_module(calibrated):
    cov = published_coverage(FakeCoverageModule(calibrated), None, None, "gt.json", "images")
    assert cov["reading"] == ("calibrated" if calibrated else "raw") and cov["keypoints"] == 30
    assert cov["overall"] == {"0.5": 0.5, "0.9": 0.9, "0.95": 0.95}
    assert cov["worst"]["0.9"] == {"group": "arms", "coverage": pytest.approx(0.8)}
    assert cov["worst_bucket"]["0.5"] == {"group": "medium", "coverage": pytest.approx(0.3)}  # the empty one skipped
    assert cov["region_share"]["0.95"] == pytest.approx(0.095) and cov["ellipse"]["0.5"] == 0.25
    result = {"settings": {"reference": None}, "speed": None, "models": [{"label": "m", "role": "candidate"}],
              "sets": {name: {"models": {"m": {"AP": 0.5, "Ex-AP": 0.3, "inout": {"all": None, "balanced": None},
                                               "coverage": cov}}} for name in ("coco_train", "cropcoco")}}
    cover = [v for v in verdicts(result) if v["target"].startswith("coverage")]
    assert len(cover) == 6 and all(v["ok"] is False for v in cover)  # arms 0.1 below q, a bucket 0.2 below
    assert "worst box bucket medium" in cover[0]["value"]


def test_coverage_backend_is_the_coverage_module_when_present():
    module = coverage_backend()
    try:
        import probpose_core.evaluation.coverage as real
    except ImportError:
        assert module is None
    else:
        assert module is real


def test_model_labels_and_split_models():
    assert split_models(["a.onnx,b.pt", " c.onnx ", ""]) == ["a.onnx", "b.pt", "c.onnx"]
    assert model_labels(["models/x.onnx", "out/y.pt"]) == ["x", "y"]
    assert model_labels(["a/m.onnx", "b/m.onnx"]) == ["a/m", "b/m"]


# ------------------------------------------------------------------------------ tiny synthetic set

@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    write_synthetic_coco(root, num_images=3, seed=5)
    return root / "annotations.json", root / "images"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    config = cnn_config()
    model = build_model(config).eval()
    with torch.no_grad():  # structured maps instead of near-uniform ones
        model.head.final_layer.weight.mul_(300.0)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt", model, config, presence_threshold=0.3)


@pytest.fixture(scope="module")
def heatmap_checkpoint(tmp_path_factory):
    """A stand-in for PP-TinyPose: an untrained heatmap model (map_kind "heatmap")."""
    torch.manual_seed(1)
    config = cnn_config(map_kind="heatmap")
    model = build_model(config).eval()
    return save_checkpoint(tmp_path_factory.mktemp("reference") / "reference.pt", model, config)


@pytest.fixture(scope="module")
def graph(tmp_path_factory):
    """A stand-in for PP-TinyPose's original graph: one conv on (N, 3, 256, 192), input "image"."""
    path = tmp_path_factory.mktemp("graph") / "model_from_ir.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        torch.onnx.export(torch.nn.Conv2d(3, 17, 3, stride=4, padding=1).eval(), (torch.zeros(1, 3, 256, 192),),
                          str(path), dynamo=False, input_names=["image"], output_names=["heatmaps"], opset_version=17)
    return path


class OracleThunder:
    """Stand-in thunder: the GT keypoints of the annotation with this box, score 0.9 for keypoints
    in the image (v 1, 2) and 0.1 for the others (a box it does not know: the box centre, 0.05)."""

    name = "oracle"

    def __init__(self, *ann_paths):
        self.table = {}
        for path in ann_paths:
            for ann in load_coco(path)["annotations"]:
                kpts = keypoints_array(ann)
                self.table[self.key(ann["bbox"])] = np.concatenate(
                    [kpts[:, :2], np.where(np.isin(kpts[:, 2], (1, 2)), 0.9, 0.1)[:, None]], axis=1)
        self.calls = 0

    @staticmethod
    def key(box):
        return tuple(round(float(v), 3) for v in box)

    def predict(self, frame_rgb, box_xywh):
        assert frame_rgb.ndim == 3 and frame_rgb.dtype == np.uint8
        self.calls += 1
        found = self.table.get(self.key(box_xywh))
        if found is None:
            x, y, w, h = box_xywh
            return np.tile([x + w / 2, y + h / 2, 0.05], (17, 1))
        return found.copy()


def test_limit_set(dataset, tmp_path):
    ann, _ = dataset
    assert limit_set(ann, tmp_path / "x.json", None) == Path(ann)
    first = load_coco(limit_set(ann, tmp_path / "first2.json", 2))
    assert [i["id"] for i in first["images"]] == [1, 2]
    assert {a["image_id"] for a in first["annotations"]} <= {1, 2}


def test_cropcoco_twin_is_reused(dataset, tmp_path, capsys):
    ann, images = dataset
    path, img_dir = cropcoco_twin(ann, images, tmp_path / "twin", seed=1, progress=False)
    stamp = path.stat().st_mtime_ns
    assert img_dir.is_dir() and load_coco(path)["info"]["cropcoco"]["seed"] == 1
    assert cropcoco_twin(ann, images, tmp_path / "twin", seed=1, progress=False)[0].stat().st_mtime_ns == stamp
    assert "reusing" in capsys.readouterr().out
    cropcoco_twin(ann, images, tmp_path / "twin", seed=2, progress=False)  # another seed: made again
    assert load_coco(path)["info"]["cropcoco"]["seed"] == 2


@pytest.mark.parametrize("which", ["probmap", "heatmap"])
def test_model_scores_match_gt_outputs(dataset, checkpoint, heatmap_checkpoint, which):
    ann, images = dataset
    model, _ = load_checkpoint(checkpoint if which == "probmap" else heatmap_checkpoint)
    runner = TorchRunner(model)
    instances, _ = load_instances(ann, images_dir=images)
    for flip in (False, True):
        mine = model_scores(runner, instances, images, ProbMapCodec(), flip_test=flip)
        ref = gt_outputs(runner, instances, images, ProbMapCodec(), flip_test=flip)
        for key in ("presence", "presence_target", "keypoint_weights", "map_weights", "level_lo", "level_hi"):
            np.testing.assert_allclose(mine[key], ref[key], atol=1e-6)
        assert mine["map_max"].shape == ref["presence"].shape
        if which == "probmap":
            assert np.all((mine["map_max"] > 0) & (mine["map_max"] <= 1 + 1e-6))
        else:  # the heatmap maximum IS its presence (read_heatmaps clips it to [0, 1])
            np.testing.assert_allclose(np.clip(mine["map_max"], 0, 1), mine["presence"], atol=1e-6)
        share = mine["region_share"]
        assert share.shape == ref["presence"].shape + (3,) and np.all(share > 0)
        assert np.all(np.diff(share, axis=-1) >= 0)  # a larger level, a region at least as large


def test_compare_end_to_end(dataset, checkpoint, heatmap_checkpoint, graph, tmp_path, monkeypatch):
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))  # the .pt's ONNX exports go here
    ann, images = dataset
    out = tmp_path / "compare"
    twin, _ = cropcoco_twin(ann, images, out / "cropcoco", seed=0, progress=False)
    thunder = OracleThunder(ann, twin)
    result = compare([checkpoint], ann, images, out, reference=heatmap_checkpoint, reference_label="TinyStandIn",
                     thunder=thunder, tinypose_graph=graph, speed_people=2, speed_repeats=2, progress=False)
    assert json.loads((out / "compare.json").read_text()) == json.loads(json.dumps(result))
    roles = {m["label"]: (m["role"], m["map_kind"], m["runtime"]) for m in result["models"]}
    assert roles == {"model": ("candidate", "probmap", "ort"), "TinyStandIn": ("reference", "heatmap", "ort")}
    for name in ("coco_train", "cropcoco"):
        s = result["sets"][name]
        assert set(s["models"]) == {"model", "TinyStandIn", "thunder"}
        assert (out / name / "model" / "metrics.json").is_file() and (out / name / "TinyStandIn" / "metrics.json").is_file()
        assert len(json.loads((out / name / "thunder_predictions.json").read_text())) == \
            s["models"]["thunder"]["predictions"]
        assert s["models"]["thunder"]["AP"] == pytest.approx(1.0)  # the oracle's keypoints are the GT
        for label in ("model", "TinyStandIn"):
            m = s["models"][label]
            assert 0.0 <= m["AP"] <= 1.0
            raw = m["coverage_raw_intervals"]
            for q in ("0.5", "0.9", "0.95"):  # evaluate_model's curve and the recount from the same intervals
                assert raw["overall"][q] == pytest.approx(raw["overall_recount"][q], abs=1e-9)
                assert raw["worst"][q]["coverage"] == min(raw["groups"][g][q] for g in GROUPS)
                assert raw["region_share"][q] > 0
            cov = m["coverage"]  # the coverage module's published regions where it exists, else the same
            if cov != raw:
                assert coverage_backend() is not None and cov["source"].startswith("probpose_core.evaluation.coverage")
                assert set(cov["overall"]) == set(cov["region_share"]) == {"0.5", "0.9", "0.95"}
        # thunder's in/out error: the oracle says "in the image"; truth is "in the window"
        instances, _ = load_instances(s["ann"], images_dir=s["images"])
        ref = gt_outputs(TorchRunner(load_checkpoint(checkpoint)[0]), instances, s["images"], ProbMapCodec())
        labelled = ref["keypoint_weights"] > 0
        in_image = np.stack([np.isin(i.keypoints[:, 2], (1, 2)) for i in instances])[labelled]
        truth = ref["presence_target"][labelled] > 0
        expected = min(np.mean(in_image != truth), np.mean(truth), np.mean(~truth))
        inout = s["models"]["thunder"]["inout"]["all"]
        assert inout["keypoints"] == labelled.sum() and inout["in_window"] == truth.sum()
        assert inout["presence"]["error"] == pytest.approx(expected)
        assert s["models"]["model"]["inout"]["all"]["in_window"] == truth.sum()
    assert result["sets"]["cropcoco"]["models"]["model"]["inout"]["all"]["out_of_window"] > 0
    speed = result["speed"]
    assert speed["people"] == 2 and speed["thunder_ms"] > 0 and speed["tinypose_graph_ms"] > 0
    assert set(speed["models"]) == {"model", "TinyStandIn"}
    assert all(t["pipeline_ms"] > 0 and t["network_ms"] > 0 for t in speed["models"].values())
    targets = [v["target"] for v in result["verdicts"]]
    assert {v["model"] for v in result["verdicts"]} == {"model"}  # verdicts for candidates only
    assert len(targets) == 2 + 2 + 3 + 2 * 3
    assert all(v["ok"] is not None for v in result["verdicts"])  # everything measurable with a reference
    report = format_report(result)
    for row in ("| model |", "| TinyStandIn |", "| thunder |", "| model | target | value | verdict |"):
        assert row in report
    assert "original graph" in report


def test_cli_without_thunder_or_reference(dataset, tmp_path, checkpoint, heatmap_checkpoint, monkeypatch, capsys):
    """Thunder is optional: no teachers folder -> its cells read –, a note, exit 0. Two candidates
    (a comma list), no reference: the reference verdicts are n/a."""
    monkeypatch.setenv("PROBPOSE_CACHE", str(tmp_path / "cache"))
    ann, images = dataset
    code = main(["--model", f"{checkpoint},{heatmap_checkpoint}", "--gt", str(ann), "--images", str(images),
                 "--teachers", str(tmp_path / "none"), "--reference", "none", "--tinypose-graph", "none",
                 "--out", str(tmp_path / "o"), "--speed-people", "1", "--speed-repeats", "1", "--quiet"])
    assert code == 0
    text = capsys.readouterr().out
    result = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert result["settings"]["thunder"] is None and result["settings"]["reference"] is None
    assert any("movenet-thunder.onnx" in n for n in result["notes"])
    assert "thunder" not in result["sets"]["coco_train"]["models"]
    assert [m["label"] for m in result["models"]] == ["model", "reference"]
    assert "| thunder | – | – | – |" in text and "Note: thunder: no movenet-thunder.onnx" in text
    by_target = {(v["model"], v["target"].split(" ")[0]): v["ok"] for v in result["verdicts"]}
    assert by_target[("model", "AP")] is None and by_target[("model", "network")] is None
    assert by_target[("model", "ms/person")] in (True, False)


def test_cli_errors_are_one_line(dataset, tmp_path, checkpoint, capsys):
    ann, images = dataset
    code = main(["--model", str(checkpoint), "--gt", str(ann), "--images", str(images), "--reference",
                 str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "o"), "--quiet"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.onnx" in err[0]


def test_graph_network_fits(graph):
    net = GraphNetwork(graph, threads=1)
    assert net.input_name == "image"
    crop = np.zeros((1, 3, 256, 192), np.float32)
    assert net.fits(crop) and not net.fits(np.zeros((1, 3, 128, 96), np.float32))
    assert net.run(crop)[0].shape == (1, 17, 64, 48)


@pytest.mark.skipif(not (SHARED / "gt.json").is_file() or not REFERENCE.is_file() or not STUDENT.is_file(),
                    reason="needs ../shared/data/coco_train, out/tinypose_heatmap.onnx and the shipped student (not in CI)")
def test_real_data_quick_run(tmp_path, capsys):
    code = main(["--model", str(STUDENT), "--reference", str(REFERENCE), "--gt", str(SHARED / "gt.json"),
                 "--images", str(SHARED / "images"), "--teachers", "none", "--out", str(tmp_path / "o"),
                 "--limit", "2", "--speed-people", "2", "--speed-repeats", "1", "--quiet"])
    assert code == 0
    result = json.loads((tmp_path / "o" / "compare.json").read_text())
    assert [m["map_kind"] for m in result["models"]] == ["probmap", "heatmap"]
    assert "| PP-TinyPose-256 |" in capsys.readouterr().out
