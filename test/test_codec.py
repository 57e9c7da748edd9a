import numpy as np
import pytest
import torch
from hypothesis import given, settings, strategies as st

from probpose_core import geometry as g
from probpose_core.codec import (ProbMapCodec, decode_expected_oks, expected_oks_maps, flip_merge, gaussian_heatmaps,
                                 oks_rates, pixel_scale, refine_expected_oks, sharpen_maps, window_area)
from probpose_core.errors import InputError
from probpose_core.keypoints import FLIP_INDEX, INDEX, SIGMAS
from probpose_core.sparsemax import sparsemax_maps

W, H = g.HEATMAP_SIZE
K = len(SIGMAS)
CODEC = ProbMapCodec()
YS, XS = np.mgrid[0:H, 0:W]
# a window whose map pixels are image pixels: map coordinates == image coordinates
UNIT_CENTER, UNIT_SCALE = np.array([(W - 1) / 2, (H - 1) / 2]), np.array([W - 1.0, H - 1.0])


def _sq_dist(points):
    """Squared map distance of every pixel to ``points (N, K, 2)``: (N, K, H, W)."""
    return (XS - points[..., 0, None, None]) ** 2 + (YS - points[..., 1, None, None]) ** 2


def smooth_sparsemax(points, radius):
    """Sparsemax of a quadratic peak at each sub-pixel point, support radius ~``radius`` px."""
    logits = torch.from_numpy(-_sq_dist(points) / 2)
    return sparsemax_maps(logits, temperature=np.pi * radius ** 4 / 4).numpy()


def gaussian_blob(points, std):
    m = np.exp(-_sq_dist(points) / (2 * std ** 2))
    return m / m.sum((2, 3), keepdims=True)


def bilinear_splat(points):
    """All mass on the 2x2 pixels around each point, with bilinear weights (never cut by the edge)."""
    m = (np.clip(1 - np.abs(XS - points[..., 0, None, None]), 0, None)
         * np.clip(1 - np.abs(YS - points[..., 1, None, None]), 0, None))
    return m / m.sum((2, 3), keepdims=True)


def _windows(n):
    center = np.tile([[300.0, 200.0]], (n, 1))
    scale = np.tile([[150.0, 200.0]], (n, 1))
    return center, scale


def decode_error(maps, points, method="expected_oks", area=None):
    """Euclidean decode error in map pixels of maps rendered at ``points (N, K, 2)`` (map coords)."""
    center, scale = _windows(len(points))
    keypoints, _ = CODEC.decode(maps, center, scale, area=area, method=method)
    back = np.stack([g.image_to_heatmap(kp, c, s) for kp, c, s in zip(keypoints, center, scale)])
    return np.linalg.norm(back - points, axis=-1)


def interior_points(rng, n, margin=4):
    return rng.uniform([margin, margin], [W - 1 - margin, H - 1 - margin], size=(n, K, 2))


def border_points(rng, n):
    """Points within 1 px of a random edge of the map."""
    p = interior_points(rng, n)
    side = rng.integers(0, 4, size=(n, K))
    off = rng.uniform(0, 1, size=(n, K))
    p[..., 0] = np.where(side == 0, off, np.where(side == 1, W - 1 - off, p[..., 0]))
    p[..., 1] = np.where(side == 2, off, np.where(side == 3, H - 1 - off, p[..., 1]))
    return p


# ---------------------------------------------------------------- decode accuracy


@pytest.mark.parametrize("render", [lambda p: smooth_sparsemax(p, 2.0), lambda p: smooth_sparsemax(p, 3.0),
                                    lambda p: gaussian_blob(p, 1.0), bilinear_splat],
                         ids=["sparsemax_r2", "sparsemax_r3", "blob", "splat"])
def test_expected_oks_decodes_sub_pixel_points(rng, render):
    points = interior_points(rng, 6)
    err = decode_error(render(points), points)
    assert np.median(err) <= 0.05, np.median(err)
    assert np.percentile(err, 95) <= 0.1
    assert np.median(decode_error(render(points), points, "argmax")) > 0.25  # sub-pixel matters


def test_udp_baseline_is_sub_pixel_in_the_interior(rng):
    points = interior_points(rng, 4)
    assert np.median(decode_error(smooth_sparsemax(points, 3.0), points, "udp")) <= 0.05


