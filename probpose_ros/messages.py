"""probpose_core results <-> probpose_msgs / sensor_msgs messages.

``humans_to_msg`` turns the pipeline's ``list[Human]`` (image pixels) into one
``probpose_msgs/HumanArray`` for one camera image; ``humans_to_data`` gives the same content
as plain data for :mod:`probpose_ros.cdr` (what the node publishes, as CDR bytes);
``msg_to_humans`` is the inverse (tests and subscribers that want the dataclasses back).
``rgb_to_image_msg`` makes a ``sensor_msgs/Image``.

Field choices (the .msg comments are the contract):

- ``HumanArray.header`` is a copy of the input image's header (stamp and frame_id).
- ``humans`` are ordered by detection score (``Human.box_score``), highest first; ``Human.id``
  is the index in that order (no tracking). ``Human.score`` carries the detection score; the
  pipeline's pose score is not sent, so ``msg_to_humans`` gives ``score = box_score``.
- ``Keypoint.covariance`` is the 2x2 map covariance row-major; NaN where the pipeline had none.
- ``Keypoint.credible_region`` holds the outlines at the published ``credible_level`` only, as
  ``geometry_msgs/Polygon`` (z = 0), largest area first; empty when the pipeline computed no
  region at that level (keypoint absent, or regions disabled: ``credible_level=None`` -> 0).

Speed (the node builds these per frame): rosidl's generated constructors fill every field with
a default first (``Human()`` builds 17 default Keypoints) and go through a property per field.
:func:`fast_message` and :func:`fast_xy` set the slots of a new message directly instead; they
are used only for classes whose layout they recognise (else the normal constructor), and they
need values of the types rosidl stores (``float``, ``int``, ``str``, lists of messages, numpy
arrays for fixed-size numeric arrays): the C serialiser does not check them.
:func:`rgb8_canvas` / :func:`rgb8_image_msg` let the annotated image be drawn straight into the
buffer the Image message publishes (one copy of the frame, none of the drawing).
"""
import array
import copy
import functools
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

from .image_conversion import rgb_to_fields


@functools.cache
def layout_known(cls) -> bool:
    """True when the message class ``cls`` stores each field ``f`` in a slot ``_f`` and has
    nothing else but ``_check_fields`` (the layout of rosidl's generated Python classes)."""
    fields = tuple(cls.get_fields_and_field_types())
    return set(getattr(cls, "__slots__", ())) == {"_" + f for f in fields} | {"_check_fields"}


def fast_message(cls):
    """``make(**fields)`` -> a new ``cls`` message with its slots set directly (see the module
    docstring); every field must be given (otherwise, or for an unknown layout, ``cls(**fields)``)."""
    fields = tuple(cls.get_fields_and_field_types())
    if not layout_known(cls):
        return cls
    slots = {f: "_" + f for f in fields}
    new = cls.__new__

    def make(**values):
        if len(values) != len(slots):
            return cls(**values)
        msg = new(cls)
        msg._check_fields = False
        for name, value in values.items():
            setattr(msg, slots[name], value)
        return msg

    return make


def fast_xy(cls):
    """``make(x, y, z=0.0)`` -> a new ``cls`` (geometry_msgs Point / Point32), fast (the node
    makes hundreds per frame); x, y, z must be Python floats."""
    if set(cls.get_fields_and_field_types()) != {"x", "y", "z"} or not layout_known(cls):
        return lambda x, y, z=0.0: cls(x=x, y=y, z=z)
    new = cls.__new__

    def make(x, y, z=0.0):
        p = new(cls)
        p._x, p._y, p._z, p._check_fields = x, y, z, False
        return p

    return make


def shallow_copy(msg):
    """A new message of ``msg``'s class sharing its field values (nested messages included)."""
    cls = type(msg)
    if not layout_known(cls):
        return copy.copy(msg)
    new = cls.__new__(cls)
    for slot in cls.__slots__:
        setattr(new, slot, getattr(msg, slot))
    return new


_keypoint_msg, _human_msg, _polygon_msg = fast_message(KeypointMsg), fast_message(HumanMsg), fast_message(Polygon)
_point32 = fast_xy(Point32)


def copy_header(header) -> Header:
    """A new ``std_msgs/Header`` with the stamp and frame_id of ``header``."""
    return Header(stamp=Time(sec=header.stamp.sec, nanosec=header.stamp.nanosec), frame_id=header.frame_id)


def header_data(header) -> dict:
    """``std_msgs/Header`` -> its plain data (:mod:`probpose_ros.cdr`): ``{"stamp": (sec, nanosec), "frame_id"}``."""
    return {"stamp": (int(header.stamp.sec), int(header.stamp.nanosec)), "frame_id": str(header.frame_id)}


