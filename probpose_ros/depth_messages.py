"""Depth images and camera_info in; 3D keypoints and keep-out capsules out, as messages.

Plain functions (no node, no DDS), used by :class:`probpose_ros.depth_outputs.DepthOutputs`
and tested on their own:

- :func:`depth_image_to_array`: a ``sensor_msgs/Image`` in ``16UC1`` (millimetres) or ``32FC1``
  (metres) -> ``(H, W)`` uint16 / float32 view of its data (``step`` and ``is_bigendian``
  honoured); anything else raises :class:`~probpose_ros.image_conversion.BadFrame` with a
  ``kind``: ``depth_encoding``, ``depth_empty``, ``depth_oversized``, ``depth_truncated``.
- :func:`camera_matrix_from_info`: ``K (3, 3)`` of a ``sensor_msgs/CameraInfo`` (BadFrame
  ``camera_info`` when it is all zeros / not a camera matrix). The distortion ``d`` is ignored.
- :func:`keypoints3d_to_msg` / :func:`keep_out_to_msg`: ``probpose_core.lifting.Keypoints3D``
  and ``probpose_core.keep_out.KeepOut`` lists -> ``probpose_msgs/Human3DArray`` and
  ``KeepOutArray`` (the .msg comments are the contract). ``id`` = ``Human.id`` (track id), 0
  when None. NaN positions and covariances stay NaN.
- :func:`keep_out_markers`: capsules -> ``visualization_msgs/MarkerArray`` for RViz: per
  capsule a CYLINDER along its axis and a SPHERE at each end (the capsule exactly), orange
  for a complete person, red for an incomplete one (its bounding capsule fainter); a DELETEALL
  first and a ``lifetime`` on each marker, as :mod:`probpose_ros.markers`.
"""
import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from probpose_msgs.msg import Capsule as CapsuleMsg
from probpose_msgs.msg import Human3D, Human3DArray, KeepOutArray, Keypoint3D
from probpose_msgs.msg import KeepOut as KeepOutMsg
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.errors import InputError
from probpose_core.keep_out import KeepOut, limb_part
from probpose_core.keypoints import NAMES, NUM_KEYPOINTS
from probpose_core.lifting import Keypoints3D, check_camera_matrix

from .image_conversion import DEFAULT_MAX_IMAGE_PIXELS, BadFrame, pixel_rows
from .markers import to_duration
from .messages import message_like

#: depth encoding -> numpy dtype (little-endian; big-endian data is byte-swapped on read)
DEPTH_ENCODINGS = {"16UC1": np.dtype("<u2"), "32FC1": np.dtype("<f4")}

COMPLETE_RGBA = (1.0, 0.55, 0.0, 0.35)
INCOMPLETE_RGBA = (0.9, 0.0, 0.1, 0.35)
BOUNDING_RGBA = (0.9, 0.0, 0.1, 0.15)


