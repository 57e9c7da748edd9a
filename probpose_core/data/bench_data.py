"""`probpose bench --data`: top-down data-loading throughput (samples per second).

A synthetic COCO set (640x480 PNG images, drawn stick figures) is written to a temporary
folder; a :class:`TopDownDataset` with the full training augmentation (crop augmentation
included) is read through a torch DataLoader for each worker count. Each epoch is timed
from its first batch to its last (worker start-up excluded: it is paid once per epoch and
reported apart); the table shows medians over ``repeats`` epochs. The per-worker rate
divides by the processes decoding (``max(workers, 1)``). Read the numbers relative to the
machine's free cores: on a shared 2-core machine more than 2 workers cannot help.
"""
import tempfile
import time
from pathlib import Path

import numpy as np

from .synthetic import write_synthetic_coco
from .transforms import AugmentConfig

BENCH_IMAGE_SIZE = (640, 480)


def _epoch_times(dataset, workers: int, batch_size: int, seed: int) -> tuple[float, float, int]:
    """(start-up s, steady s, samples after the first batch) of one shuffled epoch."""
    import torch

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                                         generator=torch.Generator().manual_seed(seed), drop_last=False)
    start = time.perf_counter()
    first = None
    samples = 0
    for i, batch in enumerate(loader):
        if i == 0:
            first = time.perf_counter()
        else:
            samples += len(batch["index"])
    end = time.perf_counter()
    return first - start, end - first, samples


def run_data_bench(num_workers=(0, 1, 2), batch_size: int = 16, num_images: int = 32, repeats: int = 3,
                   seed: int = 0, augment: AugmentConfig | None = None, out=print) -> dict:
    """Time the data loader for each worker count; print a table, return ``{workers: row}``.

    Each row holds ``samples_per_s``, ``per_worker`` (medians over ``repeats`` epochs) and
    ``startup_s`` (median time to the first batch).
    """
    from .dataset import TopDownDataset
    from .instances import load_instances

    augment = AugmentConfig() if augment is None else augment
    results = {}
    with tempfile.TemporaryDirectory(prefix="probpose_bench_data_") as tmp:
        root = Path(tmp)
        write_synthetic_coco(root, num_images=num_images, seed=seed, size=BENCH_IMAGE_SIZE)
        instances, _ = load_instances(root / "annotations.json", images_dir=root / "images")
        dataset = TopDownDataset(instances, root / "images", augment=augment, seed=seed)
        out(f"data loading: {len(instances)} people in {num_images} synthetic {BENCH_IMAGE_SIZE[0]}x"
            f"{BENCH_IMAGE_SIZE[1]} PNGs, batch {batch_size}, augmentation {'on' if augment.enabled else 'off'}, "
            f"median of {repeats} epochs")
        out(f"{'workers':>8} {'samples/s':>10} {'per worker':>11} {'start-up s':>11}")
        for workers in num_workers:
            rates, startups = [], []
            for r in range(max(1, repeats)):
                dataset.set_epoch(r)
                startup, steady, samples = _epoch_times(dataset, int(workers), batch_size, seed + r)
                rates.append(samples / steady if steady > 0 and samples else float("nan"))
                startups.append(startup)
            rate = float(np.median(rates))
            row = {"samples_per_s": rate, "per_worker": rate / max(int(workers), 1),
                   "startup_s": float(np.median(startups))}
            results[int(workers)] = row
            out(f"{workers:>8} {row['samples_per_s']:>10.1f} {row['per_worker']:>11.1f} {row['startup_s']:>11.2f}")
    return results
