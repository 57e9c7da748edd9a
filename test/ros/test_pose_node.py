"""The pose node as a real process over DDS (localhost, a private ROS_DOMAIN_ID per test).

The harness (processes, environments, :class:`~ros_harness.Probe`) is in ros_harness.py, the
``domain`` / ``probe`` / ``tiny_model`` fixtures in conftest.py (which also makes install/
importable and skips, or in CI fails, when ROS is unavailable).
"""
import subprocess
import time

import numpy as np
import pytest
from ros_harness import (ROOT, TIMEOUT, Probe, Spun, child_env, image_msg, installed_executable, output, replay_cmd, sensor_qos,
                         start_node, stamp_ns, stop, write_video)

from probpose_ros import depth_outputs
from probpose_ros.pose_node import PARAMETERS, parameter_defaults


# -- parameters --------------------------------------------------------------------------
def test_parameters_have_descriptions_and_unique_names():
    names = [p.name for p in PARAMETERS]
    assert len(names) == len(set(names))
    assert {"image_topic", "compressed", "model", "runtime", "detector", "max_people", "presence_threshold",
            "credible_level", "publish_markers", "publish_annotated_image", "max_rate_hz",
            "tracking", "track_min_hits", "track_max_misses", "track_high_score", "track_low_score",
            "rep155", "autostart", "detector_threshold", "image_qos", "image_qos_depth", "max_image_pixels", "allow_uncalibrated",
            "error_window", "error_share", "detect_every", "detect_max_interval"} | \
        {p.name for p in depth_outputs.PARAMETERS} == set(names)
    assert all(len(p.description) > 20 for p in PARAMETERS)
    assert parameter_defaults()["detector"] == "picodet"


# -- real processes over DDS ------------------------------------------------------------
def _subscribe_outputs(probe, prefix=""):
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray

    from probpose_msgs.msg import HumanArray

    probe.subscribe(HumanArray, f"{prefix}/humans/keypoints")
    probe.subscribe(MarkerArray, f"{prefix}/humans/markers")
    probe.subscribe(Image, f"{prefix}/humans/image_annotated", sensor_qos())
    probe.subscribe(DiagnosticArray, "/diagnostics")


def wait_ready(probe, node):
    """Wait until the node's /diagnostics reach the probe: discovery between the two is done
    (it can take seconds; data published before it is lost)."""
    assert probe.wait_for(lambda: probe.diagnostics(), proc=node), f"no /diagnostics from the node:\n{output(node)}"


def _check_outputs_match(probe, width, height, frame_id="camera"):
    """Every HumanArray: the image's size and frame_id, one full-frame person; a MarkerArray and
    an annotated image with the same stamps exist for the stamps they were received for."""
    humans = probe.messages("/humans/keypoints")
    assert humans
    for msg in humans:
        assert msg.header.frame_id == frame_id
        assert (msg.image_width, msg.image_height) == (width, height)
        assert len(msg.humans) == 1 and len(msg.humans[0].keypoints) == 17
        assert list(msg.humans[0].bbox) == [0.0, 0.0, float(width), float(height)]
        assert 0 < msg.processing_latency < 5.0
        assert msg.model_id.startswith("tiny.onnx:")
    stamps = [stamp_ns(m.header) for m in humans]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    # topics are not ordered against each other: a frame's markers or image can arrive before its
    # HumanArray, so wait until every stamp they carry has a HumanArray (the node publishes one first)
    def humans_stamps() -> set:
        return {stamp_ns(m.header) for m in probe.messages("/humans/keypoints")}

    def marker_stamps() -> set:
        return {stamp_ns(m.header) for arr in probe.messages("/humans/markers") for m in arr.markers}

    def image_stamps() -> set:
        return {stamp_ns(m.header) for m in probe.messages("/humans/image_annotated")}

    assert probe.wait_for(lambda: marker_stamps() and marker_stamps() <= humans_stamps()), \
        (marker_stamps() - humans_stamps())
    assert all(m.header.frame_id == frame_id for arr in probe.messages("/humans/markers") for m in arr.markers)
    assert probe.wait_for(lambda: image_stamps() and image_stamps() <= humans_stamps()), \
        (image_stamps() - humans_stamps())
    images = probe.messages("/humans/image_annotated")
    assert all((m.encoding, m.width, m.height) == ("rgb8", width, height) for m in images)


