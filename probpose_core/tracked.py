"""Frame -> people with track ids: the one object the pose node, the demo and the benchmarks share.

:class:`TrackedPipeline` is :class:`pipeline.Pipeline` (detector, valid boxes, ``max_people``,
crops, model, decode) + :class:`tracking.Tracker` (``Human.id``) + the stamp rule + the
detection duty cycle. Per call: one RGB frame and its time in, ``list[Human]`` with ids out,
and :attr:`TrackedPipeline.last` (a :class:`FrameReport`: detector ran or not and why, restarted,
seconds in the detector and in pose + tracking).

Stamps. ``stamp`` is the frame's time in seconds (a ROS header stamp, frame index / fps of a
clip); None counts frames (then ``max_interval`` is in frames). A stamp earlier than the
previous one (a replayed bag looping, a clip restarted) starts the tracks afresh
(:meth:`tracking.Tracker.reset`; ids still never repeat) and ``last.restarted`` is True.

Detection duty cycle (:class:`DutyCycle`, ``detect_every`` k > 1, needs a tracker). The
detector runs on every k-th frame; on the frames between, each track matched in the previous
frame (confirmed or tentative) gets its box from its previous keypoints -- the extent of its
present keypoints, scaled about its centre by ``expansion`` (the detector's box around the
keypoints, measured on real clips: :mod:`probpose_core.bench_duty`), moved by the tracker's
velocity over the time since the track's last match, clipped to the frame -- and keeps its last
``box_score``; these boxes go through the same pipeline and tracker as detected ones (RTMPose's
``det_frequency`` / rtmlib's PoseTracker and MediaPipe's ROI tracking do the same). The
detector runs at once, on this frame, instead when:

- nobody was tracked in the previous frame (``"no tracks"``; also the first frame and after a
  restart), or the schedule says so (``"schedule"``), or ``max_interval`` has passed since
  the last detection (``"interval"``);
- a track has fewer than ``min_keypoints`` present keypoints to take a box from
  (``"keypoints"``), a derived box lies less than ``min_inside`` inside the frame
  (``"outside"``: the person is leaving), or two derived boxes overlap with IoU above
  ``max_overlap`` (``"merged"``: two tracks follow one person);
- after the pose step on the derived boxes, a person's mean presence is below
  ``min_presence`` (``"presence"``: the box slid off the person): that frame is then
  detected and estimated again.

Known cost: a person who enters between detections appears up to k - 1 frames late (plus the
tracker's ``min_hits`` to get an id), since only the detector finds new people; a person
missed by the detector on its frame (a confirmed track with a miss) is not followed until the
next detection finds it. With k = 1 (or no tracker) every frame is detected, the behaviour of
``Pipeline.__call__`` followed by ``Tracker.update``.
"""
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .detection.nms import pairwise_iou
from .errors import InputError
from .pipeline import check_frame


#: ``detect_every`` of the node and the demo, chosen by :mod:`probpose_core.bench_duty` on real clips
#: (README "Detection duty cycle")
DEFAULT_DETECT_EVERY = 1


@dataclass(frozen=True)
class DutyCycle:
    """When the detector runs (module docstring)."""

    detect_every: int = 1  #: k: the detector runs on every k-th frame (1: every frame)
    max_interval: float = 1.0  #: at most this long (stamp units, s) between detections
    min_presence: float = 0.3  #: a derived person whose mean presence is lower triggers detection
    min_inside: float = 0.5  #: share of a derived box's area that must lie inside the frame
    max_overlap: float = 0.7  #: two derived boxes overlapping more (IoU) trigger detection
    #: detector box / present-keypoint extent (width, height), about the extent's centre
    expansion: tuple = (1.25, 1.25)
    min_keypoints: int = 3  #: present keypoints a box is derived from, at least

    def __post_init__(self):
        if int(self.detect_every) < 1:
            raise InputError(f"detect_every must be at least 1, got {self.detect_every}")
        if not self.max_interval > 0:
            raise InputError(f"max_interval must be positive, got {self.max_interval}")
        if min(self.expansion) < 1.0 or len(self.expansion) != 2:
            raise InputError(f"expansion must be (w, h) factors >= 1, got {self.expansion}")


@dataclass
class FrameReport:
    """What :meth:`TrackedPipeline.__call__` did with the last frame: ``detected`` (the detector
    ran), ``reason`` (why it ran, "" when the boxes came from the tracks), ``restarted`` (the
    stamp went backwards: tracks started afresh), ``detector_s`` / ``pose_s`` (seconds in the
    detector, and in crops + model + decode + tracking)."""

    detected: bool = False
    reason: str = ""
    restarted: bool = False
    detector_s: float = 0.0
    pose_s: float = 0.0


