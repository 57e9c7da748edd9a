"""Build a CropCOCO-style set from any COCO keypoints file: crops that push keypoints out.

One seeded crop per image. The crop is chosen so that one person (picked at random among
the non-crowd instances with at least ``min_keypoints`` in-image keypoints) is cut: one or
two of the crop's sides (never two opposite ones) pass through that person's bbox, removing
a random ``cut_range`` fraction of the bbox's extent on that side; the other sides lie at a
random place between the image border and the person's bbox. The draw is repeated (up to
20 times) until the person loses at least one keypoint and keeps ``min_in_image``. Images
without such a person get a random crop keeping ``min_keep`` to 100 % of each side. Crop
corners are integers, so the pixels and the annotations move by exactly the same offset.
Other people in the image are cut, or cut away, wherever the crop happens to fall.

In the cropped frame (coordinates ``x - x0``, ``y - y0``):

- every annotated keypoint (v > 0) outside the new image becomes ``v = 3`` with its
  coordinates kept (negative or beyond the width/height); v in {1, 2} inside stay as they
  were; v = 0 stays unannotated;
- ``bbox`` is recomputed from in-image evidence: the original bbox (in COCO the box of the
  visible segment) clipped to the crop. It is not grown to hold the in-image keypoints, so
  keypoints that lay outside the segment box (areas B/C) keep that relation;
- ``area`` (the segment area in COCO) is scaled by the fraction of the original bbox that
  stays in the crop, ``area * |new bbox| / |bbox|``, i.e. the segment is assumed spread
  evenly over its box; ``segmentation`` is dropped (a shifted polygon would not be clipped);
- an instance is dropped when its bbox leaves the crop entirely, or when it had annotated
  keypoints and fewer than ``min_in_image`` of them stay in the image (too little evidence
  to say who it is); ``num_keypoints`` is recounted (v > 0, including v = 3).

The image keeps its id; its entry gets the new ``width``/``height``/``file_name`` and
``crop = [x0, y0, w, h]`` in the original image. Images that are missing or unreadable are
counted, reported and left out (with their annotations). Deterministic for a seed: each
image draws from its own stream seeded by (seed, image id), so the crop of one image does
not depend on the others.
"""
import zlib
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..evaluation.areas import area_table, format_area_table, in_image
from ..jsonio import dump_json
from .coco import keypoints_array, load_coco, pad_to_contain


def _image_rng(seed: int, image_id) -> np.random.Generator:
    key = image_id if isinstance(image_id, int) and image_id >= 0 else zlib.crc32(str(image_id).encode())
    return np.random.default_rng([int(seed), int(key)])


def choose_crop(rng: np.random.Generator, width: int, height: int, person_bbox=None,
                cut_range=(0.2, 0.6), min_keep: float = 0.5, min_size: int = 16) -> tuple:
    """A crop ``(x0, y0, x1, y1)`` (integers, exclusive end) of a ``width x height`` image.

    With ``person_bbox`` (COCO xywh), one or two adjacent crop sides cut through that box,
    each removing a ``cut_range`` fraction of its extent; otherwise a random crop keeping
    ``min_keep`` to all of each side. Every side of the crop is at least ``min_size`` pixels
    (or the image side, if smaller).
    """
    lo = [0.0, 0.0]
    hi = [float(width), float(height)]
    sizes = (width, height)
    if person_bbox is None:
        for axis in (0, 1):
            keep = rng.uniform(min_keep, 1.0) * sizes[axis]
            lo[axis] = rng.uniform(0, sizes[axis] - keep)
            hi[axis] = lo[axis] + keep
    else:
        bx, by, bw, bh = (float(v) for v in person_bbox)
        b0, b1 = [bx, by], [bx + bw, by + bh]
        n_cuts = 1 if rng.random() < 0.7 else 2
        cut_axes = rng.permutation(2)[:n_cuts]
        for axis in (0, 1):
            ext = b1[axis] - b0[axis]
            start = min(max(b0[axis], 0.0), sizes[axis])
            stop = min(max(b1[axis], 0.0), sizes[axis])
            if axis in cut_axes:
                frac = rng.uniform(*cut_range)
                if rng.random() < 0.5:  # cut the low side (left / top)
                    lo[axis] = b0[axis] + frac * ext
                    hi[axis] = rng.uniform(stop, sizes[axis])
                else:  # cut the high side (right / bottom)
                    hi[axis] = b1[axis] - frac * ext
                    lo[axis] = rng.uniform(0.0, start)
            else:
                lo[axis] = rng.uniform(0.0, start)
                hi[axis] = rng.uniform(stop, sizes[axis])
    crop = []
    for axis in (0, 1):
        need = min(min_size, sizes[axis])
        a = int(np.clip(np.floor(lo[axis]), 0, sizes[axis]))
        b = int(np.clip(np.ceil(hi[axis]), 0, sizes[axis]))
        if b - a < need:  # too thin: grow about the middle, inside the image
            mid = (a + b) / 2
            a = int(np.clip(round(mid - need / 2), 0, sizes[axis] - need))
            b = a + need
        crop.append((a, b))
    return crop[0][0], crop[1][0], crop[0][1], crop[1][1]


