"""A weak fallback person detector: OpenCV's built-in HOG + linear SVM people detector.

It needs no model file (OpenCV 4 ships the SVM; OpenCV 5 dropped it), finds upright people
at least 128 px tall (the 64x128 detection window; use ``upscale`` for smaller ones) and is
far less accurate than a YOLO model. Scores are the SVM margins passed through a logistic,
so they lie in (0, 1) like the other detectors' (0.5 = margin 0); they are not calibrated.
"""
import cv2
import numpy as np

from probpose_core.detection.base import check_frame
from probpose_core.detection.nms import finish_detections


class HogDetector:
    """A :class:`~probpose_core.detection.base.Detector` using ``cv2.HOGDescriptor``.

    ``hit_threshold``: SVM margin a window needs (0 = the SVM's own decision).
    ``win_stride``/``scale``: the sliding-window step (px) and pyramid factor.
    ``upscale``: the frame is resized by this factor first (boxes are mapped back).
    """

    name = "hog"

    def __init__(self, score_threshold: float = 0.5, iou_threshold: float = 0.45, *,
                 hit_threshold: float = 0.0, win_stride=(8, 8), scale: float = 1.05,
                 upscale: float = 1.0, max_detections: int = 100):
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.score_threshold, self.iou_threshold = float(score_threshold), float(iou_threshold)
        self.hit_threshold, self.win_stride = float(hit_threshold), tuple(int(v) for v in win_stride)
        self.scale, self.upscale, self.max_detections = float(scale), float(upscale), int(max_detections)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``frame (H, W, 3)`` uint8 RGB -> person ``boxes (M, 4)`` xywh float64 in image
        pixels and ``scores (M,)``, highest score first."""
        height, width = check_frame(frame).shape[:2]
        image = frame
        if self.upscale != 1.0:
            image = cv2.resize(frame, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        win_w, win_h = self._hog.winSize
        if image.shape[1] < win_w or image.shape[0] < win_h:  # OpenCV corrupts memory on these
            return finish_detections(np.zeros((0, 4)), np.zeros(0), (width, height), self.iou_threshold)
        rects, margins = self._hog.detectMultiScale(image, hitThreshold=self.hit_threshold,
                                                    winStride=self.win_stride, scale=self.scale)
        rects = np.asarray(rects, dtype=np.float64).reshape(-1, 4) / self.upscale
        scores = 1.0 / (1.0 + np.exp(-np.asarray(margins, dtype=np.float64).reshape(-1)))
        keep = scores >= self.score_threshold
        xyxy = np.concatenate([rects[keep, :2], rects[keep, :2] + rects[keep, 2:]], axis=1)
        return finish_detections(xyxy, scores[keep], (width, height), self.iou_threshold, self.max_detections)
