"""Person detectors: the Detector protocol, the shipped PicoDet pedestrian detector (default) and
NanoDet, YOLO-style ONNX models, HOG and full-frame fallbacks, and the one ``make_detector``."""
from probpose_core.detection.base import Detector, check_frame
from probpose_core.detection.factory import DEFAULT_DETECTOR, FullFrameDetector, make_detector
from probpose_core.detection.hog import HogDetector
from probpose_core.detection.letterbox import Letterbox, letterbox, letterbox_params
from probpose_core.detection.nanodet import NanoDetDetector
from probpose_core.detection.nms import box_iou, finish_detections, nms
from probpose_core.detection.onnx_yolo import PREPROCESSING, OnnxYoloDetector, Preprocessing
from probpose_core.detection.picodet import PicoDetDetector

__all__ = ["Detector", "check_frame", "DEFAULT_DETECTOR", "FullFrameDetector", "make_detector", "NanoDetDetector",
           "HogDetector", "Letterbox", "letterbox", "letterbox_params",
           "box_iou", "finish_detections", "nms", "PREPROCESSING", "OnnxYoloDetector", "Preprocessing",
           "PicoDetDetector"]
