"""Batch prediction (``probpose predict``): a folder of images -> COCO keypoint results.

Which boxes (jobs), in the order they are run:

- ``ann`` (a COCO keypoints file): every non-crowd annotation's box with score 1 (the paper's
  protocol: one prediction per GT instance, image ids from the annotation); invalid boxes are
  skipped and counted;
- ``ann`` + ``detections`` (a COCO results-format file of person boxes with scores, read by
  ``data.instances.load_instances``): the detections' boxes and scores over the images of ``ann``;
- neither: the ``detector`` finds the people in every image of the folder; image ids are the
  file stems (ints when numeric) and every result carries its ``file_name``.

The model's codec and presence threshold come from its :class:`spec.ModelSpec` (the
checkpoint meta or ONNX sidecar), through :class:`pipeline.Pipeline`.
"""
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .image_io import IMAGE_SUFFIXES, read_image
from .pipeline import Pipeline
from .results import to_coco_results, write_coco_results
from .runtime import as_runner

log = logging.getLogger(__name__)


@dataclass
class PredictionRun:
    """What :func:`predict_images` did: the COCO ``results`` it wrote to ``out_path``, the
    number of ``images``, the invalid boxes it skipped and the wall time in seconds."""

    results: list
    out_path: Path
    images: int
    skipped_boxes: int
    seconds: float

    def summary(self) -> str:
        """One line for the terminal."""
        skipped = f", skipped {self.skipped_boxes} invalid box(es)" if self.skipped_boxes else ""
        return (f"wrote {len(self.results)} predictions for {self.images} images to {self.out_path} "
                f"({self.seconds:.1f} s{skipped})")


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


def _annotation_jobs(images_dir: Path, ann):
    """Jobs from the non-crowd annotation boxes of ``ann`` (scores None: 1 each)."""
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


def _image_jobs(images_dir: Path, ann, detections=None):
    """(image_id, file path, boxes (M, 4), scores (M,) or None) per image; boxes None = detect."""
    if ann is not None and detections is not None:
        yield from _detection_jobs(images_dir, ann, detections)
        return
    if ann is not None:
        yield from _annotation_jobs(images_dir, ann)
        return
    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {images_dir}")
    for p in files:
        yield (int(p.stem) if p.stem.isdigit() else p.stem), p, None, None


def predict_images(images_dir, out_path, model, ann=None, runtime: str = "ort", detector=None,
                   pipeline_kw: dict | None = None, progress: bool = True, detections=None) -> PredictionRun:
    """Run the pipeline on a folder of images and write COCO keypoint results to ``out_path``.

    Jobs as in the module docstring. ``detector``: a Detector or a ``detection.make_detector``
    spec (None: the shipped NanoDet), used only without ``ann``. ``model``: our checkpoint
    (.pt), an exported .onnx, a Runner or a torch module (``runtime.as_runner``); ``runtime``:
    "ort" | "torch" | "trt". ``pipeline_kw`` goes to :class:`Pipeline` (codec and presence
    threshold default to the model's ModelSpec; credible regions are off, COCO results carry
    none; invalid boxes are skipped). ``progress``: a tqdm bar on stderr. Returns a
    :class:`PredictionRun` (its ``summary()`` is the line ``probpose predict`` prints).
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
    kw = {"credible_levels": (), "invalid_boxes": "skip", **(pipeline_kw or {})}
    pipe = Pipeline(as_runner(model, runtime), detector=detector, **kw)

    from tqdm import tqdm

    results, started = [], time.perf_counter()
    for image_id, path, boxes, scores in tqdm(jobs, desc="predict", unit="img", disable=not progress,
                                              file=sys.stderr):
        frame = read_image(path)
        humans = pipe(frame) if boxes is None else pipe.estimate(frame, boxes, scores)
        entries = to_coco_results(image_id, humans)
        if boxes is None:
            for entry in entries:
                entry["file_name"] = path.name
        results.extend(entries)
    write_coco_results(results, out_path)
    run = PredictionRun(results=results, out_path=Path(out_path), images=len(jobs),
                        skipped_boxes=pipe.skipped_total, seconds=time.perf_counter() - started)
    log.info("%s", run.summary())
    return run
