"""PoseModel: outputs, key layout of the official checkpoints, ViT details, CNN budget, double heatmap."""
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.keypoints import SIGMAS
from probpose_core.geometry import WIDE_FACTOR
from probpose_core.models import OUTPUT_NAMES, PoseModelConfig, build_model, cnn_config, gmacs, num_params, vit_config
from probpose_core.models.vit import Attention, patch_grid, resize_pos_embed
from probpose_core.codec import read_double
from probpose_core.sparsemax import sparsemax_maps

MANIFESTS = Path(__file__).parent / "data" / "checkpoint_manifests"


def tiny_config(**kw) -> PoseModelConfig:
    return vit_config("t", **{"embed_dim": 32, "depth": 2, "num_heads": 2, "head_channels": 16, **kw})


def read_manifest(name: str) -> dict:
    rows = [line.split("\t") for line in (MANIFESTS / name).read_text().splitlines() if line]
    return {k: () if s == "scalar" else tuple(int(v) for v in s.split("x")) for k, s in rows}


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return build_model(tiny_config()).eval()


def test_outputs_are_named_probabilities(tiny):
    out = tiny(torch.randn(3, 3, 256, 192))
    assert tuple(out) == OUTPUT_NAMES
    assert out["prob_maps"].shape == (3, 17, 64, 48)
    assert torch.all(out["prob_maps"] >= 0)
    torch.testing.assert_close(out["prob_maps"].sum((2, 3)), torch.ones(3, 17))
    for key in ("presence", "visibility", "oks_quality"):
        assert out[key].shape == (3, 17)
        assert torch.all((out[key] >= 0) & (out[key] <= 1))


def test_logits_give_the_maps(tiny):
    with torch.no_grad():
        out = tiny(torch.randn(2, 3, 256, 192), return_logits=True)
    assert out["map_logits"].shape == (2, 17, 64, 48)
    torch.testing.assert_close(sparsemax_maps(out["map_logits"], 0.5), out["prob_maps"])


def test_export_sparsemax_variants_agree():
    torch.manual_seed(1)
    model = build_model(tiny_config()).eval()
    with torch.no_grad():
        model.head.final_layer.weight *= 3000  # peaked maps, as a trained model gives
    x = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        ref = model(x)
        support = (ref["prob_maps"] > 0).sum((2, 3))
        assert 1 < support.max() <= 128  # topk (k = 128) is exact in this regime; bisect always
        for method in ("topk", "bisect"):
            model.set_sparsemax_method(method)
            out = model(x)
            for key in OUTPUT_NAMES:
                torch.testing.assert_close(out[key], ref[key], atol=1e-6, rtol=0)


def test_scalar_branches_read_detached_features(tiny):
    tiny.zero_grad()
    out = tiny(torch.randn(2, 3, 256, 192))
    (out["presence"].sum() + out["visibility"].sum() + out["oks_quality"].sum()).backward()
    assert all(p.grad is None or not p.grad.any() for p in tiny.backbone.parameters())
    assert tiny.head.probability_layers[0].weight.grad.abs().sum() > 0
    tiny.zero_grad()
    out = tiny(torch.randn(2, 3, 256, 192))
    (out["prob_maps"] * torch.randn_like(out["prob_maps"])).sum().backward()
    assert tiny.backbone.patch_embed.projection.weight.grad.abs().sum() > 0
    tiny.zero_grad()


def test_vit_s_matches_the_official_manifest():
    model = build_model(vit_config("s"))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    manifest = read_manifest("probpose_s_state_dict.tsv")
    assert list(ours) == list(manifest)  # same keys, same (state_dict) order
    assert ours == manifest
    assert model.backbone.layers[0].ln1.eps == 1e-6
    rates = [layer.drop_path.rate for layer in model.backbone.layers]
    np.testing.assert_allclose(rates, np.linspace(0, 0.1, 12), atol=1e-7)


def test_attention_layout_is_three_heads_by_head_dim():
    """q, k, v are rows [0, C), [C, 2C), [2C, 3C) of qkv, each split into heads of C / heads."""
    torch.manual_seed(2)
    attn, x = Attention(8, 2), torch.randn(1, 5, 8)
    qkv = attn.qkv(x)[0]
    heads = []
    for h in range(2):
        q, k, v = (qkv[:, i * 8 + h * 4: i * 8 + h * 4 + 4] for i in range(3))
        heads.append(torch.softmax(q @ k.T / 2.0, dim=-1) @ v)
    expected = attn.proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attn(x)[0], expected, atol=1e-6, rtol=1e-5)


