"""Convert a TF.js graph model (model.json + .bin shards) or a TF frozen graph (.pb) to ONNX.

Runs in a throwaway venv with ``tensorflow-cpu`` and ``tf2onnx`` (see tools/build_models.sh);
nothing of it is imported by probpose_core. Steps: the JSON topology is parsed into a TF
GraphDef; the weights manifest is read (float32 / int32, float16- or uint8-quantised) into
the Const nodes; the TF.js-only fused ops (``FusedDepthwiseConv2dNative``, and
``_FusedConv2D`` for tf2onnx's sake) are split back into conv + BiasAdd + activation; the
graph is run once in TensorFlow and converted with tf2onnx; the ONNX output is checked
against TensorFlow on a random input.

    python tools/tf_to_onnx.py models/movenet-thunder.json out.onnx [--opset 17]
    python tools/tf_to_onnx.py frozen.pb out.onnx --input NODE:1,300,300,3 --outputs A:0,B:0

For a frozen graph, ``--input`` replaces a node by a float32 placeholder of the given shape
(to cut away pre-processing loops) and ``--outputs`` names the tensors to keep (to cut away
post-processing such as TF Object Detection API's NMS loops).
"""
import argparse
import json
from pathlib import Path

import numpy as np
import tensorflow as tf
from google.protobuf import json_format

ACTIVATIONS = {"Relu": "Relu", "Relu6": "Relu6", "Elu": "Elu", "LeakyRelu": "LeakyRelu", "Sigmoid": "Sigmoid"}


def read_weights(manifest: list, folder: Path) -> dict:
    """Weights manifest -> {name: ndarray} (de-quantised)."""
    out = {}
    for group in manifest:
        data = b"".join((folder / p).read_bytes() for p in group["paths"])
        offset = 0
        for w in group["weights"]:
            shape, dtype, quant = w["shape"], w["dtype"], w.get("quantization")
            count = int(np.prod(shape)) if shape else 1
            if quant and quant["dtype"] == "float16":
                arr, nbytes = np.frombuffer(data, np.float16, count, offset).astype(np.float32), 2 * count
            elif quant and quant["dtype"] == "uint8":
                q = np.frombuffer(data, np.uint8, count, offset)
                arr, nbytes = (q * quant["scale"] + quant["min"]).astype(np.float32), count
            elif quant:
                raise ValueError(f"unsupported quantisation {quant} for {w['name']}")
            else:
                arr = np.frombuffer(data, np.dtype(dtype if dtype != "bool" else np.bool_), count, offset)
                nbytes = arr.nbytes
            out[w["name"]] = arr.reshape(shape).copy()
            offset += nbytes
    return out


def split_fused(graph_def) -> None:
    """Replace TF.js fused conv nodes by conv + BiasAdd (+ activation), same output name."""
    nodes = []
    for node in graph_def.node:
        if node.op not in ("FusedDepthwiseConv2dNative", "_FusedConv2D"):
            nodes.append(node)
            continue
        fused = [op.decode() for op in node.attr["fused_ops"].list.s]
        conv = tf.compat.v1.NodeDef(name=node.name + "/conv",
                                    op="DepthwiseConv2dNative" if node.op.startswith("Fused") else "Conv2D")
        conv.input.extend(node.input[:2])
        for key in ("T", "strides", "padding", "dilations", "data_format", "explicit_paddings"):
            if key in node.attr and not (key == "explicit_paddings" and conv.op != "Conv2D"):
                conv.attr[key].CopyFrom(node.attr[key])
        last, chain = conv.name, [conv]
        extra = list(node.input[2:])
        for i, op in enumerate(fused):
            if op == "BiasAdd":
                n = tf.compat.v1.NodeDef(name=f"{node.name}/bias", op="BiasAdd")
                n.input.extend([last, extra.pop(0)])
            elif op in ACTIVATIONS:
                n = tf.compat.v1.NodeDef(name=f"{node.name}/act{i}", op=ACTIVATIONS[op])
                n.input.append(last)
                if op == "LeakyRelu":
                    n.attr["alpha"].f = node.attr["leakyrelu_alpha"].f
            elif op == "Prelu":
                raise ValueError(f"{node.name}: Prelu fused op is not supported")
            else:
                raise ValueError(f"{node.name}: unknown fused op {op}")
            n.attr["T"].CopyFrom(node.attr["T"])
            chain.append(n)
            last = n.name
        chain[-1].name = node.name  # consumers keep reading the original name
        for k, n in enumerate(chain[1:], 1):
            n.input[0] = chain[k - 1].name
        nodes += chain
    del graph_def.node[:]
    graph_def.node.extend(nodes)


