"""Split a COCO keypoints file into two halves by image id parity (even / odd), the house's
calibration / test split (:mod:`probpose_core.data.splits`: calibrate on the even half, report
on the odd one).

    .venv/bin/python tools/split_coco.py ../shared/data/coco_train/gt.json out/splits
    -> out/splits/even.json, out/splits/odd.json (same images folder as the input)
"""
import sys

from probpose_core.data.splits import people, write_halves
from probpose_core.jsonio import load_json


def main(ann: str, out_dir: str) -> None:
    for name, path in write_halves(ann, out_dir).items():
        data = load_json(path)
        print(f"{path}: {len(data['images'])} images, {people(data)} people with keypoints")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