def test_replay_raw_video_to_node_with_launch_arguments(domain, probe, tiny_model, tmp_path):
    """camera_replay (bgr8) -> the node started as launch_ros starts it -> HumanArray + markers."""
    exe = installed_executable("pose_node")
    model_params = tmp_path / "model.yaml"
    model_params.write_text(f"/**:\n  ros__parameters:\n    model: {tiny_model}\n    detector: full_frame\n")
    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-r", "__node:=probpose", "--params-file", ROOT / "config" / "params.yaml",
                      "--params-file", model_params, "-r", "image:=/camera/image_raw", executable=exe)
    try:
        wait_ready(probe, node)
        video = write_video(tmp_path / "clip.avi", frames=30)
        replay = subprocess.run(replay_cmd(video, "--rate", "8", "--wait-subscribers", "1"), env=child_env(domain),
                                capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        assert probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) >= 5
                              and probe.messages("/humans/markers") and probe.messages("/humans/image_annotated"),
                              proc=node), output(node)
        _check_outputs_match(probe, 320, 240)
        assert probe.wait_for(lambda: int(probe.diagnostics().get("frames_published", 0)) >= 5, proc=node)
        diag = probe.diagnostics()
        assert float(diag["latency_median_ms"]) > 0 and float(diag["overhead_median_ms"]) > 0, diag
    finally:
        code = stop(node)
    assert code == 0, output(node)


def test_replay_compressed_to_node(domain, probe, tiny_model, tmp_path):
    import cv2

    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i:03d}.jpg"), np.full((120, 160, 3), 20 * i, np.uint8))
    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-p", "compressed:=true",
                      "-p", "image_topic:=/cam/image/compressed", "-p", "credible_level:=0.0")
    try:
        wait_ready(probe, node)
        replay = subprocess.run(replay_cmd(folder, "--compressed", "--topic", "/cam/image/compressed",
                                           "--rate", "10", "--loop", "--max-frames", "24", "--frame-id", "cam_optical",
                                           "--wait-subscribers", "1"),
                                env=child_env(domain), capture_output=True, text=True, timeout=60)
        assert replay.returncode == 0, replay.stderr
        assert probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) >= 3, proc=node), output(node)
        _check_outputs_match(probe, 160, 120, frame_id="cam_optical")
        # credible_level 0: no regions published
        assert all(not k.credible_region for m in probe.messages("/humans/keypoints")
                   for h in m.humans for k in h.keypoints)
    finally:
        code = stop(node)
    assert code == 0, output(node)


FIRST = 1_000_000_000_000  # the stamp (ns) of the overload test's first frame