def keypoint_boxes(tracks, now: float, expansion=(1.25, 1.25), min_keypoints: int = 3) -> np.ndarray:
    """Boxes ``(T, 4)`` x0, y0, x1, y1 of ``tracks`` (:class:`tracking.Track`) at time ``now``: the
    extent of each track's present keypoints, scaled by ``expansion`` (w, h) about its centre
    and moved by ``velocity * (now - time)``; a NaN row for a track with fewer than
    ``min_keypoints`` present keypoints (or an extent of no area)."""
    boxes = np.full((len(tracks), 4), np.nan)
    for i, track in enumerate(tracks):
        points = np.asarray(track.keypoints, dtype=np.float64)[np.asarray(track.present, dtype=bool)]
        if len(points) < min_keypoints:
            continue
        lo, hi = points.min(axis=0), points.max(axis=0)
        if not np.all(hi > lo):
            continue
        centre = (lo + hi) / 2 + np.asarray(track.velocity, dtype=np.float64) * (now - track.time)
        half = (hi - lo) / 2 * np.asarray(expansion, dtype=np.float64)
        boxes[i] = np.concatenate([centre - half, centre + half])
    return boxes


def inside_share(boxes, frame_size) -> np.ndarray:
    """Share ``(T,)`` of each box's area ``(T, 4)`` x0, y0, x1, y1 inside a ``frame_size`` (W, H) frame."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    width, height = frame_size
    clipped = np.clip(boxes, 0.0, [width, height, width, height])
    inner = np.prod(np.clip(clipped[:, 2:] - clipped[:, :2], 0.0, None), axis=1)
    area = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return np.divide(inner, area, out=np.zeros_like(inner), where=area > 0)


class TrackedPipeline:
    """``frame, stamp -> list[Human]`` with track ids (module docstring).

    pipeline: a :class:`pipeline.Pipeline` with a detector (its ``max_people`` and invalid-box
    skipping apply); tracker: a :class:`tracking.Tracker` or None (ids stay None, every frame
    detected); duty: a :class:`DutyCycle`. Not thread-safe: one caller at a time.
    """

    def __init__(self, pipeline, tracker=None, duty: DutyCycle = DutyCycle()):
        self.pipeline, self.tracker, self.duty = pipeline, tracker, duty
        self.last = FrameReport()
        self.reasons: Counter = Counter()  #: why the detector ran, counted over all frames
        self.frames = 0  #: frames processed (since construction)
        self.reset()

    def reset(self) -> None:
        """Forget the tracks and the duty cycle's state (a new run of frames; ids never repeat)."""
        if self.tracker is not None:
            self.tracker.reset()
        self._last_time: float | None = None
        self._detected_at: float | None = None
        self._since_detection = 0

    @property
    def detected_frames(self) -> int:
        """Frames the detector ran on."""
        return sum(self.reasons.values())

    def __call__(self, frame, stamp: float | None = None) -> list:
        """People in ``frame`` (H, W, 3) uint8 RGB at time ``stamp`` (s; None: the frame count)."""
        frame = check_frame(frame)
        self.frames += 1
        now = float(self.frames if stamp is None else stamp)
        restarted = self._last_time is not None and now < self._last_time
        if restarted:
            self.reset()
        self._last_time = now
        report = FrameReport(restarted=restarted)
        t0 = time.perf_counter()
        reason, boxes, scores = self._plan(frame, now)
        humans = None
        if not reason:
            humans = self.pipeline.estimate(frame, boxes, scores, skip_invalid=True)
            if any(np.mean([k.presence for k in h.keypoints]) < self.duty.min_presence for h in humans):
                reason, humans = "presence", None
        if reason:
            t_det = time.perf_counter()
            if self.pipeline.detector is None:
                raise InputError("this pipeline has no person detector")
            boxes, scores = self.pipeline.detector.detect(frame)
            report.detector_s = time.perf_counter() - t_det
            humans = self.pipeline.estimate(frame, boxes, scores, skip_invalid=True)
            self._detected_at, self._since_detection = now, 0
            self.reasons[reason] += 1
        else:
            self._since_detection += 1
        if self.tracker is not None:
            self.tracker.update(humans, now)
        report.detected, report.reason = bool(reason), reason
        report.pose_s = time.perf_counter() - t0 - report.detector_s
        self.last = report
        return humans

    def _plan(self, frame, now: float):
        """``(reason, boxes (T, 4) xywh, scores (T,))``: why the detector must run on this frame
        ("" when the tracks' boxes will do), else the boxes derived from the tracks."""
        duty = self.duty
        if self.tracker is None or duty.detect_every == 1:
            return "every frame", None, None
        tracks = [t for t in self.tracker.tracks if t.misses == 0]
        if not tracks or self._detected_at is None:
            return "no tracks", None, None
        if self._since_detection + 1 >= duty.detect_every:
            return "schedule", None, None
        if now - self._detected_at >= duty.max_interval:
            return "interval", None, None
        boxes = keypoint_boxes(tracks, now, duty.expansion, duty.min_keypoints)
        if not np.isfinite(boxes).all():
            return "keypoints", None, None
        if (inside_share(boxes, (frame.shape[1], frame.shape[0])) < duty.min_inside).any():
            return "outside", None, None
        overlap = pairwise_iou(boxes)
        np.fill_diagonal(overlap, 0.0)
        if (overlap > duty.max_overlap).any():
            return "merged", None, None
        height, width = frame.shape[:2]
        boxes = np.clip(boxes, 0.0, [width, height, width, height])
        return "", np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1), \
            np.array([t.score for t in tracks])
