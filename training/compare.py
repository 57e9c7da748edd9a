"""Pose student candidates side by side with PP-TinyPose 256x192 and MoveNet thunder (issue 17 item 1).

``python -m training.compare --model M.onnx|M.pt [--model M2 ...] --gt GT.json --images DIR
[--reference out/tinypose_heatmap.onnx|none] [--teachers out/build_models/teachers|none]
[--tinypose-graph ../shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx|none]
[--out out/compare] [--limit N]``

Two sets, both with the GT person boxes: the COCO keypoints file ``--gt`` (e.g. the odd half of
``coco_train``, ``tools/split_coco.py``) and its CropCOCO twin
(:func:`probpose_core.data.cropcoco.make_cropcoco`, seed ``--crop-seed``, written under
``OUT/cropcoco/`` and reused while its seed and source match). ``--limit N`` keeps the first N
images of ``--gt`` (a copy under ``OUT/sets/``, the twin's source then; each image's crop
depends only on the seed and its id, so the images are cropped alike).

Models (rows of the table):

- **candidates** ``--model`` (repeatable, or a comma list): ProbPose students, ``.onnx`` with
  its sidecar or a ``.pt`` (exported once by ``runtime.make_runner``), labelled by file stem;
- **the reference** ``--reference`` (default ``out/tinypose_heatmap.onnx`` when present:
  PP-TinyPose 256x192 converted exactly, ``tools/tinypose_student_init.py --map-kind heatmap``
  + ``probpose export``), labelled ``--reference-label`` (default "PP-TinyPose-256"). A house
  model like the candidates and evaluated exactly like them; a heatmap model is read as the
  pipeline reads it (``pipeline.read_heatmaps``: UDP decode, presence = the heatmap maximum);
- **thunder** (optional): ``training.teachers.make_teacher("movenet", --teachers)`` on the same
  boxes. When ``movenet-thunder.onnx`` is not in ``--teachers`` (``tools/build_models.sh``
  builds it; usually absent) its cells read "–" with a note; ``--teachers none`` skips it.

Per model and set:

- **AP, Ex-AP**: :func:`training.evaluate.evaluate_model` (mAP, Ex-mAP at the best presence
  threshold and at the model's own, map coverage curve) on ONE ONNX Runtime runner per model
  (``--threads``), no flip test unless ``--flip-test`` (the deployed path, and the one timed).
  Thunder's predictions are written as a results file (keypoints ``x, y, presence := keypoint
  score``, ``visibilities`` := the same score, ``score`` = mean keypoint score) and scored by
  the same evaluator (:func:`training.evaluate.keypoint_metrics`).
- **In/out-of-window classification** (the seed paper's Fig. 5): over the labelled keypoints
  (v > 0, v = 3 included) of the GT instances, truth = the codec's presence target (the
  keypoint lies in its activation window, ``codec.encode``). For a scalar ``s`` the error at
  threshold ``t`` is the share of keypoints with ``(s >= t) != truth``; :func:`inout_error`
  gives the minimum over ``t``. Scalars: ``presence`` (a student's presence head; a heatmap
  model's heatmap maximum), ``map_max`` (the maximum of the model's map: a student's
  probability map, a heatmap model's raw heatmap), ``oks_quality``; thunder's keypoint score.
  On all keypoints and on a balanced subset (as many out- as in-window keypoints, drawn with
  ``--balance-seed``).
- **Coverage** of the regions at q = 0.5 / 0.9 / 0.95 (:data:`COVERAGE_LEVELS`), overall, per
  keypoint group (face 0-4, arms 5-10, legs 11-16) with the worst group, and **region size**
  (median region area / person box area). Where :mod:`probpose_core.evaluation.coverage` (the
  ``probpose coverage`` module, :func:`coverage_backend`) is there: the regions the model
  PUBLISHES (calibrated by its conformal coverage table when it has one, else the raw credible
  sets) over the labelled in-window keypoints it declares present, with the person-box size
  buckets too (:func:`published_coverage`). Always also, as ``coverage_raw_intervals`` (and the
  fallback without that module, :func:`coverage_summary`): the raw credible regions over all
  labelled in-window keypoints (the codec's ``map_weights``), overall = ``evaluate_model``'s map
  coverage curve (the GT pixel's credible interval, ties at the edge counted as
  ``calibration.coverage_curve`` does), groups from the same intervals (:func:`model_scores`),
  region area = the level-q credible set's map cells in image px.
- **Speed**, interleaved in one loop after a warm-up: ms per person at batch 1 on ONNX Runtime
  (``--threads`` intra-op threads, spinning off as deployed) of each house model's pipeline
  (crop + network + decode through :meth:`Pipeline.estimate` on one GT box, its default credible
  regions, as deployed) and its network alone (``runner.run`` on the prepared crop), of
  PP-TinyPose's ORIGINAL published graph alone (``--tinypose-graph``, on the same crop) and of
  thunder (crop + network); medians over ``--speed-people`` people x ``--speed-repeats``.

Verdicts (issue 17 item 1 and 2 targets, per candidate, :data:`TARGETS`): AP >= the
reference's AP; CropCOCO Ex-AP > the reference's best-threshold Ex-AP; CropCOCO in/out error of
the candidate's presence <= 0.7 x the error of thresholding the reference's heatmap maximum;
pipeline <= 15 ms per person; network <= 0.8 x the original TinyPose graph's network time in
the same run (and pipeline <= 0.8 x the reference's pipeline); coverage within q +- 0.03
overall and >= q - 0.05 for every group (and box-size bucket, where the coverage module gives
them), on each set.

Prints Markdown tables and the verdicts; writes ``OUT/compare.json`` and, per set and model,
``OUT/<set>/<label>/`` (evaluate_model's metrics, predictions, plots) and
``OUT/<set>/thunder_predictions.json``.
"""
import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probpose_core.calibration import coverage_curve, credible_interval
from probpose_core.data.coco import load_coco
from probpose_core.errors import InputError
from probpose_core.evaluation import load_predictions
from probpose_core.image_io import read_image
from probpose_core.jsonio import dump_json, load_json
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.pipeline import Pipeline, box_problems, read_heatmaps
from probpose_core.regions import credible_mask
from probpose_core.runtime.base import HEATMAP_OUTPUT
from probpose_core.spec import DEFAULT_PRESENCE_THRESHOLD, model_spec

