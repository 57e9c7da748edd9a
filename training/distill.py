"""Pseudo-labels from two teachers that agree: ``python -m training.distill``.

    python -m training.distill --out out/distill --video my_robot.mp4 [--video DIR ...] [--every 5] \\
        [--images ../shared/data/lspet/images --ann ../shared/data/lspet/lspet.json] [--images STILLS_DIR]

Sources (any number, in the order given):

- ``--video PATH`` (a file, or a folder searched recursively for videos): every ``--every``-th
  frame (default: one in ``ceil(frames / 300)``), written as ``OUT/images/<clip>_<frame:06d>.jpg``
  (JPEG quality 95) when the detector finds someone; boxes from the detector.
- ``--images DIR --ann COCO.json``: labelled images (e.g. LSPet); boxes and keypoints from the
  annotations. The labelled keypoints win; the teachers may only fill unlabelled keypoints of
  ``--fill`` (default the face, 0-4) and only where they agree. The images are referenced by
  relative symlinks ``OUT/images/<ann stem>/<file_name>``.
- ``--images DIR`` alone: unlabelled stills (recursive), boxes from the detector, symlinked as
  ``OUT/images/<dir name>/<relative path>``.

Held-out footage is refused by a hard rule: vtest.avi frames 600 and later, and the reserved
stills of ../shared/reference/ASSETS.md (:data:`HELD_OUT_STILLS`).

The agreement rule (:func:`agree`): a keypoint is kept where every teacher scores it at least
``--min-score`` and every pair of teachers agrees with keypoint OKS ``>= --tau`` (COCO sigma of
the keypoint, area ``0.53 * w * h`` of the box), at the first teacher's point (``--point mean``:
the teachers' mean), inside the image. A person is kept with at least ``--min-keypoints``
keypoints (labels + kept teacher points); the other keypoints are v=0, kept ones v=2 (teachers
cannot tell occluded). The defaults (min score 0.1, tau 0.1, MoveNet first) were chosen on
coco_train with ``--measure-agreement`` (training/README.md, "Pseudo-labels").

Output ``OUT/pseudo_labels.json``: COCO keypoints (images relative to ``OUT/images``, one
``source`` per annotation: ``teachers`` or ``<ann stem>+teachers``), read by the trainer as
``data.train_ann: OUT/pseudo_labels.json``, ``data.train_images: OUT/images``. Teacher outputs
are cached per source in ``OUT/cache/`` (saved every 30 s and on exit): a second run skips the
frames already done and only re-applies the rule, so changing ``--tau`` costs seconds.
"""
import argparse
import hashlib
import json
import math
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from probpose_core.codec import AREA_FACTOR
from probpose_core.errors import InputError
from probpose_core.oks import keypoint_oks
from probpose_core.keypoints import NAMES, NUM_KEYPOINTS, coco_category

HELD_OUT_VIDEO_FRAMES = {"vtest": 600}  # clip stem -> first reserved frame
HELD_OUT_STILLS = frozenset({"bus.jpg", "zidane.jpg", "messi5.jpg", "kite.jpg", "person.jpg",
                             "basketball1.png", "astronaut.png"})
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
FACE = (0, 1, 2, 3, 4)
CACHE_VERSION = 1


@dataclass(frozen=True)
class Rule:
    """The agreement rule's thresholds (see the module docstring)."""

    tau: float = 0.1  # chosen on coco_train (training/README.md, "Pseudo-labels")
    min_score: float = 0.1
    min_keypoints: int = 6
    point: str = "first"  # the kept point: the first teacher's ("first") or the teachers' mean ("mean")


# ---- the rule ----------------------------------------------------------------------------------

