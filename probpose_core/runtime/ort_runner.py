"""OrtRunner: an exported ONNX pose model on ONNX Runtime (the default runtime).

CPU by default; the CUDA execution provider goes first when this onnxruntime build has it.
The input size is read from the model and checked against the sidecar written by
``export.py`` (and against ``input_size`` when given) at load, so a model exported for
another crop size fails there rather than on the first frame.
"""
import numpy as np

from ..errors import InputError
from .base import (
    SupportCheck,
    batch_limit,
    check_outputs,
    model_sidecar,
    onnx_input_size,
    pad_batch,
    run_in_chunks,
    validate_images,
)


def session_options(threads=None):
    """The ``onnxruntime.SessionOptions`` every inference session of this package uses:
    ``threads`` intra-op threads (None: ORT's default), all graph optimisations, and the
    intra-op thread pool's spinning OFF. A spinning pool keeps its
    threads busy-waiting after each run; with two sessions taking turns on the same cores (the
    detector, then the pose model, every frame) each one's spinning steals the other's CPU:
    on 2 cores NanoDet + the student at batch 3 take 93 ms with spinning, 50 ms without
    (``make bench``'s node rows measure the effect end to end).

    ``probpose bench --model models/probpose_student.onnx`` times the alternatives side by side
    (bench_model.run_onnx_bench; three runs of 40 turns on the 2 shared cores, ratios to these
    options at batch 1 / batch 3 / a PicoDet + 3-people frame): none wins the frame. Spinning on
    1.47-2.01 / 0.78-2.56 / 1.33-2.67; one intra-op thread 0.87-0.89 at batch 1 but 0.97-1.23 /
    1.06-1.30 on batch 3 and the frame; graph optimisation basic / extended / off 1.17-2.52 on every
    column (ENABLE_ALL's NCHWc layout matters); parallel execution, memory pattern off 1.1-2.4;
    CPU arena off 0.99-1.59; denormals as zero, dynamic block base 4 within the noise (0.92-1.10)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = int(threads)
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def default_providers() -> list[str]:
    """CUDA first when available, CPU always (the order ONNX Runtime tries them in)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]


class OrtRunner:
    """Run ``onnx_path`` with onnxruntime.

    threads: intra-op thread count (None = onnxruntime's default); providers: execution
    providers in priority order (None = :func:`default_providers`); max_batch: largest batch
    per call (None = the model's static batch, or 16 for a dynamic batch axis). A model with a
    static batch b gets smaller chunks zero-padded to b and the padding cut off again.
    ``meta`` is the export sidecar (temperature, presence threshold, ...); a model without one is
    refused unless ``allow_uncalibrated`` (then {} and a warning, :func:`base.model_sidecar`);
    ``support_check`` (:class:`base.SupportCheck`) counts maps a small-k top-k export may have
    truncated.
    """

    name = "ort"

    def __init__(self, onnx_path, threads=None, providers=None, max_batch=None, input_size=None,
                 allow_uncalibrated: bool = False):
        import onnxruntime as ort

        self.input_size, self.static_batch = onnx_input_size(onnx_path, expected=input_size)
        try:
            self.session = ort.InferenceSession(str(onnx_path), session_options(threads),
                                                providers=list(providers or default_providers()))
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own Fail/InvalidGraph types
            raise InputError(f"onnxruntime cannot load {onnx_path}: {exc}") from None
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]
        check_outputs({k: np.zeros(1) for k in self.output_names}, 1, str(onnx_path))  # names only
        self.max_batch = batch_limit(max_batch, self.static_batch)
        self.providers = self.session.get_providers()
        self.meta = model_sidecar(onnx_path, allow_uncalibrated)
        self.support_check = SupportCheck(self.meta)

    def _run_batch(self, images: np.ndarray) -> dict:
        n = len(images)
        values = self.session.run(self.output_names, {self.input_name: pad_batch(images, self.static_batch)})
        return self.support_check(check_outputs({k: v[:n] for k, v in zip(self.output_names, values)}, n,
                                                "the ONNX model"))

    def run(self, images: np.ndarray) -> dict:
        """images: (N, 3, H, W) float32 -> the model's named outputs as numpy arrays."""
        return run_in_chunks(self._run_batch, validate_images(images, self.input_size), self.max_batch)