def test_patch_grid_and_pos_embed_resize(tiny):
    assert patch_grid((192, 256)) == (16, 12)
    pos = torch.randn(1, 16 * 12, 4)
    assert resize_pos_embed(pos, (16, 12), (16, 12)) is pos
    assert resize_pos_embed(pos, (16, 12), (8, 6)).shape == (1, 48, 4)
    with torch.no_grad():  # another input size: pos_embed resized, maps stay 4x the token grid
        out = tiny(torch.randn(1, 3, 128, 96))
    assert out["prob_maps"].shape == (1, 17, 32, 24)


def test_drop_path_only_in_training():
    torch.manual_seed(3)
    model = build_model(tiny_config(drop_path=0.5))
    x = torch.randn(4, 3, 256, 192)
    model.train()
    a, b = model.backbone(x), model.backbone(x)
    assert not torch.allclose(a, b)
    model.eval()
    torch.testing.assert_close(model.backbone(x), model.backbone(x))


def test_cnn_fits_the_cpu_budget():
    model = build_model(cnn_config()).eval()
    assert num_params(model) < 0.7e6
    assert gmacs(model) < 0.35
    with torch.no_grad():
        feats = model.backbone(torch.randn(1, 3, 256, 192))
        out = model(torch.randn(2, 3, 256, 192))
    assert feats.shape == (1, 128, 16, 12)
    assert out["prob_maps"].shape == (2, 17, 64, 48) and out["presence"].shape == (2, 17)


def test_gmacs_counts_a_conv_by_hand():
    model = build_model(tiny_config())
    # patch embedding alone: 16*12 output pixels * 32 channels * 3*16*16 weights each
    assert gmacs(model) * 1e9 > 192 * 32 * 3 * 256
    big = build_model(tiny_config(embed_dim=64))
    assert gmacs(big) > gmacs(model)


def test_config_round_trip_and_errors():
    cfg = vit_config("b", double_heatmap=True)
    assert PoseModelConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.to_dict()["input_size"] == [192, 256]
    with pytest.raises(ValueError, match="bogus"):
        PoseModelConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="backbone"):
        PoseModelConfig(backbone="resnet")
    with pytest.raises(ValueError, match="heatmap_size"):
        build_model(tiny_config(heatmap_size=(64, 64)))


def test_double_heatmap_outputs():
    torch.manual_seed(4)
    model = build_model(tiny_config(double_heatmap=True)).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 192), return_logits=True)
    assert set(out) == set(OUTPUT_NAMES) | {"wide_prob_maps", "map_logits", "wide_map_logits"}
    assert model.output_names == OUTPUT_NAMES + ("wide_prob_maps",)
    torch.testing.assert_close(out["wide_prob_maps"].sum((2, 3)), torch.ones(2, 17))


def _maps_for(codec, keypoints, area, center, scale):
    """Probability maps peaked at ``keypoints (N, K, 2)``: normalised OKS maps (zero outside the window)."""
    vis = np.full(keypoints.shape[:2], 2)
    maps = codec.encode(keypoints, vis, area, center, scale)["oks_maps"].astype(np.float64) ** 4
    return maps / np.maximum(maps.sum((2, 3), keepdims=True), 1e-300)


