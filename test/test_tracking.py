"""Tracker: synthetic crossing / occluded people (zero ID switches over many random sequences),
the birth / removal / two-stage rules, ids never reused; a real clip through the shipped
detector and pose model with its ID-switch rate per 100 frames printed."""
from pathlib import Path

import numpy as np
import pytest

from probpose_core.errors import InputError
from probpose_core.keypoints import NAMES, NUM_KEYPOINTS
from probpose_core.results import Human, Keypoint
from probpose_core.tracking import Tracker, TrackerConfig

# A standing person: keypoints as fractions of the box (x, y), COCO order.
TEMPLATE = np.array([
    (0.50, 0.08), (0.53, 0.06), (0.47, 0.06), (0.57, 0.07), (0.43, 0.07),
    (0.70, 0.20), (0.30, 0.20), (0.78, 0.38), (0.22, 0.38), (0.80, 0.52), (0.20, 0.52),
    (0.62, 0.55), (0.38, 0.55), (0.62, 0.75), (0.38, 0.75), (0.62, 0.95), (0.38, 0.95)])
LEFT_SIDE = np.array([n.startswith("left") for n in NAMES])


def make_human(box, rng, score=0.9, hidden=None, phase=0.0, kp_noise=2.0):
    """A Human with box ``(x, y, w, h)``, walking-limb keypoints with noise; ``hidden (K,)``
    keypoints get presence 0.1."""
    x, y, w, h = box
    rel = TEMPLATE.copy()
    swing = 0.08 * np.sin(phase)
    rel[[9, 15], 0] += swing  # left wrist, left ankle
    rel[[10, 16], 0] -= swing
    pts = np.array([x, y]) + rel * np.array([w, h]) + rng.normal(0, kp_noise, (NUM_KEYPOINTS, 2))
    hidden = np.zeros(NUM_KEYPOINTS, bool) if hidden is None else hidden
    kps = [Keypoint(name=n, x=float(px), y=float(py), presence=0.1 if hid else 0.9, visibility=0.9, oks_quality=0.8)
           for n, (px, py), hid in zip(NAMES, pts, hidden)]
    return Human(bbox=tuple(float(v) for v in box), score=score, keypoints=kps, box_score=score)


def crossing_sequence(rng, frames=70, standing=False):
    """People walking across each other: per frame a list of (gt_index, Human).

    Person 0 walks right in front, person 1 walks left behind it (smaller: farther away); with
    ``standing`` person 2 stands where they cross, behind both. A person behind another is not
    detected while their boxes overlap by more than 40 % of its width, and is detected with a
    low score (0.2-0.45) and its near-side keypoints absent while they overlap at all.
    Returns (frames, number of frames someone was hidden).
    """
    speed0, speed1 = rng.uniform(5, 9), rng.uniform(5, 9)
    w0, h0 = rng.uniform(70, 90), rng.uniform(190, 220)
    scale1 = rng.uniform(0.75, 0.95)
    y0, y1 = rng.uniform(120, 160), rng.uniform(110, 150)
    meet = 320.0
    t_meet0, t_meet1 = rng.uniform(25, 40), rng.uniform(25, 40)
    people = []  # (depth order: lower is in front, box fn)
    people.append((0, lambda t: (meet + speed0 * (t - t_meet0) - w0 / 2, y0, w0, h0)))
    people.append((1, lambda t: (meet - speed1 * (t - t_meet1) - w0 * scale1 / 2, y1, w0 * scale1, h0 * scale1)))
    if standing:
        s2 = rng.uniform(0.6, 0.7)
        people.append((2, lambda t: (meet - w0 * s2 / 2 + rng.normal(0, 1), y1 - 10, w0 * s2, h0 * s2)))
    out, hidden_frames = [], 0
    for t in range(frames):
        boxes = [np.array(fn(t)) for _, fn in people]
        dets = []
        for i, box in enumerate(boxes):
            x, _, w, _ = box
            if x + w < 0 or x > 640:
                continue
            overlap, near_left = 0.0, False
            for j in range(i):  # people with a lower index are in front
                ox = min(x + w, boxes[j][0] + boxes[j][2]) - max(x, boxes[j][0])
                if ox / w > overlap:
                    overlap, near_left = ox / w, boxes[j][0] < x
            if overlap > 0.4:
                hidden_frames += 1
                continue
            noisy = box + rng.normal(0, 2.0, 4) * np.array([1, 1, 0.5, 0.5])
            if overlap > 0:
                hidden = LEFT_SIDE if not near_left else ~LEFT_SIDE & (np.arange(NUM_KEYPOINTS) > 4)
                dets.append((i, make_human(noisy, rng, score=rng.uniform(0.2, 0.45), hidden=hidden, phase=t / 3)))
            else:
                dets.append((i, make_human(noisy, rng, score=rng.uniform(0.6, 0.95), phase=t / 3)))
        rng.shuffle(dets)
        out.append(dets)
    return out, hidden_frames


