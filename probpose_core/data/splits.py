"""The house's calibration / test split of a labelled COCO set: by image-id parity.

Images with an **even** id are calibration data: ``tools/ship_student.sh`` fits the shipped
model's map temperature, presence threshold and coverage table on the even half of
``coco_train`` and on its CropCOCO twin. Images with an **odd** id are held out: coverage and the
other calibration numbers are reported on them (``probpose demo``, ``probpose coverage --ann
odd.json``). ``tools/split_coco.py`` writes the two halves with :func:`write_halves`.
"""
from pathlib import Path

from ..jsonio import dump_json, load_json

#: image-id parity of each half
PARITY = {"even": 0, "odd": 1}
#: the half calibration uses and the half reports use
CALIBRATION_HALF, HELD_OUT_HALF = "even", "odd"


def half(data: dict, name: str) -> dict:
    """The COCO dict ``data`` cut to the images (and their annotations) of half ``name`` ("even" / "odd")."""
    ids = {img["id"] for img in data["images"] if img["id"] % 2 == PARITY[name]}
    return dict(data, images=[i for i in data["images"] if i["id"] in ids],
                annotations=[a for a in data["annotations"] if a["image_id"] in ids])


def write_halves(ann, out_dir, names=tuple(PARITY)) -> dict[str, Path]:
    """Write ``out_dir/<name>.json`` for each half in ``names`` of the COCO file ``ann`` (same
    images folder); returns ``{name: path}``."""
    data = load_json(ann, "annotation file")
    paths = {}
    for name in names:
        paths[name] = Path(out_dir) / f"{name}.json"
        dump_json(half(data, name), paths[name], compact=True)
    return paths


def people(data: dict) -> int:
    """People with annotated keypoints (not crowd) in COCO dict ``data``."""
    return sum(1 for a in data["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0))