def test_overload_latest_frame_wins(domain, probe, tiny_model, tmp_path):
    """Frames at 2.5x the node's rate: drops are counted and the published results stay fresh
    (counts of frames, not wall-clock bounds: the machine is shared)."""
    from sensor_msgs.msg import Image

    _subscribe_outputs(probe)
    rate_hz, input_hz, seconds = 8.0, 20.0, 4.0
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-p", f"max_rate_hz:={rate_hz}",
                      "-p", "publish_annotated_image:=false", "-r", "image:=/camera/image_raw")
    try:
        wait_ready(probe, node)
        pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node)
        frame = np.zeros((240, 320, 3), np.uint8)
        frames = int(seconds * input_hz)
        t0 = time.perf_counter()
        for i in range(frames):  # frame i has stamp FIRST + i ms
            time.sleep(max(0.0, t0 + i / input_hz - time.perf_counter()))
            pub.publish(image_msg(frame, FIRST + i * 10**6))
        done_sending = time.time()

        def settled():  # a status from after the last frame, in which every frame the node received
            statuses = [m for m in probe.messages("/diagnostics")  # is accounted for: published or dropped
                        if m.header.stamp.sec + 1e-9 * m.header.stamp.nanosec > done_sending + 0.5]
            d = {k: int(v) for k, v in probe.diagnostics().items() if k.startswith(("frames_", "dropped_frames"))}
            return bool(statuses) and d["frames_received"] == d["frames_published"] + d["dropped_frames"] > 0

        assert probe.wait_for(settled, proc=node), probe.diagnostics()
        diag = {k: int(v) for k, v in probe.diagnostics().items() if k.startswith(("frames_", "dropped_frames"))}
        published = diag["frames_published"]
        assert probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) >= published, proc=node)  # reliable
        indices = [(stamp_ns(m.header) - FIRST) // 10**6 for m in probe.messages("/humans/keypoints")]
        print(f"overload: sent {frames}, node received {diag['frames_received']}, dropped {diag['dropped_frames']}, "
              f"published {published}, frame indices published {indices}")
        assert len(indices) == published and indices == sorted(indices)
        assert published <= rate_hz * (seconds + 1.5)  # the rate limit holds ...
        assert diag["dropped_frames"] >= 0.25 * diag["frames_received"]  # ... and the rest is counted as dropped
        # latest frame wins, in frames: between two results the worker skipped the frames that came meanwhile
        # (a queue hands out every frame in turn: gaps of 1), and the last result is of one of the last frames
        # sent (a queue would end (1 - rate/input) * frames = 48 frames behind; here a few may be lost in DDS)
        assert np.median(np.diff(indices)) >= 2, indices
        assert indices[-1] >= frames - 10, indices
    finally:
        code = stop(node)
    assert code == 0, output(node)


def test_bad_frames_are_counted_and_the_node_keeps_running(domain, probe, tiny_model, tmp_path):
    from sensor_msgs.msg import Image

    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-r", "image:=/camera/image_raw")
    try:
        wait_ready(probe, node)
        pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node)
        good = np.zeros((48, 64, 3), np.uint8)
        unknown = image_msg(good, 1)
        unknown.encoding = "32FC7"
        truncated = image_msg(good, 2)
        truncated.data = truncated.data[:100]
        empty = image_msg(good, 3)
        empty.height = empty.width = empty.step = 0
        empty.data = truncated.data[:0]
        for bad, kind in ((unknown, "unknown_encoding"), (truncated, "truncated"), (empty, "empty")):
            def counted(kind=kind):
                return int(probe.diagnostics().get(f"bad_frames.{kind}", 0)) >= 1

            for _ in range(int(TIMEOUT / 0.3)):  # best effort: repeat until the node has seen one
                pub.publish(bad)
                if probe.wait_for(counted, timeout=0.3, proc=node):
                    break
            assert counted(), probe.diagnostics()
        for i in range(int(TIMEOUT / 0.2)):
            pub.publish(image_msg(good, 10**9 + i))
            if probe.wait_for(lambda: probe.messages("/humans/keypoints"), timeout=0.2, proc=node):
                break
        assert probe.messages("/humans/keypoints"), "no output after the bad frames"
        assert node.poll() is None
        assert probe.wait_for(lambda: int(probe.diagnostics().get("bad_frames", 0)) >= 3, proc=node)
    finally:
        code = stop(node)
    assert code == 0, output(node)
    log = output(node)
    for kind in ("unknown_encoding", "truncated", "empty"):
        assert log.count(f"bad frame ({kind})") == 1, log  # warned once per kind


class FailingDetector:
    """Stand-in detector: raises while ``failing``, else one full-frame person."""

    name = "failing"
    failing = True

    def detect(self, frame):
        if self.failing:
            raise RuntimeError("the detector exploded")
        h, w = frame.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h)]]), np.array([0.9])


