"""probpose_ros.diagnostics: the stats object on a fake clock and its DiagnosticStatus."""
import math
import sys
import threading

import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message

from probpose_ros.diagnostics import PoseStats, level_and_message, to_array, to_status


class FakeClock:
    """Seconds as set by the test; :func:`run` sets exact tick times (start + i / rate)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def values(status):
    return {kv.key: kv.value for kv in status.values}


def run(stats, clock, seconds, in_hz, latencies):
    """Feed ``seconds`` of input at ``in_hz``, publishing every frame with the next latency.
    Frame i arrives at exactly ``t0 + i / in_hz`` (no accumulated rounding), so counts in a
    window are exact."""
    lat = iter(latencies)
    t0 = clock.now
    for i in range(1, round(seconds * in_hz) + 1):
        clock.now = t0 + i / in_hz
        stats.frame_received()
        stats.frame_published(next(lat))


def test_rates_latency_and_ok():
    clock = FakeClock()
    stats = PoseStats(window=2.0, clock=clock)
    run(stats, clock, 3.0, 10, [0.010, 0.030, 0.020] * 10)
    snap = stats.snapshot()
    # The window (101.0, 103.0] holds frames 11..30: 20 frames in 2 s.
    assert snap.input_rate == 10.0 and snap.output_rate == 10.0
    assert snap.latency_median == 0.020 and snap.latency_max == 0.030
    assert (snap.frames_received, snap.frames_published, snap.dropped, snap.bad) == (30, 30, 0, 0)
    status = deserialize_message(serialize_message(to_status(snap, hardware_id="cam0")), DiagnosticStatus)
    assert status.level == DiagnosticStatus.OK and status.hardware_id == "cam0"
    v = values(status)
    assert v["latency_median_ms"] == "20.000" and v["latency_max_ms"] == "30.000"
    assert v["input_rate_hz"] == "10.000" and v["output_rate_hz"] == "10.000"
    assert v["dropped_frames"] == "0" and v["bad_frames"] == "0" and v["frames_published"] == "30"


def test_rates_before_a_full_window_use_the_elapsed_time():
    clock = FakeClock()
    stats = PoseStats(window=10.0, clock=clock)
    run(stats, clock, 1.0, 20, [0.01] * 20)
    assert stats.snapshot().input_rate == 20.0  # 20 frames in the 1.0 s since start


def test_drops_warn_then_recover():
    clock = FakeClock()
    stats = PoseStats(window=1.0, clock=clock)
    stats.frame_received()
    stats.frame_dropped(3)
    snap = stats.snapshot()
    level, message = level_and_message(snap)
    assert level == 1 and "dropped 3" in message
    assert to_status(snap).level == DiagnosticStatus.WARN
    clock.now += 5.0  # the window passes without drops
    run(stats, clock, 1.0, 10, [0.01] * 10)
    snap = stats.snapshot()
    assert level_and_message(snap) == (0, "ok: 10.0 Hz out of 10.0 Hz in")
    v = values(to_status(snap))
    assert v["dropped_frames"] == "3" and v["dropped_frames_recent"] == "0"


def test_bad_frames_by_kind_warn():
    clock = FakeClock()
    stats = PoseStats(window=2.0, clock=clock)
    for kind in ("truncated", "unknown_encoding", "truncated"):
        stats.bad_frame(kind)
    status = to_status(stats.snapshot())
    assert status.level == DiagnosticStatus.WARN and "3 bad frames" in status.message
    v = values(status)
    assert v["bad_frames"] == "3" and v["bad_frames.truncated"] == "2" and v["bad_frames.unknown_encoding"] == "1"


def test_idle_node_is_ok_with_nan_latency():
    snap = PoseStats(clock=FakeClock()).snapshot()
    assert math.isnan(snap.latency_median) and snap.input_rate == 0.0
    status = to_status(snap)
    assert status.level == DiagnosticStatus.OK and "waiting" in status.message
    assert values(status)["latency_max_ms"] == "nan"


def test_array_and_bad_window():
    array = deserialize_message(serialize_message(to_array([to_status(PoseStats().snapshot())], Time(sec=3))),
                                DiagnosticArray)
    assert array.header.stamp.sec == 3 and len(array.status) == 1
    with pytest.raises(ValueError):
        PoseStats(window=0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 5, allow_nan=False), min_size=1, max_size=40))
def test_median_and_max_match_the_definition(latencies):
    clock = FakeClock()
    stats = PoseStats(window=1e6, clock=clock)
    for lat in latencies:
        stats.frame_published(lat)
    snap = stats.snapshot()
    s = sorted(latencies)
    n = len(s)
    assert snap.latency_max == max(latencies)
    assert snap.latency_median == (s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2]))


def test_snapshots_while_other_threads_record():
    """The timer thread snapshots while the subscription and worker threads record: no
    'mutated during iteration' error, and every event is counted once."""
    stats = PoseStats(window=1e6)  # nothing leaves the window: snapshots iterate long deques
    per_thread, errors = 20000, []
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible

    def record(i):
        try:
            for j in range(per_thread):
                stats.frame_received()
                stats.frame_published(0.001 * (j % 7))
                stats.bad_frame(f"kind{i}_{j % 50}")  # new keys while snapshots copy the counts
                if j % 10 == 0:
                    stats.frame_dropped(2)
        except Exception as exc:  # pragma: no cover - the failure being tested for
            errors.append(exc)

    threads = [threading.Thread(target=record, args=(i,)) for i in range(3)]
    try:
        for t in threads:
            t.start()
        snapshots = 0
        while any(t.is_alive() for t in threads):
            try:
                snap = stats.snapshot()
            except RuntimeError as exc:
                errors.append(exc)
                break
            snapshots += 1
            assert snap.frames_published <= snap.frames_received  # counts taken at one instant
            assert snap.bad == sum(snap.bad_by_kind.values())
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old_interval)
    assert not errors, f"{len(errors)} errors, first: {errors[0]!r}"
    assert snapshots > 0
    snap = stats.snapshot()
    n = 3 * per_thread
    assert (snap.frames_received, snap.frames_published, snap.bad, snap.dropped) == (n, n, n, n // 10 * 2)
    assert (snap.dropped_recent, snap.bad_recent) == (n // 10 * 2, n)
    assert len(snap.bad_by_kind) == 150 and all(v == 3 * per_thread // 150 for v in snap.bad_by_kind.values())


def test_failing_frames_are_an_error_and_recover_to_ok():
    """Issue 19 D3: 50 of 50 frames failing said WARN; more than error_share of the last
    error_window processed frames failing is ERROR, and it clears once frames stop failing."""
    clock = FakeClock()
    stats = PoseStats(window=1.0, clock=clock, error_window=10, error_share=0.5)
    for i in range(50):
        clock.now += 0.05
        stats.frame_received()
        stats.bad_frame("error_RuntimeError")
    status = to_status(stats.snapshot())
    assert status.level == DiagnosticStatus.ERROR and "10 of the last 10 frames failed" in status.message
    v = values(status)
    assert v["bad_frames"] == "50" and v["bad_frames.error_RuntimeError"] == "50"  # counters as before
    assert v["failed_of_last_frames"] == "10/10"
    run(stats, clock, 0.4, 10, [0.01] * 4)  # 4 good frames: 6 of the last 10 failed
    assert level_and_message(stats.snapshot())[0] == 2
    run(stats, clock, 0.1, 10, [0.01])  # one more: 5 of 10, not more than half
    snap = stats.snapshot()
    assert snap.failed_of_last == 5 and level_and_message(snap)[0] == 1  # bad frames in the window: WARN
    run(stats, clock, 2.0, 10, [0.01] * 20)  # frames stop failing, the window passes
    snap = stats.snapshot()
    assert snap.failed_of_last == 0 and level_and_message(snap) == (0, "ok: 10.0 Hz out of 10.0 Hz in")
    assert values(to_status(snap))["bad_frames"] == "50"


def test_error_threshold_parameters_are_checked():
    for window, share in ((0, 0.5), (10, 1.0), (10, -0.1)):
        with pytest.raises(ValueError):
            PoseStats(error_window=window, error_share=share)