@settings(max_examples=25, deadline=None)
@given(st.floats(-0.95, 0.95), st.floats(-0.95, 0.95), st.floats(60, 300))
def test_decode_double_wide_decides_expert_refines(u, v, height):
    codec = ProbMapCodec(sigmas=SIGMAS[[11, 0]])  # a hip and a nose
    bbox = np.array([[100.0, 50.0, 0.75 * height, height]])
    center, scale = geometry.bbox_to_center_scale(bbox)
    area = np.array([0.53 * bbox[0, 2] * bbox[0, 3]])
    # one keypoint anywhere in the wide window (u, v in units of its half size), plus one at the centre
    kpts = np.stack([center + np.array([u, v]) * scale * WIDE_FACTOR / 2, center], axis=1)
    wide_maps = _maps_for(codec, kpts, area, center, scale * WIDE_FACTOR)
    expert_maps = _maps_for(codec, kpts, area, center, scale)
    points, conf, refined = read_double(codec, expert_maps, wide_maps, center, scale, area=area)
    wide_pts, wide_conf = codec.decode(wide_maps, center, scale * WIDE_FACTOR, area=area)
    expert_pts, _ = codec.decode(expert_maps, center, scale, area=area)
    np.testing.assert_array_equal(refined[0], geometry.in_window(wide_pts[0], geometry.window_xyxy(center[0], scale[0])))
    np.testing.assert_allclose(points, np.where(refined[..., None], expert_pts, wide_pts))
    assert refined[0, 1] and points.shape == (1, 2, 2) and conf.shape == (1, 2)
    assert np.all((conf >= 0) & (conf <= 1))
    # a point well inside a window is found by its map to a fraction of a map pixel (not one on
    # the expert window's edge, |u| or |v| = 0.5: there the expert map holds a truncated
    # distribution whose estimate is pulled inwards; hypothesis found u = 0.5 off by 1.15 px)
    wide_px = scale[0] * WIDE_FACTOR / np.array([47, 63])
    on_expert_edge = min(abs(abs(u) - 0.5), abs(abs(v) - 0.5)) < 0.1 and max(abs(u), abs(v)) < 0.6
    if max(abs(u), abs(v)) < 0.9 and not on_expert_edge:
        assert np.all(np.abs(points[0, 0] - kpts[0, 0]) <= wide_px)
    if refined[0, 0] and max(abs(u), abs(v)) < 0.4:
        assert np.all(np.abs(points[0, 0] - kpts[0, 0]) <= wide_px / 4)


# ---------------------------------------------------------------- heatmap baseline (map_kind="heatmap")


def test_heatmap_kind_returns_the_raw_final_layer_output():
    torch.manual_seed(5)
    model = build_model(tiny_config(map_kind="heatmap")).eval()
    seen = {}
    model.head.final_layer.register_forward_hook(lambda m, i, o: seen.setdefault("raw", o))
    with torch.no_grad():
        out = model(torch.randn(2, 3, 256, 192))
    assert tuple(out) == ("heatmaps",) + OUTPUT_NAMES[1:] == model.output_names
    assert out["heatmaps"].shape == (2, 17, 64, 48)
    torch.testing.assert_close(out["heatmaps"], seen["raw"], rtol=0, atol=0)  # no temperature, no sparsemax
    assert (out["heatmaps"] < 0).any()  # raw regression output, not a distribution
    for key in OUTPUT_NAMES[1:]:
        assert out[key].shape == (2, 17) and torch.all((out[key] >= 0) & (out[key] <= 1))


def test_heatmap_and_probmap_models_share_weights_and_branches():
    torch.manual_seed(6)
    probmap = build_model(tiny_config()).eval()
    heatmap = build_model(tiny_config(map_kind="heatmap")).eval()
    assert list(probmap.state_dict()) == list(heatmap.state_dict())  # one head class, same layout
    heatmap.load_state_dict(probmap.state_dict())
    images = torch.randn(2, 3, 256, 192)
    with torch.no_grad():
        a, b = probmap(images, return_logits=True), heatmap(images)
    torch.testing.assert_close(sparsemax_maps(b["heatmaps"], probmap.head.temperature), a["prob_maps"])
    for key in OUTPUT_NAMES[1:]:
        torch.testing.assert_close(a[key], b[key])


def test_map_kind_config_and_checkpoint_round_trip(tmp_path):
    from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint

    assert PoseModelConfig().map_kind == "probmap"
    old = PoseModelConfig().to_dict()
    del old["map_kind"]  # a config written before map_kind existed loads as a probmap model
    assert PoseModelConfig.from_dict(old).map_kind == "probmap"
    with pytest.raises(ValueError, match="map_kind"):
        PoseModelConfig(map_kind="gaussian")
    with pytest.raises(ValueError, match="double-heatmap"):
        PoseModelConfig(map_kind="heatmap", double_heatmap=True)
    torch.manual_seed(7)
    config = cnn_config(map_kind="heatmap")
    model = build_model(config).eval()
    path = save_checkpoint(tmp_path / "hm.pt", model, config)
    loaded, meta = load_checkpoint(path)
    assert meta["config"].map_kind == "heatmap" and loaded.output_names[0] == "heatmaps"
    images = torch.randn(1, 3, 256, 192)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["heatmaps"], model(images)["heatmaps"])
