"""pipeline.py: crops, batching, decode to image coordinates, the ModelSpec, max_people, double-heatmap and heatmap models, bad input."""
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.keypoints import NUM_KEYPOINTS
from probpose_core.models.pose_model import NORMALIZE_MEAN, NORMALIZE_STD
from probpose_core.pipeline import Pipeline, box_problems

FIXTURE = Path(__file__).resolve().parents[1] / "demo" / "fixture"
MEAN, STD = np.array(NORMALIZE_MEAN, np.float32), np.array(NORMALIZE_STD, np.float32)
IN_W, IN_H = geometry.INPUT_SIZE
HM_W, HM_H = geometry.HEATMAP_SIZE


class DotRunner:
    """Stand-in network: finds the brightest input pixel of each crop and puts a Gaussian blob
    (sum 1) at the matching heatmap point (UDP) in every channel; records batch sizes."""

    name, input_size = "dot", geometry.INPUT_SIZE

    def __init__(self, max_batch=16, presence=0.9, quality=np.linspace(0.2, 0.9, NUM_KEYPOINTS)):
        self.max_batch, self.presence, self.quality, self.batches = max_batch, presence, quality, []

    def run(self, images):
        assert images.dtype == np.float32 and images.shape[1:] == (3, IN_H, IN_W)
        assert len(images) <= self.max_batch
        self.batches.append(len(images))
        rgb = images.transpose(0, 2, 3, 1) * STD + MEAN  # undo the normalisation
        n = len(images)
        flat = rgb.sum(-1).reshape(n, -1).argmax(-1)
        u, v = flat % IN_W, flat // IN_W
        hx, hy = u * (HM_W - 1) / (IN_W - 1), v * (HM_H - 1) / (IN_H - 1)
        xs, ys = np.arange(HM_W), np.arange(HM_H)
        blob = np.exp(-((xs[None, None, :] - hx[:, None, None]) ** 2 + (ys[None, :, None] - hy[:, None, None]) ** 2) / 2.0)
        blob /= blob.sum(axis=(1, 2), keepdims=True)
        maps = np.repeat(blob[:, None], NUM_KEYPOINTS, axis=1).astype(np.float32)
        k = np.arange(NUM_KEYPOINTS)
        presence = np.tile(np.where(k % 2 == 0, self.presence, 0.1), (n, 1)).astype(np.float32)
        return {"prob_maps": maps, "presence": presence, "visibility": np.full((n, NUM_KEYPOINTS), 0.6, np.float32),
                "oks_quality": np.tile(self.quality, (n, 1)).astype(np.float32)}


def dot_frame(points, shape=(240, 320)):
    frame = np.zeros(shape + (3,), np.uint8)
    for x, y in points:
        frame[int(y), int(x)] = 255
    return frame


def test_crops_are_the_geometry_warp_normalised():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    boxes = np.array([[10, 20, 50, 70], [100, 5, 80, 30]], np.float64)  # second one crosses the border
    images, center, scale = Pipeline(DotRunner()).crops(frame, boxes)
    assert images.shape == (2, 3, IN_H, IN_W) and images.dtype == np.float32 and images.flags.c_contiguous
    for i in range(2):
        c, s = geometry.bbox_to_center_scale(boxes[i])
        np.testing.assert_allclose(center[i], c)
        np.testing.assert_allclose(scale[i], s)
        ref = (geometry.warp_crop(frame, c, s).astype(np.float32) - MEAN) / STD
        np.testing.assert_allclose(images[i], ref.transpose(2, 0, 1), atol=1e-5)
    # outside the frame the crop is black, i.e. -mean/std after normalisation
    np.testing.assert_allclose(images[1, :, -1, -1], -MEAN / STD, atol=1e-5)


@settings(max_examples=15, deadline=None)
@given(x=st.floats(20, 300), y=st.floats(20, 220), w=st.floats(20, 150), h=st.floats(20, 150),
       fx=st.floats(0.1, 0.9), fy=st.floats(0.1, 0.9))
