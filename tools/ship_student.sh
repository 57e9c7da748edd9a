#!/usr/bin/env bash
# Calibrate a trained student checkpoint and install it as the shipped default pose model:
#   tools/ship_student.sh TRAINED.pt [COCO_DIR]       (COCO_DIR default ../shared/data/coco_train)
# 1. splits COCO_DIR/gt.json by image-id parity (tools/split_coco.py) and makes the CropCOCO twin
#    of the even half (seed 1), so calibration sees in- and out-of-window keypoints;
# 2. training.calibrate fits the map temperature, the decode sharpness and the presence threshold
#    (no flip test, as deployed) on that twin, then the coverage table (split conformal, per keypoint
#    group, box size (medium-or-smaller / large) and box position) on the even half AND its twin (the odd half stays unseen by
#    calibration, for reporting: probpose coverage --ann "$work/splits/odd.json" ...);
# 3. writes models/probpose_student.pt (calibrated), exports models/probpose_student.onnx + .json
#    (bisection Sparsemax), and rewrites models/SHA256SUMS.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=${1:?usage: tools/ship_student.sh TRAINED.pt [COCO_DIR]}
coco=${2:-../shared/data/coco_train}
py=.venv/bin/python
work=out/ship_student
mkdir -p "$work"
$py tools/split_coco.py "$coco/gt.json" "$work/splits"
[ -f "$work/splits/even_crop/annotations.json" ] || \
  .venv/bin/probpose cropcoco --ann "$work/splits/even.json" --images "$coco/images" --out "$work/splits/even_crop" --seed 1
$py -m training.calibrate --checkpoint "$ckpt" --ann "$work/splits/even_crop/annotations.json" \
    --images "$work/splits/even_crop/images" --out models/probpose_student.pt --plots "$work/calibration" --quiet \
    --coverage-data "$work/splits/even.json" "$coco/images" \
    --coverage-data "$work/splits/even_crop/annotations.json" "$work/splits/even_crop/images" --require-coverage --coverage-by-bucket \
    --no-flip-test  # the node, probpose predict and the demo run without the flip test
# bisect Sparsemax: the same maps (to float rounding) without TopK's sort, ~15 % faster per person on ORT
.venv/bin/probpose export --model models/probpose_student.pt --onnx models/probpose_student.onnx --sparsemax bisect
(cd models && sha256sum $(ls | grep -v -x -e NOTICE -e SHA256SUMS) > SHA256SUMS)  # every shipped file
cat models/SHA256SUMS