def load_graph(model_json: Path):
    spec = json.loads(model_json.read_text())
    topology = spec["modelTopology"]
    graph_def = json_format.ParseDict({k: v for k, v in topology.items() if k in ("node", "versions", "library")},
                                      tf.compat.v1.GraphDef(), ignore_unknown_fields=True)
    weights = read_weights(spec["weightsManifest"], model_json.parent)
    for node in graph_def.node:
        if node.op == "Const" and node.name in weights:
            # TF.js stores int64 constants as int32: keep the dtype the graph declares
            dtype = tf.as_dtype(node.attr["dtype"].type) if node.attr["dtype"].type else tf.float32
            node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(weights[node.name].astype(dtype.as_numpy_dtype)))
    split_fused(graph_def)
    sig = spec.get("signature") or spec.get("userDefinedMetadata", {}).get("signature")
    inputs = {k: v for k, v in sig["inputs"].items()}
    outputs = {k: v for k, v in sig["outputs"].items()}
    return graph_def, inputs, outputs


def load_frozen(pb: Path, input_spec: str, outputs: str):
    """Frozen GraphDef cut between a new float32 placeholder and the given output tensors."""
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(pb.read_bytes())
    node_name, shape = input_spec.split(":")
    dims = [int(v) for v in shape.split(",")]
    for node in graph_def.node:
        if node.name == node_name:
            node.Clear()
            node.name, node.op = node_name, "Placeholder"
            node.attr["dtype"].type = tf.float32.as_datatype_enum
            node.attr["shape"].shape.CopyFrom(tf.TensorShape(dims).as_proto())
            break
    else:
        raise ValueError(f"{pb}: no node named {node_name}")
    out_names = outputs.split(",")
    graph_def = tf.compat.v1.graph_util.extract_sub_graph(graph_def, [n.split(":")[0] for n in out_names])
    shape_spec = {"tensorShape": {"dim": [{"size": str(d)} for d in dims]}, "dtype": "DT_FLOAT"}
    return graph_def, {node_name + ":0": shape_spec}, {n: {} for n in out_names}


def tensor_name(key: str, spec: dict) -> str:
    name = spec.get("name", key)
    return name if ":" in name else name + ":0"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model_json", type=Path, help="TF.js model.json or frozen .pb")
    ap.add_argument("out", type=Path)
    ap.add_argument("--opset", type=int, default=17)
    ap.add_argument("--input", help="frozen graph only: NODE:d0,d1,... becomes a float32 placeholder")
    ap.add_argument("--outputs", help="frozen graph only: comma-separated output tensor names")
    args = ap.parse_args()
    if args.model_json.suffix == ".pb":
        if not (args.input and args.outputs):
            ap.error("a frozen graph (.pb) needs --input and --outputs")
        graph_def, inputs, outputs = load_frozen(args.model_json, args.input, args.outputs)
    else:
        graph_def, inputs, outputs = load_graph(args.model_json)
    in_names = [tensor_name(k, v) for k, v in inputs.items()]
    out_names = sorted(tensor_name(k, v) for k, v in outputs.items())
    rng = np.random.default_rng(0)
    feeds = {}
    for (key, spec), name in zip(inputs.items(), in_names):
        shape = [max(1, int(d.get("size", 1))) for d in spec["tensorShape"]["dim"]]  # -1 (batch) -> 1
        feeds[name] = (rng.integers(0, 255, shape).astype(np.int32) if spec["dtype"] == "DT_INT32"
                       else rng.random(shape, dtype=np.float32))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    with tf.compat.v1.Session(graph=graph) as sess:
        expected = sess.run(out_names, feeds)

    import onnxruntime as ort
    import tf2onnx
    model_proto, _ = tf2onnx.convert.from_graph_def(graph_def, input_names=in_names, output_names=out_names,
                                                   opset=args.opset)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(model_proto.SerializeToString())
    sess = ort.InferenceSession(str(args.out), providers=["CPUExecutionProvider"])
    got = sess.run(out_names, {n: feeds[n] for n in in_names})
    for name, e, g in zip(out_names, expected, got):
        print(f"{name}: shape {tuple(g.shape)} max |onnx - tf| = {np.abs(np.asarray(e, np.float64) - g).max():.2e}")
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.1f} MB); inputs {in_names}, outputs {out_names}")


if __name__ == "__main__":
    main()