def test_keypoints_come_back_in_image_coordinates(x, y, w, h, fx, fy):
    dot = (min(x + fx * w, 319), min(y + fy * h, 239))
    frame = dot_frame([dot])
    [human] = Pipeline(DotRunner(), credible_levels=()).estimate(frame, [[x, y, w, h]])
    _, scale = geometry.bbox_to_center_scale([x, y, w, h])
    tol = 0.5 * scale[0] / (IN_W - 1) + 0.5 * scale[1] / (IN_H - 1) + 1.0  # one input pixel + the frame pixel
    for kp in human.keypoints:
        assert abs(kp.x - int(dot[0])) <= tol and abs(kp.y - int(dot[1])) <= tol
    assert human.bbox == (x, y, w, h)


def test_many_people_are_split_never_dropped():
    rng = np.random.default_rng(1)
    boxes = np.column_stack([rng.uniform(0, 250, 11), rng.uniform(0, 180, 11), rng.uniform(30, 60, (11, 2))])
    scores = rng.uniform(0.3, 1, 11)
    runner = DotRunner(max_batch=5)
    pipe = Pipeline(runner, max_batch=8)
    assert pipe.max_batch == 5  # the runner's own limit wins
    humans = pipe.estimate(dot_frame([(100, 100)]), boxes, scores)
    assert runner.batches == [5, 5, 1]
    assert [h.bbox for h in humans] == [tuple(b) for b in boxes]
    np.testing.assert_allclose([h.box_score for h in humans], scores)


def test_presence_threshold_gates_regions():
    frame = dot_frame([(100, 120)])
    pipe = Pipeline(DotRunner(presence=0.9), credible_levels=(0.5, 0.9), presence_threshold=0.45)
    [h] = pipe.estimate(frame, [[60, 60, 80, 120]], [0.5])
    for k, kp in enumerate(h.keypoints):
        if k % 2 == 0:
            assert set(kp.regions) == {0.5, 0.9}
            area50, area90 = (sum(abs(_shoelace(p)) for p in kp.regions[q]) for q in (0.5, 0.9))
            assert area90 > area50 > 0
            for poly in kp.regions[0.9]:  # the outline surrounds the keypoint
                assert poly[:, 0].min() <= kp.x <= poly[:, 0].max() and poly[:, 1].min() <= kp.y <= poly[:, 1].max()
        else:
            assert kp.regions == {}
        assert np.all(np.linalg.eigvalsh(kp.covariance) > 0)
    [h] = Pipeline(DotRunner(presence=0.2), credible_levels=(0.5,)).estimate(frame, [[60, 60, 80, 120]], [0.5])
    assert all(kp.regions == {} for kp in h.keypoints)


def test_score_is_box_score_times_presence_weighted_oks_estimate():
    """score = box score x sum(presence * sqrt(oks_quality * expected OKS of the decode)) / sum(presence)."""
    frame = dot_frame([(100, 120)])
    box = [[60, 60, 80, 120]]
    quality = np.where(np.arange(NUM_KEYPOINTS) % 2 == 0, 0.9, 0.1)  # present keypoints are the good ones
    weights = np.where(np.arange(NUM_KEYPOINTS) % 2 == 0, 0.9, 0.1)  # DotRunner's presence
    pipe = Pipeline(DotRunner(presence=0.9, quality=quality))
    images, center, scale = pipe.crops(frame, box)
    outputs = pipe.infer(images)
    area = pipe.codec.area_factor * 80 * 120
    _, expected_oks = pipe.codec.decode(outputs["prob_maps"], center, scale, area=np.array([area]))
    assert 0.05 < expected_oks.min() and expected_oks.max() < 0.999  # both factors matter here
    expected = 0.5 * (weights * np.sqrt(quality * expected_oks[0])).sum() / weights.sum()
    for threshold in (0.05, 0.45, 0.95):  # the score does not depend on the presence threshold
        [h] = Pipeline(DotRunner(presence=0.9, quality=quality), presence_threshold=threshold).estimate(
            frame, box, [0.5])
        assert h.score == pytest.approx(expected, rel=1e-5)
    assert expected > 0.5 * np.sqrt(quality * expected_oks[0]).mean() + 0.05  # weighting by presence


def _shoelace(poly):
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * (x @ np.roll(y, 1) - y @ np.roll(x, 1))


