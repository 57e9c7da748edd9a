"""Calibrate a checkpoint: the probability-map temperature and the presence threshold.

``python -m training.calibrate --checkpoint M.pt --ann VAL.json --images DIR --out CALIBRATED.pt
[--plots DIR] [--max-instances N] [--no-flip-test] [--coverage-data ANN IMAGES]... [--coverage-levels
0.5,0.9,0.95,0.975] [--coverage-by-bucket] [--coverage-only]``

The split passed MUST be a validation split (e.g. COCO val, or a part of train held back
from training), never the held-out data the model is finally evaluated on: both numbers are
fitted to it, so evaluating on the same data afterwards reports fitted, optimistic numbers.

1. Temperature: the raw map logits (``map_logits``, before any temperature, so a temperature
   stored in the input checkpoint is neither used nor applied twice) of up to
   ``max_instances`` GT instances (a seeded random subset; ``evaluate.gt_outputs``, no flip
   test: a temperature scales one pass's logits) go to
   :func:`probpose_core.calibration.fit_temperature` with the codec's ``map_weights``
   (annotated keypoints inside the activation window). It returns the total temperature
   ``T`` of ``sparsemax(logits / T)``; the checkpoint stores ``T / config.temperature``,
   which :func:`load_checkpoint` multiplies back into the head.
2. Decode sharpness: the codec's ``decode_sharpness`` (``codec.sharpen_maps``: the decode
   reads ``sparsemax(c * map)``, the map at a c-times lower temperature, while the credible
   regions keep the calibrated map) is picked from :data:`SHARPNESS_GRID` by Ex-AP (at its best
   presence threshold) on the whole split, flip test as deployed; ties go to the smaller c.
3. Presence threshold: the model with the fitted temperature and sharpness is evaluated on the
   whole split (``evaluate.evaluate_model``, flip test as deployed) and the threshold with the
   best Ex-AP (``search_presence_threshold``) is stored.
4. Coverage (split conformal, :mod:`probpose_core.conformal`): the model as calibrated so far
   runs over the GT boxes of the ``coverage_data`` sets (default: the split itself;
   tools/ship_student.sh passes the even half AND its CropCOCO twin), and the labelled
   in-window keypoints it declares present give the :class:`CoverageTable` (region and ellipse
   constants per level, keypoint group, box position (inside / at the image border) and, with
   ``coverage_by_bucket``, box-size bucket),
   stored in the checkpoint's ``extra["coverage"]`` (the export copies it into the sidecar).
   ``--coverage-only`` runs just this step on an already calibrated checkpoint.

Prints the map calibration error before (the input checkpoint's temperature) and after, and
writes the evaluation plots plus ``map_coverage_calibration.png`` (coverage before / after)
to ``--plots``. Heatmap models (``map_kind="heatmap"``) have no probability maps: only their
presence threshold is fitted. Bad input: one line on stderr, exit code 2.
"""
import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from probpose_core.calibration import (Q_GRID, calibration_error, coverage_curve, credible_interval,
                                       fit_temperature, plot_coverage_curve, temperature_maps)
from probpose_core.conformal import DEFAULT_LEVELS
from probpose_core.errors import InputError

from probpose_core.spec import ModelSpec, codec_settings, model_spec

from .evaluate import evaluate_model, gt_outputs, logits_runner, predict_and_score, run_command

#: coverage cells per box-size bucket too (conformal.CELL_BUCKETS: medium-or-smaller / large boxes).
#: Off by default (every cell needs calibration keypoints); tools/ship_student.sh turns it on: with
#: group x position cells alone the shipped student's medium boxes got 0.42 / 0.83 at 0.5 / 0.9 on
#: the odd half, 0.51 / 0.91 with size cells (README "Coverage of the published regions")
COVERAGE_BY_BUCKET = False
#: coverage cells per box position too (inside / at the image border: possibly cut-off people)
COVERAGE_BY_BORDER = True
#: decode sharpness factors tried (1 = decode the calibrated map itself)
SHARPNESS_GRID = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)
DEFAULT_MAX_INSTANCES = 1000  # logits of 1000 instances: ~210 MB float32
_CHUNK = 256  # instances per chunk when turning logits into maps


def coverage_at(logits, gt_heatmap_xy, weights, temperature: float, grid=Q_GRID) -> tuple[np.ndarray, float]:
    """Coverage curve (Q,) and calibration error of ``sparsemax(logits / temperature)``.

    logits: (N, K, H, W) raw map logits; gt_heatmap_xy: (N, K, 2); weights: (N, K).
    """
    los, his = [], []
    for s in range(0, len(logits), _CHUNK):
        lo, hi = credible_interval(temperature_maps(logits[s:s + _CHUNK], temperature), gt_heatmap_xy[s:s + _CHUNK])
        los.append(lo)
        his.append(hi)
    lo, hi = np.concatenate(los), np.concatenate(his)
    return coverage_curve(lo, weights, grid, hi), calibration_error(lo, weights, grid, hi)


