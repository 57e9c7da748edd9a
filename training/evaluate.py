"""Evaluate a pose model on a COCO-format keypoints set: mAP, Ex-mAP, A-E areas, calibration.

``python -m training.evaluate --checkpoint M.pt|M.onnx --ann GT.json --images DIR
[--detections DETS.json] [--no-flip-test] [--runtime torch|ort] --out DIR``

Steps (each the one implementation in the house):

1. predictions: :func:`probpose_core.predict.predict_images` with the GT boxes of ``--ann``
   (the paper's protocol, one prediction per GT instance) or with the person boxes and
   scores of ``--detections`` (COCO results format); written to ``predictions.json``.
2. metrics: :mod:`probpose_core.evaluation` on the written predictions: COCO mAP (equal to
   pycocotools), Ex-mAP at the best presence threshold (``search_presence_threshold``, with the
   whole Ex-AP-vs-threshold curve) and at the model's own threshold (its ``spec.ModelSpec``:
   checkpoint / ONNX sidecar, ``DEFAULT_PRESENCE_THRESHOLD`` for an in-memory model), and the
   A-E area table of the GT.
3. calibration, on the GT instances (whatever boxes the predictions used): the model runs
   over the GT boxes' activation windows (:func:`gt_outputs`, the same crops and flip test as
   the pipeline) and is compared with the codec's targets. Presence reliability: predicted
   presence vs "the annotated keypoint lies inside the activation window" (the presence
   target); map coverage: credible level of the GT pixel in each probability map, over the
   keypoints with a map target (``map_weights``). Heatmap models are read as the pipeline
   reads them (``pipeline.read_heatmaps``): presence = the map maximum, coverage of the
   heatmap made a distribution (what their credible regions come from). A set without
   annotated keypoints gets ``calibration: null``.

``--runtime ort`` runs the ONNX export (its default Sparsemax is exact for every map; an explicit
small-k top-k export is exact only while a map's support is below k).

``out_dir`` receives ``metrics.json``, ``predictions.json`` and the PNG plots
(``presence_reliability.png``, ``map_coverage.png``, ``presence_threshold.png``).
Works on CropCOCO (v = 3 keypoints) as on COCO. Bad input: one line on stderr, exit code 2.
"""
import argparse
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from probpose_core.calibration import (GT_BATCH, Q_GRID, brier_score, calibration_error, coverage_curve,
                                       expected_calibration_error, gt_outputs)
from probpose_core.errors import InputError
from probpose_core.evaluation import format_table, load_gt, load_predictions
from probpose_core.evaluation.areas import area_table, format_area_table
from probpose_core.evaluation.cocoeval import METRICS, coco_stats, extended_terms, standard_similarity
from probpose_core.evaluation.exoks import ex_oks_from_terms
from probpose_core.evaluation.instances import prepare
from probpose_core.evaluation.threshold import search_presence_threshold
from probpose_core.geometry import PADDING
from probpose_core.jsonio import dump_json
from probpose_core.predict import predict_images
from probpose_core.runtime import as_runner
from probpose_core.runtime.torch_runner import TorchRunner
from probpose_core.spec import model_spec


# ------------------------------------------------------------------------------ the model

def logits_runner(model):
    """A TorchRunner over the in-memory ``model`` that also returns ``map_logits`` (N, K, H, W)."""
    return TorchRunner(model, max_batch=GT_BATCH, return_logits=True)


def make_model_runner(model, runtime: str = "torch"):
    """``(runner, spec)`` for a checkpoint / ONNX path, a Runner or an in-memory torch PoseModel
    (:func:`runtime.as_runner`); spec: its :class:`ModelSpec` (checkpoint meta or ONNX sidecar;
    the defaults, sized to the model, for a bare module)."""
    runner = as_runner(model, runtime)
    return runner, model_spec(runner)


