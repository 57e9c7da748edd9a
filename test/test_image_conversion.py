"""Image conversion without ROS: round trips for every encoding, step padding, bad frames, the
size limit (raw and compressed, checked before decoding) and depth encodings refused."""
import types

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from probpose_ros import image_conversion
from probpose_ros.image_conversion import (DEFAULT_MAX_IMAGE_PIXELS, ENCODINGS, BadFrame, compressed_size,
                                           compressed_to_rgb, image_to_rgb, msg_to_rgb, pixel_rows, rgb_to_fields)

EXACT = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3")
GREY = ("mono8", "8UC1")
YUV = ("yuv422", "uyvy", "yuv422_yuy2", "yuyv")


def _msg(fields):
    return types.SimpleNamespace(**fields)


@settings(max_examples=60, deadline=None)
@given(rgb=arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
       encoding=st.sampled_from(EXACT), padding=st.integers(0, 7))
def test_colour_round_trip_is_exact_with_any_row_padding(rgb, encoding, padding):
    out = msg_to_rgb(_msg(rgb_to_fields(rgb, encoding, row_padding=padding)))
    np.testing.assert_array_equal(out, rgb)


@settings(max_examples=60, deadline=None)
@given(rgb=arrays(np.uint8, st.tuples(st.integers(1, 9), st.integers(1, 9), st.just(3))),
       encoding=st.sampled_from(GREY), padding=st.integers(0, 5))
def test_grey_round_trip_gives_the_grey_value_in_all_channels(rgb, encoding, padding):
    out = msg_to_rgb(_msg(rgb_to_fields(rgb, encoding, row_padding=padding)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))


@pytest.mark.parametrize("encoding", ["16UC1", "mono16", "32FC1"])
def test_depth_encodings_on_the_colour_topic_are_refused_as_bad(encoding):
    """A depth image (or 16-bit single-channel data) is not a colour frame: refused with its own
    kind, never turned into a grey picture (before: 16UC1 / mono16 were accepted as grey)."""
    fields = rgb_to_fields(np.full((4, 6, 3), 90, np.uint8), "16UC1")
    fields["encoding"] = encoding
    if encoding == "32FC1":
        fields.update(step=24, data=np.ones((4, 6), np.float32).tobytes())
    with pytest.raises(BadFrame, match="depth_topic") as info:
        msg_to_rgb(_msg(fields))
    assert info.value.kind == "depth_encoding"


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2 ** 16), h=st.integers(1, 8), half_w=st.integers(1, 6),
       encoding=st.sampled_from(YUV), padding=st.integers(0, 4))
def test_yuv422_round_trip_is_close_on_smooth_images(seed, h, half_w, encoding, padding):
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 215, size=(h, half_w, 3)).astype(np.uint8)
    rgb = np.repeat(base, 2, axis=1)  # constant chroma per pixel pair: 4:2:2 loses nothing but rounding
    out = msg_to_rgb(_msg(rgb_to_fields(rgb, encoding, row_padding=padding)))
    assert np.abs(out.astype(int) - rgb.astype(int)).max() <= 4


def test_step_padding_bytes_are_ignored():
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    fields = rgb_to_fields(rgb, "rgb8", row_padding=5)
    data = bytearray(fields["data"])
    data[9:14] = b"\xff" * 5  # garbage in the padding of row 0
    np.testing.assert_array_equal(image_to_rgb("rgb8", 2, 3, fields["step"], False, bytes(data)), rgb)


@pytest.mark.parametrize("fields, kind", [
    (dict(encoding="bayer_rggb8", height=2, width=2, step=2, is_bigendian=0, data=b"\0" * 4), "unknown_encoding"),
    (dict(encoding="rgb8", height=0, width=4, step=12, is_bigendian=0, data=b""), "empty"),
    (dict(encoding="rgb8", height=2, width=2, step=6, is_bigendian=0, data=b"\0" * 11), "truncated"),
    (dict(encoding="rgb8", height=2, width=2, step=5, is_bigendian=0, data=b"\0" * 12), "truncated"),
    (dict(encoding="yuv422", height=1, width=3, step=6, is_bigendian=0, data=b"\0" * 6), "truncated"),
])
def test_bad_frames_name_their_kind(fields, kind):
    with pytest.raises(BadFrame) as info:
        msg_to_rgb(_msg(fields))
    assert info.value.kind == kind


