"""TrackedPipeline: frame -> people with track ids, the stamp rule, the detection duty cycle.

A stand-in world replaces detector and model: people are 17 keypoints moving at constant
velocity; the stand-in detector returns their keypoints' extent x 1.25, and the stand-in
pipeline's ``estimate`` returns, for each box, the person most of whose keypoints its window
(the box x 1.25, as the pipeline pads) holds, with presence 0.95 for keypoints inside the
window and 0.02 outside (a box that slid off a person sees nobody: all presences low). No timing assertions.
"""
import numpy as np
import pytest

from probpose_core.errors import InputError
from probpose_core.results import Human, Keypoint
from probpose_core.tracked import DutyCycle, TrackedPipeline, box_fit, inside_share, keypoint_boxes
from probpose_core.tracking import Track, Tracker, TrackerConfig

SIZE = (640, 480)  # W, H
FRAME = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
LAYOUT = np.random.default_rng(0).uniform([-20, -50], [20, 50], size=(17, 2))  # a person's keypoints about its centre


class Person:
    def __init__(self, start, velocity=(0.0, 0.0), appear: float = 0.0):
        self.start, self.velocity, self.appear = np.array(start, float), np.array(velocity, float), appear
        self.jump = None  # (time, offset): teleported from then on

    def keypoints(self, t: float) -> np.ndarray:
        centre = self.start + self.velocity * t
        if self.jump is not None and t >= self.jump[0]:
            centre = centre + self.jump[1]
        return centre + LAYOUT


class World:
    """The stand-in detector and pipeline (module docstring); ``t`` is set by the test per frame."""

    def __init__(self, *people):
        self.people, self.t = list(people), 0.0
        self.detector = self
        self.detect_calls, self.estimated_boxes = 0, []
        self.skipped_total = 0

    def visible(self):
        return [p for p in self.people if p.appear <= self.t]

    def detect(self, frame):
        self.detect_calls += 1
        boxes = []
        for p in self.visible():
            kp = p.keypoints(self.t)
            lo, hi = kp.min(0), kp.max(0)
            c, half = (lo + hi) / 2, (hi - lo) / 2 * 1.25
            lo, hi = np.clip(c - half, 0, SIZE), np.clip(c + half, 0, SIZE)
            if np.all(hi > lo):
                boxes.append([*lo, *(hi - lo)])
        return np.array(boxes, float).reshape(-1, 4), np.full(len(boxes), 0.9)

    def estimate(self, frame, boxes, scores, skip_invalid=True):
        boxes = np.asarray(boxes, float).reshape(-1, 4)
        self.estimated_boxes.append(boxes.copy())
        humans = []
        for box, score in zip(boxes, scores):
            x, y, w, h = box[0] - box[2] / 8, box[1] - box[3] / 8, box[2] * 1.25, box[3] * 1.25  # the window
            best, held = None, 0
            for p in self.visible():
                kp = p.keypoints(self.t)
                inside = (kp[:, 0] >= x) & (kp[:, 0] <= x + w) & (kp[:, 1] >= y) & (kp[:, 1] <= y + h)
                if inside.sum() > held:
                    best, held = kp, inside.sum()
            if best is None:
                kp, inside = np.tile([x + w / 2, y + h / 2], (17, 1)), np.zeros(17, bool)
            else:
                kp = best
                inside = (kp[:, 0] >= x) & (kp[:, 0] <= x + w) & (kp[:, 1] >= y) & (kp[:, 1] <= y + h)
            keypoints = [Keypoint(name=f"k{i}", x=float(kp[i, 0]), y=float(kp[i, 1]),
                                  presence=0.95 if inside[i] else 0.02, visibility=0.9, oks_quality=0.9)
                         for i in range(17)]
            humans.append(Human(bbox=tuple(box), score=float(score), keypoints=keypoints, box_score=float(score)))
        return humans


def run(world, people, frames, fps=30.0, start=0):
    """Frames ``start .. start + frames - 1`` at ``fps``: (humans, report) per frame."""
    out = []
    for i in range(start, start + frames):
        world.t = i / fps
        humans = people(FRAME, world.t)
        out.append((humans, people.last))
    return out