def calibration_summary(outputs: dict, grid=Q_GRID) -> dict:
    """Presence reliability and map coverage numbers from :func:`gt_outputs`' arrays."""
    annotated = outputs["keypoint_weights"] > 0
    presence, target = outputs["presence"][annotated], outputs["presence_target"][annotated]
    weights = outputs["map_weights"]
    coverage = coverage_curve(outputs["level_lo"], weights, grid, outputs["level_hi"])
    on_map = int(np.sum((weights > 0) & np.isfinite(outputs["level_lo"])))
    return {
        "presence": {"keypoints": int(annotated.sum()), "ece": _number(expected_calibration_error(presence, target)),
                     "brier": _number(brier_score(presence, target)),
                     "fraction_present": _number(float(target.mean()) if target.size else float("nan"))},
        "maps": {"keypoints": on_map,
                 "calibration_error": _number(calibration_error(outputs["level_lo"], weights, grid,
                                                                outputs["level_hi"]) if on_map else float("nan")),
                 "grid": [float(q) for q in grid], "coverage": [_number(c) for c in coverage]},
    }


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    value = float(value)
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------ metrics

def keypoint_metrics(gt: dict, preds: list, presence_threshold: float, padding: float = PADDING) -> dict:
    """COCO mAP, Ex-mAP at the best presence threshold and at ``presence_threshold``.

    Flat: the ten COCO numbers (AP ...), the ten Ex- numbers at the best threshold
    (``presence_threshold`` = that threshold), as :func:`evaluation.evaluate` with "best" gives
    them; plus ``checkpoint_presence_threshold``, ``at_checkpoint_threshold`` (the ten Ex-
    numbers there) and ``presence_threshold_curve`` ([threshold, Ex-AP] per candidate).
    """
    standard = prepare(gt, preds, extended=False)
    results = coco_stats(standard, standard_similarity(standard))
    ex = prepare(gt, preds, extended=True, padding=padding)
    terms = extended_terms(ex, padding)
    best, stats, curve = search_presence_threshold(ex, terms)
    at_model = coco_stats(ex, ex_oks_from_terms(terms, float(presence_threshold)))
    results.update({"Ex-" + name: stats[name] for name in METRICS})
    results["presence_threshold"] = best
    results["checkpoint_presence_threshold"] = float(presence_threshold)
    results["at_checkpoint_threshold"] = {"Ex-" + name: at_model[name] for name in METRICS}
    results["presence_threshold_curve"] = [[float(t), float(ap)] for t, ap in curve]
    return results


def format_report(metrics: dict) -> str:
    """The terminal report: metric table, the model's threshold, calibration, A-E areas."""
    at = metrics["at_checkpoint_threshold"]
    lines = [format_table(metrics),
             f"at the model's presence threshold {metrics['checkpoint_presence_threshold']:.4g}: "
             f"Ex-AP {at['Ex-AP']:.4f}  Ex-AP50 {at['Ex-AP50']:.4f}  Ex-AR {at['Ex-AR']:.4f}"]
    cal = metrics.get("calibration")
    if cal:
        p, m = cal["presence"], cal["maps"]
        fmt = (lambda v: "n/a" if v is None else f"{v:.4f}")
        lines.append(f"presence calibration ({p['keypoints']} annotated GT keypoints): ECE {fmt(p['ece'])}, "
                     f"Brier {fmt(p['brier'])}")
        lines.append(f"map calibration ({m['keypoints']} GT keypoints on the maps): "
                     f"error {fmt(m['calibration_error'])}")
    lines.append(format_area_table(metrics["areas"]))
    return "\n".join(lines)


