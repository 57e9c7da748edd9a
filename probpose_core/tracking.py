"""Person tracking across frames: persistent ``Human.id`` from box IoU and keypoint OKS.

Per frame, :meth:`Tracker.update` takes the pipeline's ``list[Human]`` and sets ``id`` on each
(an int >= 1 for a person on a confirmed track, None for a detection that is not, or not yet,
on one). Association is two-stage like ByteTrack (Zhang et al., ECCV 2022), by detection
confidence ``Human.box_score``:

1. detections with ``box_score >= high_score`` against the confirmed tracks matched in the
   previous frame, then the ones left against the confirmed tracks that missed recent frames
   (a matching cascade as in DeepSORT: a person seen a moment ago has the first claim on a
   detection, so a lost track cannot take over the person who walked in front of it),
   threshold ``min_similarity``;
2. detections with ``low_score <= box_score < high_score`` against the confirmed tracks still
   unmatched that were matched in the previous frame, threshold ``low_min_similarity``
   (a partly occluded person keeps its track; a weak detection never revives a lost track);
3. the remaining confident detections against tentative tracks, threshold ``min_similarity``;
4. confident detections left over start tentative tracks. A tentative track is confirmed, and
   gets the next id, at its ``min_hits``-th consecutive hit (its humans of that frame carry the
   id); a tentative track that misses once is dropped. A confirmed track is removed after
   ``max_misses`` consecutive frames without a match. Ids come from a counter that only grows:
   never reused.

Each stage is one optimal assignment (``scipy.optimize.linear_sum_assignment`` on
``1 - similarity``), pairs below the stage's threshold rejected. The similarity of a track and
a detection is ``(1 - oks_weight) * IoU + oks_weight * OKS`` where IoU is that of the
detection's box with the track's predicted box and OKS is COCO's per-keypoint OKS
(:func:`oks.keypoint_oks`, area ``AREA_FACTOR * w * h`` of the predicted box) averaged over
the keypoints present (``presence >= presence_threshold``) in both; with fewer than
``min_common_keypoints`` such keypoints the similarity is the IoU alone. A pair whose IoU is
below ``min_iou`` has similarity 0 (keypoints may tell overlapping people apart, but never join
boxes that hardly touch).

The prediction is constant velocity: the track's last box and keypoints moved by the velocity
of the box centre (least-squares slope of the centre over time through the track's last
``velocity_window`` matched observations) times the time since the last match; the box size
is kept. A track that missed frames is compared under two hypotheses, moved on at that velocity
or stopped where it was last seen, and the better similarity counts (a velocity fitted to
jittery boxes drifts a standing, occluded person away over a long gap). Time is the ``stamp``
given to :meth:`Tracker.update` (any unit, e.g. seconds), or the frame count without one, so
dropped frames do not break the prediction. No camera-motion compensation: a panning camera
moves everyone at once and can shift ids between neighbours in a dense row of people.

Why our own tracker and not a library. Checked (PyPI, current releases): ``norfair`` 2.3.0
takes custom (keypoint) distances but pins ``numpy<2`` (this house runs numpy 2) and pulls
``filterpy`` and ``rich``; it has no two-stage confidence split. ``supervision`` 0.31 no longer
ships ByteTrack (it moved to ``trackers``). ``trackers`` 2.6.1 has ByteTrack, but its
association is box IoU only (its pluggable ``BaseIoU`` sees boxes, its tracklets keep no
keypoints), it works on ``sv.Detections`` and pulls ``supervision``, ``opencv-python`` (a second
OpenCV next to the house's), ``requests`` and ``rich``. Keypoint-aware association would mean
patching its internals, so this ~200-line numpy/scipy tracker is simpler to keep correct.
"""
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from .codec import AREA_FACTOR
from .detection.nms import box_iou
from .errors import InputError
from .oks import keypoint_oks
from .spec import DEFAULT_PRESENCE_THRESHOLD