def agree(preds, box, width: int, height: int, rule: Rule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``preds (T, 17, 3)`` x, y, score of T teachers on one ``box`` xywh of a ``width x height``
    image -> ``xy (17, 2)`` (the first teacher's points, or the teachers' mean: ``rule.point``),
    ``keep (17,)`` bool, ``oks (17,)`` (the lowest pairwise keypoint OKS; 1 with one teacher)."""
    preds = np.asarray(preds, dtype=np.float64)
    area = AREA_FACTOR * float(box[2]) * float(box[3])
    oks = np.ones(NUM_KEYPOINTS)
    for i in range(len(preds)):
        for j in range(i + 1, len(preds)):
            sq = ((preds[i, :, :2] - preds[j, :, :2]) ** 2).sum(-1)
            oks = np.minimum(oks, keypoint_oks(sq, area))
    if rule.point not in ("first", "mean"):
        raise ValueError(f"Rule.point must be 'first' or 'mean', got {rule.point!r}")
    xy = preds[0, :, :2] if rule.point == "first" else preds[:, :, :2].mean(axis=0)
    inside = (xy[:, 0] >= 0) & (xy[:, 0] <= width - 1) & (xy[:, 1] >= 0) & (xy[:, 1] <= height - 1)
    keep = (preds[:, :, 2] >= rule.min_score).all(axis=0) & (oks >= rule.tau) & inside & np.isfinite(xy).all(-1)
    return xy, keep, oks


def person_keypoints(preds, box, width, height, rule: Rule, labels=None, fill=FACE) -> np.ndarray | None:
    """The (17, 3) keypoints (x, y, v) of one person, or None when fewer than ``rule.min_keypoints``
    survive. ``labels`` (17, 3) (human labels, v > 0 = labelled) win; the teachers then only fill
    the unlabelled keypoints listed in ``fill``."""
    xy, keep, _ = agree(preds, box, width, height, rule)
    out = np.zeros((NUM_KEYPOINTS, 3))
    if labels is not None:
        labels = np.asarray(labels, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        allowed = np.zeros(NUM_KEYPOINTS, bool)
        allowed[list(fill)] = True
        keep = keep & allowed & (labels[:, 2] <= 0)
        out[labels[:, 2] > 0] = labels[labels[:, 2] > 0]
    out[keep, :2] = xy[keep]
    out[keep, 2] = 2
    return out if int((out[:, 2] > 0).sum()) >= rule.min_keypoints else None


# ---- sources -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Source:
    kind: str  # "video" | "images" | "labelled"
    path: Path
    ann: Path | None = None

    @property
    def name(self) -> str:
        if self.kind == "video":
            return self.path.stem
        return self.ann.stem if self.ann is not None else self.path.name


def expand_sources(sources) -> list[Source]:
    """Video folders -> their video files (sorted); checks that each exists and names are unique."""
    out = []
    for s in sources:
        if not s.path.exists():
            raise InputError(f"{s.kind} source not found: {s.path}")
        if s.kind == "video" and s.path.is_dir():
            out += [Source("video", p) for p in sorted(s.path.rglob("*")) if p.suffix.lower() in VIDEO_EXTS]
        else:
            out.append(s)
    names = Counter(s.name for s in out)
    if any(n > 1 for n in names.values()):
        raise InputError(f"two sources share a name (their files would collide): "
                         f"{sorted(k for k, n in names.items() if n > 1)}")
    return out


def video_every(path: Path, every: int | None) -> int:
    if every:
        return int(every)
    cap = cv2.VideoCapture(str(path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    return max(1, math.ceil(count / 300))


def video_frames(path: Path, every: int, skip=lambda index: False):
    """``(index, frame RGB or None)`` of every ``every``-th frame; None where ``skip(index)`` (not
    decoded). Stops before the held-out frames of :data:`HELD_OUT_VIDEO_FRAMES`."""
    stop = HELD_OUT_VIDEO_FRAMES.get(path.stem.lower())
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    try:
        index = 0
        while stop is None or index < stop:
            if not cap.grab():
                break
            if index % every == 0:
                if skip(index):
                    yield index, None
                else:
                    ok, bgr = cap.retrieve()
                    if ok:
                        yield index, np.ascontiguousarray(bgr[..., ::-1])
            index += 1
    finally:
        cap.release()


def held_out(name: str) -> bool:
    return Path(name).name.lower() in HELD_OUT_STILLS


# ---- the teacher pass (cached) -----------------------------------------------------------------

class Cache:
    """One source's teacher outputs: ``frames[file_name] = {width, height, people: [{bbox,
    score, labels?, teachers: {name: (17, 3) list}}]}``, saved atomically every 30 s."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key = path, key
        self.frames: dict = {}
        if path.is_file():
            data = json.loads(path.read_text())
            if data.get("key") == key:
                self.frames = data["frames"]
        self._saved = time.monotonic()

    def save(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._saved < 30:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"key": self.key, "frames": self.frames}, separators=(",", ":")))
        os.replace(tmp, self.path)
        self._saved = time.monotonic()


def _cache_for(out: Path, source: Source, teachers, detector, extra: dict) -> Cache:
    key = {"version": CACHE_VERSION, "kind": source.kind, "path": str(source.path.resolve()),
           "ann": str(source.ann.resolve()) if source.ann else None,
           "teachers": [[t.name, getattr(t, "padding", None)] for t in teachers],
           "detector": None if source.kind == "labelled" else _detector_name(detector), **extra}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:8]
    return Cache(out / "cache" / f"{source.name}-{digest}.json", key)


