"""Person detection with a user-supplied YOLO-style ONNX model (ONNX Runtime).

Four output layouts are understood (the model's first output is used), named by ``layout``:

- ``"yolov8"`` (also YOLO11; aliases ``"yolo11"``, ``"v8"``) — Ultralytics detection exports:
  ``(1, 4 + C, N)``; each column is ``cx, cy, w, h`` in input pixels followed by C class scores
  (already sigmoid-ed, no objectness).
- ``"yolov5"`` — YOLOv5 exports: ``(1, N, 5 + C)``; each row is ``cx, cy, w, h, objectness,
  C class scores``; score ``objectness * class score``.
- ``"yolox"`` — YOLOX exports: the same ``(1, N, 5 + C)`` rows as YOLOv5, but a different
  input (below). By default the boxes are taken as already decoded to input pixels (an export
  with ``decode_in_inference`` on, as most converted YOLOX models ship). YOLOX's own
  ``tools/export_onnx.py`` leaves it off by default; for such a model pass ``yolox_raw=True``
  and the grid/stride decoding (strides 8, 16, 32, ``xy = (raw + cell) * stride``,
  ``wh = exp(raw) * stride``) is done here.
- ``"end2end"`` — NMS-free exports (YOLOv10, YOLO26 and other end-to-end models): ``(1, N, 6)``
  (typically N = 300); each row is ``x0, y0, x1, y1`` in input pixels, score, class id. The
  model's own selection is final: no NMS is run on it.

``layout="auto"`` (default) accepts only the shape that has one reading: ``(1, 4 + C, N)`` with
the anchor axis the long one is YOLOv8/11. A ``(1, N, K)`` output is refused with an error
naming the choices: YOLOv5 and YOLOX share it (with different preprocessing), and with K = 6
an end-to-end export has it too. In every layout a box counts as a person only when its class
is ``person_class``: in the score layouts the person class must have the highest class score
(as Ultralytics' and YOLOX's class filtering do), in ``end2end`` the class id must equal it;
and its score must be at least ``score_threshold``.

Preprocessing differs between exporters, so it is a :class:`Preprocessing` value:
Ultralytics models (YOLOv5, YOLOv8/11, YOLOv10, YOLO26) take RGB scaled to [0, 1] with the
image centred in the letterbox; YOLOX models take BGR 0-255 (no normalisation, YOLOX >= 0.2)
with the image in the top-left corner. Both pad with grey 114 and resize bilinearly. The
default follows the layout.

The input size is read from the model; a model with a dynamic input size needs
``input_size=(W, H)``. Boxes come back in original-image pixels, clipped to the image, after
class-agnostic NMS (not for ``end2end``), as xywh float64 with scores, highest first.
"""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from probpose_core.detection.base import check_frame, detector_session
from probpose_core.detection.letterbox import PAD_VALUE, Letterbox, letterbox
from probpose_core.detection.nms import cxcywh_to_xyxy, finish_detections
from probpose_core.errors import InputError

YOLOX_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class Preprocessing:
    """How a frame becomes the model's input tensor."""

    channel_order: str = "rgb"  # "rgb" | "bgr"
    scale: float = 1 / 255  # multiplies the 0-255 pixel values
    centered: bool = True  # image centred in the letterbox (else top-left)
    pad_value: int = PAD_VALUE


ULTRALYTICS = Preprocessing("rgb", 1 / 255, True)
PREPROCESSING = {
    "yolov8": ULTRALYTICS,
    "yolov5": ULTRALYTICS,
    "yolox": Preprocessing("bgr", 1.0, False),
    "end2end": ULTRALYTICS,
}
LAYOUTS = tuple(PREPROCESSING)
ALIASES = {"yolo11": "yolov8", "yolov11": "yolov8", "v8": "yolov8"}
#: per layout: (description of the shape, columns before the class scores / per row, anchors on axis 1)
_SHAPES = {
    "yolov8": ("(1, 4+C, N)", 4),
    "yolov5": ("(1, N, 5+C)", 5),
    "yolox": ("(1, N, 5+C)", 5),
    "end2end": ("(1, N, 6): x0, y0, x1, y1, score, class id", 6),
}
_CHOICES = ", ".join(repr(name) for name in LAYOUTS)


def _static(dim) -> bool:
    return isinstance(dim, int) and dim > 0


