"""A small seeded synthetic COCO-keypoints set: drawn stick figures with exact annotations.

Each image holds 1-3 people drawn as thick limbs along keypoints.SKELETON (torso as a filled
quad, head as a disc), with a random pose, scale and position; some stand partly outside the
frame. Annotations follow COCO: ``bbox`` and ``area`` come from the figure's drawn pixels in
the image (as COCO derives them from the visible segment), ``v = 2`` for keypoints in the
image, ``v = 1`` for those covered by a figure drawn later (in front) or, rarely, at random
(self-occlusion). Keypoints outside the image follow one of two conventions:

- ``"exo"`` (CropCOCO / exococotools): kept with their true coordinates and ``v = 3``;
- ``"coco"`` (plain COCO): unannotated, ``x = y = v = 0``.

Run ``python -m probpose_core.data.synthetic --out demo/fixture`` to (re)write the fixture.
"""
import argparse
from pathlib import Path

import cv2
import numpy as np

from ..evaluation.areas import in_image
from ..jsonio import dump_json
from .coco import pad_to_contain
from ..keypoints import INDEX, NUM_KEYPOINTS, SKELETON, coco_category

CONVENTIONS = ("exo", "coco")
IMAGE_SIZE = (320, 240)  # (W, H)

# Head and torso of a standing figure of height 1, origin at the hip centre, y down.
_HEAD = {
    "nose": (0.0, -0.84), "left_eye": (0.025, -0.865), "right_eye": (-0.025, -0.865),
    "left_ear": (0.055, -0.85), "right_ear": (-0.055, -0.85),
    "left_shoulder": (0.12, -0.66), "right_shoulder": (-0.12, -0.66),
    "left_hip": (0.08, 0.0), "right_hip": (-0.08, 0.0),
}
# (joint chain, outward sign, segment lengths): arms hang from the shoulders, legs from the hips.
_LIMBS = (
    (("left_shoulder", "left_elbow", "left_wrist"), +1, (0.19, 0.17)),
    (("right_shoulder", "right_elbow", "right_wrist"), -1, (0.19, 0.17)),
    (("left_hip", "left_knee", "left_ankle"), +1, (0.25, 0.25)),
    (("right_hip", "right_knee", "right_ankle"), -1, (0.25, 0.25)),
)
_LEFT = frozenset(i for name, i in INDEX.items() if name.startswith("left_"))


def random_pose(rng: np.random.Generator) -> np.ndarray:
    """A plausible 17-keypoint pose (K, 2) of a figure about 1 unit tall, hips at the origin."""
    pose = np.zeros((NUM_KEYPOINTS, 2))
    for name, xy in _HEAD.items():
        pose[INDEX[name]] = xy
    for (root, mid, end), side, (upper, lower) in _LIMBS:
        is_arm = "shoulder" in root
        # angle measured from straight down, positive = away from the body
        spread = rng.uniform(-25, 150) if is_arm else rng.uniform(-15, 40)
        bend = rng.uniform(0, 110) if is_arm else rng.uniform(0, 80)
        a1 = np.deg2rad(spread)
        a2 = a1 + np.deg2rad(bend) * (1 if is_arm else -1)
        d1 = np.array([side * np.sin(a1), np.cos(a1)])
        d2 = np.array([side * np.sin(a2), np.cos(a2)])
        pose[INDEX[mid]] = pose[INDEX[root]] + upper * d1
        pose[INDEX[end]] = pose[INDEX[mid]] + lower * d2
    lean = np.deg2rad(rng.uniform(-15, 15))
    rot = np.array([[np.cos(lean), -np.sin(lean)], [np.sin(lean), np.cos(lean)]])
    return pose @ rot.T