def test_last_row_may_omit_its_padding():
    rgb = np.full((2, 2, 3), 7, np.uint8)
    fields = rgb_to_fields(rgb, "rgb8", row_padding=4)
    data = fields["data"][:-4]  # some drivers do not pad the last row
    np.testing.assert_array_equal(image_to_rgb("rgb8", 2, 2, fields["step"], False, data), rgb)


def test_compressed_round_trip_and_errors():
    rgb = np.zeros((16, 24, 3), np.uint8)
    rgb[:, :12] = (200, 30, 10)
    ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    np.testing.assert_array_equal(compressed_to_rgb(png.tobytes()), rgb)
    ok, jpg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.abs(compressed_to_rgb(jpg.tobytes()).astype(int) - rgb).mean() < 3
    with pytest.raises(BadFrame) as info:
        compressed_to_rgb(b"not a jpeg at all")
    assert info.value.kind == "undecodable"
    with pytest.raises(BadFrame) as info:
        compressed_to_rgb(b"")
    assert info.value.kind == "empty"


def test_every_listed_encoding_can_be_written_and_read():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    for encoding in ENCODINGS:
        out = msg_to_rgb(_msg(rgb_to_fields(rgb, encoding)))
        assert out.shape == (4, 4, 3) and out.dtype == np.uint8


def test_rgb8_is_a_read_only_view_and_every_other_frame_a_new_array():
    """The docstring's contract: unpadded rgb8 comes back without a copy (the node relies on
    that: it copies only when it must draw) but read-only, so the message cannot be modified
    through it; every other case is a new array of the caller's own."""
    rgb = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    data = bytearray(rgb_to_fields(rgb, "rgb8")["data"])  # a writable buffer, like rclpy's array('B')
    out = image_to_rgb("rgb8", 2, 3, 9, False, data)
    np.testing.assert_array_equal(out, rgb)
    assert np.shares_memory(out, np.frombuffer(data, np.uint8)) and not out.flags.writeable
    with pytest.raises(ValueError):
        out[0, 0, 0] = 255
    assert bytes(data) == rgb.tobytes()
    for encoding, padding in (("rgb8", 3), ("bgr8", 0), ("mono8", 0), ("rgba8", 0)):
        fields = rgb_to_fields(rgb, encoding, row_padding=padding)
        buf = bytearray(fields["data"])
        out = image_to_rgb(encoding, 2, 3, fields["step"], False, buf)
        assert not np.shares_memory(out, np.frombuffer(buf, np.uint8)) and out.flags.writeable, encoding


def test_truncated_data_states_the_bytes_needed():
    # rows of 6 bytes padded to a step of 10; the last row needs no padding: 10 + 6 = 16 bytes
    with pytest.raises(BadFrame, match=r"has 15 bytes, rgb8 2x2 with step 10 needs 16\b"):
        image_to_rgb("rgb8", 2, 2, 10, False, b"\0" * 15)


# -- the size limit: max_image_pixels ---------------------------------------------------------
def _jpeg(rgb, **flags) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1] if flags.get("progressive") else []
    ok, buf = cv2.imencode(".jpg", rgb, params)
    assert ok
    return buf.tobytes()


