"""The top-down pipeline: frame -> detector -> crops -> runner -> decode -> ``Human`` list.

Steps, each reusing the one implementation in the house:

1. crops: every box's activation window (:func:`geometry.bbox_to_center_scale`, 3:4, padding
   1.25) resampled with :func:`geometry.warp_crop` (UDP, bilinear, black border) and
   normalised with the model's ``NORMALIZE_MEAN/STD`` (RGB, 0-255) into ONE
   ``(N, 3, 256, 192)`` float32 batch.
2. the runner sees that batch in chunks of at most ``max_batch`` (the smaller of the
   pipeline's and the runner's limit): more people are split, never dropped. Optional flip
   test: the mirrored batch runs too and :func:`codec.flip_merge` averages maps and scores.
3. :meth:`ProbMapCodec.decode` (expected-OKS by default) with the instance area
   ``area_factor * w * h`` of each box (0.53, as exococotools), the map covariance from
   :func:`regions.covariance_ellipse`, and credible-region outlines from
   :func:`regions.keypoint_regions` (all maps of a frame in one batch per level, ~0.03 ms per
   map and level for compact maps), computed only at the configured ``credible_levels`` and
   only for keypoints with ``presence >= presence_threshold`` (the others get
   ``regions == {}``); ``credible_levels=()`` turns them off. Double-heatmap models (a
   ``wide_prob_maps`` output) are decoded with ``models.probmap_head.decode_double``;
   covariance and outlines come from the expert map. The maps are taken as calibrated: the
   calibration temperature is applied by the model before Sparsemax, the pipeline does not
   touch map values.
   Heatmap-baseline models (``map_kind="heatmap"``: a ``heatmaps`` output instead of
   ``prob_maps``) are read by :func:`read_heatmaps`: decoded with ``method="udp"`` whatever
   ``decode_method`` says, presence = the map maximum clipped to [0, 1], oks_quality = the
   UDP confidence (map value at the decoded pixel) clipped to [0, 1] (their OKS-quality branch
   is untrained), and covariance / credible regions from the heatmap made a distribution
   (negative values set to 0, divided by the sum; an all-zero map counts as uniform).
4. ``Human(bbox, score, keypoints, box_score)`` in image coordinates. The pose ``score`` is
   ``box_score * mean(oks_quality)`` over the keypoints judged present (over all keypoints
   when none is): the OKS-quality head estimates each keypoint's OKS, so the mean estimates
   the pose's OKS, which is what COCO-style ranking needs.

Bad input. A frame that is not a non-empty ``(H, W, 3)`` uint8 array raises InputError. A box
is invalid when it is not finite, has ``w <= 0`` or ``h <= 0``, or lies entirely outside the
frame. :meth:`Pipeline.estimate` (boxes given by the caller) raises InputError naming the
invalid boxes, unless ``invalid_boxes="skip"``; :meth:`Pipeline.__call__` (boxes from the
detector) always skips them. Skipped boxes are counted: ``last_skipped`` holds the indices of
the previous call's skipped boxes and ``skipped_total`` the running count, and a warning is
logged. The returned humans follow the order of the boxes kept.
"""
import logging
import math
import sys
import time
from pathlib import Path

import numpy as np

from . import geometry
from .codec import ProbMapCodec, flip_merge
from .errors import InputError
from .keypoints import NAMES
from .regions import covariance_ellipse, keypoint_regions
from .results import Human, Keypoint, to_coco_results, write_coco_results

log = logging.getLogger(__name__)