def test_flip_test_keeps_symmetric_predictions():
    frame = dot_frame([(150, 100)])
    box = [[110, 50, 90, 130]]
    plain = Pipeline(DotRunner(), credible_levels=()).estimate(frame, box)[0]
    runner = DotRunner()
    flipped = Pipeline(runner, credible_levels=(), flip_test=True).estimate(frame, box)[0]
    assert runner.batches == [1, 1]
    for a, b in zip(plain.keypoints, flipped.keypoints):
        assert abs(a.x - b.x) < 1.0 and abs(a.y - b.y) < 1e-6
    # presence is merged with the flip partner's (FLIP_INDEX swaps left/right channels)
    assert flipped.keypoints[0].presence == pytest.approx(0.9)  # the nose is its own partner
    assert flipped.keypoints[1].presence == pytest.approx((0.1 + 0.9) / 2)  # left_eye (odd) <-> right_eye (even)
    assert flipped.keypoints[6].presence == pytest.approx((0.9 + 0.1) / 2)  # right_shoulder <-> left_shoulder


@pytest.mark.parametrize("frame, message", [
    (np.zeros((0, 0, 3), np.uint8), "empty"),
    (np.zeros((10, 10), np.uint8), "shape"),
    (np.zeros((10, 10, 3), np.float32), "uint8"),
    ([[1, 2, 3]], "numpy"),
])
def test_bad_frames_raise(frame, message):
    with pytest.raises(InputError, match=message):
        Pipeline(DotRunner()).estimate(frame, [[0, 0, 5, 5]])


def test_invalid_boxes_raise_or_are_skipped_with_a_count():
    frame = dot_frame([(50, 50)], shape=(100, 100))
    boxes = [[10, 10, 40, 40], [np.nan, 0, 5, 5], [0, 0, 0, 10], [200, 200, 10, 10], [20, 20, 30, 50]]
    assert box_problems(boxes, frame.shape) == [None, "not finite", "zero or negative size",
                                                "entirely outside the frame", None]
    with pytest.raises(InputError, match=r"3 invalid box\(es\).*#1.*not finite.*#2.*#3"):
        Pipeline(DotRunner()).estimate(frame, boxes)
    pipe = Pipeline(DotRunner(), invalid_boxes="skip")
    humans = pipe.estimate(frame, boxes, [0.1, 0.2, 0.3, 0.4, 0.5])
    assert [h.box_score for h in humans] == [0.1, 0.5]
    assert pipe.last_skipped == [1, 2, 3] and pipe.skipped_total == 3
    assert Pipeline(DotRunner()).estimate(frame, np.zeros((0, 4))) == []
    with pytest.raises(InputError, match=r"\(M, 4\)"):
        Pipeline(DotRunner()).estimate(frame, [1, 2, 3])
    with pytest.raises(InputError, match="2 scores for 1 boxes"):
        Pipeline(DotRunner()).estimate(frame, [[10, 10, 40, 40]], [0.5, 0.6])


def test_bad_settings_and_runner_outputs_raise():
    with pytest.raises(InputError, match="input size"):
        Pipeline(type("R", (DotRunner,), {"input_size": (256, 192)})())
    with pytest.raises(InputError, match="credible"):
        Pipeline(DotRunner(), credible_levels=(1.5,))

    class Broken(DotRunner):
        def run(self, images):
            out = super().run(images)
            del out["visibility"]
            return out

    with pytest.raises(InputError, match="visibility"):
        Pipeline(Broken()).estimate(dot_frame([(5, 5)]), [[0, 0, 50, 50]])


def test_detector_path_skips_its_invalid_boxes():
    class Detector:
        def detect(self, frame):
            return np.array([[10, 10, 60, 90], [0, 0, 0, 0]], np.float64), np.array([0.9, 0.4])

    frame = dot_frame([(40, 50)])
    pipe = Pipeline(DotRunner(), detector=Detector())
    humans = pipe(frame)
    assert len(humans) == 1 and humans[0].box_score == 0.9 and pipe.last_skipped == [1]
    with pytest.raises(InputError, match="no person detector"):
        Pipeline(DotRunner())(frame)


