"""The shipped student against MoveNet thunder, side by side in one run (issue 9, item 3).

``python -m training.compare_thunder --model M.onnx|M.pt --gt GT.json --images DIR
[--teachers out/build_models/teachers] [--out out/compare] [--limit N]``

Two sets, both with the GT person boxes: the COCO keypoints file ``--gt`` (``coco_train``) and
its CropCOCO twin (:func:`probpose_core.data.cropcoco.make_cropcoco`, seed ``--crop-seed``,
written under ``OUT/cropcoco/`` and reused while its seed and source match). ``--limit N``
keeps the first N images of ``--gt`` (a copy under ``OUT/sets/``, the twin's source then;
each image's crop depends only on the seed and its id, so the images are cropped alike).

- **Student**: :func:`training.evaluate.evaluate_model` on each set (mAP, Ex-mAP at the best
  presence threshold and at the model's own, map coverage) on ONE ONNX Runtime runner
  (``--threads``, a ``.pt`` is exported once by ``runtime.make_runner``), no flip test unless
  ``--flip-test`` (the deployed path, and the one timed below).
- **Thunder**: ``training.teachers.make_teacher("movenet", --teachers)`` on the same boxes (every
  non-crowd annotation with a usable box, as ``predict_images`` takes them); its predictions are
  written as a results file (keypoints ``x, y, presence := keypoint score``, ``visibilities`` :=
  the same score, ``score`` = mean keypoint score) and scored by the same evaluator
  (:func:`training.evaluate.keypoint_metrics`: AP, Ex-AP at the best threshold by
  ``search_presence_threshold``).
- **In/out-of-window classification** (the seed paper's Fig. 5): over the labelled keypoints
  (v > 0, v = 3 included) of the GT instances, truth = the codec's presence target (the keypoint
  lies in its activation window, ``codec.encode``). For a scalar ``s`` the error at threshold
  ``t`` is the share of keypoints with ``(s >= t) != truth``; :func:`inout_error` gives the
  minimum over ``t``. Scalars: the student's presence, the student's map confidence (the maximum
  of its probability map, flip-merged like presence), thunder's keypoint score (the student's
  OKS-quality is listed too). Ratio = presence error / the smaller of the two score errors,
  on all keypoints and on a balanced subset (as many out- as in-window keypoints, drawn with
  ``--balance-seed``) of each set.
- **Coverage**: share of labelled in-window keypoints whose GT pixel lies in the student's 50 %
  and 90 % credible regions: ``evaluate_model``'s calibration coverage curve at q = 0.5, 0.9.
- **Speed**, interleaved in one loop after a warm-up: ms per person at batch 1 of the student on
  ONNX Runtime (``--threads``; crop + network + decode through :class:`Pipeline.estimate` on one
  GT box, credible regions at 0.5 as deployed; and the network alone) and of thunder
  (crop + network); medians over ``--speed-people`` people x ``--speed-repeats`` repetitions.

Prints a Markdown table and the target verdicts; writes ``OUT/compare.json`` and, per set,
``OUT/<set>/student/`` (evaluate_model's metrics, predictions, plots) and
``OUT/<set>/thunder_predictions.json``.
"""
import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from probpose_core.data.coco import load_coco
from probpose_core.errors import InputError
from probpose_core.evaluation import load_predictions
from probpose_core.jsonio import dump_json, load_json
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.image_io import read_image
from probpose_core.pipeline import Pipeline, box_problems, read_heatmaps
from probpose_core.runtime.base import HEATMAP_OUTPUT
from probpose_core.spec import DEFAULT_PRESENCE_THRESHOLD, model_spec

from .evaluate import evaluate_model, keypoint_metrics, run_command

SETS = ("coco_train", "cropcoco")
COVERAGE_LEVELS = (0.5, 0.9)
#: targets of issue 9 item 3
TARGETS = {"ap_ratio": 0.9, "inout_ratio": 0.7, "coverage_tolerance": 0.05, "ms_per_person": 15.0,
           "speed_ratio": 0.7}
SCALARS = ("student_presence", "student_map_max", "student_oks_quality", "thunder_score")
SCORE_SCALARS = ("student_map_max", "thunder_score")  # what presence is compared with


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