def fit_map_temperature(model, instances, images, codec, progress: bool = True) -> dict:
    """Fit the total map temperature on GT ``instances``; returns the fit and before/after numbers.

    ``before`` uses the model's current head temperature (the checkpoint as delivered).
    """
    outputs = gt_outputs(logits_runner(model), instances, images, codec, flip_test=False, logits=True,
                         progress=progress)
    logits, gt_xy, weights = outputs["map_logits"], outputs["keypoints_map"], outputs["map_weights"]
    before_t = float(model.head.temperature)
    fitted_t = fit_temperature(logits, gt_xy, weights)
    before_curve, before_err = coverage_at(logits, gt_xy, weights, before_t)
    after_curve, after_err = coverage_at(logits, gt_xy, weights, fitted_t)
    return {"instances": len(instances), "keypoints": int(np.sum(weights > 0)),
            "head_temperature_before": before_t, "head_temperature_after": fitted_t,
            "error_before": before_err, "error_after": after_err,
            "coverage_before": before_curve, "coverage_after": after_curve}


def fit_decode_sharpness(model, meta: dict, ann, images, flip_test: bool, grid=SHARPNESS_GRID,
                         progress: bool = True) -> tuple[float, dict]:
    """``(best factor, {factor: Ex-AP})``: the ``decode_sharpness`` of ``grid`` with the best
    Ex-AP (best presence threshold) on ``ann`` / ``images``; ties go to the smaller factor."""
    from probpose_core.evaluation import load_gt
    from probpose_core.runtime.torch_runner import TorchRunner

    gt, spec, scores = load_gt(ann), ModelSpec.from_meta(meta), {}
    for factor in sorted(float(c) for c in grid):
        runner = TorchRunner(model, meta=dict(meta, codec=codec_settings(replace(spec.codec, decode_sharpness=factor))))
        metrics, _ = predict_and_score(runner, model_spec(runner), gt, ann, images, flip_test=flip_test,
                                       progress=progress)
        scores[factor] = float(metrics["Ex-AP"])
    best = max(scores, key=lambda c: (scores[c], -c))
    return best, scores


def fit_coverage(model, meta: dict, coverage_data, levels=DEFAULT_LEVELS, by_bucket: bool = COVERAGE_BY_BUCKET,
                 flip_test: bool = False, progress: bool = True, by_border: bool = COVERAGE_BY_BORDER):
    """``(CoverageTable, report on the calibration data)`` of ``model`` with ``meta`` (the spec as
    it will be stored) on the ``(ann, images)`` pairs of ``coverage_data``."""
    from probpose_core.evaluation.coverage import KeypointSamples, collect_keypoints, coverage_report, fit_table
    from probpose_core.runtime.torch_runner import TorchRunner

    runner = TorchRunner(model, meta=meta)
    spec = model_spec(runner)
    pairs = [(str(a), str(i)) for a, i in coverage_data]
    samples = KeypointSamples.concat(collect_keypoints(runner, spec, a, i, flip_test=flip_test, progress=progress)
                                     for a, i in pairs)
    what = " + ".join(f"{a} ({i})" for a, i in pairs)
    table = fit_table(samples, levels, by_bucket, by_border, data=f"GT boxes of {what}, flip test {'on' if flip_test else 'off'}, "
                                                       f"presence threshold {spec.presence_threshold:.4g}")
    return table, coverage_report(samples, table)


def calibrate_coverage_only(checkpoint, coverage_data, out, levels=DEFAULT_LEVELS, by_bucket: bool = COVERAGE_BY_BUCKET,
                            flip_test: bool = False, progress: bool = True, by_border: bool = COVERAGE_BY_BORDER) -> dict:
    """Step 4 alone on an already calibrated ``checkpoint``: everything else is kept as it is."""
    from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint

    model, meta = load_checkpoint(checkpoint)
    spec = ModelSpec.from_meta(meta)
    table, report = fit_coverage(model, meta, coverage_data, levels, by_bucket, flip_test, progress, by_border)
    extra = dict(meta["extra"], coverage=table.to_dict())
    save_checkpoint(out, model, meta["config"], codec=spec.codec, temperature=float(meta["temperature"]),
                    presence_threshold=spec.presence_threshold, extra=extra)
    return {"coverage": table, "coverage_report": report}


