"""Seeded generator of small GT / prediction sets for the evaluation cross-check.

Each case is a COCO keypoints GT dict (raw, before validate_coco), a predictions list in the
exococotools format, a presence threshold and a padding. The mix covers what the protocol
has special rules for: crowds, v = 0/1/2/3, points outside the image and the activation
window, images without GT or predictions, more predictions than GTs (beyond 20 per image),
tied scores, GT twins (tied similarities), degenerate boxes, ``num_keypoints == 0``, GT id 0 / negative ids,
``pad_to_contain``, presence outside [0, 1] or exactly at the threshold, predictions without
any present keypoint, predictions with a bbox, several categories.
"""
import numpy as np

K = 17


def _box(rng, integer: bool):
    side = float(np.exp(rng.uniform(np.log(4), np.log(350))))
    aspect = float(np.exp(rng.uniform(-1.2, 1.2)))
    w, h = side * aspect ** 0.5, side / aspect ** 0.5
    r = rng.random()
    if r < 0.04:
        w = 0.0
    elif r < 0.08:
        h = 0.0
    elif r < 0.10:
        w, h = 1e-3, 0.5
    x, y = rng.uniform(-60, 500, 2)
    box = [x, y, w, h]
    return [int(round(v)) for v in box] if integer else box


def _gt_keypoints(rng, box, profile: str, integer: bool):
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    reach = rng.choice([0.5, 0.8, 1.5], p=[0.6, 0.3, 0.1])
    pts = np.c_[cx + rng.uniform(-reach, reach, K) * max(w, 1), cy + rng.uniform(-reach, reach, K) * max(h, 1)]
    if profile == "visible":
        v = np.full(K, 2)
    elif profile == "mixed":
        v = rng.choice([0, 1, 2], K, p=[0.3, 0.3, 0.4])
    elif profile == "outside":
        v = rng.choice([0, 1, 2, 3], K, p=[0.2, 0.2, 0.3, 0.3])
        far = v == 3
        pts[far] += rng.choice([-1, 1], (far.sum(), 2)) * rng.uniform(0.3, 2.0, (far.sum(), 2)) * max(w, h, 1)
    elif profile == "only3":
        v = rng.choice([0, 3], K, p=[0.3, 0.7])
    elif profile == "single":
        v = np.zeros(K, dtype=int)
        v[rng.integers(K)] = rng.choice([1, 2, 3])
    else:  # "none": nothing labelled
        v = np.zeros(K, dtype=int)
    pts[v == 0] *= rng.random() < 0.5  # COCO often stores unlabelled points as (0, 0)
    if integer:
        pts = np.round(pts)
    return pts, v


def _gt_annotation(rng, image_id: int, ann_id: int, category: int, integer: bool, options: dict) -> dict:
    box = _box(rng, integer)
    profile = rng.choice(["visible", "mixed", "outside", "only3", "single", "none"],
                         p=[0.3, 0.25, 0.25, 0.07, 0.06, 0.07])
    pts, v = _gt_keypoints(rng, box, profile, integer)
    ann = {"id": ann_id, "image_id": image_id, "category_id": category, "bbox": box,
           "keypoints": np.c_[pts, v].ravel().tolist()}
    ann["keypoints"][2::3] = [int(x) for x in v]
    if integer:
        ann["keypoints"] = [int(x) for x in ann["keypoints"]]
    r = rng.random()
    if r < 0.15:
        ann["area"] = float(rng.choice([32.0 ** 2, 96.0 ** 2, 0.0]))
    elif r < 0.75:
        ann["area"] = box[2] * box[3] * float(rng.uniform(0.3, 0.9))
    # else: validate_coco fills w * h
    if rng.random() < options["crowd_rate"]:
        ann["iscrowd"] = 1
    if rng.random() < options["zero_num_kpts_rate"]:
        ann["num_keypoints"] = 0
    if rng.random() < options["pad_rate"]:
        ann["pad_to_contain"] = rng.uniform(0.5, 2.0, K).round(2).tolist()
    return ann