def test_failing_frames_log_a_traceback_and_turn_diagnostics_to_error(domain, probe, tiny_model, monkeypatch):
    """Issue 19 D3: every frame failing (a detector that raises) kept /diagnostics at WARN and
    logged repr(exc) without a traceback. Now the first failure of its kind is logged once, at
    error level, with its traceback (seen on /rosout), /diagnostics goes to ERROR while more than
    error_share of the last error_window frames failed, and back to OK once frames succeed."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
    from rcl_interfaces.msg import Log
    from sensor_msgs.msg import Image

    from probpose_ros import pose_node

    detector = FailingDetector()
    monkeypatch.setattr(pose_node, "make_detector", lambda name, **kw: detector)
    probe.subscribe(DiagnosticArray, "/diagnostics")
    probe.subscribe(Log, "/rosout")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    node = InProcessNode(domain, model=str(tiny_model), image_topic="/camera/image_raw", error_window=10,
                         error_share=0.5, publish_markers=False, publish_annotated_image=False)

    def level():
        statuses = [s for m in probe.messages("/diagnostics") for s in m.status if "probpose" in s.name]
        return statuses[-1].level if statuses else None

    def feed_until(condition):
        for i in range(int(2 * TIMEOUT / 0.2)):
            pub.publish(image_msg(np.zeros((120, 160, 3), np.uint8), 10**9 + feed_until.sent))
            feed_until.sent += 1
            if probe.wait_for(condition, timeout=0.2):
                return True
        return False

    feed_until.sent = 0
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1)
        assert feed_until(lambda: level() == DiagnosticStatus.ERROR), (level(), probe.diagnostics())
        values = probe.diagnostics()
        assert int(values["bad_frames.error_RuntimeError"]) > 5 and values["failed_of_last_frames"] == "10/10"
        logged = [m.msg for m in probe.messages("/rosout") if "error_RuntimeError" in m.msg]
        assert len(logged) == 1, logged
        assert [m.level for m in probe.messages("/rosout") if "error_RuntimeError" in m.msg] == [Log.ERROR]
        assert "Traceback (most recent call last)" in logged[0] and "in detect" in logged[0], logged[0]
        assert "RuntimeError: the detector exploded" in logged[0]
        detector.failing = False
        assert feed_until(lambda: level() == DiagnosticStatus.OK), (level(), probe.diagnostics())
        values = probe.diagnostics()
        assert int(values["bad_frames.error_RuntimeError"]) > 5 and int(values["frames_published"]) > 5
        assert len([m for m in probe.messages("/rosout") if "error_RuntimeError" in m.msg]) == 1  # once per kind
    finally:
        node.close()


def test_missing_model_is_a_clear_startup_error(domain, tmp_path):
    node = start_node(domain, tmp_path, "-p", "model:=/nonexistent/model.onnx")
    assert node.wait(TIMEOUT) == 2
    assert "model not found" in output(node)


# -- the node in this process (a stand-in detector), over DDS to the probe -------------
class InProcessNode:
    """A PoseNode in this process (:class:`ros_harness.Spun`): the test can hand it stand-ins
    (e.g. a detector) that a child process cannot take; the probe talks to it over DDS."""

    def __init__(self, domain: int, **params):
        from rclpy.parameter import Parameter

        from probpose_ros.pose_node import PoseNode

        self.spun = Spun(domain)
        self.node = PoseNode(context=self.spun.context,
                             parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
        assert self.node.start(), self.node.failure  # before spinning: the executor then sees the subscription
        self.spun.spin(self.node)

    def close(self):
        self.node.stop()
        self.spun.close()


class NanFirstDetector:
    """Stand-in detector: a NaN box with the highest score first, then two valid boxes."""

    name = "nan_first"
    boxes = np.array([[np.nan, 10.0, 100.0, 200.0], [20.0, 10.0, 100.0, 200.0], [180.0, 20.0, 120.0, 200.0]])
    scores = np.array([0.95, 0.6, 0.4])

    def detect(self, frame):
        return self.boxes.copy(), self.scores.copy()


def test_detector_threshold_parameter_reaches_the_detector(domain, tiny_model):
    """detector_threshold: negative keeps the detector's default (NanoDet 0.35), a value sets it."""
    from probpose_core.detection.nanodet import SCORE_THRESHOLD

    for value, expected in ((-1.0, SCORE_THRESHOLD), (0.6, 0.6)):
        node = InProcessNode(domain, model=str(tiny_model), detector="nanodet", detector_threshold=value)
        try:
            assert node.node.detector.score_threshold == pytest.approx(expected)
        finally:
            node.close()


def test_duty_cycle_parameters_reach_the_core_object(domain, tiny_model):
    """detect_every / detect_max_interval configure the node's TrackedPipeline (its logic is
    tested in test/test_tracked.py); without tracking every frame is detected whatever k says."""
    node = InProcessNode(domain, model=str(tiny_model), detect_every=3, detect_max_interval=0.5, tracking=False)
    try:
        people = node.node.people
        assert (people.duty.detect_every, people.duty.max_interval, people.tracker) == (3, 0.5, None)
        frame = np.zeros((120, 160, 3), np.uint8)
        for t in range(3):
            people(frame, float(t))
        assert people.detected_frames == 3
    finally:
        node.close()