def _claiming(data: bytes, width: int, height: int) -> bytes:
    """``data`` (a JPEG or PNG) with its header rewritten to claim ``width`` x ``height``."""
    out = bytearray(data)
    if out[:8] == b"\x89PNG\r\n\x1a\n":
        out[16:24] = width.to_bytes(4, "big") + height.to_bytes(4, "big")  # IHDR (its CRC now wrong)
        return bytes(out)
    i = 2
    while out[i + 1] not in (0xC0, 0xC1, 0xC2):  # walk the segments to the SOF
        i += 2 + int.from_bytes(out[i + 2:i + 4], "big")
    out[i + 5:i + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(out)


@pytest.mark.parametrize("kind", ["jpeg", "progressive jpeg", "png"])
def test_compressed_size_reads_the_header(kind):
    rgb = np.zeros((37, 53, 3), np.uint8)
    data = cv2.imencode(".png", rgb)[1].tobytes() if kind == "png" else _jpeg(rgb, progressive="progressive" in kind)
    assert compressed_size(data) == (53, 37)
    assert compressed_size(_claiming(data, 20000, 20000)) == (20000, 20000)


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_a_compressed_bomb_is_refused_before_decoding(kind, monkeypatch):
    """A 20000x20000 claim in a small file: before, cv2.imdecode allocated the 1.2 GB frame
    (7 s, RSS +2.3 GB in the soak); now the header is read and the frame refused undecoded."""
    small = np.full((64, 64, 3), 128, np.uint8)
    data = cv2.imencode(".png", small)[1].tobytes() if kind == "png" else _jpeg(small)
    bomb = _claiming(data, 20000, 20000)
    assert len(bomb) < 10_000

    def no_decoding(*args):
        raise AssertionError("cv2.imdecode was called for an oversized frame")

    monkeypatch.setattr(image_conversion.cv2, "imdecode", no_decoding)
    with pytest.raises(BadFrame, match="20000x20000") as info:
        compressed_to_rgb(bomb)
    assert info.value.kind == "oversized"
    with pytest.raises(BadFrame) as info:  # a smaller limit of the caller's
        compressed_to_rgb(data, max_pixels=64 * 63)
    assert info.value.kind == "oversized"


def test_compressed_frames_that_are_not_jpeg_or_png_or_have_no_header_are_undecodable():
    bmp = cv2.imencode(".bmp", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    jpeg = _jpeg(np.zeros((8, 8, 3), np.uint8))
    sos = jpeg.index(b"\xff\xda")
    sof = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    no_sof = jpeg[:sof] + jpeg[sos:]  # scan data without a frame header
    for data in (bmp, jpeg[:4], no_sof, b"\x89PNG\r\n\x1a\n" + b"\0" * 4):
        with pytest.raises(BadFrame) as info:
            compressed_to_rgb(data)
        assert info.value.kind == "undecodable", data[:16]
    truncated = jpeg[:len(jpeg) // 2]  # header intact, scan cut: OpenCV decodes what is there or fails
    try:
        assert compressed_to_rgb(truncated).shape == (8, 8, 3)
    except BadFrame as exc:
        assert exc.kind == "undecodable"


def test_raw_frames_above_max_pixels_are_refused_before_reading_the_data():
    w, h = 4096, 3073  # one row over the default 4096x3072
    assert w * (h - 1) == DEFAULT_MAX_IMAGE_PIXELS
    with pytest.raises(BadFrame, match=f"{w}x{h}") as info:
        image_to_rgb("rgb8", h, w, 3 * w, False, b"")  # no data at all: the size is refused first
    assert info.value.kind == "oversized"
    rgb = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(BadFrame) as info:
        msg_to_rgb(_msg(rgb_to_fields(rgb)), max_pixels=99)
    assert info.value.kind == "oversized"
    assert msg_to_rgb(_msg(rgb_to_fields(rgb)), max_pixels=100).shape == (10, 10, 3)
    assert msg_to_rgb(_msg(rgb_to_fields(rgb)), max_pixels=0).shape == (10, 10, 3)  # 0: no limit


def test_pixel_rows_is_the_one_buffer_parser_with_kind_prefixes():
    data = bytes(range(2 * 5))
    rows = pixel_rows(data, 2, 2, 5, 2, "test")  # 4 bytes per row, 1 padding byte
    np.testing.assert_array_equal(rows, [[0, 1, 2, 3], [5, 6, 7, 8]])
    for args, kind in (((0, 2, 5), "depth_empty"), ((2, 2, 3), "depth_truncated"), ((3, 2, 5), "depth_truncated"),
                       ((2, 4, 8), "depth_oversized")):
        with pytest.raises(BadFrame) as info:
            pixel_rows(data, *args, 2, "depth 16UC1", max_pixels=6, prefix="depth_")
        assert info.value.kind == kind, args
