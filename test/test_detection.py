"""Detection: letterbox, NMS, YOLOv8/11 and YOLOX decoding through real ORT sessions on
synthetic graphs, error cases, and the HOG fallback's protocol."""
import itertools

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from onnx import TensorProto

from probpose_core.detection import (Detector, HogDetector, OnnxYoloDetector, Preprocessing, box_iou,
                                     finish_detections, letterbox, letterbox_params, nms)
from probpose_core.detection.onnx_yolo import yolox_grid
from probpose_core.errors import InputError
from yolo_graphs import constant_output_graph, end2end_output, v8_output, yolox_output, yolox_raw_boxes

FRAME_W, FRAME_H = 320, 240
INPUT = 640  # square model input: scale 2, content 640x480


# ----------------------------------------------------------------------------- letterbox

@settings(max_examples=60, deadline=None)
@given(w=st.integers(1, 900), h=st.integers(1, 900), in_w=st.integers(16, 700), in_h=st.integers(16, 700),
       centered=st.booleans(), data=st.data())
def test_letterbox_round_trip(w, h, in_w, in_h, centered, data):
    box = letterbox_params((w, h), (in_w, in_h), centered)
    new_w, new_h = box.resized
    # aspect kept up to rounding, content fits and touches one pair of sides
    assert new_w <= in_w and new_h <= in_h and (new_w == in_w or new_h == in_h or min(new_w, new_h) == 1)
    assert abs(new_w / w - new_h / h) <= 1.0 / min(w, h) + 1e-12 or min(new_w, new_h) == 1
    # image corners land on the content's corners, which lie inside the input
    corners = box.to_input([0, 0, w, h])
    np.testing.assert_allclose(corners, [*box.offset, box.offset[0] + new_w, box.offset[1] + new_h], atol=1e-9)
    assert corners[0] >= 0 and corners[1] >= 0 and corners[2] <= in_w + 1e-9 and corners[3] <= in_h + 1e-9
    if centered:
        assert np.all(np.isin(np.array([in_w, in_h]) - box.resized - 2 * box.offset, (0, 1)))
    else:
        assert corners[0] == 0 and corners[1] == 0
    points = np.array(data.draw(st.lists(st.floats(-1000, 1000), min_size=4, max_size=4)))
    np.testing.assert_allclose(box.to_image(box.to_input(points)), points, atol=1e-7)


@pytest.mark.parametrize("centered", [True, False])
def test_letterbox_pixels(rng, centered):
    frame = rng.integers(0, 255, (50, 80, 3), dtype=np.uint8)
    canvas, box = letterbox(frame, (64, 64), centered=centered)
    assert canvas.shape == (64, 64, 3) and canvas.dtype == np.uint8
    assert box.resized == (64, 40)
    y0 = 12 if centered else 0
    assert box.offset.tolist() == [0, y0]
    np.testing.assert_array_equal(canvas[y0:y0 + 40], cv2.resize(frame, (64, 40), interpolation=cv2.INTER_LINEAR))
    pad = np.ones((64,), bool)
    pad[y0:y0 + 40] = False
    assert np.all(canvas[pad] == 114)


# ----------------------------------------------------------------------------- NMS

def _iou_scalar(a, b):
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1]) + max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1]) - iw * ih
    return iw * ih / union if union > 0 else 0.0


