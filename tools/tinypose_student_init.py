"""Build the CPU student's starting checkpoint from PP-TinyPose 256x192: Lite-HRNet + map layer.

PP-TinyPose 256x192 (PaddleDetection ``configs/keypoint/tiny_pose``, "tinypose_enhance", Apache-2.0;
the OpenVINO IR of guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose@0f6a4845, translated to
ONNX as ``../shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx``) is a top-down
heatmap model on a Lite-HRNet-18 backbone with folded batch norms. This script copies into
``PoseModel(lite_hrnet_config())``:

- every conv of the backbone (``probpose_core/models/lite_hrnet.py``: stem, transitions, shuffle
  blocks, fusion layers, top-down path);
- PP-TinyPose's last layers (depthwise 3x3 -> 1x1 to 40 ch -> ReLU -> 1x1 to 17 heatmaps) into the
  map path (``head.deconv_layers`` + ``head.final_layer``; the depthwise conv's bias is folded
  into the 1x1 after it, which is exact). The map logits start as PP-TinyPose's heatmaps; the
  presence / visibility / OKS-quality branches start fresh.

Convs are matched by position, not by name: both graphs (PP-TinyPose's and the student's own
ONNX export of the same path) are walked depth-first from the heatmap output, inputs in order,
and their convs listed in post-order; the two lists must agree in length and in every weight
shape, and the copy is then checked numerically.

    python tools/tinypose_student_init.py [--onnx ../shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx]
        [--out out/student_tinypose_init.pt] [--map-kind heatmap]

``--map-kind heatmap`` writes PP-TinyPose itself as the house's heatmap baseline (raw heatmaps,
UDP decode, presence = the heatmap maximum): the reference the student is compared with
(``training/compare_tinypose.py``) and the pseudo-label teacher (``training/teachers.py``).

Prints the largest difference between the student's map logits and PP-TinyPose's heatmaps
(ONNX Runtime, crops of demo/people.mp4); refuses (exit 1) above 1e-3 (heatmaps reach ~1).
"""
import argparse
import hashlib
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from probpose_core import geometry  # noqa: E402
from probpose_core.models.checkpoints import save_checkpoint  # noqa: E402
from probpose_core.runtime.export import clip_crops  # noqa: E402
from probpose_core.models.pose_model import build_model, gmacs, lite_hrnet_config, num_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = ROOT.parent / "shared/data/pp_tinypose/tinypose_256x192/model_from_ir.onnx"
SOURCE = ("PP-TinyPose 256x192 (PaddlePaddle/PaddleDetection configs/keypoint/tiny_pose, tinypose_enhance, "
          "Apache-2.0), OpenVINO IR from guojin-yan/Csharp_and_OpenVINO_deploy_PP-TinyPose@"
          "0f6a4845d37b5b16edacbb76f1b1debb39e28a11 model/tinypose_256x192/ir_fp16, translated to ONNX")
OUTPUT = "heatmaps"
PARITY_LIMIT = 1e-3


class MapLogits(nn.Module):
    """The student's map path alone (backbone -> map layer -> final 1x1): what PP-TinyPose computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, images):
        head = self.model.head
        return head.final_layer(head.deconv_layers(self.model.backbone(images)))


def post_order_convs(graph, output: str) -> list:
    """Conv nodes of an ONNX graph in depth-first post-order from ``output`` (inputs in order)."""
    producer = {name: node for node in graph.node for name in node.output}
    seen, order, stack = set(), [], [(producer[output], False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for name in reversed(node.input):  # the first input is visited first
            if name in producer and id(producer[name]) not in seen:
                stack.append((producer[name], False))
    return [node for node in order if node.op_type == "Conv"]


def tinypose_convs(onnx_path: Path) -> list:
    """[(weight, bias)] of PP-TinyPose's convs in post-order; the bias is the Add of an
    initializer right after the conv (the folded batch norm), zeros where there is none."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    consumers = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    convs = []
    for node in post_order_convs(model.graph, OUTPUT):
        weight = init[node.input[1]]
        bias = np.zeros(weight.shape[0], np.float32)
        after = consumers.get(node.output[0], [])
        if len(after) == 1 and after[0].op_type == "Add":
            other = [n for n in after[0].input if n != node.output[0]]
            if other and other[0] in init:
                bias = init[other[0]].reshape(-1)
        convs.append((weight, bias))
    return convs


