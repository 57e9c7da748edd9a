"""probpose_core results <-> probpose_msgs / sensor_msgs messages.

``serialize_humans`` turns the pipeline's ``list[Human]`` (image pixels) into one serialised
``probpose_msgs/HumanArray`` for one camera image (the CDR bytes the node publishes, see
:mod:`probpose_ros.cdr`); ``msg_to_humans`` is the inverse from the message a subscriber receives
(tests and subscribers that want the dataclasses back).
``image_msg_canvas`` makes the annotated ``sensor_msgs/Image`` and the array to draw it on.

Field choices (the .msg comments are the contract):

- ``HumanArray.header`` is a copy of the input image's header (stamp and frame_id).
- ``humans`` are ordered by detection score (``Human.box_score``), highest first. ``Human.id``
  is the track id (:mod:`probpose_core.tracking`, >= 1, never reused within a run); 0 = no
  track (tracking off, or a detection not, or not yet, on a confirmed track): the dataclass's
  ``None``. ``Human.score`` carries the detection score; the
  pipeline's pose score is not sent, so ``msg_to_humans`` gives ``score = box_score``.
- ``Keypoint.covariance`` is the 2x2 map covariance row-major; NaN where the pipeline had none.
- ``Keypoint.credible_region`` holds the outlines at the published ``credible_level`` only, as
  ``geometry_msgs/Polygon`` (z = 0), largest area first; empty when the pipeline computed no
  region at that level (keypoint absent, or regions disabled: ``credible_level=None`` -> 0).
"""
import array
import copy
import math
import struct

import numpy as np
from builtin_interfaces.msg import Time
from probpose_msgs.msg import HumanArray
from probpose_msgs.msg import Keypoint as KeypointMsg
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from probpose_core.keypoints import NAMES, NUM_KEYPOINTS
from probpose_core.results import Human, Keypoint

from .cdr import Writer, string_field


def message_like(template, **fields):
    """A shallow copy of the message ``template`` with ``fields`` set through the message's setters.

    A generated message constructor builds a default for every sub-message field even when it is
    passed (``kwargs.get(name, Default())``): ``Human3D()`` makes its 17 default Keypoint3D,
    ``Marker()`` its pose, scale, colour, texture and lifetime, ``Skeleton2D()`` 18 points; a
    copy costs ~2 us. The template's sub-messages are shared, so a caller sets every field that
    differs and never modifies one in place (a message is serialised on publish).
    """
    m = copy.copy(template)
    for name, value in fields.items():
        setattr(m, name, value)
    return m


