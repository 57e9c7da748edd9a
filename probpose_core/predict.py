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
checkpoint meta or ONNX sidecar), through :class:`pipeline.Pipeline`; an ONNX model without its
sidecar is refused unless ``allow_uncalibrated`` (:func:`runtime.base.model_sidecar`).

``humans_out`` (``--humans-out``) also writes the full people, for offline analysis and for
checking region coverage from outside: a JSON list with one entry per image (people or not)::

    [{"image_id": .., "file_name": "000123.jpg",
      "humans": [{<results.humans_to_json of one Human>, "ann_id": 17 or null}, ...]}, ...]

``ann_id`` is the annotation the person was predicted for (``ann`` without ``detections``),
else null; each keypoint the model declares present (presence >= the ModelSpec's threshold)
carries its credible regions at ``credible_levels`` (default 0.5 and 0.9), the others none.
"""
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import InputError
from .image_io import IMAGE_SUFFIXES, read_image
from .jsonio import dump_json
from .pipeline import Pipeline
from .results import humans_to_json, to_coco_results, write_coco_results
from .runtime import as_runner

log = logging.getLogger(__name__)

#: credible levels of the regions in ``--humans-out`` unless asked otherwise
DEFAULT_CREDIBLE_LEVELS = (0.5, 0.9)


@dataclass
class PredictionRun:
    """What :func:`predict_images` did: the COCO ``results`` it wrote to ``out_path``, the
    number of ``images``, the invalid boxes it skipped, the wall time in seconds and, with
    ``humans_out``, where the people went (``humans_path``) at which ``credible_levels``."""

    results: list
    out_path: Path
    images: int
    skipped_boxes: int
    seconds: float
    humans_path: Path | None = None
    credible_levels: tuple = ()

    def summary(self) -> str:
        """One line for the terminal."""
        skipped = f", skipped {self.skipped_boxes} invalid box(es)" if self.skipped_boxes else ""
        people = (f"; people with credible regions at {', '.join(f'{q:g}' for q in self.credible_levels)} "
                  f"to {self.humans_path}") if self.humans_path is not None else ""
        return (f"wrote {len(self.results)} predictions for {self.images} images to {self.out_path}{people} "
                f"({self.seconds:.1f} s{skipped})")


def check_credible_levels(levels) -> tuple:
    """``levels`` (numbers, or comma-separated text as ``--credible-levels`` takes: "0.5,0.9") as
    a tuple of floats, each strictly between 0 and 1 (at least one; repeats dropped, order kept);
    InputError naming the first bad one."""
    out = []
    for q in (v.strip() for v in levels.split(",")) if isinstance(levels, str) else levels:
        try:
            value = float(q)
        except (TypeError, ValueError):
            raise InputError(f"credible levels must be numbers in (0, 1), got {q!r}") from None
        if not 0.0 < value < 1.0:  # NaN fails this too
            raise InputError(f"credible levels must lie strictly between 0 and 1, got {q!r}")
        if value not in out:
            out.append(value)
    if not out:
        raise InputError("no credible levels given (e.g. 0.5,0.9)")
    return tuple(out)


def parse_credible_levels(text: str) -> tuple:
    """``"0.5,0.9"`` -> ``(0.5, 0.9)``: :func:`check_credible_levels` of command-line text."""
    return check_credible_levels(str(text))


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
               np.array([i.score for i in found], dtype=np.float64), [i.ann_id for i in found])


def _annotation_jobs(images_dir: Path, ann):
    """Jobs from the non-crowd annotation boxes of ``ann`` (scores None: 1 each; the
    annotations' ids)."""
    from .data.coco import load_coco

    data = load_coco(ann)
    people = {img["id"]: [] for img in data["images"]}
    for a in data["annotations"]:
        if not a.get("iscrowd", 0):
            people[a["image_id"]].append(a)
    for img in data["images"]:
        if "file_name" not in img:
            raise InputError(f"{ann}: image {img['id']!r} has no 'file_name'")
        found = people[img["id"]]
        yield (img["id"], images_dir / img["file_name"],
               np.asarray([a["bbox"] for a in found], np.float64).reshape(-1, 4), None, [a.get("id") for a in found])


def _image_jobs(images_dir: Path, ann, detections=None):
    """(image_id, file path, boxes (M, 4), scores (M,) or None, annotation ids (M,)) per image;
    boxes (and ids) None = detect."""
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
        yield (int(p.stem) if p.stem.isdigit() else p.stem), p, None, None, None


def _kept_ids(ann_ids, skipped, count: int) -> list:
    """The annotation ids of the ``count`` people the pipeline returned for boxes with ``ann_ids``
    (None: detected, no ids), of which it skipped the indices ``skipped`` (invalid boxes). The
    kept boxes stay in order: given boxes all score 1, so ``max_people`` keeps the first ones."""
    if ann_ids is None:
        return [None] * count
    skipped = set(skipped)
    return [a for i, a in enumerate(ann_ids) if i not in skipped][:count]


def image_entry(image_id, file_name: str, humans, ann_ids) -> dict:
    """One image's entry of ``--humans-out`` (module docstring): ``humans_to_json`` of its people,
    each with the ``ann_id`` it was predicted for (``ann_ids``, one per human, None when unknown)."""
    return {"image_id": image_id, "file_name": file_name,
            "humans": [dict(h, ann_id=a) for h, a in zip(humans_to_json(humans), ann_ids, strict=True)]}


def predict_images(images_dir, out_path, model, ann=None, runtime: str = "ort", detector=None,
                   pipeline_kw: dict | None = None, progress: bool = True, detections=None, *,
                   humans_out=None, credible_levels=DEFAULT_CREDIBLE_LEVELS,
                   allow_uncalibrated: bool = False) -> PredictionRun:
    """Run the pipeline on a folder of images and write COCO keypoint results to ``out_path``.

    Jobs as in the module docstring. ``detector``: a Detector or a ``detection.make_detector``
    spec (None: the shipped PicoDet), used only without ``ann``. ``model``: our checkpoint
    (.pt), an exported .onnx, a Runner or a torch module (``runtime.as_runner``); ``runtime``:
    "ort" | "torch" | "trt". ``pipeline_kw`` goes to :class:`Pipeline` (codec and presence
    threshold default to the model's ModelSpec; credible regions only with ``humans_out``, COCO
    results carry none; invalid boxes are skipped). ``progress``: a tqdm bar on stderr.
    ``humans_out``: also write the people with their regions at ``credible_levels`` (each in
    (0, 1)) there (module docstring). ``allow_uncalibrated``: run an .onnx without its sidecar
    (warned) instead of refusing it. Returns a :class:`PredictionRun` (its ``summary()`` is the
    line ``probpose predict`` prints).
    """
    images_dir = Path(images_dir)
    if not images_dir.is_dir():
        raise InputError(f"images folder not found: {images_dir}")
    if detections is not None and ann is None:
        raise InputError("a detections file needs the annotation file (--ann) that lists its images")
    if ann is None and (detector is None or isinstance(detector, (str, Path))):
        from .detection import make_detector

        detector = make_detector(str(detector or ""))
    levels = check_credible_levels(credible_levels) if humans_out is not None else ()
    jobs = list(_image_jobs(images_dir, ann, detections))
    kw = {"credible_levels": levels, "invalid_boxes": "skip", **(pipeline_kw or {})}
    pipe = Pipeline(as_runner(model, runtime, allow_uncalibrated=allow_uncalibrated), detector=detector, **kw)

    from tqdm import tqdm

    results, people, started = [], [], time.perf_counter()
    for image_id, path, boxes, scores, ann_ids in tqdm(jobs, desc="predict", unit="img", disable=not progress,
                                                       file=sys.stderr):
        frame = read_image(path)
        humans = pipe(frame) if boxes is None else pipe.estimate(frame, boxes, scores)
        entries = to_coco_results(image_id, humans)
        if boxes is None:
            for entry in entries:
                entry["file_name"] = path.name
        results.extend(entries)
        if humans_out is not None:
            people.append(image_entry(image_id, path.relative_to(images_dir).as_posix(), humans,
                                      _kept_ids(ann_ids, pipe.last_skipped, len(humans))))
    write_coco_results(results, out_path)
    if humans_out is not None:
        dump_json(people, humans_out, compact=True)
    run = PredictionRun(results=results, out_path=Path(out_path), images=len(jobs),
                        skipped_boxes=pipe.skipped_total, seconds=time.perf_counter() - started,
                        humans_path=None if humans_out is None else Path(humans_out), credible_levels=levels)
    log.info("%s", run.summary())
    return run
