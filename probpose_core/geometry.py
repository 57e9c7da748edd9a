"""Boxes, activation windows and UDP affine transforms.

Conventions (used by every caller):

- A bbox is COCO ``xywh`` in image pixels.
- The *activation window* of a bbox is the box widened to the model aspect W:H = 192:256
  (3:4) about its centre and scaled by ``padding`` (1.25), exactly as the authors'
  ``exococotools`` does. It is described by ``center (..., 2)`` and ``scale (..., 2)``
  (window width and height in image pixels).
- UDP (unbiased data processing): the window's continuous extent ``[c - s/2, c + s/2]`` maps
  onto the pixel-centre range ``[0, size - 1]`` of any grid (model input 192x256 or heatmap
  48x64). So image <-> input <-> heatmap are all affine maps of the same form and the
  input <-> heatmap factor is ``(in - 1) / (hm - 1)``, with no half-pixel bias.
"""
import cv2
import numpy as np

INPUT_SIZE = (192, 256)  # model input (W, H)
HEATMAP_SIZE = (48, 64)  # probability map (W, H)
ASPECT = INPUT_SIZE[0] / INPUT_SIZE[1]  # W / H = 0.75
PADDING = 1.25
#: the double-heatmap variant's wide map covers this many times the activation window (same centre)
WIDE_FACTOR = 2.0
# Model input normalisation, RGB on the 0-255 scale (ImageNet): (rgb - mean) / std. Kept here,
# with the input size, so pre-processing needs no torch (ONNX Runtime / TensorRT deployments).
NORMALIZE_MEAN = (123.675, 116.28, 103.53)
NORMALIZE_STD = (58.395, 57.12, 57.375)
_MEAN_F32 = np.asarray(NORMALIZE_MEAN, dtype=np.float32)
_INV_STD_F32 = np.float32(1.0) / np.asarray(NORMALIZE_STD, dtype=np.float32)


def normalise(patches) -> np.ndarray:
    """Crops ``(N, H, W, 3)`` uint8 RGB -> the model input ``(N, 3, H, W)`` float32
    ``(rgb - NORMALIZE_MEAN) * (1 / NORMALIZE_STD)`` in float32 (the one normalisation of the
    house: inference and training give bit-identical inputs). Channel by channel straight into
    the output: ~9x faster than one broadcast."""
    patches = np.asarray(patches)
    n, h, w, _ = patches.shape
    images = np.empty((n, 3, h, w), dtype=np.float32)
    for c in range(3):
        np.subtract(patches[..., c], _MEAN_F32[c], out=images[:, c], dtype=np.float32)
        images[:, c] *= _INV_STD_F32[c]
    return images


def bbox_to_center_scale(bbox, aspect: float = ASPECT, padding: float = PADDING, dtype=np.float64):
    """Activation window of COCO ``xywh`` boxes.

    bbox: (..., 4). Returns ``center (..., 2)`` and ``scale (..., 2)`` (window W, H).
    A zero side counts as 1 when choosing which side to extend (as exococotools does).
    ``dtype`` is the precision of the window size; exococotools computes it in float32.
    """
    bbox = np.asarray(bbox, dtype=np.float64)
    x, y, w, h = np.moveaxis(bbox, -1, 0)
    center = np.stack([x + w / 2, y + h / 2], axis=-1)
    w_eff = np.where(w == 0, 1.0, w)
    h_eff = np.where(h == 0, 1.0, h)
    wide = w_eff / h_eff > aspect
    new_w = np.where(wide, w, h_eff * aspect).astype(dtype)
    new_h = np.where(wide, w_eff / aspect, h).astype(dtype)
    scale = np.stack([new_w * dtype(padding), new_h * dtype(padding)], axis=-1)
    return center, scale


def window_xyxy(center, scale) -> np.ndarray:
    """Window corners (..., 4) as x0, y0, x1, y1 from ``center``/``scale`` (..., 2)."""
    center = np.asarray(center, dtype=np.float64)
    half = np.asarray(scale, dtype=np.float64) / 2
    return np.concatenate([center - half, center + half], axis=-1)


def wide_window(center, scale, factor: float = WIDE_FACTOR) -> tuple[np.ndarray, np.ndarray]:
    """The double-heatmap variant's wide window: same ``center (..., 2)``, ``scale`` x ``factor``."""
    return np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64) * factor


def activation_window(bbox, aspect: float = ASPECT, padding: float = PADDING, dtype=np.float64) -> np.ndarray:
    """Activation window (..., 4) as x0, y0, x1, y1 of COCO ``xywh`` boxes (..., 4)."""
    return window_xyxy(*bbox_to_center_scale(bbox, aspect, padding, dtype))