def predict_and_score(runner, spec, gt: dict, ann, images, detections=None, flip_test: bool = True,
                      out_dir=None, progress: bool = True) -> tuple[dict, list]:
    """``(keypoint_metrics, predictions)`` of the pipeline with ``runner`` / ``spec`` on the
    images of ``ann`` (GT boxes, or ``detections``); predictions.json goes to ``out_dir`` when given."""
    with tempfile.TemporaryDirectory() as tmp:
        pred_path = Path(out_dir or tmp) / "predictions.json"
        predict_images(images, pred_path, runner, ann=ann, detections=detections, progress=progress,
                       pipeline_kw={"flip_test": flip_test, "spec": spec})
        preds = load_predictions(pred_path, gt)
    return keypoint_metrics(gt, preds, spec.presence_threshold, padding=spec.codec.padding), preds


def evaluate_model(model, ann, images, detections=None, flip_test: bool = True, out_dir=None,
                   runtime: str = "torch", progress: bool = True) -> dict:
    """Predict, score and check calibration of ``model`` on the COCO keypoints set ``ann``.

    model: a checkpoint (.pt), an .onnx, or an in-memory torch PoseModel (left in the mode it
    came in); ann: GT keypoints file; images: its image folder; detections: optional COCO
    results-format person boxes (else the GT boxes); runtime: "torch" | "ort" for paths.
    Returns the metrics dict (see :func:`keypoint_metrics`, plus ``calibration``, ``areas``,
    ``counts``, ``settings``) and, with ``out_dir``, writes metrics.json, predictions.json
    and the plots there.
    """
    from probpose_core.data.instances import load_instances

    images = Path(images)
    if not images.is_dir():
        raise InputError(f"images folder not found: {images}")
    gt = load_gt(ann)
    was_training = getattr(model, "training", None)
    runner, spec = make_model_runner(model, runtime)
    codec = spec.codec
    try:
        metrics, preds = predict_and_score(runner, spec, gt, ann, images, detections, flip_test, out_dir, progress)
        instances, skipped = load_instances(ann, images_dir=images)
        outputs = gt_outputs(runner, instances, images, codec, flip_test=flip_test, progress=progress) \
            if instances else None
    finally:
        if was_training:
            model.train()
    metrics["calibration"] = None if outputs is None else calibration_summary(outputs)
    metrics["areas"] = area_table(gt, padding=codec.padding)
    metrics["counts"] = {"images": len(gt["images"]), "predictions": len(preds), "gt_instances": len(instances),
                         "gt_skipped": dict(skipped)}
    metrics["settings"] = {"model": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                           "ann": str(ann), "images": str(images), "detections": None if detections is None
                           else str(detections), "flip_test": bool(flip_test), "runtime": runtime}
    if out_dir is not None:
        from .plots import write_plots

        out_dir = Path(out_dir)
        dump_json(metrics, out_dir / "metrics.json")
        write_plots(metrics, outputs, out_dir)
    return metrics


# ------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="our checkpoint (.pt) or an exported .onnx")
    parser.add_argument("--ann", required=True, help="COCO keypoints ground truth (v=3: outside the image)")
    parser.add_argument("--images", required=True, help="folder of the annotation's images")
    parser.add_argument("--detections", help="COCO results-format person boxes to use instead of the GT boxes")
    parser.add_argument("--no-flip-test", dest="flip_test", action="store_false", help="no horizontal flip test")
    parser.add_argument("--runtime", default="torch", choices=("torch", "ort"),
                        help="inference runtime (default torch)")
    parser.add_argument("--out", required=True, help="output folder (metrics.json, predictions.json, plots)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def run_command(prog: str, action) -> int:
    """Run ``action()``; InputError becomes one line ``PROG: error: ...`` on stderr and exit code 2."""
    try:
        action()
    except InputError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def action():
        metrics = evaluate_model(args.checkpoint, args.ann, args.images, detections=args.detections,
                                 flip_test=args.flip_test, out_dir=args.out, runtime=args.runtime,
                                 progress=not args.quiet)
        print(format_report(metrics))
        print(f"wrote {Path(args.out) / 'metrics.json'}, predictions.json and plots to {args.out}")

    return run_command("evaluate", action)


if __name__ == "__main__":
    sys.exit(main())
