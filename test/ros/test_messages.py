"""probpose_ros.messages with the real rclpy message classes (and their real serialisation)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from probpose_msgs.msg import HumanArray
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from probpose_core.keypoints import NAMES
from probpose_core.results import Human, Keypoint
from probpose_ros.image_conversion import msg_to_rgb, rgb_to_fields
from probpose_ros.messages import copy_header, image_msg_canvas, msg_to_humans, order_humans, serialize_humans

SQUARE = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], dtype=np.float64)  # area 100
TRIANGLE = np.array([[0, 0], [2, 0], [0, 2]], dtype=np.float64)             # area 2


def header(sec=1234, nanosec=567, frame="camera_optical"):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def make_human(box_score=0.9, presence=0.8, offset=0.0, regions=None, cov=((4.0, 1.0), (2.0, 9.0))):
    kps = []
    for k, name in enumerate(NAMES):
        kp_regions = {0.5: [TRIANGLE + k, SQUARE + k], 0.9: [SQUARE * 2]} if regions is None else regions
        kps.append(Keypoint(name=name, x=10.0 + k + offset, y=20.0 + 2 * k, presence=presence,
                            visibility=0.25 + k / 100, oks_quality=0.5 + k / 100,
                            covariance=np.array(cov, dtype=np.float64), regions=kp_regions))
    return Human(bbox=(5.0 + offset, 6.0, 70.0, 140.0), score=0.42, keypoints=kps, box_score=box_score)


def roundtrip(msg):
    """Through the real CDR serialisation, as a subscriber would get it."""
    return deserialize_message(serialize_message(msg), type(msg))


def humans_to_msg(*args, **kwargs) -> HumanArray:
    """serialize_humans' bytes read back by rclpy's own deserialiser, as a subscriber gets them."""
    return deserialize_message(serialize_humans(*args, **kwargs), HumanArray)


def test_every_field_of_the_array():
    src = header()
    humans = [make_human(box_score=0.6, offset=1.0), make_human(box_score=0.95, offset=2.0)]
    humans[0].id = 7  # a track id; the other one is untracked (None -> 0)
    msg = humans_to_msg(humans, src, (640, 480), model_id="cnn-tiny@abc", presence_threshold=0.45,
                        credible_level=0.5, processing_latency=0.0125)
    assert isinstance(msg, HumanArray)
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id) == (1234, 567, "camera_optical")
    assert (msg.image_width, msg.image_height) == (640, 480)
    assert msg.model_id == "cnn-tiny@abc"
    assert msg.presence_threshold == pytest.approx(0.45)
    assert msg.processing_latency == pytest.approx(0.0125)
    # highest detection score first; id = the track id, 0 = untracked
    assert [h.id for h in msg.humans] == [0, 7]
    assert [h.score for h in msg.humans] == pytest.approx([0.95, 0.6])
    np.testing.assert_allclose(msg.humans[0].bbox, [7.0, 6.0, 70.0, 140.0])
    kps = msg.humans[0].keypoints
    assert len(kps) == 17 and [k.name for k in kps] == list(NAMES)
    for k, kp in enumerate(kps):
        assert (kp.x, kp.y) == pytest.approx((12.0 + k, 20.0 + 2 * k))
        assert kp.presence == pytest.approx(0.8)
        assert kp.visibility == pytest.approx(0.25 + k / 100)
        assert kp.oks_quality == pytest.approx(0.5 + k / 100)
        np.testing.assert_allclose(kp.covariance, [4.0, 1.0, 2.0, 9.0])  # row-major
        assert kp.credible_level == pytest.approx(0.5)
        # only the published level, largest part first, z = 0
        assert len(kp.credible_region) == 2
        first, second = ([[p.x, p.y, p.z] for p in poly.points] for poly in kp.credible_region)
        np.testing.assert_allclose(first, np.c_[SQUARE + k, np.zeros(4)])
        np.testing.assert_allclose(second, np.c_[TRIANGLE + k, np.zeros(3)])


def test_header_is_a_copy():
    src = header(sec=7)
    msg = humans_to_msg([make_human()], src, (64, 48), presence_threshold=0.5)
    src.stamp.sec, src.frame_id = 99, "other"
    assert (msg.header.stamp.sec, msg.header.frame_id) == (7, "camera_optical")
    assert copy_header(src) is not src and copy_header(src) == src


def test_other_levels_and_disabled_regions():
    assert all(not k.credible_region and k.credible_level == pytest.approx(0.9)
               for k in humans_to_msg([make_human(regions={0.5: [SQUARE]})], header(), (64, 48), presence_threshold=0.5,
                                      credible_level=0.9).humans[0].keypoints)
    msg = humans_to_msg([make_human()], header(), (64, 48), presence_threshold=0.5, credible_level=None)
    assert all(k.credible_level == 0.0 and not k.credible_region for k in msg.humans[0].keypoints)
    # a level written with float noise (e.g. read back from JSON) still matches
    msg = humans_to_msg([make_human(regions={0.5000000001: [SQUARE]})], header(), (64, 48), presence_threshold=0.5,
                        credible_level=0.5)
    assert len(msg.humans[0].keypoints[0].credible_region) == 1


def test_missing_covariance_stays_nan_and_empty_list():
    msg = humans_to_msg([make_human(cov=np.full((2, 2), np.nan))], header(), (64, 48), presence_threshold=0.5)
    assert np.isnan(msg.humans[0].keypoints[3].covariance).all()
    empty = humans_to_msg([], header(), (64, 48), presence_threshold=0.5, processing_latency=0.002)
    assert list(empty.humans) == [] and empty.image_width == 64


def test_wrong_keypoint_count_is_refused():
    h = make_human()
    h.keypoints = h.keypoints[:5]
    with pytest.raises(ValueError, match="5 keypoints"):
        humans_to_msg([h], header(), (64, 48), presence_threshold=0.5)


def test_order_is_stable_for_equal_scores():
    a, b = make_human(box_score=0.5, offset=1), make_human(box_score=0.5, offset=2)
    assert order_humans([a, b]) == [a, b]


finite = st.floats(-1e4, 1e4, allow_nan=False, width=32)
unit = st.floats(0, 1, allow_nan=False, width=32)


@st.composite
def humans_strategy(draw):
    out = []
    for _ in range(draw(st.integers(0, 3))):
        kps = []
        for name in NAMES:
            cov = np.array(draw(st.lists(finite, min_size=4, max_size=4)), dtype=np.float64).reshape(2, 2)
            n_pts = draw(st.integers(0, 5))
            coords = draw(st.lists(finite, min_size=2 * n_pts, max_size=2 * n_pts))
            polys = [np.array(coords).reshape(-1, 2)] if n_pts else []
            kps.append(Keypoint(name=name, x=draw(finite), y=draw(finite), presence=draw(unit),
                                visibility=draw(unit), oks_quality=draw(unit), covariance=cov,
                                regions={0.5: polys} if polys else {}))
        box_score = draw(unit)
        out.append(Human(bbox=tuple(draw(st.lists(finite, min_size=4, max_size=4))), score=box_score,
                         keypoints=kps, box_score=box_score, id=draw(st.none() | st.integers(1, 2**32 - 1))))
    return out


@settings(max_examples=25, deadline=None)
@given(humans_strategy())
def test_round_trip_through_serialisation(humans):
    back = msg_to_humans(humans_to_msg(humans, header(), (640, 480), presence_threshold=0.5))
    expected = order_humans(humans)
    assert len(back) == len(expected)
    for b, h in zip(back, expected):
        assert b.id == h.id and b.box_score == b.score == h.box_score  # float32-exact inputs
        assert b.bbox == h.bbox
        for kb, kh in zip(b.keypoints, h.keypoints):
            assert (kb.name, kb.x, kb.y, kb.presence, kb.visibility, kb.oks_quality) == \
                   (kh.name, kh.x, kh.y, kh.presence, kh.visibility, kh.oks_quality)
            np.testing.assert_array_equal(kb.covariance, kh.covariance)
            assert kb.regions.keys() == kh.regions.keys()
            for q in kh.regions:
                assert math.isclose(q, 0.5)
                np.testing.assert_array_equal(kb.regions[q][0], kh.regions[q][0])


def reference_msg(humans, src, image_size, model_id, threshold, level, latency) -> HumanArray:
    """The same HumanArray built the way rclpy users do, one message object per field."""
    from geometry_msgs.msg import Point32, Polygon
    from probpose_msgs.msg import Human as HumanMsg
    from probpose_msgs.msg import Keypoint as KeypointMsg

    from probpose_ros.messages import published_regions

    people = [HumanMsg(id=0 if h.id is None else h.id, score=float(h.box_score),
                       bbox=np.array(h.bbox, dtype=np.float32),
                       keypoints=[KeypointMsg(name=k.name, x=float(k.x), y=float(k.y), presence=float(k.presence),
                                              visibility=float(k.visibility), oks_quality=float(k.oks_quality),
                                              covariance=np.array(k.covariance, dtype=np.float32).reshape(4),
                                              credible_level=float(level or 0.0),
                                              credible_region=[Polygon(points=[Point32(x=x, y=y) for x, y in p.tolist()])
                                                               for p in published_regions(k, level or 0.0)])
                                  for k in h.keypoints])
              for h in order_humans(humans)]
    return HumanArray(header=copy_header(src), image_width=image_size[0], image_height=image_size[1],
                      model_id=model_id, presence_threshold=threshold, humans=people, processing_latency=latency)


@settings(max_examples=40, deadline=None)
@given(humans_strategy(), st.text(max_size=9), st.text(max_size=9), st.sampled_from([None, 0.5, 0.9]),
       st.sampled_from(["", "x", "a_custom_name"]), unit)
def test_bytes_read_back_as_the_message_rclpy_builds(humans, frame_id, model_id, level, custom_name, latency):
    """Every field, NaN covariances and strings of every length included (their padding), equals
    the object-built message after rclpy's own serialisation, and the sizes agree."""
    if humans and custom_name:
        humans[0].keypoints[3].name = custom_name  # a name outside the precomputed COCO ones
    if humans:
        humans[-1].keypoints[5].covariance = np.full((2, 2), np.nan)  # no covariance: NaN, as published
    src = header(frame=frame_id)
    data = serialize_humans(humans, src, (640, 480), model_id=model_id, presence_threshold=0.65,
                            credible_level=level, processing_latency=latency)
    expected = reference_msg(humans, src, (640, 480), model_id, 0.65, level, latency)
    assert len(data) == len(serialize_message(expected))
    assert repr(deserialize_message(data, HumanArray)) == repr(roundtrip(expected))  # repr: NaN equals NaN