def copy_header(header) -> Header:
    """A new ``std_msgs/Header`` with the stamp and frame_id of ``header``."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def _polygon_area(points: np.ndarray) -> float:
    """Shoelace area of a closed outline ``points (M, 2)``."""
    x, y = points[:, 0], points[:, 1]
    return 0.5 * abs(float(x[:-1] @ y[1:] - x[1:] @ y[:-1] + x[-1] * y[0] - x[0] * y[-1]))


def regions_at(regions: dict, level: float) -> list:
    """The outlines stored under credible level ``level`` (float keys compared with a tolerance)."""
    for q, polys in regions.items():
        if math.isclose(float(q), level, abs_tol=1e-6):
            return polys
    return []


def order_humans(humans) -> list:
    """The published order: detection score (``box_score``) highest first."""
    return sorted(humans, key=lambda h: -float(h.box_score))


def published_regions(kp: Keypoint, level: float) -> list[np.ndarray]:
    """The outlines ``(M, 2)`` float64 of ``kp`` at credible level ``level`` as published:
    largest area first; none when ``level`` is 0 (regions off)."""
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in regions_at(kp.regions, level)] \
        if level and kp.regions else []
    if len(polys) > 1:
        polys.sort(key=_polygon_area, reverse=True)
    return polys


_NAME_FIELDS = {name: string_field(name) for name in NAMES}  # the COCO names, written once


def serialize_humans(humans, header, image_size, model_id: str = "", *, presence_threshold: float,
                     credible_level: float | None = 0.5, processing_latency: float = 0.0) -> bytes:
    """The people of one image -> a serialised ``probpose_msgs/HumanArray``: CDR bytes to publish
    as they are (rclpy sends them unchanged), or to read with
    ``rclpy.serialization.deserialize_message(data, HumanArray)``.

    humans: ``list[Human]`` with 17 keypoints each (image pixels); header: the input image's
    ``std_msgs/Header`` (copied); image_size: ``(width, height)`` in pixels; presence_threshold:
    the one the pipeline judged presence with (its ModelSpec's unless overridden; required: a
    default here would publish another threshold than the model's); processing_latency: seconds
    from receiving the image to publishing. Written with :class:`probpose_ros.cdr.Writer`, the
    float32 fields through numpy (round to nearest, as rclpy converts); every field of the
    message is 4-byte aligned, so only the strings need padding.
    """
    width, height = (int(v) for v in image_size)
    level = 0.0 if credible_level is None else float(credible_level)
    ordered = order_humans(humans)
    for i, h in enumerate(ordered):
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise ValueError(f"human #{i} has {len(h.keypoints)} keypoints; the message holds {NUM_KEYPOINTS}")
    w = Writer()
    w.buf += struct.pack("<iI", int(header.stamp.sec), int(header.stamp.nanosec)) + string_field(header.frame_id)
    w.buf += struct.pack("<II", width, height) + string_field(str(model_id))
    w.buf += np.float32(presence_threshold).tobytes() + struct.pack("<I", len(ordered))
    for h in ordered:
        w.buf += struct.pack("<I", 0 if h.id is None else int(h.id))
        w.buf += np.array([*h.bbox, h.box_score], dtype="<f4").reshape(5).tobytes()  # bbox[4], score
        kps = h.keypoints
        rows = np.column_stack([  # x, y, presence, visibility, oks_quality, covariance[4], credible_level
            np.array([(k.x, k.y, k.presence, k.visibility, k.oks_quality) for k in kps], dtype=np.float64),
            np.array([k.covariance for k in kps], dtype=np.float64).reshape(NUM_KEYPOINTS, 4),
            np.full(NUM_KEYPOINTS, level)]).astype("<f4").tobytes()
        polys = [published_regions(k, level) for k in kps]
        corners = [poly for mine in polys for poly in mine]
        points = np.zeros((sum(map(len, corners)), 3), dtype="<f4")  # every outline's Point32s (z = 0)
        if corners:
            points[:, :2] = np.concatenate(corners)
        points, at = points.tobytes(), 0
        for j, k in enumerate(kps):
            w.buf += (_NAME_FIELDS.get(k.name) or string_field(k.name)) + rows[40 * j:40 * j + 40]
            w.buf += struct.pack("<I", len(polys[j]))
            for poly in polys[j]:  # geometry_msgs/Polygon: Point32[]
                w.buf += struct.pack("<I", len(poly)) + points[at:at + 12 * len(poly)]
                at += 12 * len(poly)
    w.buf += np.float32(processing_latency).tobytes()
    return bytes(w.buf)


def msg_to_keypoint(msg: KeypointMsg) -> Keypoint:
    """``probpose_msgs/Keypoint`` -> :class:`Keypoint` (regions under the message's level)."""
    polys = [np.array([[p.x, p.y] for p in poly.points], dtype=np.float64).reshape(-1, 2)
             for poly in msg.credible_region]
    return Keypoint(name=msg.name, x=float(msg.x), y=float(msg.y), presence=float(msg.presence),
                    visibility=float(msg.visibility), oks_quality=float(msg.oks_quality),
                    covariance=np.asarray(msg.covariance, dtype=np.float64).reshape(2, 2),
                    regions={float(msg.credible_level): polys} if polys else {})


def msg_to_humans(msg: HumanArray) -> list[Human]:
    """``probpose_msgs/HumanArray`` -> ``list[Human]`` (``id``: the track id, None for 0,
    ``score = box_score`` = the detection score; float32 precision)."""
    return [Human(bbox=tuple(float(v) for v in h.bbox), score=float(h.score),
                  keypoints=[msg_to_keypoint(k) for k in h.keypoints], id=int(h.id) or None, box_score=float(h.score))
            for h in msg.humans]


def image_msg_canvas(rgb: np.ndarray, header) -> tuple[Image, np.ndarray]:
    """An rgb8 ``sensor_msgs/Image`` with a copy of ``header`` holding a copy of ``rgb (H, W, 3)
    uint8``, and ``(H, W, 3)`` a writable view of the message's pixels: draw on the view, then
    publish the message. The frame itself is never drawn on: it may be a view of the received
    message."""
    height, width = rgb.shape[:2]
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(rgb, dtype=np.uint8).reshape(height, width, 3))
    msg = Image(header=copy_header(header), height=height, width=width, encoding="rgb8", is_bigendian=0,
                step=3 * width)
    msg.data = data  # the setter makes its own array.array (a memcpy from another array.array)
    return msg, np.frombuffer(msg.data, dtype=np.uint8).reshape(height, width, 3)
