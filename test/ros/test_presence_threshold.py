"""One presence threshold, the model's (issue 17 d): the HumanArray, marker, REP-155 and overlay
builders have no threshold of their own (they used to default to 0.5 while the shipped model's
ModelSpec says 0.8), and a keypoint at presence 0.6 under a ModelSpec threshold of 0.8 is absent
in each of them."""
import inspect
import os

import numpy as np
import pytest
from probpose_msgs.msg import HumanArray
from rclpy.serialization import deserialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from probpose_core.keypoints import INDEX, NAMES
from probpose_core.overlay import draw_humans, draw_pose
from probpose_core.results import Human, Keypoint
from probpose_core.spec import ModelSpec
from probpose_ros.markers import humans_to_markers
from probpose_ros.messages import serialize_humans

SPEC = ModelSpec(presence_threshold=0.8)
SHOULDER = INDEX["left_shoulder"]
SQUARE = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=np.float64)


def header():
    h = Header(frame_id="cam")
    h.stamp.sec = 3
    return h


def make_human():
    """Every keypoint at presence 0.9 with a region, except the left shoulder at 0.6."""
    kps = [Keypoint(name=n, x=100.0 + 10 * k, y=200.0 + 5 * k, presence=0.6 if k == SHOULDER else 0.9,
                    visibility=0.5, oks_quality=0.5, regions={0.5: [SQUARE + 10 * k]}) for k, n in enumerate(NAMES)]
    return Human(bbox=(90.0, 180.0, 200.0, 120.0), score=0.9, keypoints=kps, id=4, box_score=0.9)


def _rep155():
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        import hri_msgs.msg  # noqa: F401
    else:
        pytest.importorskip("hri_msgs.msg", reason="hri_msgs is not built: run `make ros`")
    from probpose_ros import rep155

    return rep155


def test_no_builder_has_a_threshold_of_its_own():
    builders = [(serialize_humans, "presence_threshold"), (humans_to_markers, "presence_threshold"),
                (draw_pose, "threshold"), (draw_humans, "threshold")]
    builders.append((_rep155().Rep155Publisher.__init__, "presence_threshold"))
    for builder, name in builders:
        assert inspect.signature(builder).parameters[name].default is inspect.Parameter.empty, builder.__qualname__
    with pytest.raises(TypeError, match="presence_threshold"):
        serialize_humans([make_human()], header(), (640, 480))
    with pytest.raises(TypeError, match="presence_threshold"):
        humans_to_markers([make_human()], header())


def test_the_message_carries_the_models_threshold():
    msg = deserialize_message(serialize_humans([make_human()], header(), (640, 480),
                                               presence_threshold=SPEC.presence_threshold), HumanArray)
    assert msg.presence_threshold == pytest.approx(0.8)
    shoulder = msg.humans[0].keypoints[SHOULDER]
    assert shoulder.presence < msg.presence_threshold  # so a subscriber reads it as absent


def test_markers_draw_no_limb_or_region_of_a_keypoint_below_the_models_threshold():
    array = deserialize_message(humans_to_markers([make_human()], header(), SPEC.presence_threshold, pixel_size=1.0),
                                MarkerArray)
    (skeleton,) = [m for m in array.markers if m.ns == "skeleton"]
    region_points = [p for m in array.markers if m.ns.startswith("regions/") for p in m.points]
    shoulder = (100.0 + 10 * SHOULDER, 200.0 + 5 * SHOULDER)
    assert shoulder not in {(p.x, p.y) for p in skeleton.points}
    corner = 10.0 * SHOULDER  # its region: SQUARE + 10 k
    in_shoulder_region = [corner <= p.x <= corner + 4 and corner <= p.y <= corner + 4 for p in region_points]
    assert len(region_points) == 2 * 4 * (len(NAMES) - 1) and not any(in_shoulder_region)
    at_half = deserialize_message(humans_to_markers([make_human()], header(), 0.5, pixel_size=1.0),  # the old default
                                  MarkerArray)
    (skeleton,) = [m for m in at_half.markers if m.ns == "skeleton"]
    assert shoulder in {(p.x, p.y) for p in skeleton.points}


class _Publisher:
    def __init__(self, topic):
        self.topic, self.sent = topic, []

    def publish(self, msg):
        self.sent.append(msg)


class _Node:
    """Just enough of an rclpy node for Rep155Publisher: publishers that record what they send."""

    def __init__(self):
        self.publishers = {}

    def create_publisher(self, msg_type, topic, qos, **kw):
        return self.publishers.setdefault(topic, _Publisher(topic))

    def destroy_publisher(self, publisher):
        self.publishers.pop(publisher.topic, None)


def test_rep155_skeleton_leaves_out_a_keypoint_below_the_models_threshold():
    rep155 = _rep155()
    node = _Node()
    publisher = rep155.Rep155Publisher(node, presence_threshold=SPEC.presence_threshold, id_prefix="b")
    publisher.publish([make_human()], header(), (640, 480))
    (skeleton_pub,) = [p for topic, p in node.publishers.items() if topic.endswith("/skeleton2d")]
    points = skeleton_pub.sent[-1].skeleton
    left_shoulder = [i for i, (name, _) in enumerate(rep155.SKELETON2D_POINTS) if "LEFT_SHOULDER" in name.upper()]
    assert left_shoulder and all((points[i].x, points[i].y, points[i].c) == (0.0, 0.0, 0.0) for i in left_shoulder)
    assert any(p.c > 0 for p in points)  # the present keypoints are there