from .evaluate import evaluate_model, keypoint_metrics, run_command

REPO = Path(__file__).resolve().parents[1]
SETS = ("coco_train", "cropcoco")
COVERAGE_LEVELS = (0.5, 0.9, 0.95)
#: keypoint groups (COCO-17 indices) of the per-group coverage
GROUPS = {"face": (0, 1, 2, 3, 4), "arms": (5, 6, 7, 8, 9, 10), "legs": (11, 12, 13, 14, 15, 16)}
#: targets of issue 17 items 1 and 2
TARGETS = {"inout_ratio": 0.7, "ms_per_person": 15.0, "speed_ratio": 0.8, "coverage_tolerance": 0.03,
           "group_coverage_margin": 0.05}
SCALARS = ("presence", "map_max", "oks_quality")
DEFAULT_REFERENCE = REPO / "out" / "tinypose_heatmap.onnx"
DEFAULT_REFERENCE_LABEL = "PP-TinyPose-256"
DEFAULT_TINYPOSE_GRAPH = REPO.parent / "shared" / "data" / "pp_tinypose" / "tinypose_256x192" / "model_from_ir.onnx"
DEFAULT_TEACHERS = "out/build_models/teachers"
THUNDER = "thunder"


# ------------------------------------------------------------------------------ sets

def limit_set(ann, out_path, limit: int | None) -> Path:
    """``ann`` itself, or a copy at ``out_path`` holding its first ``limit`` images and their annotations."""
    if limit is None:
        return Path(ann)
    data = load_coco(ann)
    images = data["images"][:limit]
    keep = {img["id"] for img in images}
    dump_json(dict(data, images=images, annotations=[a for a in data["annotations"] if a["image_id"] in keep]),
              out_path)
    return Path(out_path)


def cropcoco_twin(ann, images, out_dir, seed: int = 0, progress: bool = True) -> tuple[Path, Path]:
    """``(annotations.json, images/)`` of the CropCOCO twin of ``ann`` under ``out_dir``: made by
    ``make_cropcoco`` with ``seed``, or reused when one made from the same source and seed is there."""
    from probpose_core.data.cropcoco import make_cropcoco

    out_dir = Path(out_dir)
    path = out_dir / "annotations.json"
    source = str(Path(ann).resolve())
    if path.is_file():
        made = (load_json(path, "CropCOCO annotations").get("info") or {}).get("cropcoco") or {}
        if made.get("seed") == seed and made.get("source") == source:
            print(f"CropCOCO twin: reusing {path} (seed {seed})")
            return path, out_dir / "images"
    summary = make_cropcoco(source, images, out_dir, seed=seed, progress=progress, verbose=False)
    print(f"CropCOCO twin: wrote {summary['images_written']} images, {summary['instances_kept']} instances, "
          f"{summary['keypoints_pushed_out']} keypoints pushed out of the image -> {path}")
    return path, out_dir / "images"


def gt_boxes(gt: dict) -> list[tuple]:
    """``(image entry, annotation)`` of every non-crowd annotation, image by image, in file
    order: the boxes ``predict_images`` uses with an annotation file (invalid ones are skipped
    per frame by the caller, as there)."""
    by_image: dict = {}
    for ann in gt["annotations"]:
        if not ann.get("iscrowd", 0):
            by_image.setdefault(ann["image_id"], []).append(ann)
    return [(img, ann) for img in gt["images"] for ann in by_image.get(img["id"], [])]


# ------------------------------------------------------------------------------ models

def model_labels(paths) -> list[str]:
    """A unique label per model path: its file stem, with its folder's name where stems repeat."""
    stems = [Path(p).stem for p in paths]
    return [f"{Path(p).parent.name}/{s}" if stems.count(s) > 1 else s for p, s in zip(paths, stems)]


def split_models(values) -> list[str]:
    """``--model`` values (repeated and / or comma lists) as one list of paths."""
    return [part.strip() for value in values or () for part in str(value).split(",") if part.strip()]


def make_house_runner(model, threads: int = 2):
    """An ONNX Runtime runner (``threads`` intra-op threads) for ``model`` (.onnx, or a .pt
    checkpoint exported once by ``runtime.make_runner``), or ``model`` itself when it is a Runner."""
    if hasattr(model, "run"):
        return model
    from probpose_core.runtime import make_runner

    return make_runner(model, runtime="ort", threads=threads)


def load_thunder(teachers, threads: int = 2):
    """``(thunder, note)``: MoveNet thunder from the folder ``teachers``, or ``(None, why not)``
    when ``teachers`` is None or holds no ``movenet-thunder.onnx``."""
    if teachers is None:
        return None, "thunder not asked for (--teachers none)"
    if not (Path(teachers) / "movenet-thunder.onnx").is_file():
        return None, (f"thunder: no movenet-thunder.onnx in {teachers} (tools/build_models.sh builds it); "
                      "its cells read –")
    from .teachers import make_teacher

    try:
        return make_teacher("movenet", teachers, threads=threads), None
    except FileNotFoundError as exc:
        raise InputError(str(exc)) from None


class GraphNetwork:
    """A bare ONNX graph (one input) on ONNX Runtime with the house session options: the network
    alone of a published model (PP-TinyPose's ``model_from_ir.onnx``), for timing."""

    def __init__(self, path, threads: int = 2):
        import onnxruntime as ort

        from probpose_core.runtime.ort_runner import default_providers, session_options

        try:
            self.session = ort.InferenceSession(str(path), session_options(threads), providers=default_providers())
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise InputError(f"onnxruntime cannot load {path}: {exc}") from None
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        self.input_shape = tuple(d if isinstance(d, int) else -1 for d in first.shape)

    def fits(self, images) -> bool:
        """Whether ``images (N, 3, H, W)`` match the graph's input (any batch)."""
        return len(self.input_shape) == 4 and tuple(images.shape[1:]) == self.input_shape[1:]

    def run(self, images):
        return self.session.run(None, {self.input_name: np.asarray(images, dtype=np.float32)})


