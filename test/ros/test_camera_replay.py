"""camera_replay as a real process: video, image folder and rosbag2 sources, raw and compressed."""
import subprocess

import numpy as np
import pytest
from ros_harness import child_env, image_msg, replay_cmd, stamp_ns, write_video

from probpose_ros.camera_replay import open_source, parse_args


def _replay(domain, *args, timeout=60):
    return subprocess.run(replay_cmd(*args, "--wait-subscribers", "1", "--reliable"), env=child_env(domain),
                          capture_output=True, text=True, timeout=timeout)


def test_video_as_raw_images(domain, probe, tmp_path):
    from sensor_msgs.msg import Image

    from probpose_ros.image_conversion import msg_to_rgb

    probe.subscribe(Image, "/camera/image_raw", 50)
    probe.wait_for(lambda: True)
    video = write_video(tmp_path / "clip.avi", frames=12)
    done = _replay(domain, video, "--rate", "30", "--encoding", "rgb8", "--frame-id", "cam")
    assert done.returncode == 0, done.stderr
    assert probe.wait_for(lambda: len(probe.messages("/camera/image_raw")) >= 12)
    msgs = probe.messages("/camera/image_raw")
    assert len(msgs) == 12
    assert all((m.encoding, m.width, m.height, m.header.frame_id) == ("rgb8", 320, 240, "cam") for m in msgs)
    stamps = [stamp_ns(m.header) for m in msgs]
    assert stamps == sorted(stamps) and stamps[0] > 0  # publishing time: video files carry no clock
    first, last = msg_to_rgb(msgs[0]), msg_to_rgb(msgs[-1])
    assert first[120, 40].tolist() != [30, 30, 30] and first[120, 300].tolist() == pytest.approx([30] * 3, abs=8)
    assert last[120, 40 + 8 * 11, 0] > 150 and first[120, 40 + 8 * 11, 0] < 60  # the (orange) disc moved


def test_stamps_are_the_publishing_time_not_the_read_time(domain, probe, tmp_path):
    """Paced replay stamps a frame when it is published (after the pacing sleep): at 1 Hz a
    stamp taken before the sleep would be ~1 s older than the frame's arrival."""
    import time

    from sensor_msgs.msg import Image

    probe.subscribe(Image, "/camera/image_raw", 10)
    probe.wait_for(lambda: True)
    done = _replay(domain, write_video(tmp_path / "clip.avi", frames=3), "--rate", "1")
    assert done.returncode == 0, done.stderr
    assert probe.wait_for(lambda: len(probe.messages("/camera/image_raw")) >= 3)
    wall_minus_perf = time.time() - time.perf_counter()
    with probe.lock:
        arrivals = list(probe.received["/camera/image_raw"])
    delays = [perf + wall_minus_perf - stamp_ns(m.header) * 1e-9 for m, perf in arrivals]
    assert max(delays) < 0.5, delays


def test_folder_as_compressed_images_with_loop(domain, probe, tmp_path):
    import cv2
    from sensor_msgs.msg import CompressedImage

    from probpose_ros.image_conversion import compressed_to_rgb

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 60 * i, np.uint8))
    probe.subscribe(CompressedImage, "/camera/image_raw/compressed", 50)
    probe.wait_for(lambda: True)
    done = _replay(domain, tmp_path, "--compressed", "--loop", "--max-frames", "7", "--rate", "50")
    assert done.returncode == 0, done.stderr
    assert probe.wait_for(lambda: len(probe.messages("/camera/image_raw/compressed")) >= 7)
    msgs = probe.messages("/camera/image_raw/compressed")
    assert [m.format for m in msgs] == ["jpeg"] * 7
    grey = [int(compressed_to_rgb(m.data).mean()) for m in msgs]
    assert grey == pytest.approx([0, 60, 120, 0, 60, 120, 0], abs=3)  # sorted by name, looped


