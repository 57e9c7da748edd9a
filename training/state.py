"""Checkpoints of a training run: our model file plus a training-state file next to it.

``last.pt`` is a plain ``probpose_core`` checkpoint (``models.checkpoints.save_checkpoint``:
weights, model config, codec; ``probpose predict --model last.pt`` loads it). ``last.state.pt``
holds what only training needs: optimiser, LR scheduler and AMP scaler states, the position
(``epoch``, ``batch`` within it, global ``iteration``), the best validation metric, and the
RNG states of every process (python, numpy, torch, CUDA). It is our own file and read with
``weights_only=False`` (it holds numpy's RNG state): only resume from runs you made.
"""
from pathlib import Path

import torch
import torch.distributed as dist

from probpose_core.errors import InputError
from probpose_core.models.checkpoints import load_weights, save_checkpoint

from . import distributed as D
from .config import to_dict

STATE_VERSION = 1


def state_path(ckpt) -> Path:
    """``out/last.pt`` -> ``out/last.state.pt``."""
    ckpt = Path(ckpt)
    return ckpt.with_name(f"{ckpt.stem}.state.pt")


def save_state(path, model, config, codec, optimizer, scheduler, scaler, position: dict, info: D.DistInfo) -> Path:
    """Write ``path`` (model, our format) and its state file. Every process must call it (the
    RNG states are gathered); only rank 0 writes."""
    states = [None] * info.world_size
    if info.distributed:
        dist.all_gather_object(states, D.rng_state())
    else:
        states[0] = D.rng_state()
    path = Path(path)
    if info.is_main:
        extra = {"epoch": int(position["epoch"]), "iteration": int(position["iteration"]),
                 "heatmap_only": config.model.map_kind == "heatmap", "source": "training.train"}
        tmp = path.with_name(path.name + ".tmp")
        save_checkpoint(tmp, model, config.model, codec=codec, extra=extra)
        state = {"version": STATE_VERSION, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "scaler": scaler.state_dict(), "position": dict(position), "rng": states,
                 "world_size": info.world_size, "config": to_dict(config)}
        tmp_state = state_path(tmp)
        torch.save(state, tmp_state)
        tmp.replace(path)  # the pair is replaced together (rename is atomic per file)
        tmp_state.replace(state_path(path))
    return path


def init_weights(model, path) -> tuple[int, list[str]]:
    """Load the tensors of checkpoint ``path`` whose name and shape match ``model``.

    Returns ``(loaded, skipped)``: the number of tensors loaded and the model keys left at
    their initialisation. A file that is not our checkpoint format raises InputError.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"run.init_weights: {path} not found")
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise InputError(f"run.init_weights: {path} is not a probpose checkpoint (convert official files with "
                         "`probpose convert`)")
    own = model.state_dict()
    source = payload["state_dict"]
    matched = {k: v for k, v in source.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not matched:
        raise InputError(f"run.init_weights: no tensor of {path} matches the model (names and shapes)")
    model.load_state_dict(matched, strict=False)
    return len(matched), sorted(k for k in own if k not in matched)


def load_state(ckpt, model, optimizer, scheduler, scaler, info: D.DistInfo) -> dict:
    """Restore a run from ``ckpt`` (and its state file); returns the position dict."""
    ckpt = Path(ckpt)
    spath = state_path(ckpt)
    if not ckpt.is_file() or not spath.is_file():
        raise InputError(f"cannot resume: {ckpt} or its training state {spath.name} is missing")
    payload = torch.load(ckpt, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise InputError(f"cannot resume: {ckpt} is not a probpose checkpoint")
    load_weights(model, payload["state_dict"], str(ckpt))
    state = torch.load(spath, map_location="cpu", weights_only=False)  # our own file, see module docstring
    if state.get("version") != STATE_VERSION:
        raise InputError(f"cannot resume: {spath} has state version {state.get('version')}, expected {STATE_VERSION}")
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as exc:
        raise InputError(f"cannot resume: the optimiser state of {spath} does not fit this model ({exc})") from None
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    rng = state["rng"]
    if state["world_size"] == info.world_size and rng[info.rank] is not None:
        D.set_rng_state(rng[info.rank])
    else:  # another number of processes: a fresh, still deterministic stream per rank
        D.seed_everything(int(state["position"]["iteration"]) * 1009 + info.rank)
    return dict(state["position"])