def test_max_people_applies_to_valid_boxes(domain, probe, tiny_model, monkeypatch):
    """max_people 1 and a detector whose best box is NaN: the best VALID box is the one person
    published (the old node cut to max_people before skipping invalid boxes: nobody)."""
    from sensor_msgs.msg import Image

    from probpose_msgs.msg import HumanArray
    from probpose_ros import pose_node

    monkeypatch.setattr(pose_node, "make_detector", lambda name, **kw: NanFirstDetector())
    probe.subscribe(HumanArray, "/humans/keypoints")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    node = InProcessNode(domain, model=str(tiny_model), max_people=1, image_topic="/camera/image_raw",
                         publish_markers=False, publish_annotated_image=False, detect_every=1)  # every frame detected
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1)
        frame = np.zeros((240, 320, 3), np.uint8)
        for i in range(int(TIMEOUT / 0.2)):  # best effort: repeat until a result is back
            pub.publish(image_msg(frame, 10**9 + i))
            if probe.wait_for(lambda: probe.messages("/humans/keypoints"), timeout=0.2):
                break
        msgs = probe.messages("/humans/keypoints")
        assert msgs, "no HumanArray"
        assert [[list(h.bbox) for h in m.humans] for m in msgs] == [[[20.0, 10.0, 100.0, 200.0]]] * len(msgs)
        assert node.node.pipeline.skipped_total >= len(msgs)  # the NaN box was skipped, every frame
        values = {kv.key: kv.value for kv in node.node.diagnostic_status().values}
        assert int(values["invalid_boxes_skipped"]) == node.node.pipeline.skipped_total  # counted in /diagnostics
    finally:
        node.close()


class BrightBlobDetector:
    """Stand-in detector: one box per bright blob (connected component of pixels > 128 in the
    first channel); the blobs' scores alternate 0.9 / 0.5 from call to call, so the score order of
    the people -- the order of HumanArray.humans, and the ids of a node without tracking -- flips
    every frame."""

    name = "bright_blobs"

    def __init__(self):
        self.calls = 0

    def detect(self, frame):
        import cv2

        n, _, stats, _ = cv2.connectedComponentsWithStats((frame[..., 0] > 128).astype(np.uint8))
        boxes = np.array([s[:4] for s in stats[1:] if s[4] > 200], dtype=np.float64).reshape(-1, 4)
        boxes = boxes[np.argsort(boxes[:, 0])]
        self.calls += 1
        scores = np.array([0.9, 0.5] if self.calls % 2 else [0.5, 0.9])[:len(boxes)]
        return boxes, scores


