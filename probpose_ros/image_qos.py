"""The QoS of the camera images: the node's ``image_qos`` parameter and ``camera_replay --qos``.

``reliable`` (the default) or ``best_effort``; history KEEP_LAST, depth ``image_qos_depth`` (default
3) on the subscriber. The node still processes only the latest frame
(:class:`~probpose_ros.worker.LatestFrame`); the depth is the DDS reader's queue between two
takes of the subscription callback, and each slot may keep one frame's buffer.

Why reliable: with stock Fast DDS (the default shared-memory segment of 512 KB; larger samples
go over UDP in 64 KB fragments) best-effort samples above ~0.5 MB are lost on the same host as
soon as one fragment is (a 640x480 bgr8 frame is 0.9 MB, 1920x1080 6.2 MB); reliable repairs
the lost fragments. ``python -m probpose_ros.bench_delivery`` measures the share of frames that
arrive (README "Image QoS"). Camera drivers usually publish reliable (the ROS default QoS); a
reliable subscriber cannot match a best-effort publisher (sensor-data QoS) at all, so the node
warns with the fix (``image_qos:=best_effort``) when it meets one: :func:`subscription_events`.
"""
from probpose_core.errors import InputError

RELIABILITIES = ("reliable", "best_effort")
DEFAULT = "reliable"
#: reader depth: reliable, stock Fast DDS, 1920x1080 bgr8 at 10 Hz to a bare subscriber on a loaded
#: 2-core machine: depth 1 37/50 frames, 2 47/50, 3 50/50 (640x480: 50/50 from depth 1)
DEFAULT_DEPTH = 3
DESCRIPTION = ("QoS reliability of the image subscription (history keep-last, image_qos_depth): reliable (default; "
               "matches camera drivers on the ROS default QoS and gets large frames through stock Fast DDS) or "
               "best_effort (needed when the camera publishes best effort / sensor-data QoS: a reliable "
               "subscriber does not match it; frames above ~0.5 MB then need config/fastdds_shm.xml, README "
               "'Image QoS').")
DEPTH_DESCRIPTION = ("Keep-last depth of the image subscription's DDS reader queue (>= 1; default 3). The node "
                     "processes only the latest frame either way; with reliable QoS on stock Fast DDS a deeper "
                     "queue lets large frames through (1920x1080 at 10 Hz: 74 % arrived with depth 1, 94 % with "
                     "2, 100 % with 3); each slot can hold one frame's memory.")


def image_qos(reliability: str = DEFAULT, depth: int = 1):
    """The ``rclpy.qos.QoSProfile`` for ``reliability`` (``reliable`` / ``best_effort``), keep-last ``depth``;
    InputError for anything else."""
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    if reliability not in RELIABILITIES:
        raise InputError(f"image_qos must be one of {', '.join(RELIABILITIES)}, got {reliability!r}")
    if depth < 1:
        raise InputError(f"the image QoS depth must be >= 1, got {depth}")
    policy = ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT
    return QoSProfile(reliability=policy, history=HistoryPolicy.KEEP_LAST, depth=int(depth))


def subscription_events(logger, topic: str, reliability: str):
    """``SubscriptionEventCallbacks`` that warn, with the fix, when a publisher on ``topic`` offers a
    QoS this subscription cannot match (e.g. a best-effort camera and ``image_qos`` reliable)."""
    from rclpy.event_handler import SubscriptionEventCallbacks

    def incompatible(info) -> None:
        policy = getattr(info.last_policy_kind, "name", str(info.last_policy_kind))
        hint = (" -- the camera publishes best effort: set image_qos:=best_effort (README 'Image QoS')"
                if reliability == "reliable" and "RELIABILITY" in policy.upper() else "")
        logger.warning(f"a publisher on {topic} offers a QoS incompatible with this subscription "
                       f"(image_qos {reliability}; policy {policy}; {info.total_count} so far): its frames never "
                       f"arrive{hint}")

    return SubscriptionEventCallbacks(incompatible_qos=incompatible)
