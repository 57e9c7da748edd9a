"""ROS 2 messages serialised straight from numpy arrays: CDR bytes (little-endian XCDR1 with its
4-byte encapsulation header, the format rmw implementations exchange) that rclpy's
``Publisher.publish(bytes)`` sends as they are.

rclpy serialises a message one Python object at a time: every ``geometry_msgs/Point`` or
``Point32`` is built (~1 us) and read back attribute by attribute on publish (~0.4 us), every
Marker or Keypoint message costs ~5-20 us with its sub-messages. On the pose node's frames that
was ~1.4 ms for the HumanArray of 3 people and as much for their markers (issue 18). Here
:class:`Writer` appends aligned primitives, strings and numpy arrays to one buffer;
:func:`serialize_markers` writes a ``visualization_msgs/MarkerArray`` of :class:`MarkerSpec`
(``messages.serialize_humans`` writes the ``probpose_msgs/HumanArray`` with it).

The layouts: probpose_msgs' own, and visualization_msgs/Marker's as installed -- with texture,
uv_coordinates and mesh_file (Iron and later: Jazzy, Kilted, Rolling) or without (Humble); a
Marker with other fields is refused with its field list. ``test/ros/test_cdr.py`` and
``test/ros/test_messages.py`` check the bytes against rclpy's own serialiser and deserialiser
field by field on this machine's Kilted (Humble's layout is written to its .msg but not run
here), so a layout change fails there, not in a subscriber. Marker fields a spec does not carry
are written as ``Marker()``'s defaults (no texture, no mesh, identity orientation,
``frame_locked`` false).
"""
import functools
import struct
from typing import NamedTuple

import numpy as np

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR, little endian
_EMPTY = np.zeros((0, 3))


class MarkerSpec(NamedTuple):
    """One marker: ``action`` / ``type`` as ``visualization_msgs/Marker``'s constants; ``scale``
    ``(x, y, z)``; ``color`` ``(r, g, b, a)`` in [0, 1]; ``points (N, 3)`` metres;
    ``colors (N, 4)`` or empty; ``position``: the pose's position (orientation identity)."""

    ns: str = ""
    id: int = 0
    type: int = 0
    action: int = 0
    scale: tuple = (0.0, 0.0, 0.0)
    color: tuple = (0.0, 0.0, 0.0, 0.0)
    points: np.ndarray = _EMPTY
    colors: np.ndarray = _EMPTY
    text: str = ""
    position: tuple = (0.0, 0.0, 0.0)


def string_field(text: str) -> bytes:
    """A ``string`` field written from a 4-aligned offset: uint32 length with the NUL, the UTF-8
    bytes, NUL, zero-padded to the next 4-aligned offset (every field that follows a string in
    the messages written here is 4-byte aligned or is aligned again). Text after an embedded NUL
    is dropped, as rclpy drops it."""
    data = str(text).encode().split(b"\x00", 1)[0]
    return struct.pack("<I", len(data) + 1) + data + bytes(4 - len(data) % 4)


class Writer:
    """CDR writer: ``buf`` starts with the encapsulation header; primitives are aligned to their
    size counted from after it (:meth:`align` before appending packed bytes)."""

    def __init__(self):
        self.buf = bytearray(ENCAPSULATION)

    def align(self, size: int) -> None:
        self.buf += bytes(-(len(self.buf) - len(ENCAPSULATION)) % size)

    def string(self, text: str) -> None:
        """A ``string`` (:func:`string_field`) at the next 4-aligned offset."""
        self.align(4)
        self.buf += string_field(text)

    def sequence(self, values: np.ndarray, dtype: str, align: int) -> None:
        """A sequence of structs of ``values.shape[1]`` primitives of ``dtype`` each."""
        self.align(4)
        self.buf += struct.pack("<I", len(values))
        if len(values):
            self.align(align)
            self.buf += np.ascontiguousarray(values, dtype=dtype).tobytes()


