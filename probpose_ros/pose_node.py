"""The ProbPose ROS 2 node: camera images in, ``HumanArray`` / markers / annotated image out.

Behaviour (the conventions of yolo_ros and the ROS4HRI body detector):

- Parameters are declared once, from :data:`PARAMETERS`, each with a description; their
  defaults equal ``config/params.yaml`` (a test checks; ``rep155``, whose default depends on
  whether hri_msgs imports, is left out of the file: :data:`MACHINE_DEFAULTS`). They are read
  on **configure** (so cleanup -> set -> configure loads another ``model``), those of
  :data:`ACTIVATE_PARAMETERS` (the image subscription, REP-155, depth) again on **activate**. A
  change the node cannot apply in its state is refused with the reason (``ros2 param set``
  prints it): a configure-time parameter while configured, an activate-time one while active.
- Images (``sensor_msgs/Image``, or ``CompressedImage`` with ``compressed: true``) are
  subscribed with ``image_qos`` (reliable by default, keep-last ``image_qos_depth`` 3; best_effort for a
  camera on sensor-data QoS: :mod:`probpose_ros.image_qos`) on ``image_topic`` (default ``image``,
  meant to be remapped: ``-r image:=/camera/image_raw``). Frames above ``max_image_pixels``
  are refused as bad (compressed ones by their header, before decoding).
- The subscription callback only drops the message into a one-slot buffer
  (:class:`~probpose_ros.worker.LatestFrame`); a worker thread takes the LATEST frame, converts, detects, estimates
  and publishes. A frame replaced before the worker took it is counted as dropped, so queues
  never build up and latency stays bounded when the camera is faster than the model.
- Outputs (relative names, so a namespace applies): ``humans/keypoints`` (HumanArray, header
  copied from the image), ``humans/markers`` (MarkerArray), ``humans/image_annotated`` (rgb8,
  drawn with :func:`probpose_core.overlay.draw_pose`), and ``/diagnostics`` at 1 Hz. HumanArray
  goes out first; markers and the annotated image are built only while someone subscribes.
  The annotated image is drawn without anti-aliasing (cv2.LINE_8, half the drawing time)
  on the converted frame (a copy when the frame is a view of the received message).
- Messages are plain rclpy message objects built once from the pipeline's people
  (:mod:`probpose_ros.messages`, :mod:`probpose_ros.markers`); rclpy serialises them.
- Bad frames (:class:`~probpose_ros.image_conversion.BadFrame`, the pipeline's InputError)
  and frames whose processing raised are skipped and counted in diagnostics; the first of each
  kind is logged with its traceback. /diagnostics is ERROR while more than ``error_share`` of
  the last ``error_window`` processed frames failed (:mod:`probpose_ros.diagnostics`).
- A lifecycle (managed) node (``rclpy.lifecycle``, services ``<node>/change_state``,
  ``get_state``, ...): **configure** loads the model and detector (an unusable one fails the
  transition, the reason logged at error level) and creates the publishers (lifecycle
  publishers for the outputs; ``/diagnostics`` from then on, also while inactive);
  **activate** subscribes to the images, starts the worker and the REP-155 publisher;
  **deactivate** unsubscribes, stops the worker (its ``max_rate_hz`` pause ends at once; it
  finishes the frame in hand, and activate starts a new one only after it ended: one worker at
  a time) and clears the REP-155 bodies; **cleanup**
  destroys the publishers and frees the model. ``autostart`` (default true) configures and
  activates at start-up, so the node works without a lifecycle manager.
- Per frame, in the worker: :class:`probpose_core.tracked.TrackedPipeline` (the detector on
  every ``detect_every``-th frame, else boxes from the tracks' keypoints; valid boxes,
  ``max_people``, pose, tracker ``Human.id``; a stamp that goes backwards starts the tracks
  afresh) -> HumanArray -> REP-155 bodies (``rep155``) -> markers / annotated image ->
  3D keypoints and keep-out capsules (``depth_topic`` set: :mod:`probpose_ros.depth_outputs`,
  created on activate, closed on deactivate; it may wait up to ``depth_wait`` for the depth
  image, after everything else went out; its counters and timings are ``depth.*`` in /diagnostics).
- SIGINT / SIGTERM: the worker stops, the REP-155 body list is cleared, the node is destroyed,
  exit code 0. With ``autostart``, a missing or unusable model is a start-up error (message on
  stderr, exit code 2).

Timing per processed frame (diagnostics): ``latency`` = receive -> HumanArray published,
``pose`` = detector + pipeline + tracker, ``overhead`` = everything else the node does (conversion,
messages, markers, annotated image, publishing), i.e. the node's cost excluding the network;
``overhead_cpu`` = the worker thread's CPU time in that part (wall-clock minus preemption),
``visualisation`` = the part of ``overhead`` spent on markers and the annotated image (0 while
nobody subscribes them).
"""
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path

