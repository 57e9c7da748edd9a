"""probpose_ros.cdr: its bytes against rclpy's own serialisation of the message objects."""
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from probpose_msgs.msg import HumanArray
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.keypoints import NAMES
from probpose_core.results import Human, Keypoint
from probpose_ros import cdr
from probpose_ros.markers import marker_data, markers_to_msg
from probpose_ros.messages import humans_to_data, humans_to_msg, sample_humans


def header(sec=12, nanosec=345, frame="camera_optical"):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def assert_same_message(cls, data, msg):
    """The writer's bytes == rclpy's bytes (but for padding), and both read back equal."""
    ours, theirs = cdr.encode(cls, data), serialize_message(msg)
    assert cdr.same_bytes(cls, data, theirs)
    assert deserialize_message(ours, cls) == deserialize_message(theirs, cls)


unit = st.floats(0, 1, allow_nan=False)
names = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=300)


@st.composite
def humans_strategy(draw):
    """0..6 people: hypothesis draws the structure (counts, names, value scale), a seeded
    generator the bulk of the numbers; regions of 1..8 points at 0.5, at 0.9, or none."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([1.0, 640.0, 1e5]))
    people = []
    for _ in range(draw(st.integers(0, 6))):
        odd_name = draw(names)
        kps = []
        for k in range(len(NAMES)):
            polys = [rng.normal(0, scale, (m, 2)) for m in rng.integers(1, 9, rng.integers(0, 3))]
            x, y = rng.normal(0, scale, 2)
            presence, visibility, oks = rng.choice([0.0, 0.5, 1.0, rng.random()], 3)
            kps.append(Keypoint(name=odd_name if k == 0 else NAMES[k], x=x, y=y, presence=presence,
                                visibility=visibility, oks_quality=oks, covariance=rng.normal(0, scale, (2, 2)),
                                regions={float(rng.choice([0.5, 0.5, 0.9])): polys} if polys else {}))
        score = draw(unit)
        people.append(Human(bbox=tuple(rng.normal(0, scale, 4)), score=score, keypoints=kps, box_score=score))
    return people


@settings(max_examples=40, deadline=None)
@given(humans_strategy(), st.sampled_from([0.5, None, 0.9]), unit, names,
       st.integers(0, 2**31 - 1), st.integers(0, 10**9 - 1), st.integers(0, 10_000))
def test_human_array_bytes(humans, level, threshold, model_id, sec, nanosec, width):
    args = (humans, header(sec, nanosec, model_id[:20]), (width, 480), model_id, threshold, level, 0.0123)
    assert_same_message(HumanArray, humans_to_data(*args), humans_to_msg(*args))


@settings(max_examples=40, deadline=None)
@given(humans_strategy(), st.sampled_from([0.5, None, 0.9]), unit, st.floats(1e-4, 0.01),
       st.floats(0, 5), st.booleans())
def test_marker_array_bytes(humans, level, threshold, pixel_size, lifetime, clear):
    data = marker_data(humans, header(), threshold, level, pixel_size=pixel_size, lifetime=lifetime, clear=clear)
    assert_same_message(MarkerArray, {"markers": data}, markers_to_msg(data))


def test_the_self_check_sample_covers_every_case_and_passes():
    humans = sample_humans()
    sizes = {len(p) for h in humans for k in h.keypoints for polys in k.regions.values() for p in polys}
    assert sizes == {1, 2, 3, 4}
    args = (humans, header(), (640, 480), "m", 0.5, 0.5, 0.25)
    assert cdr.self_check(HumanArray, humans_to_data(*args), humans_to_msg(*args)) is None
    data = marker_data(humans, header(), 0.5, 0.5)
    assert {m.get("ns") for m in data} == {None, "keypoints", "skeleton", "regions", "boxes", "ids"}
    assert cdr.self_check(MarkerArray, {"markers": data}, markers_to_msg(data)) is None
    other = humans_to_msg(*args)
    other.humans[1].keypoints[5].x += 1.0
    assert "differ" in cdr.self_check(HumanArray, humans_to_data(*args), other)
    assert "ValueError" in cdr.self_check(HumanArray, {"humans": [{"bbox": [1.0]}]}, other)


def test_every_marker_field_written_from_plain_data():
    """Fields the node leaves at their defaults (texture, uv_coordinates, mesh_file) are laid out right too."""
    from geometry_msgs.msg import Point
    from std_msgs.msg import ColorRGBA
    from visualization_msgs.msg import UVCoordinate

    m = Marker(ns="n\u00e9", id=-3, type=Marker.TRIANGLE_LIST, text="abc", mesh_resource="package://x.dae",
               texture_resource="embedded://t", frame_locked=True, mesh_use_embedded_materials=True)
    m.header.frame_id, m.header.stamp.sec = "odd", -5
    m.points = [Point(x=1.0, y=2.0, z=3.0), Point(x=-1.0, y=0.5, z=1e-300)]
    m.colors = [ColorRGBA(r=0.125, g=0.25, b=0.375, a=0.5)]  # float32-exact
    m.texture.format, m.texture.data = "png", bytes(range(7))
    m.uv_coordinates = [UVCoordinate(u=0.25, v=0.75)] * 3
    m.mesh_file.filename, m.mesh_file.data = "a.stl", b"\x01\x02\x03"
    m.lifetime.sec, m.lifetime.nanosec = 3, 7
    data = cdr.plain(m)
    assert data["pose"] == (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) and data["points"].shape == (6,)
    assert_same_message(Marker, data, m)
    assert deserialize_message(cdr.encode(Marker, data), Marker) == m  # float32-exact values: equal


@pytest.mark.parametrize("cls_path", ["visualization_msgs.msg.Marker", "visualization_msgs.msg.MarkerArray",
                                      "probpose_msgs.msg.HumanArray", "probpose_msgs.msg.Human",
                                      "sensor_msgs.msg.Image", "sensor_msgs.msg.CompressedImage",
                                      "diagnostic_msgs.msg.DiagnosticArray", "geometry_msgs.msg.PoseStamped"])
def test_defaults_of_the_message_class(cls_path):
    module, name = cls_path.rsplit(".", 1)
    cls = getattr(__import__(module, fromlist=[name]), name)
    assert_same_message(cls, {}, cls())


def test_padding_mask_and_a_changed_byte():
    data = cdr.plain(MarkerArray(markers=[Marker(ns="abc", text="hi")]))
    zero, ones = cdr.encode(MarkerArray, data), cdr.encode(MarkerArray, data, fill=255)
    mask = cdr.padding_mask(MarkerArray, data)
    # 4 + 225 bytes; before ns, points, texture.header.stamp, texture.format, texture.data, mesh_file.filename
    # and mesh_file.data 3 padding bytes each (after 1-byte NULs / a bool), before mesh_resource 1 ("hi\0" ends at 203)
    assert mask.shape == (len(zero),) == (229,) and mask.sum() == 7 * 3 + 1
    assert (np.frombuffer(zero, np.uint8)[mask] == 0).all() and (np.frombuffer(ones, np.uint8)[mask] == 255).all()
    assert cdr.same_bytes(MarkerArray, data, ones)  # padding may hold anything
    changed = bytearray(zero)
    changed[int(np.flatnonzero(~mask)[-1])] ^= 1
    assert not cdr.same_bytes(MarkerArray, data, bytes(changed))
    assert not cdr.same_bytes(MarkerArray, data, zero + b"\x00")


def test_bad_plain_data_and_unsupported_types():
    from probpose_msgs.msg import Human as HumanMsg
    from rosidl_parser.definition import UnboundedWString

    with pytest.raises(ValueError, match="bbox"):
        cdr.encode(HumanMsg, {"bbox": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="keypoints"):
        cdr.encode(HumanMsg, {"keypoints": [{}] * 16})
    with pytest.raises(ValueError, match="points"):
        cdr.encode(Marker, {"points": np.zeros(4)})

    class Wide:
        SLOT_TYPES = (UnboundedWString(),)

        @classmethod
        def get_fields_and_field_types(cls):
            return {"w": "wstring"}

    with pytest.raises(cdr.Unsupported, match="'w'"):
        cdr.layout(Wide)


def test_subscribers_receive_the_published_bytes_as_the_message(ros_node):
    """Publishing the writer's bytes over DDS gives a subscriber the same message as publishing the objects."""
    humans = sample_humans()
    args = (humans, header(), (640, 480), "model", 0.5, 0.5, 0.25)
    got, arrived = [], threading.Event()

    def keep(msg):
        got.append(msg)
        if len(got) == 2:
            arrived.set()

    ros_node.create_subscription(HumanArray, "cdr_check", keep, 10)
    pub = ros_node.create_publisher(HumanArray, "cdr_check", 10)
    for _ in range(100):
        if pub.get_subscription_count():
            break
        threading.Event().wait(0.05)
    pub.publish(cdr.encode(HumanArray, humans_to_data(*args)))
    pub.publish(humans_to_msg(*args))
    assert arrived.wait(10.0), f"{len(got)} of 2 messages arrived"
    # both arrivals serialise to the writer's bytes (but for padding): the same message (== fails on its NaN)
    assert all(cdr.same_bytes(HumanArray, humans_to_data(*args), serialize_message(msg)) for msg in got)
    assert np.isnan(got[0].humans[0].keypoints[3].covariance).all() and got[0].model_id == "model"
