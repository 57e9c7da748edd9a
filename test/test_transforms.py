"""Augmentation: flip, window jitter and crop augmentation keep keypoints, pixels and the
presence targets consistent (property tests)."""
import dataclasses

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.data.synthetic import make_synthetic_coco
from probpose_core.data.transforms import (AugmentConfig, aligned_keypoints, colour_jitter, crop_augment,
                                           flip_center, flip_keypoints, half_body_window, image_affine,
                                           jitter_window, sample_view, warp_image)
from probpose_core.keypoints import FLIP_INDEX, NUM_KEYPOINTS, UPPER_BODY

K = NUM_KEYPOINTS
SIZE = geometry.INPUT_SIZE
SEEDS = st.integers(0, 2 ** 32 - 1)
NO_CROP = dict(crop_prob=0.0, half_body_prob=0.0, colour_prob=0.0)


def _to_input(view, points):
    """Window-aligned points (..., 2) -> input pixel coordinates (no rotation left)."""
    return geometry.image_to_heatmap(points, view.center, view.scale, SIZE)


@pytest.fixture(scope="module")
def people():
    """(image, keypoints (K, 3), bbox) of synthetic people (v = 3 for out-of-image keypoints)."""
    data, images = make_synthetic_coco(num_images=12, seed=5)
    out = []
    for ann in data["annotations"]:
        img = images[ann["image_id"] - 1]
        out.append((img, np.asarray(ann["keypoints"], float).reshape(K, 3), np.asarray(ann["bbox"], float)))
    return out


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, width=st.integers(2, 2000))
def test_flip_twice_is_identity(seed, width):
    rng = np.random.default_rng(seed)
    kpts = np.concatenate([rng.uniform(-100, 2100, (K, 2)), rng.integers(0, 4, (K, 1))], axis=1)
    kpts[kpts[:, 2] == 0, :2] = 0
    once = flip_keypoints(kpts, width)
    np.testing.assert_allclose(flip_keypoints(once, width), kpts, atol=1e-9)
    np.testing.assert_array_equal(once[:, 2], kpts[list(FLIP_INDEX), 2])  # left <-> right
    c = rng.uniform(0, width, 2)
    np.testing.assert_allclose(flip_center(flip_center(c, width), width), c)


def test_flipped_view_is_the_mirrored_crop(people):
    """UDP flip: the crop of the flipped view is exactly the mirror of the unflipped one (what
    codec.flip_merge assumes), and its keypoints are mirrored about the input's centre column."""
    img, kpts, bbox = people[0]
    plain = sample_view(kpts, bbox, img.shape[1], img.shape[0], AugmentConfig.none(), np.random.default_rng(0))
    flipped = dataclasses.replace(plain, keypoints=flip_keypoints(kpts, img.shape[1]),
                                  center=flip_center(plain.center, img.shape[1]), flip=True)
    a, b = warp_image(img, plain), warp_image(img, flipped)
    np.testing.assert_array_equal(b, a[:, ::-1])
    pa, pb = _to_input(plain, aligned_keypoints(plain)), _to_input(flipped, aligned_keypoints(flipped))
    ann = kpts[:, 2] > 0
    np.testing.assert_allclose(pb[list(FLIP_INDEX)][ann, 0], (SIZE[0] - 1) - pa[ann, 0], atol=1e-9)
    np.testing.assert_allclose(pb[list(FLIP_INDEX)][ann, 1], pa[ann, 1], atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS, kx=st.integers(150, 490), ky=st.integers(150, 330), k=st.integers(0, K - 1))