# ------------------------------------------------------------------------------ student per keypoint

def student_scores(runner, instances, images_dir, codec, flip_test: bool = False) -> dict:
    """The student's per-keypoint scalars on GT ``instances`` with the codec's targets.

    The same crops and flip merge as ``gt_outputs`` (:meth:`Pipeline.crops` / :meth:`Pipeline.infer`),
    image by image. Returns (N, K) arrays in the order of ``instances``: ``presence``,
    ``map_max`` (the maximum of each probability map), ``oks_quality``, ``presence_target`` and
    ``keypoint_weights`` (``codec.encode``).
    """
    pipe = Pipeline(runner, codec=codec, flip_test=flip_test, credible_levels=())
    by_image: dict = {}
    for row, inst in enumerate(instances):
        by_image.setdefault(inst.file_name, []).append(row)
    keys = ("presence", "map_max", "oks_quality", "presence_target", "keypoint_weights")
    out = {k: np.zeros((len(instances), NUM_KEYPOINTS)) for k in keys}
    for file_name, rows in by_image.items():
        images, center, scale = pipe.crops(read_image(Path(images_dir) / file_name),
                                           np.stack([instances[r].bbox for r in rows]))
        result = pipe.infer(images)
        kpts = np.stack([instances[r].keypoints for r in rows])
        targets = codec.encode(kpts[..., :2], kpts[..., 2].astype(np.int64), [instances[r].area for r in rows],
                               center, scale)
        if HEATMAP_OUTPUT in result:  # a heatmap baseline: presence as the pipeline reads it (the map maximum)
            maps = np.asarray(result[HEATMAP_OUTPUT], dtype=np.float64)
            out["presence"][rows] = read_heatmaps(codec, maps, center, scale)[1]
        else:
            maps = np.asarray(result["prob_maps"], dtype=np.float64)
            out["presence"][rows] = result["presence"]
        out["map_max"][rows] = maps.max(axis=(-2, -1))
        out["oks_quality"][rows] = result["oks_quality"]
        out["presence_target"][rows] = targets["presence"]
        out["keypoint_weights"][rows] = targets["keypoint_weights"]
    return out


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
    """In/out errors of every scalar (each (M,), aligned with ``truth (M,)``) on all keypoints
    and on the balanced subset, with the presence / best-score ratio."""
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
        entry["ratio"] = _ratio(entry, "student_presence", [k for k in SCORE_SCALARS if k in scalars])
        out[name] = entry
    return out


def _ratio(entry: dict, key: str, against: list) -> float | None:
    errors = [entry[k]["error"] for k in against if entry[k]["error"] is not None]
    if entry[key]["error"] is None or not errors or min(errors) <= 0:
        return None
    return entry[key]["error"] / min(errors)


def _number(value) -> float | None:
    """A finite float, or None (JSON has no NaN)."""
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


def measure_speed(runner, thunder, samples: list, codec, presence_threshold: float, repeats: int = 5,
                  warmup: int = 1) -> dict:
    """Median ms per person at batch 1: student pipeline (crop + network + decode, credible
    regions at 0.5), student network alone, thunder (crop + network); ``samples`` =
    ``[(frame, box_xywh)]``, each run ``warmup`` times, then ``repeats`` times interleaved."""
    pipe = Pipeline(runner, codec=codec, presence_threshold=presence_threshold, flip_test=False)
    crops = [pipe.crops(frame, np.asarray(box, dtype=np.float64)[None])[0] for frame, box in samples]
    jobs = {
        "student_pipeline": [lambda f=f, b=b: pipe.estimate(f, np.asarray(b, dtype=np.float64)[None])
                             for f, b in samples],
        "student_network": [lambda c=c: runner.run(c) for c in crops],
        "thunder": [lambda f=f, b=b: thunder.predict(f, b) for f, b in samples],
    }
    for calls in jobs.values():
        for _ in range(warmup):
            for call in calls:
                call()
    times: dict = {k: [] for k in jobs}
    for _ in range(repeats):
        for i in range(len(samples)):
            for key, calls in jobs.items():
                times[key].append(_ms(calls[i]))
    out = {f"{k}_ms": statistics.median(v) for k, v in times.items()}
    out.update(people=len(samples), repeats=repeats,
               ratio_pipeline=out["student_pipeline_ms"] / out["thunder_ms"],
               ratio_network=out["student_network_ms"] / out["thunder_ms"])
    return out


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