from diagnostic_msgs.msg import DiagnosticArray, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.lifecycle import LifecycleNode, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from visualization_msgs.msg import MarkerArray

from probpose_core.detection import make_detector
from probpose_core.errors import InputError
from probpose_core.overlay import draw_humans
from probpose_core.tracked import DEFAULT_DETECT_EVERY, DutyCycle, TrackedPipeline
from probpose_core.tracking import Tracker, TrackerConfig
from probpose_msgs.msg import HumanArray
from probpose_ros import dds_profile, depth_outputs, diagnostics, image_qos, markers, messages, rep155
from probpose_ros.image_conversion import DEFAULT_MAX_IMAGE_PIXELS, BadFrame, compressed_to_rgb, msg_to_rgb
from probpose_ros.parameters import Param
from probpose_ros.worker import LatestFrame, Timings

NODE_NAME = "probpose"


#: Every parameter of the node, declared from here and nowhere else (defaults == config/params.yaml).
PARAMETERS = (
    Param("image_topic", "image", "Input image topic (remap it, e.g. -r image:=/camera/image_raw). With "
                                  "compressed: true it must carry sensor_msgs/CompressedImage (.../compressed)."),
    Param("compressed", False, "Subscribe to sensor_msgs/CompressedImage (JPEG/PNG, decoded with OpenCV) "
                               "instead of sensor_msgs/Image."),
    Param("image_qos", image_qos.DEFAULT, image_qos.DESCRIPTION),
    Param("image_qos_depth", image_qos.DEFAULT_DEPTH, image_qos.DEPTH_DESCRIPTION),
    Param("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS, "Largest accepted image, in pixels (width x height; "
                                                        "default 4096x3072 = 12.6 MP): larger raw frames, and "
                                                        "compressed frames whose JPEG/PNG header claims more, are "
                                                        "refused as bad (kind oversized, counted) before any "
                                                        "copy or decoding. 0 = no limit."),
    Param("model", "", "Pose model: our .pt checkpoint or an exported .onnx (with its sidecar); empty = the "
                       "shipped model (models/probpose_student.onnx)."),
    Param("allow_uncalibrated", False, "Run an .onnx model that has no metadata sidecar (.json) with the default "
                                       "settings (uncalibrated presence threshold and credible regions; a warning "
                                       "is printed). false: such a model is refused with an error naming the file."),
    Param("runtime", "ort", "Inference runtime: ort (ONNX Runtime, CUDA first when available), torch, trt, or openvino (optional: pip install -r requirements-optional.txt)."),
    Param("detector", "picodet", "Person detector: picodet (the shipped PicoDet-S-320 pedestrian, default), "
                                 "nanodet (the shipped NanoDet), full_frame (one box = the whole image, for "
                                 "cameras framing one person), hog (OpenCV HOG, weak), or the path of a "
                                 "YOLO-style ONNX."),
    Param("detector_threshold", -1.0, "Person detector score threshold (boxes scored below it are dropped); "
                                      "negative = the detector's own default (PicoDet 0.46, NanoDet 0.35; lower "
                                      "finds more people at lower precision, see README)."),
    Param("max_people", 10, "At most this many people per frame: the highest detector scores among the valid "
                            "boxes (invalid ones, e.g. NaN or empty, are skipped first)."),
    Param("presence_threshold", -1.0, "Keypoints with presence below this are treated as absent (no "
                                      "skeleton lines, no credible region). Negative: the threshold of the model's "
                                      "ModelSpec (its calibrated one; the official default when it has none)."),
    Param("credible_level", 0.5, "Probability mass of the published credible regions, in (0, 1]; 0 turns "
                                 "regions off (saves ~1 ms per person)."),
    Param("publish_markers", True, "Publish humans/markers (visualization_msgs/MarkerArray) for RViz."),
    Param("publish_annotated_image", True, "Publish humans/image_annotated (rgb8 image with the poses drawn)."),
    Param("tracking", True, "Track people across frames (probpose_core.tracking: box IoU + keypoint OKS, two "
                            "stages by detector score): HumanArray's Human.id is the track id, 0 while a "
                            "detection is not on a confirmed track; false: every id is 0."),
    Param("track_min_hits", TrackerConfig.min_hits, "Consecutive frames with a match that confirm a new track "
                                                     "(its id appears from that frame on)."),
    Param("track_max_misses", TrackerConfig.max_misses, "Consecutive frames without a match after which a "
                                                         "confirmed track is removed (its id is never reused)."),
    Param("track_high_score", TrackerConfig.high_score, "Detector score from which a detection is confident: "
                                                         "matched first, and only these start tracks."),
    Param("track_low_score", TrackerConfig.low_score, "Detector score below which a detection is ignored by "
                                                       "the tracker; between it and track_high_score a "
                                                       "detection only continues a track seen last frame."),
    Param("detect_every", DEFAULT_DETECT_EVERY, "Run the person detector on every detect_every-th frame; on the "
                                                "frames between, each tracked person's box comes from their "
                                                "previous keypoints (moved by the tracker's motion). The detector "
                                                "runs at once when a person's mean presence collapses, a box "
                                                "leaves the frame or two boxes merge, and after "
                                                "detect_max_interval. A person who enters appears up to "
                                                "detect_every - 1 frames late. 1 = detect every frame (also "
                                                "without tracking); probpose_core.tracked."),
    Param("detect_max_interval", DutyCycle.max_interval, "Seconds (image stamps) after which the detector runs "
                                                         "whatever detect_every says."),
    Param("rep155", rep155.available(), "Publish REP-155 (ROS4HRI) bodies of the tracked people: "
                                        "/humans/bodies/tracked and per body .../skeleton2d and .../roi "
                                        "(probpose_ros.rep155; needs hri_msgs and tracking). Default: true "
                                        "when hri_msgs imports."),
    Param("autostart", True, "Configure and activate the node at start-up (a lifecycle node). false: it waits "
                             "unconfigured for the lifecycle services (<node>/change_state)."),
    Param("max_rate_hz", 0.0, "Process at most this many frames per second (0 = as fast as possible); "
                              "frames in between are dropped (counted)."),
    Param("error_window", 20, "Processed frames /diagnostics judges failures over: its level is ERROR while more "
                              "than error_share of the last error_window frames failed (bad frames and errors), "
                              "WARN while frames failed or were dropped in the last 5 s, OK otherwise."),
    Param("error_share", 0.5, "Share of the last error_window frames, in [0, 1), that may fail before "
                              "/diagnostics reports ERROR."),
) + depth_outputs.PARAMETERS  # depth_topic (empty: off), camera_info_topic, ...


#: Parameters read (again) on activate: they may change while the node is inactive. Every other
#: parameter is read on configure and may change only while the node is unconfigured.
ACTIVATE_PARAMETERS = frozenset({"image_topic", "compressed", "image_qos", "image_qos_depth", "max_image_pixels",
                                 "rep155"} | {p[0] for p in depth_outputs.PARAMETERS})
CONFIGURE_PARAMETERS = frozenset(p.name for p in PARAMETERS) - ACTIVATE_PARAMETERS

#: Parameters whose default depends on the machine (left out of config/params.yaml, which would fix it)
MACHINE_DEFAULTS = ("rep155",)


def parameter_defaults() -> dict:
    """name -> default of every node parameter."""
    return {p.name: p.default for p in PARAMETERS}


# -- the node --------------------------------------------------------------------------
class PoseNode(LifecycleNode):
    """The pose node, a lifecycle (managed) node (see the module docstring); ``process`` is the
    worker's body for one frame. :meth:`start` configures and activates it (``autostart``)."""

    def __init__(self, **kw):
        super().__init__(NODE_NAME, **kw)
        for p in PARAMETERS:
            when = "activate: set it while inactive" if p.name in ACTIVATE_PARAMETERS else \
                "configure: set it while unconfigured"
            self.declare_parameter(p.name, p.default, ParameterDescriptor(description=p.description,
                                                                          additional_constraints=f"read on {when}"))
        self.params: dict = {}  # the values in use: read on configure (ACTIVATE_PARAMETERS again on activate)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.stats = diagnostics.PoseStats()
        self.timings = Timings()
        self._warned: set[str] = set()
        self.failure = ""  # why the last configure failed
        self.people = self.detector = self.rep155 = self.depth = None  # people: the TrackedPipeline
        self.pub_humans = self.pub_markers = self.pub_image = self.pub_diag = None
        self._subscription = self._worker = self._last_header = None
        self.slot = LatestFrame()
        self.slot.close()  # nothing is processed until activated
        # /diagnostics once configured; the timer also wakes the executor (and main's signal handling) at 1 Hz
        self.create_timer(1.0, self._publish_diagnostics)

    @property
    def pipeline(self):
        """The core Pipeline (None while unconfigured)."""
        return None if self.people is None else self.people.pipeline

    @pipeline.setter
    def pipeline(self, pipeline) -> None:
        self.people.pipeline = pipeline

    @property
    def tracker(self):
        """The person Tracker (None while unconfigured or with tracking off)."""
        return None if self.people is None else self.people.tracker

    # -- lifecycle transitions (executor thread) ---------------------------------------
    def start(self) -> bool:
        """configure + activate (what ``autostart`` does); False when a transition failed."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS
                and self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    def on_configure(self, state) -> TransitionCallbackReturn:
        """Read the parameters, load the model and detector, build pipeline and tracker, create the
        (lifecycle) publishers."""
        self.params = {p.name: self.get_parameter(p.name).value for p in PARAMETERS}
        try:
            self._setup_pipeline()
        except Exception as exc:  # noqa: BLE001  (an unusable model: the transition fails, with the reason)
            self.failure = str(exc) if isinstance(exc, InputError) else repr(exc)
            self.get_logger().error(f"configure failed: {self.failure}")
            self._free()
            return TransitionCallbackReturn.FAILURE
        self.failure = ""
        self.pub_humans = self.create_lifecycle_publisher(HumanArray, "humans/keypoints", 10)
        self.pub_markers = (self.create_lifecycle_publisher(MarkerArray, "humans/markers", 10)
                            if self.params["publish_markers"] else None)
        self.pub_image = (self.create_lifecycle_publisher(Image, "humans/image_annotated", 1)
                          if self.params["publish_annotated_image"] else None)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)  # also while inactive
        self.get_logger().info(f"configured: model {self.model_id} on {self.params['runtime']}, "
                               f"detector {self.params['detector']}")
        return super().on_configure(state)

    def on_activate(self, state) -> TransitionCallbackReturn:
        """Enable the publishers, subscribe to the images, start the worker (and REP-155)."""
        result = super().on_activate(state)
        if result != TransitionCallbackReturn.SUCCESS:
            return result
        if not self._join_worker():  # one worker at a time: the Tracker and REP-155 are not thread-safe
            self.get_logger().error("activate failed: the previous worker is still busy with a frame")
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self.params.update({name: self.get_parameter(name).value for name in ACTIVATE_PARAMETERS})
        try:
            self.rep155 = self._rep155_publisher()
            self.depth = depth_outputs.DepthOutputs.from_params(self, self.params, self.presence_threshold)
            qos = image_qos.image_qos(self.params["image_qos"], self.params["image_qos_depth"])
        except InputError as exc:
            self.get_logger().error(f"activate failed: {exc}")
            self._clear_rep155()
            super().on_deactivate(state)
            return TransitionCallbackReturn.FAILURE
        self._last_header = None
        self.people.reset()  # a new run of frames (ids still never repeat)
        self.slot = LatestFrame()
        self._worker = threading.Thread(target=self._work, args=(self.slot,), name="probpose-worker", daemon=True)
        self._worker.start()
        msg_type = CompressedImage if self.params["compressed"] else Image
        topic = self.resolve_topic_name(self.params["image_topic"])
        self._subscription = self.create_subscription(
            msg_type, self.params["image_topic"], self._on_image, qos,
            event_callbacks=image_qos.subscription_events(self.get_logger(), topic, self.params["image_qos"]))
        self.get_logger().info(f"active: listening on {self.resolve_topic_name(self.params['image_topic'])} "
                               f"({msg_type.__name__})" + (f", depth on {self.resolve_topic_name(self.params['depth_topic'])}"
                                                           if self.depth is not None else ""))
        return result

    def on_deactivate(self, state) -> TransitionCallbackReturn:
        """Unsubscribe, stop the worker (it finishes the frame in hand), clear REP-155."""
        self.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state) -> TransitionCallbackReturn:
        """Destroy the publishers and free the model, detector and tracker."""
        self._free()
        return super().on_cleanup(state)

    def on_shutdown(self, state) -> TransitionCallbackReturn:
        self.stop()
        self._free()
        return super().on_shutdown(state)

    def _free(self) -> None:
        for pub in (self.pub_humans, self.pub_markers, self.pub_image):
            if pub is not None:
                self.destroy_lifecycle_publisher(pub)
        if self.pub_diag is not None:
            self.destroy_publisher(self.pub_diag)
        self.pub_humans = self.pub_markers = self.pub_image = self.pub_diag = None
        self.people = self.detector = None

    def _setup_pipeline(self):
        """Detector, runner and the Pipeline built from the model's ModelSpec (its codec and, unless
        the parameter overrides it, its calibrated presence threshold); max_people is the
        pipeline's, applied to the valid boxes."""
        from probpose_core.pipeline import Pipeline
        from probpose_core.runtime import make_runner
        from probpose_core.runtime.base import file_sha256

        p = self.params
        if not p["model"]:
            from probpose_core.shipped import default_pose_model

            p["model"] = str(default_pose_model())
        level = float(p["credible_level"])
        if not 0.0 <= level <= 1.0:
            raise InputError(f"credible_level must lie in [0, 1], got {level}")
        self.credible_level = level if level > 0 else None
        det_threshold = float(p["detector_threshold"])
        self.detector = make_detector(p["detector"], score_threshold=det_threshold if det_threshold >= 0 else None)
        runner = make_runner(p["model"], runtime=p["runtime"], allow_uncalibrated=bool(p["allow_uncalibrated"]))
        threshold = float(p["presence_threshold"])
        pipeline = Pipeline(runner, detector=self.detector, credible_levels=(level,) if level > 0 else (),
                            presence_threshold=None if threshold < 0 else threshold, invalid_boxes="skip",
                            max_people=int(p["max_people"]))
        self.presence_threshold = pipeline.presence_threshold
        self.model_id = f"{Path(p['model']).name}:{file_sha256(p['model'])[:12]}"
        tracker = Tracker(TrackerConfig(
            min_hits=int(p["track_min_hits"]), max_misses=int(p["track_max_misses"]),
            high_score=float(p["track_high_score"]), low_score=float(p["track_low_score"]),
            presence_threshold=self.presence_threshold)) if p["tracking"] else None
        duty = DutyCycle(detect_every=int(p["detect_every"]), max_interval=float(p["detect_max_interval"]))
        self.people = TrackedPipeline(pipeline, tracker, duty)
        self.min_period = 1.0 / float(p["max_rate_hz"]) if float(p["max_rate_hz"]) > 0 else 0.0
        # counters since configure; ERROR over the last error_window frames
        self.stats = diagnostics.PoseStats(error_window=int(p["error_window"]), error_share=float(p["error_share"]))

    def _rep155_publisher(self):
        """The REP-155 publisher when the ``rep155`` parameter asks for one (None otherwise)."""
        if not self.params["rep155"]:
            return None
        if not rep155.available():
            raise InputError("rep155 is true but hri_msgs does not import: install ROS4HRI's hri_msgs or run "
                             "`make ros` (it builds the fallback), or set rep155:=false")
        if self.tracker is None:
            self.get_logger().warning("rep155 without tracking: REP-155 bodies need track ids, "
                                      "/humans/bodies/tracked stays empty")
        return rep155.Rep155Publisher(self, presence_threshold=self.presence_threshold)

    def _clear_rep155(self) -> None:
        """Tell REP-155 listeners that nobody is tracked any more, then destroy the body publishers."""
        if self.rep155 is None:
            return
        try:
            header = messages.copy_header(self._last_header) if self._last_header is not None else None
            if header is not None and self.context.ok():
                header.stamp = self.get_clock().now().to_msg()
                self.rep155.publish([], header, (1, 1))
                self.rep155.tracked_pub.wait_for_all_acked(Duration(seconds=1.0))  # before it is destroyed
            self.rep155.close()
        except Exception as exc:  # noqa: BLE001  (shutting down: the context may be gone already)
            self.get_logger().debug(f"REP-155 clear on stop failed: {exc!r}")
        self.rep155 = None

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Refuse, with the reason, a change the node cannot apply in its state (module docstring)."""
        for param in parameters:
            if param.name in ACTIVATE_PARAMETERS and self._subscription is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read on activate and the node is active: deactivate it, set {param.name}, "
                    f"activate"))
            if param.name in CONFIGURE_PARAMETERS and self.pipeline is not None:
                return SetParametersResult(successful=False, reason=(
                    f"{param.name} is read on configure and the node is configured: deactivate and clean it up, "
                    f"set {param.name}, configure (and activate)"))
        return SetParametersResult(successful=True)

    # -- callback thread: O(1), the frame is converted by the worker ---------------------
    def _on_image(self, msg):
        self.stats.frame_received()
        if self.slot.put((msg, time.perf_counter())):
            self.stats.frame_dropped()

    # -- worker thread -------------------------------------------------------------------
    def _bad(self, kind: str, message: str, error: bool = False) -> None:
        """Count a failed frame; the first of each kind is logged with its traceback (call it in
        the ``except`` block), at error level for an ``error`` (a bug or runtime failure)."""
        self.stats.bad_frame(kind)
        if kind not in self._warned:
            self._warned.add(kind)
            log = self.get_logger().error if error else self.get_logger().warning
            log(f"{'frame failed' if error else 'bad frame'} ({kind}): {message} -- skipping such frames "
                f"(logged once per kind; counted in /diagnostics)\n{traceback.format_exc().rstrip()}")

    def _work(self, slot: LatestFrame):
        """The worker's loop over its own ``slot`` (never a later activation's): take the latest
        frame, process it; between frames the ``max_rate_hz`` pause, which stop() ends at once."""
        next_start = 0.0
        while True:
            if slot.wait_closed(next_start - time.perf_counter()):  # newer frames replace older meanwhile
                return
            item = slot.take()
            if item is None:
                return
            next_start = time.perf_counter() + self.min_period
            try:
                self.process(*item)
            except (BadFrame, InputError) as exc:
                self._bad(getattr(exc, "kind", "pipeline_input"), str(exc))
            except Exception as exc:  # a bug or a runtime failure: report once per type, keep running
                if not slot.closed:
                    self._bad(f"error_{type(exc).__name__}", repr(exc), error=True)

    def process(self, msg, received: float):
        """Convert, detect, estimate and publish one frame received at ``received`` (perf_counter)."""
        started, cpu_started = time.perf_counter(), time.thread_time()
        limit = int(self.params["max_image_pixels"])
        frame = compressed_to_rgb(msg.data, limit) if self.params["compressed"] else msg_to_rgb(msg, limit)
        t_pose, cpu_pose = time.perf_counter(), time.thread_time()
        humans = self.people(frame, msg.header.stamp.sec + 1e-9 * msg.header.stamp.nanosec)  # with track ids
        pose, cpu_pose = time.perf_counter() - t_pose, time.thread_time() - cpu_pose
        if self.people.last.restarted:
            self.get_logger().info("image stamps went backwards: tracks start afresh")
        latency = time.perf_counter() - received  # to the HumanArray's publication (its serialisation: ~0.1 ms)
        self.pub_humans.publish(messages.serialize_humans(
            humans, msg.header, (frame.shape[1], frame.shape[0]), model_id=self.model_id,
            presence_threshold=self.presence_threshold, credible_level=self.credible_level, processing_latency=latency))
        self.stats.frame_published(latency)
        self._last_header = msg.header
        if self.rep155 is not None:  # a body lives as long as its confirmed track, seen this frame or not
            track_ids = [t.id for t in self.tracker.confirmed] if self.tracker is not None else None
            self.rep155.publish(humans, msg.header, (frame.shape[1], frame.shape[0]), track_ids)
        t_vis = time.perf_counter()  # visualisation: built only while someone subscribes
        if self.pub_markers is not None and self.pub_markers.get_subscription_count():
            self.pub_markers.publish(markers.humans_to_markers(humans, msg.header, self.presence_threshold,
                                                               self.credible_level))
        if self.pub_image is not None and self.pub_image.get_subscription_count():
            annotated, canvas = messages.image_msg_canvas(frame, msg.header)
            draw_humans(canvas, humans, self.presence_threshold, antialias=False)  # LINE_8
            self.pub_image.publish(annotated)
        done = time.perf_counter()
        self.timings.add(pose, done - started - pose, time.thread_time() - cpu_started - cpu_pose, done - t_vis)
        depth = self.depth  # read once: stop() may clear it meanwhile
        if depth is not None:  # last: it may wait (depth_wait) for the depth image; its own timings
            depth.process(msg.header, humans, (frame.shape[1], frame.shape[0]))

    # -- diagnostics (executor thread, 1 Hz) -------------------------------------------
    def diagnostic_status(self):
        """This node's ``DiagnosticStatus``: diagnostics.PoseStats plus pose/overhead timings."""
        status = diagnostics.to_status(self.stats.snapshot(), name=f"probpose: {self.get_fully_qualified_name()}",
                                       hardware_id=self.model_id)
        status.values.extend(KeyValue(key=k, value=v) for k, v in self.timings.medians_ms().items())
        people = self.people  # read once: cleanup may clear it meanwhile
        if people is not None:  # detector boxes skipped as invalid (NaN, empty, ...), since configure
            status.values.append(KeyValue(key="invalid_boxes_skipped", value=str(people.pipeline.skipped_total)))
            status.values.append(KeyValue(key="detector_frames", value=f"{people.detected_frames} of {people.frames}"))
        depth = self.depth  # read once: stop() may clear it meanwhile
        if depth is not None:
            status.values.extend(KeyValue(key=k, value=v) for k, v in depth.diagnostic_values().items())
        return status

    def _publish_diagnostics(self):
        if self.pub_diag is not None:
            self.pub_diag.publish(diagnostics.to_array([self.diagnostic_status()], self.get_clock().now().to_msg()))

    def stop(self):
        """Stop processing: unsubscribe, stop the worker (it finishes the frame in hand, depth
        included: at most ``depth_wait`` more) and wait for it, then close the depth outputs and
        clear the REP-155 bodies. Idempotent."""
        if self._subscription is not None:
            self.destroy_subscription(self._subscription)
            self._subscription = None
        self.slot.close()  # also ends the worker's max_rate_hz pause
        if not self._join_worker():
            self.get_logger().warning("the worker is still busy with a frame after 10 s; it stops after it")
        depth, self.depth = self.depth, None
        if depth is not None:
            depth.close()  # after the worker: nothing publishes on its publishers any more
        self._clear_rep155()

    def _join_worker(self, timeout: float = 10.0) -> bool:
        """Wait for the worker (its slot closed) to end; False when it is still busy with a frame."""
        if self._worker is not None:
            self._worker.join(timeout)
            if self._worker.is_alive():
                return False
            self._worker = None
        return True


