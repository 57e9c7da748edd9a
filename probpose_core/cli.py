"""The `probpose` command.

Subcommands delegate to the library; bad input raises InputError, which is printed as one
line (`probpose: error: ...`) with exit code 2, never a traceback.
"""
import argparse
import sys

from .errors import InputError
from .runtime import RUNTIMES
from .spec import DEFAULT_PRESENCE_THRESHOLD


def _threshold(text: str):
    if text == "best":
        return "best"
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or 'best', got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"presence threshold must lie in [0, 1], got {value}")
    return value


def _cmd_eval(args) -> None:
    from .evaluation import evaluate, format_table, load_gt, load_predictions
    from .jsonio import dump_json

    gt = load_gt(args.gt)
    preds = load_predictions(args.pred, gt)
    results = evaluate(gt, preds, extended=args.extended, presence_threshold=args.presence_threshold,
                       padding=args.padding)
    print(format_table(results))
    if args.json:
        dump_json(results, args.json)


def _cmd_areas(args) -> None:
    from .evaluation.areas import area_table, format_area_table
    from .evaluation import load_gt
    from .jsonio import dump_json

    table = area_table(load_gt(args.ann), padding=args.padding)
    print(format_area_table(table))
    if args.json:
        dump_json(table, args.json)


def _cmd_cropcoco(args) -> None:
    from .data.cropcoco import make_cropcoco

    make_cropcoco(args.ann, args.images, args.out, seed=args.seed)


def _cmd_convert(args) -> None:
    from .models.checkpoints import convert_checkpoint

    convert_checkpoint(args.input, args.out, source=args.source)


def _cmd_export(args) -> None:
    from .runtime.export import export_model

    export_model(args.model, args.onnx, int8=args.int8, sparsemax_method=args.sparsemax)


def _cmd_predict(args) -> None:
    from .detection import make_detector
    from .predict import DEFAULT_CREDIBLE_LEVELS, check_credible_levels, predict_images

    if args.credible_levels is not None and not args.humans_out:
        raise InputError("--credible-levels sets the regions of --humans-out: give --humans-out too")
    levels = DEFAULT_CREDIBLE_LEVELS if args.credible_levels is None else check_credible_levels(args.credible_levels)
    detector = None if args.ann else make_detector(args.detector, score_threshold=args.detector_threshold,
                                                   layout=args.detector_layout)
    run = predict_images(args.images, args.out, model=args.model, ann=args.ann, runtime=args.runtime,
                         detector=detector, detections=args.detections, humans_out=args.humans_out,
                         credible_levels=levels, allow_uncalibrated=args.allow_uncalibrated)
    print(run.summary())


def _cmd_coverage(args) -> None:
    from .evaluation.coverage import run_coverage
    from .predict import check_credible_levels

    levels = None if args.levels is None else check_credible_levels(args.levels)
    run_coverage(args.images, args.ann, model=args.model, runtime=args.runtime, out=args.out, levels=levels,
                 flip_test=args.flip_test, progress=not args.quiet)


def _cmd_bench(args) -> None:
    if args.data:
        from .data.bench_data import run_data_bench

        run_data_bench(repeats=max(1, min(args.repeats, 5)))
    elif args.model and args.model.lower().endswith(".onnx"):
        from .bench_model import run_onnx_bench

        run_onnx_bench(args.model, repeats=args.repeats, compare=[p for p in (args.compare or "").split(",") if p])
    elif args.model:
        from .bench_model import run_model_bench

        run_model_bench(args.model, repeats=args.repeats)
    else:
        from .bench import run_bench

        run_bench(repeats=args.repeats)