def test_warp_moves_pixels_with_the_keypoints(seed, kx, ky, k):
    """A bright dot at keypoint k: after flip / scale / shift / rotation its brightest pixel in
    the crop is where the keypoint's (channel-swapped) target says, within 1 px."""
    yy, xx = np.mgrid[0:480, 0:640]
    dot = 255 * np.exp(-((xx - kx) ** 2 + (yy - ky) ** 2) / (2 * 4.0 ** 2))
    img = np.repeat(np.round(dot)[..., None], 3, axis=2).astype(np.uint8)
    kpts = np.zeros((K, 3))
    kpts[k] = (kx, ky, 2)
    bbox = np.array([kx - 80, ky - 120, 160, 240])
    cfg = AugmentConfig(flip_prob=0.5, rotate_prob=1.0, shift_prob=1.0, shift_factor=0.1, **NO_CROP)
    view = sample_view(kpts, bbox, 640, 480, cfg, np.random.default_rng(seed))
    crop = warp_image(img, view)[..., 0].astype(float)
    where = _to_input(view, aligned_keypoints(view))[FLIP_INDEX[k] if view.flip else k]
    peak = np.unravel_index(np.argmax(crop), crop.shape)
    assert np.hypot(peak[1] - where[0], peak[0] - where[1]) <= 1.0
    ys, xs = np.mgrid[0:crop.shape[0], 0:crop.shape[1]]  # the blob's centroid: sub-pixel agreement
    np.testing.assert_allclose([(xs * crop).sum() / crop.sum(), (ys * crop).sum() / crop.sum()], where, atol=0.2)
    np.testing.assert_allclose(where, geometry.apply_affine(image_affine(view), [kx, ky]), atol=1e-9)


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS, person=st.integers(0, 1000))
def test_crop_augmentation_presence_is_exact(people, seed, person):
    """With crop augmentation on, presence == "the keypoint's TRUE transformed position is in
    the activation window"; keypoints cut away keep v = 3 and their exact location; pixels
    outside the kept rectangle are black."""
    img, kpts, bbox = people[person % len(people)]
    h, w = img.shape[:2]
    cfg = AugmentConfig(crop_prob=1.0, half_body_prob=0.3, rotate_prob=0.6, shift_prob=0.3)
    view = sample_view(kpts, bbox, w, h, cfg, np.random.default_rng(seed))
    truth = geometry.apply_affine(image_affine(view), kpts[:, :2])  # original location -> input px
    if view.flip:
        truth = truth[list(FLIP_INDEX)]
        original_v = kpts[list(FLIP_INDEX), 2]
    else:
        original_v = kpts[:, 2]
    np.testing.assert_allclose(_to_input(view, aligned_keypoints(view)), truth, atol=1e-6)
    targets = ProbMapCodec().encode(aligned_keypoints(view)[None], view.keypoints[None, :, 2], [1000.0],
                                    view.center[None], view.scale[None])
    inside = (truth >= 0).all(-1) & (truth <= np.array(SIZE) - 1).all(-1)
    edge = (np.abs(truth) < 1e-6).any(-1) | (np.abs(truth - (np.array(SIZE) - 1)) < 1e-6).any(-1)
    annotated = original_v > 0
    np.testing.assert_array_equal(targets["presence"][0][~edge], (annotated & inside)[~edge])
    np.testing.assert_array_equal(view.keypoints[:, 2] > 0, annotated)  # nothing dropped or added
    if view.crop is not None:
        x0, y0, x1, y1 = view.crop
        orig = kpts[list(FLIP_INDEX)] if view.flip else kpts
        cut = annotated & ~geometry.in_window(orig[:, :2], (x0, y0, x1, y1))
        assert np.all(view.keypoints[cut, 2] == 3)
        assert np.all(view.keypoints[annotated & ~cut, 2] == orig[annotated & ~cut, 2])
        # a white image: input pixels whose source lies >= 1 px outside the rectangle are black
        crop = warp_image(np.full_like(img, 255), view)[..., 0]
        src = geometry.apply_affine(geometry.invert_affine(image_affine(view)),
                                    np.stack(np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1])), -1))
        outside = (src[..., 0] < x0 - 1) | (src[..., 0] > x1) | (src[..., 1] < y0 - 1) | (src[..., 1] > y1)
        assert not crop[outside].any()
        well_inside = (src[..., 0] > x0 + 1) & (src[..., 0] < x1 - 2) & (src[..., 1] > y0 + 1) & (src[..., 1] < y1 - 2)
        assert (crop[well_inside] == 255).all()


def test_crop_augmentation_reaches_area_d_and_e(people):
    """Over many draws the recipe produces cut-away keypoints both inside the re-fit window
    (present, area D) and outside it (absent, area E)."""
    seen = {"D": 0, "E": 0, "cropped": 0}
    cfg = AugmentConfig(crop_prob=1.0, half_body_prob=0.0, rotate_prob=0.0, shift_prob=0.0, flip_prob=0.0)
    for seed in range(200):
        img, kpts, bbox = people[seed % len(people)]
        view = sample_view(kpts, bbox, img.shape[1], img.shape[0], cfg, np.random.default_rng(seed))
        if view.crop is None:
            continue
        seen["cropped"] += 1
        cut = (view.keypoints[:, 2] == 3) & (kpts[:, 2] != 3)
        present = geometry.in_window(aligned_keypoints(view), geometry.window_xyxy(view.center, view.scale))
        seen["D"] += int(np.sum(cut & present))
        seen["E"] += int(np.sum(cut & ~present))
    assert seen["cropped"] > 100 and seen["D"] > 0 and seen["E"] > 0