def _detector_name(detector) -> str:
    name = getattr(detector, "name", type(detector).__name__)
    return f"{name}@{getattr(detector, 'score_threshold', '')}"


def _run_teachers(frame, people: list[dict], teachers) -> list[dict]:
    for person in people:
        person["teachers"] = {t.name: np.round(t.predict(frame, person["bbox"]), 3).tolist() for t in teachers}
    return people


def _detect(frame, detector, min_box: float) -> list[dict]:
    boxes, scores = detector.detect(frame)
    return [{"bbox": [round(float(v), 2) for v in b], "score": round(float(s), 4)}
            for b, s in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(scores).ravel())
            if max(b[2], b[3]) >= min_box and min(b[2], b[3]) >= 1]


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="frame", dynamic_ncols=True, mininterval=2)


def process_video(source: Source, out: Path, teachers, detector, every: int, min_box: float, progress=True) -> Cache:
    every = video_every(source.path, every)
    cache = _cache_for(out, source, teachers, detector, {"every": every, "min_box": min_box})
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    name = lambda i: f"{source.name}_{i:06d}.jpg"  # noqa: E731

    def done(index):
        entry = cache.frames.get(name(index))
        return entry is not None and (not entry["people"] or (images / name(index)).is_file())

    cap = cv2.VideoCapture(str(source.path))
    count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    cap.release()
    stop = HELD_OUT_VIDEO_FRAMES.get(source.path.stem.lower(), count)
    try:
        for index, frame in _progress(video_frames(source.path, every, done), math.ceil(min(count, stop) / every),
                                      source.name, progress):
            if frame is None:
                continue
            people = _detect(frame, detector, min_box)
            if people:
                cv2.imwrite(str(images / name(index)), frame[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 95])
            cache.frames[name(index)] = {"width": frame.shape[1], "height": frame.shape[0],
                                         "people": _run_teachers(frame, people, teachers)}
            cache.save()
    finally:
        cache.save(force=True)
    return cache


