"""The ProbPose ROS 2 node: camera images in, ``HumanArray`` / markers / annotated image out.

Behaviour (the conventions of yolo_ros and the ROS4HRI body detector):

- Parameters are declared once, from :data:`PARAMETERS`, each with a description; their
  defaults equal ``config/params.yaml`` (a test checks). They are read at start-up
  (``read_only``): change them with a params file or ``-p name:=value``.
- Images (``sensor_msgs/Image``, or ``CompressedImage`` with ``compressed: true``) are
  subscribed with sensor-data QoS (best effort, depth 1) on ``image_topic`` (default ``image``,
  meant to be remapped: ``-r image:=/camera/image_raw``).
- The subscription callback only drops the message into a one-slot buffer
  (:class:`LatestFrame`); a worker thread takes the LATEST frame, converts, detects, estimates
  and publishes. A frame replaced before the worker took it is counted as dropped, so queues
  never build up and latency stays bounded when the camera is faster than the model.
- Outputs (relative names, so a namespace applies): ``humans/keypoints`` (HumanArray, header
  copied from the image), ``humans/markers`` (MarkerArray), ``humans/image_annotated`` (rgb8,
  drawn with :func:`probpose_core.overlay.draw_pose`), and ``/diagnostics`` at 1 Hz. HumanArray
  goes out first; markers and the annotated image are built only while someone subscribes.
  The annotated image is drawn without anti-aliasing (cv2.LINE_8, half the drawing time)
  straight into the buffer that is published.
- Bad frames (:class:`~probpose_ros.image_conversion.BadFrame`, the pipeline's InputError)
  are warned about once per kind, counted in diagnostics, and skipped.
- SIGINT / SIGTERM: the worker stops, the node is destroyed, exit code 0. A missing or
  unusable model is a start-up error (message on stderr, exit code 2).

Timing per processed frame (diagnostics): ``latency`` = receive -> HumanArray published,
``pose`` = detector + pipeline, ``overhead`` = everything else the node does (conversion,
messages, markers, annotated image, publishing), i.e. the node's cost excluding the network;
``overhead_cpu`` = the worker thread's CPU time in that part (wall-clock minus preemption).
"""
import logging
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import NamedTuple

import numpy as np

from probpose_core.detection import make_detector
from probpose_core.errors import InputError
from probpose_ros.image_conversion import BadFrame, compressed_to_rgb, msg_to_rgb

NODE_NAME = "probpose"


class Param(NamedTuple):
    name: str
    default: object
    description: str


#: Every parameter of the node, declared from here and nowhere else (defaults == config/params.yaml).
PARAMETERS = (
    Param("image_topic", "image", "Input image topic (remap it, e.g. -r image:=/camera/image_raw). With "
                                  "compressed: true it must carry sensor_msgs/CompressedImage (.../compressed)."),
    Param("compressed", False, "Subscribe to sensor_msgs/CompressedImage (JPEG/PNG, decoded with OpenCV) "
                               "instead of sensor_msgs/Image."),
    Param("model", "", "Pose model: our .pt checkpoint or an exported .onnx (with its sidecar); empty = the "
                       "shipped model (models/probpose_student.onnx)."),
    Param("runtime", "ort", "Inference runtime: ort (ONNX Runtime, CUDA first when available), torch, or trt."),
    Param("detector", "nanodet", "Person detector: nanodet (the shipped NanoDet, default), full_frame (one box = "
                                 "the whole image, for cameras framing one person), hog (OpenCV HOG, weak), or "
                                 "the path of a YOLO-style ONNX."),
    Param("max_people", 10, "At most this many people per frame (highest detector score first)."),
    Param("presence_threshold", -1.0, "Keypoints with presence below this are treated as absent (no "
                                      "skeleton lines, no credible region). Negative: the model's calibrated "
                                      "threshold (0.45 when the model has none)."),
    Param("credible_level", 0.5, "Probability mass of the published credible regions, in (0, 1]; 0 turns "
                                 "regions off (saves ~1 ms per person)."),
    Param("publish_markers", True, "Publish humans/markers (visualization_msgs/MarkerArray) for RViz."),
    Param("publish_annotated_image", True, "Publish humans/image_annotated (rgb8 image with the poses drawn)."),
    Param("max_rate_hz", 0.0, "Process at most this many frames per second (0 = as fast as possible); "
                              "frames in between are dropped (counted)."),
)


