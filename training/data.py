"""Training data plumbing: the synthetic set of the tiny config, the dataset, seeded batches.

Batches are drawn by :func:`epoch_batches`, a seeded distributed sampler: one permutation of
all instances per (seed, epoch), the same in every process, cut into global batches of
``batch_size * world_size`` (the incomplete tail is dropped) of which process ``rank`` takes
its slice. Knowing the batches up front lets the trainer resume mid-epoch (skip the first
``b`` batches without loading them) and count samples the dataset replaced (unreadable images).
"""
import logging
from pathlib import Path

import torch

from probpose_core.data import load_instances
from probpose_core.data.dataset import TopDownDataset
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.errors import InputError

from .distributed import DistInfo, worker_init

log = logging.getLogger("training")


def prepare_synthetic(data, seed: int = 0) -> list[Path]:
    """Write the synthetic COCO sets a config asks for (``data.synthetic_images > 0``) when absent.

    The training set goes to the folder of ``train_ann`` (seed ``seed``), the validation set to
    that of ``val_ann`` (seed ``seed + 1``); each must be ``<folder>/annotations.json`` (or
    ``annotations_coco.json``) with images in ``<folder>/images``. Returns the folders written.
    """
    if data.synthetic_images <= 0:
        return []
    written = []
    for ann, images, set_seed in ((data.train_ann, data.train_images, seed), (data.val_ann, data.val_images, seed + 1)):
        ann, images = Path(ann), Path(images)
        if ann.is_file():
            continue
        if ann.name not in ("annotations.json", "annotations_coco.json") or images != ann.parent / "images":
            raise InputError(f"data.synthetic_images: {ann} must be <folder>/annotations.json with images in "
                             "<folder>/images to be generated")
        log.info("writing a synthetic COCO set (%d images, seed %d) into %s (no dataset there yet)",
                 data.synthetic_images, set_seed, ann.parent)
        write_synthetic_coco(ann.parent, num_images=data.synthetic_images, seed=set_seed)
        written.append(ann.parent)
    return written


def build_train_set(config, codec) -> tuple[TopDownDataset, dict]:
    """The augmented training dataset of ``config`` and the load-time skip counts."""
    d = config.data
    for path, key in ((d.train_ann, "data.train_ann"), (d.train_images, "data.train_images")):
        if not Path(path).exists():
            raise InputError(f"{key}: {path} does not exist (see training/README.md for the data layout)")
    instances, skipped = load_instances(d.train_ann, min_keypoints=d.min_keypoints, images_dir=d.train_images)
    if not instances:
        raise InputError(f"data.train_ann: no usable training instances in {d.train_ann} (skipped: {dict(skipped)})")
    augment = d.augment if d.augment.enabled else None
    dataset = TopDownDataset(instances, d.train_images, codec=codec, augment=augment,
                             heatmap_sigma=d.heatmap_sigma, seed=config.run.seed)
    return dataset, skipped


def epoch_batches(num_items: int, batch_size: int, seed: int, epoch: int, info: DistInfo) -> list[list[int]]:
    """This process's batches of one epoch (see the module docstring): list of index lists."""
    global_batch = batch_size * info.world_size
    count = num_items // global_batch
    if count == 0:
        raise InputError(f"{num_items} training instances do not fill one global batch of {global_batch} "
                         f"(data.batch_size {batch_size} x {info.world_size} processes)")
    generator = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    order = torch.randperm(num_items, generator=generator)[:count * global_batch].view(count, info.world_size, batch_size)
    return order[:, info.rank].tolist()


def make_loader(dataset, batches: list[list[int]], config, epoch: int, info: DistInfo) -> torch.utils.data.DataLoader:
    """A DataLoader over the given batches, its worker seeds drawn from a (seed, epoch) generator."""
    generator = torch.Generator().manual_seed(int(config.run.seed) * 1_000_003 + 7919 * int(epoch) + info.rank)
    workers = config.data.workers
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=batches, num_workers=workers, worker_init_fn=worker_init if workers else None,
        generator=generator, pin_memory=info.device.type == "cuda", persistent_workers=False,
        prefetch_factor=2 if workers else None)