def write_two_people(path, frames: int = 40, size=(320, 240)):
    """Two bright 60x150 rectangles walking towards each other (never overlapping), MJPG AVI."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 20, np.uint8)
        frame[40:190, 20 + 2 * i:80 + 2 * i] = 230
        frame[50:200, 240 - 2 * i:300 - 2 * i] = 230
        writer.write(frame)
    writer.release()
    return path


def test_track_ids_are_stable_over_a_replayed_sequence(domain, probe, tiny_model, monkeypatch, tmp_path):
    """camera_replay of two people walking -> the node (a blob detector whose score order flips
    every frame) -> HumanArray: from the frame a track is confirmed on, each person keeps one
    nonzero id and the two ids differ (without tracking the ids followed the score order)."""
    from probpose_msgs.msg import HumanArray
    from probpose_ros import pose_node

    monkeypatch.setattr(pose_node, "make_detector", lambda name, **kw: BrightBlobDetector())
    probe.subscribe(HumanArray, "/humans/keypoints")
    node = InProcessNode(domain, model=str(tiny_model), image_topic="/camera/image_raw", track_min_hits=2,
                         publish_markers=False, publish_annotated_image=False, detect_every=1)  # the flips every frame
    try:
        probe.wait_for(lambda: True)
        video = write_two_people(tmp_path / "two.avi")
        replay = subprocess.run(replay_cmd(video, "--rate", "5", "--wait-subscribers", "1"),  # (a loaded machine)
                                env=child_env(domain), capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert probe.wait_for(lambda: sum(len(m.humans) == 2 for m in probe.messages("/humans/keypoints")) >= 8)
        msgs = [m for m in probe.messages("/humans/keypoints") if len(m.humans) == 2]
        tracked = [m for m in msgs if all(h.id for h in m.humans)]
        assert len(tracked) >= 6, [[h.id for h in m.humans] for m in msgs]
        first = msgs.index(tracked[0])
        assert all(all(h.id for h in m.humans) for m in msgs[first:]), [[h.id for h in m.humans] for m in msgs]
        left = {min(m.humans, key=lambda h: h.bbox[0]).id for m in tracked}
        right = {max(m.humans, key=lambda h: h.bbox[0]).id for m in tracked}
        orders = {tuple(h.bbox[0] < 160 for h in m.humans) for m in tracked}
        assert len(orders) == 2, "the score order did not flip: the test proves nothing"
        assert len(left) == 1 and len(right) == 1 and left != right, (left, right)
    finally:
        node.close()


def test_rep155_topics_from_the_node(domain, probe, tiny_model, tmp_path):
    """The real node process publishes REP-155 bodies of its tracked person: /humans/bodies/tracked
    lists the body, whose skeleton2d carries the image's stamp and the HumanArray's track id; on
    shutdown the list is cleared (an empty IdsList is the last message)."""
    from hri_msgs.msg import IdsList, Skeleton2D
    from sensor_msgs.msg import Image

    from probpose_msgs.msg import HumanArray
    from probpose_ros import rep155

    probe.subscribe(HumanArray, "/humans/keypoints")
    probe.subscribe(IdsList, "/humans/bodies/tracked")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-p", "rep155:=true", "-p", "publish_markers:=false", "-p", "publish_annotated_image:=false",
                      "-r", "image:=/camera/image_raw")
    skeletons = None
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node), output(node)
        frame = np.zeros((240, 320, 3), np.uint8)

        def tracked():
            return [m for m in probe.messages("/humans/bodies/tracked") if m.ids]

        for i in range(int(TIMEOUT / 0.2)):
            pub.publish(image_msg(frame, 10**9 + i * 10**8))
            if probe.wait_for(lambda: tracked(), timeout=0.2, proc=node):
                break
        assert tracked(), (probe.messages("/humans/bodies/tracked"), output(node))
        body = tracked()[0].ids[0]
        assert len(tracked()[0].ids) == 1 and body[0].isalpha()
        humans = {stamp_ns(m.header): m for m in probe.messages("/humans/keypoints")}
        assert body.endswith(str(humans[stamp_ns(tracked()[0].header)].humans[0].id))  # prefix + track id
        skeletons = Probe(domain)  # a second participant: the body's topic is known only now; latched
        skeletons.subscribe(Skeleton2D, f"/humans/bodies/{body}/skeleton2d", rep155.QOS)  # (libhri's QoS)
        assert skeletons.wait_for(lambda: skeletons.messages(f"/humans/bodies/{body}/skeleton2d"), proc=node)
        skeleton = skeletons.messages(f"/humans/bodies/{body}/skeleton2d")[-1]
        assert len(skeleton.skeleton) == 18  # the image's stamp, as the frame's HumanArray:
        assert probe.wait_for(lambda: stamp_ns(skeleton.header) in {stamp_ns(m.header) for m in
                                                                    probe.messages("/humans/keypoints")})
        assert all(0.0 <= p.x <= 1.0 and 0.0 <= p.y <= 1.0 for p in skeleton.skeleton)
    finally:
        if skeletons is not None:
            skeletons.close()
        code = stop(node)
    assert code == 0, output(node)
    assert probe.wait_for(lambda: not probe.messages("/humans/bodies/tracked")[-1].ids), \
        "the body list was not cleared on shutdown"


# -- lifecycle ----------------------------------------------------------------------------
def _lifecycle_clients(probe, node_name="/probpose"):
    from lifecycle_msgs.srv import ChangeState, GetState

    return (probe.node.create_client(ChangeState, f"{node_name}/change_state"),
            probe.node.create_client(GetState, f"{node_name}/get_state"))


def _call(probe, client, request, proc):
    future = client.call_async(request)
    assert probe.wait_for(future.done, proc=proc), "service call timed out"
    return future.result()


def _transition(probe, change, transition_id, proc) -> bool:
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    return _call(probe, change, ChangeState.Request(transition=Transition(id=transition_id)), proc).success


def _state(probe, get, proc) -> str:
    from lifecycle_msgs.srv import GetState

    return _call(probe, get, GetState.Request(), proc).current_state.label


def _results_after_frames(probe, pub, proc, n=int(TIMEOUT / 0.2)) -> bool:
    """Publish frames until a new HumanArray arrives (True) or ``n`` frames went unanswered."""
    before = len(probe.messages("/humans/keypoints"))
    for i in range(n):
        pub.publish(image_msg(np.zeros((120, 160, 3), np.uint8), 10**9 + i))
        if probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) > before, timeout=0.2, proc=proc):
            return True
    return False


def test_lifecycle_transitions_through_the_services(domain, probe, tiny_model, tmp_path):
    """autostart:=false (as the launch file passes it): the node waits unconfigured; configure
    creates the outputs without subscribing, activate subscribes and processes, deactivate
    unsubscribes (processing stops), cleanup removes the outputs; configure works again."""
    from lifecycle_msgs.msg import Transition
    from sensor_msgs.msg import Image

    from probpose_msgs.msg import HumanArray

    probe.subscribe(HumanArray, "/humans/keypoints")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    change, get = _lifecycle_clients(probe)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-p", "autostart:=false", "-r", "image:=/camera/image_raw")

    def keypoint_publishers():
        return probe.node.count_publishers("/humans/keypoints")

    def results_after_frames(n=int(TIMEOUT / 0.2)):
        return _results_after_frames(probe, pub, node, n)

    try:
        assert probe.wait_for(lambda: change.service_is_ready() and get.service_is_ready(), proc=node), output(node)
        assert _state(probe, get, node) == "unconfigured"
        assert keypoint_publishers() == 0 and pub.get_subscription_count() == 0

        assert _transition(probe, change, Transition.TRANSITION_CONFIGURE, node)
        assert _state(probe, get, node) == "inactive"
        assert probe.wait_for(lambda: keypoint_publishers() == 1, proc=node)
        assert pub.get_subscription_count() == 0  # not subscribed while inactive

        assert _transition(probe, change, Transition.TRANSITION_ACTIVATE, node)
        assert _state(probe, get, node) == "active"
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, proc=node)
        assert results_after_frames(), output(node)

        assert _transition(probe, change, Transition.TRANSITION_DEACTIVATE, node)
        assert _state(probe, get, node) == "inactive"
        assert probe.wait_for(lambda: pub.get_subscription_count() == 0, proc=node)  # processing stopped
        assert not results_after_frames(10)

        assert _transition(probe, change, Transition.TRANSITION_CLEANUP, node)
        assert _state(probe, get, node) == "unconfigured"
        assert probe.wait_for(lambda: keypoint_publishers() == 0, proc=node)  # publishers gone, model freed

        assert _transition(probe, change, Transition.TRANSITION_CONFIGURE, node)
        assert _transition(probe, change, Transition.TRANSITION_ACTIVATE, node)
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, proc=node)
        assert results_after_frames(), output(node)
    finally:
        code = stop(node)
    assert code == 0, output(node)


def test_cleanup_then_configure_loads_another_model_and_refuses_what_it_cannot_apply(domain, probe, tiny_model,
                                                                                     tmp_path):
    """Issue 19 item 4: the parameters were read once at start-up and read-only, so no model
    could be loaded without a restart. Now they are read on configure: cleanup, set `model` to
    the shipped model, configure and activate, and the HumanArrays come from it. A change the
    node cannot apply in its state is refused with the reason: `model` while configured,
    `max_image_pixels` (read on activate) while active but not while inactive."""
    from lifecycle_msgs.msg import Transition
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from probpose_core.shipped import default_pose_model
    from probpose_msgs.msg import HumanArray

    probe.subscribe(HumanArray, "/humans/keypoints")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    change, get = _lifecycle_clients(probe)
    set_client = probe.node.create_client(SetParameters, "/probpose/set_parameters")
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-r", "image:=/camera/image_raw")

    def set_parameter(name, value):
        request = SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        (result,) = _call(probe, set_client, request, node).results
        return result

    def model_ids():
        return {m.model_id.split(":")[0] for m in probe.messages("/humans/keypoints")}

    try:
        assert probe.wait_for(lambda: set_client.service_is_ready() and get.service_is_ready(), proc=node)
        assert probe.wait_for(lambda: _state(probe, get, node) == "active", proc=node)
        assert _results_after_frames(probe, pub, node) and model_ids() == {"tiny.onnx"}
        shipped = str(default_pose_model())

        refused = set_parameter("model", shipped)  # active
        assert not refused.successful and "model is read on configure" in refused.reason, refused.reason
        refused = set_parameter("max_image_pixels", 1000)
        assert not refused.successful and "read on activate" in refused.reason, refused.reason

        assert _transition(probe, change, Transition.TRANSITION_DEACTIVATE, node)
        assert set_parameter("max_image_pixels", 0).successful  # applied on the next activate
        assert not set_parameter("model", shipped).successful  # inactive is still configured

        assert _transition(probe, change, Transition.TRANSITION_CLEANUP, node)
        accepted = set_parameter("model", shipped)
        assert accepted.successful, accepted.reason
        assert _transition(probe, change, Transition.TRANSITION_CONFIGURE, node), output(node)
        assert _transition(probe, change, Transition.TRANSITION_ACTIVATE, node), output(node)
        assert probe.wait_for(lambda: pub.get_subscription_count() == 1, proc=node)
        before = len(probe.messages("/humans/keypoints"))
        assert _results_after_frames(probe, pub, node), output(node)
        assert {m.model_id.split(":")[0] for m in probe.messages("/humans/keypoints")[before:]} == \
            {"probpose_student.onnx"}
    finally:
        code = stop(node)
    assert code == 0, output(node)


def test_unusable_model_fails_configure_with_the_reason(domain, probe, tmp_path):
    from lifecycle_msgs.msg import Transition

    change, get = _lifecycle_clients(probe)
    node = start_node(domain, tmp_path, "-p", "model:=/nonexistent/model.onnx", "-p", "autostart:=false")
    try:
        assert probe.wait_for(lambda: change.service_is_ready() and get.service_is_ready(), proc=node), output(node)
        assert not _transition(probe, change, Transition.TRANSITION_CONFIGURE, node)
        assert _state(probe, get, node) == "unconfigured"
        assert probe.wait_for(lambda: "configure failed" in output(node) and "model not found" in output(node),
                              proc=node), output(node)
    finally:
        code = stop(node)
    assert code == 0, output(node)  # the node stayed up, waiting for a usable configuration


def test_one_worker_over_20_deactivate_activate_round_trips(domain, probe, tiny_model):
    """Issue 19 D2: with max_rate_hz the worker pauses between frames. Deactivate (the lifecycle
    service, on the node's executor) must end that pause at once: the old time.sleep could not be
    interrupted, so stop() blocked the executor for it (up to 10 s, then gave up and left the
    worker running, which after activate read the new slot: two workers). Each round trip
    processes a frame, so the worker is in its 100 s pause when deactivated; after each one the
    old worker has ended, exactly one runs, and the process's thread count is unchanged."""
    import threading

    from lifecycle_msgs.msg import Transition
    from sensor_msgs.msg import Image

    from probpose_msgs.msg import HumanArray

    probe.subscribe(HumanArray, "/humans/keypoints")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    change, _ = _lifecycle_clients(probe)
    node = InProcessNode(domain, model=str(tiny_model), detector="full_frame", image_topic="/camera/image_raw",
                         max_rate_hz=0.01, publish_markers=False, publish_annotated_image=False)

    def workers():
        return [t for t in threading.enumerate() if t.name == "probpose-worker"]

    try:
        assert probe.wait_for(change.service_is_ready)
        threads = None
        for trip in range(20):
            assert probe.wait_for(lambda: pub.get_subscription_count() == 1), f"trip {trip}: not subscribed"
            before = len(probe.messages("/humans/keypoints"))
            for i in range(int(TIMEOUT / 0.2)):  # until this activation's worker has processed a frame
                pub.publish(image_msg(np.zeros((120, 160, 3), np.uint8), 10**9 * (trip + 1) + i))
                if probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) > before, timeout=0.2):
                    break
            assert len(probe.messages("/humans/keypoints")) > before, f"trip {trip}: no HumanArray"
            worker = node.node._worker  # now in its max_rate_hz pause
            assert _transition(probe, change, Transition.TRANSITION_DEACTIVATE, None)
            assert not worker.is_alive(), f"trip {trip}: the paused worker outlived deactivate"
            assert probe.wait_for(lambda: pub.get_subscription_count() == 0)
            assert _transition(probe, change, Transition.TRANSITION_ACTIVATE, None)
            assert workers() == [node.node._worker]
            threads = threads or threading.active_count()
            assert threading.active_count() == threads, f"trip {trip}: {threading.enumerate()}"
    finally:
        node.close()
