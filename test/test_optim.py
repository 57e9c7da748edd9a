"""training.optim: layer-wise lr decay groups, no-decay set, warm-up + multi-step schedule."""
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.models import build_model, cnn_config, vit_config
from training.optim import build_optimizer, build_scheduler, layer_id, lr_factor, no_decay_names, param_groups

DEPTH = 3


@pytest.fixture(scope="module")
def vit():
    return build_model(vit_config("t", depth=DEPTH, embed_dim=64, num_heads=2, head_channels=16, aux_channels=8))


def _names(groups):
    return [n for g in groups for n in g["param_names"]]


def test_every_parameter_exactly_once(vit):
    groups = param_groups(vit, 1e-3, 0.1, 0.8, DEPTH)
    names = _names(groups)
    assert sorted(names) == sorted(n for n, _ in vit.named_parameters())
    assert len(names) == len(set(names))
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) == len(list(vit.parameters()))
    for g in groups:  # params and names stay aligned
        own = dict(vit.named_parameters())
        assert all(own[n] is p for n, p in zip(g["param_names"], g["params"]))


def test_layer_ids_and_lr_scales(vit):
    lr, decay = 2e-4, 0.8
    groups = param_groups(vit, lr, 0.1, decay, DEPTH)
    by_name = {n: g for g in groups for n in g["param_names"]}
    expected = {
        "backbone.pos_embed": 0, "backbone.patch_embed.projection.weight": 0,
        "backbone.layers.0.attn.qkv.weight": 1, f"backbone.layers.{DEPTH - 1}.ffn.layers.1.bias": DEPTH,
        "backbone.ln1.weight": DEPTH + 1, "head.final_layer.weight": DEPTH + 1,
    }
    for name, lid in expected.items():
        assert layer_id(name, DEPTH) == lid
        g = by_name[name]
        assert g["layer_id"] == lid
        assert g["lr"] == pytest.approx(lr * decay ** (DEPTH + 1 - lid))
        assert g["lr_scale"] == pytest.approx(decay ** (DEPTH + 1 - lid))
    assert by_name["head.final_layer.weight"]["lr"] == pytest.approx(lr)  # the head: full lr
    # the deepest block gets more than the shallowest, which gets more than the embedding
    assert by_name["backbone.pos_embed"]["lr"] < by_name["backbone.layers.0.ln1.weight"]["lr"] \
        < by_name[f"backbone.layers.{DEPTH - 1}.ln1.weight"]["lr"]


def test_no_decay_set(vit):
    groups = param_groups(vit, 1e-3, 0.05, 0.8, DEPTH)
    wd = {n: g["weight_decay"] for g in groups for n in g["param_names"]}
    modules = dict(vit.named_modules())
    for name, param in vit.named_parameters():
        module = modules[name.rsplit(".", 1)[0]]
        exempt = (name.endswith("bias") or name.endswith("pos_embed") or param.ndim == 1
                  or isinstance(module, (torch.nn.LayerNorm, torch.nn.BatchNorm2d)))
        assert wd[name] == (0.0 if exempt else 0.05), name
    skip = no_decay_names(vit)
    assert "backbone.pos_embed" in skip and "backbone.layers.0.ln1.weight" in skip
    assert "head.deconv_layers.1.weight" in skip  # BatchNorm weight
    assert "backbone.layers.0.attn.qkv.weight" not in skip and "head.final_layer.weight" not in skip


def test_cnn_one_scale():
    model = build_model(cnn_config())
    groups = param_groups(model, 1e-3, 0.1, 0.8, None)
    assert {g["lr_scale"] for g in groups} == {1.0}
    assert {g["weight_decay"] for g in groups} == {0.0, 0.1}
    assert len(_names(groups)) == len(list(model.parameters()))


def test_prefix_lr_scale_multiplies_the_lr_of_matching_parameters(vit):
    plain = {n: g["lr"] for g in param_groups(vit, 1e-3, 0.1, 0.8, DEPTH) for n in g["param_names"]}
    scaled = param_groups(vit, 1e-3, 0.1, 0.8, DEPTH, lr_scale=[("backbone.layers.0.", 0.1), ("backbone.", 0.5)])
    lrs = {n: g["lr"] for g in scaled for n in g["param_names"]}
    assert lrs.keys() == plain.keys() and len(_names(scaled)) == len(lrs)  # each parameter once
    for name, lr in lrs.items():  # the first matching prefix wins
        factor = 0.1 if name.startswith("backbone.layers.0.") else 0.5 if name.startswith("backbone.") else 1.0
        assert lr == pytest.approx(plain[name] * factor), name
    assert any("_x0.1_" in g["name"] for g in scaled)
    assert all(g["lr"] == pytest.approx(1e-3 * g["lr_scale"]) for g in scaled)


def test_optimizer_uses_group_settings(vit):
    opt = build_optimizer(vit, 1e-3, 0.1, 0.5, (0.9, 0.99), DEPTH)
    assert isinstance(opt, torch.optim.AdamW)
    assert all(g["betas"] == (0.9, 0.99) for g in opt.param_groups)
    head = next(g for g in opt.param_groups if g["layer_id"] == DEPTH + 1 and g["weight_decay"] > 0)
    emb = next(g for g in opt.param_groups if g["layer_id"] == 0 and g["weight_decay"] > 0)
    assert head["lr"] == pytest.approx(1e-3) and emb["lr"] == pytest.approx(1e-3 * 0.5 ** (DEPTH + 1))


SCHED = dict(iters_per_epoch=10, warmup_iters=25, warmup_ratio=0.001, milestones=(3, 5), gamma=0.1)


@pytest.mark.parametrize("it, expected", [
    (0, 0.001), (5, 0.001 + 0.999 * 5 / 25), (24, 0.001 + 0.999 * 24 / 25), (25, 1.0), (29, 1.0),
    (30, 0.1), (49, 0.1), (50, 0.01), (1000, 0.01)])
def test_schedule_values(it, expected):
    assert lr_factor(it, **SCHED) == pytest.approx(expected, rel=1e-12)


def test_schedule_warmup_overlaps_milestone():
    # warm-up longer than an epoch past a milestone: both factors multiply
    f = lr_factor(12, iters_per_epoch=5, warmup_iters=20, warmup_ratio=0.0, milestones=[2], gamma=0.5)
    assert f == pytest.approx(12 / 20 * 0.5)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 500), st.integers(0, 2000))
def test_schedule_bounded_and_monotone_after_warmup(it, per_epoch, warmup):
    kw = dict(iters_per_epoch=per_epoch, warmup_iters=warmup, warmup_ratio=0.001, milestones=[7, 9], gamma=0.1)
    f = lr_factor(it, **kw)
    assert 0 < f <= 1
    if it >= warmup:
        assert lr_factor(it + 1, **kw) <= f


def test_scheduler_drives_group_lrs(vit):
    opt = build_optimizer(vit, 1e-2, 0.1, 0.8, vit_depth=DEPTH)
    base = [g["lr"] for g in opt.param_groups]
    sched = build_scheduler(opt, **SCHED)
    seen = []
    for it in range(60):
        seen.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    for it in (0, 7, 25, 31, 55):
        factor = lr_factor(it, **SCHED)
        assert seen[it] == pytest.approx([b * factor for b in base], rel=1e-9)
    # the scheduler state round-trips (resume)
    sched2 = build_scheduler(build_optimizer(vit, 1e-2, 0.1, 0.8, vit_depth=DEPTH), **SCHED)
    sched2.load_state_dict(sched.state_dict())
    assert sched2.last_epoch == 60 and math.isclose(sched2.get_last_lr()[-1], sched.get_last_lr()[-1])
