"""`python -m probpose_core.bench_duty`: the detection duty cycle against detecting every frame.

On real clips (default: :data:`CLIPS` from ``../shared/data/video``), the node's
:class:`tracked.TrackedPipeline` (shipped pose model and detector, credible level 0.5,
``max_people`` 10, default tracker, stamps = frame index / the clip's fps) runs once with
``detect_every`` 1 (the reference) and once per k of ``--every``. Per clip and k, against the
reference frame by frame (people paired by box IoU >= 0.3, optimal assignment):

- ``dev px/size``: median and 90th percentile of the per-keypoint distance between the two
  runs' points, divided by the reference box's size sqrt(w h), over keypoints present in both,
  on the frames between detections (on detected frames the two runs agree up to the tracker);
- ``missed``: reference people on a confirmed track (id) with no partner, as a share of them;
  ``extra``: confirmed people of the run with no reference partner, as a share of the run's
  (the detector flickers: a person it misses on one frame is followed by the duty cycle, and
  one it misses on a detected frame is not followed until the next detection);
- ``ids``: distinct track ids of the run (the reference's in its row): fragmentation;
- ``id sw``: identity switches against the reference ids (a reference id whose partner's id
  changes from its previous partnered frame; MOT's IDSW with the reference as truth);
- ``det``: share of frames the detector ran on; ``ms/frame``: mean wall-clock ms of the call
  (detector + pose + tracking; the reference's in its own row), and the FPS it gives.

Before the table: what the duty cycle's constants rest on, from the reference run's people:
the detector box / present-keypoint extent ratio (width, height: ``DutyCycle.expansion``) and
the 5th percentile of a person's mean presence (``DutyCycle.min_presence`` lies below it).
Timings on a shared machine are noisy: compare rows of one run. Not a test.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VIDEO = ROOT.parent / "shared" / "data" / "video"
#: clip -> (first frame, frames): real people, 1 to 5 per frame, fast motion and people entering
CLIPS = {"davis/breakdance.mp4": (0, 84), "davis/dance-twirl.mp4": (0, 90), "mmaction2/demo_skeleton.mp4": (0, 72),
         "intel/one-by-one-person-detection.mp4": (0, 200)}
PAIR_IOU = 0.3


def read_clip(path: Path, start: int, count: int):
    """``(frames [RGB], fps)`` of ``count`` frames from ``start``."""
    import cv2

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    cap.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    cap.release()
    return frames, fps


def run(tracked, frames, fps: float):
    """Humans per frame, seconds per call and whether the detector ran, of ``tracked`` over ``frames``."""
    out, times, detected = [], [], []
    for i, frame in enumerate(frames):
        t0 = time.perf_counter()
        out.append(tracked(frame, i / fps))
        times.append(time.perf_counter() - t0)
        detected.append(tracked.last.detected)
    return out, np.array(times), detected


def _xyxy(human) -> np.ndarray:
    x, y, w, h = human.bbox
    return np.array([x, y, x + w, y + h], dtype=np.float64)


def pairs(ref, got) -> list[tuple[int, int]]:
    """Optimal pairs (i in ref, j in got) with box IoU >= PAIR_IOU."""
    from scipy.optimize import linear_sum_assignment

    from .detection.nms import box_iou

    if not ref or not got:
        return []
    iou = np.stack([box_iou(_xyxy(r), np.stack([_xyxy(g) for g in got])) for r in ref])
    rows, cols = linear_sum_assignment(-iou)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if iou[r, c] >= PAIR_IOU]


def compare(reference, run_humans, detected, threshold: float) -> dict:
    """The table's columns (module docstring) of one run against the reference run."""
    deviations, missed, confirmed, extra, run_confirmed, switches = [], 0, 0, 0, 0, 0
    partner_id: dict = {}  # reference id -> the run's id it was last paired with
    for ref, got, det in zip(reference, run_humans, detected):
        paired = pairs(ref, got)
        matched_ref, matched_got = {i for i, _ in paired}, {j for _, j in paired}
        confirmed += sum(h.id is not None for h in ref)
        missed += sum(h.id is not None and i not in matched_ref for i, h in enumerate(ref))
        extra += sum(h.id is not None and j not in matched_got for j, h in enumerate(got))
        run_confirmed += sum(h.id is not None for h in got)
        for i, j in paired:
            a, b = ref[i].keypoint_array(), got[j].keypoint_array()
            both = (a[:, 2] >= threshold) & (b[:, 2] >= threshold)
            size = np.sqrt(max(ref[i].bbox[2] * ref[i].bbox[3], 1e-9))
            if not det:
                deviations.extend(np.linalg.norm(a[both, :2] - b[both, :2], axis=1) / size)
            if ref[i].id is not None and got[j].id is not None:
                if ref[i].id in partner_id and partner_id[ref[i].id] != got[j].id:
                    switches += 1
                partner_id[ref[i].id] = got[j].id
    dev = np.array(deviations)
    return {"dev_median": float(np.median(dev)) if dev.size else float("nan"),
            "dev_p90": float(np.percentile(dev, 90)) if dev.size else float("nan"),
            "missed": missed / max(confirmed, 1), "extra": extra / max(run_confirmed, 1), "id_switches": switches,
            "ids": len({h.id for humans in run_humans for h in humans if h.id is not None})}


