"""Static int8 quantisation of an exported pose model (ONNX Runtime, QDQ, per-channel weights).

    .venv/bin/python tools/quantize_pose.py --model models/probpose_student.onnx \
        --out out/int8/probpose_student.int8.onnx

Calibration crops come from training footage only: person boxes found by the shipped detector
on frames of the unlabelled clips in ../shared/data/video (read through ``training.distill``'s
``video_frames``, which stops before held-out frames: ``vtest.avi`` 600+, ../shared/reference/ASSETS.md), warped and
normalised by ``Pipeline.crops`` exactly as at run time. coco_train, the yardstick the int8
model is judged on, is never read here.

What stays float: each output's tail, from the output back to and including its last
convolution, i.e. the map layer and the Sparsemax after it (a bisection over the map logits
whose threshold an int8 grid would shift), and the presence / visibility / OKS-quality
branches' last convolution and sigmoid. Everything before (the Lite-HRNet backbone, the
deconvolutions, the branches' first layers) is quantised: activations uint8 (asymmetric),
weights int8 per output channel, ranges: the moving average of each batch's min / max over the
calibration crops (MinMax; ORT's histogram methods, percentile / entropy, hold every activation of
every crop in memory: an OOM at 256 crops here).

Measured on the shipped student (issue 18; one ``training.compare`` run on the odd half of
coco_train, float vs int8): AP 0.542 -> 0.297, coverage@0.9 0.903 -> 0.844, network 24.0 vs
23.9 ms per person: not shipped. Lite-HRNet does not survive per-tensor uint8 activations (the
signal-to-quantisation-noise ratio falls to ~6 dB in the first stage's depthwise convolutions);
quantising only the convolutions, keeping the depthwise ones float, or percentile ranges kept
30-46 % of map peaks within 1 px of float and were no faster (ORT inserts a Transpose and Q/DQ
around every float op between the QLinearConvs).

Writes the int8 ``.onnx`` and its sidecar: the float model's sidecar (calibration, codec) with
the new file's SHA-256 and a ``quantization`` entry naming the method, the crops and what stayed
float. Judge it with ``python -m training.compare --model FLOAT.onnx,INT8.onnx`` (AP, ms per
person) and ``probpose coverage --model INT8.onnx``; ship it only if AP drops by <= 0.01 and
coverage holds (issue 18).
"""
import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from probpose_core.jsonio import dump_json  # noqa: E402
from probpose_core.runtime.base import file_sha256, load_onnx, model_sidecar, sidecar_path  # noqa: E402

VIDEO_DIR = REPO.parent / "shared" / "data" / "video"


def footage_crops(model_path, video_dir=VIDEO_DIR, count: int = 256, frames_per_clip: int = 12,
                  people_per_frame: int = 3, log=print) -> np.ndarray:
    """``(count, 3, H, W)`` float32 normalised crops of people the shipped detector finds on
    ``frames_per_clip`` evenly spaced frames of every clip under ``video_dir`` (at most
    ``people_per_frame`` per frame, highest scores first), taken evenly over the clips."""
    import cv2

    from probpose_core.detection import make_detector
    from probpose_core.pipeline import Pipeline
    from probpose_core.runtime import make_runner
    from training.distill import HELD_OUT_VIDEO_FRAMES, VIDEO_EXTS, video_frames

    pipe = Pipeline(make_runner(model_path, "ort"))
    detector = make_detector()
    clips = sorted(p for p in Path(video_dir).rglob("*") if p.suffix.lower() in VIDEO_EXTS)
    if not clips:
        raise SystemExit(f"no clips under {video_dir}")
    per_clip = []
    for clip in clips:
        cap = cv2.VideoCapture(str(clip))
        total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()
        total = min(total, HELD_OUT_VIDEO_FRAMES.get(clip.stem.lower(), total))
        wanted = set(np.linspace(0, max(total - 2, 0), frames_per_clip).astype(int).tolist())
        crops = []
        # distill's reader: the one guard that stops before a clip's held-out frames
        for _, rgb in video_frames(clip, 1, skip=lambda index: index not in wanted):
            if rgb is None:
                continue
            boxes, scores = detector.detect(rgb)
            keep = np.argsort(-np.asarray(scores))[:people_per_frame]
            if len(keep):
                crops.extend(pipe.crops(rgb, np.asarray(boxes)[keep])[0])
        per_clip.append(crops)
        log(f"  {clip.relative_to(video_dir)}: {len(per_clip[-1])} crops")
    # take evenly over the clips (round robin) so no one long clip dominates the ranges
    order = [c[i] for i in range(max(len(c) for c in per_clip)) for c in per_clip if i < len(c)]
    if len(order) < count:
        log(f"only {len(order)} crops found (asked for {count})")
    return np.stack(order[:count])


def float_tail(model) -> list[str]:
    """Names of the nodes from each graph output back to and including its last Conv: the tail
    kept in float (Sparsemax after the map layer; the presence / visibility / OKS sigmoids)."""
    producer = {out: node for node in model.graph.node for out in node.output}
    tail, stack = {}, [o.name for o in model.graph.output]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in tail:
            continue
        tail[node.name] = node
        if node.op_type != "Conv":
            stack.extend(node.input)
    return list(tail)


class _Reader:
    """onnxruntime CalibrationDataReader over crops in batches."""

    def __init__(self, crops: np.ndarray, batch: int = 8):
        self.batches = iter([crops[i:i + batch] for i in range(0, len(crops), batch)])

    def get_next(self):
        batch = next(self.batches, None)
        return None if batch is None else {"images": batch}


def quantize(model_path, out_path, crops: np.ndarray, log=print) -> Path:
    """Write the QDQ int8 model of ``model_path`` calibrated on ``crops`` and its sidecar."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quant_pre_process, quantize_static

    model_path, out_path = Path(model_path), Path(out_path)
    sidecar = model_sidecar(model_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(model_path), str(prepared), skip_symbolic_shape=True)
        keep_float = float_tail(load_onnx(prepared))  # names after the pre-processing's graph optimisation
        quantize_static(str(prepared), str(out_path), _Reader(crops), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=keep_float,
                        extra_options={"CalibMovingAverage": True})
    dump_json(dict(sidecar, onnx_sha256=file_sha256(out_path), quantization={
        "type": "onnxruntime static QDQ", "activations": "uint8", "weights": "int8 per channel",
        "calibration": {"method": "minmax, moving average", "crops": len(crops),
                        "source": "shipped detector's person boxes on ../shared/data/video (training footage)"},
        "float_nodes": len(keep_float), "float_model_sha256": file_sha256(model_path)}), sidecar_path(out_path))
    log(f"wrote {out_path} ({out_path.stat().st_size / 1e6:.1f} MB; {len(keep_float)} tail nodes in float) "
        f"and {sidecar_path(out_path)}")
    return out_path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(REPO / "models" / "probpose_student.onnx"),
                        help="the float .onnx (+ sidecar) to quantise (default: the shipped student)")
    parser.add_argument("--out", default="out/int8/probpose_student.int8.onnx", help="int8 .onnx to write")
    parser.add_argument("--videos", default=str(VIDEO_DIR), help="folder of training clips for the calibration crops")
    parser.add_argument("--crops", type=int, default=256, help="calibration crops (default 256)")
    args = parser.parse_args(argv)
    print(f"calibration crops from {args.videos}:")
    crops = footage_crops(args.model, args.videos, args.crops)
    quantize(args.model, args.out, crops)
    return 0


if __name__ == "__main__":
    sys.exit(main())
