"""Person detectors: the Detector protocol, YOLO-style ONNX models, and a HOG fallback."""
from probpose_core.detection.base import Detector, check_frame
from probpose_core.detection.hog import HogDetector
from probpose_core.detection.letterbox import Letterbox, letterbox, letterbox_params
from probpose_core.detection.nms import box_iou, finish_detections, nms
from probpose_core.detection.onnx_yolo import PREPROCESSING, OnnxYoloDetector, Preprocessing

__all__ = ["Detector", "check_frame", "HogDetector", "Letterbox", "letterbox", "letterbox_params",
           "box_iou", "finish_detections", "nms", "PREPROCESSING", "OnnxYoloDetector", "Preprocessing"]
