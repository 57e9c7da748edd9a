"""probpose_ros.worker: the pose node's one-slot frame buffer, detection cut and drawing labels (no ROS)."""
import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from probpose_core.detection import FullFrameDetector, make_detector
from probpose_core.results import Human, Keypoint
from probpose_ros.worker import LatestFrame, Timings


@given(st.lists(st.sampled_from(["put", "take"]), max_size=60))
def test_latest_frame_keeps_only_the_newest_and_counts_drops(ops):
    slot, taken, pending, n = LatestFrame(), [], None, 0
    for op in ops:
        if op == "put":
            n += 1
            slot.put(n)
            pending = n
        elif pending is not None:  # take only when something is there (take blocks otherwise)
            taken.append(slot.take())
            assert taken[-1] == pending  # always the newest frame
            pending = None
    assert slot.received == n
    assert slot.dropped + len(taken) + (pending is not None) == n
    assert taken == sorted(taken)


def test_latest_frame_close_wakes_the_worker():
    slot = LatestFrame()
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.take()))
    worker.start()
    slot.close()
    worker.join(5.0)
    assert not worker.is_alive() and got == [None]
    slot.put(1)
    assert slot.take(timeout=0.01) is None  # closed: nothing more is handed out


def test_close_ends_the_rate_limit_pause():
    """The worker's max_rate_hz pause (issue 19 D2: a time.sleep that close() could not end)."""
    slot = LatestFrame()
    assert slot.wait_closed(0.0) is False and slot.wait_closed(-1.0) is False  # no pause left: no wait
    got = []
    worker = threading.Thread(target=lambda: got.append(slot.wait_closed(3600.0)))
    worker.start()
    slot.close()
    worker.join(30.0)
    assert not worker.is_alive() and got == [True]
    assert slot.wait_closed(3600.0) is True  # closed: returns at once


def test_detectors():
    boxes, scores = FullFrameDetector().detect(np.zeros((48, 64, 3), np.uint8))
    assert boxes.tolist() == [[0, 0, 64, 48]] and scores.tolist() == [1.0]
    assert make_detector("hog").name == "hog"
    with pytest.raises(Exception, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(Exception, match="not found"):
        make_detector("/nonexistent/yolo.onnx")


def test_people_are_labelled_by_track_id(monkeypatch):
    """The annotated image names a tracked person by its track id (as HumanArray does), an
    untracked one (id None or 0) by its index."""
    import probpose_core.overlay as overlay

    from probpose_core.overlay import draw_humans

    labels = []
    monkeypatch.setattr(overlay, "draw_pose", lambda *a, label=None, **kw: labels.append(label))
    kps = [Keypoint(name=f"k{i}", x=10.0, y=30.0, presence=0.9, visibility=0.9, oks_quality=0.5) for i in range(17)]
    people = [Human(bbox=(2, 2, 70, 50), score=0.5, keypoints=kps, id=track) for track in (7, None, 0, 12)]
    draw_humans(np.zeros((60, 80, 3), np.uint8), people, 0.5)
    assert labels == ["id 7", "#1", "#2", "id 12"]


def test_timings_medians_and_window():
    timings = Timings(size=3)
    assert timings.medians_ms() == {"pose_median_ms": "nan", "overhead_median_ms": "nan", "overhead_max_ms": "nan",
                                    "overhead_cpu_median_ms": "nan", "visualisation_median_ms": "nan"}
    for i in range(5):  # only the last 3 stay: pose 0.003 0.004 0.005, overhead 0.0015 0.002 0.0025
        timings.add(0.001 * (i + 1), 0.0005 * (i + 1), 0.0001, visualisation=0.0002 * i)
    assert timings.medians_ms() == {"pose_median_ms": "4.000", "overhead_median_ms": "2.000",
                                    "overhead_max_ms": "2.500", "overhead_cpu_median_ms": "0.100",
                                    "visualisation_median_ms": "0.600"}
