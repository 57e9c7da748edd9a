"""Health of the pose node: input/output rates, latency, dropped and bad frames.

:class:`PoseStats` is plain Python (no ROS): the node calls ``frame_received`` for every image,
``frame_dropped`` when a newer image replaces one not yet processed, ``bad_frame(kind)`` for an
image that could not be converted and ``frame_published(latency)`` after publishing.
Rates and latencies cover the last ``window`` seconds (events at times in ``(now - window, now]``);
drop and bad-frame counts are kept both in total and for the window. The recording methods and
``snapshot`` may be called from different threads (subscription, worker and timer callbacks):
one lock guards all state, and a snapshot is computed from copies taken under it.

:func:`to_status` turns a snapshot into a ``diagnostic_msgs/DiagnosticStatus``: level ERROR
while more than ``error_share`` of the last ``error_window`` processed frames failed (a bad
frame or an error: the node is not doing its job), else WARN while frames were dropped
(processing slower than the camera) or bad frames arrived within the window, OK otherwise
(so it goes back to OK once frames stop failing). Values (strings, as ROS diagnostics carry
them): ``input_rate_hz``, ``output_rate_hz``, ``latency_median_ms``, ``latency_max_ms``,
``frames_received``, ``frames_published``, ``dropped_frames``, ``dropped_frames_recent``,
``bad_frames``, ``bad_frames_recent``, ``failed_of_last_frames`` ("failed/window") and
``bad_frames.<kind>`` per kind seen.
"""
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field


@dataclass
class StatsSnapshot:
    """What :meth:`PoseStats.snapshot` reports (rates in Hz, latencies in seconds, NaN if none)."""

    input_rate: float
    output_rate: float
    latency_median: float
    latency_max: float
    frames_received: int
    frames_published: int
    dropped: int
    dropped_recent: int
    bad: int
    bad_recent: int
    bad_by_kind: dict = field(default_factory=dict)
    failed_of_last: int = 0  #: failed frames among the last ``error_window`` processed ones
    error_window: int = 20
    error_share: float = 0.5