def test_points_next_to_the_border_stay_accurate(rng):
    points = border_points(rng, 6)
    maps = bilinear_splat(points)
    err = decode_error(maps, points)
    assert np.median(err) <= 0.05 and np.percentile(err, 95) <= 0.05
    # a grid stencil with replicated edges (the DARK baseline) breaks down there
    assert np.percentile(decode_error(maps, points, "udp"), 95) > 0.2


def _brute_force_expected_oks(prob_map, area, kx, ky, sigma, xs, ys):
    """E at continuous positions (ys x xs) by direct summation of the OKS formula."""
    d2 = (((xs[None, :, None, None] - XS) / kx) ** 2 + ((ys[:, None, None, None] - YS) / ky) ** 2)
    return (prob_map * np.exp(-d2 / (2 * area * (2 * sigma) ** 2))).sum((-2, -1))


def test_refinement_finds_the_continuous_maximum_also_at_the_border(rng):
    # truncated blobs at the edge: the maximum of E moves inwards, and the Newton steps
    # (exact derivatives, no stencil) must land on it
    points = border_points(rng, 1)
    maps = smooth_sparsemax(points, 3.0)
    center, scale = _windows(1)
    keypoints, conf = CODEC.decode(maps, center, scale)
    got = g.image_to_heatmap(keypoints[0], center[0], scale[0])
    (kx, ky), area = pixel_scale(scale)[0], window_area(scale)[0]
    for k in range(0, K, 3):
        fx = np.linspace(got[k, 0] - 0.05, got[k, 0] + 0.05, 41)
        fy = np.linspace(got[k, 1] - 0.05, got[k, 1] + 0.05, 41)
        e = _brute_force_expected_oks(maps[0, k], area, kx, ky, SIGMAS[k], fx, fy)
        iy, ix = np.unravel_index(e.argmax(), e.shape)
        assert abs(fx[ix] - got[k, 0]) <= 0.0025 + 1e-9 and abs(fy[iy] - got[k, 1]) <= 0.0025 + 1e-9
        assert 0 <= got[k, 0] <= W - 1 and 0 <= got[k, 1] <= H - 1
        np.testing.assert_allclose(conf[0, k], e.max(), rtol=1e-4)


