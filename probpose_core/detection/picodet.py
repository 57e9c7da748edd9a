"""PicoDet-S-LCNet pedestrian detector (PaddleDetection, 320x320, person only) in ONNX Runtime.

Shipped as ``models/picodet_s_320_pedestrian.onnx``: PaddleDetection's
``configs/picodet/application/pedestrian_detection`` model exported without NMS, published as an
OpenVINO IR (fp16 weights) and translated to ONNX by tools/picodet_to_onnx.py (NOTICE in models/).
Chosen over NanoDet by measurement on COCO people (tools/compare_detectors.py, README
"Person detector").

Input ``(1, 3, S, S)`` (S = 320; 192 for the smaller export, read from the model): the whole
frame resized to S x S (no letterbox, aspect not kept), RGB, ``(pixel / 255 - mean) / std`` with
ImageNet's mean and std, NCHW float32. Outputs: ``boxes (1, N, 4)`` x0, y0, x1, y1 in input
pixels and ``scores (1, 1, N)`` (one class: pedestrian), decoded in the graph; N = 2125 for
S = 320. Candidates scoring at least the score threshold are scaled back by (W / S, H / S),
clipped to the image, and go through the shared NMS (``nms.finish_detections``).
"""
from pathlib import Path

import cv2
import numpy as np

from probpose_core.detection.base import check_frame, detector_session
from probpose_core.detection.nms import finish_detections
from probpose_core.errors import InputError

SHIPPED = "picodet_s_320_pedestrian.onnx"
MEAN_RGB = np.array([0.485, 0.456, 0.406], np.float32)
STD_RGB = np.array([0.229, 0.224, 0.225], np.float32)
# (v / 255 - MEAN) / STD of every uint8 value, per RGB channel (3, 256): a table lookup per plane
_NORMALISED_RGB = (np.arange(256, dtype=np.float32)[None, :] / 255 - MEAN_RGB[:, None]) / STD_RGB[:, None]
#: score threshold of the shipped detector (recall / precision table in README)
SCORE_THRESHOLD = 0.46
#: NMS IoU threshold (PaddleDetection's PicoDet post-processing uses 0.6)
IOU_THRESHOLD = 0.6


class PicoDetDetector:
    """A :class:`~probpose_core.detection.base.Detector` running a PicoDet pedestrian ONNX.

    ``onnx_path`` None: the shipped file (SHA-256 checked). ``threads``: ONNX Runtime intra-op
    threads (None: its default).
    """

    name = "picodet"

    def __init__(self, onnx_path=None, score_threshold: float = SCORE_THRESHOLD,
                 iou_threshold: float = IOU_THRESHOLD, threads: int | None = None, max_detections: int = 100,
                 providers=None):
        from probpose_core.shipped import shipped_file

        path = Path(onnx_path) if onnx_path else shipped_file(SHIPPED)
        self._session = detector_session(path, score_threshold, iou_threshold, threads, providers)
        model_input = self._session.get_inputs()[0]
        shape = model_input.shape
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise InputError(f"{path} is not a PicoDet pedestrian model: input {model_input.name} {shape}, "
                             f"expected (1, 3, S, S)")
        self.input_size = int(shape[2])
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        boxes = [n for n, s in outputs.items() if len(s) == 3 and s[2] == 4]
        scores = [n for n, s in outputs.items() if len(s) == 3 and s[1] == 1 and s[2] != 4]
        if len(boxes) != 1 or len(scores) != 1 or outputs[boxes[0]][1] != outputs[scores[0]][2]:
            raise InputError(f"{path} is not a PicoDet pedestrian model: outputs {outputs}, expected "
                             f"boxes (1, N, 4) and scores (1, 1, N)")
        self._input, self._names = model_input.name, [boxes[0], scores[0]]
        self.score_threshold, self.iou_threshold = float(score_threshold), float(iou_threshold)
        self.max_detections = int(max_detections)

    def preprocess(self, frame: np.ndarray) -> np.ndarray:
        """``frame (H, W, 3)`` uint8 RGB -> input ``(1, 3, S, S)`` float32 (whole frame resized)."""
        size = self.input_size
        small = cv2.resize(check_frame(frame), (size, size), interpolation=cv2.INTER_LINEAR)
        blob = np.empty((1, 3, size, size), dtype=np.float32)
        for c in range(3):
            np.take(_NORMALISED_RGB[c], small[:, :, c], out=blob[0, c])
        return blob

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame (H, W, 3)`` uint8 RGB -> person ``boxes (M, 4)`` xywh float64 in image
        pixels and ``scores (M,)``, highest score first."""
        blob = self.preprocess(frame)
        boxes, scores = self._session.run(self._names, {self._input: blob})
        scores = scores.reshape(-1)
        idx = np.flatnonzero(scores >= self.score_threshold)
        height, width = frame.shape[:2]
        scale = np.array([width, height, width, height], np.float64) / self.input_size
        return finish_detections(boxes.reshape(-1, 4)[idx] * scale, scores[idx], (width, height),
                                 self.iou_threshold, self.max_detections)