@dataclass(frozen=True)
class TrackerConfig:
    """Tracker parameters (see the module docstring for what each does)."""

    #: box_score from which a detection is confident (stage 1, track birth). ByteTrack's 0.5 is
    #: tuned for YOLOX scores; the shipped NanoDet (threshold 0.35) scores people 0.35-0.6, median
    #: 0.44-0.5 on two real clips, and at 0.5 a third to two thirds of them never got an id.
    high_score: float = 0.4
    low_score: float = 0.1  #: box_score below which a detection is ignored
    min_hits: int = 3  #: consecutive hits that confirm a track (n)
    max_misses: int = 30  #: consecutive misses that remove a confirmed track (m)
    min_similarity: float = 0.2  #: stages 1 and 3
    low_min_similarity: float = 0.4  #: stage 2 (weak detections need a closer match)
    #: share of keypoint OKS in the similarity (the rest is box IoU). 0.5 until the stage-3 student:
    #: with its keypoints the real breakdance clip (test_tracking) had 5 identity jumps in 48 frames
    #: at 0.5, 4 at 0.25, 2 with box IoU alone; the synthetic crossings keep 0 switches at 0.25
    oks_weight: float = 0.25
    presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD  #: a keypoint counts as present from this presence on
    min_common_keypoints: int = 3  #: fewer present in both: box IoU alone
    min_iou: float = 0.1  #: a pair needs at least this box IoU
    velocity_window: int = 10  #: matched observations the centre velocity is fitted to

    def __post_init__(self):
        if not 0.0 <= self.low_score <= self.high_score:
            raise InputError(f"need 0 <= low_score <= high_score, got {self.low_score}, {self.high_score}")
        if min(int(self.min_hits), int(self.max_misses), int(self.velocity_window)) < 1:
            raise InputError(f"min_hits, max_misses and velocity_window must be >= 1, got {self.min_hits}, "
                             f"{self.max_misses}, {self.velocity_window}")
        if not 0.0 <= self.oks_weight <= 1.0:
            raise InputError(f"oks_weight must lie in [0, 1], got {self.oks_weight}")


@dataclass
class Track:
    """One track: last observed ``box (4,)`` x0, y0, x1, y1 and ``keypoints (K, 2)`` with
    ``present (K,)``, ``velocity (2,)`` of the box centre per unit time (fitted to ``history``:
    (time, centre x, centre y) of the last matches), ``time`` of the last match, ``score``: the
    ``box_score`` of the last match,
    ``hits`` (consecutive, while tentative), ``misses`` (consecutive) and ``id`` (None while
    tentative)."""

    box: np.ndarray
    keypoints: np.ndarray
    present: np.ndarray
    time: float
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))
    history: list = field(default_factory=list)
    hits: int = 1
    misses: int = 0
    id: int | None = None
    score: float = 1.0
    #: the box / keypoint-extent fit of the track's last detected box (set and read by
    #: tracked.TrackedPipeline's duty cycle; the tracker ignores it)
    box_fit: np.ndarray | None = None

    def predict(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Predicted ``box (4,)`` and ``keypoints (K, 2)`` at time ``now`` (constant velocity)."""
        shift = self.velocity * (now - self.time)
        return self.box + np.tile(shift, 2), self.keypoints + shift


def _observation(human, presence_threshold: float):
    x, y, w, h = (float(v) for v in human.bbox)
    kp = human.keypoint_array()
    present = (kp[:, 2] >= presence_threshold) & np.isfinite(kp[:, :2]).all(axis=1)
    return np.array([x, y, x + w, y + h]), kp[:, :2], present


def similarity(pred_boxes, pred_keypoints, pred_present, boxes, keypoints, present,
               oks_weight: float = 0.5, min_common_keypoints: int = 3, min_iou: float = 0.1) -> np.ndarray:
    """Similarity ``(T, D)`` of T predicted tracks and D detections (module docstring).

    Boxes ``(T|D, 4)`` x0, y0, x1, y1; keypoints ``(T|D, K, 2)``; present ``(T|D, K)`` bool.
    """
    t, d = len(pred_boxes), len(boxes)
    sim = np.zeros((t, d))
    for i in range(t):
        iou = box_iou(pred_boxes[i], boxes)
        w, h = pred_boxes[i, 2:] - pred_boxes[i, :2]
        area = AREA_FACTOR * max(w, 0.0) * max(h, 0.0)
        sq = ((keypoints - pred_keypoints[i]) ** 2).sum(-1)  # (D, K)
        common = present & pred_present[i]
        n = common.sum(axis=1)
        oks = np.where(common, keypoint_oks(sq, area), 0.0).sum(axis=1) / np.maximum(n, 1)
        blend = np.where(n >= min_common_keypoints, (1 - oks_weight) * iou + oks_weight * oks, iou)
        sim[i] = np.where(iou >= min_iou, blend, 0.0)
    return sim


def _assign(sim: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Optimal pairs (row, col) of ``sim`` with similarity >= threshold."""
    if sim.size == 0:
        return []
    rows, cols = linear_sum_assignment(1.0 - sim)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if sim[r, c] >= threshold]