_EMPTY_STRING = string_field("")
# From a 4-aligned offset: texture_resource "", texture (CompressedImage: header stamp 0 0, frame_id "",
# format "", data []) and uv_coordinates []; then, after the text: mesh_resource "", mesh_file
# (filename "", data []) and mesh_use_embedded_materials false. Humble's Marker has neither
# texture* nor uv_coordinates nor mesh_file: after the text only mesh_resource "" and the bool.
_TEXTURE = _EMPTY_STRING + struct.pack("<iI", 0, 0) + _EMPTY_STRING + _EMPTY_STRING + struct.pack("<II", 0, 0)
_MESH = _EMPTY_STRING + _EMPTY_STRING + struct.pack("<I?", 0, False)
_MESH_HUMBLE = struct.pack("<I", 1) + b"\x00" + struct.pack("<?", False)  # "" unpadded: the bool follows
_FIXED = struct.Struct("<10d4fiI?")  # pose, scale, color, lifetime, frame_locked (from an 8-aligned offset)
#: visualization_msgs/Marker's fields from Iron on (Jazzy, Kilted, Rolling), and Humble's
MARKER_FIELDS = ("header", "ns", "id", "type", "action", "pose", "scale", "color", "lifetime", "frame_locked",
                 "points", "colors", "texture_resource", "texture", "uv_coordinates", "text", "mesh_resource",
                 "mesh_file", "mesh_use_embedded_materials")
MARKER_FIELDS_HUMBLE = tuple(f for f in MARKER_FIELDS
                             if f not in ("texture_resource", "texture", "uv_coordinates", "mesh_file"))


def marker_has_texture(fields) -> bool:
    """True for the Marker ``fields`` (names in order) of Iron and later, False for Humble's; any
    other layout is refused (RuntimeError naming the fields): the bytes would not read back."""
    fields = tuple(fields)
    if fields in (MARKER_FIELDS, MARKER_FIELDS_HUMBLE):
        return fields == MARKER_FIELDS
    raise RuntimeError(f"visualization_msgs/Marker here has the fields {fields}; probpose_ros.cdr writes "
                       f"Humble's layout or the one of Iron and later")


@functools.cache
def _installed_marker_has_texture() -> bool:
    from visualization_msgs.msg import Marker

    return marker_has_texture(Marker.get_fields_and_field_types())


def serialize_markers(header_stamp: tuple, frame_id: str, markers, lifetime: tuple,
                      texture: bool | None = None) -> bytes:
    """The CDR bytes of a ``MarkerArray`` of ``markers`` (MarkerSpec), every marker with the header
    ``(sec, nanosec), frame_id`` and lifetime ``(sec, nanosec)``; ``texture``: the layout with the
    texture and mesh_file fields (Iron and later) or without (Humble); None: the installed
    visualization_msgs' (RuntimeError for a layout neither)."""
    texture = _installed_marker_has_texture() if texture is None else bool(texture)
    w = Writer()
    w.buf += struct.pack("<I", len(markers))
    header = struct.pack("<iI", *(int(v) for v in header_stamp)) + string_field(frame_id)
    life_sec, life_nanosec = (int(v) for v in lifetime)
    for m in markers:
        w.align(4)
        w.buf += header
        w.string(m.ns)  # padded: the int32s follow
        w.buf += struct.pack("<iii", int(m.id), int(m.type), int(m.action))
        w.align(8)
        w.buf += _FIXED.pack(*m.position, 0.0, 0.0, 0.0, 1.0, *m.scale, *m.color, life_sec, life_nanosec, False)
        w.sequence(m.points, "<f8", 8)
        w.sequence(m.colors, "<f4", 4)
        if texture:
            w.align(4)
            w.buf += _TEXTURE
        w.string(m.text)  # padded: mesh_resource follows
        w.buf += _MESH if texture else _MESH_HUMBLE
    return bytes(w.buf)
