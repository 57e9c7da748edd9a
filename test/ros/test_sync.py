"""StampSync (probpose_ros/sync.py): pure pairing logic, no DDS. Every colour frame comes out
exactly once, with the nearest depth within the slop or with None; queues stay bounded."""
import importlib
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from probpose_ros.sync import StampSync, stamp_ns

MS = 1_000_000


def test_module_imports_no_rclpy():
    sys.modules.pop("probpose_ros.sync", None)
    before = {m for m in sys.modules if m.startswith("rclpy")}
    importlib.import_module("probpose_ros.sync")
    assert {m for m in sys.modules if m.startswith("rclpy")} == before


def test_stamp_ns():
    assert stamp_ns(SimpleNamespace(sec=3, nanosec=250)) == 3_000_000_250


def test_nearest_depth_within_slop_and_ordering():
    sync = StampSync(slop_s=0.010)
    assert sync.add_color(100 * MS, "c100") == []  # no depth yet: waits
    assert sync.add_depth(95 * MS, "d95") == []  # older than the colour: a later depth may be nearer
    assert sync.add_depth(102 * MS, "d102") == [("c100", "d102")]  # 2 ms beats 5 ms
    assert sync.add_depth(133 * MS, "d133") == []
    assert sync.add_color(134 * MS, "c134") == []  # d133 is older: wait for a later depth
    assert sync.add_depth(166 * MS, "d166") == [("c134", "d133")]
    assert sync.add_color(150 * MS, "c150") == [("c150", None)]  # 16 ms from both: none within 10 ms
    assert (sync.paired, sync.unpaired) == (2, 1)


def test_depth_arriving_first_and_exact_stamps():
    sync = StampSync(slop_s=0.0)
    assert sync.add_depth(10 * MS, "d10") == []
    assert sync.add_color(10 * MS, "c10") == [("c10", "d10")]  # decided at once: same stamp
    assert sync.add_depth(20 * MS, "d20") == []
    assert sync.add_color(21 * MS, "c21") == []
    assert sync.add_depth(30 * MS, "d30") == [("c21", None)]  # slop 0: only exact stamps pair


def test_one_depth_serves_several_colour_frames():
    sync = StampSync(slop_s=0.02)
    sync.add_depth(0, "d0")
    sync.add_depth(66 * MS, "d66")
    out = [sync.add_color(t * MS, f"c{t}") for t in (0, 16, 33, 50, 66)]
    assert [p for o in out for p in o] == [("c0", "d0"), ("c16", "d0"), ("c33", None), ("c50", "d66"),
                                           ("c66", "d66")]


def test_stalled_depth_releases_colour_after_queue_size_frames():
    sync = StampSync(slop_s=0.01, queue_size=3)
    out = [p for t in range(5) for p in sync.add_color(t * 33 * MS, t)]
    assert out == [(0, None), (1, None)]  # the oldest leave when more than 3 wait
    assert sync.overflow == 2 and sync.pending() == (3, 0)


def test_queues_stay_bounded_and_old_depth_is_dropped():
    sync = StampSync(slop_s=0.01, queue_size=4)
    for t in range(50):
        sync.add_depth(t * 10 * MS, t)
    assert sync.pending()[1] == 4 and sync.depth_dropped == 46
    assert sync.add_color(480 * MS, "c") == [("c", 48)]
    assert sync.pending() == (0, 3)  # d46 is older than 480 - 10 ms: gone; d47 (at the edge), d48, d49 kept


def test_random_streams_every_colour_once_and_pairs_within_slop():
    """Colour at 30 Hz and depth at 15-30 Hz with jitter, interleaved by arrival time (depth
    arrives up to 40 ms late, each stream in stamp order): each colour frame comes out once, in order; every pair is the
    nearest depth within the slop; no colour frame that had a depth within the slop left alone
    (except through overflow)."""
    rng = np.random.default_rng(0)
    for trial in range(20):
        slop = rng.uniform(0.005, 0.03)
        color = np.cumsum(rng.uniform(30, 36, 200)) * MS
        depth = np.cumsum(rng.uniform(30, 70, 120)) * MS + rng.uniform(-20, 20) * MS
        arrival = np.maximum.accumulate(depth + rng.uniform(0, 40, len(depth)) * MS)  # late, but in order
        events = [(t, 0, "c", int(t)) for t in color] + [(a, 1, "d", int(t)) for a, t in zip(arrival, depth)]
        sync = StampSync(slop_s=slop, queue_size=10)
        out = []
        for _, _, kind, stamp in sorted(events):
            out += sync.add_color(stamp, stamp) if kind == "c" else sync.add_depth(stamp, stamp)
        got = [c for c, _ in out]
        assert got == sorted(got) and len(set(got)) == len(got)
        assert set(got) <= set(int(t) for t in color)
        assert len(got) >= len(color) - 10  # at most queue_size still waiting at the end
        for c, d in out:
            nearest = int(depth[np.argmin(np.abs(depth - c))])
            if d is not None:
                assert abs(d - c) <= slop * 1e9 + 1 and abs(d - c) == abs(nearest - c)
            else:
                assert abs(nearest - c) > slop * 1e9 - 1 or sync.overflow > 0
        assert sync.paired + sync.unpaired + sync.overflow == len(out)


def test_bad_parameters():
    with pytest.raises(ValueError):
        StampSync(slop_s=-0.1)
    with pytest.raises(ValueError):
        StampSync(slop_s=0.1, queue_size=0)