def _input_size(shape, input_size, where: str) -> tuple[int, int]:
    """Model input ``(W, H)`` from its ONNX input shape ``[N, 3, H, W]`` (dims may be names)."""
    if len(shape) != 4:
        raise InputError(f"{where}: input must be (N, 3, H, W), got shape {shape}")
    if _static(shape[1]) and shape[1] != 3:
        raise InputError(f"{where}: input must have 3 channels, got shape {shape}")
    if _static(shape[0]) and shape[0] != 1:
        raise InputError(f"{where}: input batch must be 1 or dynamic, got shape {shape}")
    model_hw = (shape[2], shape[3])
    if all(_static(d) for d in model_hw):
        size = (model_hw[1], model_hw[0])
        if input_size is not None and tuple(int(v) for v in input_size) != size:
            raise InputError(f"{where}: input_size {tuple(input_size)} does not match the model's "
                             f"input shape {shape} (W, H = {size})")
        return size
    if input_size is None:
        raise InputError(f"{where}: the model's input size is dynamic (shape {shape}); pass input_size=(W, H)")
    size = tuple(int(v) for v in input_size)
    if len(size) != 2 or min(size) <= 0:
        raise InputError(f"{where}: input_size must be (W, H) with positive sides, got {input_size}")
    return size


def _layout(shape, layout: str, where: str) -> tuple[str, int | None]:
    """``(layout, number of classes or None for end2end)`` from the output shape and the asked
    layout, or InputError naming the shape (and the choices when the shape is ambiguous)."""
    layout = ALIASES.get(layout, layout)
    if layout not in ("auto",) + LAYOUTS:
        raise InputError(f"unknown layout {layout!r}; choose 'auto' or one of {_CHOICES} (YOLO11: 'yolov8')")
    if len(shape) != 3 or (_static(shape[0]) and shape[0] != 1):
        raise InputError(f"{where}: unexpected output shape {shape}; expected YOLOv8/11 (1, 4+C, N), "
                         f"YOLOv5 / YOLOX (1, N, 5+C) or end-to-end (1, N, 6)")
    rows, cols = shape[1], shape[2]
    if layout == "auto":
        if _static(rows) and (not _static(cols) or rows < cols):
            layout = "yolov8"
        else:
            raise InputError(f"{where}: output shape {shape} is ambiguous: (1, N, 5+C) is YOLOv5 or YOLOX "
                             f"(different preprocessing), (1, N, 6) also an NMS-free end-to-end export "
                             f"(YOLOv10 / YOLO26); pass layout= one of {_CHOICES} ('yolov8' for (1, 4+C, N))")
    described, head = _SHAPES[layout]
    width = rows if layout == "yolov8" else cols
    if layout == "end2end":
        if width != head:
            raise InputError(f"{where}: output shape {shape} is not an end2end layout {described}")
        return layout, None
    if not _static(width) or width <= head:
        raise InputError(f"{where}: output shape {shape} is not a {layout} layout ({described}, C >= 1)")
    return layout, width - head