# -- double-heatmap and heatmap-only models ---------------------------------------------------

def test_double_heatmap_outputs_use_the_wide_map():
    class WideRunner(DotRunner):
        """Expert map: the dot; wide map (2x window): channel 0 at its top-left pixel, others at the dot."""

        def run(self, images):
            out = super().run(images)
            wide = np.zeros_like(out["prob_maps"])
            wide[:, :, (HM_H - 1) // 2, (HM_W - 1) // 2] = 1.0  # the window centre
            wide[:, 0] = 0.0
            wide[:, 0, 0, 0] = 1.0
            out["wide_prob_maps"] = wide
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    [h] = Pipeline(WideRunner(), credible_levels=()).estimate(frame, [box])
    [plain] = Pipeline(DotRunner(), credible_levels=()).estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    np.testing.assert_allclose([h.keypoints[0].x, h.keypoints[0].y], center - scale, atol=1e-6)  # wide corner
    for a, b in zip(h.keypoints[1:], plain.keypoints[1:]):  # inside the window: the expert map refines
        assert (a.x, a.y) == (b.x, b.y)


def _blob(hx, hy, sigma=1.5):
    xs, ys = np.arange(HM_W), np.arange(HM_H)
    blob = np.exp(-((xs[None, :] - hx) ** 2 + (ys[:, None] - hy) ** 2) / (2 * sigma ** 2))
    return (blob / blob.sum()).astype(np.float32)


def test_published_covariance_is_the_spread_about_the_published_point():
    """A two-peaked map, 70 % on one pixel and 30 % on another 8 px to its right: the decoded
    point sits on the big peak, and the published covariance is the map's second moment about
    THAT point (0.3 * 8^2 = 19.2 px^2 along x, plus a cell's 1/12), not its spread about the mean
    (0.21 * 8^2 = 13.44 px^2), carried into image pixels."""
    class TwoPeakRunner(DotRunner):
        def run(self, images):
            out = super().run(images)
            maps = np.zeros_like(out["prob_maps"])
            maps[:, :, 30, 20], maps[:, :, 30, 28] = 0.7, 0.3
            out["prob_maps"] = maps
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    [h] = Pipeline(TwoPeakRunner(), credible_levels=()).estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    kx, ky = scale / (np.array([HM_W, HM_H]) - 1)
    kp = h.keypoints[0]
    np.testing.assert_allclose(geometry.image_to_heatmap(np.array([kp.x, kp.y]), center, scale), [20, 30], atol=0.5)
    offset = geometry.image_to_heatmap(np.array([kp.x, kp.y]), center, scale) - [20, 30]
    want_xx = 0.7 * offset[0] ** 2 + 0.3 * (8 - offset[0]) ** 2 + 1 / 12
    np.testing.assert_allclose(kp.covariance[0, 0], kx ** 2 * want_xx, rtol=1e-6)
    assert kp.covariance[0, 0] > 1.3 * kx ** 2 * (13.44 + 1 / 12)


def test_double_heatmap_region_and_covariance_come_from_the_map_that_gave_the_point():
    """Keypoint 0 lies outside the activation window (the wide map's top-left corner): its
    published region must surround the published point and its covariance must be the wide
    map's (the expert map's blob sits at the dot, far away)."""
    from probpose_core.regions import covariance_ellipse

    class WideRunner(DotRunner):
        def run(self, images):
            out = super().run(images)
            wide = np.repeat(_blob((HM_W - 1) / 2, (HM_H - 1) / 2)[None, None], NUM_KEYPOINTS, axis=1)
            wide = np.repeat(wide, len(images), axis=0)
            wide[:, 0] = _blob(3, 4)  # outside the expert window (its corner is at 12, 16)
            out["wide_prob_maps"] = wide
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    pipe = Pipeline(WideRunner(), credible_levels=(0.5, 0.9))
    [h] = pipe.estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    kp = h.keypoints[0]
    x0, y0, x1, y1 = geometry.window_xyxy(center, scale)
    assert not (x0 <= kp.x <= x1 and y0 <= kp.y <= y1)  # the point came from the wide map
    for q in (0.5, 0.9):
        [poly] = kp.regions[q]
        assert poly[:, 0].min() <= kp.x <= poly[:, 0].max() and poly[:, 1].min() <= kp.y <= poly[:, 1].max()
    _, wide_cov = covariance_ellipse(_blob(3, 4), center, scale * geometry.WIDE_FACTOR, about=[kp.x, kp.y])
    np.testing.assert_allclose(kp.covariance, wide_cov, rtol=1e-9)
    # keypoints inside the window keep the expert map's covariance and regions
    [plain] = Pipeline(DotRunner(), credible_levels=(0.5, 0.9)).estimate(frame, [box])
    for a, b in zip(h.keypoints[1:], plain.keypoints[1:]):
        np.testing.assert_allclose(a.covariance, b.covariance, rtol=1e-9)
        assert a.regions.keys() == b.regions.keys()
        for q in a.regions:
            for pa, pb in zip(a.regions[q], b.regions[q]):
                np.testing.assert_allclose(pa, pb)


def test_max_people_counts_valid_boxes_only():
    """Invalid boxes (NaN, empty, off-frame) with the highest scores come first: max_people must
    still keep the best VALID people, not be used up by boxes that are then skipped."""
    frame = dot_frame([(50, 50)], shape=(100, 100))
    boxes = [[np.nan, 0, 5, 5], [0, 0, 0, 10], [200, 200, 10, 10], [10, 10, 40, 40], [20, 20, 30, 50], [5, 5, 50, 60]]
    scores = [0.99, 0.98, 0.97, 0.4, 0.7, 0.5]
    pipe = Pipeline(DotRunner(), invalid_boxes="skip", max_people=2)
    humans = pipe.estimate(frame, boxes, scores)
    assert [h.box_score for h in humans] == [0.7, 0.5]  # the best two valid ones, best first
    assert pipe.last_skipped == [0, 1, 2]
    detector = type("D", (), {"detect": lambda self, f: (np.array(boxes, np.float64), np.array(scores))})()
    assert [h.box_score for h in Pipeline(DotRunner(), detector=detector, max_people=2)(frame)] == [0.7, 0.5]
    assert len(Pipeline(DotRunner(), invalid_boxes="skip").estimate(frame, boxes, scores)) == 3  # None: no limit
    with pytest.raises(InputError, match="max_people"):
        Pipeline(DotRunner(), max_people=0)


def test_codec_and_threshold_come_from_the_runners_model_spec():
    """A runner whose metadata (checkpoint meta / ONNX sidecar) says padding 1.5 and threshold
    0.2: the pipeline crops with that padding and gates regions at that threshold; explicit
    arguments still override."""
    from probpose_core.spec import codec_settings

    class MetaRunner(DotRunner):
        meta = {"codec": codec_settings(ProbMapCodec(padding=1.5)), "presence_threshold": 0.2}

    box, frame = [100, 60, 60, 100], dot_frame([(130, 110)])
    pipe = Pipeline(MetaRunner(presence=0.3))
    assert pipe.codec.padding == 1.5 and pipe.presence_threshold == 0.2
    _, center, scale = pipe.crops(frame, [box])
    np.testing.assert_allclose(scale[0], geometry.bbox_to_center_scale(box, padding=1.5)[1])
    [h] = pipe.estimate(frame, [box])
    assert [bool(kp.regions) for kp in h.keypoints] == [k % 2 == 0 for k in range(NUM_KEYPOINTS)]  # 0.3 >= 0.2
    override = Pipeline(MetaRunner(presence=0.3), codec=ProbMapCodec(), presence_threshold=0.45)
    assert override.codec.padding == 1.25 and not any(kp.regions for kp in override.estimate(frame, [box])[0].keypoints)


def test_heatmap_only_models_take_presence_from_the_map():
    class HeatmapOnlyRunner(DotRunner):
        meta = {"heatmap_only": True}

        def run(self, images):
            out = super().run(images)
            out["presence"][:] = 0.5  # a converted ViTPose: the branch says nothing
            return out

    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    [h] = Pipeline(HeatmapOnlyRunner(), credible_levels=()).estimate(frame, [box])
    center, scale = geometry.bbox_to_center_scale(box)
    maps = HeatmapOnlyRunner().run(Pipeline(DotRunner()).crops(frame, [box])[0])["prob_maps"]
    _, confidence = ProbMapCodec().decode(maps, center[None], scale[None], area=[0.53 * 60 * 100])
    np.testing.assert_allclose([k.presence for k in h.keypoints], confidence[0], rtol=1e-6)
    assert all(k.presence != 0.5 for k in h.keypoints)


# -- heatmap baseline models (map_kind="heatmap": a raw "heatmaps" output) ------------------------------

class GaussRunner(DotRunner):
    """A heatmap-baseline stand-in: unnormalised Gaussians (sigma 2) at the dot with a per-keypoint
    peak height (some above 1, some at or below 0) and small negative noise; no ``prob_maps``."""

    PEAKS = np.linspace(-0.2, 1.3, NUM_KEYPOINTS).astype(np.float32)

    def run(self, images):
        out = super().run(images)
        blob = out.pop("prob_maps")
        blob = blob / blob.max(axis=(2, 3), keepdims=True)  # peak 1 at the dot
        noise = np.random.default_rng(len(self.batches)).uniform(-0.02, 0.0, blob.shape).astype(np.float32)
        out["heatmaps"] = blob * self.PEAKS[None, :, None, None] + noise
        return out


def test_heatmap_models_decode_udp_with_presence_from_the_map_maximum():
    frame = dot_frame([(130, 110)])
    box = [100, 60, 60, 100]
    pipe = Pipeline(GaussRunner(), credible_levels=(0.5,), decode_method="expected_oks")  # heatmaps: always udp
    [h] = pipe.estimate(frame, [box])
    images, center, scale = pipe.crops(frame, [box])
    heatmaps = GaussRunner().run(images)["heatmaps"]
    points, conf = ProbMapCodec().decode(heatmaps, center, scale, method="udp")
    np.testing.assert_allclose([(k.x, k.y) for k in h.keypoints], points[0], atol=1e-9)
    presence = np.array([k.presence for k in h.keypoints])
    np.testing.assert_allclose(presence, np.clip(heatmaps[0].max(axis=(1, 2)), 0, 1), atol=1e-6)
    assert presence[0] == 0.0 and presence[-1] == 1.0  # clipped
    np.testing.assert_allclose([k.oks_quality for k in h.keypoints], np.clip(conf[0], 0, 1), atol=1e-6)
    assert 0 < sum(presence >= pipe.presence_threshold) < NUM_KEYPOINTS
    for k, kp in enumerate(h.keypoints):
        assert (0.5 in kp.regions) == (presence[k] >= pipe.presence_threshold)
        if presence[k] >= pipe.presence_threshold:  # a real peak: the dot, its region, a finite covariance
            assert abs(kp.x - 130) <= 1.5 and abs(kp.y - 110) <= 1.5
            assert kp.regions[0.5] and np.all(np.isfinite(kp.covariance))


def test_read_heatmaps_makes_a_distribution_of_any_heatmap():
    from probpose_core.codec import read_heatmaps

    rng = np.random.default_rng(3)
    heatmaps = rng.normal(size=(2, NUM_KEYPOINTS, HM_H, HM_W)).astype(np.float32)
    heatmaps[1, 3] = -1.0  # nothing positive: uniform
    center, scale = np.array([[50.0, 60.0]] * 2), np.array([[90.0, 120.0]] * 2)
    points, presence, quality, prob_maps = read_heatmaps(ProbMapCodec(), heatmaps, center, scale)
    assert points.shape == (2, NUM_KEYPOINTS, 2) and presence.shape == quality.shape == (2, NUM_KEYPOINTS)
    np.testing.assert_allclose(prob_maps.sum(axis=(2, 3)), 1.0, rtol=1e-5)
    assert (prob_maps >= 0).all() and np.allclose(prob_maps[1, 3], 1.0 / (HM_H * HM_W))
    np.testing.assert_array_equal(prob_maps[0, 0] > 0, heatmaps[0, 0] > 0)
    assert presence[1, 3] == 0.0 and ((quality >= 0) & (quality <= 1)).all()