def crop_annotation(ann: dict, crop, min_in_image: int = 3):
    """``ann`` moved into the crop ``(x0, y0, x1, y1)``, or None when it is dropped.

    Returns ``(new_ann, pushed_out)`` with ``pushed_out`` the number of keypoints that
    became v = 3 here; a dropped instance gives ``(None, reason)`` with reason "outside"
    (bbox left the crop) or "evidence" (too few in-image keypoints). See the module docstring.
    """
    x0, y0, x1, y1 = crop
    width, height = x1 - x0, y1 - y0
    kpts = keypoints_array(ann)
    kpts[:, :2] -= (x0, y0)
    annotated = kpts[:, 2] > 0
    kpts[~annotated] = 0.0
    inside = in_image(kpts[:, :2], width, height) & annotated
    pushed_out = int(np.sum(annotated & ~inside & (kpts[:, 2] != 3)))
    kpts[annotated & ~inside, 2] = 3
    bx, by, bw, bh = (float(v) for v in ann["bbox"])
    bx -= x0
    by -= y0
    clip = np.array([max(bx, 0.0), max(by, 0.0), min(bx + bw, width), min(by + bh, height)])
    overlap = max(clip[2] - clip[0], 0.0) * max(clip[3] - clip[1], 0.0)
    if clip[2] <= clip[0] or clip[3] <= clip[1]:
        return None, "outside"
    if annotated.any() and inside.sum() < min_in_image:
        return None, "evidence"
    box_area = bw * bh
    scale = overlap / box_area if box_area > 0 else 1.0
    new = {k: v for k, v in ann.items() if k != "segmentation"}
    new.update(
        keypoints=[float(v) for v in kpts.ravel()],
        bbox=[float(clip[0]), float(clip[1]), float(clip[2] - clip[0]), float(clip[3] - clip[1])],
        area=float(ann.get("area", box_area)) * scale,
        num_keypoints=int(annotated.sum()),
    )
    new["pad_to_contain"] = pad_to_contain(new)
    return new, pushed_out


def _pick_person(rng, anns: list, min_keypoints: int):
    """A random non-crowd instance with at least ``min_keypoints`` in-image keypoints (v 1/2)."""
    candidates = [a for a in anns if not a.get("iscrowd", 0) and a["bbox"][2] > 0 and a["bbox"][3] > 0
                  and int(np.sum(np.isin(keypoints_array(a)[:, 2], (1, 2)))) >= min_keypoints]
    if not candidates:
        return None
    return candidates[int(rng.integers(len(candidates)))]


def cut_crop(rng, width: int, height: int, person, min_in_image: int = 3, tries: int = 20, **crop_kw) -> tuple:
    """A crop that cuts ``person`` (annotation or None): drawn with ``choose_crop`` until the
    person keeps at least ``min_in_image`` keypoints in the image and loses at least one
    (at most ``tries`` draws; else the draw that pushed most out while keeping enough, else
    the last one)."""
    if person is None:
        return choose_crop(rng, width, height, None, **crop_kw)
    kpts = keypoints_array(person)
    pts = kpts[np.isin(kpts[:, 2], (1, 2)), :2]
    best, best_out = None, -1
    for _ in range(tries):
        crop = choose_crop(rng, width, height, person["bbox"], **crop_kw)
        x0, y0, x1, y1 = crop
        inside = int(np.sum(in_image(pts - (x0, y0), x1 - x0, y1 - y0)))
        if inside >= min_in_image and len(pts) - inside > best_out:
            best, best_out = crop, len(pts) - inside
            if best_out > 0:
                break
    return crop if best is None else best