def _nms_reference(boxes, scores, threshold):
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(_iou_scalar(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def test_box_iou_by_hand():
    np.testing.assert_allclose(box_iou([0, 0, 2, 2], [[1, 1, 3, 3], [0, 0, 2, 2], [5, 5, 6, 6], [0, 0, 0, 2]]),
                               [1 / 7, 1.0, 0.0, 0.0])


@settings(max_examples=120, deadline=None)
@given(data=st.data(), n=st.integers(0, 40), threshold=st.sampled_from([0.0, 0.3, 0.45, 0.7, 1.0]))
def test_nms_matches_brute_force(data, n, threshold):
    coords = st.integers(0, 20)  # small integer grid: many overlaps, duplicates and ties
    raw = data.draw(st.lists(st.tuples(coords, coords, st.integers(0, 10), st.integers(0, 10)), min_size=n, max_size=n))
    boxes = [(x, y, x + w, y + h) for x, y, w, h in raw]
    scores = data.draw(st.lists(st.sampled_from([-0.2, 0.0, 0.1, 0.5, 0.5, 0.9]), min_size=n, max_size=n))
    kept = nms(np.array(boxes, float).reshape(-1, 4), np.array(scores), threshold).tolist()
    assert kept == _nms_reference(boxes, scores, threshold)


@settings(max_examples=50, deadline=None)
@given(data=st.data(), n=st.integers(0, 30))
def test_finish_detections_invariants(data, n):
    xy = st.floats(-50, 150)
    boxes = np.array(data.draw(st.lists(st.tuples(xy, xy, xy, xy), min_size=n, max_size=n)), float).reshape(-1, 4)
    boxes = np.concatenate([np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])], axis=1)
    scores = np.array(data.draw(st.lists(st.floats(0, 1), min_size=n, max_size=n)))
    out, out_scores = finish_detections(boxes, scores, (100, 80), 0.45, max_detections=10)
    assert out.shape == (len(out_scores), 4) and out.dtype == np.float64 and len(out) <= 10
    assert np.all(out[:, 2:] > 0) and np.all(out[:, :2] >= 0)
    assert np.all(out[:, 0] + out[:, 2] <= 100 + 1e-9) and np.all(out[:, 1] + out[:, 3] <= 80 + 1e-9)
    assert np.all(np.diff(out_scores) <= 0)
    xyxy = np.concatenate([out[:, :2], out[:, :2] + out[:, 2:]], axis=1)
    for i, j in itertools.combinations(range(len(out)), 2):
        assert _iou_scalar(xyxy[i], xyxy[j]) <= 0.45 + 1e-12


# ----------------------------------------------------------------------------- YOLO decoding

def _frame():
    return np.random.default_rng(1).integers(0, 255, (FRAME_H, FRAME_W, 3), dtype=np.uint8)


def _scene(offset_y, pad_rows):
    """Input-pixel boxes (x0, y0, x1, y1), class scores (80 classes) and the expected image
    xywh boxes + scores for a 320x240 frame letterboxed into 640x640 with ``offset_y``.

    ``pad_rows``: (a, b) input rows lying in the padding, for a box wholly inside it."""
    def to_input(x0, y0, x1, y1):
        return [2 * x0, 2 * y0 + offset_y, 2 * x1, 2 * y1 + offset_y]

    def scores(person, other=0.0, other_class=2):
        s = np.zeros(80)
        s[0], s[other_class] = person, other
        return s

    boxes, cls, expected = [], [], []
    boxes.append(to_input(50, 40, 110, 160)), cls.append(scores(0.9)), expected.append(([50, 40, 60, 120], 0.9))
    boxes.append(to_input(52, 42, 112, 162)), cls.append(scores(0.8))  # suppressed by the first
    boxes.append(to_input(200, 50, 260, 200)), cls.append(scores(0.6)), expected.append(([200, 50, 60, 150], 0.6))
    boxes.append(to_input(150, 100, 190, 200)), cls.append(scores(0.7, 0.9))  # a car, not a person
    boxes.append(to_input(10, 10, 40, 60)), cls.append(scores(0.2))  # below the score threshold
    boxes.append([300, pad_rows[0], 400, pad_rows[1]]), cls.append(scores(0.95))  # wholly in the padding
    boxes.append(to_input(20, -20, 60, 60)), cls.append(scores(0.5)), expected.append(([20, 0, 40, 60], 0.5))
    boxes.append(to_input(280, 100, 340, 220)), cls.append(scores(0.4)), expected.append(([280, 100, 40, 120], 0.4))
    boxes.append(to_input(0, 200, 30, 240)), cls.append(scores(0.3, 0.3, 5)), expected.append(([0, 200, 30, 40], 0.3))
    boxes = np.array(boxes, float)
    cxcywh = np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)
    return cxcywh, np.array(cls), expected


def _check(detector, expected, frame=None):
    boxes, scores = detector.detect(_frame() if frame is None else frame)
    assert boxes.dtype == np.float64 and scores.dtype == np.float64
    np.testing.assert_allclose(boxes, [b for b, _ in expected], atol=1e-3)
    np.testing.assert_allclose(scores, [s for _, s in expected], atol=1e-6)