def make_student_runner(model, threads: int = 2):
    """An ONNX Runtime runner (``threads`` intra-op threads) for ``model`` (.onnx, or a .pt
    checkpoint exported once by ``runtime.make_runner``), or ``model`` itself when it is a Runner."""
    if hasattr(model, "run"):
        return model
    from probpose_core.runtime import make_runner

    return make_runner(model, runtime="ort", threads=threads)


def compare(model, gt, images, out, thunder=None, teachers=None, limit: int | None = None, crop_seed: int = 0,
            balance_seed: int = 0, flip_test: bool = False, threads: int = 2, speed_people: int = 10,
            speed_repeats: int = 5, progress: bool = True) -> dict:
    """Run everything (module docstring); ``thunder``: an object with ``predict(frame_rgb,
    box_xywh) -> (17, 3)``, else MoveNet thunder from ``teachers``. Writes ``out/compare.json``
    and returns its content."""
    from probpose_core.data.instances import load_instances

    out = Path(out)
    images = Path(images)
    if not images.is_dir():
        raise InputError(f"images folder not found: {images}")
    if thunder is None:
        from .teachers import make_teacher

        try:
            thunder = make_teacher("movenet", teachers, threads=threads)
        except FileNotFoundError as exc:
            raise InputError(str(exc)) from None
    runner = make_student_runner(model, threads)
    spec = model_spec(runner)
    codec, own_threshold = spec.codec, spec.presence_threshold

    coco_ann = limit_set(gt, out / "sets" / f"coco_train_first{limit}.json", limit)
    crop_ann, crop_images = cropcoco_twin(coco_ann, images, out / "cropcoco", seed=crop_seed, progress=progress)
    sets = {"coco_train": (coco_ann, images), "cropcoco": (crop_ann, crop_images)}

    result: dict = {"settings": {"model": str(model) if isinstance(model, (str, Path)) else type(model).__name__,
                                 "gt": str(gt), "images": str(images), "limit": limit, "crop_seed": crop_seed,
                                 "balance_seed": balance_seed, "flip_test": bool(flip_test), "threads": threads,
                                 "student_runtime": getattr(runner, "name", type(runner).__name__),
                                 "student_presence_threshold": own_threshold,
                                 "thunder": getattr(thunder, "name", type(thunder).__name__),
                                 "thunder_padding": getattr(thunder, "padding", None)},
                    "sets": {}, "targets": dict(TARGETS)}
    coco_instances = None
    for name, (ann, img_dir) in sets.items():
        print(f"== {name}: {ann}", flush=True)
        metrics = evaluate_model(runner, ann, img_dir, flip_test=flip_test, out_dir=out / name / "student",
                                 progress=progress)
        preds = thunder_predictions(thunder, load_coco(ann), img_dir, progress)
        th = thunder_metrics(ann, preds, out / name / "thunder_predictions.json")
        instances, _ = load_instances(ann, images_dir=img_dir)
        if name == "coco_train":
            coco_instances = instances
        scores = student_scores(runner, instances, img_dir, codec, flip_test)
        thunder_score = np.stack([preds[i.ann_id][:, 2] if i.ann_id in preds else np.full(NUM_KEYPOINTS, np.nan)
                                  for i in instances]) if instances else np.zeros((0, NUM_KEYPOINTS))
        labelled = scores["keypoint_weights"] > 0
        scalars = {"student_presence": scores["presence"][labelled], "student_map_max": scores["map_max"][labelled],
                   "student_oks_quality": scores["oks_quality"][labelled], "thunder_score": thunder_score[labelled]}
        result["sets"][name] = {
            "ann": str(ann), "images": str(img_dir), "counts": metrics["counts"],
            "student": {"AP": metrics["AP"], "Ex-AP": metrics["Ex-AP"],
                        "presence_threshold": metrics["presence_threshold"],
                        "Ex-AP_at_own_threshold": metrics["at_checkpoint_threshold"]["Ex-AP"],
                        "own_threshold": metrics["checkpoint_presence_threshold"],
                        "coverage": coverage_at(metrics["calibration"]),
                        "calibration": metrics["calibration"]},
            "thunder": {"AP": th["AP"], "Ex-AP": th["Ex-AP"], "presence_threshold": th["presence_threshold"],
                        "predictions": len(preds)},
            "inout": inout_summary(scalars, scores["presence_target"][labelled], balance_seed),
        }
    samples = speed_samples(coco_instances or [], images, speed_people)
    result["speed"] = (measure_speed(runner, thunder, samples, codec, own_threshold, speed_repeats)
                       if samples else None)
    result["verdicts"] = verdicts(result)
    dump_json(result, out / "compare.json")
    return result