def _interrupt(signum, frame):
    raise KeyboardInterrupt


#: glibc malloc arenas the node's process may use (``mallopt(M_ARENA_MAX)``) unless the environment
#: sets ``MALLOC_ARENA_MAX``: glibc gives each new thread its own arena (up to 8 per core), and an
#: arena a worker thread filled with frame buffers keeps its memory after the thread ends -- the
#: soak measured +6.2 MB RSS per lifecycle round trip unbounded, flat with 2.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # malloc.h


def bound_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Limit this process to ``arenas`` glibc malloc arenas, unless ``MALLOC_ARENA_MAX`` is set
    (then glibc has applied the user's value). True when the limit was set here; False where the
    environment decides or the C library has no ``mallopt`` (not glibc)."""
    import ctypes

    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        return bool(ctypes.CDLL(None).mallopt(_M_ARENA_MAX, int(arenas)))
    except (AttributeError, OSError):
        return False


def main(args=None) -> int:
    """``ros2 run probpose_ros pose_node --ros-args ...``; returns the exit code."""
    import rclpy
    from rclpy.executors import ExternalShutdownException
    from rclpy.signals import SignalHandlerOptions

    bound_malloc_arenas()  # before any worker thread starts
    os.environ.update(dds_profile.node_env())  # before rclpy creates the participant
    logging.basicConfig(level=logging.WARNING)
    # Our own SIGINT / SIGTERM handling: rclpy's would shut the context down at once, before the
    # node could tell its REP-155 listeners that nobody is tracked any more.
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    node = None
    code = 0
    try:
        node = PoseNode()
        if node.get_parameter("autostart").value and not node.start():
            print(f"probpose pose_node: {node.failure or 'configure/activate failed (see the log)'}", file=sys.stderr)
            code = 2
        else:
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
