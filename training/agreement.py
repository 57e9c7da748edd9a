"""How right the agreement rule of ``training.distill`` is, measured against human labels.

    python -m training.distill --out out/distill_measure --measure-agreement GT.json --images DIR \\
        [--taus 0,0.3,...] [--min-scores 0,0.2,...] [--point first|mean]

The teachers run on the GT boxes of the people with keypoints (cached in ``OUT/cache``, nothing
else is written); for each (min score, tau) the rule (person rule included) is applied and compared
with the labels: the share of labelled keypoints kept, and among the kept labelled ones the share
with OKS > 0.5 against the label (COCO sigma, the GT area) and the mean OKS, for the rule's point
and, as columns, for the teachers' mean and each teacher alone.
"""
import sys
from pathlib import Path

import numpy as np

from probpose_core.codec import AREA_FACTOR
from probpose_core.oks import keypoint_oks
from probpose_core.keypoints import NUM_KEYPOINTS, SIGMAS

from .distill import Rule, Source, agree, process_images


def measure_agreement(gt_path, images_dir, out, teachers, taus, min_scores, min_keypoints: int = 6,
                      point: str = Rule.point, progress: bool = True) -> list[dict]:
    """One row (dict) per (min_score, tau), see the module docstring."""
    source = Source("labelled", Path(images_dir), Path(gt_path))
    cache = process_images(source, Path(out), teachers, None, 0.0, progress, measure=True)
    names = [t.name for t in teachers]
    people = [(entry, p) for entry in cache.frames.values() for p in entry["people"]]
    preds = np.array([[p["teachers"][t] for t in names] for _, p in people])  # (N, T, 17, 3)
    gt = np.array([p["labels"] for _, p in people]).reshape(-1, NUM_KEYPOINTS, 3)
    area = np.array([p["area"] or AREA_FACTOR * p["bbox"][2] * p["bbox"][3] for _, p in people])[:, None]
    labelled = gt[:, :, 2] > 0

    def oks_to_gt(xy):
        return keypoint_oks(((xy - gt[:, :, :2]) ** 2).sum(-1), area, SIGMAS)

    candidates = [("mean", preds[:, :, :, :2].mean(1))] + [(t, preds[:, j, :, :2]) for j, t in enumerate(names)]
    rows = []
    for min_score in min_scores:
        for tau in taus:
            rule = Rule(tau, min_score, min_keypoints, point)
            xy, keep = np.zeros((len(people), NUM_KEYPOINTS, 2)), np.zeros((len(people), NUM_KEYPOINTS), bool)
            for i, (entry, p) in enumerate(people):
                xy[i], keep[i], _ = agree(preds[i], p["bbox"], entry["width"], entry["height"], rule)
                if keep[i].sum() < min_keypoints:
                    keep[i] = False
            sel = keep & labelled
            row = {"min_score": min_score, "tau": tau, "labelled": int(labelled.sum()), "kept": int(sel.sum()),
                   "kept_share": float(sel.sum() / max(labelled.sum(), 1)),
                   "kept_unlabelled": int((keep & ~labelled).sum()), "people_kept": int(keep.any(1).sum()),
                   "people": len(people)}
            for label, points in [("rule", xy)] + candidates:
                o = oks_to_gt(points)[sel]
                row[f"right_{label}"] = float((o > 0.5).mean()) if o.size else float("nan")
                row[f"oks_{label}"] = float(o.mean()) if o.size else float("nan")
            rows.append(row)
    return rows


def print_agreement(rows, names, file=None) -> None:
    """The rows as a Markdown table."""
    file = file or sys.stdout
    print(f"{rows[0]['people']} people, {rows[0]['labelled']} labelled keypoints (GT boxes)", file=file)
    cols = ["mean"] + list(names)
    print("| min score | tau | kept labelled (share) | right (OKS > 0.5) | mean OKS | people kept | kept unlabelled | "
          + " | ".join(f"mean OKS: {c}" for c in cols) + " |", file=file)
    print("|" + "---|" * (7 + len(cols)), file=file)
    for r in rows:
        print(f"| {r['min_score']:g} | {r['tau']:g} | {r['kept']} ({100 * r['kept_share']:.1f} %) | "
              f"{100 * r['right_rule']:.1f} % | {r['oks_rule']:.3f} | {r['people_kept']} | {r['kept_unlabelled']} | "
              + " | ".join(f"{r['oks_' + c]:.3f}" for c in cols) + " |", file=file)
