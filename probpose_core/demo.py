"""`probpose demo` / `make demo`: the real pipeline on the shipped clip ``demo/people.mp4``.

Every frame of the clip goes through the shipped person detector (``make_detector("picodet")``
by default), :class:`pipeline.Pipeline` (crops, ONNX Runtime, expected-OKS decode,
presence, 90 % credible regions) with the shipped pose model
(:func:`shipped.default_pose_model`) or ``--model`` (a .pt checkpoint or an .onnx), and the
node's person tracker (:class:`tracking.Tracker`, default settings, frame times from the clip's
frame rate; its time counts in the pose stage), all through the node's
:class:`tracked.TrackedPipeline` (``--detect-every`` k: the detector on every k-th frame,
boxes from the tracks' keypoints between; default: the node's). Written under the output folder:

- ``annotated.mp4``: every frame with boxes, keypoints coloured by presence, the skeleton
  between present keypoints, their 90 % credible regions filled translucently in the colour of
  the body side, and track ids (:func:`overlay.draw_humans`,
  as the ROS node draws); mp4v, the clip's size and frame rate;
- ``contact_sheet.png``: :data:`SHEET_FRAMES` evenly spaced annotated frames, downscaled, in a grid;
- ``frames.json``: ``[{"frame": i, "humans": [...]}, ...]``, each human as
  :func:`results.humans_to_json` writes it (keypoints, presence, regions; ``id`` the track id,
  null while a person is on no confirmed track);
- ``timing.md`` / ``timing.json`` (also printed): frames, people, end-to-end FPS, the frames the
  detector ran on, and the median ms per frame of each stage in :data:`STAGES` (the detector's
  median is over all frames, 0 where it did not run; model loading is not counted; the first
  frame is);
- with a labelled COCO folder (``--coco``, default ``../shared/data/coco_train`` next to the
  repository; skipped with a note when absent), the calibration section: what the node
  publishes, measured on data the model was not calibrated on -- the **odd-id half** of the
  folder (:mod:`data.splits`: the house calibrates on the even ids, ``tools/ship_student.sh``;
  written to ``held_out/odd.json``) and its CropCOCO twin (seed 0, written to ``cropcoco/``), GT
  boxes, no flip test. Printed: the coverage of the published (calibrated) regions and ellipses
  at :data:`COVERAGE_LEVELS` (:mod:`evaluation.coverage`, the numbers ``probpose coverage``
  gives; the raw map's as "raw map (uncalibrated)"), presence ECE / Brier and the in/out error
  at the model's presence threshold. Written: ``coverage_reliability.png`` (and
  ``coverage_reliability_twin.png``; :func:`evaluation.coverage.plot_reliability`),
  ``presence_reliability.png`` (presence vs "inside the activation window" on the twin) and
  ``calibration.json`` (``sets``: per set its presence numbers and ``coverage``, the
  ``coverage.json`` report of ``probpose coverage``; ``held_out``: which images; ``coverage_table``:
  the calibration data the model's table names).
"""
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .errors import InputError
from .overlay import draw_humans
from .jsonio import dump_json

ROOT = Path(__file__).resolve().parents[1]
CLIP = "people.mp4"
#: the labelled set of the calibration section (absent on a fresh machine: the section is skipped)
DEFAULT_COCO = ROOT.parent / "shared" / "data" / "coco_train"
STAGES = ("decode video", "detector", "pose (pipeline)", "drawing", "encode video")
SHEET_FRAMES = 8
SHEET_COLUMNS = 4
SHEET_TILE_WIDTH = 480
#: the credible level of the regions the demo computes, draws and writes to frames.json
CREDIBLE_LEVEL = 0.9
#: the levels whose coverage the calibration section reports (those of them in the model's table)
COVERAGE_LEVELS = (0.5, 0.9, 0.95)
TWIN = "CropCOCO twin"


def demo_clip() -> Path:
    """The shipped clip: ``demo/people.mp4`` of a source checkout, else the installed share folder."""
    for folder in (ROOT / "demo", Path(sys.prefix) / "share" / "probpose_ros" / "demo"):
        if (folder / CLIP).is_file():
            return folder / CLIP
    raise InputError(f"the demo clip {CLIP} was not found in {ROOT / 'demo'} or the installed share folder "
                     "(pass --video FILE)")


def resolve_model(model=None) -> Path:
    """``model`` as a path, or the shipped pose model when None / empty."""
    if model:
        return Path(model)
    from .shipped import default_pose_model

    try:
        return default_pose_model()
    except InputError as exc:
        raise InputError(f"no shipped pose model ({exc}); pass --model PATH (.pt checkpoint or .onnx)") from None


