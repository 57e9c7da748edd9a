import numpy as np

from probpose_core.overlay import draw_pose, presence_color


def test_presence_colour_runs_red_to_green():
    assert presence_color(0.0) == (255, 0, 0)
    assert presence_color(1.0) == (0, 255, 0)
    assert presence_color(0.5) == (255, 255, 0)


def test_absent_keypoints_get_no_skeleton_lines():
    img = np.zeros((100, 100, 3), np.uint8)
    kp = np.tile([[50.0, 50.0]], (17, 1))
    kp[5], kp[7] = [10, 10], [90, 90]  # left shoulder - left elbow limb along the diagonal
    pres = np.zeros(17)
    draw_pose(img, kp, pres)
    assert img[47:54, 47:54].any() and not img[30, 30].any()  # absent: hollow markers only
    pres[[5, 7]] = 1.0
    draw_pose(img, kp, pres)
    assert img[30, 30].any()  # the limb is drawn once both ends are present


def test_box_and_regions_are_drawn():
    img = np.zeros((100, 100, 3), np.uint8)
    regions = [[np.array([[20, 20], [40, 20], [40, 40], [20, 40]])]] + [[] for _ in range(16)]
    draw_pose(img, np.full((17, 2), 70.0), np.ones(17), bbox=[5, 5, 80, 80], regions=regions, label="id 3")
    assert img[5, 50].any() and img[20, 30].any()
