"""Pose results: ``Human`` / ``Keypoint`` dataclasses and their JSON / COCO-results forms.

Everything is in IMAGE coordinates (pixels, x right, y down). The pipeline produces these,
the ROS node turns them into messages and ``probpose predict`` writes them as COCO results.

JSON form of one human (:func:`humans_to_json`)::

    {"bbox": [x, y, w, h], "score": s, "box_score": b, "id": null,
     "keypoints": [{"name": "nose", "x": .., "y": .., "presence": .., "visibility": ..,
                    "oks_quality": .., "covariance": [[sxx, sxy], [sxy, syy]] or null,
                    "regions": {"0.5": [[[x, y], ...], ...]}}, ...]}

Credible levels become string keys in JSON and floats again in :func:`humans_from_json`; a
covariance that is not finite (an all-zero map) is written as null and read back as NaN.

COCO results form (:func:`to_coco_results`, the exococotools format read by
``probpose eval --extended``): ``keypoints`` as 17 (x, y, presence) triplets, ``visibilities``
(17 numbers), ``score``, ``image_id``, ``category_id`` and, if asked, ``bbox``.
"""
import math
from dataclasses import dataclass, field

import numpy as np

from .errors import InputError
from .jsonio import dump_json, load_json
from .keypoints import NUM_KEYPOINTS


@dataclass
class Keypoint:
    """One keypoint of one person.

    ``x, y``: decoded location (image px), meaningful when ``presence`` is high;
    ``presence``: probability that the keypoint lies inside the activation window;
    ``visibility``: probability that it is visible; ``oks_quality``: predicted OKS of (x, y);
    ``covariance (2, 2)``: of the probability map, in image px^2;
    ``regions``: credible level q -> outlines ((M, 2) arrays, image px) of the smallest region
    holding q of the map's mass (empty for keypoints the pipeline judged absent).
    """

    name: str
    x: float
    y: float
    presence: float
    visibility: float
    oks_quality: float
    covariance: np.ndarray = field(default_factory=lambda: np.full((2, 2), np.nan))
    regions: dict = field(default_factory=dict)


@dataclass
class Human:
    """One person: ``bbox`` xywh (image px), ``score`` (the pose score, see the pipeline),
    ``keypoints`` (COCO-17 order), ``id`` (a track id, None when untracked) and ``box_score``
    (the detector's confidence of the box; 1.0 for given boxes)."""

    bbox: tuple
    score: float
    keypoints: list
    id: object = None
    box_score: float = 1.0

    def keypoint_array(self) -> np.ndarray:
        """(K, 5) float64: x, y, presence, visibility, oks_quality per keypoint, in table order."""
        return np.array([[k.x, k.y, k.presence, k.visibility, k.oks_quality]
                         for k in self.keypoints], dtype=np.float64).reshape(-1, 5)


def _finite_or_none(cov) -> list | None:
    cov = np.asarray(cov, dtype=np.float64)
    return cov.tolist() if np.isfinite(cov).all() else None


def _keypoint_to_json(kp: Keypoint) -> dict:
    return {
        "name": kp.name,
        "x": float(kp.x), "y": float(kp.y),
        "presence": float(kp.presence),
        "visibility": float(kp.visibility),
        "oks_quality": float(kp.oks_quality),
        "covariance": _finite_or_none(kp.covariance),
        "regions": {repr(float(q)): [np.asarray(p, dtype=np.float64).reshape(-1, 2).tolist() for p in polys]
                    for q, polys in kp.regions.items()},
    }


def humans_to_json(humans) -> list[dict]:
    """Plain-JSON form of a list of :class:`Human` (see the module docstring)."""
    return [{
        "bbox": [float(v) for v in h.bbox],
        "score": float(h.score),
        "box_score": float(h.box_score),
        "id": h.id,
        "keypoints": [_keypoint_to_json(k) for k in h.keypoints],
    } for h in humans]


