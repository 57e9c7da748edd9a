"""Split a COCO keypoints file into two halves by image id parity (even / odd), e.g. to
calibrate on one half of the validation set and report on the other.

    python tools/split_coco.py ../shared/data/coco_train/gt.json out/splits
    -> out/splits/even.json, out/splits/odd.json (same images folder as the input)
"""
import json
import sys
from pathlib import Path


def main(ann: str, out_dir: str) -> None:
    data = json.loads(Path(ann).read_text())
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, parity in (("even", 0), ("odd", 1)):
        ids = {img["id"] for img in data["images"] if img["id"] % 2 == parity}
        half = dict(data, images=[i for i in data["images"] if i["id"] in ids],
                    annotations=[a for a in data["annotations"] if a["image_id"] in ids])
        people = sum(1 for a in half["annotations"] if a.get("num_keypoints", 0) > 0 and not a.get("iscrowd", 0))
        (out / f"{name}.json").write_text(json.dumps(half))
        print(f"{out / f'{name}.json'}: {len(ids)} images, {people} people with keypoints")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
