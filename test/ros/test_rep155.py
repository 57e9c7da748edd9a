"""probpose_ros.rep155: the REP-155 conversions with the real hri_msgs classes, and the
publisher over real DDS (a node in its own context -> the probe's participant)."""
import math
import os
import random
import threading

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from probpose_core.keypoints import INDEX, NAMES
from probpose_core.results import Human, Keypoint

if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
    import hri_msgs.msg  # noqa: F401  (CI: `make ros` builds the fallback, a missing one is an error)
else:
    pytest.importorskip("hri_msgs.msg", reason="hri_msgs is not built: run `make ros`")
from hri_msgs.msg import IdsList, NormalizedRegionOfInterest2D, Skeleton2D  # noqa: E402

from probpose_ros import rep155  # noqa: E402

W, H = 640, 480


def header(sec=7, nanosec=250, frame="camera_optical"):
    h = Header(frame_id=frame)
    h.stamp.sec, h.stamp.nanosec = sec, nanosec
    return h


def make_human(track_id=None, dx=0.0, presence=0.9, bbox=(100.0, 50.0, 200.0, 400.0), box_score=0.8):
    """Keypoint k at (200 + 10 k + dx, 60 + 20 k): every point distinct and inside 640x480."""
    kps = [Keypoint(name=name, x=200.0 + 10 * k + dx, y=60.0 + 20 * k, presence=presence - 0.01 * k,
                    visibility=0.5, oks_quality=0.5) for k, name in enumerate(NAMES)]
    return Human(bbox=bbox, score=0.5, keypoints=kps, id=track_id, box_score=box_score)


def roundtrip(msg):
    return deserialize_message(serialize_message(msg), type(msg))


# ---------------------------------------------------------------- pure conversions


def test_point_order_is_the_message_constants():
    constants = {a: getattr(Skeleton2D, a) for a in dir(Skeleton2D) if a.isupper() and a != "SLOT_TYPES"}
    assert len(constants) == 18 == len(rep155.SKELETON2D_POINTS) == len(Skeleton2D().skeleton)
    assert {name: i for i, (name, _) in enumerate(rep155.SKELETON2D_POINTS)} == constants
    assert rep155.NECK == Skeleton2D.NECK


def test_points_come_from_the_right_coco_keypoints():
    pts = rep155.skeleton_points(make_human(), (W, H), presence_threshold=0.5)
    assert pts.shape == (18, 3)

    def expected(coco_index):
        return [(200 + 10 * coco_index) / W, (60 + 20 * coco_index) / H, 0.9 - 0.01 * coco_index]

    # written out by hand (the message's eyes/ears are left-first, unlike OpenPose's own list)
    for point, coco in [(Skeleton2D.NOSE, 0), (Skeleton2D.LEFT_EYE, 1), (Skeleton2D.RIGHT_EYE, 2),
                        (Skeleton2D.LEFT_EAR, 3), (Skeleton2D.RIGHT_EAR, 4), (Skeleton2D.LEFT_SHOULDER, 5),
                        (Skeleton2D.RIGHT_SHOULDER, 6), (Skeleton2D.LEFT_ELBOW, 7), (Skeleton2D.RIGHT_ELBOW, 8),
                        (Skeleton2D.LEFT_WRIST, 9), (Skeleton2D.RIGHT_WRIST, 10), (Skeleton2D.LEFT_HIP, 11),
                        (Skeleton2D.RIGHT_HIP, 12), (Skeleton2D.LEFT_KNEE, 13), (Skeleton2D.RIGHT_KNEE, 14),
                        (Skeleton2D.LEFT_ANKLE, 15), (Skeleton2D.RIGHT_ANKLE, 16)]:
        np.testing.assert_allclose(pts[point], expected(coco), err_msg=f"point {point}")


def test_neck_is_the_shoulder_midpoint_with_the_weaker_confidence():
    h = make_human()
    ls, rs = h.keypoints[INDEX["left_shoulder"]], h.keypoints[INDEX["right_shoulder"]]
    ls.x, ls.y, ls.presence = 100.0, 200.0, 0.95
    rs.x, rs.y, rs.presence = 300.0, 220.0, 0.7
    neck = rep155.skeleton_points(h, (400, 400), 0.5)[Skeleton2D.NECK]
    np.testing.assert_allclose(neck, [0.5, 0.525, 0.7])


@pytest.mark.parametrize("change", ["absent", "nan", "left_of_image", "below_image"])
def test_neck_needs_both_shoulders(change):
    h = make_human()
    rs = h.keypoints[INDEX["right_shoulder"]]
    if change == "absent":
        rs.presence = 0.3
    elif change == "nan":
        rs.x = math.nan
    elif change == "left_of_image":
        rs.x = -3.0
    else:
        rs.y = H + 1.0
    pts = rep155.skeleton_points(h, (W, H), 0.5)
    assert pts[Skeleton2D.NECK].tolist() == [0.0, 0.0, 0.0]
    assert pts[Skeleton2D.RIGHT_SHOULDER].tolist() == [0.0, 0.0, 0.0]
    assert pts[Skeleton2D.LEFT_SHOULDER][2] > 0.5  # the other shoulder is untouched


