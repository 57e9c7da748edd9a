"""The Runner protocol (a batch of crops in, the model's named outputs out) and what runners share.

Every runtime (torch, ONNX Runtime, TensorRT, OpenVINO) takes ``images (N, 3, H, W)`` float32 — crops
already warped (UDP) and normalised (RGB, ImageNet mean/std on the 0-255 scale) — and returns
numpy arrays under the model's output names. Batches larger than a runner's ``max_batch`` are
split and concatenated here, never dropped.
"""
import hashlib
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import InputError
from ..jsonio import load_json

#: The outputs every runner returns, in ONNX output order.
OUTPUT_NAMES: tuple[str, ...] = ("prob_maps", "presence", "visibility", "oks_quality")
#: Extra output of the double-heatmap variant.
WIDE_OUTPUT = "wide_prob_maps"
#: The map output of a heatmap-baseline model (map_kind "heatmap"), in place of "prob_maps".
HEATMAP_OUTPUT = "heatmaps"
#: the map logits before the temperature, returned only when asked (calibration)
LOGITS_OUTPUT = "map_logits"
INPUT_NAME = "images"
DEFAULT_MAX_BATCH = 16
_WARNED_UNCALIBRATED: set[str] = set()  # sidecars found missing and warned about (model_sidecar)


class RuntimeUnavailableError(InputError):
    """The requested runtime (TensorRT, a CUDA device, ...) is not installed or not usable here."""


@runtime_checkable
class Runner(Protocol):
    """A pose network behind one call.

    ``input_size`` is (W, H); ``max_batch`` the largest batch sent to the backend at once
    (bigger inputs are split); ``name`` says which runtime this is ("torch", "ort", "trt", "openvino").
    """

    input_size: tuple
    max_batch: int
    name: str

    def run(self, images: np.ndarray) -> dict:
        """images: (N, 3, H, W) float32 -> {"prob_maps": (N, K, h, w), "presence": (N, K), ...}."""
        ...