def id_switches(assigned) -> tuple[int, int, dict]:
    """From ``assigned``: per frame (gt_index, id or None) pairs -> (switches, merges, ids per gt).

    A switch: a person's id differs from the last id it had. A merge: an id that was given to
    more than one person over the sequence (counted once per extra person).
    """
    last, switches, owners = {}, 0, {}
    for frame in assigned:
        for gt, tid in frame:
            if tid is None:
                continue
            if gt in last and last[gt] != tid:
                switches += 1
            last[gt] = tid
            owners.setdefault(tid, set()).add(gt)
    merges = sum(len(g) - 1 for g in owners.values())
    per_gt = {}
    for tid, gts in owners.items():
        for gt in gts:
            per_gt.setdefault(gt, set()).add(tid)
    return switches, merges, per_gt


def run_tracker(frames, tracker=None):
    tracker = tracker or Tracker()
    assigned = []
    for dets in frames:
        humans = tracker.update([h for _, h in dets])
        assigned.append([(gt, h.id) for (gt, _), h in zip(dets, humans)])
    return assigned


SEEDS = 30


def switches_over_seeds(standing, config=TrackerConfig()):
    """(ID switches, merges, people-frames fully occluded, sequences where a person had more than
    one id, frames) over :data:`SEEDS` random crossing sequences."""
    switches = merges = hidden = split = frames_total = 0
    for seed in range(SEEDS):
        rng = np.random.default_rng(seed)
        frames, n_hidden = crossing_sequence(rng, standing=standing)
        s, m, per_gt = id_switches(run_tracker(frames, Tracker(config)))
        assert set(per_gt) == set(range(3 if standing else 2)), (seed, per_gt)  # everyone got an id
        switches, merges, hidden = switches + s, merges + m, hidden + n_hidden
        split += any(len(ids) != 1 for ids in per_gt.values())
        frames_total += len(frames)
    return switches, merges, hidden, split, frames_total


@pytest.mark.parametrize("standing", [False, True])
def test_crossing_and_occluded_people_keep_their_ids(standing):
    switches, merges, hidden, split, frames = switches_over_seeds(standing)
    print(f"\nsynthetic crossing{' + standing' if standing else ''}: {switches} ID switches, {merges} merges, "
          f"{split} sequences with a person under 2+ ids, in {frames} frames of {SEEDS} sequences "
          f"({hidden} person-frames fully occluded)")
    assert hidden >= 5 * SEEDS  # the sequences really hide people for several frames
    assert switches == 0 and merges == 0 and split == 0


def test_the_crossing_scenes_defeat_a_tracker_without_motion():
    """Control: the same sequences with the velocity switched off (a one-observation fit is 0)
    do switch ids, so the zero above is the tracker's doing, not an easy scene."""
    switches, _, _, split, _ = switches_over_seeds(False, TrackerConfig(velocity_window=1))
    print(f"\nwithout motion prediction: {switches} ID switches, {split} of {SEEDS} sequences split")
    assert switches >= SEEDS // 2


