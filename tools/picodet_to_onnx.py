"""Translate a PicoDet pedestrian OpenVINO IR (model.xml + model.bin, fp16 weights) to ONNX.

    .venv/bin/pip install openvino        # build-time only; not a runtime dependency
    .venv/bin/python tools/picodet_to_onnx.py ../shared/data/pp_tinypose/picodet_s_320_pedestrian \
        out/picodet/picodet_s_320_pedestrian.onnx --check-video demo/people.mp4

The IR (PaddleDetection's PicoDet-S-LCNet pedestrian detector exported without NMS, see
../shared/data/pp_tinypose/README.md and models/NOTICE) is read with OpenVINO, its input-independent
parts folded to constants (OpenVINO's ConstantFolding, then the remaining constant-only
Reshape / Broadcast / Unsqueeze / Concat here), and every remaining operation written as the
equivalent ONNX operator (opset 13, IR version 8 so onnxruntime >= 1.14 loads it); the fp16
weights are upcast to float32 exactly. Outputs are renamed ``boxes`` (1, N, 4) x0, y0, x1, y1 in
input pixels and ``scores`` (1, 1, N). An operation this script does not know stops it with its
name.

Check (always run; ``--check-video`` picks the frames, default demo/people.mp4, else random
inputs): the ONNX graph in ONNX Runtime (every frame) and in onnx's numpy reference evaluator
(first frame) against the IR in OpenVINO (f32 inference precision) on the same preprocessed
frames; the script prints the largest difference relative to each output's largest magnitude and
refuses (exit 1, no file written) when one is above ``--tolerance`` (1e-4). Scores are judged on
anchors scoring above 1e-3 (ONNX Runtime's fast sigmoid is 0 far in the tail, where the exact
score is ~1e-4; the all-anchor number is printed too).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13
IR_VERSION = 8
MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)


def read_ir(xml: Path):
    """The IR as an OpenVINO model with its constant subgraphs folded."""
    import openvino as ov
    from openvino import passes

    model = ov.Core().read_model(str(xml))
    manager = passes.Manager()
    manager.register_pass(passes.ConstantFolding())
    manager.run_passes(model)
    return model


class Translator:
    def __init__(self):
        self.nodes, self.initializers, self.consts, self.names = [], [], {}, {}
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{hint}_{self.count}"

    def name_of(self, output) -> str:
        """ONNX tensor name of an OpenVINO output (a constant becomes an initializer on first use)."""
        key = (output.get_node().get_friendly_name(), output.get_index())
        if key in self.names:
            return self.names[key]
        if key in self.consts:
            name = self.fresh("const")
            self.initializers.append(numpy_helper.from_array(self.consts[key], name))
            self.names[key] = name
            return name
        raise KeyError(f"no tensor for {key}")

    def const(self, output):
        return self.consts.get((output.get_node().get_friendly_name(), output.get_index()))

    def add_const(self, hint: str, value) -> str:
        name = self.fresh(hint)
        self.initializers.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(self, op_type: str, inputs, op, outputs=None, **attrs):
        outs = outputs or [self.fresh(op.get_friendly_name()) for _ in op.outputs()]
        self.nodes.append(helper.make_node(op_type, inputs, outs, name=self.fresh(op_type), **attrs))
        for i, out in enumerate(outs[:len(op.outputs())]):
            self.names[(op.get_friendly_name(), i)] = out
        return outs

    def fold(self, op, ins) -> np.ndarray | None:
        """Value of a constant-only operation (those OpenVINO's folding leaves), else None."""
        if any(v is None for v in ins):
            return None
        kind = op.get_type_name()
        if kind == "Reshape":
            shape = [d if not (d == 0 and op.get_attributes()["special_zero"]) else ins[0].shape[i]
                     for i, d in enumerate(ins[1].tolist())]
            return ins[0].reshape(shape)
        if kind == "Broadcast" and op.get_attributes()["mode"] == "bidirectional":
            return ins[0] * np.ones(ins[1], dtype=ins[0].dtype)
        if kind == "Unsqueeze":
            return np.expand_dims(ins[0], tuple(int(a) for a in np.ravel(ins[1])))
        if kind == "Concat":
            return np.concatenate(ins, axis=op.get_attributes()["axis"])
        if kind == "Convert":
            return ins[0].astype(np.float32 if ins[0].dtype == np.float16 else ins[0].dtype)
        return None

    def translate(self, model) -> onnx.ModelProto:
        inputs, outputs = [], []
        result_names = {}
        for op in model.get_ordered_ops():
            kind, attrs = op.get_type_name(), op.get_attributes()
            srcs = [i.get_source_output() for i in op.inputs()]
            if kind == "Constant":
                value = np.array(op.get_data())
                if value.dtype == np.float16:
                    value = value.astype(np.float32)
                self.consts[(op.get_friendly_name(), 0)] = value
                continue
            if kind == "Parameter":
                shape = [int(d) for d in op.get_output_partial_shape(0).to_shape()]
                name = op.get_output_tensor(0).get_any_name()
                inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
                self.names[(op.get_friendly_name(), 0)] = name
                continue
            folded = self.fold(op, [self.const(s) for s in srcs])
            if folded is not None:
                self.consts[(op.get_friendly_name(), 0)] = folded
                continue
            if kind == "Result":
                shape = [int(d) for d in op.get_input_partial_shape(0).to_shape()]
                result_names[self.name_of(srcs[0])] = shape
                continue
            x = self.name_of(srcs[0])
            if kind in ("Convolution", "GroupConvolution"):
                weights = self.const(srcs[1])
                if weights is None:
                    raise SystemExit(f"{op.get_friendly_name()}: weights are not constant")
                conv = {"strides": attrs["strides"], "dilations": attrs["dilations"]}
                if attrs["auto_pad"] not in ("explicit", "notset"):
                    raise SystemExit(f"{op.get_friendly_name()}: auto_pad {attrs['auto_pad']} not handled")
                conv["pads"] = list(attrs["pads_begin"]) + list(attrs["pads_end"])
                if kind == "GroupConvolution":  # (G, O/G, I/G, kh, kw) -> (O, I/G, kh, kw)
                    conv["group"] = weights.shape[0]
                    weights = weights.reshape((-1,) + weights.shape[2:])
                self.node("Conv", [x, self.add_const("w", weights.astype(np.float32))], op, **conv)
            elif kind in ("Add", "Multiply", "Subtract", "MatMul"):
                if attrs.get("auto_broadcast", "numpy") != "numpy":
                    raise SystemExit(f"{op.get_friendly_name()}: broadcast {attrs['auto_broadcast']} not handled")
                if attrs.get("transpose_a") or attrs.get("transpose_b"):
                    raise SystemExit(f"{op.get_friendly_name()}: transposed MatMul not handled")
                onnx_op = {"Add": "Add", "Multiply": "Mul", "Subtract": "Sub", "MatMul": "MatMul"}[kind]
                self.node(onnx_op, [x, self.name_of(srcs[1])], op)
            elif kind in ("Relu", "Sigmoid", "Sqrt"):
                self.node(kind, [x], op)
            elif kind == "HSwish":  # x * relu6(x + 3) / 6 (HardSwish is opset 14)
                gate = self.fresh("hsig")
                self.nodes.append(helper.make_node("HardSigmoid", [x], [gate], name=self.fresh("HardSigmoid"),
                                                   alpha=1.0 / 6, beta=0.5))
                self.node("Mul", [x, gate], op)
            elif kind == "HardSigmoid":
                alpha, beta = (float(self.const(s)) for s in srcs[1:3])
                self.node("HardSigmoid", [x], op, alpha=alpha, beta=beta)
            elif kind == "ReduceMean":
                self.node("ReduceMean", [x], op, axes=[int(a) for a in np.ravel(self.const(srcs[1]))],
                          keepdims=int(attrs["keep_dims"]))
            elif kind == "Reshape":
                shape = self.const(srcs[1])
                if shape is None or not attrs["special_zero"] and 0 in shape.tolist():
                    raise SystemExit(f"{op.get_friendly_name()}: dynamic or zero-dim reshape not handled")
                self.node("Reshape", [x, self.add_const("shape", shape.astype(np.int64))], op)
            elif kind == "Transpose":
                self.node("Transpose", [x], op, perm=[int(p) for p in self.const(srcs[1])])
            elif kind == "Unsqueeze":
                self.node("Unsqueeze", [x, self.add_const("axes", np.ravel(self.const(srcs[1])).astype(np.int64))], op)
            elif kind == "Concat":
                self.node("Concat", [self.name_of(s) for s in srcs], op, axis=attrs["axis"])
            elif kind == "Softmax":
                self.node("Softmax", [x], op, axis=attrs["axis"])
            elif kind == "Split":
                self.node("Split", [x], op, axis=int(self.const(srcs[1])))
            elif kind == "Interpolate":
                wanted = {"mode": "nearest", "shape_calculation_mode": "scales",
                          "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"}
                if any(attrs[k] != v for k, v in wanted.items()) or any(attrs["pads_begin"]) or any(attrs["pads_end"]):
                    raise SystemExit(f"{op.get_friendly_name()}: Interpolate {attrs} not handled")
                scales = self.add_const("scales", self.const(srcs[2]).astype(np.float32))
                self.node("Resize", [x, "", scales], op, mode="nearest", coordinate_transformation_mode="asymmetric",
                          nearest_mode="floor")
            else:
                raise SystemExit(f"operation {kind} ({op.get_friendly_name()}) is not handled by this translator")
        # name the outputs boxes (1, N, 4) and scores (1, 1, N)
        renames = {}
        for tensor, shape in result_names.items():
            renames[tensor] = "boxes" if shape[-1] == 4 else "scores"
        for node in self.nodes:
            node.output[:] = [renames.get(o, o) for o in node.output]
        outputs = [helper.make_tensor_value_info(renames[t], TensorProto.FLOAT, s) for t, s in result_names.items()]
        outputs.sort(key=lambda v: v.name)  # boxes, scores
        graph = helper.make_graph(self.nodes, "picodet_pedestrian", inputs, outputs, self.initializers)
        model_proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                        producer_name="probpose_ros tools/picodet_to_onnx.py")
        model_proto.ir_version = IR_VERSION
        onnx.checker.check_model(model_proto, full_check=True)
        return model_proto


