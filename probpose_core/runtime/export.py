"""ONNX export of a PoseModel, its metadata sidecar, parity against torch, int8, TensorRT checks.

- :func:`export_onnx` uses the legacy TorchScript exporter (``dynamo=False``, opset 17; 10x
  faster than the dynamo exporter and needs no onnxscript), a dynamic batch axis, input
  ``images`` and outputs ``prob_maps``, ``presence``, ``visibility``, ``oks_quality`` (plus
  ``wide_prob_maps`` for the double-heatmap variant; a heatmap-baseline model, ``map_kind
  "heatmap"``, has ``heatmaps`` in place of ``prob_maps`` and no Sparsemax). Sparsemax is exported as the
  ``"topk"`` variant over all H*W pixels (TopK k = H*W + CumSum): equal to the exact sparsemax
  for every support size; ONNX Runtime and TensorRT 10 (TopK k <= 3840) run it. For TensorRT
  8.6 / JetPack 5 (TopK k <= 1024) ``sparsemax_topk=k`` exports a top-k variant that is exact
  only while a map's support has fewer than k pixels; its sidecar records k and the ORT / TRT
  runners count the maps whose support reached k (``runtime.base.SupportCheck``).
- The sidecar ``model.json`` says everything a runtime needs to feed the model: input size,
  mean/std on the 0-255 scale, RGB channel order, keypoint names / sigmas / flip index,
  calibration temperature, presence threshold, ``heatmap_only``, codec settings (all read back
  as one ``spec.ModelSpec``), model hash, output names, sparsemax variant, exporter version
  and options (:func:`export_options`, also the auto-export cache's key).
- :func:`parity_report` compares torch (exact sparsemax) with ONNX Runtime on every output
  (maps, presence, visibility, oks_quality) and on the keypoints decoded from both where the
  reference map is well-conditioned (present and :func:`peaked`: a flat map's decoded point
  jumps with 1e-8 noise); :func:`parity_problems` judges it against :data:`PARITY_TOLERANCES`
  (per precision, FP32 / FP16). :func:`export_model` (``probpose export``) writes the report into
  the sidecar and prints it, as well as for the optional ORT dynamic-int8 model.
- :func:`check_tensorrt_constraints` lists what TensorRT would reject (opset, non-batch dynamic
  shapes, TopK k, data-dependent shapes) with onnx and onnxruntime only (no dev extras).
- :func:`sparsemax_inputs` finds each exported Sparsemax's input tensor, from which a TensorRT
  FP16 build keeps the Sparsemax in FP32 (``trt_runner``).
"""
import copy
import dataclasses
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import keypoints
from ..codec import ProbMapCodec
from ..errors import InputError
from ..jsonio import dump_json, load_json
from ..sparsemax import sparsemax_maps
from ..spec import DEFAULT_PRESENCE_THRESHOLD, ModelSpec, codec_settings
from .base import INPUT_NAME, WIDE_OUTPUT, file_sha256, load_onnx, sidecar_path

SIDECAR_FORMAT = "probpose-onnx/1"
#: Bumped whenever the exported graph or sidecar changes for the same checkpoint and options (2:
#: the default Sparsemax is exact for every support, TopK over all pixels instead of k = 128;
#: 3: the sidecar records ``heatmap_only`` and a codec sized to the model).
EXPORTER_VERSION = 4
TRT_MAX_TOPK = 3840  # TensorRT 10
TRT8_MAX_TOPK = 1024  # TensorRT 8.6 (JetPack 5)
MIN_OPSET = 17
# Ops whose output shape depends on data (TensorRT handles them poorly or not at all).
_DATA_DEPENDENT_OPS = {"NonZero", "Unique", "Loop", "If"}
# Ops quantised by the dynamic int8 model: the ViT's matmuls. Convolutions stay float: quantising them
# (ConvInteger, the patch embedding above all) moved decoded keypoints by >100 px on test models.
INT8_OPS = ("MatMul", "Gemm")


def _with_sparsemax(model: torch.nn.Module, method: str) -> torch.nn.Module:
    """An eval-mode copy of ``model`` whose sparsemax runs as ``method`` (the weights are shared by value)."""
    copied = copy.deepcopy(model).eval()
    copied.set_sparsemax_method(method)
    return copied