def contact_sheet(tiles: list, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """``tiles`` (equal-size (h, w, 3) RGB images) in a grid of ``columns``, dark filler."""
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * h, min(columns, len(tiles)) * w, 3), 30, dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * h:(r + 1) * h, c * w:(c + 1) * w] = tile
    return sheet


def _tile(canvas: np.ndarray, frame: int, people: int) -> np.ndarray:
    h, w = canvas.shape[:2]
    tile = cv2.resize(canvas, (SHEET_TILE_WIDTH, round(h * SHEET_TILE_WIDTH / w)), interpolation=cv2.INTER_AREA)
    text = f"frame {frame}: {people} people"
    (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
    cv2.rectangle(tile, (0, 0), (tw + 16, th + 16), (30, 30, 30), -1)
    cv2.putText(tile, text, (8, th + 8), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2, cv2.LINE_AA)
    return tile


def format_timing(timing: dict) -> str:
    """The timing table (Markdown) of :func:`run_demo`'s ``timing`` dict."""
    lines = [f"# probpose demo: {timing['video']} ({timing['width']}x{timing['height']})", "",
             f"model {timing['model']} ({timing['runtime']}), detector {timing['detector']}", "",
             "| frames | people (total) | people per frame | FPS end to end |", "|---|---|---|---|",
             f"| {timing['frames']} | {timing['people']} | {timing['people_per_frame']:.2f} | {timing['fps']:.2f} |",
             "", f"detector on {timing['detector_frames']} of {timing['frames']} frames (detect_every "
             f"{timing['detect_every']})", "", "| stage | median ms per frame |", "|---|---|"]
    lines += [f"| {name} | {ms:.1f} |" for name, ms in timing["stages_ms"].items()]
    lines += [f"| total | {timing['total_ms']:.1f} |", ""]
    if timing["pose_ms_per_person"] is not None:
        lines.append(f"pose (pipeline): {timing['pose_ms_per_person']:.1f} ms per person "
                     "(mean over the frames with people)")
    return "\n".join(lines) + "\n"


def _held_out_sets(coco_dir: Path, ann: Path, out: Path) -> tuple[dict, str]:
    """``({label: (annotations, images)}, note)``: the held-out (odd-id) half of ``ann``, written
    to ``out/held_out/odd.json``, and its CropCOCO twin (seed 0, ``out/cropcoco/``); the note says
    which images they are and that the rest are calibration data."""
    from .data.cropcoco import make_cropcoco
    from .data.splits import CALIBRATION_HALF, HELD_OUT_HALF, half, people
    from .jsonio import load_json

    data = load_json(ann, "annotation file")
    held, rest = half(data, HELD_OUT_HALF), half(data, CALIBRATION_HALF)
    path = out / "held_out" / f"{HELD_OUT_HALF}.json"
    dump_json(held, path, compact=True)
    twin = out / "cropcoco"
    make_cropcoco(path, coco_dir / "images", twin, seed=0, progress=False, verbose=False)
    note = (f"held out: the {len(held['images'])} {HELD_OUT_HALF}-id images of {coco_dir} ({people(held)} people) "
            f"and their CropCOCO twin (seed 0); the other {len(rest['images'])} ({CALIBRATION_HALF} ids, "
            f"{people(rest)} people) are not used: the house's calibration half (probpose_core/data/splits.py, "
            "tools/ship_student.sh)")
    return {f"{coco_dir.name} {HELD_OUT_HALF} half": (path, coco_dir / "images"),
            TWIN: (twin / "annotations.json", twin / "images")}, note


def _presence_numbers(runner, instances, images, threshold: float) -> tuple[dict, np.ndarray, np.ndarray]:
    """``(numbers, presence, target)``: presence ECE / Brier and the in/out error at the model's
    threshold over the labelled keypoints of ``instances`` (one :func:`calibration.gt_outputs` pass)."""
    from .calibration import brier_score, expected_calibration_error, gt_outputs

    o = gt_outputs(runner, instances, images)
    annotated = o["keypoint_weights"] > 0
    p, t = o["presence"][annotated], o["presence_target"][annotated]
    return {"instances": len(instances), "labelled_keypoints": int(annotated.sum()),
            "presence_ece": float(expected_calibration_error(p, t)), "presence_brier": float(brier_score(p, t)),
            "in_out_error": float(np.mean((p >= threshold) != (t > 0.5))) if p.size else None}, p, t


def _calibration(runner, coco_dir: Path, out: Path, threshold: float) -> dict | None:
    """What the node publishes, measured on held-out labelled data: coverage of the published
    (calibrated) regions and ellipses at :data:`COVERAGE_LEVELS` (:mod:`evaluation.coverage`, as
    ``probpose coverage``), presence ECE and the in/out error, on the odd-id half
    (:mod:`data.splits`) of a labelled COCO folder (``gt.json`` or ``annotations.json`` +
    ``images/``) and its CropCOCO twin; None (and a note) when absent."""
    ann = next((coco_dir / n for n in ("gt.json", "annotations.json") if (coco_dir / n).is_file()), None)
    if ann is None or not (coco_dir / "images").is_dir():
        print(f"\nnote: no labelled COCO folder at {coco_dir} (gt.json or annotations.json + images/): "
              "calibration section skipped (pass --coco DIR)")
        return None
    from .calibration import plot_reliability as plot_presence
    from .data.instances import load_instances
    from .evaluation.coverage import collect_keypoints, coverage_report, format_report, plot_reliability
    from .spec import model_spec

    spec = model_spec(runner)
    table = spec.coverage
    levels = tuple(q for q in COVERAGE_LEVELS if table is None or q in table.levels) or table.levels
    sets, held_note = _held_out_sets(coco_dir, ann, out)
    print(f"\n== calibration: the published regions on held-out data (GT boxes, no flip test, as deployed) ==\n"
          f"{held_note}\nthe model's coverage table: "
          + (f"fitted on {table.data}" if table is not None else "none: its regions are uncalibrated (raw map)"))
    numbers, presence = {}, {}
    for label, (path, images) in sets.items():
        instances, _ = load_instances(path, images_dir=images)
        if not instances:
            print(f"\nnote: {label} has no person with annotated keypoints: skipped")
            continue
        numbers[label], p, t = _presence_numbers(runner, instances, images, threshold)
        presence[label] = (p, t)
        try:
            report = coverage_report(collect_keypoints(runner, spec, path, images, progress=False), table, levels)
        except InputError as exc:  # e.g. no labelled in-window keypoint declared present
            print(f"\nnote: no coverage on {label}: {exc}")
            report = None
        numbers[label]["coverage"] = report
        if report is not None:
            print("\n" + format_report(report, f"{label}: coverage at levels {', '.join(f'{q:g}' for q in levels)}",
                                        breakdown=False))
    if not numbers:
        print(f"\nnote: {ann} has no held-out person with annotated keypoints: calibration section skipped")
        return None
    files = []
    for label, n in numbers.items():
        if n["coverage"] is not None:
            name = "coverage_reliability_twin.png" if label == TWIN else "coverage_reliability.png"
            files.append(plot_reliability(n["coverage"], out / name, title=f"Coverage: {label}").name)
    label = TWIN if TWIN in presence else next(iter(presence))
    files.append(plot_presence(*presence[label], out / "presence_reliability.png",
                               title=f"Presence vs inside the window ({label})").name)
    print(f"\n| set | people | labelled keypoints | presence ECE | presence Brier | in/out error at {threshold:g} |")
    print("|---|---|---|---|---|---|")
    for label, n in numbers.items():
        in_out = "-" if n["in_out_error"] is None else f"{n['in_out_error']:.3f}"
        print(f"| {label} | {n['instances']} | {n['labelled_keypoints']} | {n['presence_ece']:.3f} | "
              f"{n['presence_brier']:.3f} | {in_out} |")
    result = {"coco": str(coco_dir), "held_out": held_note, "coverage_table": None if table is None else table.data,
              "presence_threshold": threshold, "levels": list(levels), "sets": numbers,
              "files": files + ["calibration.json"]}
    dump_json(result, out / "calibration.json")
    return result


def run_demo(out_dir, model=None, video=None, coco=DEFAULT_COCO, max_frames: int | None = None,
             detector: str = "picodet", runtime: str = "ort", progress: bool = True,
             allow_uncalibrated: bool = False, detect_every: int | None = None) -> dict:
    """Run the demo into ``out_dir`` (see the module docstring); returns ``{"timing": ...,
    "calibration": ... or None, "files": [...]}``.

    model: .pt / .onnx path (None: the shipped pose model); video: a clip cv2 can read (None:
    the shipped one); coco: labelled COCO folder for the calibration section (None or missing:
    skipped); max_frames: stop after this many frames; detector: a ``make_detector`` spec;
    allow_uncalibrated: run an .onnx without its sidecar (warned) instead of refusing it;
    detect_every: the detector's duty cycle (None: the node's default, :data:`tracked.DEFAULT_DETECT_EVERY`).
    """
    from tqdm import tqdm

    from .detection import make_detector
    from .pipeline import Pipeline
    from .results import humans_to_json
    from .runtime import make_runner
    from .tracked import DEFAULT_DETECT_EVERY, DutyCycle, TrackedPipeline
    from .tracking import Tracker, TrackerConfig

    if max_frames is not None and int(max_frames) < 1:
        raise InputError(f"max_frames must be at least 1, got {max_frames}")
    out = Path(out_dir)
    video = Path(video) if video else demo_clip()
    model = resolve_model(model)
    cap = cv2.VideoCapture(str(video))
    if not video.is_file() or not cap.isOpened():
        raise InputError(f"cannot open video {video}")
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    if max_frames is not None:
        total = min(total or int(max_frames), int(max_frames))
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0

    runner = make_runner(model, runtime=runtime, allow_uncalibrated=allow_uncalibrated)
    pipe = Pipeline(runner, detector=make_detector(detector), credible_levels=(CREDIBLE_LEVEL,), invalid_boxes="skip")
    threshold = pipe.presence_threshold  # the model's (ModelSpec)
    detect_every = DEFAULT_DETECT_EVERY if detect_every is None else int(detect_every)
    tracked = TrackedPipeline(pipe, Tracker(TrackerConfig(presence_threshold=threshold)),
                               DutyCycle(detect_every=detect_every))
    out.mkdir(parents=True, exist_ok=True)
    sheet_at = set(np.linspace(0, (total or 1) - 1, min(SHEET_FRAMES, total or 1)).round().astype(int).tolist())

    frames, tiles, writer = [], [], None
    times = {name: [] for name in STAGES}
    bar = tqdm(total=total, desc="demo", unit="frame", disable=not progress, file=sys.stderr)
    started = time.perf_counter()
    try:
        while max_frames is None or len(frames) < int(max_frames):
            t0 = time.perf_counter()
            ok, bgr = cap.read()
            if not ok:
                break
            frame = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            t1 = time.perf_counter()
            humans = tracked(frame, len(frames) / fps_in)  # detector (duty cycle), pose, track ids
            t3 = time.perf_counter()
            t2 = t1 + tracked.last.detector_s  # the detector's part of t1..t3
            canvas = draw_humans(frame, humans, threshold)  # the frame is ours: drawn in place
            t4 = time.perf_counter()
            if writer is None:
                writer = cv2.VideoWriter(str(out / "annotated.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), fps_in,
                                         (canvas.shape[1], canvas.shape[0]))
                if not writer.isOpened():
                    raise InputError(f"cannot write {out / 'annotated.mp4'} (OpenCV has no mp4v writer here)")
            writer.write(cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
            t5 = time.perf_counter()
            for name, ms in zip(STAGES, np.diff([t0, t1, t2, t3, t4, t5]) * 1e3):
                times[name].append(float(ms))
            i = len(frames)
            frames.append({"frame": i, "humans": humans_to_json(humans)})
            if i in sheet_at:
                tiles.append(_tile(canvas, i, len(humans)))
            bar.update(1)
    finally:
        elapsed = time.perf_counter() - started
        bar.close()
        cap.release()
        if writer is not None:
            writer.release()
    if not frames:
        raise InputError(f"no frame could be read from {video}")

    dump_json(frames, out / "frames.json", compact=True)
    cv2.imwrite(str(out / "contact_sheet.png"), cv2.cvtColor(contact_sheet(tiles), cv2.COLOR_RGB2BGR))
    people = [len(f["humans"]) for f in frames]
    per_person = [ms / n for ms, n in zip(times["pose (pipeline)"], people) if n]
    stages_ms = {name: float(np.median(v)) for name, v in times.items()}
    timing = {"video": video.name, "width": int(canvas.shape[1]), "height": int(canvas.shape[0]),
              "model": Path(model).name, "runtime": runtime, "detector": detector, "detect_every": detect_every,
              "detector_frames": tracked.detected_frames,
              "frames": len(frames), "people": int(sum(people)), "people_per_frame": float(np.mean(people)),
              "fps": len(frames) / elapsed, "stages_ms": stages_ms, "total_ms": float(sum(stages_ms.values())),
              "pose_ms_per_person": float(np.mean(per_person)) if per_person else None}
    table = format_timing(timing)
    (out / "timing.md").write_text(table)
    dump_json(timing, out / "timing.json")
    print("\n" + table)

    calibration = _calibration(runner, Path(coco), out, threshold) if coco else None
    if not coco:
        print("\nnote: no labelled COCO folder given: calibration section skipped")
    files = ["annotated.mp4", "contact_sheet.png", "frames.json", "timing.md", "timing.json"]
    if calibration is not None:
        files += calibration["files"]
    print(f"\nwrote {', '.join(files)} to {out}/")
    return {"timing": timing, "calibration": calibration, "files": [str(out / f) for f in files]}