def _prediction(rng, image_id: int, category: int, near, integer: bool, options: dict) -> dict:
    if near is not None:
        pts, v, box, area = near
        scale = np.sqrt(max(area, 1.0)) * rng.choice([0.0, 0.02, 0.06, 0.15, 0.5], p=[0.15, 0.3, 0.25, 0.2, 0.1])
        xy = pts + rng.normal(0, 1, (K, 2)) * scale
        p_in = rng.uniform(0.3, 1.0, K)
        p_out = rng.uniform(0.0, 0.7, K)
        presence = np.where(v == 3, p_out, p_in)
    else:
        c = rng.uniform(-50, 500, 2)
        xy = c + rng.normal(0, rng.uniform(3, 80), (K, 2))
        presence = rng.uniform(0, 1, K)
    if integer:
        xy = np.round(xy)
    r = rng.random()
    if r < 0.05:
        presence[:] = 0.0                               # dropped by exococotools
    elif r < 0.12:
        presence[rng.integers(K, size=3)] = rng.choice([-0.2, 1.3, 0.0, 1.0])
    elif r < 0.25:
        presence[rng.integers(K, size=4)] = options["threshold"]  # exactly at the threshold
    presence = presence.round(options["presence_decimals"])
    keypoints = np.c_[xy, presence].ravel().tolist()
    if integer:
        keypoints[0::3] = [int(x) for x in keypoints[0::3]]
        keypoints[1::3] = [int(x) for x in keypoints[1::3]]
    pred = {"image_id": image_id, "keypoints": keypoints,
            "score": float(rng.choice(options["scores"])) if options["tied"] else float(rng.random())}
    if category != 1 or rng.random() < 0.5:
        pred["category_id"] = category
    if rng.random() < 0.7:
        pred["visibilities"] = rng.uniform(0, 1, K).round(3).tolist()
    return pred


def generate_case(seed: int):
    """(gt_raw, preds, presence_threshold, padding) for one seed."""
    rng = np.random.default_rng(seed)
    integer = rng.random() < 0.2
    options = {
        "crowd_rate": rng.choice([0.0, 0.15, 0.4]),
        "zero_num_kpts_rate": rng.choice([0.0, 0.0, 0.1]),
        "pad_rate": rng.choice([0.0, 0.0, 0.3]),
        "tied": rng.random() < 0.35,
        "scores": rng.choice([0.1, 0.5, 0.9, 1.0], size=3),
        "threshold": float(rng.choice([0.45, 0.45, 0.0, 1.0, 0.3, 0.5, 0.75])),
        "presence_decimals": int(rng.choice([1, 2, 6])),
    }
    categories = [1, 2] if rng.random() < 0.1 else [1]
    n_images = int(rng.integers(1, 6))
    image_ids = rng.choice(1000, n_images, replace=False).tolist()
    next_id = int(rng.choice([0, 1, 1, 1, -2, 500]))
    images, anns, preds = [], [], []
    for image_id in image_ids:
        images.append({"id": image_id, "width": 640, "height": 480})
        n_gt = int(rng.choice([0, 0, 1, 1, 2, 3, 4, 6]))
        for _ in range(n_gt):
            category = int(rng.choice(categories))
            ann = _gt_annotation(rng, image_id, next_id, category, integer, options)
            next_id += 1
            anns.append(ann)
            if rng.random() < 0.08:  # a twin: equal similarity to every prediction, so ties decide
                twin = {**ann, "id": next_id, "iscrowd": int(rng.random() < 0.5)}
                if rng.random() < 0.3:
                    twin["num_keypoints"] = 0
                if rng.random() < 0.5:  # ties then only where the OKS is exactly 1 (perfect predictions)
                    twin["area"] = float(rng.choice([500.0, 5000.0, 20000.0]))
                next_id += 1
                anns.append(twin)
            if rng.random() < 0.85:
                kp = np.asarray(ann["keypoints"], dtype=np.float64).reshape(K, 3)
                area = ann.get("area", ann["bbox"][2] * ann["bbox"][3])
                for _ in range(int(rng.choice([1, 1, 2, 3]))):
                    preds.append(_prediction(rng, image_id, category, (kp[:, :2], kp[:, 2], ann["bbox"], area),
                                             integer, options))
        n_fp = int(rng.choice([0, 0, 1, 3, 24], p=[0.4, 0.2, 0.2, 0.12, 0.08]))
        for _ in range(n_fp):
            category = int(rng.choice(categories + [3] if rng.random() < 0.05 else categories))
            preds.append(_prediction(rng, image_id, category, None, integer, options))
    if not anns:  # exococotools divides by the number of GT instances
        anns.append(_gt_annotation(rng, image_ids[0], next_id, 1, integer, options))
    order = rng.permutation(len(preds))
    preds = [preds[i] for i in order]
    if preds and rng.random() < 0.15:
        for p in preds:
            xs, ys = p["keypoints"][0::3], p["keypoints"][1::3]
            p["bbox"] = [min(xs), min(ys), (max(xs) - min(xs)) * float(rng.uniform(0.2, 3)), max(ys) - min(ys)]
    if options["presence_decimals"] <= 2 and preds and rng.random() < 0.5:
        values = [c for p in preds for c in p["keypoints"][2::3] if 0 < c < 1]
        if values:
            options["threshold"] = float(rng.choice(values))
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": c, "name": f"class{c}"} for c in categories]}
    padding = float(rng.choice([1.25, 1.25, 1.25, 1.0, 1.5, 1.1]))
    return gt, preds, options["threshold"], padding
