#!/usr/bin/env bash
# Prepared GPU check of issue 10 item 14 (TensorRT FP16 vs ONNX Runtime CUDA vs torch: parity and
# persons/s at batch 1/8/32 for ViT-S and the shipped student). Not run on the development machines
# (no GPU); see tools/trt_check.py for what it needs and measures. Writes the table to $OUT.
#   OUT=/some/dir PYTHON=python3 bash tools/trt_check.sh [--budget-s 540] [--no-ablation]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/trt_check}"
PYTHON="${PYTHON:-python3}"
mkdir -p "$OUT"
PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" tools/trt_check.py --out "$OUT" "$@"
