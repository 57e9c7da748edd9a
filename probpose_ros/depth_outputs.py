"""The pose node's depth side: depth + camera_info in, ``humans/keypoints3d``, ``humans/keep_out``
and ``humans/keep_out_markers`` out (issue 11 items 3 and 4).

:class:`DepthOutputs` is owned by a node and called by it once per processed colour frame,
after the people are estimated and tracked (and after the HumanArray is published, so waiting
for depth never delays the 2D output):

- it subscribes to ``depth_topic`` (``sensor_msgs/Image``, 16UC1 millimetres or 32FC1 metres,
  aligned to the colour image: same size and pixel grid) with the QoS of the colour images, the
  node's ``image_qos`` / ``image_qos_depth`` (:mod:`probpose_ros.image_qos`: reliable by
  default, because a 640x480 16UC1 frame, 0.6 MB, is above stock Fast DDS's 0.5 MB shared-memory
  segment and best-effort frames that size get lost; a publisher it cannot match is warned about
  with the fix), and to ``camera_info_topic`` (``sensor_msgs/CameraInfo`` of that image: its
  ``K``; small, best effort, so any publisher matches). Depth callbacks only check the frame
  (cheap, no copy) and queue it in a :class:`~probpose_ros.sync.StampSync`;
- :meth:`DepthOutputs.process` (the node's worker thread) queues the colour frame's stamp in
  the same StampSync and gets the depth frame nearest to it within ``sync_slop`` seconds. The
  pairing is decided once a depth frame stamped at or after the colour frame has arrived; if
  none has, it waits up to ``depth_wait`` seconds for one (not at all when no depth frame
  arrived during the last second: a stopped depth stream costs no latency). Then it lifts the
  people (:func:`probpose_core.lifting.lift_frame`, all people at once), builds their capsules
  (:func:`probpose_core.keep_out.keep_out_frame`) and publishes both, with the COLOUR image's stamp
  and the DEPTH image's frame_id. Markers are built only while someone subscribes;
- a colour frame without usable depth (none within the slop, a wait that ran out, no
  camera_info yet, a depth image of another size than the colour image) still publishes both
  arrays, ``has_depth`` false, every keypoint not valid and every person incomplete with the
  reason: a safety controller always hears about every person the camera saw.

Bad inputs never stop the node: a depth image of another encoding, truncated or empty, or a
camera_info without a camera matrix, is warned about once per kind, counted and dropped.
Counters and timings: :meth:`DepthOutputs.stats` / :meth:`DepthOutputs.diagnostic_values`.

Threads: depth / camera_info callbacks run on the executor thread, ``process`` on the node's
worker; one lock (with a condition for the wait) guards the StampSync, the camera matrix and
the counters. ``process`` must be called from one thread at a time (frames in stamp order).
"""
import threading
import time
from collections import Counter, deque
from typing import NamedTuple

import numpy as np
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, Image
from visualization_msgs.msg import MarkerArray

from probpose_core.errors import InputError
from probpose_core.spec import DEFAULT_PRESENCE_THRESHOLD
from probpose_core.keep_out import PART_RADIUS, KeepOutConfig, keep_out_frame
from probpose_core.lifting import DepthNoise, LiftConfig, depth_in_metres, lift_frame
from probpose_msgs.msg import Human3DArray, KeepOutArray

from .depth_messages import (camera_matrix_from_info, depth_image_to_array, keep_out_markers, keep_out_to_msg,
                             keypoints3d_to_msg, no_depth_keep_out, no_depth_keypoints, output_header)
from . import image_qos as qos_choices
from .image_conversion import BadFrame
from .messages import order_humans
from .parameters import Param
from .sync import StampSync, stamp_ns

KEYPOINTS3D_TOPIC = "humans/keypoints3d"
KEEP_OUT_TOPIC = "humans/keep_out"
KEEP_OUT_MARKERS_TOPIC = "humans/keep_out_markers"
#: the kinds of bad input always listed in the counters (others appear when they occur)
BAD_KINDS = ("depth_encoding", "depth_truncated", "depth_empty", "depth_size", "camera_info", "camera_info_size")
STREAM_ALIVE_S = 1.0  # no depth frame for this long: process() does not wait for one


class DepthResult(NamedTuple):
    """What :meth:`DepthOutputs.process` published for one colour frame."""

    keypoints3d: list   # probpose_core.lifting.Keypoints3D per person, HumanArray order
    keep_outs: list     # probpose_core.keep_out.KeepOut per person, same order
    has_depth: bool
    reason: str | None  # why there is no depth (None when has_depth)
    waited_s: float     # seconds spent waiting for the depth image


