"""`probpose predict --humans-out`: the people with their credible regions, one entry per image,
each person with the annotation id it was predicted for; and the refusal of an ONNX model
without its sidecar unless --allow-uncalibrated (issue 17, item 4 and defect c)."""
import json

import numpy as np
import pytest
from test_pipeline import FIXTURE, DotRunner

from probpose_core.cli import main
from probpose_core.errors import InputError
from probpose_core.predict import check_credible_levels, parse_credible_levels, predict_images
from probpose_core.results import humans_from_json
from probpose_core.spec import DEFAULT_PRESENCE_THRESHOLD

ANN = FIXTURE / "annotations.json"


def _annotation_with_an_invalid_box(tmp_path):
    """The fixture's annotations with the middle person of image 3 given an empty box (skipped by
    predict): the people after it must still get their own annotation ids."""
    data = json.loads(ANN.read_text())
    (bad,) = [a for a in data["annotations"] if a["id"] == 8]
    bad["bbox"] = [201.0, 0.0, 0.0, 240.0]
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(data))
    return path, data


def _regions_follow_presence(humans, threshold, levels):
    """Every keypoint has regions at exactly ``levels`` when present (presence >= threshold), none
    otherwise; returns the number of present keypoints."""
    present = 0
    for human in humans:
        for kp in human["keypoints"]:
            if kp["presence"] >= threshold:
                present += 1
                assert sorted(float(q) for q in kp["regions"]) == sorted(levels), kp
                assert all(len(polys) > 0 for polys in kp["regions"].values())
            else:
                assert kp["regions"] == {}, kp
    return present


def test_humans_out_has_one_entry_per_image_and_the_annotation_ids(tmp_path):
    ann, data = _annotation_with_an_invalid_box(tmp_path)
    run = predict_images(FIXTURE / "images", tmp_path / "p.json", DotRunner(), ann=ann, progress=False,
                         humans_out=tmp_path / "h.json")
    entries = json.loads((tmp_path / "h.json").read_text())
    assert [(e["image_id"], e["file_name"]) for e in entries] == [(i["id"], i["file_name"]) for i in data["images"]]
    kept = [a for a in data["annotations"] if a["id"] != 8 and not a.get("iscrowd", 0)]
    for entry in entries:
        mine = [a for a in kept if a["image_id"] == entry["image_id"]]
        assert [h["ann_id"] for h in entry["humans"]] == [a["id"] for a in mine]
        for human, a in zip(entry["humans"], mine):
            np.testing.assert_allclose(human["bbox"], a["bbox"])  # the person of that annotation
        assert len(humans_from_json(entry["humans"])) == len(mine)  # results.humans_to_json's form
    assert sum(len(e["humans"]) for e in entries) == len(run.results) == len(kept) and run.skipped_boxes == 1
    # DotRunner: presence 0.9 on even keypoints, 0.1 on odd ones; no metadata: the default threshold
    present = sum(_regions_follow_presence(e["humans"], DEFAULT_PRESENCE_THRESHOLD, (0.5, 0.9)) for e in entries)
    assert present == len(kept) * 9
    assert "h.json" in run.summary() and "0.5, 0.9" in run.summary()


def test_regions_only_where_the_models_own_threshold_says_present(tmp_path):
    """A model whose ModelSpec threshold is 0.95: its 0.9-presence keypoints are absent, no regions."""
    runner = DotRunner()
    runner.meta = {"presence_threshold": 0.95}
    predict_images(FIXTURE / "images", tmp_path / "p.json", runner, ann=ANN, progress=False,
                   humans_out=tmp_path / "h.json", credible_levels=(0.3,))
    entries = json.loads((tmp_path / "h.json").read_text())
    assert sum(_regions_follow_presence(e["humans"], 0.95, (0.3,)) for e in entries) == 0


