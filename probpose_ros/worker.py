"""The ROS-free parts of the pose node's worker (unit-tested without rclpy).

:class:`LatestFrame` is the one-slot buffer between the subscription callback and the worker
thread; :class:`Timings` keeps the per-frame ``pose`` / ``overhead`` times for /diagnostics and
the benchmark.
"""
import threading
from collections import deque

import numpy as np


class LatestFrame:
    """A one-slot buffer between the subscription callback and the worker.

    ``put`` replaces an unprocessed frame (counted in ``dropped``); ``take`` blocks until a
    frame is there (or ``close``), then empties the slot; ``wait_closed`` is the worker's
    rate-limit pause, which ``close`` ends at once. Thread-safe.
    """

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self.closed = False
        self.received = 0
        self.dropped = 0

    def put(self, item) -> bool:
        """Store ``item``; True when it replaced one the worker had not taken (a drop)."""
        with self._cond:
            self.received += 1
            replaced = self._item is not None
            self.dropped += replaced
            self._item = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float | None = None):
        """The latest item, or None when closed (or ``timeout`` passed with nothing there)."""
        with self._cond:
            self._cond.wait_for(lambda: self._item is not None or self.closed, timeout)
            item, self._item = self._item, None
            return None if self.closed else item

    def wait_closed(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds (none when <= 0) or until closed; True when closed."""
        with self._cond:
            return self._cond.wait_for(lambda: self.closed, max(timeout, 0.0))

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


class Timings:
    """Recent per-frame ``pose`` (detector + pipeline) and ``overhead`` (the rest of the node's
    work) in seconds of wall-clock time, ``overhead_cpu``: the CPU time of the worker thread in
    that rest (what the overhead costs without the waits of a busy machine), and
    ``visualisation``: the part of the overhead spent on the markers and the annotated image
    (0 on frames nobody subscribed them), for /diagnostics and the benchmark."""

    def __init__(self, size: int = 300):
        self.pose, self.overhead, self.overhead_cpu, self.visualisation = (deque(maxlen=size) for _ in range(4))

    def add(self, pose: float, overhead: float, overhead_cpu: float = float("nan"), visualisation: float = 0.0) -> None:
        self.pose.append(pose)
        self.overhead.append(overhead)
        self.overhead_cpu.append(overhead_cpu)
        self.visualisation.append(visualisation)

    def medians_ms(self) -> dict:
        """``pose_median_ms`` / ``overhead_median_ms`` / ``overhead_max_ms`` /
        ``overhead_cpu_median_ms`` / ``visualisation_median_ms`` as strings ("nan" when empty)."""
        pose, overhead, cpu, vis = list(self.pose), list(self.overhead), list(self.overhead_cpu), list(self.visualisation)
        fmt = lambda values, f: f"{f(values) * 1e3:.3f}" if values else "nan"  # noqa: E731
        return {"pose_median_ms": fmt(pose, np.median), "overhead_median_ms": fmt(overhead, np.median),
                "overhead_max_ms": fmt(overhead, max), "overhead_cpu_median_ms": fmt(cpu, np.median),
                "visualisation_median_ms": fmt(vis, np.median)}