def parameter_defaults() -> dict:
    """name -> default of every node parameter."""
    return {p.name: p.default for p in PARAMETERS}


# -- ROS-free parts (unit-tested without rclpy) ----------------------------------------
class LatestFrame:
    """A one-slot buffer between the subscription callback and the worker.

    ``put`` replaces an unprocessed frame (counted in ``dropped``); ``take`` blocks until a
    frame is there (or ``close``), then empties the slot. Thread-safe.
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

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()


def top_people(boxes, scores, max_people: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``max_people`` highest-scoring ``boxes (M, 4)`` / ``scores (M,)``, best first."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    order = np.argsort(-scores, kind="stable")[:max(0, int(max_people))]
    return boxes[order], scores[order]


class Timings:
    """Recent per-frame ``pose`` (detector + pipeline) and ``overhead`` (the rest of the node's
    work) in seconds of wall-clock time, and ``overhead_cpu``: the CPU time of the worker
    thread in that rest (what the overhead costs without the waits of a busy machine), for
    /diagnostics and the benchmark."""

    def __init__(self, size: int = 300):
        self.pose, self.overhead, self.overhead_cpu = deque(maxlen=size), deque(maxlen=size), deque(maxlen=size)

    def add(self, pose: float, overhead: float, overhead_cpu: float = float("nan")) -> None:
        self.pose.append(pose)
        self.overhead.append(overhead)
        self.overhead_cpu.append(overhead_cpu)

    def medians_ms(self) -> dict:
        """``pose_median_ms`` / ``overhead_median_ms`` / ``overhead_max_ms`` /
        ``overhead_cpu_median_ms`` as strings ("nan" when empty)."""
        pose, overhead, cpu = list(self.pose), list(self.overhead), list(self.overhead_cpu)
        fmt = lambda values, f: f"{f(values) * 1e3:.3f}" if values else "nan"  # noqa: E731
        return {"pose_median_ms": fmt(pose, np.median), "overhead_median_ms": fmt(overhead, np.median),
                "overhead_max_ms": fmt(overhead, max), "overhead_cpu_median_ms": fmt(cpu, np.median)}


def draw_humans(canvas: np.ndarray, humans, threshold: float, antialias: bool = True) -> np.ndarray:
    """Draw every human (keypoints, skeleton, regions, box, ``#i``) onto ``canvas (H, W, 3)`` RGB in place."""
    from probpose_core.overlay import draw_pose

    for i, human in enumerate(humans):
        kp = human.keypoint_array()
        regions = [[poly for polys in k.regions.values() for poly in polys] for k in human.keypoints]
        draw_pose(canvas, kp[:, :2], kp[:, 2], threshold, bbox=human.bbox, regions=regions, label=f"#{i}",
                  antialias=antialias)
    return canvas


def image_canvas(frame: np.ndarray, received_data) -> tuple:
    """``(data, canvas)`` for the annotated image of ``frame (H, W, 3)``, converted from a
    message whose bytes are ``received_data``: the frame itself when it is a C-contiguous
    array of its own (a conversion made it; the pipeline is done with it), else a copy
    (:func:`messages.rgb8_canvas`), so the received message is never drawn on."""
    from probpose_ros.messages import rgb8_canvas

    received = np.frombuffer(memoryview(received_data), dtype=np.uint8)
    if frame.flags.c_contiguous and frame.dtype == np.uint8 and not np.may_share_memory(frame, received):
        return frame, frame
    return rgb8_canvas(frame)


def annotate(frame: np.ndarray, humans, threshold: float) -> np.ndarray:
    """A copy of ``frame (H, W, 3)`` RGB with every human drawn (:func:`draw_humans`)."""
    return draw_humans(frame.copy(), humans, threshold)


# -- the node --------------------------------------------------------------------------
def _node_class():
    """The rclpy Node subclass (built lazily so this module imports without ROS)."""
    from diagnostic_msgs.msg import DiagnosticArray
    from rcl_interfaces.msg import ParameterDescriptor
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Header
    from visualization_msgs.msg import MarkerArray

    from probpose_msgs.msg import HumanArray
    from probpose_ros import cdr, diagnostics, markers, messages

    class PoseNode(Node):
        def __init__(self, **kw):
            super().__init__(NODE_NAME, **kw)
            self.params = {p.name: self.declare_parameter(
                p.name, p.default, ParameterDescriptor(description=p.description, read_only=True)).value
                for p in PARAMETERS}
            self._setup_pipeline()
            self.stats = diagnostics.PoseStats()
            self.timings = Timings()
            self.slot = LatestFrame()
            self._warned: set[str] = set()
            sensor_qos = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST,
                                    depth=1)
            self.pub_humans = self.create_publisher(HumanArray, "humans/keypoints", 10)
            self.pub_markers = (self.create_publisher(MarkerArray, "humans/markers", 10)
                                if self.params["publish_markers"] else None)
            self.pub_image = (self.create_publisher(Image, "humans/image_annotated", 1)
                              if self.params["publish_annotated_image"] else None)
            self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
            self.cdr_humans, self.cdr_markers = self._cdr_self_check()
            msg_type = CompressedImage if self.params["compressed"] else Image
            self.create_subscription(msg_type, self.params["image_topic"], self._on_image, sensor_qos)
            self.create_timer(1.0, self._publish_diagnostics)
            self._worker = threading.Thread(target=self._work, name="probpose-worker", daemon=True)
            self._worker.start()
            self.get_logger().info(
                f"listening on {self.resolve_topic_name(self.params['image_topic'])} "
                f"({msg_type.__name__}); model {self.model_id} on {self.params['runtime']}, "
                f"detector {self.params['detector']}")

        def _setup_pipeline(self):
            from probpose_core.pipeline import Pipeline
            from probpose_core.runtime import make_runner
            from probpose_core.runtime.base import file_sha256

            p = self.params
            if not p["model"]:
                from probpose_core.shipped import default_pose_model

                p["model"] = str(default_pose_model())
            if int(p["max_people"]) < 1:
                raise InputError(f"max_people must be at least 1, got {p['max_people']}")
            level = float(p["credible_level"])
            if not 0.0 <= level <= 1.0:
                raise InputError(f"credible_level must lie in [0, 1], got {level}")
            self.credible_level = level if level > 0 else None
            self.detector = make_detector(p["detector"])
            runner = make_runner(p["model"], runtime=p["runtime"])
            threshold = float(p["presence_threshold"])
            if threshold < 0:
                threshold = float((getattr(runner, "meta", None) or {}).get("presence_threshold", 0.45))
            self.presence_threshold = threshold
            self.pipeline = Pipeline(runner, credible_levels=(level,) if level > 0 else (),
                                     presence_threshold=threshold, invalid_boxes="skip")
            self.model_id = f"{Path(p['model']).name}:{file_sha256(p['model'])[:12]}"
            self.min_period = 1.0 / float(p["max_rate_hz"]) if float(p["max_rate_hz"]) > 0 else 0.0

        def _cdr_self_check(self) -> tuple[bool, bool]:
            """Whether HumanArray / MarkerArray go out as CDR bytes written by :mod:`cdr` (cheaper
            than rclpy converting message objects): only when a sample serialises to the same
            bytes both ways; otherwise message objects (logged once)."""
            sample, header = messages.sample_humans(), Header(frame_id="cdr_self_check")
            args = (sample, header, (640, 480), "self-check", 0.5, 0.5, 0.125)
            marks = markers.marker_data(sample, header, 0.5, 0.5)
            problems = (cdr.self_check(HumanArray, messages.humans_to_data(*args), messages.humans_to_msg(*args)),
                        cdr.self_check(MarkerArray, {"markers": marks}, markers.markers_to_msg(marks)))
            for problem in filter(None, problems):
                self.get_logger().warning(f"CDR self-check failed, publishing message objects instead: {problem}")
            return problems[0] is None, problems[1] is None

        # -- callback thread: O(1), the frame is converted by the worker -----------------
        def _on_image(self, msg):
            self.stats.frame_received()
            if self.slot.put((msg, time.perf_counter())):
                self.stats.frame_dropped()

        # -- worker thread ---------------------------------------------------------------
        def _bad(self, kind: str, message: str) -> None:
            self.stats.bad_frame(kind)
            if kind not in self._warned:
                self._warned.add(kind)
                self.get_logger().warning(f"bad frame ({kind}): {message} -- skipping such frames "
                                          f"(warned once per kind; counted in /diagnostics)")

        def _work(self):
            next_start = 0.0
            while True:
                wait = next_start - time.perf_counter()
                if wait > 0 and not self.slot.closed:  # max_rate_hz: newer frames replace older meanwhile
                    time.sleep(wait)
                item = self.slot.take()
                if item is None:
                    return
                next_start = time.perf_counter() + self.min_period
                try:
                    self.process(*item)
                except (BadFrame, InputError) as exc:
                    self._bad(getattr(exc, "kind", "pipeline_input"), str(exc))
                except Exception as exc:  # a bug or a runtime failure: report once per type, keep running
                    if not self.slot.closed:
                        self._bad(f"error_{type(exc).__name__}", repr(exc))

        def process(self, msg, received: float):
            """Convert, detect, estimate and publish one frame (the worker's body)."""
            started, cpu_started = time.perf_counter(), time.thread_time()
            frame = compressed_to_rgb(msg.data) if self.params["compressed"] else msg_to_rgb(msg)
            t_pose, cpu_pose = time.perf_counter(), time.thread_time()
            boxes, scores = top_people(*self.detector.detect(frame), self.params["max_people"])
            humans = self.pipeline.estimate(frame, boxes, scores, skip_invalid=True)
            pose, cpu_pose = time.perf_counter() - t_pose, time.thread_time() - cpu_pose
            size = (frame.shape[1], frame.shape[0])
            fields = dict(model_id=self.model_id, presence_threshold=self.presence_threshold,
                          credible_level=self.credible_level)
            if self.cdr_humans:  # the same message as CDR bytes (cdr.py; start-up self-check)
                out = messages.humans_to_data(humans, msg.header, size, **fields)
                out["processing_latency"] = latency = time.perf_counter() - received
                self.pub_humans.publish(cdr.encode(HumanArray, out))
            else:
                out = messages.humans_to_msg(humans, msg.header, size, **fields)
                out.processing_latency = latency = time.perf_counter() - received
                self.pub_humans.publish(out)
            self.stats.frame_published(latency)
            if self.pub_markers is not None and self.pub_markers.get_subscription_count():
                data = markers.marker_data(humans, msg.header, self.presence_threshold, self.credible_level)
                self.pub_markers.publish(cdr.encode(MarkerArray, {"markers": data}) if self.cdr_markers
                                         else markers.markers_to_msg(data))
            if self.pub_image is not None and self.pub_image.get_subscription_count():
                data, canvas = image_canvas(frame, msg.data)  # drawn in the published buffer
                draw_humans(canvas, humans, self.presence_threshold, antialias=False)  # LINE_8: half the time
                self.pub_image.publish(messages.rgb8_image_msg(data, canvas.shape, msg.header))
            self.timings.add(pose, time.perf_counter() - started - pose, time.thread_time() - cpu_started - cpu_pose)

        # -- diagnostics (executor thread, 1 Hz) ---------------------------------------
        def diagnostic_status(self):
            """This node's ``DiagnosticStatus``: diagnostics.PoseStats plus pose/overhead timings."""
            from diagnostic_msgs.msg import KeyValue

            status = diagnostics.to_status(self.stats.snapshot(), name=f"probpose: {self.get_fully_qualified_name()}",
                                           hardware_id=self.model_id)
            status.values.extend(KeyValue(key=k, value=v) for k, v in self.timings.medians_ms().items())
            return status

        def _publish_diagnostics(self):
            self.pub_diag.publish(diagnostics.to_array([self.diagnostic_status()], self.get_clock().now().to_msg()))

        def stop(self):
            """Stop the worker (it finishes the frame in hand) and wait for it."""
            self.slot.close()
            self._worker.join(timeout=10.0)

    return PoseNode


def main(args=None) -> int:
    """``ros2 run probpose_ros pose_node --ros-args ...``; returns the exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    logging.basicConfig(level=logging.WARNING)
    rclpy.init(args=args)
    node = None
    code = 0
    try:
        node = _node_class()()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except InputError as exc:
        print(f"probpose pose_node: {exc}", file=sys.stderr)
        code = 2
    finally:
        if node is not None:
            node.stop()
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
