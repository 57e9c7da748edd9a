"""The pose node's Fast DDS profile (probpose_ros/dds_profile.py, config/fastdds_node.xml): its
readers do not keep buffers the size of the largest frame they ever received (issue 19 item 8).

Two real processes over DDS on localhost: a reliable publisher sends 640x480 frames, then three
4200x3100 ones (39 MB each: what max_image_pixels refuses only after they arrived), then 640x480
frames again; a reliable subscriber reports its RSS after the first small frames and at the end.
With rmw_fastrtps' own reader policy (PREALLOCATED_WITH_REALLOC) the big buffers stay; with the
environment the node gives itself (:func:`dds_profile.node_env`) they are freed."""
import subprocess
import sys

from probpose_ros import dds_profile

BIG, SMALL = (4200, 3100), (640, 480)

SUBSCRIBER = """
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

def rss_mb():
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS")) / 1024

rclpy.init()
node = rclpy.create_node("dds_profile_sub")
got, marks = [], {}
def on_image(msg):
    got.append(msg.width)
    if len(got) == 5:
        marks["warm"] = rss_mb()
node.create_subscription(Image, "/dds_profile/image", on_image,
                         QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE))
print("ready", flush=True)
while len(got) < %(total)d and rclpy.ok():
    rclpy.spin_once(node, timeout_sec=0.1)
print(len(got), got.count(%(big)d), marks["warm"], rss_mb(), flush=True)
"""

PUBLISHER = """
import time
import numpy as np
import rclpy
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image

rclpy.init()
node = rclpy.create_node("dds_profile_pub")
pub = node.create_publisher(Image, "/dds_profile/image",
                            QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE))
def frame(w, h):
    msg = Image(width=w, height=h, encoding="bgr8", step=3 * w)
    msg.data = np.zeros(3 * w * h, np.uint8).tobytes()
    return msg
small, big = frame(*%(small)r), frame(*%(big)r)
while pub.get_subscription_count() == 0:
    time.sleep(0.05)
for i in range(%(total)d):
    pub.publish(big if 8 <= i < 11 else small)
    time.sleep(0.1)
pub.wait_for_all_acked(rclpy.duration.Duration(seconds=30))
"""


def _growth(env: dict) -> float:
    """RSS growth (MB) of the subscriber over the big frames; asserts every frame arrived."""
    args = {"total": 25, "big": BIG[0], "small": SMALL}
    sub = subprocess.Popen([sys.executable, "-c", SUBSCRIBER % args], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert sub.stdout.readline().strip() == "ready"
        subprocess.run([sys.executable, "-c", PUBLISHER % dict(args, big=BIG)], env=env, check=True, timeout=120)
        out, _ = sub.communicate(timeout=60)
    finally:
        sub.kill()
    received, big, warm, end = out.split()
    assert (int(received), int(big)) == (25, 3)
    return float(end) - float(warm)


def test_node_env_readers_free_the_largest_frame(ros_env):
    stock = {k: v for k, v in ros_env.items() if k not in (*dds_profile.PROFILE_VARS, dds_profile.QOS_FROM_XML)}
    kept = _growth(stock)
    # at least one 39 MB buffer stays (+72 MB seen with two, +35 MB with one)
    assert kept > 25, f"rmw_fastrtps' own readers keep a 39 MB buffer (+{kept:.1f} MB measured)"
    node = dict(stock, **dds_profile.node_env(stock))
    assert node[dds_profile.QOS_FROM_XML] == "1"
    assert node["FASTDDS_DEFAULT_PROFILES_FILE"].endswith(dds_profile.NODE_PROFILE)
    freed = _growth(node)
    assert freed < 15, f"+{freed:.1f} MB after the big frames with the node's profile"


def test_users_profile_wins():
    assert dds_profile.node_env({"FASTRTPS_DEFAULT_PROFILES_FILE": "/mine.xml"}) == {}
    assert dds_profile.node_env({dds_profile.QOS_FROM_XML: "0"}) == {
        "FASTDDS_DEFAULT_PROFILES_FILE": str(dds_profile.config_path(dds_profile.NODE_PROFILE))}
