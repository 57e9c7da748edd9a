"""OpenVinoRunner: an exported ONNX pose model on Intel OpenVINO's CPU plugin (optional runtime).

It reads the same ``.onnx`` + sidecar as :class:`ort_runner.OrtRunner` (OpenVINO imports ONNX
directly; no IR conversion) and returns the same named outputs. OpenVINO is not a requirement of
the package: ``pip install -r requirements-optional.txt`` (or ``pip install openvino``) adds it,
and without it ``runtime="openvino"`` is an InputError that says so.

Precision is pinned to f32: on CPUs with bfloat16 support (AVX512_BF16, AMX) OpenVINO's default
``INFERENCE_PRECISION_HINT`` is bf16, which on the shipped student moves the maps by up to 0.03
and presence / visibility / OKS-quality by up to 0.16 (6 real crops); f32 stays within 2e-6 of
onnxruntime. Thread pinning is off: the pose model shares the cores with the
detector (ORT) and the node's own threads, and pinned OpenVINO threads wait for busy cores (on the
2 shared cores, interleaved with ORT, detector + 3 people per frame: 1.03-1.32x ORT's time pinned,
0.98-1.05x unpinned, in the same three rounds). The batch axis stays dynamic, so one compiled
model serves any number of people per call.
"""
import threading

import numpy as np

from ..errors import InputError
from .base import (
    HEATMAP_OUTPUT,
    LOGITS_OUTPUT,
    OUTPUT_NAMES,
    WIDE_OUTPUT,
    RuntimeUnavailableError,
    SupportCheck,
    batch_limit,
    check_outputs,
    model_sidecar,
    onnx_input_size,
    pad_batch,
    run_in_chunks,
    validate_images,
)

_KNOWN_OUTPUTS = OUTPUT_NAMES + (WIDE_OUTPUT, HEATMAP_OUTPUT, LOGITS_OUTPUT)


def import_openvino():
    """The ``openvino`` module, or RuntimeUnavailableError (an InputError) naming the install."""
    try:
        import openvino
    except ImportError as exc:
        raise RuntimeUnavailableError(f"runtime 'openvino' needs OpenVINO, which is not installed ({exc}): "
                                      f"pip install openvino (or pip install -r requirements-optional.txt)") from None
    return openvino


def _output_name(port) -> str:
    """The ONNX output name of a compiled model's output (OpenVINO keeps it among the port's names)."""
    names = port.get_names()
    return next((n for n in _KNOWN_OUTPUTS if n in names), port.get_any_name())


class OpenVinoRunner:
    """Run ``onnx_path`` with OpenVINO on the CPU.

    threads: inference threads (None = OpenVINO's default, one per core); max_batch: largest
    batch per call (:func:`base.batch_limit`). ``meta`` and ``support_check`` as :class:`ort_runner.OrtRunner`.
    """

    name = "openvino"

    def __init__(self, onnx_path, threads=None, max_batch=None, input_size=None, allow_uncalibrated: bool = False):
        ov = import_openvino()
        self.input_size, static_batch = onnx_input_size(onnx_path, expected=input_size)
        self.meta = model_sidecar(onnx_path, allow_uncalibrated)
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32", "ENABLE_CPU_PINNING": False}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.compiled = ov.Core().compile_model(str(onnx_path), "CPU", config)
        except Exception as exc:  # noqa: BLE001 - OpenVINO raises RuntimeError variants
            raise InputError(f"OpenVINO cannot load {onnx_path}: {exc}") from None
        self.output_names = [_output_name(port) for port in self.compiled.outputs]
        check_outputs({k: np.zeros(1) for k in self.output_names}, 1, str(onnx_path))  # names only
        self.static_batch = static_batch
        self.max_batch = batch_limit(max_batch, static_batch)
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()  # an infer request runs one call at a time
        self.support_check = SupportCheck(self.meta)

    def _run_batch(self, images: np.ndarray) -> dict:
        n = len(images)
        with self.lock:
            self.request.infer({0: pad_batch(images, self.static_batch)})
            # copies: the request's output tensors are overwritten by its next call
            values = [np.array(self.request.get_output_tensor(i).data[:n]) for i in range(len(self.output_names))]
        return self.support_check(check_outputs(dict(zip(self.output_names, values)), n, "the ONNX model (OpenVINO)"))

    def run(self, images: np.ndarray) -> dict:
        """images: (N, 3, H, W) float32 -> the model's named outputs as numpy arrays."""
        return run_in_chunks(self._run_batch, validate_images(images, self.input_size), self.max_batch)
