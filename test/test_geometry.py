import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from probpose_core import geometry as g
from probpose_core.keypoints import FLIP_INDEX, NAMES, SIGMAS, SKELETON


def test_keypoint_table_is_consistent():
    assert len(NAMES) == len(SIGMAS) == 17
    assert all(FLIP_INDEX[FLIP_INDEX[k]] == k for k in range(17))
    for k, name in enumerate(NAMES):
        partner = NAMES[FLIP_INDEX[k]]
        assert partner == name.replace("left", "@").replace("right", "left").replace("@", "right")
    assert len(SKELETON) == 19 and all(0 <= a < 17 and 0 <= b < 17 for a, b in SKELETON)


def test_activation_window_fixes_aspect_and_pads():
    # tall box: width extended to 3:4; wide box: height extended.
    c, s = g.bbox_to_center_scale([10, 20, 30, 80])
    np.testing.assert_allclose(c, [25, 60])
    np.testing.assert_allclose(s, [60 * 1.25, 80 * 1.25])
    c, s = g.bbox_to_center_scale([0, 0, 90, 60])
    np.testing.assert_allclose(s, [90 * 1.25, 120 * 1.25])
    np.testing.assert_allclose(g.activation_window([0, 0, 90, 60], padding=1.0), [0, -30, 90, 90])


def test_activation_window_batches():
    boxes = np.array([[10, 20, 30, 80], [0, 0, 90, 60], [5, 5, 0, 10]])
    win = g.activation_window(boxes)
    assert win.shape == (3, 4)
    for b, w in zip(boxes, win):
        np.testing.assert_allclose(g.activation_window(b), w)


def test_in_window():
    win = np.array([0.0, 0.0, 10.0, 20.0])
    pts = np.array([[0, 0], [10, 20], [5, 5], [-0.1, 5], [5, 20.1]])
    assert g.in_window(pts, win).tolist() == [True, True, True, False, False]


def test_udp_maps_window_onto_pixel_centres():
    center, scale = np.array([100.0, 50.0]), np.array([96.0, 128.0])
    m = g.udp_affine(center, scale, g.HEATMAP_SIZE)
    corners = np.array([[52.0, -14.0], [148.0, 114.0], [100.0, 50.0]])
    np.testing.assert_allclose(g.apply_affine(m, corners), [[0, 0], [47, 63], [23.5, 31.5]], atol=1e-12)
    # input <-> heatmap is the pure UDP factor (in - 1) / (hm - 1)
    m_in = g.udp_affine(center, scale, g.INPUT_SIZE)
    p = np.array([[70.3, 12.9]])
    q_hm, q_in = g.apply_affine(m, p), g.apply_affine(m_in, p)
    np.testing.assert_allclose(q_in, q_hm * [(192 - 1) / (48 - 1), (256 - 1) / (64 - 1)], atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(cx=st.floats(-500, 500), cy=st.floats(-500, 500), sw=st.floats(1, 800), sh=st.floats(1, 800),
       rot=st.floats(-180, 180), px=st.floats(-1000, 1000), py=st.floats(-1000, 1000))
def test_affine_round_trip(cx, cy, sw, sh, rot, px, py):
    m = g.udp_affine([cx, cy], [sw, sh], g.INPUT_SIZE, rot)
    back = g.apply_affine(g.invert_affine(m), g.apply_affine(m, [px, py]))
    np.testing.assert_allclose(back, [px, py], atol=1e-6 * (1 + abs(px) + abs(py)))
    c, s = np.array([cx, cy]), np.array([sw, sh])
    np.testing.assert_allclose(g.heatmap_to_image(g.image_to_heatmap([px, py], c, s), c, s), [px, py],
                               atol=1e-6 * (1 + abs(px) + abs(py)))


def test_rotation_keeps_centre_and_turns_axes():
    m = g.udp_affine([0, 0], [10, 10], (11, 11), rotation=90)
    np.testing.assert_allclose(g.apply_affine(m, [0, 0]), [5, 5], atol=1e-12)
    np.testing.assert_allclose(g.apply_affine(m, [5, 0]), [5, 10], atol=1e-12)


def test_warp_crop_samples_the_window():
    img = np.zeros((100, 200, 3), np.uint8)
    img[40:60, 90:110] = 255  # a white square around (99.5, 49.5)
    center, scale = np.array([99.5, 49.5]), np.array([60.0, 80.0])
    crop = g.warp_crop(img, center, scale)
    assert crop.shape == (256, 192, 3)
    ys, xs = np.nonzero(crop[..., 0] > 127)
    assert abs(xs.mean() - 95.5) < 1.0 and abs(ys.mean() - 127.5) < 1.0


@pytest.mark.parametrize("box", [[0, 0, 0, 10], [0, 0, 10, 0], [0, 0, 0, 0]])
def test_degenerate_boxes_follow_exococotools(box):
    c, s = g.bbox_to_center_scale(box)
    assert np.all(np.isfinite(s))


def test_padding_to_contain_agrees_with_the_activation_window(rng):
    box = np.array([30.0, 40.0, 50.0, 120.0])
    pts = rng.uniform(-100, 250, size=(500, 2))
    need = g.padding_to_contain(pts, box)
    for pad in (1.0, 1.25, 1.7):
        inside = g.in_window(pts, g.activation_window(box, padding=pad))
        np.testing.assert_array_equal(inside, need <= pad + 1e-12)
    np.testing.assert_allclose(g.padding_to_contain([55.0, 100.0], box), 0.0)  # the centre


@settings(max_examples=40, deadline=None)
@given(cx=st.floats(-500, 500), cy=st.floats(-500, 500), sw=st.floats(1, 800), sh=st.floats(1, 800),
       px=st.floats(-100, 100), py=st.floats(-100, 100))
def test_heatmap_maps_equal_the_udp_affine(cx, cy, sw, sh, px, py):
    c, s, p = np.array([cx, cy]), np.array([sw, sh]), np.array([px, py])
    m = g.udp_affine(c, s, g.HEATMAP_SIZE)
    tol = 1e-9 * (1 + abs(cx) + abs(cy) + sw + sh)
    np.testing.assert_allclose(g.image_to_heatmap(p, c, s), g.apply_affine(m, p), atol=tol * 100)
    np.testing.assert_allclose(g.heatmap_to_image(p, c, s), g.apply_affine(g.invert_affine(m), p), atol=tol * 100)