def test_yolov8_layout(tmp_path):
    cxcywh, cls, expected = _scene(offset_y=80, pad_rows=(0, 60))
    path = constant_output_graph(tmp_path / "v8.onnx", v8_output(cxcywh, cls, 200), (1, 3, INPUT, INPUT))
    detector = OnnxYoloDetector(path)  # (1, 4+C, N) is only ever YOLOv8/11: auto is safe
    assert isinstance(detector, Detector)
    assert detector.layout == "yolov8" and detector.num_classes == 80 and detector.input_size == (INPUT, INPUT)
    assert detector.preprocessing == Preprocessing("rgb", 1 / 255, True)
    _check(detector, expected)
    assert OnnxYoloDetector(path, layout="yolo11").layout == "yolov8"


def test_yolox_decoded_layout(tmp_path):
    cxcywh, cls, expected = _scene(offset_y=0, pad_rows=(500, 600))  # YOLOX pads bottom/right
    objectness = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    objectness[2] = 0.6  # score = objectness * class score: 0.36
    expected[1] = (expected[1][0], 0.36)
    expected = [expected[0], expected[2], expected[3], expected[1], expected[4]]  # 0.9, 0.5, 0.4, 0.36, 0.3
    path = constant_output_graph(tmp_path / "yolox.onnx", yolox_output(cxcywh, cls, objectness, 200),
                                 (1, 3, INPUT, INPUT))
    detector = OnnxYoloDetector(path, layout="yolox")
    assert detector.layout == "yolox" and detector.preprocessing == Preprocessing("bgr", 1.0, False)
    _check(detector, expected)


def test_yolov5_layout_uses_ultralytics_preprocessing(tmp_path):
    # YOLOv5 (1, N, 5+C) has YOLOX's output layout but Ultralytics' input: RGB / 255, centred
    cxcywh, cls, expected = _scene(offset_y=80, pad_rows=(0, 60))
    objectness = np.ones(9)
    objectness[2] = 0.6  # score = objectness * class score: 0.36
    expected[1] = (expected[1][0], 0.36)
    expected = [expected[0], expected[2], expected[3], expected[1], expected[4]]
    path = constant_output_graph(tmp_path / "v5.onnx", yolox_output(cxcywh, cls, objectness, 200),
                                 (1, 3, INPUT, INPUT))
    detector = OnnxYoloDetector(path, layout="yolov5")
    assert detector.layout == "yolov5" and detector.num_classes == 80
    assert detector.preprocessing == Preprocessing("rgb", 1 / 255, True)
    _check(detector, expected)


def test_end2end_layout_keeps_people_only(tmp_path):
    # NMS-free (1, 300, 6) exports (YOLOv10 / YOLO26): x0, y0, x1, y1, score, class id
    def to_input(x0, y0, x1, y1):
        return [2 * x0, 2 * y0 + 80, 2 * x1, 2 * y1 + 80]

    boxes = [to_input(50, 40, 110, 160), to_input(150, 100, 190, 200), to_input(200, 50, 260, 200),
             to_input(10, 10, 40, 60), to_input(52, 42, 112, 162)]
    scores = [0.8, 0.9, 0.6, 0.1, 0.5]
    classes = [0, 2, 0, 0, 0]  # a person, a car (never a person), a person, a weak person, an overlapping person
    path = constant_output_graph(tmp_path / "e2e.onnx", end2end_output(boxes, scores, classes),
                                 (1, 3, INPUT, INPUT))
    detector = OnnxYoloDetector(path, layout="end2end")
    assert detector.layout == "end2end" and detector.preprocessing == Preprocessing("rgb", 1 / 255, True)
    # no NMS of ours: the model's own selection is final (overlapping people stay)
    _check(detector, [([50, 40, 60, 120], 0.8), ([200, 50, 60, 150], 0.6), ([52, 42, 60, 120], 0.5)])
    with pytest.raises(InputError, match="end2end"):
        OnnxYoloDetector(constant_output_graph(tmp_path / "e2e7.onnx", np.zeros((1, 300, 7)), (1, 3, 64, 64)),
                         layout="end2end")


@pytest.mark.parametrize("shape", [(1, 300, 6), (1, 8400, 85), (1, 100, 7)])
def test_row_layouts_are_ambiguous_without_an_explicit_layout(tmp_path, shape):
    path = constant_output_graph(tmp_path / "rows.onnx", np.zeros(shape), (1, 3, 64, 64))
    with pytest.raises(InputError, match="ambiguous") as err:
        OnnxYoloDetector(path)
    assert all(name in str(err.value) for name in ("'yolov5'", "'yolox'", "'end2end'", "'yolov8'"))
    with pytest.raises(InputError, match="unknown layout 'v9'.*'yolov8', 'yolov5', 'yolox', 'end2end'"):
        OnnxYoloDetector(path, layout="v9")


