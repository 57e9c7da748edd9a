"""torchrun / DDP plumbing: who am I, which device, wrap the model, seeds for workers.

``torchrun --nproc_per_node=N -m training.train ...`` sets ``RANK``, ``WORLD_SIZE`` and
``LOCAL_RANK``; then :func:`init_distributed` starts the process group (nccl on CUDA, gloo on
CPU). Without them everything runs in one process (``world_size`` 1, no process group).
"""
import os
import random
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def pick_device(name: str = "auto", local_rank: int = 0) -> torch.device:
    """"auto" -> this process's CUDA device when CUDA is available, else CPU."""
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("run.device is 'cuda' but CUDA is not available")
    return torch.device("cuda", local_rank)


def init_distributed(device: str = "auto") -> DistInfo:
    """Start the process group when torchrun's environment variables are present."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        return DistInfo(device=pick_device(device))
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    dev = pick_device(device, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, dev)


def wrap_model(model: torch.nn.Module, info: DistInfo, find_unused: bool = True) -> torch.nn.Module:
    """DistributedDataParallel around ``model`` (already on ``info.device``) when distributed.

    ``find_unused`` (default on): some parameters get no gradient (the head's ``error_layers``,
    kept for checkpoint compatibility, are never used; a heatmap model's presence / visibility /
    OKS branches are not trained); without it DDP leaves the gradients that share a bucket
    with them un-averaged (tested).
    """
    if not info.distributed:
        return model
    ids = [info.device.index] if info.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused)


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def barrier(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Mean of a tensor over processes (for logging); a copy, unchanged when not distributed."""
    value = value.detach().clone()
    if info.distributed:
        dist.all_reduce(value)
        value /= info.world_size
    return value


def broadcast_object(value, info: DistInfo, src: int = 0):
    """``value`` of rank ``src`` on every process (picklable objects)."""
    if not info.distributed:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def worker_init(worker_id: int) -> None:
    """DataLoader worker: seed python / numpy from torch's per-worker seed (itself derived from
    the loader's seeded generator), so workers differ from each other but repeat run to run."""
    seed = torch.initial_seed() % 2 ** 32
    random.seed(seed)
    np.random.seed(seed)


def rng_state() -> dict:
    """Every global RNG state (python, numpy, torch CPU and CUDA) for a checkpoint."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