class _NamedOutputs(torch.nn.Module):
    """The model's output dict as a tuple in ``names`` order (what the tracer can export).

    With ``topk`` the probability maps are made from the map logits by the top-k Sparsemax of
    that ``k`` (the model's own maps are then unused and pruned from the graph)."""

    def __init__(self, model: torch.nn.Module, names, topk: int | None = None):
        super().__init__()
        self.model = model
        self.names = tuple(names)
        self.topk = topk

    def forward(self, images):
        if self.topk is None:
            out = self.model(images)
        else:
            out = self.model(images, return_logits=True)
            for maps, logits in (("prob_maps", "map_logits"), (WIDE_OUTPUT, "wide_map_logits")):
                if logits in out:
                    out[maps] = sparsemax_maps(out[logits], self.model.config.temperature, "topk",
                                               self.topk).clamp(0, 1)
        return tuple(out[k] for k in self.names)


def export_options(sparsemax_method: str = "topk", sparsemax_topk: int | None = None,
                   opset: int = MIN_OPSET) -> dict:
    """What decides the exported graph besides the weights: exporter version, torch version,
    opset, Sparsemax variant and its k (None: all pixels). Written into the sidecar; the
    auto-export cache (``runtime.onnx_for_checkpoint``) keys its files by it."""
    return {"exporter_version": EXPORTER_VERSION, "torch": torch.__version__, "opset": int(opset),
            "sparsemax_method": sparsemax_method,
            "sparsemax_topk": None if sparsemax_topk is None else int(sparsemax_topk)}


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable({f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    return value


def _sparsemax_entry(config, options: dict) -> dict | None:
    """The sidecar's ``sparsemax``: method and, for top-k, the k it sorts (H*W when exact)."""
    if getattr(config, "map_kind", "probmap") == "heatmap":
        return None  # raw heatmaps, no Sparsemax
    method, pixels = options["sparsemax_method"], int(np.prod(config.heatmap_size))
    if method != "topk":
        return {"method": method, "k": None, "exact": True}
    k = min(options["sparsemax_topk"] or pixels, pixels)
    return {"method": method, "k": k, "exact": k == pixels,
            "note": "top-k equals the exact sparsemax while a map's support has fewer than k pixels; "
                    "k = H*W is exact for every map"}


def _sidecar(model, names, options: dict, meta: dict | None) -> dict:
    from ..models.checkpoints import weights_hash
    from ..models.pose_model import NORMALIZE_MEAN, NORMALIZE_STD

    meta = meta or {}
    config = model.config
    spec = ModelSpec.from_meta(meta, config)  # without meta: the default codec, sized to the model
    kp = meta.get("keypoints") or {"names": list(keypoints.NAMES), "sigmas": keypoints.SIGMAS,
                                   "flip_index": list(keypoints.FLIP_INDEX)}
    return _jsonable({
        "format": SIDECAR_FORMAT,
        "input_name": INPUT_NAME,
        "input_size": list(config.input_size),
        "layout": "NCHW",
        "dtype": "float32",
        "channel_order": "RGB",
        "mean": [float(v) for v in np.asarray(NORMALIZE_MEAN).reshape(-1)],
        "std": [float(v) for v in np.asarray(NORMALIZE_STD).reshape(-1)],
        "pixel_range": "0-255 (normalise as (x - mean) / std)",
        "heatmap_size": list(config.heatmap_size),
        "output_names": list(names),
        "dynamic_batch": True,
        "opset": options["opset"],
        "sparsemax": _sparsemax_entry(config, options),
        "exporter": options,
        "keypoints": kp,
        "model_temperature": getattr(config, "temperature", None),
        "temperature": float(meta.get("temperature", 1.0)),
        "presence_threshold": spec.presence_threshold,
        "heatmap_only": spec.heatmap_only,
        "coverage": None if spec.coverage is None else spec.coverage.to_dict(),  # conformal.CoverageTable
        "model_hash": meta.get("model_hash") or weights_hash(model.state_dict()),
        "codec": codec_settings(spec.codec),
        "config": config.to_dict(),
    })


def export_onnx(model: torch.nn.Module, path, *, batch_example: int = 2, sparsemax_method: str = "topk",
                sparsemax_topk: int | None = None, opset: int = MIN_OPSET, meta: dict | None = None) -> Path:
    """Export ``model`` to ``path`` (+ sidecar ``path.with_suffix(".json")``); returns ``path``.

    ``sparsemax_method`` "topk" (default; with ``sparsemax_topk=None`` over all pixels, exact) or
    "bisect"; ``sparsemax_topk=k`` (k <= 1024 for TensorRT 8.6) is the explicit small-k variant.
    ``meta`` is the checkpoint's metadata (temperature, presence threshold, keypoints, codec,
    model hash; see ``models.checkpoints.load_checkpoint``); without it the defaults are written.
    """
    import onnx

    if batch_example < 2:
        raise InputError("batch_example must be >= 2 so that the batch axis is traced as dynamic")
    if sparsemax_topk is not None and (sparsemax_method != "topk" or int(sparsemax_topk) < 1):
        raise InputError(f"sparsemax_topk must be a positive k with sparsemax_method 'topk', got {sparsemax_topk} "
                         f"with {sparsemax_method!r}")
    options = export_options(sparsemax_method, sparsemax_topk, opset)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    traced = _with_sparsemax(model, sparsemax_method)
    w, h = traced.config.input_size
    example = torch.from_numpy(np.random.default_rng(0).standard_normal((batch_example, 3, h, w), np.float32))
    names = tuple(traced.output_names)
    pixels = int(np.prod(traced.config.heatmap_size))
    topk = sparsemax_topk if sparsemax_topk is not None and sparsemax_topk < pixels else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(_NamedOutputs(traced, names, topk), (example,), str(path), dynamo=False,
                          opset_version=opset, input_names=[INPUT_NAME], output_names=list(names),
                          dynamic_axes={k: {0: "batch"} for k in (INPUT_NAME,) + names},
                          do_constant_folding=True)
    _fold_constants(path)
    onnx.checker.check_model(str(path))
    sidecar = _sidecar(traced, names, options, meta)
    sidecar["onnx_sha256"] = file_sha256(path)
    dump_json(sidecar, sidecar_path(path))
    return path


def _fold_constants(path: Path) -> None:
    """Rewrite ``path`` with its constant subgraphs folded and its output shapes inferred.

    The TorchScript exporter writes e.g. a ``Pad``'s pads as a Constant / ConstantOfShape /
    Concat chain it does not fold, which hides every later shape (the outputs' height and width
    come out symbolic). ONNX Runtime's basic optimisations fold it (standard ONNX ops only, the
    batch axis stays dynamic); onnx shape inference then fills in the outputs' static axes."""
    import onnx
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    del model.graph.value_info[:]
    for out in model.graph.output:  # forget the exporter's symbolic non-batch axes, then infer them
        for dim in out.type.tensor_type.shape.dim[1:]:
            if not dim.HasField("dim_value"):
                dim.Clear()
    onnx.save(onnx.shape_inference.infer_shapes(model, data_prop=True), str(path))


def sample_images(n: int, input_size, seed: int = 0) -> np.ndarray:
    """Smooth random crops (N, 3, H, W) float32 on the normalised scale, for parity checks."""
    w, h = input_size
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.standard_normal((n, 3, h // 16, w // 16), np.float32))
    smooth = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear", align_corners=False)
    return (smooth + 0.3 * torch.from_numpy(rng.standard_normal((n, 3, h, w), np.float32))).numpy()


def clip_crops(n: int = 8, seed: int = 0, size=(192, 256)) -> np.ndarray:
    """``(n, H, W, 3)`` uint8 RGB crops of random 3:4 windows of the shipped clip's frames
    (``demo/people.mp4``): real-image inputs for the weight converters' parity checks."""
    import cv2

    from ..demo import demo_clip
    cap = cv2.VideoCapture(str(demo_clip()))
    frames = []
    ok, frame = cap.read()
    while ok:
        frames.append(frame)
        ok, frame = cap.read()
    cap.release()
    if not frames:
        raise InputError(f"cannot read frames from {demo_clip()}")
    rng = np.random.default_rng(seed)
    crops = []
    for _ in range(n):
        img = frames[rng.integers(len(frames))]
        h, w = img.shape[:2]
        ch = int(rng.uniform(0.4, 1.0) * h)
        cw = min(w, int(ch * 0.75))
        y, x = rng.integers(0, h - ch + 1), rng.integers(0, w - cw + 1)
        crops.append(cv2.cvtColor(cv2.resize(img[y:y + ch, x:x + cw], tuple(size)), cv2.COLOR_BGR2RGB))
    return np.stack(crops)


#: Parity tolerances per precision: the largest |difference| of each output from the reference
#: (maps, presence, visibility, oks_quality: all in [0, 1] units) and of the keypoints decoded where
#: the reference map is well-conditioned (``keypoints_px``, crop pixels). FP32 is tight (different
#: kernels, same precision); FP16 rounds every layer to a 10-bit mantissa, so its outputs move by
#: about 1e-2 and its points by a fraction of a map pixel (4 crop px).
PARITY_TOLERANCES = {
    "fp32": {"maps": 1e-3, "presence": 1e-3, "visibility": 1e-3, "oks_quality": 1e-3, "keypoints_px": 0.1},
    "fp16": {"maps": 0.05, "presence": 0.05, "visibility": 0.05, "oks_quality": 0.05, "keypoints_px": 1.0},
}
#: A map is peaked when at least PEAKED_MASS of its (positive) mass lies within PEAK_RADIUS map
#: pixels of its maximum and that maximum is at least MIN_PEAK: only there is the decoded point
#: a stable function of the map (a flat or many-peaked map's point jumps with 1e-8 noise).
PEAK_RADIUS, PEAKED_MASS, MIN_PEAK = 3, 0.6, 1e-3
MAP_OUTPUTS = ("prob_maps", "heatmaps", WIDE_OUTPUT)


def peaked(maps: np.ndarray, radius: int = PEAK_RADIUS) -> np.ndarray:
    """maps (N, K, H, W) -> bool (N, K): the maps whose decoded point is well-conditioned (see PEAKED_MASS)."""
    n, k, h, w = maps.shape
    mass = np.maximum(maps, 0).reshape(n, k, h * w).astype(np.float64)
    peak_y, peak_x = np.divmod(mass.argmax(-1), w)
    near_y = np.abs(np.arange(h) - peak_y[..., None]) <= radius  # (N, K, H)
    near_x = np.abs(np.arange(w) - peak_x[..., None]) <= radius  # (N, K, W)
    near = (mass.reshape(n, k, h, w) * near_y[..., :, None] * near_x[..., None, :]).sum((2, 3))
    total = mass.sum(-1)
    return (mass.max(-1) >= MIN_PEAK) & (near >= PEAKED_MASS * total)


def parity_report(reference, candidate, images: np.ndarray, codec: ProbMapCodec | None = None,
                  presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD) -> dict:
    """Compare two runners on ``images``: max |diff| of every output, and of the decoded keypoints
    where the reference's map is well-conditioned (present at ``presence_threshold`` and
    :func:`peaked`; ``keypoints_compared`` of ``keypoints_total``).

    Keypoints are decoded (expected-OKS; UDP for a heatmap model) from both runners' maps on one
    shared window (the crop itself in input pixels), so the distance is in crop pixels. Also
    reports the largest map support of the reference (a small-k top-k export is exact while it is
    < k). :func:`parity_problems` judges a report against :data:`PARITY_TOLERANCES`.
    """
    codec = codec or ProbMapCodec()
    ref, got = reference.run(images), candidate.run(images)
    w, h = codec.input_size
    # UDP (geometry.py): a window [c - s/2, c + s/2] maps onto the pixel centres [0, W-1], so the
    # crop itself is the window of center (W-1)/2 and scale W-1 (crop pixel = image pixel)
    center = np.tile([(w - 1) / 2, (h - 1) / 2], (len(images), 1))
    scale = np.tile([w - 1, h - 1], (len(images), 1)).astype(np.float64)
    key, method = ("heatmaps", "udp") if "heatmaps" in ref else ("prob_maps", "expected_oks")  # heatmap baseline
    kp_ref, _ = codec.decode(ref[key], center, scale, method=method)
    kp_got, _ = codec.decode(got[key], center, scale, method=method)
    compared = (ref["presence"] >= presence_threshold) & peaked(ref[key])
    dist = np.linalg.norm(kp_ref - kp_got, axis=-1)[compared]
    return {
        "images": len(images),
        "max_abs_diff": {k: float(np.max(np.abs(ref[k] - got[k]))) for k in ref},
        "keypoints_compared": int(compared.sum()),
        "keypoints_total": int(compared.size),
        "keypoints_max_px_diff": float(dist.max()) if dist.size else 0.0,
        "keypoints_median_px_diff": float(np.median(dist)) if dist.size else 0.0,
        "max_support": int((ref[key] > 0).reshape(*ref[key].shape[:2], -1).sum(-1).max()),
    }


def parity_problems(report: dict, tolerances: dict) -> list[str]:
    """What in a :func:`parity_report` exceeds ``tolerances`` (one of :data:`PARITY_TOLERANCES`);
    empty when the candidate agrees. A NaN difference is a problem."""
    problems = []
    for name, diff in report["max_abs_diff"].items():
        tolerance = tolerances["maps" if name in MAP_OUTPUTS else name]
        if not diff <= tolerance:
            problems.append(f"{name} differ by up to {diff:.3g} (tolerance {tolerance:g})")
    diff = report["keypoints_max_px_diff"]
    if not diff <= tolerances["keypoints_px"]:
        problems.append(f"decoded keypoints differ by up to {diff:.3f} px (tolerance {tolerances['keypoints_px']:g} "
                        f"px, crop pixels, {report['keypoints_compared']} well-conditioned keypoints)")
    return problems


def quantize_int8(onnx_path, out_path) -> Path:
    """ONNX Runtime dynamic int8 quantisation (weights int8, activations quantised at run time).

    ``graph.value_info`` is cleared first: stale shape annotations from the exporter make the
    quantiser fail. Only MatMul / Gemm are quantised (see ``INT8_OPS``); convolutions, the
    deconvolutions and sparsemax stay float.
    """
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    model = onnx.load(str(onnx_path))
    del model.graph.value_info[:]
    out_path = Path(out_path)
    root = logging.getLogger()
    level = root.level
    with tempfile.TemporaryDirectory() as tmp:
        clean = Path(tmp) / "clean.onnx"
        onnx.save(model, str(clean))
        root.setLevel(logging.ERROR)  # the quantiser logs a "consider pre-processing" warning on root
        try:
            quantize_dynamic(str(clean), str(out_path), weight_type=QuantType.QInt8,
                             op_types_to_quantize=list(INT8_OPS))
        finally:
            root.setLevel(level)
    return out_path


def _dims(value_info) -> list | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]


def _static_batch_copy(model, batch: int):
    """``model`` with every input's first axis fixed to ``batch``, constants folded and shapes
    inferred. Runtime requirements only: ONNX Runtime's basic optimisations (constant folding,
    Shape of a static tensor to a constant; the saved graph keeps standard ONNX ops) fold the
    shape arithmetic, then onnx shape inference with data propagation. A graph ONNX Runtime
    cannot load is inferred unfolded (shape arithmetic beyond onnx's data propagation then
    counts as data-dependent)."""
    import onnx
    import onnxruntime

    fixed = copy.deepcopy(model)
    for value in fixed.graph.input:
        dims = value.type.tensor_type.shape.dim
        if len(dims) and not dims[0].HasField("dim_value"):
            dims[0].dim_value = batch
    del fixed.graph.value_info[:]
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3  # errors only
    with tempfile.TemporaryDirectory() as tmp:
        options.optimized_model_filepath = str(Path(tmp) / "folded.onnx")
        try:
            onnxruntime.InferenceSession(fixed.SerializeToString(), options, providers=["CPUExecutionProvider"])
            fixed = onnx.load(options.optimized_model_filepath)
        except Exception:  # noqa: BLE001 - a graph ORT cannot load (IR version, invalid): check it unfolded
            pass
    return onnx.shape_inference.infer_shapes(fixed, data_prop=True)


def check_tensorrt_constraints(onnx_path, max_topk: int = TRT_MAX_TOPK, min_opset: int = MIN_OPSET) -> list[str]:
    """What TensorRT (8.6 and 10) would reject in ``onnx_path``: a list of problems, empty if none.

    Checks: default-domain opset >= ``min_opset``; every input/output static except its first
    (batch) axis; with the batch fixed, every intermediate shape static after constant folding
    and shape inference (:func:`_static_batch_copy`), i.e. no data-dependent shapes; every TopK
    has a constant k <= ``max_topk``; no ops with data-dependent output shapes (NonZero,
    Unique, Loop, If). Needs only runtime requirements (onnx, onnxruntime).
    """
    import onnx

    model = load_onnx(onnx_path)
    problems = []
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    if opset < min_opset:
        problems.append(f"opset {opset} < {min_opset}")
    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for v in values:
            shape = _dims(v)
            if shape is None:
                problems.append(f"{kind} {v.name!r} has no shape")
                continue
            dynamic = [i for i, d in enumerate(shape) if i > 0 and not isinstance(d, int)]
            if dynamic:
                problems.append(f"{kind} {v.name!r} {shape}: axes {dynamic} are dynamic (only the batch axis may be)")

    folded = _static_batch_copy(model, batch=2)
    inner = [f"{v.name} {_dims(v)}" for v in list(folded.graph.value_info) + list(folded.graph.output)
             if _dims(v) is not None and not all(isinstance(d, int) for d in _dims(v))]
    if inner:
        problems.append(f"{len(inner)} tensor(s) with data-dependent shapes at a fixed batch, e.g. {inner[:3]}")
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in folded.graph.initializer}
    for node in folded.graph.node:
        if node.op_type == "Constant":
            constants.update({node.output[0]: onnx.numpy_helper.to_array(node.attribute[0].t)}
                             if node.attribute and node.attribute[0].name == "value" else {})
    for node in folded.graph.node:
        if node.op_type == "TopK":
            k = constants.get(node.input[1]) if len(node.input) > 1 else None
            if k is None:
                problems.append(f"TopK {node.name!r}: k is not a constant")
            elif int(np.max(k)) > max_topk:
                problems.append(f"TopK {node.name!r}: k = {int(np.max(k))} > {max_topk}")
        elif node.op_type in _DATA_DEPENDENT_OPS:
            problems.append(f"{node.op_type} {node.name!r}: data-dependent output shape")
    return problems


def sparsemax_inputs(model) -> list[str]:
    """The input tensor of every exported Sparsemax in the ONNX ``model`` (a ModelProto).

    The top-k Sparsemax (sparsemax.py ``_topk_last``) exports as ``z = x - ReduceMax(x)``,
    ``TopK(z)``, ``CumSum`` and the element-wise ops that find the threshold and the map. Each
    TopK's data input ``z`` is traced back through that max shift to ``x`` (the map logits over
    the temperature); everything computed from ``x`` is the Sparsemax (and the reshape / clamp
    to its map output). A TopK without the shift in front gives ``z`` itself. Bisection exports
    and heatmap models have no TopK: an empty list. TensorRT builds keep what is computed from
    these tensors in FP32 (``trt_runner.keep_fp32``).
    """
    producer = {out: node for node in model.graph.node for out in node.output}
    starts = []
    for node in model.graph.node:
        if node.op_type != "TopK":
            continue
        z = node.input[0]
        shift = producer.get(z)
        peak = producer.get(shift.input[1]) if shift is not None and shift.op_type == "Sub" else None
        start = shift.input[0] if peak is not None and peak.op_type == "ReduceMax" and peak.input[0] == shift.input[0] \
            else z
        if start not in starts:
            starts.append(start)
    return starts


def _format_parity(label: str, report: dict, tolerances: dict | None = None) -> str:
    diffs = ", ".join(f"{k} {v:.2e}" for k, v in report["max_abs_diff"].items())
    line = (f"{label}: max |diff| vs torch {diffs}; decoded keypoints max diff "
            f"{report['keypoints_max_px_diff']:.2e} px, median {report['keypoints_median_px_diff']:.2e} px "
            f"(crop pixels, {report['keypoints_compared']} of {report['keypoints_total']} keypoints well-conditioned, "
            f"{report['images']} images)")
    if tolerances is not None:
        problems = parity_problems(report, tolerances)
        line += f"; {label} tolerances: " + ("ok" if not problems else "EXCEEDED: " + "; ".join(problems))
    return line


def export_model(checkpoint_path, onnx_path, int8: bool = False, *, sparsemax_method: str = "topk",
                 sparsemax_topk: int | None = None, log=print) -> dict:
    """``probpose export``: checkpoint -> ONNX + sidecar (+ ``.int8.onnx``), parity and checks.

    Parity (torch with the exact sparsemax vs ONNX Runtime) and the TensorRT check are written
    into the sidecar(s) and printed through ``log``. ``sparsemax_method``: "topk" (exact, TopK
    over all pixels) or "bisect" (exact to float rounding, no sort: the shipped student's,
    measured 25.7 -> 22.0 ms per person on ONNX Runtime); ``sparsemax_topk``: the explicit
    small-k Sparsemax for TensorRT 8.6 (see :func:`export_onnx`). Returns a summary dict.
    """
    from ..models.checkpoints import load_checkpoint
    from .ort_runner import OrtRunner
    from .torch_runner import TorchRunner

    model, meta = load_checkpoint(checkpoint_path)
    onnx_path = Path(onnx_path)
    export_onnx(model, onnx_path, sparsemax_method=sparsemax_method, sparsemax_topk=sparsemax_topk, meta=meta)
    spec = ModelSpec.from_meta(meta)
    codec, present = spec.codec, spec.presence_threshold
    reference = TorchRunner(model)
    images = sample_images(4, model.config.input_size)
    summary = {"onnx": str(onnx_path),
               "parity": parity_report(reference, OrtRunner(onnx_path), images, codec, present),
               "tensorrt_problems": check_tensorrt_constraints(onnx_path)}
    sidecar = load_json(sidecar_path(onnx_path))
    sidecar.update(parity=summary["parity"], tensorrt_problems=summary["tensorrt_problems"])
    dump_json(sidecar, sidecar_path(onnx_path))
    log(f"wrote {onnx_path} and {sidecar_path(onnx_path)}")
    log(_format_parity("fp32", summary["parity"], PARITY_TOLERANCES["fp32"]))
    support, sparse = summary["parity"]["max_support"], sidecar["sparsemax"] or {}
    k = sparse.get("k")
    if k and not sparse.get("exact") and support >= k:
        log(f"warning: a map's support has {support} pixels >= top-k {k}: the export may differ from the exact "
            f"sparsemax on such maps (untrained models; a trained model's occluded or absent keypoints)")
    log("TensorRT check: " + ("ok" if not summary["tensorrt_problems"] else "; ".join(summary["tensorrt_problems"])))
    if k and k > TRT8_MAX_TOPK:
        log(f"note: TopK k = {k} needs TensorRT 10; TensorRT 8.6 / JetPack 5 takes k <= {TRT8_MAX_TOPK} "
            f"(export with sparsemax_topk, e.g. 128: exact only while a map's support is below k)")
    if int8:
        int8_path = quantize_int8(onnx_path, onnx_path.with_suffix(".int8.onnx"))
        int8_sidecar = dict(sidecar, onnx_sha256=file_sha256(int8_path),
                            quantization={"type": "onnxruntime dynamic", "weights": "int8",
                                          "ops": list(INT8_OPS)})
        dump_json(int8_sidecar, sidecar_path(int8_path))  # first: a runner refuses a model without one
        summary["int8"] = {"onnx": str(int8_path),
                           "parity": parity_report(reference, OrtRunner(int8_path), images, codec, present)}
        dump_json(dict(int8_sidecar, parity=summary["int8"]["parity"]), sidecar_path(int8_path))
        log(f"wrote {int8_path} and {sidecar_path(int8_path)}")
        log(_format_parity("int8", summary["int8"]["parity"]))
    return summary
