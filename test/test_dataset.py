"""TopDownDataset: sample layout, exact targets, determinism, DataLoader workers, bad images."""
import numpy as np
import pytest
import torch

from probpose_core import geometry
from probpose_core.codec import ProbMapCodec
from probpose_core.data.dataset import SKIP_UNREADABLE, TopDownDataset
from probpose_core.data.instances import load_instances
from probpose_core.data.synthetic import write_synthetic_coco
from probpose_core.data.transforms import AugmentConfig
from probpose_core.errors import InputError
from probpose_core.keypoints import NUM_KEYPOINTS

K = NUM_KEYPOINTS


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_synthetic_coco(root, num_images=4, seed=3)
    instances, skipped = load_instances(root / "annotations.json", images_dir=root / "images")
    assert instances and not skipped
    return root, instances


def test_sample_layout(synth):
    root, instances = synth
    s = TopDownDataset(instances, root / "images", augment=AugmentConfig())[0]
    assert s["image"].shape == (3, 256, 192) and s["image"].dtype == np.float32
    for key in ("oks_maps",):
        assert s[key].shape == (K, 64, 48)
    for key in ("keypoint_weights", "presence", "map_weights", "visibility"):
        assert s[key].shape == (K,) and s[key].dtype == np.float32
    assert s["keypoints"].shape == (K, 2) and s["keypoints_map"].shape == (K, 2)
    assert s["center"].shape == (2,) and s["scale"].shape == (2,) and s["area"].shape == ()
    assert s["image_id"].dtype == np.int64 and s["ann_id"].dtype == np.int64 and s["index"] == 0
    assert "heatmaps" not in s


def test_no_augmentation_is_the_box_window(synth):
    root, instances = synth
    ds = TopDownDataset(instances, root / "images", augment=AugmentConfig.none())
    for i in range(len(ds)):
        s = ds[i]
        inst = instances[i]
        center, scale = geometry.bbox_to_center_scale(inst.bbox)
        np.testing.assert_allclose(s["center"], center)
        np.testing.assert_allclose(s["scale"], scale)
        np.testing.assert_allclose(s["keypoints"], inst.keypoints[:, :2])
        np.testing.assert_array_equal(s["keypoint_flags"], inst.keypoints[:, 2])
        assert s["area"] == inst.area and s["ann_id"] == inst.ann_id and s["image_id"] == inst.image_id


def test_decoding_the_oks_maps_returns_the_keypoints(synth):
    """The targets live in the window-aligned frame: decode(oks_maps) ~ keypoints there."""
    root, instances = synth
    codec = ProbMapCodec()
    ds = TopDownDataset(instances, root / "images", codec=codec, augment=AugmentConfig(rotate_prob=1.0))
    for i in range(len(ds)):
        s = ds[i]
        maps = s["oks_maps"] / s["oks_maps"].sum(axis=(1, 2), keepdims=True)
        pts, _ = codec.decode(maps[None], s["center"][None], s["scale"][None], area=[s["area"]], method="argmax")
        ok = s["map_weights"] > 0
        px = s["scale"] / (np.array(codec.heatmap_size) - 1)  # image px per map px
        assert np.all(np.abs(pts[0][ok] - s["keypoints"][ok]) <= px * 0.5 + 1e-6)


def test_crop_augmented_samples_keep_true_locations(synth):
    """End to end with crop augmentation on (no flip / rotation, so the window-aligned frame is
    the image frame): keypoints keep their exact annotated location, cut-away ones get v = 3,
    presence is exactly "annotated and inside the sample's window"."""
    root, instances = synth
    cfg = AugmentConfig(crop_prob=1.0, flip_prob=0.0, rotate_prob=0.0, shift_prob=0.5)
    ds = TopDownDataset(instances, root / "images", augment=cfg)
    cut_total = 0
    for epoch in range(4):
        ds.set_epoch(epoch)
        for i, inst in enumerate(instances):
            s = ds[i]
            v = inst.keypoints[:, 2]
            np.testing.assert_array_equal(s["keypoints"], inst.keypoints[:, :2])
            cut = s["keypoint_flags"] != v
            assert np.all(s["keypoint_flags"][cut] == 3) and np.all(v[cut] > 0)
            cut_total += int(cut.sum())
            inside = geometry.in_window(inst.keypoints[:, :2], geometry.window_xyxy(s["center"], s["scale"]))
            np.testing.assert_array_equal(s["presence"], ((v > 0) & inside).astype(np.float32))
            np.testing.assert_array_equal(s["keypoint_weights"], (v > 0).astype(np.float32))
            np.testing.assert_array_equal(s["visibility"], (s["keypoint_flags"] == 2).astype(np.float32))
    assert cut_total > 0