OUTPUT_KEYS = ("prob_maps", "presence", "visibility", "oks_quality")
#: a heatmap-baseline model gives this map output instead of "prob_maps"
HEATMAP_KEY = "heatmaps"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def check_frame(frame) -> np.ndarray:
    """The frame as an (H, W, 3) uint8 array, or InputError saying what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"frame is empty: shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise InputError(f"frame must be uint8, got {frame.dtype}")
    return frame


def box_problems(boxes, frame_shape) -> list[str | None]:
    """Per box (M, 4) xywh: None when usable, else why not (non-finite, empty, outside)."""
    h_img, w_img = frame_shape[:2]
    problems = []
    for x, y, w, h in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            problems.append("not finite")
        elif w <= 0 or h <= 0:
            problems.append("zero or negative size")
        elif x + w <= 0 or y + h <= 0 or x >= w_img or y >= h_img:
            problems.append("entirely outside the frame")
        else:
            problems.append(None)
    return problems


def read_heatmaps(codec: ProbMapCodec, heatmaps, center, scale):
    """Decode a heatmap-baseline model's ``heatmaps (N, K, H, W)`` (Gaussian regression, raw).

    Returns ``points (N, K, 2)`` image coords (UDP/DARK decode), ``presence (N, K)`` = the map
    maximum clipped to [0, 1], ``oks_quality (N, K)`` = the UDP confidence clipped to [0, 1]
    and ``prob_maps (N, K, H, W)``: the heatmaps with negatives set to 0, each divided by its
    sum (uniform where nothing is positive), for covariance and credible regions.
    """
    heatmaps = np.asarray(heatmaps, dtype=np.float32)
    points, confidence = codec.decode(heatmaps, center, scale, method="udp")
    presence = np.clip(heatmaps.max(axis=(-2, -1)), 0.0, 1.0).astype(np.float64)
    positive = np.maximum(heatmaps, 0.0)
    mass = positive.sum(axis=(-2, -1), keepdims=True)
    uniform = np.float32(1.0 / (heatmaps.shape[-2] * heatmaps.shape[-1]))
    prob_maps = np.where(mass > 0, positive / np.where(mass > 0, mass, 1.0), uniform).astype(np.float32)
    return points, presence, np.clip(confidence, 0.0, 1.0), prob_maps


class Pipeline:
    """Detector + runner + codec -> ``list[Human]`` for one RGB frame.

    runner: a ``Runner`` (``run(images (N, 3, H, W) float32) -> dict``, optional ``max_batch``
    and ``input_size``); detector: a ``Detector`` (``detect(frame) -> boxes (M, 4) xywh,
    scores (M,)``) or None; decode_method: a :data:`codec.DECODE_METHODS` name;
    flip_test: also run the mirrored crops and average; invalid_boxes: "raise" or "skip"
    for boxes given to :meth:`estimate` (see the module docstring).
    """

    def __init__(self, runner, detector=None, codec: ProbMapCodec = ProbMapCodec(), credible_levels=(0.5,),
                 presence_threshold: float = 0.45, max_batch: int = 16, decode_method: str = "expected_oks",
                 flip_test: bool = False, invalid_boxes: str = "raise"):
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be at least 1, got {max_batch}")
        if invalid_boxes not in ("raise", "skip"):
            raise InputError(f"invalid_boxes must be 'raise' or 'skip', got {invalid_boxes!r}")
        levels = tuple(float(q) for q in credible_levels)
        if not all(0.0 < q <= 1.0 for q in levels):
            raise InputError(f"credible levels must lie in (0, 1], got {levels}")
        runner_size = getattr(runner, "input_size", None)
        if runner_size is not None and tuple(runner_size) != tuple(codec.input_size):
            raise InputError(f"the runner expects input size {tuple(runner_size)} (W, H) but the codec "
                             f"crops {tuple(codec.input_size)}")
        self.runner, self.detector, self.codec = runner, detector, codec
        self.credible_levels = levels
        self.presence_threshold = float(presence_threshold)
        runner_batch = getattr(runner, "max_batch", None)
        self.max_batch = min(int(max_batch), int(runner_batch)) if runner_batch else int(max_batch)
        self.decode_method = decode_method
        self.flip_test = bool(flip_test)
        self.invalid_boxes = invalid_boxes
        self.last_skipped: list[int] = []
        self.skipped_total = 0
        meta = getattr(runner, "meta", None) or {}
        # A converted ViTPose model has no presence branch (it outputs 0.5): judge presence by
        # the map instead, i.e. the expected OKS of the decoded point (codec.decode's confidence).
        self.heatmap_only = bool(meta.get("heatmap_only") or (meta.get("extra") or {}).get("heatmap_only"))

    # -- pre-processing ---------------------------------------------------------------
    def crops(self, frame, boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised crops of ``boxes (N, 4)`` xywh: ``images (N, 3, H, W)`` float32,
        ``center (N, 2)``, ``scale (N, 2)`` (activation windows, image px).

        Boxes are used as given (see :func:`box_problems` for the checks :meth:`estimate` makes).
        """
        frame = check_frame(frame)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        center, scale = geometry.bbox_to_center_scale(boxes, padding=self.codec.padding)
        w, h = self.codec.input_size
        patches = np.empty((len(boxes), h, w, 3), dtype=np.uint8)
        for i in range(len(boxes)):
            patches[i] = geometry.warp_crop(frame, center[i], scale[i], size=(w, h))
        return geometry.normalise(patches), center, scale

    # -- network ----------------------------------------------------------------------
    def _run_chunks(self, images) -> dict:
        parts: dict[str, list] = {}
        for start in range(0, len(images), self.max_batch):
            batch = images[start:start + self.max_batch]
            out = self.runner.run(batch)
            for key in (OUTPUT_KEYS[1:] if HEATMAP_KEY in out else OUTPUT_KEYS):
                if key not in out:
                    raise InputError(f"the model gave no {key!r} output (outputs: {sorted(out)})")
            for key, value in out.items():
                value = np.asarray(value)
                if value.shape[:1] != (len(batch),):
                    raise InputError(f"the model's {key!r} output has shape {value.shape} for a batch of {len(batch)}")
                parts.setdefault(key, []).append(value)
        return {key: np.concatenate(values) for key, values in parts.items()}

    def infer(self, images) -> dict:
        """Runner outputs for ``images (N, 3, H, W)``, run in chunks of ``max_batch``.

        With ``flip_test`` the mirrored images run too and every output is merged with
        :func:`codec.flip_merge`.
        """
        images = np.asarray(images, dtype=np.float32)
        if len(images) == 0:
            return {}
        out = self._run_chunks(images)
        if self.flip_test:
            flipped = self._run_chunks(np.ascontiguousarray(images[..., ::-1]))
            out = {key: flip_merge(value, flipped[key]) for key, value in out.items()}
        return out

    # -- post-processing --------------------------------------------------------------
    def humans(self, outputs, boxes, box_scores, center, scale) -> list[Human]:
        """``Human`` list from runner ``outputs`` (N leading) for ``boxes (N, 4)`` xywh with
        ``box_scores (N,)`` and their windows ``center``/``scale (N, 2)``."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        presence, visibility, quality = (np.asarray(outputs[k], dtype=np.float64)
                                         for k in ("presence", "visibility", "oks_quality"))
        area = self.codec.area_factor * boxes[:, 2] * boxes[:, 3]
        if HEATMAP_KEY in outputs:  # heatmap baseline: UDP decode, presence from the map (read_heatmaps)
            points, presence, quality, maps = read_heatmaps(self.codec, outputs[HEATMAP_KEY], center, scale)
        elif "wide_prob_maps" in outputs:  # double-heatmap variant: the wide map decides, the expert refines
            from .models.probmap_head import decode_double

            maps = np.asarray(outputs["prob_maps"], dtype=np.float32)
            points, confidence, _ = decode_double(self.codec, maps, outputs["wide_prob_maps"], center, scale,
                                                  area=area, method=self.decode_method)
        else:
            maps = np.asarray(outputs["prob_maps"], dtype=np.float32)
            points, confidence = self.codec.decode(maps, center, scale, area=area, method=self.decode_method)
        if self.heatmap_only and HEATMAP_KEY not in outputs:
            presence = np.asarray(confidence, dtype=np.float64)
        _, cov = covariance_ellipse(maps, center, scale)
        present = presence >= self.presence_threshold
        regions = keypoint_regions(maps, present, center, scale, self.credible_levels)
        out = []
        for n in range(len(boxes)):
            keypoints = []
            for k, name in enumerate(NAMES):
                keypoints.append(Keypoint(name=name, x=float(points[n, k, 0]), y=float(points[n, k, 1]),
                                          presence=float(presence[n, k]), visibility=float(visibility[n, k]),
                                          oks_quality=float(quality[n, k]), covariance=cov[n, k], regions=regions[n][k]))
            chosen = present[n] if present[n].any() else np.ones(len(NAMES), dtype=bool)
            box_score = float(box_scores[n])
            out.append(Human(bbox=tuple(float(v) for v in boxes[n]), score=box_score * float(quality[n, chosen].mean()),
                             keypoints=keypoints, box_score=box_score))
        return out

    # -- whole frame ------------------------------------------------------------------
    def _keep_valid(self, frame, boxes, scores, skip: bool):
        problems = box_problems(boxes, frame.shape)
        bad = [i for i, p in enumerate(problems) if p is not None]
        if bad and not skip:
            listed = "; ".join(f"box #{i} {boxes[i].tolist()}: {problems[i]}" for i in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise InputError(f"{len(bad)} invalid box(es) for a {frame.shape[1]}x{frame.shape[0]} frame: {listed}{more}")
        self.last_skipped = bad
        if bad:
            self.skipped_total += len(bad)
            log.warning("skipped %d invalid box(es): %s", len(bad), ", ".join(f"#{i} ({problems[i]})" for i in bad))
        keep = np.array([p is None for p in problems], dtype=bool)
        return boxes[keep], scores[keep]

    def estimate(self, frame, boxes, scores=None, *, skip_invalid: bool | None = None) -> list[Human]:
        """Poses of the people in ``boxes (M, 4)`` xywh (``scores (M,)``, default 1) of ``frame``.

        All people go through the network in one batch (split only at ``max_batch``).
        ``skip_invalid`` overrides the pipeline's ``invalid_boxes`` policy for this call.
        """
        frame = check_frame(frame)
        try:
            boxes = np.asarray(boxes, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("boxes must be numbers, (M, 4) xywh") from None
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must be (M, 4) xywh, got shape {boxes.shape}")
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise InputError(f"got {len(scores)} scores for {len(boxes)} boxes")
        skip = self.invalid_boxes == "skip" if skip_invalid is None else bool(skip_invalid)
        boxes, scores = self._keep_valid(frame, boxes, scores, skip)
        if len(boxes) == 0:
            return []
        images, center, scale = self.crops(frame, boxes)
        return self.humans(self.infer(images), boxes, scores, center, scale)

    def __call__(self, frame) -> list[Human]:
        """Detect people in ``frame`` (H, W, 3) uint8 RGB and estimate their poses."""
        if self.detector is None:
            raise InputError("this pipeline has no person detector: give boxes to Pipeline.estimate or "
                             "construct it with a detector")
        frame = check_frame(frame)
        boxes, scores = self.detector.detect(frame)
        return self.estimate(frame, boxes, scores, skip_invalid=True)


# -- probpose predict -----------------------------------------------------------------
def read_image(path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; InputError when missing or unreadable."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path} (not an image, or a format OpenCV cannot decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def as_runner(model, runtime: str = "ort"):
    """A Runner from a path (.pt / .onnx, via runtime.make_runner; empty or None: the shipped
    model), a Runner, or a torch module."""
    if model is None or model == "":
        from .shipped import default_pose_model

        model = default_pose_model()
    if isinstance(model, (str, Path)):
        from .runtime import make_runner

        return make_runner(model, runtime=runtime)
    if hasattr(model, "run"):
        return model
    from .runtime.torch_runner import TorchRunner

    return TorchRunner(model)


def _detection_jobs(images_dir: Path, ann, detections):
    """Jobs from a detections file (COCO results-format person boxes) over the images of ``ann``."""
    from .data.instances import load_instances

    instances, skipped = load_instances(ann, detections)
    if skipped:
        log.warning("detections: skipped %s", ", ".join(f"{n} ({why})" for why, n in sorted(skipped.items())))
    by_image: dict = {}
    for inst in instances:
        by_image.setdefault(inst.image_id, (inst.file_name, []))[1].append(inst)
    for image_id, (file_name, found) in by_image.items():
        yield (image_id, images_dir / file_name, np.stack([i.bbox for i in found]),
               np.array([i.score for i in found], dtype=np.float64))


def _image_jobs(images_dir: Path, ann, detections=None):
    """(image_id, file path, boxes (M, 4), scores (M,) or None) per image; boxes None = detect."""
    if ann is not None and detections is not None:
        yield from _detection_jobs(images_dir, ann, detections)
        return
    if ann is not None:
        from .data.coco import load_coco

        data = load_coco(ann)
        boxes = {img["id"]: [] for img in data["images"]}
        for a in data["annotations"]:
            if not a.get("iscrowd", 0):
                boxes[a["image_id"]].append(a["bbox"])
        for img in data["images"]:
            if "file_name" not in img:
                raise InputError(f"{ann}: image {img['id']!r} has no 'file_name'")
            yield img["id"], images_dir / img["file_name"], np.asarray(boxes[img["id"]], np.float64).reshape(-1, 4), None
        return
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    for p in files:
        yield (int(p.stem) if p.stem.isdigit() else p.stem), p, None, None


def predict_images(images_dir, out_path, model, ann=None, runtime: str = "ort", detector=None,
                   pipeline_kw: dict | None = None, progress: bool = True, detections=None) -> list[dict]:
    """Run the pipeline on a folder of images and write COCO keypoint results to ``out_path``.

    With ``ann`` (a COCO keypoints file) every non-crowd annotation's box is used with score 1
    (the paper's protocol: one prediction per GT instance, image ids from the annotation) and
    invalid boxes are skipped with a count. Without ``ann`` the ``detector`` (a Detector, or a
    ``detection.make_detector`` spec; None: the shipped NanoDet) finds the people; image ids are the file stems (as ints
    when numeric) and every result carries its ``file_name``. With ``ann`` and ``detections``
    (a COCO results-format file of person boxes with scores, read by
    ``data.instances.load_instances``) the detections' boxes and scores are used instead of
    the GT boxes, over the images of ``ann``. ``model``: our checkpoint
    (.pt), an exported .onnx, a Runner or a torch module; ``runtime``: "ort" | "torch" | "trt".
    The runner's ``meta`` (if any) supplies the presence threshold. Returns the results.
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputError(f"images folder not found: {images_dir}")
    if detections is not None and ann is None:
        raise InputError("a detections file needs the annotation file (--ann) that lists its images")
    if ann is None and (detector is None or isinstance(detector, (str, Path))):
        from .detection import make_detector

        detector = make_detector(str(detector or ""))
    jobs = list(_image_jobs(images_dir, ann, detections))
    runner = as_runner(model, runtime)
    kw = dict(pipeline_kw or {})
    meta = getattr(runner, "meta", None) or {}
    if "presence_threshold" in meta:
        kw.setdefault("presence_threshold", float(meta["presence_threshold"]))
    kw.setdefault("credible_levels", ())  # COCO results carry no regions
    kw.setdefault("invalid_boxes", "skip")
    pipe = Pipeline(runner, detector=detector, **kw)

    from tqdm import tqdm

    results, people, started = [], 0, time.perf_counter()
    for image_id, path, boxes, scores in tqdm(jobs, desc="predict", unit="img", disable=not progress,
                                              file=sys.stderr):
        frame = read_image(path)
        humans = pipe(frame) if boxes is None else pipe.estimate(frame, boxes, scores)
        people += len(humans)
        entries = to_coco_results(image_id, humans)
        if boxes is None:
            for entry in entries:
                entry["file_name"] = path.name
        results.extend(entries)
    write_coco_results(results, out_path)
    skipped = f", skipped {pipe.skipped_total} invalid box(es)" if pipe.skipped_total else ""
    print(f"wrote {len(results)} predictions for {len(jobs)} images to {out_path} "
          f"({time.perf_counter() - started:.1f} s{skipped})")
    return results