# ------------------------------------------------------------------------------ thunder

def thunder_predictions(thunder, gt: dict, images_dir, progress: bool = True) -> dict:
    """``{annotation id: (17, 3) x, y, score}`` of ``thunder.predict`` on every usable GT box."""
    from tqdm import tqdm

    out: dict = {}
    frame, frame_id = None, None
    for img, ann in tqdm(gt_boxes(gt), desc="thunder", unit="person", disable=not progress, file=sys.stderr):
        if img["id"] != frame_id:
            frame, frame_id = read_image(Path(images_dir) / img["file_name"]), img["id"]
        if box_problems([ann["bbox"]], frame.shape)[0] is None:
            out[ann["id"]] = np.asarray(thunder.predict(frame, ann["bbox"]), dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    return out


def thunder_results(gt: dict, predictions: dict) -> list[dict]:
    """Results-format entries (the evaluator's input) of :func:`thunder_predictions`."""
    results = []
    for img, ann in gt_boxes(gt):
        pred = predictions.get(ann["id"])
        if pred is None:
            continue
        score = np.clip(pred[:, 2], 0.0, 1.0)
        keypoints = np.concatenate([pred[:, :2], score[:, None]], axis=1)
        results.append({"image_id": img["id"], "category_id": 1, "keypoints": [float(v) for v in keypoints.ravel()],
                        "visibilities": [float(v) for v in score], "score": float(score.mean())})
    return results


def thunder_metrics(gt_path, predictions: dict, out_path) -> dict:
    """AP and Ex-AP (best threshold) of thunder's predictions, written to ``out_path`` first."""
    gt = load_coco(gt_path)
    dump_json(thunder_results(gt, predictions), out_path)
    return keypoint_metrics(gt, load_predictions(out_path, gt), DEFAULT_PRESENCE_THRESHOLD)


# ------------------------------------------------------------------------------ per keypoint

def model_scores(runner, instances, images_dir, codec, flip_test: bool = False,
                 levels=COVERAGE_LEVELS) -> dict:
    """A house model's per-keypoint numbers on GT ``instances`` with the codec's targets.

    The same crops and flip merge as ``gt_outputs`` (:meth:`Pipeline.crops` / :meth:`Pipeline.infer`),
    image by image. Returns arrays in the order of ``instances``, (N, K) unless noted:
    ``presence`` (a heatmap model: the heatmap maximum, as ``read_heatmaps`` gives it),
    ``map_max`` (the maximum of each probability map; of each raw heatmap for a heatmap model),
    ``oks_quality`` (a heatmap model: its UDP confidence), ``presence_target``,
    ``keypoint_weights`` and ``map_weights`` (``codec.encode``), ``level_lo`` / ``level_hi``
    (the credible interval of the GT pixel, NaN off the map, as ``gt_outputs``) and
    ``region_share`` (N, K, len(levels)): area of the level-q credible region (its map cells, in
    image px) / the GT box's area.
    """
    pipe = Pipeline(runner, codec=codec, flip_test=flip_test, credible_levels=())
    codec = pipe.codec
    by_image: dict = {}
    for row, inst in enumerate(instances):
        by_image.setdefault(inst.file_name, []).append(row)
    keys = ("presence", "map_max", "oks_quality", "presence_target", "keypoint_weights", "map_weights",
            "level_lo", "level_hi")
    out = {k: np.zeros((len(instances), NUM_KEYPOINTS)) for k in keys}
    out["region_share"] = np.zeros((len(instances), NUM_KEYPOINTS, len(levels)))
    for file_name, rows in by_image.items():
        boxes = np.stack([instances[r].bbox for r in rows])
        images, center, scale = pipe.crops(read_image(Path(images_dir) / file_name), boxes)
        result = pipe.infer(images)
        kpts = np.stack([instances[r].keypoints for r in rows])
        targets = codec.encode(kpts[..., :2], kpts[..., 2].astype(np.int64), [instances[r].area for r in rows],
                               center, scale)
        if HEATMAP_OUTPUT in result:  # a heatmap model: read as the pipeline reads it
            raw = np.asarray(result[HEATMAP_OUTPUT], dtype=np.float64)
            _, presence, quality, maps = read_heatmaps(codec, raw, center, scale)
            out["map_max"][rows] = raw.max(axis=(-2, -1))
        else:
            maps = np.asarray(result["prob_maps"], dtype=np.float64)
            presence, quality = result["presence"], result["oks_quality"]
            out["map_max"][rows] = maps.max(axis=(-2, -1))
        out["presence"][rows] = presence
        out["oks_quality"][rows] = quality
        out["presence_target"][rows] = targets["presence"]
        out["keypoint_weights"][rows] = targets["keypoint_weights"]
        out["map_weights"][rows] = targets["map_weights"]
        out["level_lo"][rows], out["level_hi"][rows] = credible_interval(maps, targets["keypoints_map"])
        h, w = maps.shape[-2:]
        cell = (scale[:, 0] / (w - 1)) * (scale[:, 1] / (h - 1))  # image px^2 per map cell (UDP: geometry), (n,)
        box = np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
        for j, q in enumerate(levels):
            cells = credible_mask(maps, q).sum(axis=(-2, -1))  # (n, K)
            out["region_share"][rows, :, j] = cells * (cell / box)[:, None]
    return out


def coverage_backend():
    """The module behind ``probpose coverage`` (:mod:`probpose_core.evaluation.coverage`, issue 17
    item 2: coverage and region size of the PUBLISHED regions, conformally calibrated when the
    model carries a coverage table), or None where this checkout has none: the coverage and
    region-size columns then come from the raw credible intervals (:func:`coverage_summary`)."""
    try:
        from probpose_core.evaluation import coverage
    except ImportError:
        return None
    return coverage


def _worst(groups: dict, keys) -> dict:
    """``{q: {"group", "coverage"} or None}``: the lowest of ``groups {name: {q: share or None}}``."""
    worst = {}
    for k in keys:
        known = [(groups[g][k], g) for g in groups if groups[g][k] is not None]
        worst[k] = None if not known else {"group": min(known)[1], "coverage": min(known)[0]}
    return worst


def coverage_summary(scores: dict, calibration: dict | None, levels=COVERAGE_LEVELS) -> dict:
    """Coverage and region size of one model on one set from the RAW credible intervals (the
    regions of a model without a coverage table; the fallback of :func:`published_coverage`).

    ``{"overall": {q: share}`` (evaluate_model's curve, ``calibration``), ``"overall_recount"``
    (the same from ``scores``' intervals: a check), ``"groups": {group: {q: share}}``, ``"worst":
    {q: {"group", "coverage"}}``, ``"region_share": {q: median}``, ``"keypoints"``: how many
    keypoints count (labelled, in the window, on the map)}; q as ``"0.5"`` etc. None where
    nothing counts."""
    lo, hi, weights = scores["level_lo"], scores["level_hi"], scores["map_weights"]
    keys = [f"{q:g}" for q in levels]

    def curve(index) -> dict:
        values = coverage_curve(lo[:, index], weights[:, index], levels, hi[:, index])
        return {k: _number(v) for k, v in zip(keys, values)}

    groups = {name: curve(list(index)) for name, index in GROUPS.items()}
    counted = (weights > 0) & np.isfinite(lo)
    shares = scores["region_share"][counted]  # (M, L)
    return {"source": "raw credible intervals (evaluate_model's coverage curve; groups from the same intervals)",
            "keypoints": int(counted.sum()), "overall": coverage_at(calibration, levels),
            "overall_recount": curve(slice(None)), "groups": groups, "worst": _worst(groups, keys),
            "region_share": {k: _number(np.median(shares[:, j])) if len(shares) else None for j, k in enumerate(keys)}}


def published_coverage(module, runner, spec, ann, images, flip_test: bool = False, progress: bool = True,
                       levels=COVERAGE_LEVELS) -> dict:
    """Coverage and region size of the regions the model PUBLISHES, by ``module``
    (:func:`coverage_backend`): its ``collect_keypoints`` (labelled in-window keypoints the model
    declares present) and ``coverage_report`` with the model's coverage table ("calibrated"), or
    the raw credible sets when it has none ("raw"). The shape of :func:`coverage_summary` plus
    ``"buckets"`` / ``"worst_bucket"`` (person-box size) and ``"ellipse"`` (the level-q ellipse's
    overall coverage); raises InputError when no keypoint counts."""
    table = getattr(spec, "coverage", None)
    samples = module.collect_keypoints(runner, spec, ann, images, flip_test=flip_test, progress=progress)
    report = module.coverage_report(samples, table, levels)
    reading = "calibrated" if report.get("calibrated") else "raw"
    entries = {f"{float(q):g}": e for q, e in report[reading].items()}
    keys = [f"{q:g}" for q in levels]
    region = {k: entries[k]["region"] for k in keys}
    groups = {g: {k: region[k]["groups"][g]["coverage"] for k in keys} for g in report["groups"]}
    buckets = {b: {k: region[k]["buckets"][b]["coverage"] for k in keys} for b in region[keys[0]]["buckets"]}
    return {"source": f"{module.__name__} ({reading} regions: "
                      + ("the model's coverage table" if reading == "calibrated" else "no coverage table") + ")",
            "reading": reading, "keypoints": int(report["n"]),
            "overall": {k: _number(region[k]["overall"]["coverage"]) for k in keys},
            "groups": groups, "worst": _worst(groups, keys),
            "buckets": buckets, "bucket_n": {b: region[keys[0]]["buckets"][b]["n"] for b in buckets},
            "worst_bucket": _worst(buckets, keys),
            "region_share": {k: _number(region[k]["median_area_over_box"]) for k in keys},
            "ellipse": {k: _number(entries[k]["ellipse"]["overall"]["coverage"]) for k in keys}}


# ------------------------------------------------------------------------------ in / out of window

def inout_error(scores, truth) -> tuple[float, float]:
    """``(error, threshold)``: the smallest share of keypoints with ``(score >= t) != truth``
    over all thresholds ``t`` (every distinct score, and one just above the largest: nothing
    positive); the lowest such ``t`` on ties. Non-finite scores are left out; NaN without data."""
    s = np.asarray(scores, dtype=np.float64).ravel()
    y = np.asarray(truth).ravel().astype(bool)
    if s.shape != y.shape:
        raise InputError(f"{s.size} scores but {y.size} truth values")
    keep = np.isfinite(s)
    s, y = s[keep], y[keep]
    if s.size == 0:
        return float("nan"), float("nan")
    values = np.unique(s)
    thresholds = np.append(values, np.nextafter(values[-1], np.inf))
    positives, negatives = np.sort(s[y]), np.sort(s[~y])
    missed = np.searchsorted(positives, thresholds, side="left")  # truth but s < t
    false = len(negatives) - np.searchsorted(negatives, thresholds, side="left")  # not truth but s >= t
    errors = (missed + false) / s.size
    best = int(np.argmin(errors))
    return float(errors[best]), float(thresholds[best])


def balanced_subset(truth, seed: int = 0) -> np.ndarray | None:
    """Sorted indices of as many out- as in-window keypoints (all of the smaller class, a seeded
    draw of the larger), or None when one class is empty."""
    y = np.asarray(truth).ravel().astype(bool)
    inside, outside = np.flatnonzero(y), np.flatnonzero(~y)
    n = min(len(inside), len(outside))
    if n == 0:
        return None
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.choice(inside, n, replace=False), rng.choice(outside, n, replace=False)]))