def _link(target: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        if link.resolve() == target.resolve():
            return
        link.unlink()
    link.symlink_to(os.path.relpath(target.resolve(), link.parent.resolve()))


def process_images(source: Source, out: Path, teachers, detector, min_box: float, progress=True,
                   measure: bool = False) -> Cache:
    """Stills (``source.ann`` None: detector boxes) or labelled images (annotation boxes and
    labels; ``measure``: only people with keypoints, and no symlinks)."""
    from probpose_core.image_io import read_image

    cache = _cache_for(out, source, teachers, detector, {"min_box": None if source.ann else min_box})
    items = []  # (file_name relative to source.path, people or None)
    if source.ann is not None:
        data = json.loads(source.ann.read_text())
        by_image: dict = {}
        for a in data["annotations"]:
            if not a.get("iscrowd", 0) and (not measure or a.get("num_keypoints", 1) > 0):
                by_image.setdefault(a["image_id"], []).append(
                    {"bbox": [float(v) for v in a["bbox"]], "score": 1.0, "labels": [float(v) for v in a["keypoints"]],
                     "area": float(a.get("area", 0) or 0)})
        items = [(img["file_name"], by_image[img["id"]]) for img in data["images"] if img["id"] in by_image]
    else:
        items = [(str(p.relative_to(source.path)), None) for p in sorted(source.path.rglob("*"))
                 if p.suffix.lower() in IMAGE_EXTS]
    refused = [f for f, _ in items if held_out(f)]
    if refused:
        print(f"refusing {len(refused)} held-out still(s) in {source.path}: {refused}", file=sys.stderr)
    items = [(f, p) for f, p in items if not held_out(f)]
    try:
        for file_name, people in _progress(items, len(items), source.name, progress):
            key = f"{source.name}/{file_name}"
            if not measure:
                _link(source.path / file_name, out / "images" / key)
            if key in cache.frames:
                continue
            frame = read_image(source.path / file_name)
            people = _detect(frame, detector, min_box) if people is None else people
            cache.frames[key] = {"width": frame.shape[1], "height": frame.shape[0],
                                 "people": _run_teachers(frame, people, teachers)}
            cache.save()
    finally:
        cache.save(force=True)
    return cache


# ---- assembly ----------------------------------------------------------------------------------

def assemble(caches: list[tuple[Source, Cache]], teachers: list[str], rule: Rule, fill=FACE) -> tuple[dict, dict]:
    """The COCO keypoints dict of all cached frames under ``rule``, and the counts."""
    images, anns = [], []
    counts = {"frames": 0, "frames_with_people": 0, "people_seen": 0, "people_kept": 0,
              "keypoints_per_joint": np.zeros(NUM_KEYPOINTS, int),
              "teacher_keypoints_per_joint": np.zeros(NUM_KEYPOINTS, int)}
    for source, cache in caches:
        for file_name in sorted(cache.frames):
            entry = cache.frames[file_name]
            counts["frames"] += 1
            kept = []
            for person in entry["people"]:
                counts["people_seen"] += 1
                preds = np.array([person["teachers"][t] for t in teachers])
                labels = person.get("labels")
                kp = person_keypoints(preds, person["bbox"], entry["width"], entry["height"], rule, labels, fill)
                if kp is None:
                    continue
                x, y, w, h = person["bbox"]
                from_teachers = (kp[:, 2] > 0) & ((np.zeros(NUM_KEYPOINTS) if labels is None else
                                                  np.asarray(labels).reshape(-1, 3)[:, 2]) <= 0)
                counts["keypoints_per_joint"] += kp[:, 2] > 0
                counts["teacher_keypoints_per_joint"] += from_teachers
                kept.append({"bbox": [x, y, w, h], "area": round(AREA_FACTOR * w * h, 2),
                             "num_keypoints": int((kp[:, 2] > 0).sum()), "iscrowd": 0, "category_id": 1,
                             "keypoints": [round(float(v), 2) if i % 3 < 2 else int(v)
                                           for i, v in enumerate(kp.ravel())],
                             "source": "teachers" if labels is None else f"{source.name}+teachers",
                             "det_score": person["score"]})
            if not entry["people"]:
                continue
            counts["frames_with_people"] += 1
            if not kept:
                continue
            image_id = len(images) + 1
            images.append({"id": image_id, "file_name": file_name, "width": entry["width"], "height": entry["height"]})
            for a in kept:
                anns.append({"id": len(anns) + 1, "image_id": image_id, **a})
            counts["people_kept"] += len(kept)
    data = {"info": {"description": "pseudo-labels of training.distill", "rule": asdict(rule), "teachers": teachers},
            "images": images, "annotations": anns, "categories": [coco_category()]}
    return data, counts


def print_counts(counts: dict, file=None) -> None:
    file = file or sys.stdout
    kept, taught = counts["keypoints_per_joint"], counts["teacher_keypoints_per_joint"]
    print(f"frames {counts['frames']}, with people {counts['frames_with_people']}, people seen "
          f"{counts['people_seen']}, kept {counts['people_kept']}, keypoints kept "
          f"{int(kept.sum())} (from teachers {int(taught.sum())})",
          file=file)
    print("| joint | kept | from teachers |\n|---|---|---|", file=file)
    for k, name in enumerate(NAMES):
        print(f"| {name} | {kept[k]} | {taught[k]} |", file=file)


def distill(sources, out, teachers, detector=None, rule: Rule = Rule(), every: int | None = None,
            min_box: float = 32.0, fill=FACE, progress: bool = True) -> dict:
    """Run the teachers over ``sources`` (list of :class:`Source`), write ``OUT/pseudo_labels.json``
    and return the counts. ``teachers``: objects with ``name`` and ``predict(frame, box) -> (17, 3)``;
    ``detector``: any object with ``detect(frame) -> (boxes xywh, scores)`` (needed for unlabelled
    sources)."""
    out = Path(out)
    caches = []
    for source in expand_sources(sources):
        if source.kind != "labelled" and detector is None:
            raise InputError(f"{source.path}: unlabelled sources need a detector")
        if source.kind == "video":
            caches.append((source, process_video(source, out, teachers, detector, every, min_box, progress)))
        else:
            caches.append((source, process_images(source, out, teachers, detector, min_box, progress)))
    data, counts = assemble(caches, [t.name for t in teachers], rule, fill)
    tmp = out / "pseudo_labels.json.tmp"
    tmp.write_text(json.dumps(data, separators=(",", ":")))
    os.replace(tmp, out / "pseudo_labels.json")
    return counts


# ---- command line ------------------------------------------------------------------------------

class _SourceAction(argparse.Action):
    """Keeps ``--video`` / ``--images`` / ``--ann`` in order; ``--ann`` belongs to the ``--images`` before it."""

    def __call__(self, parser, namespace, value, option_string=None):
        sources = list(getattr(namespace, "sources", None) or [])
        if option_string == "--ann":
            if not sources or sources[-1][0] != "images" or sources[-1][2] is not None:
                parser.error("--ann must follow the --images DIR it labels")
            sources[-1][2] = value
        else:
            sources.append(["video" if option_string == "--video" else "images", value, None])
        namespace.sources = sources


def _import(spec: str):
    import importlib

    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)()


