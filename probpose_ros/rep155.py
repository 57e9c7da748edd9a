"""REP-155 (ROS4HRI) body topics from the pipeline's tracked people.

Per frame, for every person with a track id (``Human.id`` not None; untracked people are left
out: a REP-155 body needs an id that lasts), :class:`Rep155Publisher` publishes

- ``/humans/bodies/<body_id>/skeleton2d`` (``hri_msgs/Skeleton2D``),
- ``/humans/bodies/<body_id>/roi`` (``hri_msgs/NormalizedRegionOfInterest2D``),

and then ``/humans/bodies/tracked`` (``hri_msgs/IdsList``, every frame, empty when nobody is
tracked). A body lives as long as its confirmed track: the node passes the tracker's confirmed
track ids, so a person the detector missed for a few frames (the tracker keeps the track for up
to ``track_max_misses``) stays on ``tracked`` and keeps its publishers, with their latched last
messages. A body's publishers are created once, when its id first appears, and destroyed when
its track is dropped. All messages carry a copy of the source image's header (REP-155: the
stamp is the image's acquisition time).

Conversions (the .msg comments and REP-155 are the contract; pure functions, no node needed):

- **Body id**: REP-155 ids are arbitrary strings, unique, short, and they name a topic
  namespace, so they must be valid ROS 2 name tokens (a letter first, then letters, digits,
  ``_``). ``body_id = id_prefix + str(track id)``; the default prefix is 4 random lowercase
  letters drawn per publisher, so two nodes, or one node restarted (its tracker counts from 1
  again), never publish the same id for different people (e.g. ``kqzx7``).
- **Skeleton2D**: 18 points in the message's index order (its constants ``NOSE = 0`` ...
  ``RIGHT_EAR = 17``; :data:`SKELETON2D_POINTS`), each from a COCO-17 keypoint, NECK the
  midpoint of the two shoulders (present only when both are). ``x = u / width``,
  ``y = v / height`` (image px; the image spans ``[0, width] x [0, height]``) and ``c`` =
  the keypoint's presence probability. A point the pipeline judged absent
  (``presence < presence_threshold``, or not finite) or that lies outside the image -- the
  message allows only coordinates in [0, 1] -- is ``(0, 0, 0)``: no point, as OpenPose, whose
  layout the message follows, writes it. NECK's ``c`` is the smaller of the shoulders'.
- **RoI**: the person box ``bbox`` (xywh px) as normalised corners clipped to [0, 1],
  ``c`` = ``box_score`` (the detector's confidence).
- **QoS**: reliable, transient local (latched), depth 1 on all three topics: ROS4HRI's libhri
  subscribes ``/roi`` latched and the others with default QoS; this profile serves both, and a
  late subscriber gets the current list and each body's latest messages at once.

Per frame the node calls ``rep155.publish(humans, image_msg.header, (width, height), track_ids)``;
``publish([], header, size)`` clears every body (e.g. when processing stops); :meth:`close`
destroys the publishers.
"""
import random
import re
import string

import numpy as np
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from probpose_core.keypoints import INDEX

from .messages import copy_header, message_like

try:
    from hri_msgs.msg import IdsList, NormalizedPointOfInterest2D, NormalizedRegionOfInterest2D, Skeleton2D
except ImportError as exc:  # no hri_msgs here: `make ros` builds the fallback in hri_msgs/
    _MISSING = exc
else:
    _MISSING = None
    _SKELETON2D = Skeleton2D()  # the template of message_like: its 18 default points are built once

