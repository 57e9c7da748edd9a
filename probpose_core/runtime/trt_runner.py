"""TrtRunner: an exported ONNX pose model as a TensorRT engine (FP16, dynamic batch 1..16).

UNTESTED ON REAL TENSORRT. TensorRT cannot be installed on the machines this was written on, so
the code follows the TensorRT 10 Python API as documented (``Builder``, ``OnnxParser``,
``build_serialized_network``, ``set_memory_pool_limit``, optimisation profiles,
``num_io_tensors`` / ``get_tensor_name`` / ``get_tensor_mode``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``) and its logic (cache key, rebuild only on change,
profile shapes, binding by name, batch splitting, missing-TensorRT error) is tested against a
stand-in ``tensorrt`` module (test/fake_tensorrt.py) that runs the ONNX with onnxruntime.
TensorRT 8.6 (JetPack 5) differs only in needing the explicit-batch network flag, handled here.

Engines are only valid for one GPU model / compute capability / TensorRT version, so they are
cached in ``cache_dir`` under a key made of the GPU name, compute capability, TensorRT version,
the ONNX file's SHA-256 and the build settings (FP16, profile); an engine is rebuilt only when
that key changes (or the cached file cannot be deserialised). Device memory comes from torch
CUDA tensors (:class:`TorchCudaBuffers`); any object with the same few methods can be passed
as ``buffers`` (e.g. one built on cuda-python).
"""
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .base import (
    INPUT_NAME,
    RuntimeUnavailableError,
    SupportCheck,
    check_outputs,
    file_sha256,
    load_sidecar,
    onnx_input_size,
    run_in_chunks,
    validate_images,
)

#: Optimisation profile on the batch axis: (min, opt, max).
DEFAULT_PROFILE = (1, 4, 16)
DEFAULT_WORKSPACE = 1 << 30


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
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)

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
                     fp16: bool, profile) -> dict:
    """The parts an engine depends on, plus ``key``: the first 16 hex digits of their SHA-256."""
    parts = {"gpu": gpu_name, "compute_capability": compute_capability, "tensorrt": trt_version,
             "onnx_sha256": onnx_sha256, "fp16": bool(fp16), "profile": [int(b) for b in profile]}
    parts["key"] = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return parts


def build_engine(trt, onnx_bytes: bytes, input_chw, *, fp16: bool = True, workspace_bytes: int = DEFAULT_WORKSPACE,
                 profile=DEFAULT_PROFILE, input_name: str = INPUT_NAME, logger=None) -> bytes:
    """Parse the ONNX and build a serialised engine with a batch profile (min, opt, max)."""
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
    batch_profile = builder.create_optimization_profile()
    lo, opt, hi = (int(b) for b in profile)
    chw = tuple(int(v) for v in input_chw)
    batch_profile.set_shape(input_name, (lo,) + chw, (opt,) + chw, (hi,) + chw)
    config.add_optimization_profile(batch_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise RuntimeError("TensorRT failed to build the engine (see its log above)")
    return bytes(serialized)


class TrtRunner:
    """Run ``onnx_path`` as a TensorRT engine cached in ``cache_dir`` (see the module docstring).

    fp16: build with FP16 kernels allowed; profile: batch (min, opt, max) — ``max_batch`` is the
    profile's max and larger inputs are split; buffers: a device-buffer provider (default
    :class:`TorchCudaBuffers`). Attributes: ``engine_path``, ``cache_key`` (dict), ``built``
    (True when this instance built the engine rather than loading it from the cache),
    ``support_check`` (maps a small-k top-k export may have truncated, :class:`base.SupportCheck`).
    """

    name = "trt"

    def __init__(self, onnx_path, cache_dir, *, fp16: bool = True, workspace_bytes: int = DEFAULT_WORKSPACE,
                 profile=DEFAULT_PROFILE, buffers=None, input_size=None, device: int = 0):
        trt = import_tensorrt()
        self.input_size, static_batch = onnx_input_size(onnx_path, expected=input_size)
        if static_batch:
            raise InputError(f"{onnx_path}: TensorRT needs a dynamic batch axis, the model's is fixed at {static_batch}")
        self.trt = trt
        self.buffers = buffers if buffers is not None else TorchCudaBuffers(device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.profile = tuple(int(b) for b in profile)
        self.max_batch = self.profile[2]
        gpu_name, capability = self.buffers.gpu()
        self.cache_key = engine_cache_key(gpu_name, capability, str(trt.__version__), file_sha256(onnx_path),
                                          fp16, self.profile)
        cache_dir = Path(cache_dir)
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.engine_path = cache_dir / f"{Path(onnx_path).stem}-{self.cache_key['key']}.engine"
        runtime = trt.Runtime(self.logger)
        self.engine, self.built = None, False
        if self.engine_path.exists():
            self.engine = runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self.engine is None:  # no cached engine, or one this TensorRT cannot read: build
            w, h = self.input_size
            blob = build_engine(trt, Path(onnx_path).read_bytes(), (3, h, w), fp16=fp16,
                                workspace_bytes=workspace_bytes, profile=self.profile, logger=self.logger)
            tmp = self.engine_path.with_suffix(".engine.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, self.engine_path)
            self.engine_path.with_suffix(".json").write_text(json.dumps(self.cache_key, indent=2) + "\n")
            self.engine = runtime.deserialize_cuda_engine(blob)
            self.built = True
            if self.engine is None:
                raise RuntimeError("TensorRT could not deserialise the engine it just built")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        if len(inputs) != 1:
            raise InputError(f"{onnx_path}: expected one engine input, got {inputs}")
        self.input_name = inputs[0]
        self.output_names = [n for n in names if n != self.input_name]
        check_outputs({k: np.zeros(1) for k in self.output_names}, 1, "the TensorRT engine")  # names only
        self.dtypes = {n: np.dtype(trt.nptype(self.engine.get_tensor_dtype(n))) for n in names}
        self.context = self.engine.create_execution_context()
        self.meta = load_sidecar(onnx_path) or {}
        self.support_check = SupportCheck(self.meta)

    def _run_batch(self, images: np.ndarray) -> dict:
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