def test_birth_after_n_hits_removal_after_m_misses_ids_never_reused():
    rng = np.random.default_rng(1)
    tracker = Tracker(TrackerConfig(min_hits=3, max_misses=4))
    box = (100.0, 100.0, 80.0, 200.0)
    ids = [tracker.update([make_human(box, rng)])[0].id for _ in range(4)]
    assert ids == [None, None, 1, 1]  # confirmed at the 3rd hit
    for _ in range(3):  # 3 misses < 4: kept
        tracker.update([])
    assert tracker.update([make_human(box, rng)])[0].id == 1
    for _ in range(4):  # 4 misses: removed
        tracker.update([])
    assert tracker.tracks == []
    ids = [tracker.update([make_human(box, rng)])[0].id for _ in range(3)]
    assert ids == [None, None, 2]  # a new id, 1 is never given again
    tracker.reset()
    ids = [tracker.update([make_human(box, rng)])[0].id for _ in range(3)]
    assert ids[-1] == 3


def test_tentative_track_dropped_on_a_miss_and_low_scores_never_start_tracks():
    rng = np.random.default_rng(2)
    tracker = Tracker(TrackerConfig(min_hits=2))
    box = (100.0, 100.0, 80.0, 200.0)
    tracker.update([make_human(box, rng)])
    tracker.update([])
    assert tracker.update([make_human(box, rng)])[0].id is None  # counting restarts
    weak = TrackerConfig().high_score - 0.1
    tracker = Tracker(TrackerConfig(min_hits=1))
    for _ in range(5):
        assert tracker.update([make_human(box, rng, score=weak)])[0].id is None
    assert tracker.tracks == []
    assert tracker.update([make_human(box, rng)])[0].id == 1  # confident: id at once (min_hits 1)
    assert tracker.update([make_human(box, rng, score=weak)])[0].id == 1  # stage 2 keeps it
    assert tracker.update([make_human(box, rng, score=0.05)])[0].id is None  # below low_score: ignored


def test_weak_detection_does_not_revive_a_lost_track():
    rng = np.random.default_rng(3)
    tracker = Tracker(TrackerConfig(min_hits=1))
    box = (100.0, 100.0, 80.0, 200.0)
    assert tracker.update([make_human(box, rng)])[0].id == 1
    tracker.update([])
    assert tracker.update([make_human(box, rng, score=0.3)])[0].id is None
    assert tracker.update([make_human(box, rng)])[0].id == 1


def test_keypoints_separate_overlapping_boxes():
    """Two people with the same box: the keypoints (OKS) tell them apart."""
    rng = np.random.default_rng(4)
    tracker = Tracker(TrackerConfig(min_hits=1))
    box = (100.0, 100.0, 160.0, 200.0)

    def pair(flip):
        a = make_human(box, rng, kp_noise=1.0)
        b = make_human(box, rng, kp_noise=1.0)
        for k in b.keypoints:  # b: the same box, shifted skeleton
            k.x += 45.0
        return [b, a] if flip else [a, b]

    first = tracker.update(pair(False))
    ids = (first[0].id, first[1].id)
    for t in range(10):
        flip = bool(t % 2)
        out = tracker.update(pair(flip))
        got = (out[1].id, out[0].id) if flip else (out[0].id, out[1].id)
        assert got == ids


def test_stamps_and_config_checks():
    tracker = Tracker()
    tracker.update([], stamp=1.0)
    with pytest.raises(InputError):
        tracker.update([], stamp=0.5)
    with pytest.raises(InputError):
        TrackerConfig(low_score=0.6, high_score=0.5)
    with pytest.raises(InputError):
        TrackerConfig(min_hits=0)


# -- a real clip through the shipped detector and pose model -------------------------------
SHARED_VIDEO = Path(__file__).resolve().parents[2] / "shared" / "data" / "video"
REAL_CLIPS = {  # clip: why it is here
    "davis/breakdance.mp4": "a dancer spinning in a ring of ~10 onlookers who occlude each other; the camera pans",
    "mmaction2/demo_skeleton.mp4": "two people side by side, moving their arms",
}
REAL_FRAMES = 48
#: consecutive boxes of one id overlapping less than this count as an identity jump
JUMP_IOU = 0.3


