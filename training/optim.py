"""AdamW with layer-wise learning-rate decay, and the warm-up + multi-step schedule.

Layer ids (ViTPose / BEiT scheme) for a ViT of ``depth`` blocks: ``backbone.pos_embed`` and
``backbone.patch_embed.*`` are layer 0, ``backbone.layers.i.*`` is layer ``i + 1``, everything
else (the final norm ``backbone.ln1``, the head) is layer ``depth + 1``. A parameter's lr is
``lr * layer_decay ** (depth + 1 - layer_id)``. The CNN backbone is not layered: every
parameter gets the full lr. ``lr_scale`` (``[(prefix, scale)]``, the first prefix a name starts
with) multiplies a parameter's lr further, e.g. ``[("backbone.features.", 0.1)]`` fine-tunes a
pretrained part ten times slower than the rest.

No weight decay for biases, ``pos_embed``, normalisation weights (LayerNorm / BatchNorm /
GroupNorm) and any other 1-D parameter.

Schedule (per iteration ``it`` of epoch ``epoch``)::

    factor = warm(it) * gamma ** (number of milestones <= epoch)
    warm(it) = warmup_ratio + (1 - warmup_ratio) * it / warmup_iters   for it < warmup_iters, else 1
"""
import functools
import re

import torch
from torch import nn

NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


def layer_id(name: str, depth: int) -> int:
    """Layer of a ViT PoseModel parameter ``name`` (see the module docstring)."""
    if name.startswith(("backbone.pos_embed", "backbone.patch_embed.")):
        return 0
    match = re.match(r"backbone\.layers\.(\d+)\.", name)
    if match:
        return int(match.group(1)) + 1
    return depth + 1


def no_decay_names(model: nn.Module) -> set[str]:
    """Names of the parameters that get no weight decay."""
    names = set()
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if (isinstance(module, NORM_TYPES) or param.ndim <= 1 or name.endswith("bias")
                    or name == "pos_embed"):
                names.add(full)
    return names


def param_groups(model: nn.Module, lr: float, weight_decay: float, layer_decay: float = 1.0,
                 vit_depth: int | None = None, lr_scale=()) -> list[dict]:
    """Optimiser parameter groups: one per (layer, prefix scale, decay / no decay).

    ``vit_depth`` None (CNN backbone) puts every parameter in layer 0 with scale 1. ``lr_scale``:
    ``[(prefix, scale)]`` (module docstring). Each group holds ``params``, ``lr`` (already
    scaled), ``lr_scale``, ``weight_decay``, ``layer_id`` and a ``name`` such as
    ``"layer_3_decay"`` (``"layer_0_x0.1_decay"`` under a prefix scale).
    """
    skip = no_decay_names(model)
    groups: dict[tuple[int, float, bool], dict] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if vit_depth is None:
            lid, scale = 0, 1.0
        else:
            lid = layer_id(name, vit_depth)
            scale = layer_decay ** (vit_depth + 1 - lid)
        prefix_scale = next((float(s) for prefix, s in lr_scale if name.startswith(prefix)), 1.0)
        decay = name not in skip
        tag = "" if prefix_scale == 1.0 else f"x{prefix_scale:g}_"
        group = groups.setdefault((lid, prefix_scale, decay), {
            "name": f"layer_{lid}_{tag}{'decay' if decay else 'no_decay'}", "params": [], "param_names": [],
            "lr": lr * scale * prefix_scale, "lr_scale": scale * prefix_scale,
            "weight_decay": weight_decay if decay else 0.0, "layer_id": lid})
        group["params"].append(param)
        group["param_names"].append(name)
    return [groups[key] for key in sorted(groups)]


def build_optimizer(model: nn.Module, lr: float, weight_decay: float, layer_decay: float, betas=(0.9, 0.999),
                    vit_depth: int | None = None, lr_scale=()) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups` (layer-wise lr decay for the ViT, prefix lr scales)."""
    return torch.optim.AdamW(param_groups(model, lr, weight_decay, layer_decay, vit_depth, lr_scale),
                             lr=lr, betas=tuple(betas), weight_decay=weight_decay)


def lr_factor(iteration: int, iters_per_epoch: int, warmup_iters: int, warmup_ratio: float, milestones,
              gamma: float) -> float:
    """Multiplier of every group's base lr at global ``iteration`` (0-based, before its step)."""
    epoch = iteration // max(1, iters_per_epoch)
    warm = 1.0
    if warmup_iters > 0 and iteration < warmup_iters:
        warm = warmup_ratio + (1.0 - warmup_ratio) * iteration / warmup_iters
    return warm * gamma ** sum(1 for m in milestones if epoch >= m)


def build_scheduler(optimizer: torch.optim.Optimizer, iters_per_epoch: int, warmup_iters: int, warmup_ratio: float,
                    milestones, gamma: float) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-iteration LambdaLR of :func:`lr_factor`; call ``scheduler.step()`` after each optimiser step."""
    fn = functools.partial(lr_factor, iters_per_epoch=iters_per_epoch, warmup_iters=warmup_iters,
                           warmup_ratio=warmup_ratio, milestones=tuple(milestones), gamma=gamma)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