def plain_header(data: dict) -> Header:
    """:func:`header_data` -> a new ``std_msgs/Header``."""
    sec, nanosec = data["stamp"]
    return Header(stamp=Time(sec=int(sec), nanosec=int(nanosec)), frame_id=data["frame_id"])


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
    """The published order: detection score (``box_score``) highest first; the index is the id."""
    return sorted(humans, key=lambda h: -float(h.box_score))


def published_regions(kp: Keypoint, level: float) -> list[np.ndarray]:
    """The outlines ``(M, 2)`` float64 of ``kp`` at credible level ``level`` as published:
    largest area first; none when ``level`` is 0 (regions off)."""
    polys = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in regions_at(kp.regions, level)] \
        if level and kp.regions else []
    if len(polys) > 1:
        polys.sort(key=_polygon_area, reverse=True)
    return polys


def keypoint_to_msg(kp: Keypoint, credible_level: float | None) -> KeypointMsg:
    """One :class:`Keypoint` -> ``probpose_msgs/Keypoint`` with its region at ``credible_level``."""
    level = 0.0 if credible_level is None else float(credible_level)
    polys = published_regions(kp, level)
    return _keypoint_msg(
        name=str(kp.name), x=float(kp.x), y=float(kp.y), presence=float(kp.presence),
        visibility=float(kp.visibility), oks_quality=float(kp.oks_quality),
        covariance=np.array(kp.covariance, dtype=np.float32).reshape(4),
        credible_level=level,
        credible_region=[_polygon_msg(points=[_point32(x, y) for x, y in p.tolist()]) for p in polys],
    )


def humans_to_msg(humans, header, image_size, model_id: str = "", presence_threshold: float = 0.5,
                  credible_level: float | None = 0.5, processing_latency: float = 0.0) -> HumanArray:
    """The people of one image -> ``probpose_msgs/HumanArray``.

    humans: ``list[Human]`` with 17 keypoints each (image pixels); header: the input image's
    ``std_msgs/Header`` (copied); image_size: ``(width, height)`` in pixels;
    processing_latency: seconds from receiving the image to publishing.
    """
    width, height = (int(v) for v in image_size)
    ordered = order_humans(humans)
    people = []
    for i, h in enumerate(ordered):
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise ValueError(f"human #{i} has {len(h.keypoints)} keypoints; the message holds {NUM_KEYPOINTS}")
        people.append(_human_msg(id=i, bbox=np.array(h.bbox, dtype=np.float32).reshape(4),
                                 score=float(h.box_score),
                                 keypoints=[keypoint_to_msg(k, credible_level) for k in h.keypoints]))
    return HumanArray(header=copy_header(header), image_width=width, image_height=height, model_id=str(model_id),
                      presence_threshold=float(presence_threshold), humans=people,
                      processing_latency=float(processing_latency))


def humans_to_data(humans, header, image_size, model_id: str = "", presence_threshold: float = 0.5,
                   credible_level: float | None = 0.5, processing_latency: float = 0.0) -> dict:
    """The content of :func:`humans_to_msg` (same arguments) as plain data for
    ``cdr.encode(HumanArray, data)``: dicts of fields; ``bbox`` / ``covariance`` float32
    ``(4,)``, every outline ``points (M, 3)`` float32 (z = 0)."""
    width, height = (int(v) for v in image_size)
    level = 0.0 if credible_level is None else float(credible_level)
    people = []
    for i, h in enumerate(order_humans(humans)):
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise ValueError(f"human #{i} has {len(h.keypoints)} keypoints; the message holds {NUM_KEYPOINTS}")
        keypoints = []
        covariances = np.array([kp.covariance for kp in h.keypoints], dtype=np.float32).reshape(-1, 4)
        for kp, covariance in zip(h.keypoints, covariances):
            regions = []
            for poly in published_regions(kp, level):
                points = np.zeros((len(poly), 3), dtype=np.float32)
                points[:, :2] = poly  # rounded to nearest, as the C serialiser does
                regions.append({"points": points})
            keypoints.append({"name": str(kp.name), "x": float(kp.x), "y": float(kp.y), "presence": float(kp.presence),
                              "visibility": float(kp.visibility), "oks_quality": float(kp.oks_quality),
                              "covariance": covariance,
                              "credible_level": level, "credible_region": regions})
        people.append({"id": i, "bbox": np.array(h.bbox, dtype=np.float32).reshape(4), "score": float(h.box_score),
                       "keypoints": keypoints})
    return {"header": header_data(header), "image_width": width, "image_height": height, "model_id": str(model_id),
            "presence_threshold": float(presence_threshold), "humans": people,
            "processing_latency": float(processing_latency)}


