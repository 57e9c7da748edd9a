import cv2
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core.keypoints import SKELETON
from probpose_core.overlay import REGION_ALPHA, SIDE_RGB, draw_humans, draw_pose, presence_color, presence_colors, side_color
from probpose_core.results import Human, Keypoint
from probpose_core.spec import ModelSpec


def test_presence_colour_runs_red_to_green():
    assert presence_color(0.0) == (255, 0, 0)
    assert presence_color(1.0) == (0, 255, 0)
    assert presence_color(0.5) == (255, 255, 0)
    assert presence_color(float("nan")) == presence_color(-3.0) == (255, 0, 0)
    values = np.linspace(-0.5, 1.5, 401)
    assert presence_colors(values) == [presence_color(v) for v in values]
    assert presence_colors(values) == [(int(255 * min(1.0, 2 * (1 - p))), int(255 * min(1.0, 2 * p)), 0)
                                       for p in np.clip(values, 0, 1)]


def test_absent_keypoints_get_no_skeleton_lines():
    img = np.zeros((100, 100, 3), np.uint8)
    kp = np.tile([[50.0, 50.0]], (17, 1))
    kp[5], kp[7] = [10, 10], [90, 90]  # left shoulder - left elbow limb along the diagonal
    pres = np.zeros(17)
    draw_pose(img, kp, pres, 0.5)
    assert img[47:54, 47:54].any() and not img[30, 30].any()  # absent: hollow markers only
    pres[[5, 7]] = 1.0
    draw_pose(img, kp, pres, 0.5)
    assert img[30, 30].any()  # the limb is drawn once both ends are present


def test_box_and_regions_are_drawn():
    img = np.zeros((100, 100, 3), np.uint8)
    regions = [[np.array([[20, 20], [40, 20], [40, 40], [20, 40]])]] + [[] for _ in range(16)]
    draw_pose(img, np.full((17, 2), 70.0), np.ones(17), 0.5, bbox=[5, 5, 80, 80], regions=regions, label="id 3")
    assert img[5, 50].any() and img[20, 30].any()


def test_without_antialiasing_only_the_drawing_colours_appear():
    kp = np.tile([[50.0, 50.0]], (17, 1))
    kp[5], kp[7] = [10, 13], [90, 71]  # a slanted limb
    smooth, sharp = (draw_pose(np.zeros((100, 100, 3), np.uint8), kp, np.ones(17), 0.5, antialias=aa)
                     for aa in (True, False))
    colours = {(0, 200, 255), presence_color(1.0), (0, 0, 0)}
    assert {tuple(c) for c in sharp.reshape(-1, 3)} <= colours
    assert not {tuple(c) for c in smooth.reshape(-1, 3)} <= colours  # blended edge pixels