def tracked(world, k, **duty):
    duty.setdefault("max_tracked", 10)
    return TrackedPipeline(world, Tracker(TrackerConfig(min_hits=2)), DutyCycle(detect_every=k, **duty))


def test_every_frame_detects_every_frame_and_tracks():
    world = World(Person((200, 200), (60, 0)))
    people = tracked(world, 1)
    out = run(world, people, 10)
    assert world.detect_calls == 10 and people.detected_frames == 10
    assert all(r.detected for _, r in out)
    ids = [h.id for humans, _ in out[2:] for h in humans]
    assert len(ids) == 8 and len(set(ids)) == 1 and ids[0] is not None


def test_without_a_tracker_every_frame_is_detected_and_ids_stay_none():
    world = World(Person((200, 200)))
    people = TrackedPipeline(world, None, DutyCycle(detect_every=5))
    out = run(world, people, 6)
    assert world.detect_calls == 6 and all(h.id is None for humans, _ in out for h in humans)


def test_a_free_detector_runs_every_frame():
    from probpose_core.detection import make_detector

    world = World(Person((200, 240)))
    world.detector = make_detector("full_frame")  # its box is the frame: nothing to derive
    people = tracked(world, 4)
    out = run(world, people, 5)
    assert [r.reason for _, r in out] == ["every frame"] * 5
    assert all(h.bbox == (0.0, 0.0, 640.0, 480.0) for humans, _ in out for h in humans)


def test_boxes_follow_the_keypoints_between_detections():
    """k = 4, a person walking right at 90 px/s: the detector runs on frames 0, 4, 8, ...; the
    boxes between hold every keypoint of the person where it is NOW (the tracker's motion moved
    them), and the person keeps one id throughout."""
    walker = Person((150, 240), (90, 0))
    world = World(walker)
    people = tracked(world, 4)
    out = run(world, people, 24)
    detected = [i for i, (_, r) in enumerate(out) if r.detected]
    assert detected == [0, 4, 8, 12, 16, 20], detected
    assert world.detect_calls == 6
    for i, (humans, report) in enumerate(out):
        assert len(humans) == 1
        x, y, w, h = humans[0].bbox
        kp = walker.keypoints(i / 30.0)
        assert np.all((kp >= [x, y]) & (kp <= [x + w, y + h])), (i, humans[0].bbox)
        if not report.detected:
            assert report.reason == "" and report.detector_s == 0.0
    ids = {h.id for humans, _ in out[1:] for h in humans}
    assert len(ids) == 1 and None not in ids


def test_collapsed_presence_redetects_on_the_same_frame():
    """The person jumps 200 px between two frames: the derived box sees nobody (mean presence
    0.02), so that frame is detected and estimated again and the person is found where it is."""
    jumper = Person((150, 240))
    jumper.jump = (5 / 30.0, np.array([250.0, 0.0]))
    world = World(jumper)
    people = tracked(world, 10)
    out = run(world, people, 7)
    assert [r.reason for _, r in out] == ["no tracks", "", "", "", "", "presence", ""]
    humans = out[5][0]
    assert len(humans) == 1 and humans[0].bbox[0] > 300  # found at its new place
    assert people.reasons["presence"] == 1


def test_a_box_leaving_the_frame_redetects():
    """A person walking out at the right edge: once its derived box is less than half inside the
    frame, the detector runs."""
    leaver = Person((540, 240), (300, 0))
    world = World(leaver)
    people = tracked(world, 50)
    out = run(world, people, 14)
    reasons = [r.reason for _, r in out]
    assert "outside" in reasons, reasons
    assert "outside" in reasons, reasons


def test_time_limit_and_schedule_and_merged_boxes():
    world = World(Person((200, 240)))
    people = tracked(world, 100, max_interval=0.1)
    out = run(world, people, 8)  # 30 fps: the limit passes every 3rd frame
    assert [r.reason for _, r in out] == ["no tracks", "", "", "interval", "", "", "interval", ""]
    twins = World(Person((200, 240)), Person((203, 241)))  # two people in one place: one person followed twice
    people = tracked(twins, 100)
    out = run(twins, people, 4)
    assert "merged" in [r.reason for _, r in out]