def sample_humans() -> list[Human]:
    """Two fixed people exercising every field (regions of 1, 2, 3 and 4 points, absent
    keypoints, NaN covariance, odd-length names): the sample of the node's start-up self-check."""
    people = []
    for p in range(2):
        kps = []
        for k in range(NUM_KEYPOINTS):
            shape = np.array([[0, 0], [7.5, 0], [7.5, 5.25], [0, 6]][:1 + (k + p) % 4]) + (3 * k, 2 * k + p)
            kps.append(Keypoint(name="kp" + "x" * ((k + p) % 5), x=10.5 + k + 0.1 * p, y=20.25 + 2 * k,
                                presence=(k * 7 + p) % 10 / 9, visibility=0.3, oks_quality=k / 17,
                                covariance=np.full((2, 2), np.nan) if k == 3 else np.array([[4.0, 1.5], [1.5, 9.0]]),
                                regions={0.5: [shape, shape[::-1] * 2]}))
        people.append(Human(bbox=(5.0 + 30 * p, 6.5, 70.0, 140.25), score=0.4, keypoints=kps, box_score=0.9 - 0.3 * p))
    return people


def msg_to_keypoint(msg: KeypointMsg) -> Keypoint:
    """``probpose_msgs/Keypoint`` -> :class:`Keypoint` (regions under the message's level)."""
    polys = [np.array([[p.x, p.y] for p in poly.points], dtype=np.float64).reshape(-1, 2)
             for poly in msg.credible_region]
    return Keypoint(name=msg.name, x=float(msg.x), y=float(msg.y), presence=float(msg.presence),
                    visibility=float(msg.visibility), oks_quality=float(msg.oks_quality),
                    covariance=np.asarray(msg.covariance, dtype=np.float64).reshape(2, 2),
                    regions={float(msg.credible_level): polys} if polys else {})


def msg_to_humans(msg: HumanArray) -> list[Human]:
    """``probpose_msgs/HumanArray`` -> ``list[Human]`` (``id`` = the message's index,
    ``score = box_score`` = the detection score; float32 precision)."""
    return [Human(bbox=tuple(float(v) for v in h.bbox), score=float(h.score),
                  keypoints=[msg_to_keypoint(k) for k in h.keypoints], id=int(h.id), box_score=float(h.score))
            for h in msg.humans]


def rgb_to_image_msg(rgb: np.ndarray, header, encoding: str = "rgb8") -> Image:
    """``rgb (H, W, 3) uint8`` -> ``sensor_msgs/Image`` in ``encoding`` with a copy of ``header``."""
    if encoding == "rgb8":
        data, canvas = rgb8_canvas(rgb)
        return rgb8_image_msg(data, canvas.shape, header)
    fields = rgb_to_fields(rgb, encoding)
    return Image(header=copy_header(header), height=fields["height"], width=fields["width"],
                 encoding=fields["encoding"], is_bigendian=fields["is_bigendian"], step=fields["step"],
                 data=fields["data"])


def rgb8_canvas(rgb: np.ndarray) -> tuple[array.array, np.ndarray]:
    """A copy of ``rgb (H, W, 3) uint8`` as the bytes of an rgb8 Image: ``(data, canvas)``, where
    ``canvas (H, W, 3)`` is a writable view of ``data`` -- draw on it, then :func:`rgb8_image_msg`."""
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {rgb.dtype} {rgb.shape}")
    data = array.array("B")
    data.frombytes(np.ascontiguousarray(rgb).data)
    return data, np.frombuffer(data, dtype=np.uint8).reshape(rgb.shape)


def rgb8_image_msg(data, shape, header) -> Image:
    """An rgb8 ``sensor_msgs/Image`` of ``shape (H, W, 3)`` whose data IS ``data`` (no copy):
    an ``array.array('B')`` (:func:`rgb8_canvas`) or a C-contiguous uint8 buffer such as an
    ``(H, W, 3)`` array (rclpy serialises any buffer)."""
    height, width = (int(v) for v in shape[:2])
    view = memoryview(data)
    if view.nbytes != height * width * 3 or not view.c_contiguous:
        raise ValueError(f"{view.nbytes} bytes (C-contiguous: {view.c_contiguous}) for a {width}x{height} rgb8 image")
    msg = Image(header=copy_header(header), height=height, width=width, encoding="rgb8", is_bigendian=0,
                step=width * 3)
    if layout_known(Image):
        msg._data = data  # the setter would copy the frame once more
    else:
        msg.data = data if isinstance(data, array.array) else array.array("B", view.cast("B"))
    return msg