# ------------------------------------------------------------------------------ report

def verdicts(result: dict) -> list[dict]:
    """One entry per target: ``{"target", "value", "ok"}`` (ok None: not measurable)."""
    sets, out = result["sets"], []

    def add(target, value, ok):
        out.append({"target": target, "value": value, "ok": ok})

    c, k = sets["coco_train"], sets["cropcoco"]
    ap_s, ap_t = c["student"]["AP"], c["thunder"]["AP"]
    add(f"AP coco_train >= {TARGETS['ap_ratio']} x thunder", f"{ap_s:.3f} vs {ap_t:.3f}",
        bool(ap_s >= TARGETS["ap_ratio"] * ap_t))
    ex_s, ex_t = k["student"]["Ex-AP"], k["thunder"]["Ex-AP"]
    add("Ex-AP CropCOCO > thunder's (best thresholds)", f"{ex_s:.3f} vs {ex_t:.3f}", bool(ex_s > ex_t))
    for name in SETS:
        for subset in ("all", "balanced"):
            entry = sets[name]["inout"][subset]
            ratio = None if entry is None else entry["ratio"]
            add(f"in/out error ratio {name} {subset} <= {TARGETS['inout_ratio']}",
                "n/a" if ratio is None else f"{ratio:.2f}",
                None if ratio is None else bool(ratio <= TARGETS["inout_ratio"]))
    for name in SETS:
        for q, share in sets[name]["student"]["coverage"].items():
            target, tol = float(q), TARGETS["coverage_tolerance"]
            add(f"coverage@{100 * target:.0f} {name} in {100 * target:.0f} +- {100 * tol:.0f} %",
                "n/a" if share is None else f"{100 * share:.1f} %",
                None if share is None else bool(abs(share - target) <= tol + 1e-12))
    speed = result.get("speed")
    if speed:
        add(f"student ms/person <= {TARGETS['ms_per_person']:g}", f"{speed['student_pipeline_ms']:.1f} ms",
            bool(speed["student_pipeline_ms"] <= TARGETS["ms_per_person"]))
        add(f"student / thunder time <= {TARGETS['speed_ratio']}", f"{speed['ratio_pipeline']:.2f}",
            bool(speed["ratio_pipeline"] <= TARGETS["speed_ratio"]))
    return out