def test_a_crowd_is_detected_every_frame():
    world = World(*(Person((80 + 120 * i, 240)) for i in range(5)))
    people = tracked(world, 4, max_tracked=4)
    out = run(world, people, 4)
    assert [r.reason for _, r in out] == ["no tracks", "crowd", "crowd", "crowd"]
    assert all(len(h) == 5 for h, _ in out)


def test_a_track_without_enough_keypoints_redetects():
    world = World(Person((200, 240)))
    people = tracked(world, 100, min_keypoints=18)  # more than a person has
    out = run(world, people, 3)
    assert [r.reason for _, r in out] == ["no tracks", "keypoints", "keypoints"]


def test_a_new_person_appears_at_the_next_detection():
    """Documented cost: a person entering between detections appears at the next scheduled
    detection, at most k - 1 frames late."""
    world = World(Person((150, 240)), Person((450, 240), appear=5 / 30.0))
    people = tracked(world, 4)
    out = run(world, people, 12)
    counts = [len(h) for h, _ in out]
    assert counts == [1] * 8 + [2] * 4  # appeared on frame 5, found on frame 8 (the next detection)


def test_stamps_going_backwards_restart_the_tracks_and_ids_never_repeat():
    world = World(Person((200, 240), (30, 0)))
    people = tracked(world, 3)
    first = run(world, people, 6)
    ids_before = {h.id for humans, _ in first for h in humans if h.id is not None}
    again = run(world, people, 6)  # the same stamps again: a looping bag
    assert again[0][1].restarted and again[0][1].reason == "no tracks"
    assert not any(r.restarted for _, r in again[1:])
    ids_after = {h.id for humans, _ in again for h in humans if h.id is not None}
    assert ids_before and ids_after and not ids_before & ids_after


def test_reset_starts_with_a_detection_and_bad_duty_settings_are_refused():
    world = World(Person((200, 240)))
    people = tracked(world, 5)
    run(world, people, 3)
    people.reset()
    assert run(world, people, 1, start=3)[0][1].reason == "no tracks"
    for bad in ({"detect_every": 0}, {"max_interval": 0.0}, {"expansion": (0.5, 1.2)}):
        with pytest.raises(InputError):
            DutyCycle(**bad)


def test_keypoint_boxes_and_inside_share():
    track = Track(box=np.zeros(4), keypoints=np.array([[10.0, 20], [30, 60], [20, 40], [0, 0]]),
                  present=np.array([True, True, True, False]), time=1.0, velocity=np.array([10.0, -5.0]))
    box = keypoint_boxes([track], now=3.0, expansion=(1.5, 1.25), min_keypoints=3)[0]
    # extent 10..30 x 20..60, centre (20, 40) moved by (20, -10), half sizes 15 and 25
    assert box.tolist() == pytest.approx([25.0, 5.0, 55.0, 55.0])
    assert np.isnan(keypoint_boxes([track], 3.0, min_keypoints=4)).all()
    # a detector box 1.2 x 1.5 the extent, its centre 1/8 extent lower: the derived box sits the same way
    track.box_fit = box_fit([8.0, 15.0, 32.0, 75.0], track.keypoints, track.present)
    assert track.box_fit.tolist() == pytest.approx([1.2, 1.5, 0.0, 0.125, 24.0, 60.0])
    assert keypoint_boxes([track], now=1.0)[0].tolist() == pytest.approx([8.0, 15.0, 32.0, 75.0])
    track.keypoints = track.keypoints * [3.0, 1.0]  # the extent grew 3x wide: the box only 1.25x
    assert keypoint_boxes([track], now=1.0)[0].tolist() == pytest.approx([45.0, 15.0, 75.0, 75.0])
    assert box_fit([0.0, 0.0, 1000.0, 1000.0], track.keypoints, track.present).tolist()[:4] == \
        pytest.approx([2.0, 2.0, 0.5, 0.5])  # clipped
    assert box_fit([0, 0, 1, 1], track.keypoints, track.present, min_keypoints=4) is None
    assert inside_share([[-10, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]], (15, 15)).tolist() == [0.5, 1.0, 0.0]