def _draw_figure(canvas: np.ndarray, pose: np.ndarray, height_px: float, color, left_color=None,
                 eye_color=None) -> None:
    """Draw the figure ``pose (K, 2)`` (image pixels) into ``canvas``: torso, limbs, head.

    Limbs on the figure's left side get ``left_color`` (default ``color``), eyes ``eye_color``
    (not drawn when None). With ``color=1`` on a zero uint8 canvas this is the figure's mask.
    """
    left_color = color if left_color is None else left_color
    thick = max(2, int(round(0.045 * height_px)))
    torso = pose[[INDEX["left_shoulder"], INDEX["right_shoulder"], INDEX["right_hip"], INDEX["left_hip"]]]
    cv2.fillConvexPoly(canvas, np.round(torso).astype(np.int32), color)
    for a, b in SKELETON:
        cv2.line(canvas, tuple(np.round(pose[a]).astype(int)), tuple(np.round(pose[b]).astype(int)),
                 left_color if (a in _LEFT and b in _LEFT) else color, thick)
    head_r = max(3, int(round(0.07 * height_px)))
    cv2.circle(canvas, tuple(np.round(pose[INDEX["nose"]]).astype(int)), head_r, color, -1)
    if eye_color is not None:
        for name in ("left_eye", "right_eye"):
            cv2.circle(canvas, tuple(np.round(pose[INDEX[name]]).astype(int)), max(1, head_r // 4), eye_color, -1)


def _background(rng: np.random.Generator, size) -> np.ndarray:
    w, h = size
    top, bottom = rng.integers(60, 230, 3), rng.integers(30, 200, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    img = np.broadcast_to((1 - t) * top + t * bottom, (h, w, 3)).astype(np.uint8).copy()
    for _ in range(rng.integers(1, 4)):  # a few flat "objects"
        x0, y0 = rng.integers(0, w), rng.integers(0, h)
        x1, y1 = x0 + rng.integers(20, w // 2), y0 + rng.integers(20, h // 2)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x1), int(y1)), tuple(int(c) for c in rng.integers(40, 220, 3)), -1)
    return img


def _place(rng: np.random.Generator, size, partly_outside: bool):
    """Random figure height (px) and hip-centre position; partly outside the frame if asked."""
    w, h = size
    height_px = rng.uniform(0.45, 1.0) * h
    if partly_outside:
        side = rng.integers(4)
        x = rng.uniform(0.1, 0.9) * w
        y = rng.uniform(0.45, 0.8) * h
        if side == 0:
            x = rng.uniform(-0.05, 0.1) * w
        elif side == 1:
            x = rng.uniform(0.9, 1.05) * w
        elif side == 2:
            y = rng.uniform(0.85, 1.15) * h
        else:
            y = height_px * rng.uniform(0.3, 0.7)
    else:
        x = rng.uniform(0.15, 0.85) * w
        y = rng.uniform(0.5, 0.8) * h
    return height_px, np.array([x, y])


def make_synthetic_coco(num_images: int = 6, seed: int = 0, size=IMAGE_SIZE, max_people: int = 3,
                        out_of_image: str = "exo", p_partly_outside: float = 0.4, p_random_occluded: float = 0.05,
                        min_in_image: int = 4):
    """Generate ``num_images`` images (H, W, 3) uint8 RGB and their COCO keypoints dict.

    Images are named ``synthetic_{i:04d}.png``. ``out_of_image`` picks the convention for
    keypoints outside the frame ("exo": v = 3 with coordinates, "coco": x = y = v = 0). Every
    person has at least ``min_in_image`` keypoints in the image and a non-empty drawn mask.
    Returns ``(coco_dict, images)``.
    """
    if out_of_image not in CONVENTIONS:
        raise ValueError(f"out_of_image must be one of {CONVENTIONS}, got {out_of_image!r}")
    rng = np.random.default_rng(seed)
    w, h = size
    images, image_entries, annotations = [], [], []
    for i in range(num_images):
        img = _background(rng, size)
        people = []  # (keypoints (K, 2), mask (H, W) bool), back to front
        n_people = int(rng.integers(1, max_people + 1))
        for _ in range(50 * n_people):
            if len(people) == n_people:
                break
            height_px, hip = _place(rng, size, rng.random() < p_partly_outside)
            pose = np.round(random_pose(rng) * height_px + hip, 2)  # as stored in the JSON
            if np.sum(in_image(pose, w, h)) < min_in_image:
                continue
            mask = np.zeros((h, w), np.uint8)
            _draw_figure(mask, pose, height_px, 1)
            if not mask.any():
                continue
            color = rng.integers(30, 180, 3)
            _draw_figure(img, pose, height_px, tuple(int(c) for c in color),
                         left_color=tuple(int(c) + 60 for c in color), eye_color=(20, 20, 20))
            people.append((pose, mask.astype(bool)))
        for j, (pose, mask) in enumerate(people):
            inside = in_image(pose, w, h)
            vis = np.where(inside, 2, 3)
            px = np.clip(np.round(pose).astype(int), 0, [w - 1, h - 1])
            for _, front in people[j + 1:]:  # covered by a figure drawn later
                vis[inside & front[px[:, 1], px[:, 0]]] = 1
            vis[inside & (rng.random(NUM_KEYPOINTS) < p_random_occluded)] = 1
            visible = mask.copy()
            for _, front in people[j + 1:]:
                visible &= ~front
            ys, xs = np.nonzero(visible if visible.any() else mask)
            kpts = np.concatenate([pose, vis[:, None]], axis=1)
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": 1, "iscrowd": 0,
                "bbox": [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)],
                "area": float(len(xs)),
                "keypoints": [float(v) for v in kpts.ravel()],
                "num_keypoints": int(NUM_KEYPOINTS),
            })
        images.append(img)
        image_entries.append({"id": i + 1, "file_name": f"synthetic_{i:04d}.png", "width": w, "height": h})
    data = {"info": {"description": f"probpose_core synthetic keypoints, seed {seed}"},
            "images": image_entries, "annotations": annotations, "categories": [coco_category()]}
    return (to_convention(data, out_of_image), images)


def to_convention(data: dict, out_of_image: str) -> dict:
    """A copy of ``data`` with out-of-image keypoints in ``out_of_image`` convention.

    "coco" turns v = 3 keypoints into unannotated ones (x = y = v = 0); "exo" keeps them and
    adds CropCOCO's ``pad_to_contain`` (data.coco.pad_to_contain).
    ``num_keypoints`` is recounted as the keypoints with v > 0.
    """
    if out_of_image not in CONVENTIONS:
        raise ValueError(f"out_of_image must be one of {CONVENTIONS}, got {out_of_image!r}")
    out = dict(data, annotations=[])
    for ann in data["annotations"]:
        kpts = np.asarray(ann["keypoints"], dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
        if out_of_image == "coco":
            kpts[kpts[:, 2] == 3] = 0
        new = dict(ann, keypoints=[float(v) for v in kpts.ravel()], num_keypoints=int(np.sum(kpts[:, 2] > 0)))
        if out_of_image == "exo":  # CropCOCO-style: say where the activation window ends
            new["pad_to_contain"] = pad_to_contain(new)
        out["annotations"].append(new)
    return out


def write_synthetic_coco(out_dir, num_images: int = 6, seed: int = 0, **kwargs) -> dict:
    """Write ``out_dir/images/*.png`` and ``out_dir/annotations.json`` (v = 3 convention) plus
    ``out_dir/annotations_coco.json`` (same people, plain-COCO convention). Returns the dict."""
    out_dir = Path(out_dir)
    kwargs.pop("out_of_image", None)
    data, images = make_synthetic_coco(num_images, seed, out_of_image="exo", **kwargs)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    for entry, img in zip(data["images"], images):
        cv2.imwrite(str(out_dir / "images" / entry["file_name"]), cv2.cvtColor(img, cv2.COLOR_RGB2BGR),
                    [cv2.IMWRITE_PNG_COMPRESSION, 9])
    dump_json(data, out_dir / "annotations.json")
    dump_json(to_convention(data, "coco"), out_dir / "annotations_coco.json")
    return data


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Write a small synthetic COCO-keypoints set.")
    parser.add_argument("--out", required=True, help="output folder (images/, annotations.json)")
    parser.add_argument("--num-images", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    data = write_synthetic_coco(args.out, args.num_images, args.seed)
    print(f"wrote {len(data['images'])} images, {len(data['annotations'])} people to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