def inout_summary(scalars: dict, truth, seed: int = 0) -> dict:
    """In/out errors ``{"error", "threshold"}`` of every scalar (each (M,), aligned with
    ``truth (M,)``) on all keypoints and on the balanced subset (None when a class is empty)."""
    truth = np.asarray(truth).ravel().astype(bool)
    subsets = {"all": np.arange(truth.size), "balanced": balanced_subset(truth, seed)}
    out = {}
    for name, index in subsets.items():
        if index is None:
            out[name] = None
            continue
        entry = {"keypoints": int(index.size), "in_window": int(truth[index].sum()),
                 "out_of_window": int((~truth[index]).sum())}
        for key, values in scalars.items():
            error, threshold = inout_error(np.asarray(values).ravel()[index], truth[index])
            entry[key] = {"error": _number(error), "threshold": _number(threshold)}
        out[name] = entry
    return out


def inout_ratio(candidate: dict | None, reference: dict | None, key: str = "presence",
                against: str = "presence") -> float | None:
    """``candidate[key]`` error / ``reference[against]`` error (entries of :func:`inout_summary`), or None."""
    if candidate is None or reference is None or key not in candidate or against not in reference:
        return None
    a, b = candidate[key]["error"], reference[against]["error"]
    if a is None or b is None or b <= 0:
        return None
    return a / b


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def coverage_at(calibration: dict | None, levels=COVERAGE_LEVELS) -> dict:
    """``{"0.5": share, ...}`` read off evaluate_model's map coverage curve (None where absent)."""
    out = {f"{q:g}": None for q in levels}
    if not calibration or not calibration.get("maps"):
        return out
    grid, coverage = calibration["maps"]["grid"], calibration["maps"]["coverage"]
    for q in levels:
        hits = [c for g, c in zip(grid, coverage) if abs(g - q) < 1e-9]
        out[f"{q:g}"] = hits[0] if hits else None
    return out