def _draw_one_by_one(image, kp, pres, threshold, bbox, regions, label, line):
    """The overlay's picture from one cv2 call per element (what draw_pose batches)."""
    present = pres >= threshold
    thick = max(1, round(max(image.shape[:2]) / 400))
    if bbox is not None:
        x, y, w, h = bbox
        cv2.rectangle(image, (round(x), round(y)), (round(x + w), round(y + h)), (80, 160, 255), thick)
        cv2.putText(image, label, (round(x), max(12, round(y) - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.4 * thick,
                    (80, 160, 255), thick, line)
    shapes = [(k, np.round(poly).astype(np.int32).reshape(-1, 1, 2))
              for k, polys in enumerate(regions) if present[k] for poly in polys if len(poly)]
    layer = image.copy()  # the whole image blended (draw_pose blends only around the regions)
    for k, pts in shapes:
        cv2.fillPoly(layer, [pts], side_color(k), line)
    image[:] = cv2.addWeighted(layer, REGION_ALPHA, image, 1 - REGION_ALPHA, 0)
    for color in SIDE_RGB.values():  # outlines by side: left, right, centre on top
        for k, pts in shapes:
            if side_color(k) == color:
                cv2.polylines(image, [pts], True, color, max(1, thick // 2), line)
    for a, b in SKELETON:
        if present[a] and present[b]:
            cv2.line(image, tuple(np.round(kp[a]).astype(int).tolist()), tuple(np.round(kp[b]).astype(int).tolist()),
                     (0, 200, 255), thick, line)
    for k in range(len(kp)):
        center = tuple(np.round(kp[k]).astype(int).tolist())
        radius, fill = (2 * thick + 1, -1) if present[k] else (thick + 1, 1)
        cv2.circle(image, center, radius, presence_color(pres[k]), fill, line)
    return image


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**31 - 1), st.sampled_from([(60, 80), (480, 640), (900, 700)]), st.booleans(), st.booleans())
def test_batched_drawing_equals_one_call_per_element(seed, shape, with_box, antialias):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    kp = rng.uniform(-20, max(shape) + 20, (17, 2))
    pres = rng.uniform(0, 1, 17)
    regions = [[rng.uniform(0, max(shape), (int(rng.integers(1, 7)), 2)) for _ in range(int(rng.integers(0, 3)))]
               for _ in range(17)]
    bbox = tuple(rng.uniform(0, max(shape) / 2, 4)) if with_box else None
    got = draw_pose(image.copy(), kp, pres, 0.4, bbox=bbox, regions=regions, label="#2", antialias=antialias)
    want = _draw_one_by_one(image.copy(), kp, pres, 0.4, bbox, regions, "#2", cv2.LINE_AA if antialias else cv2.LINE_8)
    np.testing.assert_array_equal(got, want)


def _square(x, y, size=20):
    return np.array([[x, y], [x + size, y], [x + size, y + size], [x, y + size]], np.float64)


def test_regions_are_filled_translucently_in_the_colour_of_the_body_side():
    """Inside a present keypoint's region the pixels take REGION_ALPHA of its side's colour (left
    shoulder, right shoulder, nose: three colours), the outline the full colour; outside nothing."""
    kp = np.full((17, 2), 95.0)  # every marker in the corner, away from the regions
    regions = [[] for _ in range(17)]
    regions[5], regions[6], regions[0] = [_square(10, 10)], [_square(60, 10)], [_square(10, 60)]
    img = draw_pose(np.zeros((100, 100, 3), np.uint8), kp, np.ones(17), 0.5, regions=regions, antialias=False)
    for (x, y), k in (((20, 20), 5), ((70, 20), 6), ((20, 70), 0)):
        np.testing.assert_allclose(img[y, x], REGION_ALPHA * np.array(side_color(k)), atol=1)
        assert tuple(img[y - 10, x]) == side_color(k)  # the outline (top edge)
    assert {side_color(5), side_color(6), side_color(0)} == set(SIDE_RGB.values())
    assert not img[70, 70].any() and not img[45, 45].any()


def test_a_keypoint_below_the_models_threshold_gets_no_region_and_no_limb():
    """presence 0.6 under a ModelSpec threshold of 0.8: absent (hollow marker, no limb, no region),
    though it would pass the 0.5 the overlay used to default to."""
    threshold = ModelSpec(presence_threshold=0.8).presence_threshold
    presence = np.full(17, 0.9)
    presence[[5, 7]] = 0.6  # left shoulder and left elbow
    kps = [Keypoint(name=f"k{k}", x=10.0 + 5 * k, y=90.0, presence=float(p), visibility=0.5, oks_quality=0.5,
                    regions={0.9: [_square(30, 10)]} if k == 5 else {}) for k, p in enumerate(presence)]
    kps[5].x, kps[5].y, kps[7].x, kps[7].y = 10.0, 10.0, 90.0, 60.0
    human = Human(bbox=(0.0, 0.0, 1.0, 1.0), score=1.0, keypoints=kps, id=1)
    img = draw_humans(np.zeros((100, 100, 3), np.uint8), [human], threshold, antialias=False)
    assert not img[20, 40].any()  # inside the region: not drawn
    assert not img[35, 50].any()  # on the shoulder-elbow limb: not drawn
    assert not img[10, 10].any() and img[10, 12].any()  # a hollow marker at the shoulder
    shown = draw_humans(np.zeros((100, 100, 3), np.uint8), [human], 0.5, antialias=False)
    assert shown[20, 40].any() and shown[35, 50].any() and shown[10, 10].any()  # at 0.5 it would be
