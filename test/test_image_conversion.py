"""Image conversion without ROS: round trips for every encoding, step padding, endianness, bad frames."""
import types

import cv2
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from probpose_ros.image_conversion import (ENCODINGS, BadFrame, compressed_to_rgb, image_to_rgb, msg_to_rgb,
                                           rgb_to_fields)

EXACT = ("rgb8", "bgr8", "rgba8", "bgra8", "8UC3")
GREY = ("mono8", "8UC1", "mono16", "16UC1")
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
       encoding=st.sampled_from(GREY), padding=st.integers(0, 5), bigendian=st.booleans())
def test_grey_round_trip_gives_the_grey_value_in_all_channels(rgb, encoding, padding, bigendian):
    out = msg_to_rgb(_msg(rgb_to_fields(rgb, encoding, row_padding=padding, bigendian=bigendian)))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    np.testing.assert_array_equal(out, np.dstack([grey] * 3))


def test_sixteen_bit_honours_endianness():
    value = np.array([[0x1234]], dtype=">u2").tobytes()  # big-endian: high byte 0x12
    out = image_to_rgb("16UC1", 1, 1, 2, True, value)
    assert out[0, 0, 0] == 0x12
    out = image_to_rgb("16UC1", 1, 1, 2, False, value)  # read as little-endian: high byte 0x34
    assert out[0, 0, 0] == 0x34


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
    for encoding, padding in (("rgb8", 3), ("bgr8", 0), ("mono8", 0), ("16UC1", 0)):
        fields = rgb_to_fields(rgb, encoding, row_padding=padding)
        buf = bytearray(fields["data"])
        out = image_to_rgb(encoding, 2, 3, fields["step"], False, buf)
        assert not np.shares_memory(out, np.frombuffer(buf, np.uint8)) and out.flags.writeable, encoding


def test_truncated_data_states_the_bytes_needed():
    # rows of 6 bytes padded to a step of 10; the last row needs no padding: 10 + 6 = 16 bytes
    with pytest.raises(BadFrame, match=r"has 15 bytes, rgb8 2x2 with step 10 needs 16\b"):
        image_to_rgb("rgb8", 2, 2, 10, False, b"\0" * 15)
