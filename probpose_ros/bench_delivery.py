"""`make bench` (delivery): the share of camera frames that reach the pose node over DDS on one host.

Per frame size (640x480 and 1920x1080 bgr8: 0.9 and 6.2 MB) and QoS set-up, ``camera_replay``
publishes ``--frames`` frames of the shipped clip (demo/people.mp4, scaled) at ``--rate`` Hz
(default 10) to the real pose node, a separate process with its shipped parameters (PicoDet +
the shipped model, so it is busy as in use); the node's ``frames_received`` (/diagnostics,
counted in its subscription callback) over the frames sent is the delivery rate. Set-ups:

- ``before``: the old defaults: node subscription best effort depth 1, camera_replay best
  effort, stock Fast DDS.
- ``shipped``: the shipped defaults: node ``image_qos`` reliable, ``image_qos_depth`` 3,
  camera_replay reliable (its default, depth 10), stock Fast DDS.
- ``best_effort+shm``: a best-effort camera with the node's ``image_qos:=best_effort`` and the
  Fast DDS profile config/fastdds_shm.xml (shared memory, 32 MB segments) in both processes
  (it matters in the publishing process: the writer's segment carries the sample).

Target: >= 90 % of the frames reach the node with the shipped defaults. Every process gets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a private ``ROS_DOMAIN_ID``.
Usage: ``python -m probpose_ros.bench_delivery [--frames 50] [--rate 10] [--sizes 640x480,1920x1080]
[--setups before,shipped,best_effort+shm] [--subscriber node|bare]`` after ``source install/setup.bash``.
``--subscriber bare``: a plain subscription with the node's QoS instead of the node (no model).
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from probpose_ros import dds_profile
from probpose_ros.participant import Participant

TARGET = 0.90
#: set-up -> (node image_qos, its image_qos_depth, camera_replay --qos, use the shipped Fast DDS profile)
SETUPS = {"before": ("best_effort", 1, "best_effort", False), "shipped": ("reliable", 3, "reliable", False),
          "best_effort+shm": ("best_effort", 3, "best_effort", True)}


def child_env(domain: int, profile: bool) -> dict:
    """Environment of the node and the replay: localhost discovery, ``domain``, the Fast DDS
    profile set (or any inherited one removed, so 'stock' means stock)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    for var in (*dds_profile.PROFILE_VARS, dds_profile.QOS_FROM_XML):
        env.pop(var, None)
    if profile:
        env.update(dds_profile.profile_env(dds_profile.SHM_PROFILE))
    return env


class Diagnostics(Participant):
    """A participant of this process on ``domain`` that keeps the latest probpose /diagnostics values."""

    def __init__(self, domain: int):
        from diagnostic_msgs.msg import DiagnosticArray

        super().__init__(domain, f"bench_delivery_{os.getpid()}")
        self.values, self.count = {}, 0
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.start()

    def _on_diag(self, msg):
        for status in msg.status:
            if "probpose" in status.name:
                self.values = {kv.key: kv.value for kv in status.values}
                self.count += 1

    def received(self) -> int:
        return int(self.values.get("frames_received", -1))


BARE = """
import sys, time, rclpy
from sensor_msgs.msg import Image
from probpose_ros.image_qos import image_qos
rclpy.init()
node = rclpy.create_node("bench_delivery_subscriber")
count = [0]
node.create_subscription(Image, "/camera/image_raw", lambda m: count.__setitem__(0, count[0] + 1), image_qos(sys.argv[1], int(sys.argv[3])))
print("ready", flush=True)
try:
    while rclpy.ok():
        rclpy.spin_once(node, timeout_sec=0.1)
        with open(sys.argv[2], "w") as f:
            f.write(str(count[0]))
except KeyboardInterrupt:
    pass
"""


def _wait_settled(get, timeout: float) -> int:
    """The value of ``get()`` once it stopped changing for 2 s (or at ``timeout``)."""
    deadline, last, since = time.monotonic() + timeout, get(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.25)
        value = get()
        if value != last:
            last, since = value, time.monotonic()
        elif time.monotonic() - since >= 2.0 and value >= 0:
            break
    return last


