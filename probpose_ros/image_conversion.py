"""sensor_msgs/Image and CompressedImage <-> numpy, without cv_bridge.

Works on any object with the message's fields (a real ROS message or a stand-in), so it is
tested without ROS. Every frame becomes (H, W, 3) uint8 RGB, the pipeline's input.

- ``step`` (bytes per row) is honoured: padded rows are cut, never reinterpreted.
  :func:`pixel_rows` is the one parser of an image buffer (height, width, step, data), shared
  with the depth images (:mod:`probpose_ros.depth_messages`).
- Depth encodings (16UC1, 32FC1, mono16: 16-bit or float single-channel data) are not colour
  frames: refused as ``depth_encoding`` (depth goes to the node's ``depth_topic``).
- yuv422 is UYVY (ROS's name), yuv422_yuy2 is YUYV; both converted with OpenCV (BT.601).
- Size limit: frames of more than ``max_pixels`` pixels (default :data:`DEFAULT_MAX_IMAGE_PIXELS`,
  12.6 MP = 4096x3072) are refused as ``oversized`` before any copy; a compressed frame's size
  is read from its JPEG SOF / PNG IHDR header (:func:`compressed_size`) and checked BEFORE
  decoding, so a small file that claims 20000x20000 pixels costs nothing (OpenCV alone would
  allocate up to 2^30 pixels for it). Only JPEG and PNG are decoded (what image_transport's
  ``compressed`` plugin sends).
- Bad frames raise :class:`BadFrame` with a ``kind`` (``unknown_encoding``, ``depth_encoding``,
  ``truncated``, ``empty``, ``oversized``, ``undecodable``) so a node can warn once per kind
  and count them.
"""
import cv2
import numpy as np

from probpose_core.errors import InputError

#: colour encoding -> bytes per pixel (all 8-bit channels); orders are converted below.
ENCODINGS = {
    "rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3,
    "yuv422": 2, "uyvy": 2, "yuv422_yuy2": 2, "yuyv": 2,
}
_TO_RGB = {
    "rgb8": None, "8UC3": cv2.COLOR_BGR2RGB, "bgr8": cv2.COLOR_BGR2RGB, "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB, "mono8": cv2.COLOR_GRAY2RGB, "8UC1": cv2.COLOR_GRAY2RGB,
    "yuv422": cv2.COLOR_YUV2RGB_UYVY, "uyvy": cv2.COLOR_YUV2RGB_UYVY,
    "yuv422_yuy2": cv2.COLOR_YUV2RGB_YUYV, "yuyv": cv2.COLOR_YUV2RGB_YUYV,
}
#: single-channel depth / 16-bit encodings: refused on the colour topic (``depth_encoding``)
DEPTH_LIKE_ENCODINGS = ("16UC1", "32FC1", "mono16")

#: the default ``max_image_pixels``: 4096x3072 (12.6 MP), above the 4K / 12 MP cameras robots carry
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 3072

#: RGB -> (Y, U, V) offsets removed, BT.601 video range (Y 16..235, chroma 16..240).
_RGB_TO_YUV601 = np.array([[0.257, 0.504, 0.098], [-0.148, -0.291, 0.439], [0.439, -0.368, -0.071]])


