"""The DDS test harness of the ROS tests: processes, environments and a probe participant.

Plain helpers (no fixtures: those are in conftest.py), importable without ROS -- rclpy is imported
inside the functions that need it. Each DDS test gets its own ROS_DOMAIN_ID (:func:`fresh_domain`)
and localhost discovery (:func:`child_env`).
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

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 30.0  # generous: the machine is shared
_domains = itertools.count()


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


def _default_signals() -> None:
    """SIGINT / SIGTERM back to their defaults in a child before exec: a test run started in the
    background (``make test &`` in a non-interactive shell) ignores SIGINT, an ignored signal stays
    ignored across exec, and ``ros2 launch`` then never acts on the Ctrl-C :func:`stop` sends."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def start(cmd, domain: int, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "w")
    proc = subprocess.Popen([str(c) for c in cmd], env=child_env(domain), stdout=log, stderr=subprocess.STDOUT,
                            cwd=str(log_path.parent), preexec_fn=_default_signals)
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

    def subscribe(self, msg_type, topic: str, qos=1000):
        """Record every message of ``topic``. The deep reader queue keeps the probe from losing
        samples while its one executor thread converts large messages (KEEP_LAST drops the oldest)."""
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


class Spun:
    """A private rclpy context on ``domain`` whose nodes an executor thread spins: for a node
    under test run in this process (stand-ins the test hands it), talking DDS to the probe."""

    def __init__(self, domain: int):
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)

    def spin(self, node):
        """Add ``node`` (made in :attr:`context`) and start spinning (once)."""
        self.executor.add_node(node)
        if not self.thread.is_alive():
            self.thread.start()
        return node

    def close(self):
        """Stop spinning, destroy the nodes, shut the context down."""
        self.executor.shutdown(timeout_sec=2.0)
        for node in list(self.executor.get_nodes()):
            node.destroy_node()
        self.context.try_shutdown()
        if self.thread.is_alive():
            self.thread.join(timeout=5.0)


def sensor_qos():
    """The QoS the tests send camera frames with: the node's default ``image_qos`` (reliable, keep-last
    depth 1; probpose_ros.image_qos). A best-effort publisher would not match the node's subscription."""
    from probpose_ros.image_qos import image_qos

    return image_qos()


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