def _write_bag(path, stamps_ns, topic="/cam/image"):
    """A rosbag2 (sqlite3) with rgb8 Images stamped ``stamps_ns`` on ``topic``."""
    from rclpy.serialization import serialize_message
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    writer = Writer(path, version=8)
    with writer:
        conn = writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=get_typestore(Stores.ROS2_HUMBLE))
        for i, stamp in enumerate(stamps_ns):
            frame = np.full((24, 32, 3), 10 * i, np.uint8)
            writer.write(conn, stamp + 5_000_000, serialize_message(image_msg(frame, stamp, frame_id="bag_cam")))
    return path


def test_rosbag_keeps_original_stamps_and_can_republish_compressed(domain, probe, tmp_path):
    from sensor_msgs.msg import CompressedImage, Image

    stamps = [1_700_000_000_000_000_000 + i * 50_000_000 for i in range(6)]
    bag = _write_bag(tmp_path / "bag", stamps)
    assert open_source(bag)[0] == "bag"
    probe.subscribe(Image, "/replayed", 50)
    probe.subscribe(CompressedImage, "/replayed/compressed", 50)
    probe.wait_for(lambda: True)
    done = _replay(domain, bag, "--topic", "/replayed")  # the bag's own timing (50 ms apart)
    assert done.returncode == 0, done.stderr
    assert probe.wait_for(lambda: len(probe.messages("/replayed")) >= 6)
    msgs = probe.messages("/replayed")
    assert [stamp_ns(m.header) for m in msgs] == stamps
    assert {m.header.frame_id for m in msgs} == {"bag_cam"}
    assert [m.data[0] for m in msgs] == [10 * i for i in range(6)]
    done = _replay(domain, bag, "--compressed", "--topic", "/replayed/compressed", "--rate", "40")
    assert done.returncode == 0, done.stderr
    assert probe.wait_for(lambda: len(probe.messages("/replayed/compressed")) >= 6)
    assert [stamp_ns(m.header) for m in probe.messages("/replayed/compressed")] == stamps


def test_bad_sources_exit_2_with_a_message(domain, tmp_path):
    missing = subprocess.run(replay_cmd(tmp_path / "nothing.mp4"), env=child_env(domain), capture_output=True,
                             text=True, timeout=60)
    assert missing.returncode == 2 and "source not found" in missing.stderr
    (tmp_path / "empty").mkdir()
    empty = subprocess.run(replay_cmd(tmp_path / "empty"), env=child_env(domain), capture_output=True, text=True,
                           timeout=60)
    assert empty.returncode == 2 and "no images" in empty.stderr


def test_arguments():
    args, ros_args = parse_args(["clip.mp4", "--rate", "5", "--compressed", "--ros-args", "-r", "__ns:=/x"])
    assert (args.source, args.rate, args.compressed, args.loop) == ("clip.mp4", 5.0, True, False)
    assert ros_args == ["--ros-args", "-r", "__ns:=/x"]


def test_qos_and_size_arguments():
    """Reliable by default (the node's image_qos default), depth 10; best effort depth 1; the old
    --reliable still works; --size WxH parsed, a bad one refused."""
    args, _ = parse_args(["clip.mp4"])
    assert (args.qos, args.depth, args.size) == ("reliable", 10, None)
    args, _ = parse_args(["clip.mp4", "--qos", "best_effort", "--size", "640x480"])
    assert (args.qos, args.depth, args.size) == ("best_effort", 1, (640, 480))
    assert parse_args(["clip.mp4", "--reliable", "--depth", "3"])[0].qos == "reliable"
    with pytest.raises(SystemExit):
        parse_args(["clip.mp4", "--size", "640"])


def test_make_message_scales_to_size():
    from probpose_ros.camera_replay import make_message
    from probpose_ros.image_conversion import compressed_to_rgb, msg_to_rgb

    frame = np.zeros((1080, 1920, 3), np.uint8)
    frame[:, 960:] = 200
    msg = make_message(frame, False, "bgr8", size=(640, 480))
    assert (msg.width, msg.height, msg.encoding) == (640, 480, "bgr8")
    rgb = msg_to_rgb(msg)
    assert rgb[240, 100].tolist() == [0, 0, 0] and rgb[240, 600].tolist() == [200, 200, 200]
    again = make_message(msg, True, size=(320, 240))  # a bag message of the other kind, scaled too
    assert compressed_to_rgb(again.data).shape == (240, 320, 3)