def in_window(points, window) -> np.ndarray:
    """True where ``points (..., 2)`` lie inside (or on the edge of) ``window (4,)`` x0,y0,x1,y1
    (or windows ``(..., 4)`` that broadcast against the points' leading axes)."""
    p = np.asarray(points, dtype=np.float64)
    x0, y0, x1, y1 = np.moveaxis(np.asarray(window, dtype=np.float64), -1, 0)
    return (p[..., 0] >= x0) & (p[..., 0] <= x1) & (p[..., 1] >= y0) & (p[..., 1] <= y1)


def padding_to_contain(points, bbox, aspect: float = ASPECT) -> np.ndarray:
    """Smallest padding whose activation window of ``bbox`` contains each point: (...,).

    points: (..., 2); bbox: COCO xywh (4,). A point is inside the window with padding ``p``
    exactly when its value is ``<= p`` (CropCOCO's ``pad_to_contain``, read by exococotools:
    a keypoint above the evaluation padding counts as outside the window, v = 3).
    """
    center, size = bbox_to_center_scale(bbox, aspect, padding=1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = 2 * np.abs(np.asarray(points, dtype=np.float64) - center) / size
    return np.nan_to_num(ratio, nan=0.0, posinf=np.inf).max(axis=-1)


def udp_affine(center, scale, size, rotation: float = 0.0) -> np.ndarray:
    """(2, 3) affine taking image points into a grid of ``size = (W, H)`` pixels (UDP).

    The window ``center``/``scale`` maps onto pixel centres ``[0, W-1] x [0, H-1]``; the
    window is rotated by ``rotation`` degrees about its centre first (positive = the
    content turns counter-clockwise on screen, y pointing down).
    """
    cx, cy = np.asarray(center, dtype=np.float64)
    sw, sh = np.asarray(scale, dtype=np.float64)
    kx, ky = (size[0] - 1) / sw, (size[1] - 1) / sh
    r = np.deg2rad(rotation)
    cos, sin = np.cos(r), np.sin(r)
    rot = np.array([[cos, -sin], [sin, cos]])
    lin = np.diag([kx, ky]) @ rot
    offset = np.array([(size[0] - 1) / 2, (size[1] - 1) / 2]) - lin @ np.array([cx, cy])
    return np.concatenate([lin, offset[:, None]], axis=1)


def invert_affine(matrix) -> np.ndarray:
    """Inverse of a (2, 3) affine."""
    m = np.asarray(matrix, dtype=np.float64)
    lin_inv = np.linalg.inv(m[:, :2])
    return np.concatenate([lin_inv, (-lin_inv @ m[:, 2])[:, None]], axis=1)


def apply_affine(matrix, points) -> np.ndarray:
    """Apply a (2, 3) affine to ``points (..., 2)``."""
    m = np.asarray(matrix, dtype=np.float64)
    p = np.asarray(points, dtype=np.float64)
    return p @ m[:, :2].T + m[:, 2]


def heatmap_to_image(points, center, scale, heatmap_size=HEATMAP_SIZE) -> np.ndarray:
    """Heatmap pixel coordinates (..., 2) of one window -> image coordinates.

    The closed form of ``invert_affine(udp_affine(center, scale, size))`` without rotation
    (it runs per keypoint and per polygon, so it avoids building matrices).
    """
    last = np.asarray(heatmap_size, dtype=np.float64) - 1
    return ((np.asarray(points, dtype=np.float64) - last / 2) * (np.asarray(scale, dtype=np.float64) / last)
            + np.asarray(center, dtype=np.float64))


def image_to_heatmap(points, center, scale, heatmap_size=HEATMAP_SIZE) -> np.ndarray:
    """Image coordinates (..., 2) -> heatmap pixel coordinates of one window (closed form of udp_affine)."""
    last = np.asarray(heatmap_size, dtype=np.float64) - 1
    return ((np.asarray(points, dtype=np.float64) - np.asarray(center, dtype=np.float64))
            * (last / np.asarray(scale, dtype=np.float64)) + last / 2)


def warp_crop(image: np.ndarray, center, scale, size=INPUT_SIZE, rotation: float = 0.0,
              border_value=0) -> np.ndarray:
    """The window of ``image (H, W, C)`` resampled to ``size = (W, H)`` (bilinear, UDP)."""
    matrix = udp_affine(center, scale, size, rotation)
    return cv2.warpAffine(image, matrix, (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border_value)
