"""probpose_core results <-> probpose_msgs / sensor_msgs messages.

``humans_to_msg`` turns the pipeline's ``list[Human]`` (image pixels) into one
``probpose_msgs/HumanArray`` for one camera image (plain message objects, what the node
publishes); ``msg_to_humans`` is the inverse (tests and subscribers that want the dataclasses back).
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

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point32, Polygon
from probpose_msgs.msg import Human as HumanMsg
from probpose_msgs.msg import HumanArray
from probpose_msgs.msg import Keypoint as KeypointMsg
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.results import Human, Keypoint


def message_like(template, **fields):
    """A shallow copy of the message ``template`` with ``fields`` set through the message's setters.

    A generated message constructor builds a default for every sub-message field even when it is
    passed (``kwargs.get(name, Default())``): ``Human()`` makes its 17 default Keypoints (~29 us),
    ``Human3D()`` 17 Keypoint3D, ``Marker()`` its pose, scale, colour and lifetime, ``Skeleton2D()``
    18 points; a copy costs ~2 us. The template's sub-messages are shared, so a caller sets every
    field that differs and never modifies one in place (a message is serialised on publish).
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


def keypoint_to_msg(kp: Keypoint, credible_level: float | None, covariance=None) -> KeypointMsg:
    """One :class:`Keypoint` -> ``probpose_msgs/Keypoint`` with its region at ``credible_level``;
    ``covariance (4,)`` float32: its covariance when the caller converted it already."""
    level = 0.0 if credible_level is None else float(credible_level)
    polys = published_regions(kp, level)
    return KeypointMsg(
        name=str(kp.name), x=float(kp.x), y=float(kp.y), presence=float(kp.presence),
        visibility=float(kp.visibility), oks_quality=float(kp.oks_quality),
        covariance=np.array(kp.covariance, dtype=np.float32).reshape(4) if covariance is None else covariance,
        credible_level=level,
        credible_region=[Polygon(points=[Point32(x=x, y=y) for x, y in p.tolist()]) for p in polys],
    )


_HUMAN = HumanMsg()  # the template of message_like: its 17 default Keypoints are built once


def humans_to_msg(humans, header, image_size, model_id: str = "", *, presence_threshold: float,
                  credible_level: float | None = 0.5, processing_latency: float = 0.0) -> HumanArray:
    """The people of one image -> ``probpose_msgs/HumanArray``.

    humans: ``list[Human]`` with 17 keypoints each (image pixels); header: the input image's
    ``std_msgs/Header`` (copied); image_size: ``(width, height)`` in pixels; presence_threshold:
    the one the pipeline judged presence with (its ModelSpec's unless overridden; required: a
    default here would publish another threshold than the model's); processing_latency: seconds
    from receiving the image to publishing.
    """
    width, height = (int(v) for v in image_size)
    ordered = order_humans(humans)
    people = []
    for i, h in enumerate(ordered):
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise ValueError(f"human #{i} has {len(h.keypoints)} keypoints; the message holds {NUM_KEYPOINTS}")
        covariance = np.array([k.covariance for k in h.keypoints], dtype=np.float32).reshape(-1, 4)
        people.append(message_like(_HUMAN, id=0 if h.id is None else int(h.id), score=float(h.box_score),
                                   bbox=np.array(h.bbox, dtype=np.float32).reshape(4),
                                   keypoints=[keypoint_to_msg(k, credible_level, c)
                                              for k, c in zip(h.keypoints, covariance)]))
    return HumanArray(header=copy_header(header), image_width=width, image_height=height, model_id=str(model_id),
                      presence_threshold=float(presence_threshold), humans=people,
                      processing_latency=float(processing_latency))


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