#: Skeleton2D's points in its index order: (the message's constant, the COCO-17 keypoint or
#: None for NECK, made from the shoulders). Note the message's eye/ear order: left first.
SKELETON2D_POINTS = (
    ("NOSE", "nose"),
    ("NECK", None),
    ("RIGHT_SHOULDER", "right_shoulder"),
    ("RIGHT_ELBOW", "right_elbow"),
    ("RIGHT_WRIST", "right_wrist"),
    ("LEFT_SHOULDER", "left_shoulder"),
    ("LEFT_ELBOW", "left_elbow"),
    ("LEFT_WRIST", "left_wrist"),
    ("RIGHT_HIP", "right_hip"),
    ("RIGHT_KNEE", "right_knee"),
    ("RIGHT_ANKLE", "right_ankle"),
    ("LEFT_HIP", "left_hip"),
    ("LEFT_KNEE", "left_knee"),
    ("LEFT_ANKLE", "left_ankle"),
    ("LEFT_EYE", "left_eye"),
    ("RIGHT_EYE", "right_eye"),
    ("LEFT_EAR", "left_ear"),
    ("RIGHT_EAR", "right_ear"),
)
NECK = 1
_COCO_OF = np.array([-1 if coco is None else INDEX[coco] for _, coco in SKELETON2D_POINTS])
_SHOULDERS = (INDEX["left_shoulder"], INDEX["right_shoulder"])

TRACKED_TOPIC = "/humans/bodies/tracked"
_TOKEN = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")
QOS = QoSProfile(reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL,
                 history=HistoryPolicy.KEEP_LAST, depth=1)


def available() -> bool:
    """Whether ``hri_msgs`` imports (the node's ``rep155`` parameter defaults to this)."""
    return _MISSING is None


def _require_msgs() -> None:
    if _MISSING is not None:
        raise RuntimeError(f"hri_msgs is not available ({_MISSING}): install it or run `make ros`")


def random_prefix(rng: random.Random | None = None) -> str:
    """4 random lowercase letters: the default body-id prefix of a publisher."""
    return "".join((rng or random.SystemRandom()).choice(string.ascii_lowercase) for _ in range(4))


def body_id(track_id, prefix: str) -> str:
    """The REP-155 body id of a track: ``prefix + str(track_id)``, checked to be a ROS name token."""
    name = f"{prefix}{track_id}"
    if not _TOKEN.match(name):
        raise ValueError(f"body id {name!r} is not a ROS name token (a letter, then letters, digits or _)")
    return name


def skeleton_points(human, image_size, presence_threshold: float) -> np.ndarray:
    """``(18, 3)`` float64: ``x, y, c`` of the Skeleton2D points of ``human`` (see the module
    docstring: normalised, neck from the shoulders, absent or out-of-image points (0, 0, 0)).
    image_size: ``(width, height)`` px."""
    width, height = (float(v) for v in image_size)
    xyp = human.keypoint_array()[:, :3]  # (17, 3): x, y (px), presence
    if xyp.shape[0] != len(INDEX):
        raise ValueError(f"human has {xyp.shape[0]} keypoints; Skeleton2D is made from the {len(INDEX)} COCO ones")
    norm = np.column_stack([xyp[:, 0] / width, xyp[:, 1] / height, xyp[:, 2]])
    with np.errstate(invalid="ignore"):
        ok = (np.isfinite(norm).all(axis=1) & (xyp[:, 2] >= presence_threshold)
              & (norm[:, :2] >= 0.0).all(axis=1) & (norm[:, :2] <= 1.0).all(axis=1))
    norm[~ok] = 0.0
    points = norm[np.maximum(_COCO_OF, 0)]
    left, right = _SHOULDERS
    if ok[left] and ok[right]:
        points[NECK] = [*(norm[left, :2] + norm[right, :2]) / 2.0, min(norm[left, 2], norm[right, 2])]
    else:
        points[NECK] = 0.0
    return points


def roi_box(human, image_size) -> np.ndarray:
    """``(5,)`` float64: ``xmin, ymin, xmax, ymax`` (normalised, clipped to [0, 1]) and ``c``
    (box_score, clipped to [0, 1]) of ``human.bbox`` (xywh px). image_size: ``(width, height)``."""
    width, height = (float(v) for v in image_size)
    x, y, w, h = (float(v) for v in human.bbox)
    corners = np.clip([x / width, y / height, (x + w) / width, (y + h) / height], 0.0, 1.0)
    return np.append(corners, np.clip(float(human.box_score), 0.0, 1.0))