def _cmd_demo(args) -> None:
    from .demo import run_demo

    coco = {} if args.coco is None else {"coco": args.coco}  # None: run_demo's default (../shared/data/coco_train)
    run_demo(args.out, model=args.model, video=args.video, max_frames=args.max_frames, detector=args.detector,
             runtime=args.runtime, allow_uncalibrated=args.allow_uncalibrated, detect_every=args.detect_every, **coco)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="probpose", description="ProbPose pose estimation tools.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="COCO mAP and Ex-mAP of keypoint predictions")
    p.add_argument("--gt", required=True, help="COCO keypoints ground truth (v=3: outside the image)")
    p.add_argument("--pred", required=True, help="predictions: keypoints as (x, y, presence), visibilities, score")
    p.add_argument("--extended", action="store_true", help="also compute Ex-OKS / Ex-mAP")
    p.add_argument("--presence-threshold", type=_threshold, default=DEFAULT_PRESENCE_THRESHOLD,
                   help=f"presence >= T counts as present; 'best' searches the best Ex-AP "
                        f"(default {DEFAULT_PRESENCE_THRESHOLD})")
    p.add_argument("--padding", type=float, default=1.25, help="activation-window padding (default 1.25)")
    p.add_argument("--json", help="write the flat results object here")
    p.set_defaults(func=_cmd_eval)

    p = sub.add_parser("areas", help="A-E table: where the annotated keypoints lie")
    p.add_argument("--ann", required=True, help="COCO keypoints annotation file")
    p.add_argument("--padding", type=float, default=1.25, help="activation-window padding (default 1.25)")
    p.add_argument("--json", help="write the table here")
    p.set_defaults(func=_cmd_areas)

    p = sub.add_parser("cropcoco", help="build a CropCOCO-style set (keypoints pushed out of the image)")
    p.add_argument("--ann", required=True, help="COCO keypoints annotation file")
    p.add_argument("--images", required=True, help="folder of the annotation's images")
    p.add_argument("--out", required=True, help="output folder (images/ and annotations.json)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=_cmd_cropcoco)

    p = sub.add_parser("convert", help="convert an official MMPose ProbPose / ViTPose checkpoint to ours")
    p.add_argument("--from", dest="source", required=True, choices=("mmpose", "vitpose"),
                   help="mmpose: MMPose-1.x ProbPose-s; vitpose: original ViTPose-s")
    p.add_argument("input", help="the official .pth file")
    p.add_argument("--out", required=True, help="our single-file checkpoint (.pt)")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export", help="export a checkpoint to ONNX (+ metadata sidecar)")
    p.add_argument("--model", required=True, help="our checkpoint (.pt)")
    p.add_argument("--onnx", required=True, help="output .onnx path")
    p.add_argument("--int8", action="store_true", help="also write an ORT dynamic-int8 model and report its parity")
    p.add_argument("--sparsemax", default="topk", choices=("topk", "bisect"),
                   help="exported Sparsemax: topk (exact, a TopK over all pixels; default) or bisect (no sort, "
                        "exact to float rounding, faster on ONNX Runtime)")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("predict", help="run the top-down pipeline on a folder of images")
    p.add_argument("--images", required=True, help="folder of images")
    p.add_argument("--ann", help="COCO annotations: use their boxes (the paper's protocol) instead of the detector")
    p.add_argument("--out", required=True, help="COCO-results JSON (keypoints as x, y, presence)")
    p.add_argument("--model", default="", help="our checkpoint (.pt) or an exported .onnx (default: the shipped model)")
    p.add_argument("--runtime", default="ort", choices=RUNTIMES,
                   help="inference runtime (default ort; openvino is optional: requirements-optional.txt)")
    p.add_argument("--detector", default="picodet",
                   help="person detector without --ann: picodet (shipped, default), nanodet (shipped), hog, "
                        "full_frame, or a YOLOv8/YOLO11/YOLOX ONNX file")
    p.add_argument("--detector-layout", help="output layout of a YOLO-style ONNX detector: yolov8 (also YOLO11), "
                                             "yolov5, yolox, end2end (default: read from an unambiguous shape)")
    p.add_argument("--detector-threshold", type=float,
                   help="detector score threshold (default: the detector's own, PicoDet 0.46, NanoDet 0.35)")
    p.add_argument("--detections", help="with --ann: a COCO results file of person boxes and scores to use "
                                        "instead of the annotation's boxes")
    p.add_argument("--humans-out", help="also write the people here: a JSON list, one entry per image "
                                        "{image_id, file_name, humans}, each human as results.humans_to_json "
                                        "plus ann_id (its annotation with --ann), credible regions for the "
                                        "keypoints the model declares present")
    p.add_argument("--credible-levels", help="comma-separated credible levels in (0, 1) of the --humans-out "
                                             "regions (default 0.5,0.9)")
    p.add_argument("--allow-uncalibrated", action="store_true",
                   help="run an .onnx model that has no metadata sidecar (.json) with default settings "
                        "(uncalibrated presence threshold and regions; warned) instead of refusing it")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("coverage", help="how often published regions / ellipses hold the labelled keypoint, per "
                                       "level, keypoint group and box size (GT boxes), + reliability plot")
    p.add_argument("--images", required=True, help="folder of the annotation's images")
    p.add_argument("--ann", required=True, help="COCO keypoints annotations (never the model's calibration data)")
    p.add_argument("--model", default="", help="our checkpoint (.pt) or an exported .onnx (default: the shipped model)")
    p.add_argument("--runtime", default="ort", choices=RUNTIMES,
                   help="inference runtime (default ort; openvino is optional: requirements-optional.txt)")
    p.add_argument("--out", help="folder for coverage.json and coverage_reliability.png")
    p.add_argument("--levels", help="comma-separated levels (default: the model's calibrated levels)")
    p.add_argument("--flip-test", action="store_true", help="run with the flip test (the node runs without)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_coverage)

    p = sub.add_parser("bench", help="timings (medians): decode / loss / calibration, or a model's runtimes with --model")
    p.add_argument("--repeats", type=int, default=20, help="timed repetitions per item (default 20)")
    p.add_argument("--model", help="our checkpoint (.pt): time the network per runtime and the pipeline's pre/post; "
                                   "an exported .onnx (+ sidecar): onnxruntime session options and the installed "
                                   "runtimes (ort, openvino) at batch 1 and 3, side by side")
    p.add_argument("--compare", help="with --model M.onnx: comma-separated .onnx models (+ sidecars, e.g. an int8 "
                                     "export) timed on ORT in the same runtimes table")
    p.add_argument("--data", action="store_true",
                   help="time training data loading: samples/s for 0, 1, 2 DataLoader workers on a synthetic COCO set "
                        "(--repeats epochs each, at most 5)")
    p.set_defaults(func=_cmd_bench)

    p = sub.add_parser("demo", help="detector + pose model on the shipped clip: annotated MP4, contact sheet, "
                                    "per-frame JSON, timing table, calibration section")
    p.add_argument("--out", default="out/demo", help="output folder (default out/demo)")
    p.add_argument("--model", default="", help="our checkpoint (.pt) or an exported .onnx (default: the shipped model)")
    p.add_argument("--video", help="a clip OpenCV can read (default: the shipped demo/people.mp4)")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (default: the whole clip)")
    p.add_argument("--detector", default="picodet",
                   help="person detector: picodet (shipped, default), nanodet (shipped), hog, full_frame, or a "
                        "YOLO-style ONNX file")
    p.add_argument("--runtime", default="ort", choices=RUNTIMES,
                   help="inference runtime (default ort; openvino is optional: requirements-optional.txt)")
    p.add_argument("--detect-every", type=int, help="run the detector on every k-th frame, boxes from the tracks' "
                                                     "keypoints between (default: the node's detect_every)")
    p.add_argument("--coco", help="labelled COCO folder (gt.json or annotations.json + images/) for the calibration "
                                  "section; skipped with a note when absent or '' (default: ../shared/data/coco_train "
                                  "next to the repository)")
    p.add_argument("--allow-uncalibrated", action="store_true",
                   help="run an .onnx model that has no metadata sidecar (.json) uncalibrated (warned) instead of "
                        "refusing it")
    p.set_defaults(func=_cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except InputError as exc:
        print(f"probpose: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