# ------------------------------------------------------------------------------ speed

def _ms(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return 1000.0 * (time.perf_counter() - t0)


def measure_speed(runners: dict, samples: list, thunder=None, graph=None, repeats: int = 5,
                  warmup: int = 1) -> dict:
    """Median ms per person at batch 1, every job interleaved person by person.

    ``runners``: ``{label: runner}`` of house models: ``pipeline`` (crop + network + decode,
    :meth:`Pipeline.estimate` with its default credible regions and the model's spec) and
    ``network`` (``runner.run`` on the prepared crop); ``graph``: a :class:`GraphNetwork` timed
    on the crop of the first house model whose crop fits it; ``thunder``: crop + network.
    ``samples`` = ``[(frame, box_xywh)]``, each job run ``warmup`` times, then ``repeats`` times.
    Returns ``{"people", "repeats", "models": {label: {"pipeline_ms", "network_ms"}},
    "tinypose_graph_ms", "thunder_ms"}`` (None for what was not timed).
    """
    jobs: dict = {}
    graph_crops = None
    for label, runner in runners.items():
        pipe = Pipeline(runner, spec=model_spec(runner), flip_test=False)
        crops = [pipe.crops(frame, np.asarray(box, dtype=np.float64)[None])[0] for frame, box in samples]
        jobs[(label, "pipeline")] = [lambda p=pipe, f=f, b=b: p.estimate(f, np.asarray(b, dtype=np.float64)[None])
                                     for f, b in samples]
        jobs[(label, "network")] = [lambda r=runner, c=c: r.run(c) for c in crops]
        if graph is not None and graph_crops is None and crops and graph.fits(crops[0]):
            graph_crops = crops
    if graph_crops is not None:
        jobs[("tinypose_graph", "network")] = [lambda c=c: graph.run(c) for c in graph_crops]
    if thunder is not None:
        jobs[(THUNDER, "pipeline")] = [lambda f=f, b=b: thunder.predict(f, b) for f, b in samples]
    for calls in jobs.values():
        for _ in range(warmup):
            for call in calls:
                call()
    times: dict = {k: [] for k in jobs}
    for _ in range(repeats):
        for i in range(len(samples)):
            for key, calls in jobs.items():
                times[key].append(_ms(calls[i]))
    median = {k: statistics.median(v) for k, v in times.items()}
    return {"people": len(samples), "repeats": repeats,
            "models": {label: {"pipeline_ms": median[(label, "pipeline")], "network_ms": median[(label, "network")]}
                       for label in runners},
            "tinypose_graph_ms": median.get(("tinypose_graph", "network")),
            "thunder_ms": median.get((THUNDER, "pipeline"))}


def speed_samples(instances, images_dir, count: int) -> list:
    """``[(frame, box)]`` of the first ``count`` GT instances."""
    frames: dict = {}
    out = []
    for inst in instances[:count]:
        if inst.file_name not in frames:
            frames[inst.file_name] = read_image(Path(images_dir) / inst.file_name)
        out.append((frames[inst.file_name], inst.bbox.tolist()))
    return out


# ------------------------------------------------------------------------------ the run

def compare(models, gt, images, out, reference=None, reference_label: str = DEFAULT_REFERENCE_LABEL,
            thunder=None, teachers=None, tinypose_graph=None, limit: int | None = None, crop_seed: int = 0,
            balance_seed: int = 0, flip_test: bool = False, threads: int = 2, speed_people: int = 10,
            speed_repeats: int = 5, progress: bool = True) -> dict:
    """Run everything (module docstring). ``models``: the candidates (paths or Runners; a dict
    ``{label: model}`` to name them); ``reference``: a house model (path or Runner) or None;
    ``thunder``: an object with ``predict(frame_rgb, box_xywh) -> (17, 3)``, else MoveNet thunder
    from ``teachers`` when that folder holds it (else no thunder, with a note);
    ``tinypose_graph``: PP-TinyPose's published ONNX graph (timed alone) or None. Writes
    ``out/compare.json`` and returns its content."""
    from probpose_core.data.instances import load_instances

    out = Path(out)
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"images folder not found: {images}")
    if not isinstance(models, dict):
        models = list(models) if isinstance(models, (list, tuple)) else [models]
        if not models:
            raise InputError("no candidate model (--model)")
        names = [m if isinstance(m, (str, Path)) else type(m).__name__ for m in models]
        models = dict(zip(model_labels(names), models))
    if reference is not None and reference_label in models:
        raise InputError(f"the reference label {reference_label!r} is also a candidate's")
    notes = []
    if thunder is None:
        thunder, note = load_thunder(teachers, threads)
        notes += [note] if note else []
    graph = None
    if tinypose_graph is not None:
        if Path(tinypose_graph).is_file():
            graph = GraphNetwork(tinypose_graph, threads)
        else:
            notes.append(f"PP-TinyPose's original graph not timed: {tinypose_graph} not found")
    roles = {label: "candidate" for label in models}
    house = dict(models)
    if reference is not None:
        house[reference_label] = reference
        roles[reference_label] = "reference"
    runners = {label: make_house_runner(m, threads) for label, m in house.items()}
    specs = {label: model_spec(r) for label, r in runners.items()}

    coco_ann = limit_set(gt, out / "sets" / f"coco_train_first{limit}.json", limit)
    crop_ann, crop_images = cropcoco_twin(coco_ann, images, out / "cropcoco", seed=crop_seed, progress=progress)
    sets = {"coco_train": (coco_ann, images), "cropcoco": (crop_ann, crop_images)}

    def describe(label, model):
        return {"label": label, "role": roles[label],
                "model": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                "runtime": getattr(runners[label], "name", type(runners[label]).__name__),
                "map_kind": specs[label].map_kind, "presence_threshold": specs[label].presence_threshold,
                "coverage_calibrated": bool(getattr(specs[label], "coverage", None)),
                "padding": specs[label].codec.padding}

    result: dict = {
        "settings": {"gt": str(gt), "images": str(images), "limit": limit, "crop_seed": crop_seed,
                     "balance_seed": balance_seed, "flip_test": bool(flip_test), "threads": threads,
                     "reference": reference_label if reference is not None else None,
                     "thunder": None if thunder is None else getattr(thunder, "name", type(thunder).__name__),
                     "thunder_padding": None if thunder is None else getattr(thunder, "padding", None),
                     "tinypose_graph": None if graph is None else str(tinypose_graph),
                     "coverage_levels": list(COVERAGE_LEVELS), "groups": {k: list(v) for k, v in GROUPS.items()}},
        "models": [describe(label, m) for label, m in house.items()],
        "notes": notes, "sets": {}, "targets": dict(TARGETS)}
    backend = coverage_backend()
    result["settings"]["coverage_source"] = (backend.__name__ if backend is not None else
                                             "raw credible intervals (no probpose_core.evaluation.coverage here)")
    coco_instances = None
    for name, (ann, img_dir) in sets.items():
        print(f"== {name}: {ann}", flush=True)
        instances, _ = load_instances(ann, images_dir=img_dir)
        if name == "coco_train":
            coco_instances = instances
        entry = {"ann": str(ann), "images": str(img_dir), "models": {}}
        truth = labelled = None
        for label, runner in runners.items():
            metrics = evaluate_model(runner, ann, img_dir, flip_test=flip_test, out_dir=out / name / _safe(label),
                                     progress=progress)
            entry.setdefault("counts", metrics["counts"])
            scores = model_scores(runner, instances, img_dir, specs[label].codec, flip_test)
            mine = scores["keypoint_weights"] > 0
            if labelled is None:
                labelled, truth = mine, scores["presence_target"][mine]
            entry["models"][label] = {
                "role": roles[label], "AP": metrics["AP"], "Ex-AP": metrics["Ex-AP"],
                "presence_threshold": metrics["presence_threshold"],
                "Ex-AP_at_own_threshold": metrics["at_checkpoint_threshold"]["Ex-AP"],
                "own_threshold": metrics["checkpoint_presence_threshold"],
                "coverage": None,
                "coverage_raw_intervals": coverage_summary(scores, metrics["calibration"]),
                "inout": inout_summary({k: scores[k][mine] for k in SCALARS}, scores["presence_target"][mine],
                                       balance_seed),
                "calibration": metrics["calibration"]}
            model_entry = entry["models"][label]
            model_entry["coverage"] = model_entry["coverage_raw_intervals"]
            if backend is not None:
                try:
                    model_entry["coverage"] = published_coverage(backend, runner, specs[label], ann, img_dir,
                                                                 flip_test, progress)
                except InputError as exc:
                    notes.append(f"{label} on {name}: no published coverage ({exc}); raw credible intervals shown")
        if thunder is not None:
            preds = thunder_predictions(thunder, load_coco(ann), img_dir, progress)
            th = thunder_metrics(ann, preds, out / name / "thunder_predictions.json")
            score = np.stack([preds[i.ann_id][:, 2] if i.ann_id in preds else np.full(NUM_KEYPOINTS, np.nan)
                              for i in instances]) if instances else np.zeros((0, NUM_KEYPOINTS))
            entry["models"][THUNDER] = {
                "role": "thunder", "AP": th["AP"], "Ex-AP": th["Ex-AP"], "presence_threshold": th["presence_threshold"],
                "predictions": len(preds),
                "inout": (inout_summary({"presence": score[labelled]}, truth, balance_seed)
                          if labelled is not None else None)}
        result["sets"][name] = entry
    samples = speed_samples(coco_instances or [], images, speed_people)
    result["speed"] = (measure_speed(runners, samples, thunder, graph, speed_repeats) if samples else None)
    result["verdicts"] = verdicts(result)
    dump_json(result, out / "compare.json")
    return result