def yolox_grid(input_size, strides=YOLOX_STRIDES) -> tuple[np.ndarray, np.ndarray]:
    """Cell corners ``(N, 2)`` x, y and strides ``(N, 1)`` of YOLOX's raw outputs, in the order
    YOLOX emits them (stride by stride, row-major, x fastest)."""
    width, height = input_size
    cells, steps = [], []
    for stride in strides:
        ys, xs = np.mgrid[0:height // stride, 0:width // stride]
        cells.append(np.stack([xs.ravel(), ys.ravel()], axis=1))
        steps.append(np.full((xs.size, 1), stride))
    return np.concatenate(cells).astype(np.float64), np.concatenate(steps).astype(np.float64)


class OnnxYoloDetector:
    """A :class:`~probpose_core.detection.base.Detector` running a YOLO-style ONNX model.

    ``threads``: ONNX Runtime intra-op threads (None: its default). ``providers``: ORT
    execution providers (default CPU). ``max_detections`` caps the returned boxes.
    """

    def __init__(self, onnx_path, score_threshold: float = 0.25, iou_threshold: float = 0.45,
                 input_size=None, person_class: int = 0, threads: int | None = None, *,
                 layout: str = "auto", preprocessing: Preprocessing | None = None,
                 yolox_raw: bool = False, providers=None, max_detections: int = 300):
        path = Path(onnx_path)
        self._session = detector_session(path, score_threshold, iou_threshold, threads, providers)
        where = f"detector model {path.name}"
        model_input, output = self._session.get_inputs()[0], self._session.get_outputs()[0]
        self.input_size = _input_size(model_input.shape, input_size, where)
        self.layout, self.num_classes = _layout(output.shape, layout, where)
        if person_class < 0 or (self.num_classes is not None and person_class >= self.num_classes):
            raise InputError(f"{where}: person_class {person_class} is not among its {self.num_classes} classes")
        self._grid = None
        if yolox_raw:
            if self.layout != "yolox":
                raise InputError(f"{where}: yolox_raw=True needs a YOLOX output, got shape {output.shape}")
            self._grid = yolox_grid(self.input_size)
        self._input_name, self._output_name = model_input.name, output.name
        self._input_dtype = np.float16 if model_input.type == "tensor(float16)" else np.float32
        self.preprocessing = preprocessing or PREPROCESSING[self.layout]
        self.score_threshold = float(score_threshold)
        self.iou_threshold = 1.0 if self.layout == "end2end" else float(iou_threshold)  # 1.0: no NMS
        self.person_class, self.max_detections = int(person_class), int(max_detections)
        self.name = f"onnx-{self.layout}:{path.name}"

    def preprocess(self, frame: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """``frame (H, W, 3)`` uint8 RGB -> model input ``(1, 3, in_H, in_W)`` and its Letterbox."""
        pre = self.preprocessing
        canvas, box = letterbox(check_frame(frame), self.input_size, pre.centered, pre.pad_value)
        if pre.channel_order == "bgr":
            canvas = canvas[..., ::-1]
        blob = canvas.transpose(2, 0, 1)[None].astype(self._input_dtype)  # (numpy is ~10x cv2.dnn's blob)
        if pre.scale != 1.0:
            blob *= self._input_dtype(pre.scale)
        return blob, box

    def candidates(self, output: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Raw model output -> person candidates ``boxes (M, 4)`` x0, y0, x1, y1 in input
        pixels and ``scores (M,)``, before NMS."""
        described, head = _SHAPES[self.layout]
        channels_first = self.layout == "yolov8"
        width = head + (self.num_classes or 0)
        if output.ndim != 3 or output.shape[0] != 1 or output.shape[1 if channels_first else 2] != width:
            raise InputError(f"detector output has shape {output.shape}; expected {described} with C = {self.num_classes}")
        pred = output[0].T if channels_first else output[0]
        if self.layout == "end2end":
            score = pred[:, 4]
            idx = np.flatnonzero((score >= self.score_threshold) & (np.rint(pred[:, 5]) == self.person_class))
            return pred[idx, :4].astype(np.float64), score[idx].astype(np.float64)
        person = pred[:, head + self.person_class]
        score = person if channels_first else pred[:, 4] * person
        idx = np.flatnonzero(score >= self.score_threshold)
        if idx.size:  # the person class must be the best class (ties count as person)
            idx = idx[person[idx] >= pred[idx, head:].max(axis=1)]
        boxes = pred[idx, :4].astype(np.float64)
        if self._grid is not None:
            if pred.shape[0] != self._grid[0].shape[0]:
                raise InputError(f"detector output has {pred.shape[0]} anchors; a raw YOLOX model of "
                                 f"input {self.input_size} has {self._grid[0].shape[0]}")
            cells, strides = self._grid[0][idx], self._grid[1][idx]
            boxes = np.concatenate([(boxes[:, :2] + cells) * strides, np.exp(boxes[:, 2:]) * strides], axis=1)
        return cxcywh_to_xyxy(boxes), score[idx].astype(np.float64)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame (H, W, 3)`` uint8 RGB -> person ``boxes (M, 4)`` xywh float64 in image
        pixels and ``scores (M,)``, highest score first."""
        blob, box = self.preprocess(frame)
        output = self._session.run([self._output_name], {self._input_name: blob})[0]
        boxes, scores = self.candidates(np.asarray(output, dtype=np.float32))
        height, width = frame.shape[:2]
        return finish_detections(box.to_image(boxes), scores, (width, height),
                                 self.iou_threshold, self.max_detections)