#: The depth parameters, for the node's parameter table.
PARAMETERS = (
    Param("depth_topic", "", "Depth image aligned to the colour image (same size and pixel grid): "
                             "sensor_msgs/Image, 16UC1 millimetres or 32FC1 metres. Empty: no 3D outputs."),
    Param("camera_info_topic", "camera_info", "sensor_msgs/CameraInfo of the depth image; its K is used "
                                              "(distortion ignored: give rectified or low-distortion images)."),
    Param("sync_slop", 0.02, "Seconds: a depth image pairs with a colour image when their stamps differ "
                             "by at most this much (the nearest one is taken)."),
    Param("depth_wait", 0.1, "Seconds the worker waits for a depth image stamped at or after the colour "
                             "image before the frame goes out without depth (no wait while the depth "
                             "stream is silent for a second)."),
    Param("depth_queue_size", 20, "Depth images (and colour stamps) kept for pairing; at 30 Hz, 20 cover "
                                  "0.66 s of processing latency."),
    Param("depth_noise_a", 0.001, "Depth noise sigma_z = a + b z^2, constant part (metres). A model "
                                  "parameter: set it for your camera."),
    Param("depth_noise_b", 0.002, "Depth noise sigma_z = a + b z^2, quadratic part (1/metres)."),
    Param("keep_out_coverage", 0.95, "Per-limb probability, in (0, 1), that a keep-out capsule contains its "
                                     "body part (sets the uncertainty radius). With the model's coverage "
                                     "table its per-endpoint level (1 + c) / 2 must be calibrated (0.95 -> "
                                     "0.975, 0.9 -> 0.95): the 2D part is then measured; without a table, "
                                     "the Gaussian model only."),
) + tuple(Param(f"part_radius_{part}", radius, f"Keep-out body-part radius of the {part.replace('_', ' ')} "
                                                f"(metres) around the segment between the joint centres.")
          for part, radius in PART_RADIUS.items())


def parameter_defaults() -> dict:
    """name -> default of every depth parameter."""
    return {p.name: p.default for p in PARAMETERS}