# -- inputs ------------------------------------------------------------------------------
def depth_image_to_array(msg, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """``sensor_msgs/Image`` (or anything with its fields) in 16UC1 / 32FC1 -> ``(H, W)`` uint16
    millimetres / float32 metres, a read-only view of ``msg.data`` when it is little-endian.
    The buffer is parsed by :func:`~probpose_ros.image_conversion.pixel_rows` (kinds
    ``depth_empty``, ``depth_oversized``, ``depth_truncated``)."""
    encoding = msg.encoding
    if encoding not in DEPTH_ENCODINGS:
        raise BadFrame("depth_encoding", f"depth image encoding {encoding!r} is not supported; "
                                         f"use 16UC1 (millimetres) or 32FC1 (metres)")
    height, width = int(msg.height), int(msg.width)
    dtype = DEPTH_ENCODINGS[encoding]
    rows = pixel_rows(msg.data, height, width, msg.step, dtype.itemsize, f"depth {encoding}", max_pixels,
                      prefix="depth_")
    depth = rows.view(dtype.newbyteorder(">" if msg.is_bigendian else "<")).reshape(height, width)
    if msg.is_bigendian:
        depth = depth.astype(dtype)
    depth.flags.writeable = False
    return depth


def camera_matrix_from_info(msg) -> np.ndarray:
    """``K (3, 3)`` float64 of a ``sensor_msgs/CameraInfo``; BadFrame ``camera_info`` when ``k``
    is not a camera matrix (e.g. all zeros: an uncalibrated camera)."""
    try:
        return check_camera_matrix(np.asarray(msg.k, dtype=np.float64))
    except InputError as exc:
        raise BadFrame("camera_info", str(exc)) from exc


# -- outputs -----------------------------------------------------------------------------
def human_id(human) -> int:
    """The message id of a ``Human``: its track id, 0 when it has none."""
    return 0 if human.id is None else int(human.id)


def output_header(colour_header, frame_id: str) -> Header:
    """The header of the 3D outputs: the colour image's stamp, ``frame_id`` (the depth image's)."""
    return Header(stamp=Time(sec=colour_header.stamp.sec, nanosec=colour_header.stamp.nanosec),
                  frame_id=str(frame_id))


def no_depth_keypoints(human) -> Keypoints3D:
    """The :class:`Keypoints3D` of a person without depth: nothing valid, presence copied."""
    presence = np.array([k.presence for k in human.keypoints], dtype=np.float64)
    return Keypoints3D(position=np.full((NUM_KEYPOINTS, 3), np.nan),
                       covariance=np.full((NUM_KEYPOINTS, 3, 3), np.nan),
                       valid=np.zeros(NUM_KEYPOINTS, bool), presence=presence,
                       depth_pixels=np.zeros(NUM_KEYPOINTS, int), id=human.id)


def _time(stamp) -> Time:
    return Time() if stamp is None else Time(sec=stamp.sec, nanosec=stamp.nanosec)


_HUMAN3D = Human3D()  # the template of message_like: its 17 default Keypoint3D are built once


def keypoints3d_to_msg(keypoints3d, header: Header, presence_threshold: float, has_depth: bool = True,
                       depth_stamp=None) -> Human3DArray:
    """``list[Keypoints3D]`` (the people in the HumanArray's order) -> ``Human3DArray`` with
    ``header`` (:func:`output_header`); ``depth_stamp``: the depth image's stamp or None."""
    people = []
    for kp in keypoints3d:
        cov = np.asarray(kp.covariance, dtype=np.float64).reshape(NUM_KEYPOINTS, 9)
        pos = np.asarray(kp.position, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        keypoints = [Keypoint3D(name=NAMES[k], position=Point(x=x, y=y, z=z), covariance=cov[k],
                                presence=float(kp.presence[k]), valid=bool(kp.valid[k]),
                                depth_samples=int(kp.depth_pixels[k]))
                     for k, (x, y, z) in enumerate(pos.tolist())]
        people.append(message_like(_HUMAN3D, id=0 if kp.id is None else int(kp.id), keypoints=keypoints))
    return Human3DArray(header=header, has_depth=bool(has_depth), depth_stamp=_time(depth_stamp),
                        presence_threshold=float(presence_threshold), humans=people)


def capsule_to_msg(capsule) -> CapsuleMsg:
    """A ``probpose_core.keep_out.Capsule`` -> ``probpose_msgs/Capsule``."""
    (sx, sy, sz), (ex, ey, ez) = np.asarray(capsule.start, float).tolist(), np.asarray(capsule.end, float).tolist()
    if capsule.limb is None:
        a = b = -1
        part = "bounding"
    else:
        a, b = (int(i) for i in capsule.limb)
        part = limb_part(a, b)
    return CapsuleMsg(start=Point(x=sx, y=sy, z=sz), end=Point(x=ex, y=ey, z=ez), radius=float(capsule.radius),
                      start_keypoint=a, end_keypoint=b, part=part, bounding=capsule.limb is None)


def keep_out_to_msg(keep_outs, header: Header, coverage: float, has_depth: bool = True,
                    depth_stamp=None) -> KeepOutArray:
    """``list[KeepOut]`` (the HumanArray's order) -> ``KeepOutArray`` with ``header``."""
    people = [KeepOutMsg(id=0 if k.id is None else int(k.id), capsules=[capsule_to_msg(c) for c in k.capsules],
                         incomplete=bool(k.incomplete), reasons=[str(r) for r in k.reasons]) for k in keep_outs]
    return KeepOutArray(header=header, coverage=float(coverage), has_depth=bool(has_depth),
                        depth_stamp=_time(depth_stamp), humans=people)


def no_depth_keep_out(human, reason: str) -> KeepOut:
    """The KeepOut of a person seen without usable depth: incomplete, no capsule."""
    return KeepOut(capsules=[], incomplete=True, reasons=(reason,), id=human.id)


def axis_quaternion(direction) -> tuple:
    """``(x, y, z, w)`` of the rotation taking the z axis to ``direction (3,)`` (identity for a
    zero vector; a half turn about x for -z)."""
    d = np.asarray(direction, dtype=np.float64)
    n = float(np.linalg.norm(d))
    if n == 0.0:
        return (0.0, 0.0, 0.0, 1.0)
    d = d / n
    if d[2] < -1.0 + 1e-12:
        return (1.0, 0.0, 0.0, 0.0)
    q = np.array([-d[1], d[0], 0.0, 1.0 + d[2]])  # (z x d, 1 + z.d), normalised: the half angle
    q /= np.linalg.norm(q)
    return tuple(float(v) for v in q)


def keep_out_markers(keep_outs, header: Header, lifetime: float = 0.5, clear: bool = True) -> MarkerArray:
    """The capsules of ``keep_outs`` as an RViz ``MarkerArray`` in ``header``'s frame (module
    docstring). Namespace ``keep_out_<i>`` per person ``i`` (the published order); capsules
    with a non-finite end or radius are left out.

    Each marker is :func:`~probpose_ros.messages.message_like` a template per (shape, colour)
    with its own ns, id, pose and scale: a fresh ``Marker()`` costs ~30 us of CPU (it builds its
    texture, mesh and lifetime sub-messages), a copy ~4 us.
    """
    life = to_duration(lifetime)
    out = [Marker(header=header, action=Marker.DELETEALL, lifetime=life)] if clear else []
    templates = {}

    def marker(kind, rgba, ns, marker_id, centre, scale, orientation=(0.0, 0.0, 0.0, 1.0)):
        if (kind, rgba) not in templates:
            templates[kind, rgba] = Marker(header=header, type=kind, action=Marker.ADD, lifetime=life,
                                           color=ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]))
        x, y, z = centre
        qx, qy, qz, qw = orientation
        return message_like(templates[kind, rgba], ns=ns, id=marker_id, scale=Vector3(x=scale[0], y=scale[1], z=scale[2]),
                            pose=Pose(position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)))

    for i, person in enumerate(keep_outs):
        ns = f"keep_out_{i}"
        n = 0
        for c in person.capsules:
            start, end = np.asarray(c.start, float), np.asarray(c.end, float)
            r = float(c.radius)
            if not (np.isfinite(start).all() and np.isfinite(end).all() and np.isfinite(r)):
                continue
            rgba = BOUNDING_RGBA if c.limb is None else INCOMPLETE_RGBA if person.incomplete else COMPLETE_RGBA
            d = 2.0 * r
            axis = end - start
            out.append(marker(Marker.CYLINDER, rgba, ns, n, ((start + end) / 2).tolist(),
                              (d, d, float(np.linalg.norm(axis))), axis_quaternion(axis)))
            out.append(marker(Marker.SPHERE, rgba, ns, n + 1, start.tolist(), (d, d, d)))
            out.append(marker(Marker.SPHERE, rgba, ns, n + 2, end.tolist(), (d, d, d)))
            n += 3
    return MarkerArray(markers=out)