def identity_jumps(frames, min_iou: float = JUMP_IOU) -> int:
    """Identity jumps in ``frames`` (per frame a list of Humans with ids): an id present in two
    consecutive frames whose boxes overlap with IoU < ``min_iou``.

    Why this criterion: at video rates a person's box moves little between two frames (IoU
    near 1 at 24-30 fps for walking or dancing people), while an id that passes to another
    person jumps to that person's box, which rarely overlaps the first by more than 0.3. It
    misses swaps between people whose boxes overlap strongly, and it counts a real box change
    of one person (a detector box that suddenly halves) as a jump: an estimate, not ground truth.
    """
    from probpose_core.detection.nms import box_iou

    jumps, previous = 0, {}
    for humans in frames:
        current = {h.id: h.bbox for h in humans if h.id is not None}
        for tid, (x, y, w, h) in current.items():
            if tid in previous:
                px, py, pw, ph = previous[tid]
                if box_iou([x, y, x + w, y + h], [[px, py, px + pw, py + ph]])[0] < min_iou:
                    jumps += 1
        previous = current
    return jumps


@pytest.fixture(scope="module")
def shipped_pipeline():
    from probpose_core import shipped
    from probpose_core.detection import make_detector
    from probpose_core.pipeline import Pipeline
    from probpose_core.runtime import make_runner

    runner = make_runner(shipped.default_pose_model(), runtime="ort")
    threshold = float((getattr(runner, "meta", None) or {}).get("presence_threshold", 0.45))
    return Pipeline(runner, detector=make_detector("nanodet"), credible_levels=(), presence_threshold=threshold,
                    invalid_boxes="skip"), threshold


@pytest.mark.parametrize("clip", sorted(REAL_CLIPS))
def test_real_clip_id_switches_per_100_frames(clip, shipped_pipeline):
    import cv2

    path = SHARED_VIDEO / clip
    if not path.is_file():
        pytest.skip(f"needs {path} (the project's shared videos, absent on this checkout)")
    pipe, threshold = shipped_pipeline
    tracker = Tracker(TrackerConfig(presence_threshold=threshold))
    cap = cv2.VideoCapture(str(path))
    frames = []
    while len(frames) < REAL_FRAMES:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(tracker.update(pipe(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))))
    cap.release()
    assert len(frames) == REAL_FRAMES
    people = sum(len(f) for f in frames)
    tracked = sum(h.id is not None for f in frames[TrackerConfig().min_hits:] for h in f)
    later = people - sum(len(f) for f in frames[:TrackerConfig().min_hits])
    ids = {h.id for f in frames for h in f if h.id is not None}
    jumps = identity_jumps(frames)
    most = max(len(f) for f in frames)
    print(f"\n{clip} ({REAL_CLIPS[clip]}): {len(frames)} frames, {people} detections (at most {most} per frame), "
          f"{tracked / max(later, 1):.0%} with an id after the first {TrackerConfig().min_hits} frames, "
          f"{len(ids)} ids; identity jumps (consecutive boxes of one id with IoU < {JUMP_IOU}): {jumps} = "
          f"{100 * jumps / len(frames):.1f} per 100 frames")
    assert people >= REAL_FRAMES  # someone was found in the clip
    assert tracked >= 0.5 * later  # most detections are on a confirmed track
    # measured: demo_skeleton 0; breakdance 2.1 with the first shipped student, 8.3 with the MoveNet-started
    # one (its keypoints change the OKS term of the association), 8.3 with the stage-3 one at oks_weight
    # 0.25 (10.4 at 0.5; box IoU alone 4.2 -- this criterion measures box continuity, which favours
    # box-only association); a bound, not a target
    assert 100 * jumps / len(frames) <= 10.0


def test_tracking_lifting_and_keep_out_import_no_torch_and_no_ros():
    """What the node calls per frame for ids, 3D keypoints and capsules needs numpy / scipy only."""
    import json
    import subprocess
    import sys

    code = ("import json, sys\nimport probpose_core.tracking, probpose_core.lifting, probpose_core.keep_out\n"
            "print(json.dumps(sorted(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    loaded = {m.split(".")[0] for m in json.loads(done.stdout.strip().splitlines()[-1])}
    assert not loaded & {"torch", "rclpy", "probpose_ros", "onnxruntime"}
