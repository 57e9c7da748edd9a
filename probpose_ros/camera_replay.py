"""``camera_replay``: publish a video file, an image folder or a rosbag2 as a camera stream.

    camera_replay SOURCE [--topic /camera/image_raw] [--rate HZ] [--compressed] [--loop] ...

- SOURCE: a video file (anything OpenCV reads), a folder of images (sorted by name), or a
  rosbag2 (its folder, or a ``.mcap`` / ``.db3`` file) with ``sensor_msgs/Image`` or
  ``CompressedImage`` messages (read with the ``rosbags`` package; ``--bag-topic`` picks one
  topic when there are several).
- Output: ``sensor_msgs/Image`` (``--encoding``, default bgr8) or, with ``--compressed``,
  ``CompressedImage`` (JPEG) on ``--topic`` (``<topic>/compressed`` by default when
  compressed). Bag messages of the requested kind are passed through unchanged; others are
  converted.
- Timing: ``--rate`` frames per second; by default the source's own rate (the video's FPS,
  the bag's recorded timing, 10 Hz for a folder). Stamps: a bag's original header stamps
  (``--stamp now`` restamps), otherwise the time of publishing.
- QoS: ``--qos reliable`` (default, as the pose node's ``image_qos`` default and camera drivers
  on the ROS default QoS; keep-last ``--depth``, default 10; the last frames are acknowledged
  before exiting) or ``--qos best_effort`` (sensor-data QoS, as some drivers; depth 1 unless
  ``--depth``). ``--reliable`` is the old spelling of ``--qos reliable``.
- ``--size WxH`` scales every frame (e.g. 1920x1080 -> 640x480) before publishing.
- Waits for ``--wait-subscribers`` subscribers (discovery) first, then publishes, loops with
  ``--loop``, and exits 0 when done (or on SIGINT).
"""
import argparse
import array
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from probpose_core.errors import InputError
from probpose_core.image_io import IMAGE_SUFFIXES
from probpose_ros.image_conversion import compressed_to_rgb, msg_to_rgb, rgb_to_fields

FOLDER_RATE_HZ = 10.0
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")


# -- sources: iterators of (frame, stamp_ns or None, period_s or None) ------------------
# frame is an (H, W, 3) uint8 RGB array, or a deserialised ROS message from a bag.
def video_frames(path: Path):
    """Frames of a video file as RGB, with the video's frame period."""
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}")
    fps = cap.get(cv2.CAP_PROP_FPS)
    period = 1.0 / fps if fps and np.isfinite(fps) and fps > 0 else None
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, period
    finally:
        cap.release()


def folder_frames(path: Path):
    """Images of a folder (sorted by name) as RGB."""
    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {path}")
    for p in files:
        bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if bgr is None:
            raise InputError(f"cannot read image {p}")
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), None, 1.0 / FOLDER_RATE_HZ


def bag_frames(path: Path, topic: str | None = None):
    """Image / CompressedImage messages of a rosbag2 with their header stamps and recorded gaps."""
    from rclpy.serialization import deserialize_message
    from rosbags.highlevel import AnyReader
    from sensor_msgs.msg import CompressedImage, Image

    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage}
    with AnyReader([path]) as reader:
        connections = [c for c in reader.connections
                       if c.msgtype in IMAGE_TYPES and (topic is None or c.topic == topic)]
        topics = sorted({c.topic for c in connections})
        if not topics:
            found = ", ".join(sorted(f"{c.topic} ({c.msgtype})" for c in reader.connections)) or "nothing"
            raise InputError(f"no image topic{' ' + topic if topic else ''} in bag {path}; it has {found}")
        if len(topics) > 1:
            raise InputError(f"bag {path} has several image topics ({', '.join(topics)}): pick one with --bag-topic")
        previous = None
        for conn, t_ns, raw in reader.messages(connections=connections):
            msg = deserialize_message(bytes(raw), types[conn.msgtype])
            period = None if previous is None else max(0.0, (t_ns - previous) * 1e-9)
            previous = t_ns
            yield msg, msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, period


def open_source(source, bag_topic: str | None = None):
    """(kind, a function returning a fresh frame iterator) for a video / folder / bag path."""
    path = Path(source)
    if not path.exists():
        raise InputError(f"source not found: {path}")
    if path.suffix in (".mcap", ".db3") or (path.is_dir() and (path / "metadata.yaml").exists()):
        return "bag", lambda: bag_frames(path, bag_topic)
    if path.is_dir():
        return "folder", lambda: folder_frames(path)
    return "video", lambda: video_frames(path)


# -- message building ---------------------------------------------------------------------
def _stamp(stamp_ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)


