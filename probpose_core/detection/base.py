"""The person-detector protocol and the checks every detector shares.

A detector takes one RGB frame and returns the people in it as COCO ``xywh`` boxes in image
pixels (float64) with scores in [0, 1], sorted by score, highest first. The pose pipeline
crops each box's activation window, so nothing else about the detector matters to it.
"""
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from probpose_core.errors import InputError
from probpose_core.runtime.ort_runner import session_options


@runtime_checkable
class Detector(Protocol):
    """Finds people in a frame."""

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame (H, W, 3)`` uint8 RGB -> ``boxes (M, 4)`` xywh float64, ``scores (M,)``."""
        ...


def check_frame(frame) -> np.ndarray:
    """The frame as an ``(H, W, 3)`` uint8 array, or InputError saying what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise InputError(f"frame must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame must have shape (H, W, 3) (RGB), got {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"frame is empty: shape {frame.shape}")
    return frame



def detector_session(path, score_threshold: float, iou_threshold: float, threads: int | None = None,
                     providers=None):
    """An ONNX Runtime session for a detector model at ``path`` after the checks every ONNX
    detector shares (file exists, thresholds in [0, 1]); InputError naming the file otherwise.
    ``threads``: intra-op threads (None: ORT's default); ``providers``: default CPU."""
    import onnxruntime as ort

    if not Path(path).is_file():
        raise InputError(f"detector model not found: {path}")
    if not 0.0 <= score_threshold <= 1.0 or not 0.0 <= iou_threshold <= 1.0:
        raise InputError(f"score_threshold and iou_threshold must lie in [0, 1], "
                         f"got {score_threshold}, {iou_threshold}")
    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=providers or ["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own types for unreadable / invalid models
        raise InputError(f"cannot load detector model {path}: {err}") from err
