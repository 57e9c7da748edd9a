"""The PicoDet pedestrian detector: decoding and NMS on a synthetic stand-in graph, the shipped model
on real footage (demo/people.mp4), and tools/picodet_to_onnx.py when OpenVINO and ../shared are here."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from probpose_core.detection import Detector, make_detector
from probpose_core.detection.picodet import SHIPPED, PicoDetDetector
from probpose_core.errors import InputError
from test_nanodet import check_two_people_of_the_clip, clip_frame

ROOT = Path(__file__).resolve().parents[1]
IR_DIR = ROOT.parent / "shared" / "data" / "pp_tinypose" / "picodet_s_320_pedestrian"


def stand_in(path: Path, boxes, scores, size: int = 320, echo_input: bool = False) -> Path:
    """A graph shaped like the translated PicoDet: input ``image (1, 3, S, S)`` -> ``boxes (1, N, 4)``
    (constant + 0 * mean of the input, so the input is used) and ``scores (1, 1, N)``. With
    ``echo_input`` the scores are the first N values of the input's first channel instead."""
    boxes = np.asarray(boxes, np.float32).reshape(1, -1, 4)
    n = boxes.shape[1]
    nodes = [helper.make_node("ReduceMean", ["image"], ["mean"], keepdims=0),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
             helper.make_node("Add", ["box_values", "nothing"], ["boxes"])]
    inits = [numpy_helper.from_array(boxes, "box_values"), numpy_helper.from_array(np.float32(0), "zero")]
    if echo_input:
        nodes += [helper.make_node("Reshape", ["image", "flat"], ["pixels"]),
                  helper.make_node("Slice", ["pixels", "start", "stop", "axis"], ["scores"])]
        inits += [numpy_helper.from_array(np.array([1, 1, -1], np.int64), "flat"),
                  numpy_helper.from_array(np.array([0], np.int64), "start"),
                  numpy_helper.from_array(np.array([n], np.int64), "stop"),
                  numpy_helper.from_array(np.array([2], np.int64), "axis")]
    else:
        inits.append(numpy_helper.from_array(np.asarray(scores, np.float32).reshape(1, 1, n), "score_values"))
        nodes.append(helper.make_node("Add", ["score_values", "nothing"], ["scores"]))
    graph = helper.make_graph(nodes, "picodet_stand_in",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, size, size])],
                              [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [1, n, 4]),
                               helper.make_tensor_value_info("scores", TensorProto.FLOAT, [1, 1, n])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_stand_in_boxes_scaled_thresholded_and_suppressed(tmp_path):
    boxes = [[10, 20, 110, 220],    # kept, best
             [12, 22, 112, 222],    # IoU ~0.96 with the first: suppressed
             [200, 40, 300, 300],   # kept
             [150, 150, 170, 170],  # below the threshold
             [-30, -10, 40, 60],    # clipped to the image, kept
             [330, 10, 400, 50]]    # wholly right of the input (and the frame): no area after clipping
    scores = [0.9, 0.8, 0.6, 0.2, 0.5, 0.7]
    det = PicoDetDetector(stand_in(tmp_path / "p.onnx", boxes, scores), score_threshold=0.3, iou_threshold=0.6)
    assert isinstance(det, Detector) and det.input_size == 320
    frame = np.zeros((480, 640, 3), np.uint8)  # W / 320 = 2, H / 320 = 1.5
    got, got_scores = det.detect(frame)
    assert np.allclose(got_scores, [0.9, 0.6, 0.5])
    assert np.allclose(got, [[20, 30, 200, 300], [400, 60, 200, 390], [0, 0, 80, 90]])
    det.iou_threshold = 1.0  # nothing suppressed
    assert len(det.detect(frame)[0]) == 4
    det.max_detections = 2
    assert np.allclose(det.detect(frame)[1], [0.9, 0.8])