class PoseStats:
    """Counters and sliding windows of the node's events; thread-safe (one lock), ``clock``
    returns seconds (monotonic). error_window, error_share: ERROR when more than that share of
    the last error_window processed frames (published or failed) failed."""

    def __init__(self, window: float = 5.0, clock=time.monotonic, error_window: int = 20, error_share: float = 0.5):
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, got {window}")
        if int(error_window) < 1 or not 0.0 <= error_share < 1.0:
            raise ValueError(f"need error_window >= 1 frames and 0 <= error_share < 1, got {error_window}, "
                             f"{error_share}")
        self.window = float(window)
        self.error_window, self.error_share = int(error_window), float(error_share)
        self._outcomes = deque(maxlen=self.error_window)  # True: the frame failed
        self.clock = clock
        self.start = clock()
        self._lock = threading.Lock()
        self._received = deque()   # times
        self._published = deque()  # (time, latency)
        self._dropped = deque()    # times
        self._bad = deque()        # times
        self.frames_received = 0
        self.frames_published = 0
        self.dropped = 0
        self.bad_by_kind = Counter()

    def frame_received(self) -> None:
        with self._lock:
            self.frames_received += 1
            self._received.append(self.clock())

    def frame_published(self, latency: float) -> None:
        """One output published ``latency`` seconds after its image was received."""
        with self._lock:
            self.frames_published += 1
            self._published.append((self.clock(), float(latency)))
            self._outcomes.append(False)

    def frame_dropped(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count
            self._dropped.extend([self.clock()] * count)

    def bad_frame(self, kind: str) -> None:
        with self._lock:
            self.bad_by_kind[kind] += 1
            self._bad.append(self.clock())
            self._outcomes.append(True)

    def _trim(self, now: float) -> None:
        """Drop events at or before ``now - window`` (caller holds the lock)."""
        limit = now - self.window
        for events in (self._received, self._dropped, self._bad):
            while events and events[0] <= limit:
                events.popleft()
        while self._published and self._published[0][0] <= limit:
            self._published.popleft()

    def snapshot(self) -> StatsSnapshot:
        """Rates over the window (or the time since start when shorter), latency median/max."""
        with self._lock:
            now = self.clock()
            self._trim(now)
            latencies = [lat for _, lat in self._published]
            received, dropped_recent, bad_recent = len(self._received), len(self._dropped), len(self._bad)
            counts = (self.frames_received, self.frames_published, self.dropped)
            bad_by_kind = dict(self.bad_by_kind)
            failed_of_last = sum(self._outcomes)
        latencies.sort()
        span = max(min(self.window, now - self.start), 1e-9)
        n = len(latencies)
        if n:
            median = latencies[n // 2] if n % 2 else 0.5 * (latencies[n // 2 - 1] + latencies[n // 2])
        else:
            median = float("nan")
        return StatsSnapshot(
            input_rate=received / span, output_rate=n / span,
            latency_median=median, latency_max=latencies[-1] if n else float("nan"),
            frames_received=counts[0], frames_published=counts[1], dropped=counts[2],
            dropped_recent=dropped_recent, bad=sum(bad_by_kind.values()), bad_recent=bad_recent,
            bad_by_kind=bad_by_kind, failed_of_last=failed_of_last, error_window=self.error_window,
            error_share=self.error_share)


def level_and_message(snap: StatsSnapshot) -> tuple[int, str]:
    """(0 OK | 1 WARN | 2 ERROR, summary) of a snapshot; values are ``diagnostic_msgs/DiagnosticStatus`` levels."""
    if snap.failed_of_last > snap.error_share * snap.error_window:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(snap.bad_by_kind.items()))
        return 2, (f"{snap.failed_of_last} of the last {snap.error_window} frames failed (more than "
                   f"{snap.error_share:.0%}; since start: {kinds})")
    problems = []
    if snap.dropped_recent:
        problems.append(f"dropped {snap.dropped_recent} frames in the last window (processing slower than input)")
    if snap.bad_recent:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(snap.bad_by_kind.items()))
        problems.append(f"{snap.bad_recent} bad frames in the last window ({kinds})")
    if problems:
        return 1, "; ".join(problems)
    if not snap.frames_received:
        return 0, "waiting for images"
    return 0, f"ok: {snap.output_rate:.1f} Hz out of {snap.input_rate:.1f} Hz in"


def _fmt(value: float, scale: float = 1.0) -> str:
    return "nan" if value != value else f"{value * scale:.3f}"


def to_status(snap: StatsSnapshot, name: str = "probpose: pose node", hardware_id: str = ""):
    """A snapshot -> ``diagnostic_msgs/DiagnosticStatus`` (see the module docstring)."""
    from diagnostic_msgs.msg import DiagnosticStatus, KeyValue

    level, message = level_and_message(snap)
    values = {
        "input_rate_hz": _fmt(snap.input_rate), "output_rate_hz": _fmt(snap.output_rate),
        "latency_median_ms": _fmt(snap.latency_median, 1e3), "latency_max_ms": _fmt(snap.latency_max, 1e3),
        "frames_received": str(snap.frames_received), "frames_published": str(snap.frames_published),
        "dropped_frames": str(snap.dropped), "dropped_frames_recent": str(snap.dropped_recent),
        "bad_frames": str(snap.bad), "bad_frames_recent": str(snap.bad_recent),
        "failed_of_last_frames": f"{snap.failed_of_last}/{snap.error_window}",
    }
    values.update({f"bad_frames.{k}": str(v) for k, v in sorted(snap.bad_by_kind.items())})
    return DiagnosticStatus(level=bytes([level]), name=name, message=message, hardware_id=hardware_id,
                            values=[KeyValue(key=k, value=v) for k, v in values.items()])


def to_array(statuses, stamp):
    """``diagnostic_msgs/DiagnosticArray`` of ``statuses`` stamped ``stamp`` (for /diagnostics)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from std_msgs.msg import Header

    return DiagnosticArray(header=Header(stamp=stamp), status=list(statuses))