def calibrate_checkpoint(checkpoint, ann, images, out, plots=None, flip_test: bool = True,
                         max_instances: int = DEFAULT_MAX_INSTANCES, seed: int = 0, progress: bool = True,
                         coverage_data=None, coverage_levels=DEFAULT_LEVELS,
                         coverage_by_bucket: bool = COVERAGE_BY_BUCKET, coverage_required: bool = False,
                         coverage_by_border: bool = COVERAGE_BY_BORDER) -> dict:
    """Fit temperature, sharpness, presence threshold and coverage table of ``checkpoint`` on the
    VALIDATION split ``ann`` / ``images`` (coverage: on ``coverage_data``, default that split) and
    write the calibrated checkpoint to ``out``. Returns a summary dict (``temperature`` as stored,
    ``presence_threshold``, ``map`` fit numbers or None, ``metrics`` of the calibrated model,
    ``coverage`` the table or None with ``coverage_problem`` saying why: then the checkpoint
    carries no table (uncalibrated coverage) unless ``coverage_required`` made that an InputError)."""
    from probpose_core.data.instances import load_instances
    from probpose_core.models.checkpoints import load_checkpoint, save_checkpoint
    from probpose_core.runtime.torch_runner import TorchRunner

    if int(max_instances) < 1:
        raise InputError(f"max_instances must be at least 1, got {max_instances}")
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"images folder not found: {images}")
    model, meta = load_checkpoint(checkpoint)
    config, spec = meta["config"], ModelSpec.from_meta(meta)
    codec = spec.codec
    temperature, fit = meta["temperature"], None
    if spec.map_kind != "heatmap":
        instances, _ = load_instances(ann, images_dir=images)
        if not instances:
            raise InputError(f"{ann}: no instance with annotated keypoints and an image file to calibrate on")
        if len(instances) > max_instances:
            pick = np.sort(np.random.default_rng(seed).choice(len(instances), int(max_instances), replace=False))
            instances = [instances[i] for i in pick]
        fit = fit_map_temperature(model, instances, images, codec, progress=progress)
        model.head.temperature = fit["head_temperature_after"]
        temperature = fit["head_temperature_after"] / config.temperature
        fit["decode_sharpness"], fit["sharpness_ex_ap"] = fit_decode_sharpness(model, meta, ann, images, flip_test,
                                                                               progress=progress)
        codec = replace(codec, decode_sharpness=fit["decode_sharpness"])
        meta = dict(meta, codec=codec_settings(codec))
    runner = TorchRunner(model, meta=meta)  # the same ModelSpec (codec, heatmap_only) for evaluation
    metrics = evaluate_model(runner, ann, images, flip_test=flip_test, out_dir=plots, progress=progress)
    threshold = float(metrics["presence_threshold"])
    extra = dict(meta["extra"])
    extra["calibration"] = {"split": str(ann), "instances": None if fit is None else fit["instances"],
                            "map_error_before": None if fit is None else float(fit["error_before"]),
                            "map_error_after": None if fit is None else float(fit["error_after"]),
                            "sharpness_ex_ap": None if fit is None else {f"{c:g}": ap for c, ap in
                                                                         fit["sharpness_ex_ap"].items()},
                            "ex_ap": float(metrics["Ex-AP"]), "flip_test": bool(flip_test)}
    table, report, problem = None, None, None
    try:
        table, report = fit_coverage(model, dict(meta, presence_threshold=threshold), coverage_data or [(ann, images)],
                                     coverage_levels, coverage_by_bucket, flip_test, progress, coverage_by_border)
        extra["coverage"] = table.to_dict()
    except InputError as exc:  # e.g. too few keypoints for a level: the model stays UNCALIBRATED in coverage
        if coverage_required:
            raise
        problem = str(exc)
    save_checkpoint(out, model, config, codec=codec, temperature=float(temperature), presence_threshold=threshold,
                    extra=extra)
    if plots is not None and fit is not None:
        plot_coverage_curve({f"before (T = {fit['head_temperature_before']:.3g})": fit["coverage_before"],
                             f"after (T = {fit['head_temperature_after']:.3g})": fit["coverage_after"]},
                            Path(plots) / "map_coverage_calibration.png")
    return {"temperature": float(temperature), "presence_threshold": threshold, "map": fit, "metrics": metrics,
            "coverage": table, "coverage_report": report, "coverage_problem": problem}


def format_coverage(summary: dict) -> str:
    """The coverage table's constants per cell and level (region score quantile, ellipse r^2, n)."""
    table = summary["coverage"]
    if table is None:
        return f"coverage NOT calibrated (the checkpoint carries no coverage table): {summary.get('coverage_problem')}"
    lines = [f"coverage table ({table.data}):"]
    for key, cell in table.cells.items():
        per = ", ".join(f"{q:g}: s {s:.3f} r2 {r:.2f}" for q, s, r in zip(table.levels, cell["region"], cell["ellipse_r2"]))
        lines.append(f"  {key} (n {cell['n']}): {per}")
    return "\n".join(lines)