def test_normalisation_by_width_and_height():
    h = make_human()
    nose = h.keypoints[INDEX["nose"]]
    nose.x, nose.y = 1280.0, 180.0
    pts = rep155.skeleton_points(h, (1920, 360), 0.5)
    np.testing.assert_allclose(pts[Skeleton2D.NOSE, :2], [1280 / 1920, 0.5])
    corner = h.keypoints[INDEX["left_ankle"]]
    corner.x, corner.y = 1920.0, 360.0  # the image's far corner is still in the image
    np.testing.assert_allclose(rep155.skeleton_points(h, (1920, 360), 0.5)[Skeleton2D.LEFT_ANKLE, :2], [1.0, 1.0])


def test_absent_and_outside_points_are_zero_and_the_rest_in_the_unit_square():
    rng = np.random.default_rng(3)
    for _ in range(200):
        h = make_human()
        for kp in h.keypoints:
            kp.x, kp.y = rng.uniform(-100, W + 100), rng.uniform(-100, H + 100)
            kp.presence = rng.uniform(0, 1)
        pts = rep155.skeleton_points(h, (W, H), 0.45)
        for (name, coco), (x, y, c) in zip(rep155.SKELETON2D_POINTS, pts):
            if coco is None:
                continue
            kp = h.keypoints[INDEX[coco]]
            visible = kp.presence >= 0.45 and 0 <= kp.x <= W and 0 <= kp.y <= H
            if visible:
                assert (x, y, c) == pytest.approx((kp.x / W, kp.y / H, kp.presence)), name
            else:
                assert (x, y, c) == (0.0, 0.0, 0.0), name
        assert ((pts[:, :2] >= 0) & (pts[:, :2] <= 1)).all() and ((pts[:, 2] >= 0) & (pts[:, 2] <= 1)).all()


def test_roi_is_the_normalised_box_clipped_with_the_detector_confidence():
    box = rep155.roi_box(make_human(bbox=(64.0, 48.0, 128.0, 96.0), box_score=0.66), (W, H))
    np.testing.assert_allclose(box, [0.1, 0.1, 0.3, 0.3, 0.66])
    box = rep155.roi_box(make_human(bbox=(-20.0, 400.0, 700.0, 200.0)), (W, H))
    np.testing.assert_allclose(box[:4], [0.0, 400 / H, 1.0, 1.0])


def test_body_ids_are_ros_name_tokens():
    assert rep155.body_id(12, "kqzx") == "kqzx12"
    prefix = rep155.random_prefix(random.Random(1))
    assert len(prefix) == 4 and prefix.isalpha() and prefix.islower()
    for bad in ("", "1a", "a-b", "a b"):
        with pytest.raises(ValueError):
            rep155.body_id(3, bad)


def test_messages_survive_serialisation():
    h = make_human(track_id=4)
    hd = header()
    sk = roundtrip(rep155.skeleton_msg(h, hd, (W, H), 0.5))
    assert (sk.header.stamp.sec, sk.header.stamp.nanosec, sk.header.frame_id) == (7, 250, "camera_optical")
    got = np.array([[p.x, p.y, p.c] for p in sk.skeleton])
    np.testing.assert_allclose(got, rep155.skeleton_points(h, (W, H), 0.5), atol=1e-6)  # float32 on the wire
    roi = roundtrip(rep155.roi_msg(h, hd, (W, H)))
    assert isinstance(roi, NormalizedRegionOfInterest2D) and roi.header.frame_id == "camera_optical"
    np.testing.assert_allclose([roi.xmin, roi.ymin, roi.xmax, roi.ymax, roi.c], rep155.roi_box(h, (W, H)), atol=1e-6)
    ids = roundtrip(rep155.ids_msg(["ab1", "ab7"], hd))
    assert list(ids.ids) == ["ab1", "ab7"] and ids.header.stamp.sec == 7


# ---------------------------------------------------------------- over DDS


def _stamp(msg) -> int:
    return msg.header.stamp.sec


