"""probpose_ros.markers with the real visualization_msgs classes."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rclpy.serialization import deserialize_message
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from probpose_core.keypoints import INDEX, NAMES, SKELETON
from probpose_core.overlay import LIMB_RGB, SIDE_RGB, body_side, presence_color
from probpose_core.results import Human, Keypoint
from probpose_ros.markers import humans_to_markers, to_duration


def markers_of(*args, **kwargs) -> MarkerArray:
    """humans_to_markers' bytes read back by rclpy's own deserialiser."""
    return deserialize_message(humans_to_markers(*args, **kwargs), MarkerArray)

SQUARE = np.array([[0, 0], [4, 0], [4, 4], [0, 4]], dtype=np.float64)


def header():
    h = Header(frame_id="cam")
    h.stamp.sec, h.stamp.nanosec = 50, 25
    return h


def make_human(presence, box_score=0.9, regions_level=0.5):
    kps = [Keypoint(name=n, x=100.0 + 10 * k, y=200.0 + 5 * k, presence=float(presence[k]), visibility=0.5,
                    oks_quality=0.5, regions={regions_level: [SQUARE + 10 * k]})
           for k, n in enumerate(NAMES)]
    return Human(bbox=(90.0, 180.0, 200.0, 120.0), score=box_score, keypoints=kps, box_score=box_score)


def by_ns(array, ns):
    return [m for m in array.markers if m.ns == ns and m.action == Marker.ADD]


def color_tuple(c):
    return (c.r, c.g, c.b, c.a)


def expected_color(p):
    r, g, b = presence_color(p)
    return pytest.approx((r / 255, g / 255, b / 255, 1.0))


def rgb_color(rgb):
    return pytest.approx((rgb[0] / 255, rgb[1] / 255, rgb[2] / 255, 1.0))


def regions_of(array, side=None):
    """The region LINE_LISTs (of one body side, or of all)."""
    sides = [side] if side else list(SIDE_RGB)
    return [m for s in sides for m in by_ns(array, f"regions/{s}")]


def limbs_of(line_list, pixel_size):
    pts = [(round(p.x / pixel_size, 3), round(p.y / pixel_size, 3)) for p in line_list.points]
    where = {(100.0 + 10 * k, 200.0 + 5 * k): k for k in range(len(NAMES))}
    return {(where[a], where[b]) for a, b in zip(pts[0::2], pts[1::2])}


def segments(line_list, pixel_size):
    """The LINE_LIST's segments as a set of unordered pixel pairs."""
    pts = [(round(p.x / pixel_size, 6), round(p.y / pixel_size, 6)) for p in line_list.points]
    return {frozenset(pair) for pair in zip(pts[0::2], pts[1::2])}


def closed_edges(outline):
    pts = [tuple(map(float, v)) for v in outline]
    return {frozenset((a, b)) for a, b in zip(pts, pts[1:] + pts[:1]) if a != b}


