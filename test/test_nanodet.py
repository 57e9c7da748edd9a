"""The shipped NanoDet person detector and make_detector, on real footage (demo/people.mp4)."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from probpose_core.detection import DEFAULT_DETECTOR, Detector, FullFrameDetector, NanoDetDetector, make_detector
from probpose_core.detection.nanodet import cell_centres, expected_distances
from probpose_core.errors import InputError

CLIP = Path(__file__).resolve().parents[1] / "demo" / "people.mp4"


def clip_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(CLIP))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, bgr = cap.read()
    cap.release()
    assert ok, f"cannot read frame {index} of {CLIP}"
    return np.ascontiguousarray(bgr[..., ::-1])


@pytest.fixture(scope="module")
def nanodet():
    return make_detector("nanodet", threads=1)


def check_two_people_of_the_clip(detector):
    """The shipped detectors' shared check (also test_picodet): two people in frames 0, 40, 70."""
    assert isinstance(detector, Detector)
    for index in (0, 40, 70):
        frame = clip_frame(index)
        boxes, scores = detector.detect(frame)
        assert len(boxes) == 2, (index, boxes, scores)
        assert np.all(scores >= detector.score_threshold) and np.all(np.diff(scores) <= 0)
        h, w = frame.shape[:2]
        # two standing people, side by side in the middle of a 1920x1080 frame: tall boxes
        assert np.all(boxes[:, 3] > 0.35 * h) and np.all(boxes[:, 3] > 1.5 * boxes[:, 2])
        assert np.all(boxes[:, 0] > 0.2 * w) and np.all(boxes[:, 0] + boxes[:, 2] < 0.8 * w)


def test_finds_the_two_people_of_the_clip(nanodet):
    assert isinstance(nanodet, NanoDetDetector)
    check_two_people_of_the_clip(nanodet)


def test_empty_scene_and_small_frames(nanodet):
    boxes, scores = nanodet.detect(np.full((480, 640, 3), 128, np.uint8))
    assert boxes.shape == (0, 4) and scores.shape == (0,)
    boxes, _ = nanodet.detect(cv2.resize(clip_frame(0), (160, 90)))  # letterboxed up: still people
    assert boxes.shape[1] == 4 and np.all(boxes[:, :2] >= 0)


@pytest.mark.parametrize("frame", [np.zeros((0, 0, 3), np.uint8), np.zeros((48, 64, 3), np.float32),
                                   np.zeros((48, 64), np.uint8), [[0, 0, 0]]])
def test_bad_frames(nanodet, frame):
    with pytest.raises(InputError):
        nanodet.detect(frame)


def test_decoding_pieces():
    centres = cell_centres(32)
    assert centres.shape == (13 * 13, 2) and np.allclose(centres[0], 16) and np.allclose(centres[14], [48, 48])
    logits = np.full((1, 44), -50.0)
    logits[0, [3, 11 + 0, 22 + 10, 33 + 5]] = 50.0  # one-hot bins 3, 0, 10, 5
    assert np.allclose(expected_distances(logits, 8), [[24, 0, 80, 40]])


def test_make_detector_names_and_errors(tmp_path):
    assert isinstance(make_detector("full_frame"), FullFrameDetector)
    assert make_detector("hog").name == "hog"
    assert make_detector("").name == DEFAULT_DETECTOR == "picodet"  # empty = the shipped default
    assert make_detector("nanodet").name == "nanodet"
    with pytest.raises(InputError, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(InputError, match="not found"):
        make_detector(str(tmp_path / "missing.onnx"))
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    with pytest.raises(InputError, match="cannot load detector model"):
        NanoDetDetector(tmp_path / "bad.onnx")
