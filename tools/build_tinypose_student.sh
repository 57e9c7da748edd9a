#!/usr/bin/env bash
# Rebuild the shipped pose model (models/probpose_student.{pt,onnx,json}) from PP-TinyPose 256x192
# in ../shared/data/pp_tinypose, end to end (issue 17):
#   tools/build_tinypose_student.sh [SHARED_DATA]        (default ../shared/data)
# 1. tools/tinypose_student_init.py: PP-TinyPose's ONNX (translated from its OpenVINO IR, see
#    SHARED_DATA/pp_tinypose/README.md) copied into the Lite-HRNet student (exact, max |diff| ~1e-5),
#    and the same network as the house heatmap model (the teacher and the reference);
# 2. training.distill: PP-TinyPose's pseudo-labels (min score 0.3) on every 2nd frame of
#    SHARED_DATA/video and vtest.avi frames 0-598 (apt-get install opencv-doc; distill refuses 600+),
#    plus LSPet's labels (the teacher fills only the face);
# 3. training.train with training/configs/student_tinypose.yaml: backbone + map path frozen (run in
#    ONNX Runtime), the presence / visibility / OKS-quality branches trained, best epoch by Ex-AP on
#    the EVEN half of coco_train (the odd half stays unseen);
# 4. tools/ship_student.sh: calibration (temperature, decode sharpness, presence threshold,
#    coverage table) on the even half + its CropCOCO twin, export, SHA256SUMS.
# Resumable: each step is skipped when its output is there (delete it to redo); training resumes
# from its last.pt (a finished run stops at once). About 90 min on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
data=${1:-../shared/data}
py=.venv/bin/python
tp="$data/pp_tinypose/tinypose_256x192/model_from_ir.onnx"
vtest=/usr/share/doc/opencv-doc/examples/data/vtest.avi
[ -f "$tp" ] || { echo "missing $tp" >&2; exit 2; }
[ -f out/student_tinypose_init.pt ] || $py tools/tinypose_student_init.py --onnx "$tp" --out out/student_tinypose_init.pt
if [ ! -f out/build_models/teachers/tinypose_heatmap.onnx ]; then
  $py tools/tinypose_student_init.py --onnx "$tp" --map-kind heatmap --out out/tinypose_heatmap.pt
  .venv/bin/probpose export --model out/tinypose_heatmap.pt --onnx out/tinypose_heatmap.onnx
  mkdir -p out/build_models/teachers
  cp out/tinypose_heatmap.onnx out/tinypose_heatmap.json out/build_models/teachers/
fi
videos=(--video "$data/video")
if [ -f "$vtest" ]; then videos+=(--video "$vtest"); else echo "note: $vtest missing (apt-get install opencv-doc)" >&2; fi
[ -f out/distill_tp/pseudo_labels.json ] || \
  $py -m training.distill --out out/distill_tp --teachers tinypose --min-score 0.3 "${videos[@]}" --every 2 \
      --images "$data/lspet/images" --ann "$data/lspet/lspet.json"
$py tools/split_coco.py "$data/coco_train/gt.json" out/ship_student/splits
$py -m training.train --config training/configs/student_tinypose.yaml --resume auto \
      --set data.train_ann=out/distill_tp/pseudo_labels.json --set data.train_images=out/distill_tp/images \
      --set data.val_ann=out/ship_student/splits/even.json --set data.val_images="$data/coco_train/images"
tools/ship_student.sh out/student_tinypose/best.pt "$data/coco_train"