def test_all_kinds_header_lifetime_and_scale():
    presence = np.full(17, 0.9)
    presence[INDEX["left_wrist"]] = 0.1
    pixel_size = 0.002
    array = markers_of([make_human(presence)], header(), presence_threshold=0.5, pixel_size=pixel_size,
                       lifetime=0.75, point_px=6.0, line_px=2.0, text_px=14.0)
    assert array.markers[0].action == Marker.DELETEALL
    added = array.markers[1:]
    assert {m.ns for m in added} == {"keypoints", "skeleton", "regions/left", "regions/right", "regions/centre",
                                     "boxes", "ids"}
    assert len({(m.ns, m.id) for m in added}) == len(added)  # unique ids per namespace
    for m in added:
        assert (m.header.stamp.sec, m.header.stamp.nanosec, m.header.frame_id) == (50, 25, "cam")
        assert (m.lifetime.sec, m.lifetime.nanosec) == (0, 750_000_000)
        assert m.pose.orientation.w == 1.0 and not m.frame_locked

    (spheres,) = by_ns(array, "keypoints")
    assert spheres.type == Marker.SPHERE_LIST and len(spheres.points) == len(spheres.colors) == 17
    assert spheres.scale.x == pytest.approx(6.0 * pixel_size)
    for k, (p, c) in enumerate(zip(spheres.points, spheres.colors)):
        assert (p.x, p.y, p.z) == pytest.approx(((100 + 10 * k) * pixel_size, (200 + 5 * k) * pixel_size, 0.0))
        assert color_tuple(c) == expected_color(presence[k])

    (box,) = by_ns(array, "boxes")
    assert box.type == Marker.LINE_LIST and box.scale.x == pytest.approx(2.0 * pixel_size) and not box.colors
    assert segments(box, pixel_size) == closed_edges([(90, 180), (290, 180), (290, 300), (90, 300)])
    assert len(box.points) == 8

    (label,) = by_ns(array, "ids")
    assert label.type == Marker.TEXT_VIEW_FACING and label.text == "0 0.90"
    assert label.scale.z == pytest.approx(14.0 * pixel_size)
    assert (label.pose.position.x, label.pose.position.y) == pytest.approx((90 * pixel_size, 166 * pixel_size))
    assert label.pose.orientation.w == 1.0

    present = [k for k in range(17) if presence[k] >= 0.5]  # not the absent wrist
    for side, rgb in SIDE_RGB.items():  # every outline of the side's keypoints in one LINE_LIST, in its colour
        (outlines,) = regions_of(array, side)
        assert outlines.type == Marker.LINE_LIST and outlines.scale.x == pytest.approx(1.0 * pixel_size)
        mine = [k for k in present if body_side(k) == side]
        assert len(outlines.points) == len(mine) * 4 * 2 and not outlines.colors  # 4 closing edges per keypoint
        assert segments(outlines, pixel_size) == {edge for k in mine for edge in closed_edges(SQUARE + 10 * k)}
        assert color_tuple(outlines.color) == rgb_color(rgb)


def test_skeleton_only_between_present_keypoints():
    presence = np.full(17, 0.8)
    for name in ("left_elbow", "right_knee", "nose"):
        presence[INDEX[name]] = 0.2
    (lines,) = by_ns(markers_of([make_human(presence)], header(), presence_threshold=0.5), "skeleton")
    assert lines.type == Marker.LINE_LIST and not lines.colors and color_tuple(lines.color) == rgb_color(LIMB_RGB)
    expected = {(a, b) for a, b in SKELETON if presence[a] >= 0.5 and presence[b] >= 0.5}
    assert limbs_of(lines, 0.001) == expected
    assert len(expected) == len(SKELETON) - 6  # 2 edges each at the nose, left elbow and right knee


def test_nobody_present_leaves_out_empty_markers():
    array = markers_of([make_human(np.zeros(17))], header(), presence_threshold=0.5)
    assert not by_ns(array, "skeleton") and not regions_of(array)
    assert len(by_ns(array, "keypoints")) == 1  # absent keypoints are still shown, in red
    assert all(color_tuple(c) == expected_color(0.0) for c in by_ns(array, "keypoints")[0].colors)


def test_regions_at_the_level_only_and_disabled():
    array = markers_of([make_human(np.ones(17), regions_level=0.9)], header(), presence_threshold=0.5,
                              credible_level=0.5)
    assert not regions_of(array)
    assert not regions_of(markers_of([make_human(np.ones(17))], header(), presence_threshold=0.5,
                                            credible_level=None))


def test_people_ids_follow_the_message_order_and_clear_flag():
    low, high = make_human(np.ones(17), box_score=0.3), make_human(np.ones(17), box_score=0.8)
    array = markers_of([low, high], header(), presence_threshold=0.5, clear=False)
    assert all(m.action == Marker.ADD for m in array.markers)
    assert [m.text for m in by_ns(array, "ids")] == ["0 0.80", "1 0.30"]