def format_summary(summary: dict) -> str:
    """Terminal lines: temperature and map calibration error before/after, threshold and Ex-AP, coverage table."""
    lines = []
    fit = summary["map"]
    if fit is None:
        lines.append("heatmap model: no probability maps, temperature not fitted")
    else:
        lines.append(f"map temperature: head {fit['head_temperature_before']:.4g} -> "
                     f"{fit['head_temperature_after']:.4g} (stored calibration factor {summary['temperature']:.4g}; {fit['keypoints']} keypoints of "
                     f"{fit['instances']} instances)")
        lines.append(f"map calibration error: before {fit['error_before']:.4f}, after {fit['error_after']:.4f}")
        tried = ", ".join(f"{c:g}: {ap:.4f}" for c, ap in fit["sharpness_ex_ap"].items())
        lines.append(f"decode sharpness: {fit['decode_sharpness']:g} (Ex-AP per factor: {tried})")
    m = summary["metrics"]
    lines.append(f"presence threshold: {m['checkpoint_presence_threshold']:.4g} -> {summary['presence_threshold']:.4g} "
                 f"(Ex-AP {m['at_checkpoint_threshold']['Ex-AP']:.4f} -> {m['Ex-AP']:.4f}, AP {m['AP']:.4f})")
    lines.append(format_coverage(summary))
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.calibrate",
                                     description="Fit map temperature and presence threshold on a VALIDATION split.")
    parser.add_argument("--checkpoint", required=True, help="our checkpoint (.pt)")
    parser.add_argument("--ann", required=True, help="COCO keypoints file of a validation split (never the test set)")
    parser.add_argument("--images", required=True, help="folder of the annotation's images")
    parser.add_argument("--out", required=True, help="calibrated checkpoint to write (.pt)")
    parser.add_argument("--plots", help="folder for the plots and metrics.json of the calibrated model")
    parser.add_argument("--max-instances", type=int, default=DEFAULT_MAX_INSTANCES,
                        help=f"GT instances for the temperature fit (random subset; default {DEFAULT_MAX_INSTANCES})")
    parser.add_argument("--no-flip-test", dest="flip_test", action="store_false",
                        help="threshold search without the flip test")
    parser.add_argument("--seed", type=int, default=0, help="seed of the instance subset (default 0)")
    parser.add_argument("--coverage-data", nargs=2, action="append", metavar=("ANN", "IMAGES"),
                        help="a COCO keypoints file and its images for the coverage table (repeat for several; "
                             "default: --ann / --images). Never the data coverage is reported on")
    parser.add_argument("--coverage-levels", default=",".join(f"{q:g}" for q in DEFAULT_LEVELS),
                        help=f"calibrated levels (default {','.join(f'{q:g}' for q in DEFAULT_LEVELS)}; 0.975 is "
                             "the per-endpoint level of keep_out_coverage 0.95)")
    parser.add_argument("--coverage-by-bucket", action=argparse.BooleanOptionalAction, default=COVERAGE_BY_BUCKET,
                        help="Mondrian cells per keypoint group AND box-size bucket (default: "
                             f"{'on' if COVERAGE_BY_BUCKET else 'off'})")
    parser.add_argument("--coverage-by-border", action=argparse.BooleanOptionalAction, default=COVERAGE_BY_BORDER,
                        help="Mondrian cells per box position too: inside / within 4 px of an image edge (default: "
                             f"{'on' if COVERAGE_BY_BORDER else 'off'})")
    parser.add_argument("--require-coverage", action="store_true",
                        help="fail (exit 2) when the coverage table cannot be fitted instead of writing a checkpoint "
                             "without one")
    parser.add_argument("--coverage-only", action="store_true",
                        help="only (re)fit the coverage table of an already calibrated checkpoint")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)

    def action():
        from probpose_core.predict import check_credible_levels

        data = args.coverage_data or [(args.ann, args.images)]
        args.coverage_levels = tuple(sorted(check_credible_levels(args.coverage_levels)))
        if args.coverage_only:
            summary = calibrate_coverage_only(args.checkpoint, data, args.out, args.coverage_levels,
                                              args.coverage_by_bucket, args.flip_test, progress=not args.quiet,
                                              by_border=args.coverage_by_border)
            print(format_coverage(summary))
        else:
            summary = calibrate_checkpoint(args.checkpoint, args.ann, args.images, args.out, plots=args.plots,
                                           flip_test=args.flip_test, max_instances=args.max_instances, seed=args.seed,
                                           progress=not args.quiet, coverage_data=data,
                                           coverage_levels=args.coverage_levels,
                                           coverage_by_bucket=args.coverage_by_bucket,
                                           coverage_required=args.require_coverage,
                                           coverage_by_border=args.coverage_by_border)
            print(format_summary(summary))
        print(f"wrote {args.out}" + (f"; plots in {args.plots}" if args.plots else ""))

    return run_command("calibrate", action)


if __name__ == "__main__":
    sys.exit(main())