class DepthOutputs:
    """Depth pairing, 3D keypoints and keep-out capsules of one node (module docstring).

    node: the ``rclpy`` node (subscriptions and publishers are created on it, topic names
    relative); depth_topic: required, non-empty; presence_threshold: the node's (keypoints below
    it are absent); coverage: the model's conformal.CoverageTable (``from_params`` takes the
    node pipeline's), None for Gaussian-only radii; image_qos / image_qos_depth: the depth
    subscription's reliability and keep-last depth (the node's parameters of those names). The
    rest are the :data:`PARAMETERS` (``part_radius``: part -> metres, the defaults of
    :data:`probpose_core.keep_out.PART_RADIUS` for missing parts). Bad values raise InputError (a
    keep_out_coverage the table cannot back, an image_qos that is neither reliable nor best_effort).
    """

    def __init__(self, node, depth_topic: str, camera_info_topic: str = "camera_info", sync_slop: float = 0.02,
                 depth_wait: float = 0.1, depth_queue_size: int = 20, depth_noise_a: float = 0.001,
                 depth_noise_b: float = 0.002, keep_out_coverage: float = 0.95, part_radius: dict | None = None,
                 presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD, coverage=None,
                 image_qos: str = qos_choices.DEFAULT, image_qos_depth: int = qos_choices.DEFAULT_DEPTH):
        if not depth_topic:
            raise InputError("DepthOutputs needs a depth_topic")
        if not float(sync_slop) >= 0 or not float(depth_wait) >= 0 or int(depth_queue_size) < 1:
            raise InputError(f"sync_slop and depth_wait must be >= 0 seconds and depth_queue_size >= 1, got "
                             f"{sync_slop}, {depth_wait}, {depth_queue_size}")
        if float(depth_noise_a) < 0 or float(depth_noise_b) < 0:
            raise InputError(f"depth noise a, b must be >= 0, got {depth_noise_a}, {depth_noise_b}")
        lift = LiftConfig(presence_threshold=float(presence_threshold),
                          noise=DepthNoise(a=float(depth_noise_a), b=float(depth_noise_b)), coverage=coverage)
        radii = dict(PART_RADIUS, **{k: float(v) for k, v in (part_radius or {}).items()})
        self.config = KeepOutConfig(coverage=float(keep_out_coverage), part_radius=radii, lift=lift)
        self.node = node
        self.depth_wait = float(depth_wait)
        self.sync = StampSync(float(sync_slop), int(depth_queue_size))
        self._cond = threading.Condition()
        self._waiting: set = set()     # tokens of colour frames process() waits for
        self._decided: dict = {}       # token -> depth item or None
        self._camera = None            # (K, frame_id, (width, height))
        self._last_depth = -np.inf     # monotonic time of the last good depth frame
        self._depth_frame = ""         # its frame_id
        self._closed = False
        self._warned: set = set()
        self.counts = Counter()
        self._times = deque(maxlen=200)  # (total s, wait s) per process() call
        depth_qos = qos_choices.image_qos(image_qos, int(image_qos_depth))  # InputError for a bad choice
        sensor_qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=5)
        self.pub_keypoints = node.create_publisher(Human3DArray, KEYPOINTS3D_TOPIC, 10)
        self.pub_keep_out = node.create_publisher(KeepOutArray, KEEP_OUT_TOPIC, 10)
        self.pub_markers = node.create_publisher(MarkerArray, KEEP_OUT_MARKERS_TOPIC, 10)
        self.sub_depth = node.create_subscription(
            Image, depth_topic, self._on_depth, depth_qos,
            event_callbacks=qos_choices.subscription_events(node.get_logger(), node.resolve_topic_name(depth_topic),
                                                            image_qos))
        self.sub_info = node.create_subscription(CameraInfo, camera_info_topic, self._on_camera_info, sensor_qos)

    @classmethod
    def from_params(cls, node, params: dict, presence_threshold: float):
        """A DepthOutputs from the node's parameter values (names of :data:`PARAMETERS` and the
        node's ``image_qos`` / ``image_qos_depth``, defaults for missing ones), or None when
        ``depth_topic`` is empty (depth off)."""
        p = dict(parameter_defaults(), **{k: v for k, v in params.items() if k in parameter_defaults()})
        if not p["depth_topic"]:
            return None
        radii = {part: p[f"part_radius_{part}"] for part in PART_RADIUS}
        coverage = getattr(getattr(node, "pipeline", None), "coverage", None)  # the model's table (spec.coverage)
        return cls(node, p["depth_topic"], p["camera_info_topic"], p["sync_slop"], p["depth_wait"],
                   p["depth_queue_size"], p["depth_noise_a"], p["depth_noise_b"], p["keep_out_coverage"], radii,
                   presence_threshold, coverage, params.get("image_qos", qos_choices.DEFAULT),
                   params.get("image_qos_depth", qos_choices.DEFAULT_DEPTH))

    # -- executor thread ------------------------------------------------------------------
    def _bad(self, kind: str, message: str) -> None:
        """Count a bad input (caller need not hold the lock) and warn once per kind."""
        with self._cond:
            self.counts[f"bad.{kind}"] += 1
            first = kind not in self._warned
            self._warned.add(kind)
        if first:
            self.node.get_logger().warning(f"depth outputs: bad input ({kind}): {message} -- dropped "
                                           f"(warned once per kind; counted in diagnostics)")

    def _on_depth(self, msg) -> None:
        try:
            depth = depth_image_to_array(msg)  # a view: checks encoding and size, copies nothing
        except BadFrame as exc:
            self._bad(exc.kind, str(exc))
            return
        except Exception as exc:  # e.g. a header without a stamp: never let it stop the executor
            self._bad(f"depth_error_{type(exc).__name__}", repr(exc))
            return
        item = (depth, msg.header.frame_id, msg.header.stamp)
        with self._cond:
            self.counts["depth_received"] += 1
            self._last_depth = time.monotonic()
            self._depth_frame = msg.header.frame_id
            self._deliver(self.sync.add_depth(stamp_ns(msg.header.stamp), item))

    def _on_camera_info(self, msg) -> None:
        try:
            k = camera_matrix_from_info(msg)
        except BadFrame as exc:
            self._bad(exc.kind, str(exc))
            return
        except Exception as exc:
            self._bad(f"camera_info_error_{type(exc).__name__}", repr(exc))
            return
        with self._cond:
            self.counts["camera_info_received"] += 1
            self._camera = (k, msg.header.frame_id, (int(msg.width), int(msg.height)))

    def _deliver(self, pairs) -> None:
        """Hand decided pairs to the process() calls waiting for them (lock held)."""
        woke = False
        for token, depth in pairs:
            if token in self._waiting:
                self._decided[token] = depth
                woke = True
        if woke:
            self._cond.notify_all()

    # -- worker thread --------------------------------------------------------------------
    def _pair(self, stamp: int):
        """(depth item or None, camera or None, why no depth or None, seconds waited)."""
        token = object()
        with self._cond:
            if self._closed:
                return None, None, "closed", 0.0
            self._waiting.add(token)
            self._deliver(self.sync.add_color(stamp, token))
            started = time.monotonic()
            deadline = started + (self.depth_wait if started - self._last_depth < STREAM_ALIVE_S else 0.0)
            while token not in self._decided and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            waited = time.monotonic() - started
            self._waiting.discard(token)
            decided = token in self._decided
            depth = self._decided.pop(token, None)
            camera = self._camera
        if depth is not None:
            return depth, camera, None, waited
        if decided:
            return None, camera, "no depth image within sync_slop of the colour stamp", waited
        return None, camera, "no depth image stamped at or after the colour image arrived in time", waited

    def process(self, header, humans, image_size):
        """Pair, lift, build capsules and publish one colour frame's people.

        header: the colour image's ``std_msgs/Header``; humans: its ``list[Human]`` (image px,
        any order: published in the HumanArray's order, :func:`messages.order_humans`);
        image_size: ``(width, height)`` of the colour image. Returns a :class:`DepthResult`, or
        None after :meth:`close`.
        """
        started = time.perf_counter()
        depth, camera, reason, waited = self._pair(stamp_ns(header.stamp))
        if reason == "closed":
            return None
        people = order_humans(humans)
        width, height = (int(v) for v in image_size)
        frame_id = ""
        depth_stamp = None
        if depth is not None:
            array, frame_id, depth_stamp = depth
            if array.shape != (height, width):
                self._bad("depth_size", f"depth image {array.shape[1]}x{array.shape[0]} is not aligned to the "
                                        f"{width}x{height} colour image")
                reason = "depth image not aligned to the colour image (another size)"
            elif camera is None:
                reason = "no camera_info received"
            elif camera[2] != (0, 0) and camera[2] != (width, height):
                self._bad("camera_info_size", f"camera_info is for {camera[2][0]}x{camera[2][1]}, the depth "
                                              f"image is {width}x{height}")
                reason = "camera_info is for another image size"
        if not frame_id:  # no depth image paired: the depth frame as camera_info or earlier depth gave it
            frame_id = (camera[1] if camera is not None else "") or self._depth_frame or header.frame_id
        if reason is None:
            depth_m = depth_in_metres(array)
            kp3d = lift_frame(people, depth_m, camera[0], self.config.lift)
            keep = keep_out_frame(people, kp3d, depth_m, camera[0], self.config)
        else:
            depth_stamp = None
            kp3d = [no_depth_keypoints(h) for h in people]
            keep = [no_depth_keep_out(h, reason) for h in people]
        has_depth = reason is None
        out_header = output_header(header, frame_id)
        self.pub_keypoints.publish(keypoints3d_to_msg(kp3d, out_header, self.config.lift.presence_threshold,
                                                      has_depth, depth_stamp))
        self.pub_keep_out.publish(keep_out_to_msg(keep, out_header, self.config.coverage, has_depth, depth_stamp))
        if self.pub_markers.get_subscription_count():
            self.pub_markers.publish(keep_out_markers(keep, out_header))
        with self._cond:
            self.counts["frames"] += 1
            self.counts["frames_with_depth" if has_depth else "frames_without_depth"] += 1
            self._times.append((time.perf_counter() - started, waited))
        return DepthResult(kp3d, keep, has_depth, reason, waited)

    # -- diagnostics and shutdown ---------------------------------------------------------
    def stats(self) -> dict:
        """Counters (``depth_received``, ``camera_info_received``, ``frames``,
        ``frames_with_depth``, ``frames_without_depth``, ``bad.<kind>``, the StampSync's
        ``sync.paired/unpaired/overflow/depth_dropped``) and the medians over the last 200
        frames of ``process_ms`` (call to published, wait included) and ``wait_ms``."""
        with self._cond:
            out = dict(self.counts)
            out.update({f"sync.{k}": getattr(self.sync, k) for k in ("paired", "unpaired", "overflow", "depth_dropped")})
            times = np.array(self._times, dtype=np.float64).reshape(-1, 2)
        for key in ("depth_received", "camera_info_received", "frames", "frames_with_depth", "frames_without_depth",
                    *(f"bad.{kind}" for kind in BAD_KINDS)):
            out.setdefault(key, 0)
        out["bad"] = sum(v for k, v in out.items() if k.startswith("bad."))
        out["process_ms"] = float(np.median(times[:, 0]) * 1e3) if len(times) else float("nan")
        out["wait_ms"] = float(np.median(times[:, 1]) * 1e3) if len(times) else float("nan")
        return out

    def diagnostic_values(self) -> dict:
        """``depth.<name>`` -> value as a string, for the node's DiagnosticStatus."""
        return {f"depth.{k}": (f"{v:.1f}" if isinstance(v, float) else str(v)) for k, v in sorted(self.stats().items())}

    def close(self) -> None:
        """Wake a waiting :meth:`process` (it returns None), destroy the subscriptions and
        publishers. Call before destroying the node."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        for sub in (self.sub_depth, self.sub_info):
            self.node.destroy_subscription(sub)
        for pub in (self.pub_keypoints, self.pub_keep_out, self.pub_markers):
            self.node.destroy_publisher(pub)