def validate_images(images, input_size) -> np.ndarray:
    """Check a batch of crops against ``input_size`` (W, H); InputError names expected vs got."""
    w, h = (int(v) for v in input_size)
    expected = f"(N, 3, {h}, {w}) float32"
    if not isinstance(images, np.ndarray):
        raise InputError(f"images must be a numpy array {expected}, got {type(images).__name__}")
    if images.dtype != np.float32:
        raise InputError(f"images must be {expected}, got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1:] != (3, h, w):
        raise InputError(f"images must be {expected}, got shape {images.shape}")
    return np.ascontiguousarray(images)


def run_in_chunks(run_batch: Callable[[np.ndarray], dict], images: np.ndarray, max_batch: int) -> dict:
    """Call ``run_batch`` on slices of at most ``max_batch`` images and concatenate the outputs.

    An empty batch runs one blank image and returns its outputs cut to length 0 (so callers
    get correctly shaped empty arrays).
    """
    n = len(images)
    if n == 0:
        return {k: v[:0] for k, v in run_batch(np.zeros((1,) + images.shape[1:], np.float32)).items()}
    parts = [run_batch(images[i:i + max_batch]) for i in range(0, n, max_batch)]
    if len(parts) == 1:
        return parts[0]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def batch_limit(max_batch, static_batch) -> int:
    """A runner's ``max_batch``: the asked one (None: 16), never above a static batch axis (None:
    dynamic); a static-batch model's runner pads smaller chunks to its batch and cuts the padding off."""
    if static_batch:
        return int(static_batch) if max_batch is None else min(int(max_batch), int(static_batch))
    return DEFAULT_MAX_BATCH if max_batch is None else int(max_batch)


def pad_batch(images: np.ndarray, static_batch) -> np.ndarray:
    """``images`` zero-padded to a static batch axis of ``static_batch`` (None / 0: dynamic, as is);
    the runner cuts the padding off its outputs."""
    n = len(images)
    if not static_batch or n >= static_batch:
        return images
    return np.concatenate([images, np.zeros((static_batch - n,) + images.shape[1:], np.float32)])


def check_outputs(outputs: dict, n: int, where: str) -> dict:
    """Keep the named outputs as float32 arrays; InputError if one is missing or mis-sized.

    A heatmap-baseline model gives ``heatmaps`` in place of ``prob_maps``.
    """
    required = ((HEATMAP_OUTPUT,) + OUTPUT_NAMES[1:]) if HEATMAP_OUTPUT in outputs else OUTPUT_NAMES
    missing = [k for k in required if k not in outputs]
    if missing:
        raise InputError(f"{where} has no output(s) {missing}; got {sorted(outputs)}")
    names = required + tuple(k for k in (WIDE_OUTPUT, LOGITS_OUTPUT) if k in outputs)
    result = {k: np.asarray(outputs[k], dtype=np.float32) for k in names}
    bad = {k: v.shape for k, v in result.items() if len(v) != n}
    if bad:
        raise InputError(f"{where} returned outputs whose batch is not {n}: {bad}")
    return result


def topk_bound(meta: dict | None) -> int | None:
    """The ``k`` of a top-k Sparsemax export that can truncate a map (k < H*W), else None.

    ``meta`` is the export sidecar; sidecars of older exports (top-k 128 by default) say
    ``{"method": "topk", "k": 128}`` and are bounded as well."""
    sparse = (meta or {}).get("sparsemax") or {}
    k = sparse.get("k")
    if sparse.get("method") != "topk" or not k:
        return None
    size = meta.get("heatmap_size")
    return None if size and int(k) >= int(np.prod(size)) else int(k)


class SupportCheck:
    """Counts the maps a small-k top-k export may have truncated (support size reached ``k``).

    ``k`` from :func:`topk_bound` of the runner's sidecar; with ``k`` None (exact exports)
    nothing is checked. ``maps_checked`` and ``truncated_maps`` only grow (plain ints, read
    from any thread, e.g. by the node's diagnostics); ORT and TRT runners carry one as
    ``support_check`` and pass every batch's outputs through it.
    """

    def __init__(self, meta: dict | None):
        self.k = topk_bound(meta)
        self.maps_checked = 0
        self.truncated_maps = 0

    def __call__(self, outputs: dict) -> dict:
        """Count ``outputs``' prob_maps (and wide_prob_maps); returns ``outputs`` unchanged."""
        if self.k is None:
            return outputs
        for key in (OUTPUT_NAMES[0], WIDE_OUTPUT):
            if key in outputs:
                maps = outputs[key]
                support = np.count_nonzero(maps.reshape(*maps.shape[:2], -1), axis=-1)
                self.maps_checked += support.size
                self.truncated_maps += int(np.count_nonzero(support >= self.k))
        return outputs


def sidecar_path(onnx_path) -> Path:
    """The metadata file written next to an ONNX model: ``model.onnx`` -> ``model.json``."""
    return Path(onnx_path).with_suffix(".json")


def load_sidecar(onnx_path) -> dict | None:
    """The export metadata of ``onnx_path``, or None when there is no sidecar."""
    path = sidecar_path(onnx_path)
    return load_json(path, "ONNX metadata sidecar") if path.exists() else None


def model_sidecar(onnx_path, allow_uncalibrated: bool = False) -> dict:
    """The sidecar of the pose model ``onnx_path``, which carries its calibration (presence
    threshold, map temperature, decode sharpness) and codec; the one check runners make.

    Without the sidecar the model would run with the defaults (presence threshold 0.45,
    temperature 1, sharpness 1): uncalibrated presence and regions. That is an InputError naming
    the missing file, unless ``allow_uncalibrated`` (an explicit choice: ``--allow-uncalibrated``,
    the node's ``allow_uncalibrated``), which warns (once per file and process) and returns {}.
    """
    sidecar = load_sidecar(onnx_path)
    if sidecar is not None:
        return sidecar
    missing = sidecar_path(onnx_path)
    if not allow_uncalibrated:
        raise InputError(f"{onnx_path} has no metadata sidecar: {missing} is missing (it holds the model's "
                         f"calibrated presence threshold, temperature and codec; `probpose export` writes it). "
                         f"Pass allow_uncalibrated=True / --allow-uncalibrated to run it uncalibrated")
    if str(missing) in _WARNED_UNCALIBRATED:
        return {}
    _WARNED_UNCALIBRATED.add(str(missing))
    warnings.warn(f"{onnx_path} runs UNCALIBRATED: its sidecar {missing} is missing, so it uses the default "
                  f"presence threshold, temperature 1 and sharpness 1 (presence and credible regions are not "
                  f"calibrated)", UserWarning, stacklevel=2)
    return {}


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_onnx(onnx_path):
    """The ModelProto of ``onnx_path``; InputError when it is missing or not an ONNX model."""
    import onnx

    path = Path(onnx_path)
    if not path.exists():
        raise InputError(f"ONNX model not found: {path}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError / ValueError variants
        raise InputError(f"cannot read ONNX model {path}: {exc}") from None


def onnx_input_size(onnx_path, expected=None) -> tuple[tuple, int | None]:
    """Read the ``images`` input of an ONNX model: returns ((W, H), static batch or None).

    Raises InputError when the file is missing or unreadable, the input is not
    ``(batch, 3, H, W)`` with static H and W, or its size disagrees with ``expected`` (W, H)
    or with the sidecar's ``input_size``.
    """
    path = Path(onnx_path)
    model = load_onnx(path)
    inputs = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    if len(inputs) != 1:
        raise InputError(f"{path}: expected one input {INPUT_NAME!r}, got {[i.name for i in inputs]}")
    dims = [d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim]
    if len(dims) != 4 or dims[1] != 3 or dims[2] is None or dims[3] is None:
        shown = ["?" if d is None else d for d in dims]
        raise InputError(f"{path}: input {inputs[0].name!r} must be (batch, 3, H, W) with static H, W; got {shown}")
    size = (dims[3], dims[2])
    sidecar = load_sidecar(path)
    for what, want in (("the sidecar", sidecar and sidecar.get("input_size")), ("the caller", expected)):
        if want is not None and tuple(int(v) for v in want) != size:
            raise InputError(f"{path}: ONNX input is {size[0]}x{size[1]} (W x H) but {what} expects "
                             f"{int(want[0])}x{int(want[1])}")
    return size, dims[0] if dims[0] else None
