"""Synthetic YOLO-style ONNX detector graphs for the detection tests (no downloaded weights).

Each graph takes ``images (1, 3, H, W)`` and returns a fixed tensor shaped like a real
export's output, computed as ``constant + 0 * mean(images)`` so ONNX Runtime really consumes
the input (its shape and dtype are checked by the session). Helpers place known boxes and
class scores into such tensors.
"""
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def constant_output_graph(path, output: np.ndarray, input_shape=(1, 3, 64, 64),
                          output_shape=None, input_type=TensorProto.FLOAT):
    """Write an ONNX model whose output ``output (1, A, B)`` ignores the input's values.

    ``input_shape``/``output_shape`` may hold strings (dynamic dims); ``output_shape``
    defaults to ``output.shape``. Returns ``path``.
    """
    const = numpy_helper.from_array(np.asarray(output, dtype=np.float32), "raw_output")
    nodes = [
        helper.make_node("Cast", ["images"], ["images_f"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["images_f"], ["mean"], keepdims=0),
        helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
        helper.make_node("Add", ["raw_output", "nothing"], ["output0"]),
    ]
    zero = numpy_helper.from_array(np.zeros((), np.float32), "zero")
    graph = helper.make_graph(
        nodes, "synthetic_yolo",
        [helper.make_tensor_value_info("images", input_type, list(input_shape))],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT,
                                       list(output_shape if output_shape is not None else output.shape))],
        initializer=[const, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def v8_output(boxes_cxcywh, class_scores, num_anchors: int, rng=None) -> np.ndarray:
    """YOLOv8/11 output ``(1, 4 + C, num_anchors)``: the first rows of ``boxes_cxcywh (M, 4)``
    (input pixels) with ``class_scores (M, C)``; the other anchors get random boxes and
    scores below 0.01."""
    return _fill(boxes_cxcywh, class_scores, num_anchors, None, rng).T[None]


def yolox_output(boxes_cxcywh, class_scores, objectness, num_anchors: int, rng=None) -> np.ndarray:
    """YOLOX decoded output ``(1, num_anchors, 5 + C)`` with ``objectness (M,)``."""
    return _fill(boxes_cxcywh, class_scores, num_anchors, objectness, rng)[None]


def end2end_output(boxes_xyxy, scores, class_ids, num_rows: int = 300) -> np.ndarray:
    """NMS-free end-to-end output (YOLOv10 / YOLO26 exports) ``(1, num_rows, 6)``: rows of
    ``x0, y0, x1, y1`` (input pixels), score, class id; the rows after the given ones are
    zero (score 0), as such exports pad their fixed number of rows."""
    rows = np.zeros((num_rows, 6))
    boxes = np.asarray(boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    rows[:len(boxes), :4] = boxes
    rows[:len(boxes), 4] = scores
    rows[:len(boxes), 5] = class_ids
    return rows.astype(np.float32)[None]


def yolox_raw_boxes(boxes_cxcywh, cells, strides) -> np.ndarray:
    """Invert YOLOX's grid decoding: input-pixel ``cx, cy, w, h (M, 4)`` at anchor ``cells
    (M, 2)`` with ``strides (M, 1)`` -> the raw regression values the network would emit."""
    boxes = np.asarray(boxes_cxcywh, dtype=np.float64)
    return np.concatenate([boxes[:, :2] / strides - cells, np.log(boxes[:, 2:] / strides)], axis=1)


def _fill(boxes, class_scores, num_anchors, objectness, rng):
    rng = rng or np.random.default_rng(0)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    class_scores = np.asarray(class_scores, dtype=np.float64)  # (M, C)
    num_classes = class_scores.shape[1]
    head = 4 if objectness is None else 5
    rows = np.zeros((num_anchors, head + num_classes))
    rows[:, :2] = rng.uniform(0, 64, (num_anchors, 2))
    rows[:, 2:4] = rng.uniform(1, 32, (num_anchors, 2))
    rows[:, head:] = rng.uniform(0, 0.01, (num_anchors, num_classes))
    if objectness is not None:
        rows[:, 4] = rng.uniform(0, 0.01, num_anchors)
        rows[:len(boxes), 4] = objectness
    rows[:len(boxes), :4] = boxes
    rows[:len(boxes), head:] = class_scores
    return rows.astype(np.float32)