def test_crop_augment_keeps_enough_keypoints(people):
    kept_min = []
    for seed in range(100):
        img, kpts, bbox = people[seed % len(people)]
        out = crop_augment(kpts, bbox, img.shape[1], img.shape[0], np.random.default_rng(seed), min_keypoints=4)
        if out is None:
            continue
        new_kpts, new_bbox, (x0, y0, x1, y1) = out
        visible = np.isin(new_kpts[:, 2], (1, 2))
        kept_min.append(visible.sum())
        assert np.all(geometry.in_window(new_kpts[visible, :2], (x0, y0, x1, y1)))
        np.testing.assert_array_equal(new_kpts[:, :2], kpts[:, :2])
        bx, by, bw, bh = new_bbox
        assert x0 <= bx and y0 <= by and bx + bw <= x1 and by + bh <= y1 and bw >= 1 and bh >= 1
    assert len(kept_min) > 50 and min(kept_min) >= 4


@settings(max_examples=40, deadline=None)
@given(seed=SEEDS)
def test_half_body_window_holds_the_chosen_half(seed):
    rng = np.random.default_rng(seed)
    kpts = np.concatenate([rng.uniform(0, 300, (K, 2)), rng.choice([0, 1, 2], (K, 1), p=[0.1, 0.3, 0.6])], 1)
    out = half_body_window(kpts, np.random.default_rng(seed), min_keypoints=8)
    visible = np.isin(kpts[:, 2], (1, 2))
    if visible.sum() <= 8:
        assert out is None
        return
    center, scale = out
    inside = geometry.in_window(kpts[:, :2], geometry.window_xyxy(center, scale)) & visible
    upper = np.isin(np.arange(K), UPPER_BODY)
    assert inside[visible & upper].all() or inside[visible & ~upper].all()
    assert scale[0] / scale[1] == pytest.approx(geometry.ASPECT)


@settings(max_examples=60, deadline=None)
@given(seed=SEEDS)
def test_jitter_window_ranges(seed):
    cfg = AugmentConfig()
    c, s, r = jitter_window([100.0, 200.0], [75.0, 100.0], np.random.default_rng(seed), cfg)
    factor = s / np.array([75.0, 100.0])
    assert factor[0] == pytest.approx(factor[1]) and cfg.scale_range[0] <= factor[0] <= cfg.scale_range[1]
    assert np.all(np.abs(c - [100, 200]) <= cfg.shift_factor * s + 1e-9)
    assert abs(r) <= cfg.rotate_max_deg


def test_no_augmentation_draws_nothing(people):
    img, kpts, bbox = people[0]
    rng = np.random.default_rng(0)
    view = sample_view(kpts, bbox, img.shape[1], img.shape[0], AugmentConfig.none(), rng)
    center, scale = geometry.bbox_to_center_scale(bbox)
    assert not view.flip and view.rotation == 0 and view.crop is None
    np.testing.assert_array_equal(view.center, center)
    np.testing.assert_array_equal(view.scale, scale)
    np.testing.assert_array_equal(view.keypoints, kpts)
    assert rng.random() == np.random.default_rng(0).random()
    assert colour_jitter(img, rng, AugmentConfig.none()) is img


@settings(max_examples=30, deadline=None)
@given(seed=SEEDS)
def test_colour_jitter(seed):
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (16, 12, 3), dtype=np.uint8)
    neutral = AugmentConfig(colour_prob=1.0, brightness=0, contrast=0, saturation=0, hue=0)
    np.testing.assert_array_equal(colour_jitter(img, np.random.default_rng(seed), neutral), img)
    out = colour_jitter(img, np.random.default_rng(seed), AugmentConfig(colour_prob=1.0))
    assert out.shape == img.shape and out.dtype == np.uint8
    gray = np.full((8, 8, 3), 128, np.uint8)  # saturation and hue leave gray alone
    only_colour = AugmentConfig(colour_prob=1.0, brightness=0, contrast=0, saturation=0.5, hue=0.1)
    got = colour_jitter(gray, np.random.default_rng(seed), only_colour)
    assert np.abs(got.astype(int) - 128).max() <= 1
    hsv = cv2.cvtColor(got, cv2.COLOR_RGB2HSV)
    assert hsv[..., 1].max() <= 2