def student_convs(model) -> list:
    """The student's map-path nn.Conv2d modules in the same post-order (from its own ONNX export)."""
    import onnx
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "student.onnx"
        torch.onnx.export(MapLogits(model).eval(), (torch.zeros(1, 3, 256, 192),), str(path), dynamo=False,
                          opset_version=17, input_names=["image"], output_names=[OUTPUT],
                          do_constant_folding=False)
        graph = onnx.load(str(path)).graph
    modules = dict(MapLogits(model).named_modules())
    convs = []
    for node in post_order_convs(graph, OUTPUT):
        name = node.input[1]
        if not name.endswith(".weight") or name[:-len(".weight")] not in modules:
            raise SystemExit(f"internal: the student's export names a conv weight {name!r}")
        convs.append(modules[name[:-len(".weight")]])
    return convs


def load_tinypose(model, onnx_path: Path) -> int:
    """Copy PP-TinyPose's convs into ``model`` (SystemExit on any mismatch); returns how many."""
    theirs, ours = tinypose_convs(onnx_path), student_convs(model)
    if len(theirs) != len(ours):
        raise SystemExit(f"PP-TinyPose has {len(theirs)} convs on its heatmap path, the student {len(ours)}: "
                         "not the expected file")
    head_dw, head_pw = model.head.deconv_layers[0], model.head.deconv_layers[1]
    dw_bias = None
    for i, ((weight, bias), conv) in enumerate(zip(theirs, ours)):
        if tuple(weight.shape) != tuple(conv.weight.shape):
            raise SystemExit(f"conv {i}: PP-TinyPose weight {weight.shape} vs the student's {tuple(conv.weight.shape)}")
        conv.weight.data.copy_(torch.from_numpy(weight))
        if conv is head_dw:  # no bias of its own: fold it into the 1x1 after it
            dw_bias = torch.from_numpy(bias)
        elif conv is head_pw:
            conv.bias.data.copy_(torch.from_numpy(bias) + conv.weight.data[:, :, 0, 0] @ dw_bias)
        else:
            conv.bias.data.copy_(torch.from_numpy(bias))
    return len(ours)


def parity_crops(n: int = 8, seed: int = 0) -> np.ndarray:
    """(n, 256, 192, 3) uint8 RGB crops of random windows of ``demo/people.mp4`` frames."""
    return clip_crops(n, seed)


def parity(model, onnx_path: Path, crops: np.ndarray) -> float:
    """Max |student map logits - PP-TinyPose heatmaps| over ``crops`` (both ImageNet-normalised)."""
    import onnxruntime as ort
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    images = geometry.normalise(crops)
    worst = 0.0
    for image in images:
        ref = session.run([OUTPUT], {session.get_inputs()[0].name: image[None]})[0]
        with torch.no_grad():
            ours = model(torch.from_numpy(image[None]), return_logits=True)["map_logits"].numpy()
        worst = max(worst, float(np.abs(ours - ref).max()))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help="PP-TinyPose 256x192 ONNX (../shared/data/pp_tinypose)")
    parser.add_argument("--out", default="out/student_tinypose_init.pt", help="checkpoint to write")
    parser.add_argument("--map-kind", default="probmap", choices=("probmap", "heatmap"),
                        help="probmap: the student's start; heatmap: PP-TinyPose itself (the baseline / teacher)")
    args = parser.parse_args(argv)
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise SystemExit(f"{onnx_path} not found (../shared/data/pp_tinypose/README.md)")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    torch.manual_seed(0)
    config = lite_hrnet_config(map_kind=args.map_kind)
    model = build_model(config).eval()
    copied = load_tinypose(model, onnx_path)
    err = parity(model, onnx_path, parity_crops(8))
    print(f"{copied} convs copied; map logits vs PP-TinyPose heatmaps: max |diff| {err:.2e} (8 crops)")
    if err > PARITY_LIMIT:
        raise SystemExit(f"conversion is not exact: {err:.2e} > {PARITY_LIMIT}")
    extra = {"source": SOURCE, "onnx_sha256": digest, "licence": "Apache-2.0 (PP-TinyPose, PaddleDetection)",
             "notes": "Lite-HRNet + map layer from PP-TinyPose 256x192; presence/visibility/OKS branches untrained",
             "parity_max_abs_logit": err}
    out = save_checkpoint(args.out, model, config, extra=extra)
    print(f"model {num_params(model) / 1e6:.2f} M params, {gmacs(model):.3f} GMACs at "
          f"{config.input_size[1]}x{config.input_size[0]}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