class Tracker:
    """Persistent person ids over a sequence of frames (one :meth:`update` per frame)."""

    def __init__(self, config: TrackerConfig = TrackerConfig()):
        self.config = config
        self.tracks: list[Track] = []
        self._next_id = 1
        self._frame = 0
        self._last_time: float | None = None

    @property
    def confirmed(self) -> list[Track]:
        """The confirmed tracks (also those missing recent frames), in creation order."""
        return [t for t in self.tracks if t.id is not None]

    def reset(self) -> None:
        """Forget every track (ids still never repeat)."""
        self.tracks, self._last_time = [], None

    def update(self, humans, stamp: float | None = None) -> list:
        """Set ``id`` on each of ``humans`` (this frame's, any order) and return them.

        ``stamp``: the frame's time (must not go backwards); None counts frames.
        """
        cfg = self.config
        self._frame += 1
        now = float(self._frame if stamp is None else stamp)
        if self._last_time is not None and now < self._last_time:
            raise InputError(f"tracker stamps must not go backwards: {now} after {self._last_time}")
        self._last_time = now
        humans = list(humans)
        obs = [_observation(h, cfg.presence_threshold) for h in humans]
        scores = np.array([float(h.box_score) for h in humans])
        for h in humans:
            h.id = None

        matched: dict[int, Track] = {}  # detection -> its track
        confirmed = [t for t in self.tracks if t.id is not None]
        tentative = [t for t in self.tracks if t.id is None]
        high = [j for j in range(len(humans)) if scores[j] >= cfg.high_score]
        low = [j for j in range(len(humans)) if cfg.low_score <= scores[j] < cfg.high_score]

        def stage(tracks, dets, threshold):
            pairs = _assign(self._similarity(tracks, [obs[j] for j in dets], now), threshold)
            for r, c in pairs:
                matched[dets[c]] = tracks[r]
            used_t, used_d = {r for r, _ in pairs}, {c for _, c in pairs}
            return ([t for r, t in enumerate(tracks) if r not in used_t],
                    [j for c, j in enumerate(dets) if c not in used_d])

        recent, high = stage([t for t in confirmed if t.misses == 0], high, cfg.min_similarity)
        _, high = stage([t for t in confirmed if t.misses > 0], high, cfg.min_similarity)
        stage(recent, low, cfg.low_min_similarity)
        _, high = stage(tentative, high, cfg.min_similarity)

        for j, track in matched.items():
            self._hit(track, obs[j], now)
            track.score = float(scores[j])
        hit = {id(t) for t in matched.values()}
        kept = []
        for track in self.tracks:
            if id(track) not in hit:
                track.misses += 1
                if track.id is None or track.misses >= cfg.max_misses:
                    continue
            kept.append(track)
        for j in high:  # births
            box, kps, present = obs[j]
            track = Track(box=box, keypoints=kps, present=present, time=now,
                          history=[(now, *((box[:2] + box[2:]) / 2))], score=float(scores[j]))
            self._confirm_if_due(track)
            kept.append(track)
            matched[j] = track
        self.tracks = kept
        for j, track in matched.items():
            humans[j].id = track.id
        return humans

    # -- internals --------------------------------------------------------------------
    def _similarity(self, tracks, observations, now) -> np.ndarray:
        if not tracks or not observations:
            return np.zeros((len(tracks), len(observations)))
        present = np.stack([t.present for t in tracks])
        dets = [np.stack([o[k] for o in observations]) for k in (0, 1, 2)]
        args = (self.config.oks_weight, self.config.min_common_keypoints, self.config.min_iou)
        preds = [t.predict(now) for t in tracks]
        moving = similarity(np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds]), present, *dets, *args)
        lost = np.array([t.misses > 0 for t in tracks])
        if not lost.any():
            return moving
        stopped = similarity(np.stack([t.box for t in tracks]), np.stack([t.keypoints for t in tracks]), present,
                             *dets, *args)
        return np.where(lost[:, None], np.maximum(moving, stopped), moving)

    def _hit(self, track: Track, observation, now: float) -> None:
        box, kps, present = observation
        track.history = (track.history + [(now, *((box[:2] + box[2:]) / 2))])[-self.config.velocity_window:]
        h = np.asarray(track.history)
        dt = h[:, 0] - h[:, 0].mean()
        if len(h) >= 2 and (dt ** 2).sum() > 0:
            track.velocity = dt @ (h[:, 1:] - h[:, 1:].mean(axis=0)) / (dt ** 2).sum()
        track.box, track.keypoints, track.present, track.time = box, kps, present, now
        track.misses = 0
        if track.id is None:
            track.hits += 1
            self._confirm_if_due(track)

    def _confirm_if_due(self, track: Track) -> None:
        if track.id is None and track.hits >= self.config.min_hits:
            track.id = self._next_id
            self._next_id += 1
