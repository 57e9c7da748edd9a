"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on any object with the message's fields (a real ROS message or a stand-in), so it is
tested without ROS. Every frame becomes (H, W, 3) uint8 RGB, the pipeline's input.

- ``step`` (bytes per row) is honoured: padded rows are cut, never reinterpreted.
- ``is_bigendian`` is honoured for 16-bit encodings.
- 16-bit images (mono16, 16UC1) become 8-bit by keeping the high byte (``>> 8``), so absolute
  brightness keeps its meaning from frame to frame (no per-frame stretching).
- yuv422 is UYVY (ROS's name), yuv422_yuy2 is YUYV; both converted with OpenCV (BT.601).
- Bad frames raise :class:`BadFrame` with a ``kind`` (``unknown_encoding``, ``truncated``,
  ``empty``, ``undecodable``) so a node can warn once per kind and count them.
"""
import cv2
import numpy as np

from probpose_core.errors import InputError

#: encoding -> (channels, numpy dtype); 3- and 4-channel orders are converted below.
ENCODINGS = {
    "rgb8": (3, np.uint8), "bgr8": (3, np.uint8), "rgba8": (4, np.uint8), "bgra8": (4, np.uint8),
    "mono8": (1, np.uint8), "8UC1": (1, np.uint8), "8UC3": (3, np.uint8),
    "mono16": (1, np.uint16), "16UC1": (1, np.uint16),
    "yuv422": (2, np.uint8), "uyvy": (2, np.uint8), "yuv422_yuy2": (2, np.uint8), "yuyv": (2, np.uint8),
}
_TO_RGB = {
    "rgb8": None, "8UC3": cv2.COLOR_BGR2RGB, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB,
    "mono16": cv2.COLOR_GRAY2RGB, "16UC1": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}

#: RGB -> (Y, U, V) offsets removed, BT.601 video range (Y 16..235, chroma 16..240).
_RGB_TO_YUV601 = np.array([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]])


class BadFrame(InputError):
    """A frame that cannot be converted; ``kind`` names the problem class for diagnostics."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def image_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data) -> np.ndarray:
    """Raw image fields -> (H, W, 3) uint8 RGB; ``data`` is never modified.

    rgb8 with unpadded rows needs no conversion: that frame is a read-only view of ``data``
    (no copy; a caller that draws on it copies first, see ``pose_node.image_canvas``). Every
    other frame is a new, writable array.
    """
    if encoding not in ENCODINGS:
        raise BadFrame("unknown_encoding", f"unsupported image encoding {encoding!r}; "
                                           f"supported: {', '.join(sorted(ENCODINGS))}")
    if height <= 0 or width <= 0:
        raise BadFrame("empty", f"image has zero size ({width}x{height})")
    channels, dtype = ENCODINGS[encoding]
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise BadFrame("truncated", f"{encoding} needs an even width, got {width}")
    if step < row_bytes:
        raise BadFrame("truncated", f"step {step} is shorter than a row of {width} {encoding} pixels ({row_bytes} bytes)")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    needed = step * (height - 1) + row_bytes  # the last row's padding may be left out
    if buf.size < needed:
        raise BadFrame("truncated", f"image data has {buf.size} bytes, {encoding} {width}x{height} with step "
                                    f"{step} needs {needed}")
    rows = np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))
    pixels = rows.view(np.dtype(dtype).newbyteorder(">" if is_bigendian else "<")) if itemsize > 1 else rows
    pixels = pixels.reshape(height, width, channels)
    if itemsize > 1:
        pixels = (pixels >> 8).astype(np.uint8)
    code = _TO_RGB[encoding]
    if code is None:
        frame = np.ascontiguousarray(pixels)  # a copy only when rows are padded
        if np.may_share_memory(frame, buf):
            frame = frame.view()
            frame.flags.writeable = False
        return frame
    return cv2.cvtColor(np.ascontiguousarray(pixels), code).reshape(height, width, 3)


def msg_to_rgb(msg) -> np.ndarray:
    """A sensor_msgs/Image (or anything with its fields) -> (H, W, 3) uint8 RGB."""
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data)


def compressed_to_rgb(data) -> np.ndarray:
    """CompressedImage bytes (JPEG, PNG, ...) -> (H, W, 3) uint8 RGB via cv2.imdecode."""
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buf.size == 0:
        raise BadFrame("empty", "compressed image has no data")
    bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if bgr is None:
        raise BadFrame("undecodable", f"compressed image ({buf.size} bytes) could not be decoded")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def rgb_to_fields(rgb: np.ndarray, encoding: str = "rgb8", row_padding: int = 0, bigendian: bool = False) -> dict:
    """(H, W, 3) uint8 RGB -> the fields of a sensor_msgs/Image in ``encoding``.

    Used to publish the annotated image (rgb8) and by tests to make frames in every encoding
    (16-bit encodings carry the grey value in the high byte). ``row_padding`` adds bytes per row.
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h, w = rgb.shape[:2]
    if encoding in ("rgb8",):
        pixels = rgb
    elif encoding in ("bgr8", "8UC3"):
        pixels = rgb[..., ::-1]
    elif encoding == "rgba8":
        pixels = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    elif encoding == "bgra8":
        pixels = np.dstack([rgb[..., ::-1], np.full((h, w), 255, np.uint8)])
    elif encoding in ("mono8", "8UC1"):
        pixels = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    elif encoding in ("mono16", "16UC1"):
        grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.uint16) << 8
        pixels = grey.astype(">u2" if bigendian else "<u2").view(np.uint8).reshape(h, w * 2)
    elif encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv"):
        if w % 2:
            raise BadFrame("truncated", f"{encoding} needs an even width, got {w}")
        # BT.601 video range, the inverse of what OpenCV's YUV2RGB_UYVY/YUYV decode.
        yuv = rgb.astype(np.float64) @ _RGB_TO_YUV601.T + [16.0, 128.0, 128.0]
        yuv = np.clip(np.rint(yuv), 0, 255).astype(np.uint8)
        u = ((yuv[:, 0::2, 1].astype(np.uint16) + yuv[:, 1::2, 1] + 1) // 2).astype(np.uint8)
        v = ((yuv[:, 0::2, 2].astype(np.uint16) + yuv[:, 1::2, 2] + 1) // 2).astype(np.uint8)
        y0, y1 = yuv[:, 0::2, 0], yuv[:, 1::2, 0]
        order = (u, y0, v, y1) if encoding in ("yuv422", "uyvy") else (y0, u, y1, v)
        pixels = np.stack(order, axis=-1).reshape(h, w * 2)
    else:
        raise BadFrame("unknown_encoding", f"cannot write encoding {encoding!r}")
    rows = np.ascontiguousarray(pixels).reshape(h, -1)
    if row_padding:
        rows = np.hstack([rows, np.zeros((h, row_padding), np.uint8)])
    return {"height": h, "width": w, "encoding": encoding, "is_bigendian": int(bigendian),
            "step": rows.shape[1], "data": rows.tobytes()}