def _safe(label: str) -> str:
    return label.replace("/", "_")


# ------------------------------------------------------------------------------ verdicts

def verdicts(result: dict) -> list[dict]:
    """One entry per candidate and target: ``{"model", "target", "value", "ok"}`` (ok None: not
    measurable, e.g. without a reference or an original graph to time)."""
    out = []
    ref = result["settings"].get("reference")
    speed = result.get("speed") or {}
    sets = result["sets"]
    candidates = [m["label"] for m in result["models"] if m["role"] == "candidate"]

    def model(set_name, label):
        return sets[set_name]["models"].get(label) if label else None

    for label in candidates:
        def add(target, value, ok):
            out.append({"model": label, "target": target, "value": value, "ok": ok})

        c, r = model("coco_train", label), model("coco_train", ref)
        add(f"AP coco_train >= {ref or 'reference'}'s", _vs(c["AP"], r and r["AP"]),
            None if r is None else bool(c["AP"] >= r["AP"]))
        c, r = model("cropcoco", label), model("cropcoco", ref)
        add(f"Ex-AP CropCOCO > {ref or 'reference'}'s (best thresholds)", _vs(c["Ex-AP"], r and r["Ex-AP"]),
            None if r is None else bool(c["Ex-AP"] > r["Ex-AP"]))
        for subset in ("all", "balanced"):
            ratio = inout_ratio(c["inout"][subset], r["inout"][subset] if r else None)
            add(f"in/out error CropCOCO ({subset}) <= {TARGETS['inout_ratio']} x {ref or 'reference'}'s "
                "heatmap maximum", "n/a" if ratio is None else f"{ratio:.2f} x", None if ratio is None
                else bool(ratio <= TARGETS["inout_ratio"]))
        timed = (speed.get("models") or {}).get(label)
        if timed:
            add(f"ms/person <= {TARGETS['ms_per_person']:g} (pipeline)", f"{timed['pipeline_ms']:.1f} ms",
                bool(timed["pipeline_ms"] <= TARGETS["ms_per_person"]))
            graph = speed.get("tinypose_graph_ms")
            add(f"network <= {TARGETS['speed_ratio']} x PP-TinyPose's original graph",
                "n/a" if not graph else f"{timed['network_ms']:.1f} / {graph:.1f} ms = "
                                        f"{timed['network_ms'] / graph:.2f} x",
                None if not graph else bool(timed["network_ms"] <= TARGETS["speed_ratio"] * graph))
            ref_time = (speed.get("models") or {}).get(ref) if ref else None
            add(f"pipeline <= {TARGETS['speed_ratio']} x {ref or 'reference'}'s pipeline",
                "n/a" if not ref_time else f"{timed['pipeline_ms']:.1f} / {ref_time['pipeline_ms']:.1f} ms = "
                                           f"{timed['pipeline_ms'] / ref_time['pipeline_ms']:.2f} x",
                None if not ref_time else bool(timed["pipeline_ms"] <= TARGETS["speed_ratio"] * ref_time["pipeline_ms"]))
        for set_name in SETS:
            cov = model(set_name, label)["coverage"]
            for q in cov["overall"]:
                share, worst = cov["overall"][q], cov["worst"][q]
                bucket = (cov.get("worst_bucket") or {}).get(q)
                target, floor = float(q), float(q) - TARGETS["group_coverage_margin"]
                ok = None if share is None or worst is None else bool(
                    abs(share - target) <= TARGETS["coverage_tolerance"] + 1e-12
                    and worst["coverage"] >= floor - 1e-12 and (bucket is None or bucket["coverage"] >= floor - 1e-12))
                value = "n/a" if ok is None else f"{share:.3f}, worst group {worst['group']} {worst['coverage']:.3f}"
                if ok is not None and bucket is not None:
                    n = (cov.get("bucket_n") or {}).get(bucket["group"])
                    value += f", worst box bucket {bucket['group']} {bucket['coverage']:.3f}" + (
                        "" if n is None else f" (n {n})")
                add(f"coverage@{q} {set_name}: {q} +- {TARGETS['coverage_tolerance']} overall, "
                    f">= {floor:.2f} every group" + (" and box bucket" if "worst_bucket" in cov else ""), value, ok)
    return out


