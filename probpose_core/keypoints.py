"""The COCO-17 keypoint table, used everywhere in the house.

One row per keypoint: name, OKS sigma (COCO's value x 10, as COCO writes it), flip partner.
"""
import numpy as np

_TABLE = (
    # name,            10*sigma, flip partner
    ("nose",           0.26, "nose"),
    ("left_eye",       0.25, "right_eye"),
    ("right_eye",      0.25, "left_eye"),
    ("left_ear",       0.35, "right_ear"),
    ("right_ear",      0.35, "left_ear"),
    ("left_shoulder",  0.79, "right_shoulder"),
    ("right_shoulder", 0.79, "left_shoulder"),
    ("left_elbow",     0.72, "right_elbow"),
    ("right_elbow",    0.72, "left_elbow"),
    ("left_wrist",     0.62, "right_wrist"),
    ("right_wrist",    0.62, "left_wrist"),
    ("left_hip",       1.07, "right_hip"),
    ("right_hip",      1.07, "left_hip"),
    ("left_knee",      0.87, "right_knee"),
    ("right_knee",     0.87, "left_knee"),
    ("left_ankle",     0.89, "right_ankle"),
    ("right_ankle",    0.89, "left_ankle"),
)

NAMES: tuple[str, ...] = tuple(row[0] for row in _TABLE)
NUM_KEYPOINTS: int = len(NAMES)
INDEX: dict[str, int] = {name: i for i, name in enumerate(NAMES)}

#: OKS sigmas, shape (K,), float64: COCO's ``[.26, .25, ...] / 10.0``, computed exactly as
#: pycocotools does so that evaluation reproduces it bit for bit.
SIGMAS: np.ndarray = np.array([row[1] for row in _TABLE], dtype=np.float64) / 10.0
SIGMAS.flags.writeable = False

#: FLIP_INDEX[k] = index of the keypoint that k becomes after a horizontal flip.
FLIP_INDEX: tuple[int, ...] = tuple(INDEX[row[2]] for row in _TABLE)

#: Skeleton edges as index pairs (COCO's 19 limbs, 0-based).
SKELETON: tuple[tuple[int, int], ...] = tuple(
    (INDEX[a], INDEX[b])
    for a, b in (
        ("left_ankle", "left_knee"), ("left_knee", "left_hip"),
        ("right_ankle", "right_knee"), ("right_knee", "right_hip"),
        ("left_hip", "right_hip"), ("left_shoulder", "left_hip"),
        ("right_shoulder", "right_hip"), ("left_shoulder", "right_shoulder"),
        ("left_shoulder", "left_elbow"), ("right_shoulder", "right_elbow"),
        ("left_elbow", "left_wrist"), ("right_elbow", "right_wrist"),
        ("left_eye", "right_eye"), ("nose", "left_eye"), ("nose", "right_eye"),
        ("left_eye", "left_ear"), ("right_eye", "right_ear"),
        ("left_ear", "left_shoulder"), ("right_ear", "right_shoulder"),
    )
)

#: Upper-body keypoints (for half-body augmentation); the rest is lower body.
UPPER_BODY: tuple[int, ...] = tuple(range(0, 11))


def coco_category() -> dict:
    """The COCO 'person' category entry with keypoint names and 1-based skeleton."""
    return {
        "id": 1,
        "name": "person",
        "supercategory": "person",
        "keypoints": list(NAMES),
        "skeleton": [[a + 1, b + 1] for a, b in SKELETON],
    }