def measure(size, setup: str, frames: int, rate: float, subscriber: str = "node", domain: int | None = None,
            log_dir: Path | None = None) -> dict:
    """``{"sent", "received", "share"}`` for ``frames`` frames of ``size`` (w, h) under ``setup``."""
    from probpose_core.demo import demo_clip

    node_qos, depth, pub_qos, profile = SETUPS[setup]
    domain = domain if domain is not None else 1 + (os.getpid() * 7 + int(time.time())) % 100
    env = child_env(domain, profile)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="bench_delivery_"))
    tag = f"{size[0]}x{size[1]}_{setup.replace('+', '_')}"
    node_log = open(log_dir / f"{tag}_subscriber.log", "w")
    count_file = log_dir / f"{tag}_count"
    if subscriber == "node":
        cmd = [sys.executable, "-m", "probpose_ros.pose_node", "--ros-args", "-p", f"image_qos:={node_qos}",
               "-p", f"image_qos_depth:={depth}", "-r", "image:=/camera/image_raw"]
    else:
        cmd = [sys.executable, "-c", BARE, node_qos, str(count_file), str(depth)]
    diag = Diagnostics(domain) if subscriber == "node" else None
    proc = subprocess.Popen(cmd, env=env, stdout=node_log, stderr=subprocess.STDOUT)
    try:
        if diag is not None:  # the node is active once its /diagnostics arrive
            deadline = time.monotonic() + 120
            while diag.received() < 0 and time.monotonic() < deadline and proc.poll() is None:
                time.sleep(0.1)
            if diag.received() < 0:
                raise RuntimeError(f"the pose node did not come up; see {node_log.name}")
            get = diag.received
        else:
            def get():
                try:
                    return int(count_file.read_text() or -1)
                except (OSError, ValueError):
                    return -1
        replay = subprocess.run([sys.executable, "-m", "probpose_ros.camera_replay", str(demo_clip()), "--loop",
                                 "--size", f"{size[0]}x{size[1]}", "--rate", str(rate), "--max-frames", str(frames),
                                 "--qos", pub_qos, "--wait-subscribers", "1", "--wait-timeout", "60"],
                                env=env, capture_output=True, text=True, timeout=120 + 3 * frames / rate)
        if replay.returncode != 0:
            raise RuntimeError(f"camera_replay failed ({replay.returncode}): {replay.stderr[-2000:]}")
        received = _wait_settled(get, timeout=15.0)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        node_log.close()
        if diag is not None:
            diag.close()
    return {"sent": frames, "received": received, "share": received / frames}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50, help="frames per size and set-up (default 50)")
    parser.add_argument("--rate", type=float, default=10.0, help="frames per second (default 10)")
    parser.add_argument("--sizes", default="640x480,1920x1080", help="frame sizes WxH, comma-separated")
    parser.add_argument("--setups", default=",".join(SETUPS), help=f"set-ups among {', '.join(SETUPS)}")
    parser.add_argument("--subscriber", choices=("node", "bare"), default="node",
                        help="node: the real pose node (default); bare: a plain subscription with its QoS")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    setups = args.setups.split(",")
    unknown = set(setups) - set(SETUPS)
    if unknown:
        parser.error(f"unknown set-up(s) {', '.join(sorted(unknown))}; known: {', '.join(SETUPS)}")
    print(f"camera frames reaching the {'pose node' if args.subscriber == 'node' else 'bare subscriber'} on one host, "
          f"bgr8 at {args.rate:g} Hz, {args.frames} frames each (target with the shipped defaults: >= {TARGET:.0%})")
    print(f"  {'size':<11}{'MB':>5}  {'set-up':<17}{'node QoS, depth':<17}{'camera QoS':<13}{'profile':<9}"
          f"{'received':>10}{'share':>8}")
    ok = True
    for w, h in sizes:
        for setup in setups:
            node_qos, depth, pub_qos, profile = SETUPS[setup]
            m = measure((w, h), setup, args.frames, args.rate, args.subscriber)
            mark = ""
            if setup == "shipped":
                mark = " ok" if m["share"] >= TARGET else " BELOW TARGET"
                ok &= m["share"] >= TARGET
            print(f"  {f'{w}x{h}':<11}{w * h * 3 / 1e6:5.1f}  {setup:<17}{f'{node_qos}, {depth}':<17}{pub_qos:<13}"
                  f"{'shm' if profile else 'stock':<9}{m['received']:>5}/{m['sent']:<4}{m['share']:8.0%}{mark}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