def test_preprocessing_whole_frame_resized_imagenet_normalised(tmp_path):
    det = PicoDetDetector(stand_in(tmp_path / "p.onnx", [[0, 0, 1, 1]], [0.5], size=192))
    frame = np.random.default_rng(0).integers(0, 256, (100, 300, 3), dtype=np.uint8)
    blob = det.preprocess(frame)
    small = cv2.resize(frame, (192, 192), interpolation=cv2.INTER_LINEAR).astype(np.float32) / 255
    want = ((small - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]).transpose(2, 0, 1)[None]
    assert blob.shape == (1, 3, 192, 192) and blob.dtype == np.float32
    assert np.allclose(blob, want, atol=1e-5)
    # the model sees the normalised red channel: a frame of red 255 scores (1 - 0.485) / 0.229 = 2.25
    det = PicoDetDetector(stand_in(tmp_path / "e.onnx", [[0, 0, 50, 50]], None, echo_input=True),
                          score_threshold=1.0)
    red = np.zeros((64, 64, 3), np.uint8)
    red[..., 0] = 255
    with pytest.raises(InputError):  # thresholds lie in [0, 1]
        PicoDetDetector(tmp_path / "e.onnx", score_threshold=2.0)
    det.score_threshold = 2.2
    assert np.allclose(det.detect(red)[1], (1 - 0.485) / 0.229, atol=1e-4)


def test_bad_models(tmp_path):
    with pytest.raises(InputError, match="not found"):
        PicoDetDetector(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not an onnx file")
    with pytest.raises(InputError, match="junk.onnx"):
        PicoDetDetector(tmp_path / "junk.onnx")
    wrong = tmp_path / "wrong.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["image"], ["out"])], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 64, 64])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 64, 64])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(wrong))
    with pytest.raises(InputError, match="not a PicoDet"):
        PicoDetDetector(wrong)


@pytest.mark.parametrize("frame", [np.zeros((0, 0, 3), np.uint8), np.zeros((48, 64, 3), np.float32),
                                   np.zeros((48, 64), np.uint8), [[0, 0, 0]]])
def test_bad_frames(tmp_path, frame):
    det = PicoDetDetector(stand_in(tmp_path / "p.onnx", [[0, 0, 1, 1]], [0.5]))
    with pytest.raises(InputError):
        det.detect(frame)


def _shipped() -> Path:
    from probpose_core import shipped

    path = shipped.models_dir() / SHIPPED
    if SHIPPED not in shipped.read_sums(shipped.models_dir()):
        pytest.skip(f"{SHIPPED} is not shipped in models/")
    return path


@pytest.fixture(scope="module")
def picodet():
    _shipped()
    return make_detector("picodet", threads=1)


def test_shipped_model_finds_the_two_people_of_the_clip(picodet):
    assert isinstance(picodet, PicoDetDetector) and picodet.input_size == 320
    check_two_people_of_the_clip(picodet)


def test_shipped_model_empty_scene_and_threshold(picodet):
    room = np.ascontiguousarray(clip_frame(36)[:, :600])  # the clip's room left of the two people
    boxes, scores = picodet.detect(room)
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    # a featureless frame (a covered lens) gets one whole-frame box (OpenVINO's IR does the same;
    # README "Person detector")
    boxes, scores = picodet.detect(np.full((480, 640, 3), 128, np.uint8))
    assert len(boxes) <= 1 and (not len(boxes) or boxes[0, 2] * boxes[0, 3] > 0.9 * 640 * 480)
    low = make_detector("picodet", score_threshold=0.05, threads=1)
    assert low.score_threshold == 0.05 and len(low.detect(clip_frame(0))[0]) >= 2


def test_translation_matches_the_shipped_file(tmp_path):
    """tools/picodet_to_onnx.py rebuilds the shipped file from the IR (its own ONNX Runtime vs
    OpenVINO check passing; byte for byte with the versions of the time, else the same outputs);
    needs OpenVINO (build-time only) and ../shared."""
    shipped_path = _shipped()
    pytest.importorskip("openvino", reason="OpenVINO is a build-time tool (pip install openvino), not installed")
    if not (IR_DIR / "model.xml").is_file():
        pytest.skip(f"the PicoDet IR is not here ({IR_DIR}; ../shared is the development machine's data)")
    out = tmp_path / "picodet.onnx"
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "picodet_to_onnx.py"), str(IR_DIR), str(out),
                           "--frames", "3"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    if out.read_bytes() != shipped_path.read_bytes():
        import onnxruntime as ort

        blob = PicoDetDetector(shipped_path).preprocess(clip_frame(0))
        ours, theirs = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"image": blob})
                        for p in (out, shipped_path))
        for a, b in zip(ours, theirs):
            assert np.abs(a - b).max() <= 1e-5 * np.abs(b).max()