def _vs(a, b) -> str:
    return f"{a:.3f}" if b is None else f"{a:.3f} vs {b:.3f}"


# ------------------------------------------------------------------------------ report

def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _err(entry, key="presence") -> str:
    if entry is None or key not in entry or entry[key]["error"] is None:
        return "–"
    return f"{entry[key]['error']:.3f} @ {entry[key]['threshold']:.2f}"


def _coverage_cell(cov, q) -> str:
    if cov is None or cov["overall"].get(q) is None:
        return "–"
    worst = cov["worst"].get(q)
    return f"{cov['overall'][q]:.2f}" + ("" if worst is None else f" / {worst['group']} {worst['coverage']:.2f}")


def _rows(result) -> list[str]:
    labels = [m["label"] for m in result["models"]]
    return labels + [THUNDER]


def format_report(result: dict) -> str:
    """The Markdown tables, notes and verdicts."""
    settings, speed = result["settings"], result.get("speed") or {}
    c_set, k_set = result["sets"]["coco_train"], result["sets"]["cropcoco"]
    levels = [f"{q:g}" for q in settings["coverage_levels"]]
    ref = settings.get("reference")
    counts = c_set.get("counts") or {}
    lines = [
        f"Candidates vs {ref or 'no reference'} vs MoveNet thunder, GT boxes, flip test "
        f"{'on' if settings['flip_test'] else 'off'}, {counts.get('images', '?')} images "
        f"({counts.get('gt_instances', '?')} / {(k_set.get('counts') or {}).get('gt_instances', '?')} GT instances "
        f"with keypoints in coco_train / CropCOCO); ONNX Runtime, batch 1, {settings['threads']} threads; "
        f"speed: medians over {speed.get('people', 0)} people x {speed.get('repeats', 0)} repetitions, interleaved",
        "",
        "| model | AP (coco_train) | Ex-AP (CropCOCO, best thr) | in/out error (CropCOCO; presence, map max) | "
        + " | ".join(f"coverage@{q} (overall / worst group)" for q in levels)
        + " | region size @" + " / @".join(levels) + " (median area / box area) | ms/person (pipeline; network) |",
        "|---|---|---|---|" + "---|" * len(levels) + "---|---|",
    ]
    for label in _rows(result):
        c, k = c_set["models"].get(label), k_set["models"].get(label)
        timed = (speed.get("models") or {}).get(label)
        if label == THUNDER:
            ms = _f(speed.get("thunder_ms"), 1)
        else:
            ms = "–" if not timed else f"{timed['pipeline_ms']:.1f}; {timed['network_ms']:.1f}"
            if label == ref and speed.get("tinypose_graph_ms") is not None:
                ms += f" (original graph {speed['tinypose_graph_ms']:.1f})"
        if c is None:
            lines.append(f"| {label} | – | – | – | " + "– | " * len(levels) + "– | – |")
            continue
        inout = (k.get("inout") or {}).get("all") if k else None
        err = _err(inout)
        if inout and "map_max" in inout:
            err += f"; {_err(inout, 'map_max')}"
        cov = c.get("coverage")
        region = "–" if cov is None else " / ".join(_f(cov["region_share"][q], 3) for q in levels)
        lines.append(f"| {label} | {_f(c['AP'])} | {_f(k['Ex-AP'])} @ {k['presence_threshold']:.2f} | {err} | "
                     + " | ".join(_coverage_cell(cov, q) for q in levels) + f" | {region} | {ms} |")
    lines += ["", "Per set (coverage and region size also on the CropCOCO twin; in/out on all labelled keypoints "
                  "and on the balanced subset):", "",
              "| set | model | AP | Ex-AP @ best thr | Ex-AP @ own thr | in window / out | in/out error all: "
              "presence / map max / OKS-quality | balanced: presence / map max | "
              + " | ".join(f"coverage@{q}" for q in levels) + " | region size |",
              "|---|---|---|---|---|---|---|---|" + "---|" * len(levels) + "---|"]
    for set_name in SETS:
        for label in _rows(result):
            e = result["sets"][set_name]["models"].get(label)
            if e is None:
                continue
            a, b = (e.get("inout") or {}).get("all"), (e.get("inout") or {}).get("balanced")
            errs = (lambda x, keys: "–" if x is None else " / ".join(
                _f(x[key]["error"]) for key in keys if key in x))
            cov = e.get("coverage")
            counts_cell = "–" if a is None else f"{a['in_window']} / {a['out_of_window']}"
            lines.append(
                f"| {set_name} | {label} | {_f(e['AP'])} | {_f(e['Ex-AP'])} @ {e['presence_threshold']:.2f} | "
                f"{_f(e.get('Ex-AP_at_own_threshold'))} | {counts_cell} | {errs(a, SCALARS)} | "
                f"{errs(b, SCALARS[:2])} | " + " | ".join(_coverage_cell(cov, q) for q in levels) + " | "
                + ("–" if cov is None else " / ".join(_f(cov["region_share"][q]) for q in levels)) + " |")
    lines += ["", f"Coverage and region size: {settings.get('coverage_source', 'raw credible intervals')}."]
    for label in [m["label"] for m in result["models"]]:
        cov = c_set["models"][label]["coverage"]
        lines.append(f"- {label}: {cov['source']}, {cov['keypoints']} keypoints on coco_train")
    if result.get("notes"):
        lines += [""] + [f"Note: {n}" for n in result["notes"]]
    lines += ["", "| model | target | value | verdict |", "|---|---|---|---|"]
    for v in result["verdicts"]:
        verdict = "n/a" if v["ok"] is None else ("met" if v["ok"] else "MISSED")
        lines.append(f"| {v['model']} | {v['target']} | {v['value']} | {verdict} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI

def _optional_path(value: str, default: Path) -> Path | None:
    """``"none"`` -> None; ``"auto"`` -> ``default`` when it exists, else None; else the path."""
    if value.lower() == "none":
        return None
    if value.lower() == "auto":
        return default if default.is_file() else None
    return Path(value)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.compare", description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", required=True,
                        help="a candidate student: exported .onnx (+ sidecar) or our .pt; repeat it or give a "
                             "comma list for several")
    parser.add_argument("--reference", default="auto",
                        help="the house reference model (.onnx + sidecar or .pt), evaluated like the candidates; "
                             f"'auto' (default): {DEFAULT_REFERENCE.relative_to(REPO)} when present; 'none': no reference")
    parser.add_argument("--reference-label", default=DEFAULT_REFERENCE_LABEL,
                        help=f"its row label (default {DEFAULT_REFERENCE_LABEL})")
    parser.add_argument("--tinypose-graph", default="auto",
                        help="PP-TinyPose's original ONNX graph, timed alone; 'auto' (default): "
                             "../shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx when present; 'none'")
    parser.add_argument("--gt", required=True, help="COCO keypoints GT (e.g. out/ship_student/splits/odd.json)")
    parser.add_argument("--images", required=True, help="its images folder")
    parser.add_argument("--teachers", default=DEFAULT_TEACHERS,
                        help="folder with movenet-thunder.onnx (tools/build_models.sh); thunder's cells read – "
                             "when it is not there; 'none': no thunder")
    parser.add_argument("--out", default="out/compare", help="output folder (compare.json, CropCOCO twin, ...)")
    parser.add_argument("--limit", type=int, help="only the first N images (quick runs)")
    parser.add_argument("--crop-seed", type=int, default=0, help="seed of the CropCOCO twin (default 0)")
    parser.add_argument("--balance-seed", type=int, default=0, help="seed of the balanced in/out subset")
    parser.add_argument("--flip-test", action="store_true", help="house models with the flip test (not timed)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads, every model (default 2)")
    parser.add_argument("--speed-people", type=int, default=10, help="people timed (default 10)")
    parser.add_argument("--speed-repeats", type=int, default=5, help="timed repetitions after warm-up (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("compare: error: --limit must be at least 1", file=sys.stderr)
        return 2
    reference = _optional_path(args.reference, DEFAULT_REFERENCE)
    graph = _optional_path(args.tinypose_graph, DEFAULT_TINYPOSE_GRAPH)
    teachers = None if args.teachers.lower() == "none" else args.teachers

    def action():
        if reference is not None and not reference.is_file():
            raise InputError(f"reference model not found: {reference}")
        result = compare(split_models(args.model), args.gt, args.images, args.out, reference=reference,
                         reference_label=args.reference_label, teachers=teachers, tinypose_graph=graph,
                         limit=args.limit, crop_seed=args.crop_seed, balance_seed=args.balance_seed,
                         flip_test=args.flip_test, threads=args.threads, speed_people=args.speed_people,
                         speed_repeats=args.speed_repeats, progress=not args.quiet)
        print(format_report(result))
        print(f"wrote {Path(args.out) / 'compare.json'}")

    return run_command("compare", action)


if __name__ == "__main__":
    sys.exit(main())