def test_annotated_image_message_and_its_canvas():
    rgb = np.random.default_rng(1).integers(0, 256, (7, 10, 3), dtype=np.uint8)
    msg, canvas = image_msg_canvas(rgb, header(sec=3))
    back = roundtrip(msg)
    assert isinstance(back, Image)
    assert (back.height, back.width, back.encoding, back.step, back.header.stamp.sec) == (7, 10, "rgb8", 30, 3)
    np.testing.assert_array_equal(msg_to_rgb(back), rgb)
    canvas[2:4, 5] = (1, 2, 3)  # drawing on the canvas is drawing on the message, not on the frame
    expected = rgb.copy()
    expected[2:4, 5] = (1, 2, 3)
    np.testing.assert_array_equal(msg_to_rgb(roundtrip(msg)), expected)
    assert not (rgb[2:4, 5] == (1, 2, 3)).all(axis=1).any()


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_annotated_image_never_draws_on_the_received_message(encoding):
    """rgb8 frames are read-only views of the received message; the canvas is always a copy."""
    import array
    import types

    rgb = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)
    fields = rgb_to_fields(rgb, encoding)
    received = types.SimpleNamespace(**dict(fields, data=array.array("B", fields["data"])))
    before = bytes(received.data)
    frame = msg_to_rgb(received)
    _, canvas = image_msg_canvas(frame, header())
    canvas[:] = 7
    assert bytes(received.data) == before
    np.testing.assert_array_equal(frame, rgb)


def test_message_like_copies_the_template_and_sets_the_fields():
    """message_like: the fields given are set, the rest equal the template's, the template is untouched;
    the result equals the message the constructor builds (what humans_to_msg publishes per person)."""
    from probpose_msgs.msg import Human as HumanMsg
    from probpose_msgs.msg import Keypoint as KeypointMsg

    from probpose_ros.messages import message_like

    template = HumanMsg()
    keypoints = [KeypointMsg(name=n, x=float(k)) for k, n in enumerate(NAMES)]
    bbox = np.array([1, 2, 3, 4], dtype=np.float32)
    made = message_like(template, id=7, score=0.5, bbox=bbox, keypoints=keypoints)
    assert made == HumanMsg(id=7, score=0.5, bbox=bbox, keypoints=keypoints)
    assert template == HumanMsg() and made is not template
    assert deserialize_message(serialize_message(made), HumanMsg) == made
