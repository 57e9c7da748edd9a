"""Frames that arrive (issue 19 item 6): the shipped image QoS and the Fast DDS profile, over real
DDS on localhost (a private ROS_DOMAIN_ID, LOCALHOST discovery). The delivery shares at 10 Hz
are measured by ``python -m probpose_ros.bench_delivery`` (make bench); here only that 640x480
frames (0.9 MB, above the ~0.5 MB that stock Fast DDS loses best effort) get through with the
shipped defaults, and that the profile is shipped, valid and installed.
"""
import xml.etree.ElementTree as ET
from pathlib import Path

from ros_harness import fresh_domain

from probpose_ros import bench_delivery, dds_profile
from probpose_ros.pose_node import parameter_defaults

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_defaults_are_reliable_and_the_bench_uses_them():
    defaults = parameter_defaults()
    assert (defaults["image_qos"], defaults["image_qos_depth"]) == bench_delivery.SETUPS["shipped"][:2]
    from probpose_ros.camera_replay import parse_args

    args, _ = parse_args(["clip.mp4"])
    assert args.qos == "reliable"  # camera_replay matches the node by default


def test_fastdds_profiles_are_valid_and_installed():
    ns = {"d": "http://www.eprosima.com"}
    root = ET.parse(ROOT / "config" / dds_profile.SHM_PROFILE).getroot()
    shm = [t for t in root.iterfind(".//d:transport_descriptor", ns) if t.findtext("d:type", namespaces=ns) == "SHM"]
    assert shm and int(shm[0].findtext("d:segment_size", namespaces=ns)) >= 2 * 1920 * 1080 * 3
    participant = root.find(".//d:participant", ns)
    assert participant.get("is_default_profile") == "true"
    node = ET.parse(ROOT / "config" / dds_profile.NODE_PROFILE).getroot()
    for profiles in (root, node):  # both give the node readers that free each sample
        readers = profiles.find(".//d:subscriber", ns)
        assert readers.get("is_default_profile") == "true"
        assert readers.findtext("d:historyMemoryPolicy", namespaces=ns) == "DYNAMIC"
        writers = profiles.find(".//d:publisher", ns)  # what rmw_fastrtps sets when QoS does not come from XML
        assert writers.findtext("d:historyMemoryPolicy", namespaces=ns) == "PREALLOCATED_WITH_REALLOC"
        assert writers.findtext("d:qos/d:publishMode/d:kind", namespaces=ns) == "ASYNCHRONOUS"
    for name in (dds_profile.SHM_PROFILE, dds_profile.NODE_PROFILE):
        assert dds_profile.config_path(name).read_bytes() == (ROOT / "config" / name).read_bytes()


def test_640x480_frames_reach_a_subscriber_with_the_shipped_defaults(tmp_path):
    """20 frames of the demo clip at 640x480 from camera_replay (defaults) to a subscription with
    the node's default QoS (before: best effort both sides, ~30 % arrived at 10 Hz)."""
    m = bench_delivery.measure((640, 480), "shipped", frames=20, rate=10.0, subscriber="bare",
                               domain=fresh_domain(), log_dir=tmp_path)
    assert m["received"] >= 18, m