def test_make_detector_passes_the_layout_of_a_yolo_onnx(tmp_path):
    """An NMS-free (1, 300, 6) export is ambiguous alone; make_detector(..., layout=) names it."""
    from probpose_core.detection import make_detector

    path = constant_output_graph(tmp_path / "e2e.onnx", np.zeros((1, 300, 6)), (1, 3, 64, 64))
    with pytest.raises(InputError, match="ambiguous"):
        make_detector(str(path))
    assert make_detector(str(path), layout="end2end").layout == "end2end"
    with pytest.raises(InputError, match="layout.*only to a YOLO-style .onnx"):
        make_detector("hog", layout="yolov8")


def test_yolox_raw_grid(tmp_path):
    cells, strides = yolox_grid((64, 64))
    assert len(cells) == 64 + 16 + 4 and cells[8].tolist() == [0, 1] and strides[70].item() == 16
    anchors = [9, 70, 83]  # one per stride
    true_boxes = np.array([[20, 12, 10, 20], [40, 30, 24, 40], [32, 20, 60, 36]], float)  # cx, cy, w, h
    rows = yolox_output(np.zeros((0, 4)), np.zeros((0, 3)), np.zeros(0), 84)
    rows[0, anchors, :4] = yolox_raw_boxes(true_boxes, cells[anchors], strides[anchors])
    rows[0, anchors, 4] = 1.0
    rows[0, anchors, 5] = [0.9, 0.7, 0.5]
    path = constant_output_graph(tmp_path / "raw.onnx", rows, (1, 3, 64, 64))
    frame = np.zeros((64, 64, 3), np.uint8)
    detector = OnnxYoloDetector(path, layout="yolox", yolox_raw=True, iou_threshold=0.9)
    xywh = np.concatenate([true_boxes[:, :2] - true_boxes[:, 2:] / 2, true_boxes[:, 2:]], axis=1)
    _check(detector, list(zip(xywh.tolist(), [0.9, 0.7, 0.5])), frame)
    with pytest.raises(InputError, match="YOLOX"):
        OnnxYoloDetector(constant_output_graph(tmp_path / "v8.onnx", np.zeros((1, 5, 84)), (1, 3, 64, 64)),
                         yolox_raw=True)


def test_real_v8_shape_and_person_only_model(tmp_path):
    # the exact YOLOv8/11 COCO shape, and a one-class (person) export
    path = constant_output_graph(tmp_path / "coco.onnx", v8_output(np.zeros((0, 4)), np.zeros((0, 80)), 8400),
                                 (1, 3, 640, 640))
    detector = OnnxYoloDetector(path)
    assert (detector.layout, detector.num_classes) == ("yolov8", 80)
    assert detector.detect(_frame())[0].shape == (0, 4)
    one = v8_output(np.array([[320, 320, 100, 200]]), np.array([[0.8]]), 50)
    detector = OnnxYoloDetector(constant_output_graph(tmp_path / "person.onnx", one, (1, 3, 640, 640)))
    _check(detector, [([135, 70, 50, 100], 0.8)])  # input (270, 220)-(370, 420) -> image


def test_dynamic_input_size_and_float16(tmp_path):
    cxcywh, cls, expected = _scene(offset_y=80, pad_rows=(0, 60))
    out = v8_output(cxcywh, cls, 100)
    path = constant_output_graph(tmp_path / "dyn.onnx", out, ("batch", 3, "height", "width"),
                                 output_shape=("batch", 84, "anchors"))
    with pytest.raises(InputError, match="dynamic.*input_size"):
        OnnxYoloDetector(path)
    _check(OnnxYoloDetector(path, input_size=(INPUT, INPUT)), expected)
    half = constant_output_graph(tmp_path / "half.onnx", out, (1, 3, INPUT, INPUT), input_type=TensorProto.FLOAT16)
    _check(OnnxYoloDetector(half), expected)


