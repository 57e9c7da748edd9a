"""`probpose demo` / `make demo`: the core run end to end on the shipped fixture.

There is no trained network yet, so the maps are SIMULATED network output: for each
instance of the CropCOCO-style fixture a noisy "oracle" puts a smooth logit peak near each
keypoint inside the activation window (position error and spread drawn at random; no peak
for keypoints outside the window) and a presence probability that leans towards the truth.
Everything downstream is the real code: Sparsemax, temperature calibration, the three
decoders, Ex-OKS / COCO evaluation with the presence-threshold search, credible regions and
the overlay. Writes tables (JSON + Markdown), calibration plots and annotated images.
"""
from pathlib import Path

import cv2
import numpy as np

from . import geometry
from .errors import InputError
from .jsonio import dump_json
from .keypoints import NUM_KEYPOINTS

FIXTURE = Path(__file__).resolve().parents[1] / "demo" / "fixture"
DECODERS = ("expected_oks", "udp", "argmax")


def simulate_network(prob_targets: dict, rng: np.random.Generator, size=geometry.HEATMAP_SIZE):
    """Simulated map logits (N, K, H, W) and presence (N, K) from codec targets.

    Inside the window: a quadratic logit peak at the GT (map px) plus an error drawn from the
    peak's own spread (so a calibrated temperature exists), with a few two-peaked maps (a
    confusion with the flipped side); outside: noise only. Presence: sigmoid(+-2.2 + noise).
    """
    gt = prob_targets["keypoints_map"]
    present = prob_targets["presence"] > 0
    n, k = present.shape
    w, h = size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    spread = rng.uniform(1.0, 3.0, size=(n, k))
    centre = gt + rng.normal(size=gt.shape) * spread[..., None] * 0.7
    d2 = (xs - centre[..., 0, None, None]) ** 2 + (ys - centre[..., 1, None, None]) ** 2
    logits = -d2 / (2 * spread[..., None, None] ** 2) * 0.25
    second = rng.uniform(size=(n, k)) < 0.1  # a few confusions: a weaker second peak elsewhere
    other = rng.uniform([0, 0], [w - 1, h - 1], size=(n, k, 2))
    d2b = (xs - other[..., 0, None, None]) ** 2 + (ys - other[..., 1, None, None]) ** 2
    logits = np.where(second[..., None, None], np.maximum(logits, -d2b / 8.0 * 0.25 - 0.3), logits)
    noise = 0.02 * rng.standard_normal((n, k, h, w))
    logits = np.where(present[..., None, None], logits + noise, noise - 1.0)
    presence = 1 / (1 + np.exp(-(np.where(present, 2.2, -2.2) + rng.normal(scale=1.2, size=(n, k)))))
    return logits.astype(np.float32), presence


def _instances(gt: dict):
    anns = [a for a in gt["annotations"] if not a.get("iscrowd", 0)]
    kpts = np.array([a["keypoints"] for a in anns], dtype=np.float64).reshape(-1, NUM_KEYPOINTS, 3)
    boxes = np.array([a["bbox"] for a in anns], dtype=np.float64).reshape(-1, 4)
    area = np.array([a["area"] for a in anns], dtype=np.float64)
    return anns, kpts, boxes, area


def _predictions(anns, keypoints, presence, visibility, score) -> list:
    preds = []
    for i, ann in enumerate(anns):
        trip = np.concatenate([keypoints[i], presence[i][:, None]], axis=1)
        preds.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": trip.reshape(-1).round(3).tolist(),
                      "visibilities": visibility[i].round(4).tolist(), "score": float(score[i])})
    return preds


def _draw_images(gt, images_dir, anns, keypoints, presence, prob_maps, center, scale, threshold, out_dir):
    from .regions import credible_polygons
    from .overlay import draw_pose

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in gt["images"]:
        img = cv2.imread(str(images_dir / entry["file_name"]), cv2.IMREAD_COLOR)
        if img is None:
            continue
        zoom = max(1.0, 480 / max(img.shape[:2]))  # draw on an enlarged copy: thin lines stay legible
        img = cv2.resize(img, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_LINEAR)
        pad = max(img.shape[:2]) // 3  # a margin to show keypoints predicted outside the image
        canvas = cv2.copyMakeBorder(cv2.cvtColor(img, cv2.COLOR_BGR2RGB), pad, pad, pad, pad,
                                    cv2.BORDER_CONSTANT, value=(40, 40, 40))
        cv2.rectangle(canvas, (pad, pad), (pad + img.shape[1] - 1, pad + img.shape[0] - 1), (200, 200, 200), 1)
        for i, ann in enumerate(anns):
            if ann["image_id"] != entry["id"]:
                continue
            regions = [[poly * zoom + pad for poly in credible_polygons(prob_maps[i, k], 0.5, center[i], scale[i])]
                       for k in range(NUM_KEYPOINTS)]
            box = np.asarray(ann["bbox"]) * zoom + [pad, pad, 0, 0]
            draw_pose(canvas, keypoints[i] * zoom + pad, presence[i], threshold, bbox=box, regions=regions,
                      label=f"id {ann['id']}")
        path = out_dir / f"{Path(entry['file_name']).stem}.png"
        cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
        written.append(path)
    return written