def make_message(frame, compressed: bool, encoding: str = "bgr8", jpeg_quality: int = 90, size=None):
    """An Image (in ``encoding``) or CompressedImage (JPEG) from an RGB array or a bag message,
    scaled to ``size`` ``(width, height)`` when given.

    A bag message already of the requested kind (and size) is returned as is.
    """
    from sensor_msgs.msg import CompressedImage, Image

    if isinstance(frame, CompressedImage if compressed else Image) and size is None:
        return frame
    if isinstance(frame, (Image, CompressedImage)):
        header = frame.header
        frame = compressed_to_rgb(frame.data, 0) if isinstance(frame, CompressedImage) else msg_to_rgb(frame, 0)
    else:
        header = None
    if size is not None and (frame.shape[1], frame.shape[0]) != tuple(size):
        shrink = size[0] * size[1] < frame.shape[0] * frame.shape[1]
        frame = cv2.resize(frame, tuple(size), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if compressed:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            raise InputError("JPEG encoding failed")
        msg = CompressedImage(format="jpeg")
        msg.data = array.array("B", buf.tobytes())
    else:
        fields = rgb_to_fields(frame, encoding)
        data = fields.pop("data")
        msg = Image(**fields)
        msg.data = array.array("B", data)
    if header is not None:
        msg.header = header
    return msg


# -- the program ----------------------------------------------------------------------------
def parse_args(argv):
    p = argparse.ArgumentParser(prog="camera_replay", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("source", help="video file, image folder, or rosbag2 (folder, .mcap or .db3)")
    p.add_argument("--topic", default=None, help="output topic (default /camera/image_raw, "
                                                 "/camera/image_raw/compressed with --compressed)")
    p.add_argument("--compressed", action="store_true", help="publish sensor_msgs/CompressedImage (JPEG)")
    p.add_argument("--encoding", default="bgr8", help="raw image encoding (rgb8, bgr8, mono8, mono16, yuv422, ...)")
    p.add_argument("--rate", type=float, default=0.0, help="frames per second (default: the source's own)")
    p.add_argument("--loop", action="store_true", help="start again at the end (until SIGINT)")
    p.add_argument("--max-frames", type=int, default=0, help="stop after this many frames (0 = no limit)")
    p.add_argument("--frame-id", default="camera", help="header.frame_id (bag messages keep theirs)")
    p.add_argument("--stamp", choices=("original", "now"), default="original",
                   help="original: a bag's header stamps; now: the publishing time (always for video/folder)")
    p.add_argument("--bag-topic", default=None, help="the image topic to read from a bag with several")
    p.add_argument("--qos", choices=("reliable", "best_effort"), default="reliable",
                   help="QoS reliability (default reliable, as the pose node's image_qos; best_effort = sensor-data "
                        "QoS, which only a best-effort subscriber matches)")
    p.add_argument("--reliable", dest="qos", action="store_const", const="reliable", help=argparse.SUPPRESS)
    p.add_argument("--depth", type=int, default=0, help="keep-last history depth (default: 10 reliable, 1 best effort)")
    p.add_argument("--size", default=None, help="scale frames to WIDTHxHEIGHT (e.g. 640x480)")
    p.add_argument("--wait-subscribers", type=int, default=0, help="wait until this many subscribers match")
    p.add_argument("--wait-timeout", type=float, default=30.0, help="seconds to wait for them (then fail, exit 3)")
    args, ros_args = p.parse_known_args(argv)
    if args.rate < 0:
        p.error("--rate must be positive")
    if args.depth < 0:
        p.error("--depth must be >= 1")
    args.depth = args.depth or (10 if args.qos == "reliable" else 1)
    if args.size is not None:
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
            assert w > 0 and h > 0
        except (ValueError, AssertionError):
            p.error(f"--size must be WIDTHxHEIGHT, e.g. 640x480, got {args.size!r}")
        args.size = (w, h)
    return args, ros_args


def replay(node, publisher, frames_factory, args) -> int:
    """Publish frames until the source ends (or forever with ``--loop``); returns the count."""
    count, next_time = 0, time.perf_counter()
    while True:
        any_frame = False
        for frame, stamp_ns, period in frames_factory():
            any_frame = True
            msg = make_message(frame, args.compressed, args.encoding, size=args.size)
            if stamp_ns is None:
                msg.header.frame_id = args.frame_id
            gap = 1.0 / args.rate if args.rate > 0 else period
            if gap and count:
                next_time += gap
                delay = next_time - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                else:
                    next_time = time.perf_counter()  # late: do not burst to catch up
            if stamp_ns is None or args.stamp == "now":  # stamped when published, after the pacing sleep
                msg.header.stamp = node.get_clock().now().to_msg()
            publisher.publish(msg)
            count += 1
            if args.max_frames and count >= args.max_frames:
                return count
        if not args.loop or not any_frame:
            return count


def main(argv=None) -> int:
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import CompressedImage, Image

    from probpose_ros.image_qos import image_qos

    argv = sys.argv[1:] if argv is None else list(argv)
    args, ros_args = parse_args(argv)
    topic = args.topic or ("/camera/image_raw/compressed" if args.compressed else "/camera/image_raw")
    try:
        _, frames_factory = open_source(args.source, args.bag_topic)
    except InputError as exc:
        print(f"camera_replay: {exc}", file=sys.stderr)
        return 2
    rclpy.init(args=["camera_replay"] + ros_args)
    node = rclpy.create_node("camera_replay")
    publisher = node.create_publisher(CompressedImage if args.compressed else Image, topic,
                                      image_qos(args.qos, args.depth))
    code = 0
    try:
        deadline = time.monotonic() + args.wait_timeout
        while rclpy.ok() and publisher.get_subscription_count() < args.wait_subscribers:
            if time.monotonic() > deadline:
                print(f"camera_replay: {publisher.get_subscription_count()} of {args.wait_subscribers} "
                      f"subscribers on {topic} after {args.wait_timeout:g} s", file=sys.stderr)
                return 3
            time.sleep(0.05)
        if not rclpy.ok():  # SIGINT / SIGTERM while waiting
            return 0
        count = replay(node, publisher, frames_factory, args)
        if args.qos == "reliable":  # let matched subscribers acknowledge the last frames before exiting
            from rclpy.duration import Duration

            publisher.wait_for_all_acked(Duration(seconds=5.0))
        node.get_logger().info(f"published {count} frames on {topic}")
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RCLError:
        if rclpy.ok():  # a real failure; after SIGINT / SIGTERM rclpy has shut the context down under
            raise       # a publish in flight ("publisher's context is invalid"): a normal stop
    except InputError as exc:
        print(f"camera_replay: {exc}", file=sys.stderr)
        code = 2
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