@pytest.mark.parametrize("stray", [False, True])
def test_support_crop_gives_the_full_map_answer(rng, stray):
    points = interior_points(rng, 3)
    maps = smooth_sparsemax(points, 2.5)
    if stray:
        maps[0, 0, 60, 2] += 0.01  # a far pixel widens the common crop (to the whole map)
    maps[1, 5] = 0  # an empty map must not break anything
    maps = maps.astype(np.float32)
    _, scale = _windows(3)
    rates = oks_rates(window_area(scale), pixel_scale(scale))
    got, e = decode_expected_oks(maps, rates)
    full = expected_oks_maps(maps, window_area(scale), pixel_scale(scale)).reshape(3, K, -1).argmax(-1)
    start = np.stack([full % W, full // W], axis=-1).astype(float)
    want, e_want = refine_expected_oks(maps, rates, start)
    np.testing.assert_allclose(got, want, atol=1e-5)
    np.testing.assert_allclose(e, e_want, rtol=1e-5, atol=1e-12)
    assert np.isfinite(got).all() and e[1, 5] == 0


def test_expected_oks_maps_match_direct_summation(rng):
    maps = rng.random((2, K, H, W)).astype(np.float32) ** 8
    maps /= maps.sum((2, 3), keepdims=True)
    center, scale = _windows(2)
    area = np.array([4000.0, 9000.0])
    e = expected_oks_maps(maps, area, pixel_scale(scale))
    (kx, ky) = pixel_scale(scale)[0]
    for n, k in [(0, 0), (1, 11), (1, 16)]:
        direct = _brute_force_expected_oks(maps[n, k], area[n], kx, ky, SIGMAS[k], np.arange(W), np.arange(H))
        np.testing.assert_allclose(e[n, k], direct, atol=1e-6)
    # with pixel_scale None the area is in map pixels: same numbers for the unit window
    e_unit = expected_oks_maps(maps[:1], [500.0])
    direct = _brute_force_expected_oks(maps[0, 3], 500.0, 1, 1, SIGMAS[3], np.arange(W), np.arange(H))
    np.testing.assert_allclose(e_unit[0, 3], direct, atol=1e-6)


def test_bimodal_expected_oks_prefers_the_heavier_mode_where_argmax_prefers_the_sharper():
    sharp, wide = np.array([10.0, 15.0]), np.array([34.0, 45.0])
    p = 0.75 * gaussian_blob(np.broadcast_to(wide, (1, 1, 2)), 3.0)[0, 0]
    p[int(sharp[1]), int(sharp[0])] += 0.25
    maps = np.broadcast_to(p, (1, K, H, W)).copy()
    assert p.max() == p[15, 10] and p[45, 34] < 0.05  # the sharp mode holds the highest pixel
    centre, scale = UNIT_CENTER[None], UNIT_SCALE[None]
    area = [360.0]  # map px^2: OKS kernel std 3.2 px for the shoulders, 0.99 px for the nose
    kp_arg, _ = CODEC.decode(maps, centre, scale, area=area, method="argmax")
    kp_eoks, conf = CODEC.decode(maps, centre, scale, area=area)
    np.testing.assert_allclose(kp_arg[0], np.broadcast_to(sharp, (K, 2)))
    for name in ("left_shoulder", "left_hip", "left_knee"):
        assert np.linalg.norm(kp_eoks[0, INDEX[name]] - wide) < 0.1, name
    # scale awareness: the nose's narrow kernel cannot reach the wide mode's mass
    assert np.linalg.norm(kp_eoks[0, INDEX["nose"]] - sharp) < 0.1
    assert conf[0, INDEX["left_hip"]] > conf[0, INDEX["left_shoulder"]] > 0.25


# ---------------------------------------------------------------- encode


def test_encode_targets():
    center, scale = g.bbox_to_center_scale(np.array([[100.0, 50.0, 60.0, 80.0]]))
    win = g.window_xyxy(center[0], scale[0])
    kpts = np.tile(center, (K, 1))[None].copy()
    vis = np.full((1, K), 2)
    vis[0, 1], vis[0, 2], vis[0, 3], vis[0, 4] = 0, 1, 3, 1
    kpts[0, 3] = [win[0] + 1, win[1] + 1]  # v=3 (outside the image) but inside the window
    kpts[0, 4] = [win[2] + 5, center[0, 1]]  # v=1 outside the window
    kpts[0, 5] = [win[2] + 5, center[0, 1]]  # v=2 outside the window
    out = CODEC.encode(kpts, vis, [3000.0], center, scale)
    assert out["oks_maps"].shape == (1, K, H, W)
    presence = np.ones(K)
    presence[[1, 4, 5]] = 0
    np.testing.assert_array_equal(out["presence"][0], presence)
    np.testing.assert_array_equal(out["keypoint_weights"][0], vis[0] > 0)
    np.testing.assert_array_equal(out["map_weights"][0], presence)
    np.testing.assert_array_equal(out["visibility"][0], vis[0] == 2)
    np.testing.assert_allclose(out["keypoints_map"][0, 0], [(W - 1) / 2, (H - 1) / 2])


def test_encode_oks_maps_follow_the_oks_formula(rng):
    center, scale = g.bbox_to_center_scale(np.array([[10.0, 20.0, 90.0, 100.0], [0.0, 0.0, 40.0, 30.0]]))
    kpts = center[:, None] + rng.uniform(-0.4, 0.4, size=(2, K, 2)) * scale[:, None]
    area = np.array([5000.0, 900.0])
    out = CODEC.encode(kpts, np.full((2, K), 2), area, center, scale)
    for n, k, (x, y) in [(0, 0, (5, 7)), (1, 12, (30, 60)), (1, 16, (0, 0))]:
        pix = g.heatmap_to_image([x, y], center[n], scale[n])
        d2 = ((pix - kpts[n, k]) ** 2).sum()
        np.testing.assert_allclose(out["oks_maps"][n, k, y, x], np.exp(-d2 / (2 * area[n] * (2 * SIGMAS[k]) ** 2)),
                                   rtol=1e-5, atol=1e-7)
    # every pixel of every map equals the OKS formula evaluated at that pixel's image position
    grid = np.stack(np.meshgrid(np.arange(W), np.arange(H)), axis=-1).astype(np.float64)
    for n in range(2):
        pix = g.heatmap_to_image(grid, center[n], scale[n])  # (H, W, 2)
        d2 = ((pix[None] - kpts[n][:, None, None]) ** 2).sum(-1)  # (K, H, W)
        direct = np.exp(-d2 / (2 * area[n] * (2 * SIGMAS[:, None, None]) ** 2))
        np.testing.assert_allclose(out["oks_maps"][n], direct, rtol=1e-5, atol=1e-7)
    # the best pixel is next to the keypoint
    best = np.stack(np.unravel_index(out["oks_maps"].reshape(2, K, -1).argmax(-1), (H, W)), -1)[..., ::-1]
    assert (np.abs(best - out["keypoints_map"]) <= 0.5 + 1e-9).all()


def test_encode_and_decode_check_their_inputs():
    center, scale = _windows(1)
    with pytest.raises(InputError, match="keypoints must be"):
        CODEC.encode(np.zeros((1, K)), np.zeros((1, K)), [1.0], center, scale)
    with pytest.raises(InputError, match="one window per instance"):
        CODEC.encode(np.zeros((2, K, 2)), np.zeros((2, K)), [1.0, 1.0], center, scale)
    with pytest.raises(InputError, match="prob_maps must be"):
        CODEC.decode(np.zeros((1, K, H, W + 1)), center, scale)
    with pytest.raises(InputError, match="unknown decode method"):
        CODEC.decode(np.zeros((1, K, H, W)), center, scale, method="soft")
    kp, conf = CODEC.decode(np.zeros((0, K, H, W)), np.zeros((0, 2)), np.zeros((0, 2)))
    assert kp.shape == (0, K, 2) and conf.shape == (0, K)


@settings(max_examples=25, deadline=None)
@given(x=st.floats(-500, 500), y=st.floats(-500, 500), w=st.floats(20, 400), aspect=st.floats(0.6, 3),
       area_frac=st.floats(0.3, 0.8), seed=st.integers(0, 2 ** 16))
def test_round_trip_in_image_coordinates(x, y, w, aspect, area_frac, seed):
    # boxes not thinner than 1:3, so that even the face's OKS kernels span ~1 map pixel (std);
    # far narrower kernels make expected OKS peak at pixel centres (see the codec docstring)
    rng = np.random.default_rng(seed)
    h = w * aspect
    center, scale = g.bbox_to_center_scale(np.array([[x, y, w, h]]))
    kpts = center[:, None] + rng.uniform(-0.12, 0.12, size=(1, K, 2)) * scale[:, None]  # blobs not cut
    area = np.array([area_frac * w * h])
    target = CODEC.encode(kpts, np.full((1, K), 2), area, center, scale)
    prob_maps = target["oks_maps"] / target["oks_maps"].sum((2, 3), keepdims=True)  # OKS-shaped blobs
    decoded, conf = CODEC.decode(prob_maps, center, scale, area=area)
    err_map = np.abs(decoded - kpts) * pixel_scale(scale)[:, None]  # per axis, in map pixels
    assert np.linalg.norm(err_map, axis=-1).max() <= 0.05
    assert ((conf > 0.4) & (conf <= 1)).all()  # OKS-shaped blob under the same kernel: ~0.5


def test_decode_without_area_uses_the_window_estimate(rng):
    points = interior_points(rng, 2)
    maps = smooth_sparsemax(points, 3.0)
    center, scale = _windows(2)
    a, ca = CODEC.decode(maps, center, scale)
    b, cb = CODEC.decode(maps, center, scale, area=window_area(scale))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ca, cb)
    np.testing.assert_allclose(window_area(scale), 0.53 * 150 * 200 / 1.25 ** 2)


# ---------------------------------------------------------------- flip


def test_flip_merge_of_a_flipped_map_is_the_original(rng):
    maps = rng.random((2, K, H, W))
    flipped = maps[:, list(FLIP_INDEX)][..., ::-1]
    np.testing.assert_allclose(flip_merge(maps, flipped), maps)
    scalars = rng.random((2, K))
    np.testing.assert_allclose(flip_merge(scalars, scalars[:, list(FLIP_INDEX)]), scalars)
    t = torch.from_numpy(maps)
    torch.testing.assert_close(flip_merge(t, t[:, list(FLIP_INDEX)].flip(-1)), t)
    with pytest.raises(InputError):
        flip_merge(maps[0], maps[0])


def test_flipped_maps_decode_to_mirrored_keypoints(rng):
    # UDP: mirroring the input about the window centre mirrors the image x about center_x
    points = interior_points(rng, 2)
    maps = smooth_sparsemax(points, 3.0)
    center, scale = _windows(2)
    kp, _ = CODEC.decode(maps, center, scale)
    kp_flip, _ = CODEC.decode(maps[..., ::-1], center, scale)
    np.testing.assert_allclose(kp_flip[..., 0], 2 * center[:, None, 0] - kp[..., 0], atol=1e-6)
    np.testing.assert_allclose(kp_flip[..., 1], kp[..., 1], atol=1e-6)


# ---------------------------------------------------------------- Gaussian heatmap targets (baseline)


def test_gaussian_heatmaps_decode_back_through_the_window(rng):
    """Image keypoints -> encode (window) -> Gaussian targets -> UDP decode -> the same image points."""
    n = 8
    center = rng.uniform(100, 400, size=(n, 2))
    scale = rng.uniform(80, 300, size=(n, 1)) * np.array([[0.75, 1.0]]) * rng.uniform(0.8, 1.2, size=(n, 2))
    # sub-pixel map positions at least 6 map px from the border (the DARK blur reaches ~2 sigma)
    map_points = rng.uniform([6, 6], [W - 7, H - 7], size=(n, K, 2))
    image_points = np.stack([g.heatmap_to_image(p, c, s) for p, c, s in zip(map_points, center, scale)])
    vis = np.full((n, K), 2)
    targets = CODEC.encode(image_points, vis, np.full(n, 5000.0), center, scale)
    np.testing.assert_allclose(targets["keypoints_map"], map_points, atol=1e-9)
    heatmaps = gaussian_heatmaps(targets["keypoints_map"], targets["map_weights"], sigma=2.0)
    assert heatmaps.shape == (n, K, H, W) and heatmaps.dtype == np.float32
    decoded, confidence = CODEC.decode(heatmaps, center, scale, method="udp")
    back = np.stack([g.image_to_heatmap(p, c, s) for p, c, s in zip(decoded, center, scale)])
    err = np.linalg.norm(back - map_points, axis=-1)
    assert err.max() <= 0.05, err.max()
    assert (confidence > 0.9).all() and (confidence <= 1.0).all()


@settings(max_examples=40, deadline=None)
@given(x=st.floats(-3, W + 2), y=st.floats(-3, H + 2), sigma=st.floats(0.5, 4.0))
def test_gaussian_heatmaps_follow_the_formula(x, y, sigma):
    maps = gaussian_heatmaps(np.array([[[x, y], [x, y]]]), np.array([[1.0, 0.0]]), sigma=sigma)
    expected = np.exp(-((XS - x) ** 2 + (YS - y) ** 2) / (2 * sigma ** 2))
    np.testing.assert_allclose(maps[0, 0], expected, atol=1e-6)
    assert not maps[0, 1].any()  # weight 0: all-zero target


def test_gaussian_heatmaps_peak_one_at_integer_keypoints_and_check_inputs():
    maps = gaussian_heatmaps(np.array([[[10.0, 20.0]]]), np.ones((1, 1)), heatmap_size=(30, 40), sigma=1.5)
    assert maps.shape == (1, 1, 40, 30)
    assert maps[0, 0, 20, 10] == 1.0 and np.unravel_index(maps.argmax(), maps.shape)[2:] == (20, 10)
    nan = gaussian_heatmaps(np.array([[[np.nan, 3.0]]]), np.ones((1, 1)))
    assert np.isfinite(nan).all() and not nan.any()
    with pytest.raises(InputError, match="keypoints_map"):
        gaussian_heatmaps(np.zeros((2, 2)), np.ones((2,)))
    with pytest.raises(InputError, match="sigma"):
        gaussian_heatmaps(np.zeros((1, 1, 2)), np.ones((1, 1)), sigma=0)


# -- ProbMapCodec is a value object -------------------------------------------------------------------

_sigma_lists = st.lists(st.floats(0.01, 0.2, allow_nan=False), min_size=1, max_size=17)


@settings(max_examples=60, deadline=None)
@given(sigmas=_sigma_lists, padding=st.floats(1.0, 2.0), refine_iters=st.integers(0, 3),
       as_array=st.booleans())
def test_codec_compares_and_hashes_by_value(sigmas, padding, refine_iters, as_array):
    import pickle
    from dataclasses import replace

    given_sigmas = np.array(sigmas) if as_array else list(sigmas)
    a = ProbMapCodec(sigmas=given_sigmas, padding=padding, refine_iters=refine_iters)
    b = ProbMapCodec(sigmas=tuple(sigmas), padding=padding, refine_iters=refine_iters,
                     input_size=list(g.INPUT_SIZE), heatmap_size=np.array(g.HEATMAP_SIZE))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1 and {a: 1}[b] == 1
    assert pickle.loads(pickle.dumps(a)) == a and replace(a) == a
    assert isinstance(a.sigmas, tuple) and a.sigmas == tuple(float(s) for s in sigmas)
    arr = a.sigma_array
    assert isinstance(arr, np.ndarray) and arr.dtype == np.float64 and np.array_equal(arr, sigmas)
    arr[0] = 1.0  # a copy: the value (and its hash) cannot change under a dict or set
    assert a == b and hash(a) == hash(b) and a.sigmas[0] == sigmas[0]
    other = replace(a, sigmas=[s * 1.5 for s in sigmas])
    assert other != a and len({a, other}) == 2
    assert a != replace(a, refine_iters=refine_iters + 1) and a != "codec"


def test_default_codec_equals_itself_and_decodes_with_tuple_sigmas():
    assert ProbMapCodec() == ProbMapCodec(sigmas=SIGMAS) and hash(ProbMapCodec()) == hash(ProbMapCodec(sigmas=SIGMAS))
    np.testing.assert_array_equal(ProbMapCodec().sigma_array, SIGMAS)
    with pytest.raises(InputError, match="sigmas"):
        ProbMapCodec(sigmas=[])
    with pytest.raises(InputError, match="sigmas"):
        ProbMapCodec(sigmas=[[0.1, 0.2]])


@pytest.mark.parametrize("temperature, factor", [(174.0, 16.0), (3.0, 2.5), (0.5, 1.0)])
def test_sharpened_map_is_the_map_at_a_lower_temperature(temperature, factor):
    logits = torch.randn(2, 17, 64, 48, generator=torch.Generator().manual_seed(3)) * 3
    calibrated = sparsemax_maps(logits, temperature=temperature).numpy()
    sharper = sparsemax_maps(logits, temperature=temperature / factor).numpy()
    got = sharpen_maps(calibrated, factor)
    np.testing.assert_allclose(got, sharper, atol=1e-6)
    np.testing.assert_allclose(got.sum(axis=(2, 3)), 1.0, atol=1e-5)
    if factor > 1:  # a strictly smaller support: the decode reads a different map
        assert np.count_nonzero(got) < np.count_nonzero(calibrated)


def test_decode_reads_the_sharpened_map():
    logits = torch.randn(1, 17, 64, 48, generator=torch.Generator().manual_seed(4)) * 3
    center, scale = np.array([[100.0, 120.0]]), np.array([[150.0, 200.0]])
    calibrated = sparsemax_maps(logits, temperature=40.0).numpy()
    sharp = ProbMapCodec(decode_sharpness=8.0)
    got, conf = sharp.decode(calibrated, center, scale)
    want, want_conf = ProbMapCodec().decode(sparsemax_maps(logits, temperature=5.0).numpy(), center, scale)
    np.testing.assert_allclose(got, want, atol=1e-3)
    np.testing.assert_allclose(conf, want_conf, atol=1e-5)
    assert np.abs(got - ProbMapCodec().decode(calibrated, center, scale)[0]).max() > 0.1


def test_sharpen_is_exact_on_maps_that_are_not_sparsemax_outputs():
    rng = np.random.default_rng(5)
    maps = rng.normal(0.0, 0.01, (2, 3, 64, 48)).astype(np.float32)  # mostly-negative heatmap-like values
    maps[0, 0] = 0.0
    maps[0, 0, 10, 10] = 0.2  # one positive entry: its sparsemax needs entries beyond it
    want = sparsemax_maps(torch.from_numpy(maps.astype(np.float64)) * 4.0).numpy()
    np.testing.assert_allclose(sharpen_maps(maps, 4.0), want, atol=1e-6)


@pytest.mark.parametrize("bad", [0.5, 0.0, -2.0, float("nan")])
def test_decode_sharpness_below_one_is_refused(bad):
    with pytest.raises(InputError, match="decode_sharpness"):
        ProbMapCodec(decode_sharpness=bad)