@pytest.mark.parametrize("seconds, expected", [(0.0, (0, 0)), (0.5, (0, 500_000_000)), (2.25, (2, 250_000_000))])
def test_to_duration(seconds, expected):
    d = to_duration(seconds)
    assert (d.sec, d.nanosec) == expected


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=17, max_size=17), st.floats(0.05, 0.95))
def test_line_list_property(presence, threshold):
    presence = np.array(presence)
    lines = by_ns(markers_of([make_human(presence)], header(), presence_threshold=threshold), "skeleton")
    expected = {(a, b) for a, b in SKELETON if presence[a] >= threshold and presence[b] >= threshold}
    assert (limbs_of(lines[0], 0.001) if lines else set()) == expected


def test_region_outlines_of_every_size_and_side():
    """Outlines of 1, 2 and M points, several per keypoint, each in its keypoint's side's LINE_LIST."""
    presence = np.zeros(17)
    nose, left_eye, right_eye = INDEX["nose"], INDEX["left_eye"], INDEX["right_eye"]
    presence[[nose, left_eye, right_eye]] = (0.6, 0.75, 1.0)
    human = make_human(presence)
    human.keypoints[nose].regions = {0.5: [np.array([[5.0, 5.0]])]}  # one pixel: no segment
    human.keypoints[left_eye].regions = {0.5: [np.array([[1.0, 2.0], [3.0, 2.0]])]}  # two points: one segment
    human.keypoints[right_eye].regions = {0.5: [SQUARE + 20, np.array([[50.0, 50], [60, 50], [55, 58]])]}
    array = markers_of([human], header(), presence_threshold=0.5)
    assert not regions_of(array, "centre")  # only a one-pixel region: left out
    (left,) = regions_of(array, "left")
    assert segments(left, 0.001) == {frozenset({(1.0, 2.0), (3.0, 2.0)})} and len(left.points) == 2
    (right,) = regions_of(array, "right")
    assert segments(right, 0.001) == closed_edges(SQUARE + 20) | closed_edges([[50, 50], [60, 50], [55, 58]])
    assert len(right.points) == 8 + 6
    human.keypoints[left_eye].regions = human.keypoints[right_eye].regions = {}
    assert not regions_of(markers_of([human], header(), presence_threshold=0.5))


def test_markers_do_not_grow_with_people_keypoints_or_outlines():
    """One marker per kind for all people (their keypoints, limbs, outlines and boxes in it), one label each."""
    people = [make_human(np.full(17, 0.9), box_score=s) for s in (0.9, 0.8, 0.7, 0.6, 0.5)]
    for k, h in enumerate(people):
        h.bbox = (10.0 + 100 * k, 20.0, 50.0, 80.0)
    array = markers_of(people, header(), presence_threshold=0.5)
    assert len(array.markers) == 1 + 6 + 5  # DELETEALL, keypoints, skeleton, 3 region sides, boxes; 5 labels
    for ns in ("keypoints", "skeleton", "regions/left", "regions/right", "regions/centre", "boxes"):
        assert [m.id for m in by_ns(array, ns)] == [0]
    (spheres,) = by_ns(array, "keypoints")
    assert len(spheres.points) == len(spheres.colors) == 5 * 17
    (lines,) = by_ns(array, "skeleton")
    assert len(lines.points) == 5 * 2 * len(SKELETON)
    (boxes,) = by_ns(array, "boxes")
    assert segments(boxes, 0.001) == {e for k in range(5)
                                      for e in closed_edges([(10 + 100 * k, 20), (60 + 100 * k, 20),
                                                             (60 + 100 * k, 100), (10 + 100 * k, 100)])}
    labels = by_ns(array, "ids")
    assert [m.id for m in labels] == [0, 1, 2, 3, 4]
    assert [m.text for m in labels] == ["0 0.90", "1 0.80", "2 0.70", "3 0.60", "4 0.50"]
    assert [round(m.pose.position.x / 0.001) for m in labels] == [10, 110, 210, 310, 410]


def test_nobody_gives_only_the_deleteall():
    array = markers_of([], header(), presence_threshold=0.5)
    assert [m.action for m in array.markers] == [Marker.DELETEALL]
    assert not markers_of([], header(), presence_threshold=0.5, clear=False).markers
