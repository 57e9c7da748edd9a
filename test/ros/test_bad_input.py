"""Bad input that costs memory, and a camera whose QoS the node cannot match: the real node
process over DDS (localhost, a private ROS_DOMAIN_ID per test).

- ``max_image_pixels``: a raw frame above it and a compressed frame whose header claims
  20000x20000 pixels are refused as ``oversized`` (counted in /diagnostics; the compressed one
  is never decoded), and the node goes on with good frames.
- A 16UC1 (depth) frame on the colour topic is refused as ``depth_encoding`` (it was converted
  to a grey picture before).
- A best-effort publisher cannot reach the node's reliable image subscription: the node says
  so, with the fix (``image_qos:=best_effort``); with that parameter its frames arrive.
"""
import array

import cv2
import numpy as np
from ros_harness import TIMEOUT, image_msg, output, sensor_qos, start_node, stop
from test_pose_node import _subscribe_outputs, wait_ready


def _publish_until(probe, node, pub, msg, condition):
    """Publish ``msg`` every 0.3 s until ``condition()`` (the node may still be matching)."""
    for _ in range(int(TIMEOUT / 0.3)):
        pub.publish(msg)
        if probe.wait_for(condition, timeout=0.3, proc=node):
            return True
    return condition()


def _start(domain, probe, tiny_model, tmp_path, msg_type, topic, *params):
    """The node (tiny model, full-frame detector, ``-p`` ``params``) on ``topic``, ready, and the
    probe's publisher matched to it."""
    _subscribe_outputs(probe)
    args = [a for p in params for a in ("-p", p)]
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame", *args,
                      "-r", f"image:={topic}")
    try:
        wait_ready(probe, node)
        pub = probe.node.create_publisher(msg_type, topic, sensor_qos())
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node)
    except BaseException:
        stop(node)
        raise
    return node, pub


def _counted(probe, kind):
    return lambda: int(probe.diagnostics().get(f"bad_frames.{kind}", 0)) >= 1


def test_oversized_and_depth_frames_are_refused_and_counted(domain, probe, tiny_model, tmp_path):
    from sensor_msgs.msg import Image

    node, pub = _start(domain, probe, tiny_model, tmp_path, Image, "/camera/image_raw", "max_image_pixels:=20000")
    try:
        good = np.full((96, 128, 3), 80, np.uint8)  # 12 288 pixels
        big = image_msg(np.zeros((150, 160, 3), np.uint8), 1)  # 24 000 > 20 000
        depth = image_msg(good, 2, encoding="16UC1")  # a depth image sent to the colour topic
        assert _publish_until(probe, node, pub, big, _counted(probe, "oversized")), probe.diagnostics()
        assert _publish_until(probe, node, pub, depth, _counted(probe, "depth_encoding")), probe.diagnostics()
        assert _publish_until(probe, node, pub, image_msg(good, 10**9),
                              lambda: probe.messages("/humans/keypoints")), "no output after the bad frames"
        assert all(m.image_width == 128 for m in probe.messages("/humans/keypoints"))  # no 16UC1 picture
        assert node.poll() is None
    finally:
        code = stop(node)
    assert code == 0, output(node)
    log = output(node)
    assert "more than max_image_pixels 20000" in log and "depth_topic" in log, log


def test_compressed_bomb_is_refused_without_decoding(domain, probe, tiny_model, tmp_path):
    """A 2 KB JPEG whose SOF claims 20000x20000: before, the node decoded it (7 s, +2.3 GB RSS)."""
    from sensor_msgs.msg import CompressedImage

    node, pub = _start(domain, probe, tiny_model, tmp_path, CompressedImage, "/camera/image_raw/compressed",
                       "compressed:=true")
    try:
        jpeg = bytearray(cv2.imencode(".jpg", np.full((64, 64, 3), 90, np.uint8))[1].tobytes())
        sof = next(i for i in range(2, len(jpeg)) if jpeg[i] == 0xFF and jpeg[i + 1] == 0xC0)
        jpeg[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2
        bomb = CompressedImage(format="jpeg")
        bomb.data = array.array("B", bytes(jpeg))
        assert _publish_until(probe, node, pub, bomb, _counted(probe, "oversized")), probe.diagnostics()
        assert int(probe.diagnostics().get("frames_published", 0)) == 0
        assert node.poll() is None
    finally:
        code = stop(node)
    assert code == 0, output(node)
    assert "claims 20000x20000" in output(node) and "not decoded" in output(node)


def test_a_best_effort_camera_is_named_with_the_fix(domain, probe, tiny_model, tmp_path):
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    best_effort = QoSProfile(reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST, depth=1)
    pub = probe.node.create_publisher(Image, "/camera/image_raw", best_effort)
    _subscribe_outputs(probe)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-r", "image:=/camera/image_raw")
    try:
        wait_ready(probe, node)
        assert probe.wait_for(lambda: "set image_qos:=best_effort" in output(node), proc=node), output(node)
        assert pub.get_subscription_count() == 0
    finally:
        assert stop(node) == 0, output(node)
    node = start_node(domain, tmp_path, "-p", f"model:={tiny_model}", "-p", "detector:=full_frame",
                      "-p", "image_qos:=best_effort", "-r", "image:=/camera/image_raw")
    try:
        assert probe.wait_for(lambda: pub.get_subscription_count() >= 1, proc=node), output(node)
        frame = image_msg(np.full((48, 64, 3), 80, np.uint8), 10**9)  # small: best effort delivers it
        assert _publish_until(probe, node, pub, frame, lambda: probe.messages("/humans/keypoints"))
    finally:
        assert stop(node) == 0, output(node)