def test_preprocessing(tmp_path):
    frame = _frame()
    path = constant_output_graph(tmp_path / "v8.onnx", np.zeros((1, 5, 10)), (1, 3, INPUT, INPUT))
    blob, box = OnnxYoloDetector(path).preprocess(frame)
    canvas, _ = letterbox(frame, (INPUT, INPUT))
    assert blob.shape == (1, 3, INPUT, INPUT) and blob.dtype == np.float32
    np.testing.assert_allclose(blob[0], canvas.transpose(2, 0, 1) / 255.0, atol=1e-6)  # RGB in [0, 1]
    assert box.offset.tolist() == [0, 80]
    blob, box = OnnxYoloDetector(path, preprocessing=Preprocessing("bgr", 1.0, False)).preprocess(frame)
    canvas, _ = letterbox(frame, (INPUT, INPUT), centered=False)
    np.testing.assert_array_equal(blob[0], canvas[..., ::-1].transpose(2, 0, 1))  # BGR 0-255, top-left
    assert box.offset.tolist() == [0, 0]


# ----------------------------------------------------------------------------- errors

@pytest.mark.parametrize("shape, layout", [((1, 84), "auto"), ((2, 84, 100), "auto"), ((1, 4, 100), "auto"),
                                           ((1, 100, 5), "yolox"), ((1, 100, 5), "yolov5"), ((1, 84, 84), "auto")])
def test_unexpected_output_shape_names_it(tmp_path, shape, layout):
    path = constant_output_graph(tmp_path / "bad.onnx", np.zeros(shape), (1, 3, 64, 64))
    with pytest.raises(InputError, match=r"shape \[" + ", ".join(str(d) for d in shape)):
        OnnxYoloDetector(path, layout=layout)


def test_bad_models(tmp_path):
    out = np.zeros((1, 84, 100))
    with pytest.raises(InputError, match="3 channels"):
        OnnxYoloDetector(constant_output_graph(tmp_path / "gray.onnx", out, (1, 1, 64, 64)))
    with pytest.raises(InputError, match="batch"):
        OnnxYoloDetector(constant_output_graph(tmp_path / "b4.onnx", out, (4, 3, 64, 64)))
    path = constant_output_graph(tmp_path / "ok.onnx", out, (1, 3, 64, 64))
    with pytest.raises(InputError, match="does not match"):
        OnnxYoloDetector(path, input_size=(128, 128))
    with pytest.raises(InputError, match="person_class 80"):
        OnnxYoloDetector(path, person_class=80)
    with pytest.raises(InputError, match="not found"):
        OnnxYoloDetector(tmp_path / "missing.onnx")
    (tmp_path / "corrupt.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(InputError, match="cannot load"):
        OnnxYoloDetector(tmp_path / "corrupt.onnx")


@pytest.mark.parametrize("frame", [np.zeros((0, 0, 3), np.uint8), np.zeros((48, 64, 3), np.float32),
                                   np.zeros((48, 64, 4), np.uint8), np.zeros((48, 64), np.uint8),
                                   np.zeros((0, 64, 3), np.uint8), [[0, 0, 0]]])
def test_bad_frames(tmp_path, frame):
    path = constant_output_graph(tmp_path / "ok.onnx", np.zeros((1, 84, 100)), (1, 3, 64, 64))
    for detector in (OnnxYoloDetector(path), HogDetector()):
        with pytest.raises(InputError):
            detector.detect(frame)


# ----------------------------------------------------------------------------- HOG fallback

def test_hog_protocol():
    frame = np.full((300, 200, 3), 200, np.uint8)
    cv2.ellipse(frame, (100, 60), (18, 22), 0, 0, 360, (60, 40, 30), -1)  # a crude dark figure
    cv2.rectangle(frame, (78, 85), (122, 190), (40, 40, 90), -1)
    cv2.rectangle(frame, (80, 190), (96, 280), (30, 30, 30), -1)
    cv2.rectangle(frame, (104, 190), (120, 280), (30, 30, 30), -1)
    detector = HogDetector(score_threshold=0.0, hit_threshold=-3.0, upscale=1.5)  # lenient: finds it
    assert isinstance(detector, Detector)
    boxes, scores = detector.detect(frame)
    assert len(boxes) >= 1
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and scores.shape == (len(boxes),)
    assert boxes.dtype == np.float64 and scores.dtype == np.float64
    assert np.all((scores > 0) & (scores < 1)) and np.all(np.diff(scores) <= 0)
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2:] > 0)
    assert np.all(boxes[:, 0] + boxes[:, 2] <= 200) and np.all(boxes[:, 1] + boxes[:, 3] <= 300)
    small = HogDetector().detect(np.zeros((40, 30, 3), np.uint8))  # smaller than the 64x128 window
    assert small[0].shape == (0, 4) and small[1].shape == (0,)
