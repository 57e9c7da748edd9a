"""The one place a detector is built from its name: ``make_detector(spec)``.

``spec``: ``picodet`` (the shipped default: PicoDet-S pedestrian 320x320,
models/picodet_s_320_pedestrian.onnx), ``nanodet`` (NanoDet 416x416, COCO person class,
models/nanodet.onnx), ``hog`` (OpenCV's HOG people detector, weak), ``full_frame`` (the whole
image is one person: cameras framing one person), or the path of a YOLO-style ONNX
(probpose_core.detection.onnx_yolo).
"""
from pathlib import Path

import numpy as np

from probpose_core.errors import InputError

DEFAULT_DETECTOR = "picodet"
NAMES = ("picodet", "nanodet", "hog", "full_frame")


class FullFrameDetector:
    """A Detector that returns the whole image as one person box (score 1)."""

    name = "full_frame"
    free = True  #: costs nothing: tracked.TrackedPipeline runs it on every frame (no duty cycle)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        return np.array([[0.0, 0.0, float(w), float(h)]]), np.ones(1)


def make_detector(spec: str = DEFAULT_DETECTOR, score_threshold: float | None = None, threads: int | None = None,
                  layout: str | None = None):
    """A Detector for ``spec`` (see the module docstring); InputError for anything else.
    ``score_threshold`` None keeps each detector's own default; ``layout`` is the output layout
    of a YOLO-style ONNX (``onnx_yolo.LAYOUTS``; None: read from an unambiguous output shape)."""
    spec = str(spec or DEFAULT_DETECTOR)
    kw = {} if score_threshold is None else {"score_threshold": float(score_threshold)}
    if layout is not None and not spec.lower().endswith(".onnx"):
        raise InputError(f"a detector layout ({layout!r}) applies only to a YOLO-style .onnx detector, not {spec!r}")
    if spec == "picodet":
        from probpose_core.detection.picodet import PicoDetDetector

        return PicoDetDetector(threads=threads, **kw)
    if spec == "nanodet":
        from probpose_core.detection.nanodet import NanoDetDetector

        return NanoDetDetector(threads=threads, **kw)
    if spec == "full_frame":
        return FullFrameDetector()
    if spec == "hog":
        from probpose_core.detection.hog import HogDetector

        return HogDetector(**kw)
    if spec.lower().endswith(".onnx"):
        if not Path(spec).is_file():
            raise InputError(f"detector model not found: {spec}")
        from probpose_core.detection.onnx_yolo import OnnxYoloDetector

        return OnnxYoloDetector(spec, threads=threads, layout=layout or "auto", **kw)
    raise InputError(f"unknown detector {spec!r}: use {', '.join(NAMES)}, or the path of a YOLO-style .onnx")