def test_detected_people_have_no_annotation_id(tmp_path):
    predict_images(FIXTURE / "images", tmp_path / "p.json", DotRunner(), detector="full_frame", progress=False,
                   humans_out=tmp_path / "h.json")
    entries = json.loads((tmp_path / "h.json").read_text())
    assert [e["file_name"] for e in entries] == sorted(p.name for p in (FIXTURE / "images").glob("*.png"))
    assert all(len(e["humans"]) == 1 and e["humans"][0]["ann_id"] is None for e in entries)


@pytest.mark.parametrize("text, message", [
    ("0,0.9", "strictly between 0 and 1, got '0'"),
    ("0.5,1", "strictly between 0 and 1, got '1'"),
    ("1.5", "strictly between 0 and 1"),
    ("-0.2", "strictly between 0 and 1"),
    ("0.5,abc", "must be numbers in \\(0, 1\\), got 'abc'"),
    ("nan", "strictly between 0 and 1"),
    ("0.5,,0.9", "got ''"),
])
def test_bad_credible_levels_are_clear_errors(text, message):
    with pytest.raises(InputError, match=message):
        check_credible_levels(text)


def test_credible_levels_from_text_or_numbers():
    assert check_credible_levels("0.5,0.9") == check_credible_levels([0.5, 0.9]) == (0.5, 0.9)
    assert check_credible_levels(" 0.95 , 0.5,0.95") == (0.95, 0.5)
    assert parse_credible_levels("0.9,0.95") == (0.9, 0.95)  # the command-line form (probpose coverage)
    with pytest.raises(InputError, match="no credible levels"):
        check_credible_levels([])


def test_predict_cli_humans_out_with_the_shipped_model(tmp_path, capsys):
    """End to end on the fixture with the shipped model: regions exactly for the keypoints at or
    above the model's own (sidecar) threshold, at the asked levels; bad levels are one clear error."""
    from probpose_core.runtime import make_runner
    from probpose_core.shipped import default_pose_model
    from probpose_core.spec import model_spec

    threshold = model_spec(make_runner(default_pose_model())).presence_threshold
    ann, data = _annotation_with_an_invalid_box(tmp_path)
    args = ["predict", "--images", str(FIXTURE / "images"), "--ann", str(ann), "--out", str(tmp_path / "p.json"),
            "--humans-out", str(tmp_path / "h.json")]
    assert main(args + ["--credible-levels", "0.5,0.95"]) == 0, capsys.readouterr().err
    assert "h.json" in capsys.readouterr().out
    entries = json.loads((tmp_path / "h.json").read_text())
    assert len(entries) == len(data["images"])
    assert sorted(h["ann_id"] for e in entries for h in e["humans"]) == [a["id"] for a in data["annotations"]
                                                                        if a["id"] != 8]
    people = [h for e in entries for h in e["humans"]]
    present = _regions_follow_presence(people, threshold, (0.5, 0.95))
    assert 0 < present < 17 * len(people)  # the shipped model finds both kinds here
    for bad, message in (("0.5,1.0", "strictly between 0 and 1"), ("x", "must be numbers")):
        assert main(args + ["--credible-levels", bad]) == 2
        err = capsys.readouterr().err
        assert err.startswith("probpose: error:") and message in err and "Traceback" not in err
    assert main(args[:-2] + ["--credible-levels", "0.5"]) == 2
    assert "--humans-out" in capsys.readouterr().err


def test_predict_refuses_an_onnx_without_its_sidecar_unless_allowed(tmp_path, capsys):
    import torch

    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(0)
    path = export_onnx(build_model(cnn_config()).eval(), tmp_path / "bare.onnx")
    path.with_suffix(".json").unlink()
    args = ["predict", "--images", str(FIXTURE / "images"), "--ann", str(ANN), "--out", str(tmp_path / "p.json"),
            "--model", str(path)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("probpose: error:") and str(tmp_path / "bare.json") in err and err.count("\n") == 1
    assert not (tmp_path / "p.json").exists()
    with pytest.warns(UserWarning, match="UNCALIBRATED"):
        assert main(args + ["--allow-uncalibrated"]) == 0
    assert len(json.loads((tmp_path / "p.json").read_text())) == len(json.loads(ANN.read_text())["annotations"])
