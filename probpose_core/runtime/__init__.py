"""Runtimes behind one Runner protocol: torch, ONNX Runtime (default), TensorRT, OpenVINO; and ONNX export.

``make_runner(model_path, runtime)`` picks one from a file:

- ``runtime="torch"``: our ``.pt`` checkpoint -> :class:`TorchRunner` (an ``.onnx`` is refused).
- ``runtime="ort"``: an ``.onnx`` with its sidecar -> :class:`OrtRunner` (an ``.onnx`` without
  its sidecar is refused: it would run uncalibrated; ``allow_uncalibrated=True`` runs it, warned). A ``.pt`` checkpoint
  is exported first (``export_onnx`` with its defaults: exact Sparsemax) into ``cache_dir``
  (default ``$PROBPOSE_CACHE`` or ``~/.cache/probpose``) under a key of the checkpoint file's
  SHA-256 and the exporter's version and options (``export.export_options``), once: later calls
  with the same checkpoint and exporter reuse that ONNX; a changed exporter exports again.
- ``runtime="trt"``: like ``ort``, then :class:`TrtRunner` with its engine cache in the same
  folder (untested on real TensorRT; see trt_runner.py).
- ``runtime="openvino"``: like ``ort``, then :class:`OpenVinoRunner` (CPU, f32) on the same
  ``.onnx`` + sidecar; an optional dependency (requirements-optional.txt): an InputError naming
  ``pip install openvino`` where it is not installed.

Runners carry ``meta``: the checkpoint meta (torch) or the ONNX sidecar (ort / trt / openvino), where
the calibration temperature and presence threshold live.
"""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import InputError
from .base import (
    OUTPUT_NAMES,
    Runner,
    RuntimeUnavailableError,
    file_sha256,
    sidecar_path,
)

RUNTIMES = ("ort", "torch", "trt", "openvino")

__all__ = ["OUTPUT_NAMES", "RUNTIMES", "Runner", "RuntimeUnavailableError", "as_runner", "default_cache_dir",
           "make_runner", "onnx_for_checkpoint"]


def default_cache_dir() -> Path:
    """``$PROBPOSE_CACHE``, else ``$XDG_CACHE_HOME/probpose``, else ``~/.cache/probpose``."""
    if os.environ.get("PROBPOSE_CACHE"):
        return Path(os.environ["PROBPOSE_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "probpose"


def onnx_for_checkpoint(checkpoint_path, cache_dir=None) -> Path:
    """The ONNX export of a ``.pt`` checkpoint, made once and cached under a key of the file's
    SHA-256 and the exporter's version and default options."""
    from ..models.checkpoints import load_checkpoint
    from .export import export_onnx, export_options

    checkpoint_path = Path(checkpoint_path)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "onnx"
    key = json.dumps({"checkpoint_sha256": file_sha256(checkpoint_path), "export": export_options()}, sort_keys=True)
    target = folder / f"{checkpoint_path.stem}-{hashlib.sha256(key.encode()).hexdigest()[:16]}.onnx"
    if target.exists() and sidecar_path(target).exists():
        return target
    model, meta = load_checkpoint(checkpoint_path)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:  # export aside, then move: never a half-written model
        staged = export_onnx(model, Path(tmp) / target.name, meta=meta)
        os.replace(sidecar_path(staged), sidecar_path(target))
        shutil.move(str(staged), str(target))
    return target


def make_runner(model_path, runtime: str = "ort", *, allow_uncalibrated: bool = False, **kw) -> Runner:
    """A Runner for ``model_path`` (``.pt`` checkpoint or ``.onnx``) on ``runtime`` (see module doc).

    allow_uncalibrated: run an ``.onnx`` that has no sidecar (its calibration) with the default
    settings, with a warning, instead of refusing it (:func:`base.model_sidecar`). Other keyword
    arguments go to the runner (``threads``, ``providers``, ``max_batch``, ``device``, ``fp16``,
    ...); ``cache_dir`` sets where exports and TensorRT engines are cached.
    """
    if runtime not in RUNTIMES:
        raise InputError(f"unknown runtime {runtime!r}; choose from {', '.join(RUNTIMES)}")
    path = Path(model_path)
    if not path.exists():
        raise InputError(f"model not found: {path}")
    suffix = path.suffix.lower()
    if suffix not in (".pt", ".onnx"):
        raise InputError(f"model must be our checkpoint (.pt) or an exported .onnx, got {path.name}")
    cache_dir = kw.pop("cache_dir", None)
    if runtime == "torch":
        if suffix != ".pt":
            raise InputError(f"--runtime torch needs our .pt checkpoint, got {path.name} (use --runtime ort for .onnx)")
        from ..models.checkpoints import load_checkpoint
        from .torch_runner import TorchRunner

        model, meta = load_checkpoint(path)
        return TorchRunner(model, meta=meta, **kw)
    if runtime == "trt":
        from .trt_runner import import_tensorrt

        import_tensorrt()  # fail before exporting anything
    if runtime == "openvino":
        from .openvino_runner import import_openvino

        import_openvino()  # fail before exporting anything
    onnx_path = path if suffix == ".onnx" else onnx_for_checkpoint(
        path, Path(cache_dir) / "onnx" if cache_dir is not None else None)
    if runtime == "ort":
        from .ort_runner import OrtRunner

        return OrtRunner(onnx_path, allow_uncalibrated=allow_uncalibrated, **kw)
    if runtime == "openvino":
        from .openvino_runner import OpenVinoRunner

        return OpenVinoRunner(onnx_path, allow_uncalibrated=allow_uncalibrated, **kw)
    from .trt_runner import TrtRunner

    engines = Path(cache_dir) / "trt" if cache_dir is not None else default_cache_dir() / "trt"
    return TrtRunner(onnx_path, engines, allow_uncalibrated=allow_uncalibrated, **kw)


def as_runner(model, runtime: str = "ort", allow_uncalibrated: bool = False) -> Runner:
    """A Runner from a path (.pt / .onnx, via :func:`make_runner`, which ``allow_uncalibrated``
    goes to; empty or None: the shipped model), a Runner (returned as it is), or a torch module
    (a TorchRunner around it)."""
    if model is None or model == "":
        from ..shipped import default_pose_model

        model = default_pose_model()
    if isinstance(model, (str, Path)):
        return make_runner(model, runtime=runtime, allow_uncalibrated=allow_uncalibrated)
    if hasattr(model, "run"):
        return model
    from .torch_runner import TorchRunner

    return TorchRunner(model)
