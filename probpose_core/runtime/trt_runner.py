"""TrtRunner: an exported ONNX pose model as a TensorRT engine (FP16, dynamic batch 1..16).

UNTESTED ON REAL TENSORRT. TensorRT cannot be installed on the machines this was written on, so
the code follows the TensorRT 10 Python API as documented (``Builder``, ``OnnxParser``,
``build_serialized_network``, ``set_memory_pool_limit``, optimisation profiles, ``ILayer.precision``
/ ``set_output_type`` with ``BuilderFlag.PREFER_PRECISION_CONSTRAINTS``,
``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and its logic (cache key, rebuild only on change,
profile shapes, binding by name, batch splitting, device, FP32 marks, parity refusal,
missing-TensorRT error) is tested against a stand-in ``tensorrt`` module
(test/fake_tensorrt.py) that runs the ONNX with onnxruntime. TensorRT 8.6 (JetPack 5) differs
only in needing the explicit-batch network flag, handled here.

- **Device.** TensorRT has no device argument: the builder, the runtime, the engine and its
  execution context live on the CUDA device that is current when they are made, and the engine
  runs only there. Everything is therefore made and run inside ``buffers.activate()``, which
  makes the runner's ``device`` current (``torch.cuda.device``), where its buffers and stream
  live too.
- **FP16 keeps the Sparsemax in FP32.** Under FP16 the Sparsemax's TopK over all H*W pixels,
  its CumSum and the ops that find the threshold would be rounded to FP16 (integers above 2048
  and cumulative sums of thousands of values are not representable), which moves the map's
  support. :func:`keep_fp32` marks every layer computed from each Sparsemax's input
  (``export.sparsemax_inputs``, found in the ONNX graph by its TopK) with FP32 precision and
  FP32 float outputs, and the build prefers those constraints
  (``PREFER_PRECISION_CONSTRAINTS``: a layer TensorRT cannot run in FP32 falls back with a
  warning; the parity check below decides whether the result is good enough).
- **FP32 is FP32.** An ``fp16=False`` build clears ``BuilderFlag.TF32`` (on by default: it
  rounds convolution and matmul inputs to a 10-bit mantissa), so it meets the FP32 tolerances.
- **Parity.** A freshly built engine is run on :data:`PARITY_IMAGES` fixed sample crops
  (``export.sample_images``) next to ONNX Runtime on the CPU (``export.parity_report``): maps,
  presence, visibility and oks_quality, and the decoded keypoints where ONNX Runtime's map is
  well-conditioned (present and peaked; a flat map's point is not a function of the map). If
  anything exceeds the tolerances of the build's precision (``export.PARITY_TOLERANCES``: FP32
  tight, FP16 loose enough for half precision) the engine is refused with
  :class:`EngineParityError` and not written to the cache. The report is kept as
  ``runner.parity`` and in the engine's ``.json``.

Engines are only valid for one GPU model / compute capability / TensorRT version, so they are
cached in ``cache_dir`` under a key made of the GPU name, compute capability, TensorRT version,
the ONNX file's SHA-256 and the build settings (FP16, profile, build recipe); an engine is
rebuilt only when that key changes (or the cached file cannot be deserialised). Device memory
comes from torch CUDA tensors (:class:`TorchCudaBuffers`); any object with the same few methods
can be passed as ``buffers`` (e.g. one built on cuda-python).
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..jsonio import load_json
from .base import (
    INPUT_NAME,
    RuntimeUnavailableError,
    SupportCheck,
    check_outputs,
    file_sha256,
    model_sidecar,
    onnx_input_size,
    run_in_chunks,
    validate_images,
)

#: Optimisation profile on the batch axis: (min, opt, max).
DEFAULT_PROFILE = (1, 4, 16)
DEFAULT_WORKSPACE = 1 << 30
#: Fixed sample crops (``export.sample_images``, seed 0) the parity check runs.
PARITY_IMAGES = 8
#: Bumped when engines are built differently for the same ONNX and settings (2: the Sparsemax
#: is kept in FP32 under FP16 and a new engine must pass the parity check; 3: FP32 builds clear
#: TF32 and the check compares outputs with per-precision tolerances), so old engines rebuild.
BUILD_RECIPE = 3


class EngineParityError(RuntimeUnavailableError):
    """A freshly built TensorRT engine disagrees with ONNX Runtime beyond the threshold (not cached)."""


def import_tensorrt():
    """The ``tensorrt`` module, or RuntimeUnavailableError saying what to do instead."""
    try:
        import tensorrt
    except ImportError:
        raise RuntimeUnavailableError("TensorRT is not installed (needs the 'tensorrt' Python package, 10.x or 8.6 "
                                      "from JetPack); use --runtime ort instead") from None
    return tensorrt


class TorchCudaBuffers:
    """Device buffers and a CUDA stream from torch (``torch.cuda``); one per runner."""

    def __init__(self, device: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailableError("TensorRT needs a CUDA device, but torch.cuda.is_available() is False")
        self.torch = torch
        self.device = torch.device("cuda", int(device))
        self.stream = torch.cuda.Stream(self.device)

    def activate(self):
        """Context manager making this device the current CUDA device (TensorRT's builder, runtime,
        engine and execution context use the current device)."""
        return self.torch.cuda.device(self.device)

    def gpu(self) -> tuple[str, str]:
        """(GPU name, compute capability "major.minor")."""
        major, minor = self.torch.cuda.get_device_capability(self.device)
        return self.torch.cuda.get_device_name(self.device), f"{major}.{minor}"

    def empty(self, shape, dtype):
        return self.torch.empty(tuple(shape), dtype=getattr(self.torch, np.dtype(dtype).name), device=self.device)

    def upload(self, array: np.ndarray):
        with self.torch.cuda.stream(self.stream):
            return self.torch.from_numpy(array).to(self.device, non_blocking=False)

    @staticmethod
    def address(buffer) -> int:
        return buffer.data_ptr()

    @property
    def stream_handle(self) -> int:
        return self.stream.cuda_stream

    def synchronize(self) -> None:
        self.stream.synchronize()

    @staticmethod
    def download(buffer) -> np.ndarray:
        return buffer.cpu().numpy()


def engine_cache_key(gpu_name: str, compute_capability: str, trt_version: str, onnx_sha256: str,
                     fp16: bool, profile, recipe: int = BUILD_RECIPE) -> dict:
    """The parts an engine depends on, plus ``key``: the first 16 hex digits of their SHA-256."""
    parts = {"gpu": gpu_name, "compute_capability": compute_capability, "tensorrt": trt_version,
             "onnx_sha256": onnx_sha256, "fp16": bool(fp16), "profile": [int(b) for b in profile],
             "recipe": int(recipe)}
    parts["key"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return parts


def keep_fp32(trt, network, start_tensors) -> list[str]:
    """Mark every layer of ``network`` computed from ``start_tensors`` to run in FP32; returns their names.

    ``start_tensors``: tensor names (the ONNX parser names each layer output after the ONNX
    tensor), here each Sparsemax's input (``export.sparsemax_inputs``). The layers reached from
    them through their outputs, helper layers the parser added included, get ``precision``
    FP32 when they read or write a float tensor, and FP32 as the output type of each float
    output (bool / int outputs are left alone). Only honoured with a precision-constraints
    builder flag (:func:`build_engine` sets it). A start tensor no layer reads is an InputError
    (the FP16 build would otherwise round the Sparsemax silently).
    """
    consumers: dict = {}
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        for j in range(layer.num_inputs):
            tensor = layer.get_input(j)
            if tensor is not None:
                consumers.setdefault(tensor.name, []).append(i)
    missing = [name for name in start_tensors if name not in consumers]
    if missing:
        raise InputError(f"no layer of the TensorRT network reads the Sparsemax input(s) {missing}: cannot keep the "
                         f"Sparsemax in FP32 under FP16 (build with fp16=False)")
    reached, queue = set(), list(start_tensors)
    while queue:
        for i in consumers.get(queue.pop(), ()):
            if i not in reached:
                reached.add(i)
                layer = network.get_layer(i)
                queue.extend(layer.get_output(k).name for k in range(layer.num_outputs))
    floats = (trt.float32, trt.float16)
    marked = []
    for i in sorted(reached):
        layer = network.get_layer(i)
        inputs = [layer.get_input(j) for j in range(layer.num_inputs)]
        float_outputs = [k for k in range(layer.num_outputs) if layer.get_output(k).dtype in floats]
        if float_outputs or any(t is not None and t.dtype in floats for t in inputs):
            layer.precision = trt.float32
            for k in float_outputs:
                layer.set_output_type(k, trt.float32)
            marked.append(layer.name)
    return marked


def build_engine(trt, onnx_bytes: bytes, input_chw, *, fp16: bool = True, workspace_bytes: int = DEFAULT_WORKSPACE,
                 profile=DEFAULT_PROFILE, input_name: str = INPUT_NAME, logger=None) -> bytes:
    """Parse the ONNX and build a serialised engine with a batch profile (min, opt, max).

    With ``fp16`` the Sparsemax layers are kept in FP32 (:func:`keep_fp32`) under
    ``PREFER_PRECISION_CONSTRAINTS``. Builds on the current CUDA device (see the module docstring).
    """
    import onnx

    from .export import sparsemax_inputs

    logger = logger or trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    major = int(str(trt.__version__).split(".")[0])
    flags = 0 if major >= 10 else 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise InputError(f"TensorRT cannot parse the ONNX model: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_bytes))
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        if keep_fp32(trt, network, sparsemax_inputs(onnx.load_from_string(onnx_bytes))):
            config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    else:
        config.clear_flag(trt.BuilderFlag.TF32)  # on by default; FP32 parity tolerances assume FP32
    batch_profile = builder.create_optimization_profile()
    lo, opt, hi = (int(b) for b in profile)
    chw = tuple(int(v) for v in input_chw)
    batch_profile.set_shape(input_name, (lo,) + chw, (opt,) + chw, (hi,) + chw)
    config.add_optimization_profile(batch_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    return bytes(serialized)


def check_parity(runner, onnx_path, tolerances: dict) -> dict:
    """``export.parity_report`` of ``runner`` against ONNX Runtime (CPU, the reference) on
    :data:`PARITY_IMAGES` fixed sample crops, with the model's codec and presence threshold;
    ``tolerances`` (one of ``export.PARITY_TOLERANCES``) is added to it. EngineParityError when
    ``export.parity_problems`` finds any (NaN included)."""
    from ..spec import ModelSpec
    from .export import parity_problems, parity_report, sample_images
    from .ort_runner import OrtRunner

    # runner.meta is {} only where the runner was allowed to run uncalibrated (and warned)
    reference = OrtRunner(onnx_path, providers=["CPUExecutionProvider"], allow_uncalibrated=not runner.meta)
    spec = ModelSpec.from_meta(runner.meta, {"input_size": list(runner.input_size)})
    report = parity_report(reference, runner, sample_images(PARITY_IMAGES, runner.input_size), spec.codec,
                           spec.presence_threshold)
    report["tolerances"] = dict(tolerances)
    problems = parity_problems(report, tolerances)
    if problems:
        raise EngineParityError(
            f"TensorRT engine refused, it differs from ONNX Runtime on {report['images']} sample crops: "
            f"{'; '.join(problems)}; the engine was not cached. Build with fp16=False or use --runtime ort")
    return report


class TrtRunner:
    """Run ``onnx_path`` as a TensorRT engine cached in ``cache_dir`` (see the module docstring).

    fp16: build with FP16 kernels allowed (the Sparsemax stays FP32); profile: batch (min, opt,
    max) — ``max_batch`` is the profile's max and larger inputs are split; buffers: a
    device-buffer provider (default :class:`TorchCudaBuffers` on ``device``; it also makes its
    device current in ``activate()``); device: the CUDA device index the engine is built,
    deserialised and run on; parity_tolerances: a new engine is refused (:class:`EngineParityError`,
    not cached) when it differs from ONNX Runtime by more (default: ``export.PARITY_TOLERANCES``
    of the build's precision);
    allow_uncalibrated: run a model without its sidecar (warned; refused otherwise, see
    :func:`base.model_sidecar`). Attributes: ``engine_path``, ``cache_key`` (dict), ``built`` (True when this instance built
    the engine rather than loading it from the cache), ``parity`` (the parity report of the build,
    None for a cached engine without one), ``support_check`` (maps a small-k top-k export may
    have truncated, :class:`base.SupportCheck`).
    """

    name = "trt"

    def __init__(self, onnx_path, cache_dir, *, fp16: bool = True, workspace_bytes: int = DEFAULT_WORKSPACE,
                 profile=DEFAULT_PROFILE, buffers=None, input_size=None, device: int = 0,
                 parity_tolerances: dict | None = None, allow_uncalibrated: bool = False):
        trt = import_tensorrt()
        self.input_size, static_batch = onnx_input_size(onnx_path, expected=input_size)
        if static_batch:
            raise InputError(f"{onnx_path}: TensorRT needs a dynamic batch axis, the model's is fixed at {static_batch}")
        self.trt = trt
        self.buffers = buffers if buffers is not None else TorchCudaBuffers(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.profile = tuple(int(b) for b in profile)
        self.max_batch = self.profile[2]
        self.meta = model_sidecar(onnx_path, allow_uncalibrated)
        self.support_check = SupportCheck(self.meta)
        gpu_name, capability = self.buffers.gpu()
        self.cache_key = engine_cache_key(gpu_name, capability, str(trt.__version__), file_sha256(onnx_path),
                                          fp16, self.profile)
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.engine_path = cache_dir / f"{Path(onnx_path).stem}-{self.cache_key['key']}.engine"
        self.engine, self.built, blob = None, False, None
        with self.buffers.activate():  # TensorRT makes and runs everything on the current device
            self.runtime = trt.Runtime(self.logger)
            if self.engine_path.exists():
                self.engine = self.runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
            if self.engine is None:  # no cached engine, or one this TensorRT cannot read: build
                w, h = self.input_size
                blob = build_engine(trt, Path(onnx_path).read_bytes(), (3, h, w), fp16=fp16,
                                    workspace_bytes=workspace_bytes, profile=self.profile, logger=self.logger)
                self.engine = self.runtime.deserialize_cuda_engine(blob)
                self.built = True
                if self.engine is None:
                    raise RuntimeError("TensorRT could not deserialise the engine it just built")
            self._bind(onnx_path)
        record = self.engine_path.with_suffix(".json")
        if self.built:  # cached only once it agrees with ONNX Runtime
            from .export import PARITY_TOLERANCES  # export imports torch: only for a build

            tolerances = parity_tolerances or PARITY_TOLERANCES["fp16" if fp16 else "fp32"]
            self.parity = check_parity(self, onnx_path, tolerances)
            self.support_check = SupportCheck(self.meta)  # the parity run's maps are not counted
            tmp = self.engine_path.with_suffix(".engine.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, self.engine_path)
            record.write_text(json.dumps(dict(self.cache_key, parity=self.parity), indent=2) + "\n")
        else:
            self.parity = load_json(record, "TensorRT engine record").get("parity") if record.exists() else None

    def _bind(self, onnx_path) -> None:
        """Input / output names and dtypes of the engine, and its execution context."""
        trt = self.trt
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise InputError(f"{onnx_path}: expected one engine input, got {inputs}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n != self.input_name]
        check_outputs({k: np.zeros(1) for k in self.output_names}, 1, "the TensorRT engine")  # names only
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.context = self.engine.create_execution_context()

    def _run_batch(self, images: np.ndarray) -> dict:
        with self.buffers.activate():
            return self._run_on_device(images)

    def _run_on_device(self, images: np.ndarray) -> dict:
        n = len(images)
        if not self.context.set_input_shape(self.input_name, images.shape):
            raise InputError(f"TensorRT rejected input shape {images.shape} (profile batch {self.profile})")
        images = images.astype(self.dtypes[self.input_name], copy=False)
        device_in = self.buffers.upload(images)
        self.context.set_tensor_address(self.input_name, self.buffers.address(device_in))
        device_out = {}
        for name in self.output_names:
            device_out[name] = self.buffers.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.context.set_tensor_address(name, self.buffers.address(device_out[name]))
        if not self.context.execute_async_v3(self.buffers.stream_handle):
            raise RuntimeError("TensorRT execute_async_v3 failed")
        self.buffers.synchronize()
        del device_in
        return self.support_check(check_outputs({k: self.buffers.download(v) for k, v in device_out.items()}, n,
                                                "the TensorRT engine"))

    def run(self, images: np.ndarray) -> dict:
        """images: (N, 3, H, W) float32 -> the model's named outputs as numpy arrays."""
        return run_in_chunks(self._run_batch, validate_images(images, self.input_size), self.max_batch)