def skeleton_msg(human, header, image_size, presence_threshold: float):
    """``hri_msgs/Skeleton2D`` of ``human`` (header: the image's, copied)."""
    _require_msgs()
    return message_like(_SKELETON2D, header=copy_header(header), skeleton=[
        NormalizedPointOfInterest2D(x=x, y=y, c=c)
        for x, y, c in skeleton_points(human, image_size, presence_threshold).tolist()])


def roi_msg(human, header, image_size):
    """``hri_msgs/NormalizedRegionOfInterest2D`` of ``human``'s box (header: the image's, copied)."""
    _require_msgs()
    xmin, ymin, xmax, ymax, c = (float(v) for v in roi_box(human, image_size))
    return NormalizedRegionOfInterest2D(header=copy_header(header), xmin=xmin, ymin=ymin, xmax=xmax, ymax=ymax, c=c)


def ids_msg(ids, header):
    """``hri_msgs/IdsList`` of the body ids (header: the image's, copied)."""
    _require_msgs()
    return IdsList(header=copy_header(header), ids=[str(i) for i in ids])


class Rep155Publisher:
    """The REP-155 body topics of one node: ``/humans/bodies/tracked`` and, per tracked body,
    ``skeleton2d`` and ``roi`` publishers that live as long as the body (module docstring).

    node: an ``rclpy`` node; presence_threshold: keypoints below it are absent (the node's
    threshold); id_prefix: prefix of the body ids (None: 4 random letters). Not thread-safe:
    call :meth:`publish` from one thread (the node's worker).
    """

    def __init__(self, node, presence_threshold: float, id_prefix: str | None = None):
        _require_msgs()
        self.node = node
        self.presence_threshold = float(presence_threshold)
        self.id_prefix = random_prefix() if id_prefix is None else str(id_prefix)
        body_id(0, self.id_prefix)  # a bad prefix fails here, not at the first person
        self.tracked_pub = node.create_publisher(IdsList, TRACKED_TOPIC, QOS)
        self.bodies: dict[str, tuple] = {}  # body id -> (skeleton2d publisher, roi publisher)

    def body_id(self, track_id) -> str:
        return body_id(track_id, self.id_prefix)

    def publish(self, humans, header, image_size, track_ids=None) -> list[str]:
        """Publish one frame's people (``list[Human]``, image px; header: the source image's;
        image_size: ``(width, height)``). track_ids: every live (confirmed) track's id, also
        those this frame missed: their bodies stay on ``tracked`` with their publishers (None:
        this frame's people only). Returns the body ids published on ``tracked``."""
        current = {}
        for h in humans:
            if h.id is None:
                continue
            bid = self.body_id(h.id)
            if bid in current:
                raise ValueError(f"two people of one frame have the track id {h.id!r}")
            current[bid] = h
        for bid, h in current.items():
            if bid not in self.bodies:
                ns = f"/humans/bodies/{bid}"
                self.bodies[bid] = (self.node.create_publisher(Skeleton2D, f"{ns}/skeleton2d", QOS),
                                    self.node.create_publisher(NormalizedRegionOfInterest2D, f"{ns}/roi", QOS))
            skeleton_pub, roi_pub = self.bodies[bid]
            skeleton_pub.publish(skeleton_msg(h, header, image_size, self.presence_threshold))
            roi_pub.publish(roi_msg(h, header, image_size))
        missed = [bid for bid in map(self.body_id, track_ids or ()) if bid in self.bodies and bid not in current]
        ids = list(current) + missed
        self.tracked_pub.publish(ids_msg(ids, header))
        for bid in [b for b in self.bodies if b not in ids]:
            self._destroy(bid)
        return ids

    def _destroy(self, bid: str) -> None:
        for pub in self.bodies.pop(bid):
            self.node.destroy_publisher(pub)

    def close(self) -> None:
        """Destroy every publisher (the bodies' and ``tracked``)."""
        for bid in list(self.bodies):
            self._destroy(bid)
        if self.tracked_pub is not None:
            self.node.destroy_publisher(self.tracked_pub)
            self.tracked_pub = None