def test_publisher_over_dds(domain, probe):
    """Bodies appear, vanish, reappear; untracked people are left out; a real subscriber
    participant receives tracked lists and skeletons; vanished bodies' publishers are gone."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    latched = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    probe.subscribe(IdsList, "/humans/bodies/tracked", latched)
    for bid in ("pt1", "pt2"):
        probe.subscribe(Skeleton2D, f"/humans/bodies/{bid}/skeleton2d", latched)
        probe.subscribe(NormalizedRegionOfInterest2D, f"/humans/bodies/{bid}/roi", latched)

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("rep155_test", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        rep = rep155.Rep155Publisher(node, presence_threshold=0.5, id_prefix="pt")
        assert probe.wait_for(lambda: rep.tracked_pub.get_subscription_count() >= 1), "probe never matched"

        a, b = make_human(track_id=1), make_human(track_id=2, dx=150.0, bbox=(300.0, 40.0, 180.0, 420.0))
        untracked = make_human(track_id=None, dx=-100.0)
        frames = [[a, b], [b, a], [a], [a, untracked], [], [a]]
        expect_ids = [["pt1", "pt2"], ["pt2", "pt1"], ["pt1"], ["pt1"], [], ["pt1"]]

        def local_topics():
            return {t for t, _ in node.get_publisher_names_and_types_by_node("rep155_test", "/")}

        for i, people in enumerate(frames):
            assert rep.publish(people, header(sec=i), (W, H)) == expect_ids[i]
            assert probe.wait_for(lambda: i in [_stamp(m) for m in probe.messages("/humans/bodies/tracked")]), \
                f"frame {i}: no tracked list"
            for bid in expect_ids[i]:
                topic = f"/humans/bodies/{bid}/skeleton2d"
                assert probe.wait_for(lambda: i in [_stamp(m) for m in probe.messages(topic)]), \
                    f"frame {i}: no skeleton of {bid}"
            assert set(rep.bodies) == set(expect_ids[i])
            # rclpy destroys a publisher once the executor's wait set lets go of it: wait a little
            wanted = {f"/humans/bodies/{bid}/{leaf}" for bid in expect_ids[i] for leaf in ("skeleton2d", "roi")}
            assert probe.wait_for(lambda: {t for t in local_topics() if t.startswith("/humans/bodies/pt")} == wanted,
                                  timeout=5.0), (i, local_topics())
            if i == 2:  # b vanished: the subscriber's graph loses its publishers too
                assert probe.wait_for(lambda: probe.node.count_publishers("/humans/bodies/pt2/skeleton2d") == 0
                                      and probe.node.count_publishers("/humans/bodies/pt2/roi") == 0)
                assert probe.node.count_publishers("/humans/bodies/pt1/skeleton2d") == 1

        tracked = {_stamp(m): list(m.ids) for m in probe.messages("/humans/bodies/tracked")}
        assert tracked == dict(enumerate(expect_ids))
        assert all(m.header.frame_id == "camera_optical" for m in probe.messages("/humans/bodies/tracked"))

        skeletons = {_stamp(m): m for m in probe.messages("/humans/bodies/pt2/skeleton2d")}
        assert set(skeletons) == {0, 1}  # b was tracked in frames 0 and 1 only
        got = np.array([[p.x, p.y, p.c] for p in skeletons[1].skeleton])
        np.testing.assert_allclose(got, rep155.skeleton_points(b, (W, H), 0.5), atol=1e-6)
        assert got[Skeleton2D.NECK, 2] > 0 and got[Skeleton2D.NOSE, 0] == pytest.approx(350 / W)
        assert {_stamp(m) for m in probe.messages("/humans/bodies/pt1/skeleton2d")} == {0, 1, 2, 3, 5}
        assert probe.wait_for(lambda: {_stamp(m) for m in probe.messages("/humans/bodies/pt1/roi")} >= {0, 1, 2, 3, 5})
        roi = next(m for m in probe.messages("/humans/bodies/pt1/roi") if _stamp(m) == 3)
        np.testing.assert_allclose([roi.xmin, roi.ymin, roi.xmax, roi.ymax, roi.c], rep155.roi_box(a, (W, H)),
                                   atol=1e-6)

        rep.close()
        assert probe.wait_for(lambda: not {t for t in local_topics() if t.startswith("/humans/")}, timeout=5.0), \
            local_topics()
    finally:
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
        spinner.join(timeout=5)


def test_a_body_lives_as_long_as_its_track_over_dds(domain, probe):
    """track_ids (the tracker's confirmed tracks): a body missed by this frame stays on
    ``tracked`` and keeps its publishers and latched messages; it goes when its track does."""
    import rclpy
    from ros_harness import Spun

    probe.subscribe(IdsList, "/humans/bodies/tracked")
    spun = Spun(domain)
    try:
        rep = rep155.Rep155Publisher(spun.spin(rclpy.create_node("rep155_live", context=spun.context)),
                                     presence_threshold=0.5, id_prefix="lv")
        assert probe.wait_for(lambda: rep.tracked_pub.get_subscription_count() >= 1), "probe never matched"
        a, b = make_human(track_id=1), make_human(track_id=2, dx=150.0)
        assert rep.publish([a, b], header(sec=0), (W, H), track_ids=[1, 2]) == ["lv1", "lv2"]
        publishers = dict(rep.bodies)
        assert rep.publish([a], header(sec=1), (W, H), track_ids=[1, 2]) == ["lv1", "lv2"]  # b missed
        assert rep.publish([b, a], header(sec=2), (W, H), track_ids=[1, 2]) == ["lv2", "lv1"]
        assert rep.bodies == publishers  # the same publishers: never destroyed and created again
        assert rep.publish([a], header(sec=3), (W, H), track_ids=[1]) == ["lv1"]  # b's track dropped
        assert set(rep.bodies) == {"lv1"} and rep.bodies["lv1"] == publishers["lv1"]
        assert rep.publish([], header(sec=4), (W, H), track_ids=[1, 7]) == ["lv1"]  # 7: never seen, no body
        assert probe.wait_for(lambda: len(probe.messages("/humans/bodies/tracked")) == 5)
        assert [list(m.ids) for m in probe.messages("/humans/bodies/tracked")] == [
            ["lv1", "lv2"], ["lv1", "lv2"], ["lv2", "lv1"], ["lv1"], ["lv1"]]
        rep.close()
    finally:
        spun.close()


class MissingDetector:
    """Stand-in detector: one full-frame person (score 0.9), except on the calls in ``misses``
    (1-based), where it finds nobody."""

    name = "missing"

    def __init__(self, misses):
        self.misses, self.calls = set(misses), 0

    def detect(self, frame):
        self.calls += 1
        if self.calls in self.misses:
            return np.zeros((0, 4)), np.zeros(0)
        h, w = frame.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h)]]), np.array([0.9])


def test_node_keeps_a_body_while_the_detector_misses_frames(domain, probe, tiny_model, monkeypatch):
    """Issue 19 D1: the node with a detector that misses frames 5, 8 and 11 of 12: the person's
    track lives on (track_max_misses 2), so /humans/bodies/tracked lists the body on every frame
    from its confirmation on and its publishers are created once (the old node destroyed them on
    each missed frame and created them again). Two misses in a row drop the track: the body
    goes, its publishers destroyed once."""
    from sensor_msgs.msg import Image
    from test_pose_node import InProcessNode

    from ros_harness import image_msg, sensor_qos, stamp_ns

    from probpose_msgs.msg import HumanArray
    from probpose_ros import pose_node

    monkeypatch.setattr(pose_node, "make_detector", lambda name, **kw: MissingDetector({5, 8, 11, 13, 14, 15}))
    probe.subscribe(HumanArray, "/humans/keypoints")
    probe.subscribe(IdsList, "/humans/bodies/tracked")
    pub = probe.node.create_publisher(Image, "/camera/image_raw", sensor_qos())
    node = InProcessNode(domain, model=str(tiny_model), image_topic="/camera/image_raw", rep155=True,
                         track_min_hits=3, track_max_misses=2, publish_markers=False, publish_annotated_image=False)
    made, destroyed = [], []
    create, destroy = node.node.create_publisher, node.node.destroy_publisher
    monkeypatch.setattr(node.node, "create_publisher", lambda t, topic, *a, **k: made.append(topic) or create(
        t, topic, *a, **k))
    monkeypatch.setattr(node.node, "destroy_publisher", lambda p: destroyed.append(p.topic_name) or destroy(p))
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1), "the node never subscribed"

        def tracked_at(i):
            return [list(m.ids) for m in probe.messages("/humans/bodies/tracked") if stamp_ns(m.header) == 10**9 * i]

        for i in range(1, 16):  # one frame at a time: each one processed, none dropped
            pub.publish(image_msg(np.zeros((120, 160, 3), np.uint8), 10**9 * i))
            assert probe.wait_for(lambda: tracked_at(i)), f"frame {i}: no /humans/bodies/tracked"
        people = {stamp_ns(m.header) // 10**9: len(m.humans) for m in probe.messages("/humans/keypoints")}
        assert [i for i in range(1, 16) if not people[i]] == [5, 8, 11, 13, 14, 15]  # the detector's misses
        ids = {i: tracked_at(i)[0] for i in range(1, 16)}
        body = ids[3][0]  # confirmed at its 3rd consecutive hit
        assert ids[1] == ids[2] == [] and all(ids[i] == [body] for i in range(3, 14)), ids
        assert ids[14] == ids[15] == []  # two misses in a row: the track and its body are gone
        skeleton_topic = f"/humans/bodies/{body}/skeleton2d"
        assert made.count(skeleton_topic) == 1 and made.count(f"/humans/bodies/{body}/roi") == 1, made
        assert destroyed.count(skeleton_topic) == 1, destroyed
    finally:
        node.close()
