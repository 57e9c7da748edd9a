"""The pose node as a real process over DDS (localhost, a private ROS_DOMAIN_ID per test).

Also holds the harness the other ROS tests of this folder import (:class:`Probe`,
:func:`child_env`, :func:`start_node`, the ``tiny_model`` fixture). Each test gets its own
ROS_DOMAIN_ID (:func:`fresh_domain`); conftest.py makes install/ importable and skips (or, in
CI, fails) when ROS is unavailable.
"""
import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from probpose_ros.pose_node import (PARAMETERS, FullFrameDetector, LatestFrame, annotate, make_detector,
                                    parameter_defaults, top_people)

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0  # generous: the machine is shared
_domains = itertools.count()


# -- harness ---------------------------------------------------------------------------
def fresh_domain() -> int:
    """A ROS_DOMAIN_ID for one test (1..100: their ports stay below Linux's ephemeral range)."""
    return 1 + (os.getpid() * 13 + next(_domains)) % 100


def child_env(domain: int) -> dict:
    """The environment of a child process: localhost discovery, the test's domain."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.pop("ROS_LOCALHOST_ONLY", None)
    return env


def installed_executable(name: str) -> Path | None:
    """``<prefix>/lib/probpose_ros/<name>`` of the colcon install, or None."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    except ImportError:
        return None
    try:
        path = Path(get_package_prefix("probpose_ros")) / "lib" / "probpose_ros" / name
    except PackageNotFoundError:
        return None
    return path if path.is_file() and os.access(path, os.X_OK) else None


