"""probpose_ros.cdr against rclpy's own serialiser and deserialiser (the real
visualization_msgs of this distribution): a layout change fails here, not in RViz."""
import numpy as np
import pytest
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Vector3
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker, MarkerArray

from probpose_ros.cdr import ENCAPSULATION, MarkerSpec, serialize_markers

f32 = st.floats(0, 1, width=32)
text = st.text(st.characters(max_codepoint=0x2FF), max_size=7)  # NUL included: rclpy cuts there


@st.composite
def specs(draw):
    n = draw(st.integers(0, 6))
    points = np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=3 * n, max_size=3 * n))).reshape(n, 3)
    colors = np.array(draw(st.lists(f32, min_size=4 * n, max_size=4 * n)), dtype=np.float32).reshape(n, 4)
    return MarkerSpec(ns=draw(text), id=draw(st.integers(-5, 5)), type=draw(st.sampled_from([2, 4, 5, 7, 9])),
                      action=draw(st.sampled_from([Marker.ADD, Marker.DELETEALL])),
                      scale=tuple(draw(st.lists(st.floats(0, 1), min_size=3, max_size=3))),
                      color=tuple(draw(st.lists(f32, min_size=4, max_size=4))), points=points,
                      colors=colors if draw(st.booleans()) else np.zeros((0, 4)), text=draw(text),
                      position=(draw(st.floats(-1, 1)), draw(st.floats(-1, 1)), 0.0))


def reference(spec: MarkerSpec, stamp, frame_id: str, lifetime) -> Marker:
    """The same marker built the way rclpy users do."""
    header = Header(frame_id=frame_id)
    header.stamp.sec, header.stamp.nanosec = stamp
    x, y, z = spec.position
    return Marker(header=header, ns=spec.ns, id=spec.id, type=spec.type, action=spec.action,
                  pose=Pose(position=Point(x=x, y=y, z=z)), scale=Vector3(x=spec.scale[0], y=spec.scale[1],
                                                                            z=spec.scale[2]),
                  color=ColorRGBA(r=spec.color[0], g=spec.color[1], b=spec.color[2], a=spec.color[3]),
                  lifetime=Duration(sec=lifetime[0], nanosec=lifetime[1]),
                  points=[Point(x=a, y=b, z=c) for a, b, c in spec.points.tolist()],
                  colors=[ColorRGBA(r=r, g=g, b=b, a=a) for r, g, b, a in spec.colors.tolist()], text=spec.text)


@settings(max_examples=60, deadline=None)
@given(st.lists(specs(), max_size=4), st.tuples(st.integers(0, 2**31 - 1), st.integers(0, 999_999_999)), text,
       st.tuples(st.integers(0, 10), st.integers(0, 999_999_999)))
def test_bytes_read_back_as_the_marker_array_rclpy_builds(markers, stamp, frame_id, lifetime):
    data = serialize_markers(stamp, frame_id, markers, lifetime)
    expected = MarkerArray(markers=[reference(m, stamp, frame_id, lifetime) for m in markers])
    assert data[:4] == ENCAPSULATION
    assert len(data) == len(serialize_message(expected))  # same layout, padding included
    assert deserialize_message(data, MarkerArray) == deserialize_message(serialize_message(expected), MarkerArray)


def test_defaults_of_the_fields_a_spec_does_not_carry():
    (m,) = deserialize_message(serialize_markers((1, 2), "cam", [MarkerSpec()], (0, 0)), MarkerArray).markers
    default = Marker()
    assert (m.texture_resource, m.texture.format, len(m.texture.data), len(m.uv_coordinates)) == ("", "", 0, 0)
    assert (m.mesh_resource, m.mesh_file.filename, len(m.mesh_file.data)) == ("", "", 0)
    assert m.pose.orientation == default.pose.orientation and not m.frame_locked and not m.mesh_use_embedded_materials


def test_the_layout_is_the_installed_ones_and_humbles_is_the_same_without_texture_and_mesh_file():
    from probpose_ros.cdr import MARKER_FIELDS, MARKER_FIELDS_HUMBLE, marker_has_texture

    assert tuple(Marker.get_fields_and_field_types()) == MARKER_FIELDS  # Kilted here
    assert marker_has_texture(MARKER_FIELDS) and not marker_has_texture(MARKER_FIELDS_HUMBLE)
    with pytest.raises(RuntimeError, match="mesh_file"):  # a layout neither: refused, not guessed
        marker_has_texture(MARKER_FIELDS[:-1])
    spec = MarkerSpec(ns="ab", text="xyz", points=np.ones((2, 3)))
    full = serialize_markers((1, 2), "cam", [spec], (0, 5))
    humble = serialize_markers((1, 2), "cam", [spec], (0, 5), texture=False)
    # Humble's Marker (not installed here): the same bytes without texture_resource, texture and
    # uv_coordinates before the text (40 bytes, 4-aligned) and with only mesh_resource "" and the
    # bool after it (no mesh_file)
    from probpose_ros.cdr import _MESH, _TEXTURE

    at = full.index(_TEXTURE)
    assert humble == full[:at] + full[at + len(_TEXTURE):-len(_MESH)] + b"\x01\x00\x00\x00\x00" + b"\x00"
    assert deserialize_message(serialize_markers((1, 2), "cam", [spec, spec], (0, 5)), MarkerArray).markers[1].text == "xyz"