def preprocess(frame_rgb: np.ndarray, size: int) -> np.ndarray:
    """The model's input for an RGB uint8 frame: whole frame resized, /255, ImageNet mean/std, NCHW."""
    import cv2

    x = cv2.resize(frame_rgb, (size, size), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    return ((x - MEAN) / STD).transpose(2, 0, 1)[None].astype(np.float32)


def check_inputs(video: Path | None, size: int, frames: int) -> list[np.ndarray]:
    import cv2

    if video is None or not video.is_file():
        rng = np.random.default_rng(0)
        print(f"no video ({video}): checking on {frames} random inputs")
        return [rng.standard_normal((1, 3, size, size)).astype(np.float32) for _ in range(frames)]
    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or frames
    blobs = []
    for index in np.linspace(0, total - 1, frames).astype(int):
        cap.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, bgr = cap.read()
        if ok:
            blobs.append(preprocess(bgr[:, :, ::-1], size))
    cap.release()
    print(f"checking on {len(blobs)} frames of {video}")
    return blobs


def compare(xml: Path, model_proto: onnx.ModelProto, blobs: list[np.ndarray], floor: float = 1e-3) -> dict:
    """Largest |ONNX - OpenVINO| / max|OpenVINO| per output over the blobs, for ONNX Runtime
    (all frames) and for onnx's reference evaluator (first frame: the translation itself, in
    numpy precision). ``scores>floor`` only looks at anchors where either score is above
    ``floor``: ONNX Runtime's fast sigmoid gives exactly 0 far out in the tail (input < -18 or so)
    where the exact value is ~1.5e-8, and the score's sqrt turns that into ~1e-4 at scores that
    no threshold ever keeps."""
    import onnxruntime as ort
    import openvino as ov
    from onnx.reference import ReferenceEvaluator

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(xml)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    worst = {}

    def note(key, value):
        worst[key] = max(worst.get(key, 0.0), value)

    for index, blob in enumerate(blobs):
        ov_out = [np.asarray(v) for v in compiled(blob).values()]
        runs = {"onnxruntime": session.run(None, {session.get_inputs()[0].name: blob})}
        if index == 0:
            runs["reference"] = ReferenceEvaluator(model_proto).run(None, {model_proto.graph.input[0].name: blob})
        for runtime, values in runs.items():
            for name, value in zip(names, values):
                ref = next(v for v in ov_out if v.shape == value.shape)
                scale = max(float(np.abs(ref).max()), 1e-12)
                note(f"{runtime} {name}", float(np.abs(value - ref).max()) / scale)
                if name == "scores":
                    kept = (ref > floor) | (value > floor)
                    note(f"{runtime} scores>{floor:g}", float(np.abs(value - ref)[kept].max(initial=0.0)) / scale)
    return worst


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ir_dir", type=Path, help="folder with model.xml + model.bin")
    ap.add_argument("output", type=Path, help="ONNX file to write")
    ap.add_argument("--check-video", type=Path, default=Path("demo/people.mp4"))
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--tolerance", type=float, default=1e-4)
    args = ap.parse_args(argv)
    xml = args.ir_dir / "model.xml"
    if not xml.is_file() or not xml.with_suffix(".bin").is_file():
        print(f"{args.ir_dir} has no model.xml + model.bin", file=sys.stderr)
        return 2
    model_proto = Translator().translate(read_ir(xml))
    size = model_proto.graph.input[0].type.tensor_type.shape.dim[-1].dim_value
    worst = compare(xml, model_proto, check_inputs(args.check_video, size, args.frames))
    print("vs OpenVINO (f32), max |diff| / max |OpenVINO| per output:")
    for key, value in worst.items():
        print(f"  {key:32s} {value:.2e}")
    checked = [v for k, v in worst.items() if k.endswith("boxes") or ">" in k]
    if max(checked) > args.tolerance:
        print(f"REFUSED: difference above {args.tolerance}; nothing written", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model_proto, str(args.output))
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.2f} MB, {len(model_proto.graph.node)} nodes, "
          f"opset {OPSET}, IR version {IR_VERSION})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
