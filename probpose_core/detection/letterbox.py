"""Letterbox: resize a frame into a detector's fixed input, aspect kept, padded with a grey.

Coordinates are continuous pixel-edge coordinates (the left edge of pixel 0 is x = 0, the
right edge of the last pixel is x = W), the convention in which ``cv2.resize`` scales: an
image point ``p`` lands at ``p * scale + offset`` in the letterboxed input, per axis.
``scale`` is the exact ratio of the resized content to the image (``round(w * r) / w``), so
mapping back is exact even when rounding made the two axes differ slightly.

Ultralytics exports (YOLOv5/v8/11) expect the content centred (``centered=True``, the smaller
half of odd padding on the top/left); YOLOX's own preprocessing puts it in the top-left corner
(``centered=False``).
"""
from typing import NamedTuple

import cv2
import numpy as np

PAD_VALUE = 114


class Letterbox(NamedTuple):
    """Where the image sits inside the input: ``p_input = p_image * scale + offset``."""

    scale: np.ndarray  # (2,) x, y
    offset: np.ndarray  # (2,) x, y, in input pixels
    resized: tuple[int, int]  # size of the resized content (W, H)

    def to_input(self, xy) -> np.ndarray:
        """Image points ``(..., 2k)`` (x, y, x, y, ...) -> letterboxed input coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        reps = xy.shape[-1] // 2
        return xy * np.tile(self.scale, reps) + np.tile(self.offset, reps)

    def to_image(self, xy) -> np.ndarray:
        """Input points ``(..., 2k)`` (x, y, x, y, ...) -> image coordinates."""
        xy = np.asarray(xy, dtype=np.float64)
        reps = xy.shape[-1] // 2
        return (xy - np.tile(self.offset, reps)) / np.tile(self.scale, reps)


def letterbox_params(image_size, input_size, centered: bool = True) -> Letterbox:
    """The letterbox of an image of ``image_size`` (W, H) in an input of ``input_size`` (W, H)."""
    w, h = (int(v) for v in image_size)
    in_w, in_h = (int(v) for v in input_size)
    ratio = min(in_w / w, in_h / h)
    new_w = min(in_w, max(1, int(round(w * ratio))))
    new_h = min(in_h, max(1, int(round(h * ratio))))
    offset = np.array([(in_w - new_w) // 2, (in_h - new_h) // 2] if centered else [0, 0], dtype=np.float64)
    return Letterbox(np.array([new_w / w, new_h / h]), offset, (new_w, new_h))


def letterbox(frame: np.ndarray, input_size, centered: bool = True, pad_value: int = PAD_VALUE):
    """``frame (H, W, C)`` -> ``canvas (in_H, in_W, C)`` of the same dtype and its Letterbox.

    The frame is resized with bilinear interpolation (as the YOLO exporters' own code does)
    and the rest of the canvas is ``pad_value``.
    """
    h, w = frame.shape[:2]
    box = letterbox_params((w, h), input_size, centered)
    in_w, in_h = (int(v) for v in input_size)
    new_w, new_h = box.resized
    resized = frame if (new_w, new_h) == (w, h) else cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    canvas = np.full((in_h, in_w) + frame.shape[2:], pad_value, dtype=frame.dtype)
    x0, y0 = (int(v) for v in box.offset)
    canvas[y0:y0 + new_h, x0:x0 + new_w] = resized.reshape((new_h, new_w) + frame.shape[2:])
    return canvas, box
