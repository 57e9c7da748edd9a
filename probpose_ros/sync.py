"""Pairing depth images with colour images by stamp (no message_filters wheel exists here).

Pure logic, no rclpy: the node feeds every colour and depth message with its header stamp in
nanoseconds (:func:`stamp_ns`) and gets back the colour messages, each exactly once, paired
with a depth message or with None. The rule (:class:`StampSync`):

- a colour frame with stamp ``t`` pairs with the queued depth frame nearest to ``t`` whose
  stamp is within ``slop`` (``|t_depth - t| <= slop``); ties go to the earlier depth;
- it is decided as soon as a depth frame stamped ``>= t`` has arrived (each stream's stamps
  increase, so later depth frames can only be farther). Colour frames leave in stamp order;
- no depth within ``slop`` at that moment: the colour frame leaves with None (the node still
  publishes its 2D keypoints); so does the oldest waiting colour frame when more than
  ``queue_size`` wait (a depth stream that stalls or stops delays colour by at most
  ``queue_size`` frames);
- one depth frame may pair with several colour frames (colour faster than depth). Depth frames
  older than the oldest waiting colour frame minus ``slop`` can match nothing and are dropped,
  and at most ``queue_size`` depth frames are kept (oldest dropped).

Counters: ``paired``, ``unpaired`` (left with None: no depth within slop), ``overflow`` (left
with None because the colour queue was full), ``depth_dropped`` (depth frames pushed out of a
full queue before any colour frame could use them).
"""
import bisect


def stamp_ns(stamp) -> int:
    """Nanoseconds of a ROS ``builtin_interfaces/Time`` (anything with ``sec`` and ``nanosec``)."""
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


class StampSync:
    """Colour/depth pairing by stamp within ``slop_s`` seconds, bounded queues (module docstring)."""

    def __init__(self, slop_s: float, queue_size: int = 10):
        if not slop_s >= 0:
            raise ValueError(f"sync slop must be >= 0 seconds, got {slop_s}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = int(queue_size)
        self._color: list = []  # (stamp, seq, item), sorted by stamp
        self._depth: list = []
        self._seq = 0
        self._last_color_out: int | None = None
        self.paired = self.unpaired = self.overflow = self.depth_dropped = 0

    def add_color(self, stamp: int, item) -> list[tuple]:
        """Queue a colour frame; returns the (colour, depth or None) pairs now decided."""
        self._insert(self._color, stamp, item)
        out = self._release()
        while len(self._color) > self.queue_size:
            _, _, old = self._color.pop(0)
            self.overflow += 1
            out.append((old, None))
        return out

    def add_depth(self, stamp: int, item) -> list[tuple]:
        """Queue a depth frame; returns the (colour, depth or None) pairs now decided."""
        self._insert(self._depth, stamp, item)
        while len(self._depth) > self.queue_size:
            self._depth.pop(0)
            self.depth_dropped += 1
        return self._release()

    def pending(self) -> tuple[int, int]:
        """(colour frames waiting, depth frames kept)."""
        return len(self._color), len(self._depth)

    # -- internals --------------------------------------------------------------------
    def _insert(self, queue: list, stamp: int, item) -> None:
        self._seq += 1
        bisect.insort(queue, (int(stamp), self._seq, item), key=lambda e: (e[0], e[1]))

    def _release(self) -> list[tuple]:
        out = []
        while self._color and self._depth and self._depth[-1][0] >= self._color[0][0]:
            t, _, color = self._color.pop(0)
            best = min(self._depth, key=lambda e: (abs(e[0] - t), e[0]))
            if abs(best[0] - t) <= self.slop_ns:
                self.paired += 1
                out.append((color, best[2]))
            else:
                self.unpaired += 1
                out.append((color, None))
            self._last_color_out = t
        horizon = self._color[0][0] if self._color else self._last_color_out
        if horizon is not None:  # no colour frame to come is older than the horizon
            while self._depth and self._depth[0][0] < horizon - self.slop_ns:
                self._depth.pop(0)
        return out
