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
present keypoints, padded as the detector padded this person (:func:`box_fit`: the detector
box's size and centre relative to the keypoint extent, taken on the track's last detected frame;
``expansion`` about the centre when it has none), moved by the tracker's velocity over the time
since the track's last match, clipped to the frame -- and keeps its last ``box_score``; these
boxes go through the same pipeline and tracker as detected ones (RTMPose's ``det_frequency`` /
rtmlib's PoseTracker and MediaPipe's ROI tracking do the same). The detector runs at once, on
this frame, instead when:

- nobody was tracked in the previous frame (``"no tracks"``; also the first frame and after a
  restart), or the schedule says so (``"schedule"``), or ``max_interval`` has passed since
  the last detection (``"interval"``);
- more than ``max_tracked`` people were tracked in the previous frame (``"crowd"``): with
  many people the pose model's time dominates, so skipping the detector gains little (0-6 % on
  two crowded clips), while in a crowd a crop from the previous keypoints picks up neighbours'
  limbs more often than the detector's box (a tenth of the keypoints moved by >= 0.3 box sizes
  on davis/breakdance);
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
next detection finds it. With k = 1, no tracker, or a detector that costs nothing (``free``:
the ``full_frame`` one, whose box is the frame) every frame is detected, the behaviour of
``Pipeline.__call__`` followed by ``Tracker.update``.
"""
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from .detection.nms import pairwise_iou
from .errors import InputError
from .pipeline import check_frame


#: bounds of a box fit: size factors (w, h) and centre offsets (in extents)
FIT_SCALE, FIT_OFFSET = (0.8, 2.0), 0.5
#: a derived box's width and height stay within this factor of the track's last detected box
#: (in a crowd a keypoint that lands on a neighbour widens the extent, the next crop holds more
#: of the neighbour, and the box grew 87 -> 193 px wide in 6 frames of davis/breakdance)
MAX_GROWTH = 1.25


#: ``detect_every`` of the node and the demo, chosen by :mod:`probpose_core.bench_duty` on real clips
#: (README "Detection duty cycle")
DEFAULT_DETECT_EVERY = 2


@dataclass(frozen=True)
class DutyCycle:
    """When the detector runs (module docstring)."""

    detect_every: int = 1  #: k: the detector runs on every k-th frame (1: every frame)
    max_interval: float = 1.0  #: at most this long (stamp units, s) between detections
    min_presence: float = 0.3  #: a derived person whose mean presence is lower triggers detection
    min_inside: float = 0.5  #: share of a derived box's area that must lie inside the frame
    max_overlap: float = 0.7  #: two derived boxes overlapping more (IoU) trigger detection
    #: detector box / present-keypoint extent (width, height) about the extent's centre, for a
    #: track without a fit of its own (medians over four real clips: 0.82-1.42 x 1.19-1.28)
    expansion: tuple = (1.2, 1.2)
    min_keypoints: int = 3  #: present keypoints a box is derived from, at least
    max_tracked: int = 3  #: more people tracked than this: every frame is detected ("crowd")

    def __post_init__(self):
        if int(self.detect_every) < 1:
            raise InputError(f"detect_every must be at least 1, got {self.detect_every}")
        if not self.max_interval > 0:
            raise InputError(f"max_interval must be positive, got {self.max_interval}")
        if len(self.expansion) != 2 or not FIT_SCALE[0] <= min(self.expansion) <= max(self.expansion) <= FIT_SCALE[1]:
            raise InputError(f"expansion must be (w, h) factors in {FIT_SCALE}, got {self.expansion}")


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


def _extent(keypoints, present, min_keypoints: int):
    """``(centre (2,), size (2,))`` of the present keypoints, or None (too few, no area)."""
    points = np.asarray(keypoints, dtype=np.float64)[np.asarray(present, dtype=bool)]
    if len(points) < min_keypoints:
        return None
    lo, hi = points.min(axis=0), points.max(axis=0)
    return ((lo + hi) / 2, hi - lo) if np.all(hi > lo) else None


def box_fit(box, keypoints, present, min_keypoints: int = 3) -> np.ndarray | None:
    """How a detector box ``(4,)`` x0, y0, x1, y1 sits on a person's present keypoints: ``(6,)``
    size factors (w, h) of the box over the keypoint extent and the offset of its centre in
    extents (x, y), clipped to :data:`FIT_SCALE` / :data:`FIT_OFFSET`, and the box's width and
    height; None without an extent."""
    extent = _extent(keypoints, present, min_keypoints)
    if extent is None:
        return None
    centre, size = extent
    box = np.asarray(box, dtype=np.float64)
    scale = np.clip((box[2:] - box[:2]) / size, *FIT_SCALE)
    offset = np.clip(((box[:2] + box[2:]) / 2 - centre) / size, -FIT_OFFSET, FIT_OFFSET)
    return np.concatenate([scale, offset, box[2:] - box[:2]])


def keypoint_boxes(tracks, now: float, expansion=(1.2, 1.2), min_keypoints: int = 3) -> np.ndarray:
    """Boxes ``(T, 4)`` x0, y0, x1, y1 of ``tracks`` (:class:`tracking.Track`) at time ``now``: the
    extent of each track's present keypoints, placed by the track's ``box_fit`` (:func:`box_fit`;
    its size within :data:`MAX_GROWTH` of the detected box's; without one: scaled by
    ``expansion`` (w, h) about its centre) and moved by ``velocity * (now - time)``; a NaN row for
    a track with fewer than ``min_keypoints`` present keypoints (or an extent of no area)."""
    boxes = np.full((len(tracks), 4), np.nan)
    default = np.array([*expansion, 0.0, 0.0], dtype=np.float64)
    for i, track in enumerate(tracks):
        extent = _extent(track.keypoints, track.present, min_keypoints)
        if extent is None:
            continue
        centre, size = extent
        fit = default if track.box_fit is None else track.box_fit
        centre = centre + fit[2:4] * size + np.asarray(track.velocity, dtype=np.float64) * (now - track.time)
        half = fit[:2] * size / 2
        if track.box_fit is not None:
            half = np.clip(half, fit[4:] / (2 * MAX_GROWTH), fit[4:] * MAX_GROWTH / 2)
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
        self.detected_frames = 0  #: frames the detector ran on (an int: /diagnostics reads it from another thread)
        self.reset()

    def reset(self) -> None:
        """Forget the tracks and the duty cycle's state (a new run of frames; ids never repeat)."""
        if self.tracker is not None:
            self.tracker.reset()
        self._last_time: float | None = None
        self._detected_at: float | None = None
        self._since_detection = 0

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
            self.detected_frames += 1
        else:
            self._since_detection += 1
        if self.tracker is not None:
            self.tracker.update(humans, now)
            if reason:  # how the detector's boxes sit on each person matched now: their derived boxes' shape
                for track in self.tracker.tracks:
                    if track.time == now and track.misses == 0:
                        track.box_fit = box_fit(track.box, track.keypoints, track.present, self.duty.min_keypoints)
        report.detected, report.reason = bool(reason), reason
        report.pose_s = time.perf_counter() - t0 - report.detector_s
        self.last = report
        return humans

    def _plan(self, frame, now: float):
        """``(reason, boxes (T, 4) xywh, scores (T,))``: why the detector must run on this frame
        ("" when the tracks' boxes will do), else the boxes derived from the tracks."""
        duty = self.duty
        if self.tracker is None or duty.detect_every == 1 or getattr(self.pipeline.detector, "free", False):
            return "every frame", None, None
        tracks = [t for t in self.tracker.tracks if t.misses == 0]
        if not tracks or self._detected_at is None:
            return "no tracks", None, None
        if len(tracks) > duty.max_tracked:
            return "crowd", None, None
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