def make_teachers(names: str, onnx_dir, threads: int = 2) -> list:
    """Teachers by name (``movenet``, ``blazepose``) or ``module:factory`` (a callable returning one)."""
    from .teachers import make_teacher

    return [_import(n) if ":" in n else make_teacher(n, onnx_dir, threads=threads)
            for n in (s.strip() for s in names.split(",")) if n]


def make_detector_for(spec: str, score_threshold: float, threads: int = 2):
    if ":" in spec:
        return _import(spec)
    from probpose_core.detection import make_detector

    return make_detector(spec, score_threshold=score_threshold, threads=threads)


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m training.distill", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="out/distill", help="output folder (images/, cache/, pseudo_labels.json)")
    p.add_argument("--video", action=_SourceAction, dest="sources", metavar="PATH",
                   help="a video file or a folder of videos (repeatable)")
    p.add_argument("--images", action=_SourceAction, dest="sources", metavar="DIR",
                   help="a folder of images (repeatable); with --ann after it: labelled images")
    p.add_argument("--ann", action=_SourceAction, dest="sources", metavar="COCO.json",
                   help="COCO keypoints labels of the --images DIR before it")
    p.add_argument("--every", type=int, default=None, help="video: every N-th frame (default ceil(frames / 300))")
    p.add_argument("--teachers", default="movenet,blazepose",
                   help="comma-separated: movenet, blazepose, module:factory (the first gives the kept point)")
    p.add_argument("--onnx-dir", default="out/build_models/teachers", help="teacher ONNX files (tools/build_models.sh)")
    p.add_argument("--detector", default="nanodet", help="make_detector name / .onnx path, or module:factory")
    p.add_argument("--det-threshold", type=float, default=0.5, help="detector score threshold")
    p.add_argument("--min-box", type=float, default=32.0,
                   help="detector boxes whose longer side is below this (px) are ignored")
    p.add_argument("--tau", type=float, default=Rule.tau, help="keypoint OKS between the teachers to keep a keypoint")
    p.add_argument("--min-score", type=float, default=Rule.min_score, help="minimum score of every teacher")
    p.add_argument("--min-keypoints", type=int, default=Rule.min_keypoints, help="keypoints a person needs to be kept")
    p.add_argument("--point", default=Rule.point, choices=("first", "mean"),
                   help="the kept point: the first teacher's or the teachers' mean")
    p.add_argument("--fill", default="0,1,2,3,4", help="labelled data: keypoints the teachers may fill (default face)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--measure-agreement", metavar="GT.json",
                   help="measure the rule against these labels (with --images DIR) instead of writing pseudo-labels")
    p.add_argument("--taus", default="0,0.3,0.5,0.6,0.7,0.8,0.9", help="--measure-agreement: tau grid")
    p.add_argument("--min-scores", default=None, help="--measure-agreement: min-score grid (default --min-score)")
    args = p.parse_args(argv)
    sources = args.sources or []
    progress = not args.no_progress
    try:
        teachers = make_teachers(args.teachers, args.onnx_dir, args.threads)
        if args.measure_agreement:
            dirs = [s for s in sources if s[0] == "images"]
            if len(dirs) != 1 or len(sources) != 1:
                p.error("--measure-agreement needs exactly one --images DIR (the GT's images) and no other source")
            from .agreement import measure_agreement, print_agreement

            rows = measure_agreement(args.measure_agreement, dirs[0][1], args.out, teachers, _floats(args.taus),
                                     _floats(args.min_scores) if args.min_scores else [args.min_score],
                                     args.min_keypoints, args.point, progress)
            print_agreement(rows, [t.name for t in teachers])
            return 0
        if not sources:
            p.error("give at least one source: --video PATH, --images DIR [--ann COCO.json]")
        srcs = [Source("labelled" if ann else kind, Path(path), Path(ann) if ann else None)
                for kind, path, ann in sources]
        detector = None
        if any(s.kind != "labelled" for s in srcs):
            detector = make_detector_for(args.detector, args.det_threshold, args.threads)
        rule = Rule(args.tau, args.min_score, args.min_keypoints, args.point)
        t0 = time.monotonic()
        counts = distill(srcs, args.out, teachers, detector, rule, args.every, args.min_box,
                         tuple(int(v) for v in args.fill.split(",") if v.strip()), progress)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {Path(args.out) / 'pseudo_labels.json'} in {time.monotonic() - t0:.0f} s")
    print_counts(counts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