def start(cmd, domain: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([str(c) for c in cmd], env=child_env(domain), stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(log_path.parent))
    proc.log_path = log_path
    return proc


def start_node(domain: int, tmp_path: Path, *ros_args, executable: Path | None = None) -> subprocess.Popen:
    """The pose node (``executable`` or ``python -m probpose_ros.pose_node``) with ``--ros-args ...``."""
    cmd = [executable] if executable else [sys.executable, "-m", "probpose_ros.pose_node"]
    return start(cmd + ["--ros-args", *ros_args], domain, tmp_path / "node.log")


def replay_cmd(*args) -> list:
    return [sys.executable, "-m", "probpose_ros.camera_replay", *args]


def output(proc) -> str:
    return Path(proc.log_path).read_text(errors="replace")


def stop(proc, sig=signal.SIGINT, timeout: float = 20.0) -> int:
    """Send ``sig``, wait for the exit code (kill after ``timeout``)."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            pytest.fail(f"process did not exit {timeout:g} s after {sig!r}:\n{output(proc)}")
    return proc.returncode


class Probe:
    """The test's own ROS participant: a context on ``domain``, a node spun in a thread,
    subscriptions that record ``(msg, perf_counter)`` per topic.

    Create subscriptions and publishers first: the executor thread starts with the first
    :meth:`wait_for` (entities added while it waits were sometimes never served).
    """

    def __init__(self, domain: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node(f"probe_{os.getpid()}", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.received = defaultdict(list)
        self.lock = threading.Lock()
        self._thread = threading.Thread(target=self._spin, daemon=True)

    def _spin(self):
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except (ExternalShutdownException, Exception):
            pass

    def subscribe(self, msg_type, topic: str, qos=10):
        def record(msg):
            with self.lock:
                self.received[topic].append((msg, time.perf_counter()))

        return self.node.create_subscription(msg_type, topic, record, qos)

    def messages(self, topic: str) -> list:
        with self.lock:
            return [m for m, _ in self.received[topic]]

    def wait_for(self, condition, timeout: float = TIMEOUT, proc=None) -> bool:
        """Poll ``condition()`` until true; fail early if ``proc`` died."""
        if not self._thread.is_alive() and self.context.ok():
            self._thread.start()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"process exited with {proc.returncode}:\n{output(proc)}")
            time.sleep(0.02)
        return bool(condition())

    def diagnostics(self) -> dict:
        """key -> value of the latest probpose DiagnosticStatus received on /diagnostics."""
        for msg in reversed(self.messages("/diagnostics")):
            for status in msg.status:
                if "probpose" in status.name:
                    return {kv.key: kv.value for kv in status.values}
        return {}

    def close(self):
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
        self.context.try_shutdown()
        if self._thread.is_alive():
            self._thread.join(timeout=5.0)


def sensor_qos():
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1)


def image_msg(rgb, stamp_ns: int, frame_id: str = "camera", encoding: str = "rgb8"):
    import array

    from sensor_msgs.msg import Image

    from probpose_ros.image_conversion import rgb_to_fields

    fields = rgb_to_fields(rgb, encoding)
    data = fields.pop("data")
    msg = Image(**fields)
    msg.data = array.array("B", data)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), 10**9)
    return msg


def stamp_ns(header) -> int:
    return header.stamp.sec * 10**9 + header.stamp.nanosec


def write_video(path: Path, frames: int = 20, size=(320, 240), fps: float = 20.0) -> Path:
    """A small MJPG AVI: a bright disc moving over a dark background."""
    import cv2

    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        frame = np.full((size[1], size[0], 3), 30, np.uint8)
        cv2.circle(frame, (40 + 8 * i, size[1] // 2), 30, (0, 200, 255), -1)
        writer.write(frame)
    writer.release()
    return path


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny randomly initialised CNN pose model exported to ONNX (structure and timing only)."""
    torch = pytest.importorskip("torch")
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(0)
    config = cnn_config(embed_dim=32, head_channels=16, aux_channels=8)
    return export_onnx(build_model(config).eval(), tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def domain():
    return fresh_domain()


@pytest.fixture
def probe(domain):
    p = Probe(domain)
    yield p
    p.close()


# -- ROS-free parts ----------------------------------------------------------------------
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


def test_detectors_and_top_people():
    boxes, scores = FullFrameDetector().detect(np.zeros((48, 64, 3), np.uint8))
    assert boxes.tolist() == [[0, 0, 64, 48]] and scores.tolist() == [1.0]
    assert make_detector("hog").name == "hog"
    with pytest.raises(Exception, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(Exception, match="not found"):
        make_detector("/nonexistent/yolo.onnx")
    b, s = top_people(np.arange(16.0).reshape(4, 4), [0.2, 0.9, 0.5, 0.9], 3)
    assert s.tolist() == [0.9, 0.9, 0.5] and b[:, 0].tolist() == [4.0, 12.0, 8.0]
    assert top_people(np.zeros((0, 4)), [], 5)[0].shape == (0, 4)


def test_parameters_have_descriptions_and_unique_names():
    names = [p.name for p in PARAMETERS]
    assert len(names) == len(set(names))
    assert {"image_topic", "compressed", "model", "runtime", "detector", "max_people", "presence_threshold",
            "credible_level", "publish_markers", "publish_annotated_image", "max_rate_hz"} == set(names)
    assert all(len(p.description) > 20 for p in PARAMETERS)
    assert parameter_defaults()["detector"] == "full_frame"


def test_annotate_draws_on_a_copy():
    from probpose_core.results import Human, Keypoint

    frame = np.zeros((60, 80, 3), np.uint8)
    kps = [Keypoint(name=f"k{i}", x=10 + 3 * i, y=30, presence=0.9, visibility=0.9, oks_quality=0.5,
                    regions={0.5: [np.array([[5.0, 5], [20, 5], [20, 20]])]}) for i in range(17)]
    out = annotate(frame, [Human(bbox=(2, 2, 70, 50), score=0.5, keypoints=kps)], 0.5)
    assert out.any() and not frame.any()


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
    marker_stamps = {stamp_ns(m.header) for arr in probe.messages("/humans/markers") for m in arr.markers}
    assert marker_stamps and marker_stamps <= set(stamps)
    assert all(m.header.frame_id == frame_id for arr in probe.messages("/humans/markers") for m in arr.markers)
    images = probe.messages("/humans/image_annotated")
    assert images and {stamp_ns(m.header) for m in images} <= set(stamps)
    assert all((m.encoding, m.width, m.height) == ("rgb8", width, height) for m in images)


def test_replay_raw_video_to_node_with_launch_arguments(domain, probe, tiny_model, tmp_path):
    """camera_replay (bgr8) -> the node started as launch_ros starts it -> HumanArray + markers."""
    exe = installed_executable("pose_node")
    model_params = tmp_path / "model.yaml"
    model_params.write_text(f"/**:\n  ros__parameters:\n    model: {tiny_model}\n")
    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-r", "__node:=probpose", "--params-file", ROOT / "config" / "params.yaml",
                      "--params-file", model_params, "-r", "image:=/camera/image_raw", executable=exe)
    try:
        wait_ready(probe, node)
        video = write_video(tmp_path / "clip.avi", frames=30)
        replay = subprocess.run(replay_cmd(video, "--rate", "15", "--wait-subscribers", "1"), env=child_env(domain),
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
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "compressed:=true",
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


def test_overload_latest_frame_wins(domain, probe, tiny_model, tmp_path):
    """Frames at ~2.5x the node's rate: drops are counted and the published results stay fresh."""
    from sensor_msgs.msg import Image

    _subscribe_outputs(probe)
    rate_hz, input_hz, seconds = 8.0, 20.0, 4.0
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", f"max_rate_hz:={rate_hz}",
                      "-p", "publish_annotated_image:=false", "-r", "image:=/camera/image_raw")
    try:
        wait_ready(probe, node)
        pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node)
        frame = np.zeros((240, 320, 3), np.uint8)
        sent = {}
        t0 = time.perf_counter()
        for i in range(int(seconds * input_hz)):
            time.sleep(max(0.0, t0 + i / input_hz - time.perf_counter()))
            stamp = 1_000_000_000_000 + i * 10**6
            sent[stamp] = time.perf_counter()
            pub.publish(image_msg(frame, stamp))

        def settled():  # every frame the node received is accounted for: published or dropped
            d = {k: int(v) for k, v in probe.diagnostics().items() if k.startswith(("frames_", "dropped_frames"))}
            return (d.get("frames_received", 0) >= 0.8 * len(sent)
                    and d["frames_received"] == d["frames_published"] + d["dropped_frames"])

        assert probe.wait_for(settled, proc=node), probe.diagnostics()
        diag = probe.diagnostics()
        received = [(stamp_ns(m.header), t) for m, t in probe.received["/humans/keypoints"]]
        staleness = [t - sent[s] for s, t in received]
        print(f"overload: sent {len(sent)}, node received {diag['frames_received']}, dropped {diag['dropped_frames']}, "
              f"published {len(received)}, staleness max {max(staleness) * 1e3:.0f} ms, diagnostics {diag}")
        assert len(received) <= rate_hz * (seconds + 1.5)  # the rate limit holds ...
        assert int(diag["dropped_frames"]) >= 0.25 * len(sent)  # ... and the rest is counted as dropped
        # latest frame wins: results are never older than a few processing periods (a queue would
        # reach ~(1 - rate/input) * seconds = 2.4 s behind by the end).
        assert max(staleness) < 0.6
        assert max(m.processing_latency for m in probe.messages("/humans/keypoints")) < 0.6
    finally:
        code = stop(node)
    assert code == 0, output(node)


def test_bad_frames_are_counted_and_the_node_keeps_running(domain, probe, tiny_model, tmp_path):
    from sensor_msgs.msg import Image

    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-r", "image:=/camera/image_raw")
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


def test_missing_model_is_a_clear_startup_error(domain, tmp_path):
    node = start_node(domain, tmp_path, "-p", "model:=/nonexistent/model.onnx")
    assert node.wait(TIMEOUT) == 2
    assert "model not found" in output(node)
