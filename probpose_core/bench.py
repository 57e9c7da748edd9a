"""`probpose bench`: timings of the per-person post-processing and the training losses.

Medians of repeated runs (the machine is shared and noisy: read ratios measured in one run).
Targets (from the foundation issue): expected-OKS decode <= 1 ms per person (17 maps 64x48)
on 2 cores; the loss on a batch of 64 well under the network's time.
"""
import time

import numpy as np

from . import geometry
from .keypoints import NUM_KEYPOINTS

#: Measured ViT-S/12 network time for one person on this kind of machine (FACTS.md, ORT b1).
VIT_S_NETWORK_MS = 93.0


def median_ms(fn, repeats: int, warmup: int = 2) -> float:
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` runs after ``warmup``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def synthetic_logits(n: int, seed: int = 0, size=geometry.HEATMAP_SIZE, noise: float = 0.05):
    """Map logits ``(n, K, H, W)`` with one smooth peak per map, plus GT points (n, K, 2) in map px.

    A stand-in for network output: a negative squared distance to a random sub-pixel point.
    """
    rng = np.random.default_rng(seed)
    w, h = size
    gt = rng.uniform([4, 4], [w - 5, h - 5], size=(n, NUM_KEYPOINTS, 2))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    spread = rng.uniform(1.5, 4.0, size=(n, NUM_KEYPOINTS, 1, 1))
    d2 = (xs - gt[..., 0, None, None]) ** 2 + (ys - gt[..., 1, None, None]) ** 2
    logits = -d2 / (2 * spread ** 2) + noise * rng.standard_normal((n, NUM_KEYPOINTS, h, w))
    return logits.astype(np.float32), gt


def _windows(n: int):
    boxes = np.tile([[100.0, 50.0, 120.0, 300.0]], (n, 1))
    return geometry.bbox_to_center_scale(boxes)


def decode_accuracy(codec, persons: int = 64, seed: int = 2) -> dict:
    """Decode error in map pixels on sparsemax maps rendered from known sub-pixel points.

    Returns ``{method: (median, p95)}``; the maps are noise-free quadratic logit peaks
    (support radius ~1.5-2.5 map px), decoded through the full image-coordinate path.
    """
    import torch

    from .sparsemax import sparsemax_maps

    logits, gt = synthetic_logits(persons, seed, noise=0.0)
    maps = sparsemax_maps(torch.from_numpy(logits)).numpy()
    center, scale = _windows(persons)
    result = {}
    for method in ("expected_oks", "udp", "argmax"):
        xy, _ = codec.decode(maps, center, scale, method=method)
        err = np.linalg.norm(geometry.image_to_heatmap(xy, center[0], scale[0]) - gt, axis=-1)
        result[method] = (float(np.median(err)), float(np.percentile(err, 95)))
    return result


def run_bench(repeats: int = 50, persons: int = 8, batch: int = 64, out=print) -> dict:
    """Time decode, encode, sparsemax, losses and calibration; print a table and return it."""
    import torch

    from .calibration import fit_temperature
    from .regions import covariance_ellipse, keypoint_regions
    from .codec import ProbMapCodec
    from .losses import oks_quality_loss, presence_loss, prob_map_loss, visibility_loss
    from .sparsemax import sparsemax_maps

    torch.set_num_threads(2)
    codec = ProbMapCodec()
    logits, gt = synthetic_logits(persons)
    prob_maps = sparsemax_maps(torch.from_numpy(logits)).numpy()
    center, scale = _windows(persons)
    rows = []  # (name, total ms, per-person ms, target ms per person or None)

    def add(name, ms, count, target=None):
        rows.append((name, ms, ms / count, target))

    for method in ("expected_oks", "udp", "argmax"):
        add(f"decode {method} (batch {persons})",
            median_ms(lambda: codec.decode(prob_maps, center, scale, method=method), repeats), persons,
            1.0 if method == "expected_oks" else None)
    gt_img = geometry.heatmap_to_image(gt, center[0], scale[0])  # all windows are the same
    area = np.full(persons, 0.53 * 120 * 300)
    add(f"encode targets (batch {persons})",
        median_ms(lambda: codec.encode(gt_img, np.full(gt.shape[:2], 2), area, center, scale), repeats), persons)
    z = torch.from_numpy(logits)
    for method in ("exact", "topk", "bisect"):
        add(f"sparsemax {method} (batch {persons})",
            median_ms(lambda: sparsemax_maps(z, method=method), repeats), persons)
    present = np.ones(prob_maps.shape[:2], dtype=bool)  # what the pipeline calls for present keypoints
    add(f"credible polygons q=0.9, 17 kpts (batch {persons})",
        median_ms(lambda: keypoint_regions(prob_maps, present, center, scale, (0.9,)), repeats), persons)
    add(f"covariance ellipses (batch {persons})",
        median_ms(lambda: covariance_ellipse(prob_maps, center, scale), repeats), persons)

    big_logits, big_gt = synthetic_logits(batch, seed=1)
    big_center, big_scale = _windows(batch)
    targets = codec.encode(geometry.heatmap_to_image(big_gt, big_center[0], big_scale[0]),
                           np.full(big_gt.shape[:2], 2), np.full(batch, 0.53 * 120 * 300), big_center, big_scale)
    oks_maps = torch.from_numpy(targets["oks_maps"])
    weights = torch.from_numpy(targets["map_weights"])
    z_big = torch.from_numpy(big_logits)
    aux = torch.rand(batch, NUM_KEYPOINTS)

    def loss_step():
        zz = z_big.clone().requires_grad_(True)
        heads = aux.clone().requires_grad_(True)
        p = sparsemax_maps(zz, temperature=0.5)
        loss = (prob_map_loss(p, oks_maps, weights)
                + presence_loss(heads.sigmoid(), targets["presence"], weights)
                + visibility_loss(heads.sigmoid(), targets["visibility"], weights)
                + oks_quality_loss(heads.sigmoid(), aux, weights))
        loss.backward()

    add(f"sparsemax + all losses fwd+bwd (batch {batch})", median_ms(loss_step, max(5, repeats // 5)), batch)
    add(f"fit_temperature ({batch} persons x 17 maps, 1 run)",
        median_ms(lambda: fit_temperature(big_logits, big_gt), 1, warmup=0), batch)

    out(f"probpose bench: medians of {repeats} runs, torch threads {torch.get_num_threads()}")
    out(f"{'item':<52} {'total ms':>10} {'ms/person':>10} {'target':>8}")
    for name, total, per, target in rows:
        mark = "" if target is None else (f"<= {target:g}" + (" ok" if per <= target else " MISS"))
        out(f"{name:<52} {total:>10.3f} {per:>10.4f} {mark:>8}")
    decode = rows[0][2]
    loss_per = [r for r in rows if r[0].startswith("sparsemax + all losses")][0][2]
    accuracy = decode_accuracy(codec)
    out("decode error on rendered sparsemax maps, map px (median / p95): "
        + ", ".join(f"{m} {med:.4f} / {p95:.4f}" for m, (med, p95) in accuracy.items()))
    out(f"ratio decode / ViT-S network ({VIT_S_NETWORK_MS:g} ms, FACTS.md): {decode / VIT_S_NETWORK_MS:.4f}")
    out(f"ratio loss fwd+bwd / ViT-S network per sample: {loss_per / VIT_S_NETWORK_MS:.4f}")
    return {name: {"total_ms": total, "per_person_ms": per} for name, total, per, _ in rows}