def _keypoint_from_json(d: dict, where: str) -> Keypoint:
    try:
        cov = d.get("covariance")
        cov = np.full((2, 2), np.nan) if cov is None else np.asarray(cov, dtype=np.float64).reshape(2, 2)
        regions = {float(q): [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polys]
                   for q, polys in d.get("regions", {}).items()}
        return Keypoint(name=str(d["name"]), x=float(d["x"]), y=float(d["y"]), presence=float(d["presence"]),
                        visibility=float(d["visibility"]), oks_quality=float(d["oks_quality"]),
                        covariance=cov, regions=regions)
    except KeyError as exc:
        raise InputError(f"{where} has no {exc.args[0]!r}") from None
    except (TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"{where} is malformed: {exc}") from None


def humans_from_json(data) -> list[Human]:
    """Inverse of :func:`humans_to_json`; InputError naming the first malformed entry."""
    if not isinstance(data, list):
        raise InputError(f"humans JSON must be a list, got {type(data).__name__}")
    humans = []
    for i, d in enumerate(data):
        where = f"human #{i}"
        if not isinstance(d, dict):
            raise InputError(f"{where} is not an object")
        for key in ("bbox", "score", "keypoints"):
            if key not in d:
                raise InputError(f"{where} has no {key!r}")
        if not isinstance(d["keypoints"], list):
            raise InputError(f"{where}: 'keypoints' must be a list")
        kps = []
        for j, k in enumerate(d["keypoints"]):
            if not isinstance(k, dict):
                raise InputError(f"{where} keypoint #{j} is not an object")
            kps.append(_keypoint_from_json(k, f"{where} keypoint #{j}"))
        try:
            bbox = tuple(float(v) for v in d["bbox"])
            score, box_score = float(d["score"]), float(d.get("box_score", 1.0))
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'bbox', 'score' and 'box_score' must be numbers") from None
        if len(bbox) != 4:
            raise InputError(f"{where}: 'bbox' must be [x, y, w, h]")
        humans.append(Human(bbox=bbox, score=score, keypoints=kps, id=d.get("id"), box_score=box_score))
    return humans


def write_humans(humans, path) -> None:
    """Write :func:`humans_to_json` of ``humans`` to ``path``."""
    dump_json(humans_to_json(humans), path)


def read_humans(path) -> list[Human]:
    """Read a file written by :func:`write_humans`."""
    return humans_from_json(load_json(path, "humans file"))


def to_coco_results(image_id, humans, category_id: int = 1, bbox: bool = False) -> list[dict]:
    """COCO keypoint results (exococotools format) of the people of one image.

    Each keypoint becomes ``x, y, presence``; ``visibilities`` holds the visibility
    probabilities; ``score`` is the human's score. ``bbox=True`` adds the box; note that
    pycocotools/exococotools then take every prediction's area from its box instead of from
    the keypoints' extent (the official results carry no box, hence the default).
    Non-finite numbers raise InputError (JSON cannot hold them).
    """
    out = []
    for i, h in enumerate(humans):
        if len(h.keypoints) != NUM_KEYPOINTS:
            raise InputError(f"human #{i} has {len(h.keypoints)} keypoints; COCO results need {NUM_KEYPOINTS}")
        triplets = [float(v) for k in h.keypoints for v in (k.x, k.y, k.presence)]
        vis = [float(k.visibility) for k in h.keypoints]
        values = triplets + vis + [float(h.score)] + ([float(v) for v in h.bbox] if bbox else [])
        if not all(math.isfinite(v) for v in values):
            raise InputError(f"human #{i} of image {image_id!r} has non-finite values")
        result = {"image_id": image_id, "category_id": category_id, "keypoints": triplets,
                  "visibilities": vis, "score": float(h.score)}
        if bbox:
            result["bbox"] = [float(v) for v in h.bbox]
        out.append(result)
    return out


def write_coco_results(results, path) -> None:
    """Write a list of COCO results (from :func:`to_coco_results`, all images) to ``path``."""
    dump_json(list(results), path)

