"""spec.py: one ModelSpec from a checkpoint's meta or an ONNX sidecar, read the same way by every caller."""
import json

import pytest
import torch

from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.keypoints import NAMES
from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
from probpose_core.models.pose_model import build_model, cnn_config
from probpose_core.pipeline import Pipeline
from probpose_core.runtime.export import export_onnx
from probpose_core.runtime.ort_runner import OrtRunner
from probpose_core.runtime.torch_runner import TorchRunner
from probpose_core.spec import (DEFAULT_PRESENCE_THRESHOLD, ModelSpec, codec_from_settings, codec_settings,
                                model_spec)

SMALL = {"input_size": (96, 128), "heatmap_size": (24, 32)}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A small 128x96 double-heatmap CNN with its own codec and threshold, marked heatmap_only,
    as a checkpoint and as its ONNX export."""
    tmp = tmp_path_factory.mktemp("spec")
    torch.manual_seed(0)
    config = cnn_config(double_heatmap=True, **SMALL)
    model = build_model(config).eval()
    codec = ProbMapCodec(padding=1.4, sigmas=[0.05] * 17, **SMALL)
    ckpt = save_checkpoint(tmp / "m.pt", model, config, codec=codec, temperature=1.7, presence_threshold=0.3,
                           extra={"heatmap_only": True})
    loaded, meta = load_checkpoint(ckpt)
    return ckpt, meta, export_onnx(loaded, tmp / "m.onnx", meta=meta)


def test_checkpoint_and_sidecar_give_the_same_spec(exported):
    ckpt, meta, onnx_path = exported
    from_ckpt = ModelSpec.from_meta(meta)
    from_sidecar = ModelSpec.from_meta(json.loads(onnx_path.with_suffix(".json").read_text()))
    assert from_ckpt == from_sidecar
    assert from_ckpt.input_size == (96, 128) and from_ckpt.heatmap_size == (24, 32)
    assert from_ckpt.codec.padding == 1.4 and from_ckpt.codec.sigmas == (0.05,) * 17
    assert from_ckpt.presence_threshold == 0.3 and from_ckpt.temperature == 1.7
    assert from_ckpt.double_heatmap and from_ckpt.heatmap_only and from_ckpt.map_kind == "probmap"
    assert from_ckpt.keypoint_names == NAMES


def test_every_runtime_builds_its_pipeline_from_the_spec(exported):
    """heatmap_only, codec and threshold reach the pipeline on ORT as on torch (the sidecar of an
    older exporter had no heatmap_only: a converted ViTPose on ORT then trusted its 0.5 presence)."""
    ckpt, meta, onnx_path = exported
    model, _ = load_checkpoint(ckpt)
    for runner in (OrtRunner(onnx_path), TorchRunner(model, meta=meta)):
        pipe = Pipeline(runner)
        assert pipe.spec == ModelSpec.from_meta(meta)
        assert pipe.heatmap_only and pipe.presence_threshold == 0.3 and pipe.codec.input_size == (96, 128)


def test_a_bare_model_gets_the_default_spec_sized_to_its_config():
    model = build_model(cnn_config(**SMALL)).eval()
    spec = model_spec(TorchRunner(model))
    assert spec.codec == ProbMapCodec(**SMALL) and spec.presence_threshold == DEFAULT_PRESENCE_THRESHOLD
    assert Pipeline(TorchRunner(model)).codec.input_size == (96, 128)
    assert ModelSpec.from_meta({}) == ModelSpec() and ModelSpec().codec == ProbMapCodec()


def test_bad_metadata_is_a_clear_error():
    with pytest.raises(InputError, match=r"input_size is \(96, 128\).*\(192, 256\)"):
        ModelSpec.from_meta({"codec": codec_settings(ProbMapCodec()), "config": cnn_config(**SMALL).to_dict()})
    with pytest.raises(InputError, match="presence threshold"):
        ModelSpec.from_meta({"presence_threshold": 1.5})
    with pytest.raises(InputError, match="3 keypoints"):
        ModelSpec.from_meta({"keypoints": {"names": ["a", "b", "c"]}})
    with pytest.raises(InputError, match="codec settings"):
        codec_from_settings({"padding": 1.25, "colour": "red"})
    assert codec_from_settings(codec_settings(ProbMapCodec(padding=1.1))) == ProbMapCodec(padding=1.1)


def _table(levels=(0.5, 0.9)):
    from probpose_core.conformal import GROUPS, CoverageTable

    cells = {g: {"region": [0.3 + 0.01 * i, 1.7], "ellipse_r2": [1.2, 6.5 + i], "n": 50 + i}
             for i, g in enumerate(GROUPS)}
    return CoverageTable(levels=levels, groups=GROUPS, cells=cells, data="unit test")


def test_coverage_table_round_trips_through_checkpoint_and_sidecar(tmp_path):
    """The table is stored in the checkpoint (extra) and the sidecar, and only ModelSpec reads it;
    a model without one is "uncalibrated coverage": the pipeline publishes raw regions and says so."""
    import logging

    torch.manual_seed(0)
    config = cnn_config(**SMALL)
    model = build_model(config).eval()
    table = _table()
    ckpt = save_checkpoint(tmp_path / "m.pt", model, config, codec=ProbMapCodec(**SMALL),
                           extra={"coverage": table.to_dict()})
    loaded, meta = load_checkpoint(ckpt)
    onnx_path = export_onnx(loaded, tmp_path / "m.onnx", meta=meta)
    from_ckpt = ModelSpec.from_meta(meta)
    from_sidecar = ModelSpec.from_meta(json.loads(onnx_path.with_suffix(".json").read_text()))
    assert from_ckpt.coverage == table == from_sidecar.coverage and from_ckpt.coverage_calibrated
    for runner in (OrtRunner(onnx_path), TorchRunner(loaded, meta=meta)):
        pipe = Pipeline(runner, credible_levels=(0.5, 0.9))
        assert pipe.regions_calibrated and pipe.coverage == table
        with pytest.raises(InputError, match="0.5, 0.9"):
            Pipeline(runner, credible_levels=(0.8,))  # a level the table does not hold: refused
    bare = ModelSpec.from_meta({})
    assert bare.coverage is None and not bare.coverage_calibrated
    logger = logging.getLogger("probpose_core.pipeline")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        pipe = Pipeline(TorchRunner(model), credible_levels=(0.8,))  # no table: any level, raw, with a warning
    finally:
        logger.removeHandler(handler)
    assert not pipe.regions_calibrated and any("uncalibrated coverage" in r.getMessage() for r in records)
    with pytest.raises(InputError, match="coverage table"):
        ModelSpec.from_meta({"coverage": {"format": 1, "levels": [0.5], "groups": {"all": [0, 1]},
                                          "cells": {"all": {"region": [0.5], "ellipse_r2": [1.0]}}}})