def _sized(data: dict, read_sizes: dict) -> dict:
    """``data`` with image sizes taken from the images read; entries with no size anywhere
    (not read, none in the file) are left out with their annotations."""
    images = []
    for entry in data["images"]:
        if entry["id"] in read_sizes:
            w, h = read_sizes[entry["id"]]
            images.append(dict(entry, width=w, height=h))
        elif entry.get("width") and entry.get("height"):
            images.append(entry)
    ids = {e["id"] for e in images}
    return dict(data, images=images, annotations=[a for a in data["annotations"] if a["image_id"] in ids])


def make_cropcoco(ann_path, images_dir, out_dir, seed: int = 0, min_keypoints: int = 5,
                  min_in_image: int = 3, cut_range=(0.2, 0.6), min_keep: float = 0.5,
                  padding: float = 1.25, progress: bool = True, verbose: bool = True) -> dict:
    """Write a CropCOCO-style set to ``out_dir/images/`` and ``out_dir/annotations.json``.

    ``ann_path``: COCO keypoints file (InputError if unreadable/invalid, via ``load_coco``);
    ``images_dir``: folder holding its ``file_name``s. ``min_keypoints``: annotated keypoints
    a person needs to be chosen for cutting; ``min_in_image``: in-image keypoints an
    annotated instance needs to be kept. Prints the A-E table before and after (``verbose``)
    with a progress bar over images (``progress``). Returns a JSON-ready summary.
    """
    data = load_coco(ann_path)
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    by_image = {}
    for ann in data["annotations"]:
        by_image.setdefault(ann["image_id"], []).append(ann)
    out_images, out_anns, missing, read_sizes = [], [], [], {}
    kept = pushed_out = 0
    dropped = {"outside": 0, "evidence": 0}
    for entry in tqdm(data["images"], desc="cropcoco", unit="img", disable=not progress):
        name = entry.get("file_name", f"{entry['id']}.jpg")
        img = cv2.imread(str(images_dir / name), cv2.IMREAD_UNCHANGED)
        if img is None:
            missing.append(name)
            continue
        height, width = img.shape[:2]
        read_sizes[entry["id"]] = (width, height)
        rng = _image_rng(seed, entry["id"])
        anns = by_image.get(entry["id"], [])
        x0, y0, x1, y1 = cut_crop(rng, width, height, _pick_person(rng, anns, min_keypoints),
                                  min_in_image, cut_range=cut_range, min_keep=min_keep)
        out_name = Path(name).name
        if not cv2.imwrite(str(out_dir / "images" / out_name), img[y0:y1, x0:x1]):
            missing.append(name)
            continue
        out_images.append(dict(entry, file_name=out_name, width=x1 - x0, height=y1 - y0,
                               crop=[x0, y0, x1 - x0, y1 - y0]))
        for ann in anns:
            new, pushed = crop_annotation(ann, (x0, y0, x1, y1), min_in_image)
            if new is None:
                dropped[pushed] += 1
            else:
                kept += 1
                pushed_out += pushed
                out_anns.append(new)
    result = dict(data, images=out_images, annotations=out_anns)
    result["info"] = dict(data.get("info") or {}, cropcoco={"seed": seed, "source": str(ann_path)})
    dump_json(result, out_dir / "annotations.json")
    before = area_table(_sized(data, read_sizes), padding)
    after = area_table(result, padding)
    summary = {
        "images_in": len(data["images"]), "images_written": len(out_images),
        "images_missing": len(missing), "missing_files": missing[:20],
        "instances_in": len(data["annotations"]), "instances_kept": kept,
        "instances_dropped": sum(dropped.values()), "dropped_outside_crop": dropped["outside"],
        "dropped_too_little_evidence": dropped["evidence"],
        "keypoints_pushed_out": pushed_out, "seed": seed,
        "annotations": str(out_dir / "annotations.json"), "images_dir": str(out_dir / "images"),
        "areas_before": before, "areas_after": after,
    }
    if verbose:
        print("before (input):")
        print(format_area_table(before))
        print("after (cropped):")
        print(format_area_table(after))
        print(f"images: {len(out_images)} written, {len(missing)} missing or unreadable"
              + (f" (e.g. {', '.join(missing[:3])})" if missing else ""))
        print(f"instances: {kept} kept, {dropped['outside']} dropped (box outside the crop), "
              f"{dropped['evidence']} dropped (fewer than {min_in_image} keypoints left in the image); "
              f"{pushed_out} keypoints pushed out of the image (v=3)")
        print(f"wrote {out_dir / 'annotations.json'}")
    return summary