def test_deterministic_given_seed_epoch_index(synth):
    root, instances = synth
    a = TopDownDataset(instances, root / "images", augment=AugmentConfig(), seed=7)
    b = TopDownDataset(instances, root / "images", augment=AugmentConfig(), seed=7)
    order = list(range(len(a)))
    first = [a[i] for i in order]
    second = [b[i] for i in reversed(order)][::-1]
    for x, y in zip(first, second):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    a.set_epoch(1)
    changed = [not np.array_equal(a[i]["image"], first[i]["image"]) for i in order]
    assert any(changed)
    a.set_epoch(0)
    np.testing.assert_array_equal(a[0]["image"], first[0]["image"])


def test_dataloader_two_workers(synth):
    root, instances = synth
    ds = TopDownDataset(instances, root / "images", augment=AugmentConfig(), seed=1)
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2, shuffle=False)
    batches = list(loader)
    assert sum(len(b["index"]) for b in batches) == len(ds)
    b = batches[0]
    assert b["image"].shape == (3, 3, 256, 192) and b["image"].dtype == torch.float32
    assert b["oks_maps"].shape == (3, K, 64, 48)
    single = ds[1]  # a worker's sample equals the main process's
    np.testing.assert_array_equal(b["image"][1].numpy(), single["image"])
    np.testing.assert_array_equal(b["presence"][1].numpy(), single["presence"])


def test_unreadable_image_is_replaced_and_counted(synth, tmp_path, caplog):
    root, instances = synth
    (tmp_path / "images").mkdir()
    for inst in instances:
        src = root / "images" / inst.file_name
        (tmp_path / "images" / inst.file_name).write_bytes(src.read_bytes())
    bad = instances[0].file_name
    (tmp_path / "images" / bad).write_bytes(b"not an image")
    missing = instances[-1].file_name
    assert missing != bad
    (tmp_path / "images" / missing).unlink()  # deleted after load_instances checked it
    ds = TopDownDataset(instances, tmp_path / "images", augment=AugmentConfig.none())
    first_good = next(i for i, inst in enumerate(instances) if inst.file_name != bad)
    with caplog.at_level("WARNING"):
        s = ds[0]
        ds[0]
        last = ds[len(ds) - 1]  # wraps around to the first readable instance
    assert s["index"] == first_good and last["index"] == first_good
    assert ds.skipped[SKIP_UNREADABLE] == 2
    assert sum(bad in r.getMessage() for r in caplog.records) == 1
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    assert sum(len(b["index"]) for b in loader) == len(ds)  # no worker crashes mid-epoch


def test_no_readable_image_at_all(synth, tmp_path):
    _, instances = synth
    ds = TopDownDataset(instances, tmp_path)
    with pytest.raises(InputError, match="no readable image"):
        ds[0]


def test_unaugmented_crop_is_the_inference_crop(synth):
    """Training and inference see the same pixels: without augmentation the sample's image is
    bit-identical to the pipeline's crop of the same box."""
    from probpose_core.image_io import read_image
    from probpose_core.pipeline import Pipeline

    root, instances = synth
    ds = TopDownDataset(instances, root / "images", augment=None)
    pipe = Pipeline(runner=object())
    for i in (0, len(ds) - 1):
        frame = read_image(root / "images" / instances[i].file_name)
        images, center, scale = pipe.crops(frame, [instances[i].bbox])
        s = ds[i]
        np.testing.assert_array_equal(s["image"], images[0])
        np.testing.assert_array_equal(s["center"], center[0])
        np.testing.assert_array_equal(s["scale"], scale[0])


def test_heatmap_targets(synth):
    import probpose_core.codec as codec_mod

    root, instances = synth
    ds = TopDownDataset(instances, root / "images", augment=AugmentConfig(), heatmap_sigma=2.0)
    s = ds[0]
    assert s["heatmaps"].shape == (K, 64, 48) and s["heatmaps"].dtype == np.float32
    on = s["map_weights"] > 0
    assert not s["heatmaps"][~on].any()
    peak = s["heatmaps"][on].reshape(on.sum(), -1).argmax(-1)
    np.testing.assert_allclose(np.stack([peak % 48, peak // 48], -1), s["keypoints_map"][on], atol=0.5 + 1e-9)


def test_data_bench_smoke():
    from probpose_core.data.bench_data import run_data_bench

    lines = []
    rows = run_data_bench(num_workers=(0,), batch_size=1, num_images=2, repeats=1, out=lines.append)
    assert set(rows) == {0} and rows[0]["samples_per_s"] > 0 and rows[0]["per_worker"] == rows[0]["samples_per_s"]
    assert len(lines) == 3 and lines[2].split()[0] == "0"


def test_cli_bench_data_option():
    from probpose_core.cli import build_parser

    args = build_parser().parse_args(["bench", "--data", "--repeats", "2"])
    assert args.data and args.repeats == 2 and args.model is None