def constants(reference, threshold: float) -> dict:
    """Detector box / present-keypoint extent (median width and height ratio) and the 5th
    percentile of a person's mean presence, over the reference run's people."""
    ratios, presence = [], []
    for humans in reference:
        for h in humans:
            kp = h.keypoint_array()
            presence.append(kp[:, 2].mean())
            points = kp[kp[:, 2] >= threshold, :2]
            if len(points) >= 3 and np.all(np.ptp(points, axis=0) > 0):
                ratios.append(np.array(h.bbox[2:]) / np.ptp(points, axis=0))
    ratios = np.array(ratios).reshape(-1, 2)
    return {"expansion": np.median(ratios, axis=0) if len(ratios) else np.full(2, np.nan),
            "presence_p5": float(np.percentile(presence, 5)) if presence else float("nan")}


def main(argv=None) -> int:
    from .detection import make_detector
    from .detection.factory import DEFAULT_DETECTOR
    from .pipeline import Pipeline
    from .runtime import make_runner
    from .shipped import default_pose_model
    from .tracked import DutyCycle, TrackedPipeline
    from .tracking import Tracker, TrackerConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", nargs="*", default=list(CLIPS), help="clips under ../shared/data/video "
                                                                       "(default: %(default)s)")
    parser.add_argument("--every", default="2,3,4,6", help="detect_every values compared with 1 (default 2,3,4,6)")
    parser.add_argument("--detector", default=DEFAULT_DETECTOR, help="person detector (default: the shipped one)")
    parser.add_argument("--model", default="", help="pose model (default: the shipped one)")
    parser.add_argument("--max-frames", type=int, help="at most this many frames per clip")
    args = parser.parse_args(argv)
    every = [int(k) for k in args.every.split(",")]

    runner = make_runner(args.model or default_pose_model(), runtime="ort")
    pipe = Pipeline(runner, detector=make_detector(args.detector), credible_levels=(0.5,), invalid_boxes="skip",
                    max_people=10)
    threshold = pipe.presence_threshold
    print(f"detection duty cycle vs every frame: detector {args.detector}, model "
          f"{Path(args.model).name if args.model else default_pose_model().name}")
    for clip in args.clips:
        start, count = CLIPS.get(clip, (0, 10 ** 6))
        count = min(count, args.max_frames or count)
        frames, fps = read_clip(VIDEO / clip, start, count)
        if not frames:
            print(f"  {clip}: not readable, skipped", file=sys.stderr)
            continue

        def tracked(k):
            return TrackedPipeline(pipe, Tracker(TrackerConfig(presence_threshold=threshold)),
                                   DutyCycle(detect_every=k))

        reference, ref_times, _ = run(tracked(1), frames, fps)
        ref_ids = len({h.id for humans in reference for h in humans if h.id is not None})
        c = constants(reference, threshold)
        people = np.mean([len(h) for h in reference])
        print(f"\n{clip}: {len(frames)} frames at {fps:.0f} fps, {people:.1f} people per frame; detector box / "
              f"keypoint extent {c['expansion'][0]:.2f} x {c['expansion'][1]:.2f} (w x h), mean presence p5 "
              f"{c['presence_p5']:.2f}")
        print(f"  {'k':>3} {'dev px/size median':>19} {'p90':>6} {'missed':>7} {'extra':>6} {'id sw':>6} {'ids':>4} "
              f"{'det':>5} {'ms/frame':>9} {'FPS':>6}")
        print(f"  {1:>3} {'(reference)':>19} {'':>6} {'':>7} {'':>6} {'':>6} {ref_ids:>4} {1:>5.0%} "
              f"{1e3 * ref_times.mean():>9.1f} {1 / ref_times.mean():>6.1f}")
        for k in every:
            people_k = tracked(k)
            humans, times, detected = run(people_k, frames, fps)
            m = compare(reference, humans, detected, threshold)
            det = people_k.detected_frames / len(frames)
            print(f"  {k:>3} {m['dev_median']:>19.3f} {m['dev_p90']:>6.3f} {m['missed']:>7.1%} {m['extra']:>6.1%} "
                  f"{m['id_switches']:>6d} {m['ids']:>4d} {det:>5.0%} {1e3 * times.mean():>9.1f} "
                  f"{1 / times.mean():>6.1f}"
                  f"   ({', '.join(f'{r} {n}' for r, n in people_k.reasons.most_common())})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