class BadFrame(InputError):
    """A frame that cannot be converted; ``kind`` names the problem class for diagnostics."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def pixel_rows(data, height: int, width: int, step: int, pixel_bytes: int, what: str,
               max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS, prefix: str = "") -> np.ndarray:
    """The ``(height, width * pixel_bytes)`` uint8 rows of an image buffer, a view of ``data``
    (``step`` padding cut). Checks, in this order, raising :class:`BadFrame` with kind
    ``<prefix>empty`` (zero size), ``<prefix>oversized`` (more than ``max_pixels`` pixels; None
    or 0 = no limit), ``<prefix>truncated`` (``step`` shorter than a row, or fewer bytes than
    the rows need; the last row's padding may be left out). ``what`` names the image in messages."""
    height, width, step = int(height), int(width), int(step)
    if height <= 0 or width <= 0:
        raise BadFrame(f"{prefix}empty", f"{what} has zero size ({width}x{height})")
    if max_pixels and height * width > max_pixels:
        raise BadFrame(f"{prefix}oversized", f"{what} {width}x{height} has {height * width} pixels, more than "
                                             f"max_image_pixels {max_pixels}")
    row_bytes = width * pixel_bytes
    if step < row_bytes:
        raise BadFrame(f"{prefix}truncated", f"step {step} is shorter than a row of {width} {what} pixels "
                                             f"({row_bytes} bytes)")
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    needed = step * (height - 1) + row_bytes  # the last row's padding may be left out
    if buf.size < needed:
        raise BadFrame(f"{prefix}truncated", f"image data has {buf.size} bytes, {what} {width}x{height} with step "
                                             f"{step} needs {needed}")
    return np.lib.stride_tricks.as_strided(buf, shape=(height, row_bytes), strides=(step, 1))


def image_to_rgb(encoding: str, height: int, width: int, step: int, is_bigendian: bool, data,
                 max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """Raw image fields -> (H, W, 3) uint8 RGB; ``data`` is never modified.

    rgb8 with unpadded rows needs no conversion: that frame is a read-only view of ``data``
    (no copy; a caller that draws on it copies first, see ``messages.image_msg_canvas``). Every
    other frame is a new, writable array. ``is_bigendian`` does not matter (8-bit channels).
    """
    if encoding in DEPTH_LIKE_ENCODINGS:
        raise BadFrame("depth_encoding", f"image encoding {encoding!r} is depth or 16-bit single-channel data, "
                                         f"not a colour frame: publish colour images ({', '.join(sorted(ENCODINGS))}) "
                                         f"here and depth on the node's depth_topic")
    if encoding not in ENCODINGS:
        raise BadFrame("unknown_encoding", f"unsupported image encoding {encoding!r}; "
                                           f"supported: {', '.join(sorted(ENCODINGS))}")
    if encoding in ("yuv422", "uyvy", "yuv422_yuy2", "yuyv") and width % 2:
        raise BadFrame("truncated", f"{encoding} needs an even width, got {width}")
    channels = ENCODINGS[encoding]
    rows = pixel_rows(data, height, width, step, channels, encoding, max_pixels)
    pixels = rows.reshape(height, width, channels)
    code = _TO_RGB[encoding]
    if code is None:
        frame = np.ascontiguousarray(pixels)  # a copy only when rows are padded
        if np.may_share_memory(frame, rows):
            frame = frame.view()
            frame.flags.writeable = False
        return frame
    return cv2.cvtColor(np.ascontiguousarray(pixels), code).reshape(height, width, 3)


def msg_to_rgb(msg, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """A sensor_msgs/Image (or anything with its fields) -> (H, W, 3) uint8 RGB."""
    return image_to_rgb(msg.encoding, msg.height, msg.width, msg.step, bool(msg.is_bigendian), msg.data, max_pixels)


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: JPEG start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic)
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def compressed_size(data) -> tuple[int, int]:
    """``(width, height)`` that a JPEG or PNG claims in its header (JPEG: the first SOF segment,
    found by walking the marker segments; PNG: IHDR), without decoding. BadFrame ``undecodable``
    when the data is neither or its header is cut short."""
    buf = bytes(memoryview(data)[:8])
    if buf == _PNG_SIGNATURE:
        head = bytes(memoryview(data)[8:24])  # IHDR: length, "IHDR", width, height (big-endian)
        if len(head) < 16 or head[4:8] != b"IHDR":
            raise BadFrame("undecodable", "PNG without an IHDR header")
        return int.from_bytes(head[8:12], "big"), int.from_bytes(head[12:16], "big")
    if buf[:2] != b"\xff\xd8":
        raise BadFrame("undecodable", "compressed image is neither JPEG nor PNG (the formats of image_transport's "
                                      "compressed plugin)")
    view = memoryview(data)
    i, n = 2, len(view)
    while i + 4 <= n:
        if view[i] != 0xFF:
            raise BadFrame("undecodable", f"JPEG marker expected at byte {i}")
        marker = view[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # stand-alone markers
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        length = (view[i + 2] << 8) | view[i + 3]
        if marker in _JPEG_SOF:
            if i + 9 > n or length < 7:
                break
            return (view[i + 7] << 8) | view[i + 8], (view[i + 5] << 8) | view[i + 6]
        i += 2 + length
    raise BadFrame("undecodable", "JPEG without a frame header (SOF) before its scan data")


def compressed_to_rgb(data, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> np.ndarray:
    """CompressedImage bytes (JPEG or PNG) -> (H, W, 3) uint8 RGB via cv2.imdecode, after the
    header's size was checked against ``max_pixels`` (:func:`compressed_size`)."""
    buf = np.frombuffer(memoryview(data), dtype=np.uint8)
    if buf.size == 0:
        raise BadFrame("empty", "compressed image has no data")
    width, height = compressed_size(buf)
    if width <= 0 or height <= 0:
        raise BadFrame("empty", f"compressed image header claims zero size ({width}x{height})")
    if max_pixels and width * height > max_pixels:
        raise BadFrame("oversized", f"compressed image ({buf.size} bytes) claims {width}x{height} = "
                                    f"{width * height} pixels, more than max_image_pixels {max_pixels}: not decoded")
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