def _f(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _err(entry, key) -> str:
    if entry is None or entry[key]["error"] is None:
        return "–"
    return f"{entry[key]['error']:.3f} @ {entry[key]['threshold']:.2f}"


def format_report(result: dict) -> str:
    """The Markdown table(s) and the verdicts."""
    c, k, speed = result["sets"]["coco_train"], result["sets"]["cropcoco"], result.get("speed") or {}
    cov = c["student"]["coverage"]
    inout = k["inout"]["all"]
    lines = [
        f"Student `{result['settings']['model']}` vs MoveNet thunder, GT boxes, flip test "
        f"{'on' if result['settings']['flip_test'] else 'off'}, {c['counts']['images']} images "
        f"({c['counts']['gt_instances']} / {k['counts']['gt_instances']} GT instances with keypoints in "
        f"coco_train / CropCOCO)",
        "",
        "| model | AP (coco_train) | Ex-AP (CropCOCO, best thr) | in/out error (CropCOCO) | coverage@50 / @90 "
        "(coco_train) | ms/person |",
        "|---|---|---|---|---|---|",
        f"| student (presence) | {_f(c['student']['AP'])} | {_f(k['student']['Ex-AP'])} @ "
        f"{k['student']['presence_threshold']:.2f} | {_err(inout, 'student_presence')} | "
        f"{_f(cov['0.5'])} / {_f(cov['0.9'])} | {_f(speed.get('student_pipeline_ms'), 1)} "
        f"(network {_f(speed.get('student_network_ms'), 1)}) |",
        f"| student (map max) | | | {_err(inout, 'student_map_max')} | | |",
        f"| thunder | {_f(c['thunder']['AP'])} | {_f(k['thunder']['Ex-AP'])} @ "
        f"{k['thunder']['presence_threshold']:.2f} | {_err(inout, 'thunder_score')} | – | "
        f"{_f(speed.get('thunder_ms'), 1)} |",
        "",
        "| set | student AP | student Ex-AP | thunder AP | thunder Ex-AP | keypoints in / out of window | "
        "error presence / map max / OKS-quality / thunder (all) | same (balanced) | ratio all / balanced |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in SETS:
        s = result["sets"][name]
        a, b = s["inout"]["all"], s["inout"]["balanced"]
        errs = (lambda e: "–" if e is None else " / ".join(_f(e[key]["error"]) for key in SCALARS))
        lines.append(f"| {name} | {_f(s['student']['AP'])} | {_f(s['student']['Ex-AP'])} | {_f(s['thunder']['AP'])} | "
                     f"{_f(s['thunder']['Ex-AP'])} | {a['in_window']} / {a['out_of_window']} | {errs(a)} | {errs(b)} | "
                     f"{_f(a['ratio'], 2)} / {_f(None if b is None else b['ratio'], 2)} |")
    lines += ["", "| target | value | verdict |", "|---|---|---|"]
    for v in result["verdicts"]:
        verdict = "n/a" if v["ok"] is None else ("met" if v["ok"] else "MISSED")
        lines.append(f"| {v['target']} | {v['value']} | {verdict} |")
    return "\n".join(lines)


# ------------------------------------------------------------------------------ CLI

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.compare_thunder", description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="the student: exported .onnx (+ sidecar) or our .pt")
    parser.add_argument("--gt", required=True, help="COCO keypoints GT (e.g. ../shared/data/coco_train/gt.json)")
    parser.add_argument("--images", required=True, help="its images folder")
    parser.add_argument("--teachers", default="out/build_models/teachers",
                        help="folder with movenet-thunder.onnx (tools/build_models.sh)")
    parser.add_argument("--out", default="out/compare", help="output folder (compare.json, CropCOCO twin, ...)")
    parser.add_argument("--limit", type=int, help="only the first N images (quick runs)")
    parser.add_argument("--crop-seed", type=int, default=0, help="seed of the CropCOCO twin (default 0)")
    parser.add_argument("--balance-seed", type=int, default=0, help="seed of the balanced in/out subset")
    parser.add_argument("--flip-test", action="store_true", help="student with the flip test (not timed)")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads, both models (default 2)")
    parser.add_argument("--speed-people", type=int, default=10, help="people timed (default 10)")
    parser.add_argument("--speed-repeats", type=int, default=5, help="timed repetitions after warm-up (default 5)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.limit is not None and args.limit < 1:
        print("compare_thunder: error: --limit must be at least 1", file=sys.stderr)
        return 2

    def action():
        result = compare(args.model, args.gt, args.images, args.out, teachers=args.teachers, limit=args.limit,
                         crop_seed=args.crop_seed, balance_seed=args.balance_seed, flip_test=args.flip_test,
                         threads=args.threads, speed_people=args.speed_people, speed_repeats=args.speed_repeats,
                         progress=not args.quiet)
        print(format_report(result))
        print(f"wrote {Path(args.out) / 'compare.json'}")

    return run_command("compare_thunder", action)


if __name__ == "__main__":
    sys.exit(main())