def run_demo(out_dir, fixture=None, seed: int = 0) -> dict:
    """Run the demo into ``out_dir`` on ``fixture`` (default: the repo's demo/fixture).

    Returns the summary that is also written as JSON.
    """
    import torch

    from .calibration import (coverage_curve, credible_level, fit_temperature, plot_coverage_curve,
                              plot_reliability, expected_calibration_error, brier_score)
    from .codec import ProbMapCodec
    from .data.coco import load_coco
    from .data.cropcoco import make_cropcoco
    from .evaluation import evaluate, format_table
    from .evaluation.areas import area_table, format_area_table
    from .sparsemax import sparsemax_maps

    out, fixture = Path(out_dir), Path(fixture or FIXTURE)
    if not (fixture / "annotations.json").is_file():
        raise InputError(f"demo fixture not found: {fixture}/annotations.json (pass --fixture DIR)")
    out.mkdir(parents=True, exist_ok=True)
    source = load_coco(fixture / "annotations.json")
    print("== A-E areas of the fixture ==")
    print(format_area_table(area_table(source)))
    print("\n== CropCOCO from the fixture ==")
    make_cropcoco(fixture / "annotations.json", fixture / "images", out / "cropcoco", seed=seed, progress=False)
    gt = load_coco(out / "cropcoco" / "annotations.json")
    anns, kpts, boxes, area = _instances(gt)
    center, scale = geometry.bbox_to_center_scale(boxes)
    codec = ProbMapCodec()
    targets = codec.encode(kpts[..., :2], kpts[..., 2].astype(int), area, center, scale)

    rng = np.random.default_rng(seed)
    logits, presence = simulate_network(targets, rng)
    weights = targets["map_weights"]
    print("\n== Map calibration (simulated logits) ==")
    temperature = fit_temperature(logits, targets["keypoints_map"], weights)
    curves = {}
    for label, t in (("T = 1", 1.0), (f"fitted T = {temperature:.2f}", temperature)):
        maps = sparsemax_maps(torch.from_numpy(logits), temperature=t).numpy()
        curves[label] = coverage_curve(credible_level(maps, targets["keypoints_map"]), weights)
    prob_maps = maps  # the calibrated ones
    plot_coverage_curve(curves, out / "map_calibration.png")
    annotated = targets["keypoint_weights"] > 0
    plot_reliability(presence[annotated], targets["presence"][annotated], out / "presence_reliability.png")
    print(f"temperature {temperature:.3f}; presence ECE {expected_calibration_error(presence[annotated], targets['presence'][annotated]):.3f}, "
          f"Brier {brier_score(presence[annotated], targets['presence'][annotated]):.3f}")

    results, decoded = {}, {}
    visibility = np.clip(presence + rng.normal(scale=0.1, size=presence.shape), 0, 1)
    for method in DECODERS:
        xy, conf = codec.decode(prob_maps, center, scale, area=area, method=method)
        decoded[method] = xy
        preds = _predictions(anns, xy, presence, visibility, conf.mean(axis=1))
        dump_json(preds, out / f"predictions_{method}.json")
        results[method] = evaluate(gt, preds, extended=True, presence_threshold="best")
        print(f"\n== decoder {method} ==")
        print(format_table(results[method]))
    threshold = results["expected_oks"]["presence_threshold"]
    images = _draw_images(gt, out / "cropcoco" / "images", anns, decoded["expected_oks"], presence, prob_maps,
                          center, scale, threshold, out / "annotated")

    keys = ("AP", "Ex-AP", "Ex-AP50", "Ex-AR", "presence_threshold")
    lines = ["| decoder | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    lines += [f"| {m} | " + " | ".join(f"{results[m][k]:.3f}" for k in keys) + " |" for m in DECODERS]
    table = "\n".join(lines)
    (out / "summary.md").write_text(
        "# probpose demo (simulated network output on the CropCOCO-style fixture)\n\n" + table
        + f"\n\nMap temperature fitted: {temperature:.3f}. Plots: map_calibration.png, "
          "presence_reliability.png; annotated images in annotated/.\n")
    summary = {"temperature": temperature, "results": results, "annotated_images": [str(p) for p in images]}
    dump_json(summary, out / "summary.json")
    print("\n" + table)
    print(f"\nwrote {out}/summary.md, summary.json, map_calibration.png, presence_reliability.png, "
          f"{len(images)} annotated images in {out}/annotated/")
    return summary
