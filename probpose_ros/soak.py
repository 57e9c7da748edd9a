"""`make soak`: the pose node under a long stream of real frames with bad frames and lifecycle round trips.

Starts the real pose node as its own process with the shipped parameters (PicoDet + the shipped
model, ``image_qos`` reliable) on ``/soak/image``, and a second one with ``compressed: true`` on
``/soak/image/compressed`` (namespace ``/soak_c``) for the compressed kinds, then from this
process (one rclpy participant, the node's default image QoS):

1. warm-up: ``--warmup`` frames of demo/people.mp4 (scaled to ``--size``, bgr8) sent one at a
   time, each after the previous HumanArray: the node's throughput (frames/s), and one frame of
   every bad kind (so steady-state buffers exist before RSS is read);
2. ``--frames`` frames (default 10 000) at ``--rate-factor`` (default 2) x that throughput,
   open loop; ``--bad-share`` (5 %) of them bad, cycling through :data:`BAD_KINDS` (raw kinds to
   the raw node, compressed kinds to the compressed node); every 10th position also sends a good
   JPEG to the compressed node; two lifecycle round trips (deactivate + activate through
   ``<node>/change_state``) of the raw node at 1/3 and 2/3 of the run;
3. a last good frame to each node (both still answer?), then SIGINT (exit code 0?).

Printed: latency p50 / p99 (the node's ``processing_latency`` and image stamp -> HumanArray
received here), RSS and thread counts of both node processes after warm-up, after each round
trip and at the end, stamp checks (every HumanArray's stamp is one we sent as a good frame, its
size and frame_id match, stamps strictly increase per node), and bad frames counted by kind in
/diagnostics against what was sent. Goals (exit code 1 when one is missed): nodes alive and exit
0, RSS growth after warm-up < 5 %, p99 processing_latency < 1 s, no stamp errors, every bad
kind counted (``1x1`` is a valid frame: it must come back as a HumanArray of width 1, or be
dropped for a newer frame). ``--json PATH`` writes the figures.

Every process gets ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a private ``ROS_DOMAIN_ID``;
``--malloc-arena-max N`` sets ``MALLOC_ARENA_MAX`` for the nodes (default 0 = unset: the node
bounds itself to 2 arenas, ``pose_node.MALLOC_ARENAS``; a large N such as 64 measures unbounded
arenas, where each round trip's new worker thread kept a ~6 MB malloc arena).
Usage: ``python -m probpose_ros.soak [--frames 10000] [--size 640x480] [--rate-factor 2]`` after
``source install/setup.bash``.
"""
import argparse
import array
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from probpose_ros.participant import Participant

#: bad kind -> (topic: raw / compressed, the /diagnostics kind it must be counted as; None = a valid frame)
BAD_KINDS = {
    "unknown_encoding": ("raw", "unknown_encoding"),
    "depth_encoding_16UC1": ("raw", "depth_encoding"),
    "truncated_data": ("raw", "truncated"),
    "bad_step": ("raw", "truncated"),
    "zero_size": ("raw", "empty"),
    "1x1": ("raw", None),
    "oversized_4200x3100": ("raw", "oversized"),
    "jpeg_no_frame_header": ("compressed", "undecodable"),
    "jpeg_truncated": ("compressed", "undecodable"),
    "jpeg_bomb_20000x20000": ("compressed", "oversized"),
    "png_corrupt": ("compressed", "undecodable"),
    "not_an_image": ("compressed", "undecodable"),
    "compressed_empty": ("compressed", "empty"),
}
RSS_GOAL = 0.05
P99_GOAL_S = 1.0
FRAME_ID = "soak_camera"


# -- frames -------------------------------------------------------------------------------
def clip_frames(size, limit: int = 0) -> list:
    """RGB frames of demo/people.mp4 scaled to ``size`` (w, h)."""
    import cv2

    from probpose_core.demo import demo_clip

    cap = cv2.VideoCapture(str(demo_clip()))
    frames = []
    while not limit or len(frames) < limit:
        ok, bgr = cap.read()
        if not ok:
            break
        frames.append(cv2.resize(bgr, tuple(size), interpolation=cv2.INTER_AREA)[:, :, ::-1].copy())
    cap.release()
    if not frames:
        raise RuntimeError(f"no frames read from {demo_clip()}")
    return frames


def _image(fields: dict):
    from sensor_msgs.msg import Image

    fields = dict(fields)
    data = fields.pop("data")
    msg = Image(**fields)
    msg.data = array.array("B", data)
    msg.header.frame_id = FRAME_ID
    return msg


def _compressed(data: bytes, fmt: str = "jpeg"):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    msg.header.frame_id = FRAME_ID
    return msg


def good_messages(frames) -> tuple[list, list]:
    """(bgr8 Images, JPEG CompressedImages) of ``frames``."""
    import cv2

    from probpose_ros.image_conversion import rgb_to_fields

    raw = [_image(rgb_to_fields(f, "bgr8")) for f in frames]
    jpeg = [_compressed(cv2.imencode(".jpg", f[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())
            for f in frames]
    return raw, jpeg


def bad_messages(frame: np.ndarray) -> dict:
    """kind -> a message of that kind (:data:`BAD_KINDS`), made from the RGB ``frame``."""
    import cv2

    from probpose_ros.image_conversion import rgb_to_fields

    h, w = frame.shape[:2]
    rgb = rgb_to_fields(frame, "rgb8")
    jpeg = cv2.imencode(".jpg", frame[:, :, ::-1])[1].tobytes()
    png = bytearray(cv2.imencode(".png", frame[:, :, ::-1])[1].tobytes())
    idat = png.index(b"IDAT")
    png[idat + 8:idat + 72] = bytes(64)  # the zlib stream broken: libpng refuses it
    sof = next(i for i in range(2, len(jpeg) - 1) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC2))
    bomb = bytearray(jpeg)
    bomb[sof + 5:sof + 9] = (20000).to_bytes(2, "big") * 2
    rng = np.random.default_rng(0)
    return {
        "unknown_encoding": _image(dict(rgb, encoding="bayer_unknown8")),
        "depth_encoding_16UC1": _image(rgb_to_fields(frame, "16UC1")),
        "truncated_data": _image(dict(rgb, data=rgb["data"][: len(rgb["data"]) // 2])),
        "bad_step": _image(dict(rgb, step=3 * w - 1)),
        "zero_size": _image(dict(rgb, height=0, width=0, step=0, data=b"")),
        "1x1": _image(rgb_to_fields(frame[:1, :1], "rgb8")),
        "oversized_4200x3100": _image(dict(height=3100, width=4200, encoding="mono8", is_bigendian=0, step=4200,
                                           data=np.full((3100, 4200), 90, np.uint8).tobytes())),
        "jpeg_no_frame_header": _compressed(b"\xff\xd8" + rng.integers(0, 255, 4000, np.uint8).tobytes()),
        "jpeg_truncated": _compressed(jpeg[: len(jpeg) // 2]),
        "jpeg_bomb_20000x20000": _compressed(bytes(bomb)),
        "png_corrupt": _compressed(bytes(png), "png"),
        "not_an_image": _compressed(rng.integers(0, 255, 5000, np.uint8).tobytes()),
        "compressed_empty": _compressed(b""),
    }


# -- processes ---------------------------------------------------------------------------
def proc_status(pid: int) -> dict:
    """``rss_mb`` and ``threads`` of process ``pid`` (/proc), NaN when it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {"rss_mb": float("nan"), "threads": float("nan")}
    fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
    return {"rss_mb": int(fields["VmRSS"].split()[0]) / 1024, "threads": int(fields["Threads"])}


class Soak(Participant):
    """The soak's own participant: image publishers, HumanArray / diagnostics subscriptions, a
    lifecycle client; an executor thread spins it."""

    NODES = {"raw": ("/probpose", "/humans/keypoints"), "compressed": ("/soak_c/probpose", "/soak_c/humans/keypoints")}

    def __init__(self, domain: int):
        from diagnostic_msgs.msg import DiagnosticArray
        from lifecycle_msgs.srv import ChangeState
        from sensor_msgs.msg import CompressedImage, Image

        from probpose_msgs.msg import HumanArray
        from probpose_ros.image_qos import image_qos

        super().__init__(domain, f"soak_{os.getpid()}")
        self.lock = threading.Lock()
        self.results = {k: [] for k in self.NODES}  # (stamp_ns, latency s, arrival wall s, width, height, frame_id)
        self.diag = {}
        qos = image_qos("reliable", 10)
        self.pub = {"raw": self.node.create_publisher(Image, "/soak/image", qos),
                    "compressed": self.node.create_publisher(CompressedImage, "/soak/image/compressed", qos)}
        for kind, (_, topic) in self.NODES.items():
            self.node.create_subscription(HumanArray, topic, lambda m, k=kind: self._on_humans(k, m), 1000)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 50)
        self.change_state = self.node.create_client(ChangeState, "/probpose/change_state")
        self.start()

    def _on_humans(self, kind, msg):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with self.lock:
            self.results[kind].append((stamp, msg.processing_latency, time.time(), msg.image_width,
                                       msg.image_height, msg.header.frame_id))

    def _on_diag(self, msg):
        for status in msg.status:
            for kind, (name, _) in self.NODES.items():
                if status.name.endswith(f": {name}"):
                    with self.lock:
                        self.diag[kind] = {kv.key: kv.value for kv in status.values}

    def count(self, kind: str) -> int:
        with self.lock:
            return len(self.results[kind])

    def diagnostics(self, kind: str) -> dict:
        with self.lock:
            return dict(self.diag.get(kind, {}))

    def wait(self, condition, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.01)
        return bool(condition())

    def publish(self, kind: str, msg, stamp_ns: int):
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        self.pub[kind].publish(msg)

    def transition(self, transition_id: int, timeout: float = 60.0) -> bool:
        from lifecycle_msgs.srv import ChangeState

        if not self.change_state.wait_for_service(timeout_sec=timeout):
            return False
        request = ChangeState.Request()
        request.transition.id = transition_id
        future = self.change_state.call_async(request)
        return self.wait(future.done, timeout) and bool(future.result().success)


def start_nodes(domain: int, log_dir: Path, malloc_arena_max: int, extra_params=()) -> dict:
    """The raw and the compressed pose node processes (shipped parameters)."""
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               PYTHONUNBUFFERED="1", RCUTILS_COLORIZED_OUTPUT="0")
    env.pop("MALLOC_ARENA_MAX", None)
    if malloc_arena_max:
        env["MALLOC_ARENA_MAX"] = str(malloc_arena_max)
    params = [a for p in extra_params for a in ("-p", p)]
    cmds = {"raw": ["-r", "image:=/soak/image"],
            "compressed": ["-r", "__ns:=/soak_c", "-p", "compressed:=true", "-r", "image:=/soak/image/compressed"]}
    procs = {}
    for kind, args in cmds.items():
        log = open(log_dir / f"node_{kind}.log", "w")
        procs[kind] = subprocess.Popen([sys.executable, "-m", "probpose_ros.pose_node", "--ros-args", *args, *params],
                                       env=env, stdout=log, stderr=subprocess.STDOUT)
        procs[kind].log_path = log.name
    return procs


def percentile(values, q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


# -- the run ------------------------------------------------------------------------------
def run(frames: int = 10_000, size=(640, 480), rate_factor: float = 2.0, bad_share: float = 0.05,
        warmup: int = 30, round_trips: int = 2, malloc_arena_max: int = 0, log_dir=None, extra_params=(),
        verbose: bool = True) -> dict:
    """The soak (module docstring); returns its figures and ``goals`` (name -> met)."""
    say = print if verbose else (lambda *a, **k: None)
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="soak_"))
    log_dir.mkdir(parents=True, exist_ok=True)
    domain = 1 + (os.getpid() * 11 + int(time.time())) % 100
    clip = clip_frames(size)
    good, good_jpeg = good_messages(clip)
    bad = bad_messages(clip[0])
    soak = Soak(domain)
    procs = start_nodes(domain, log_dir, malloc_arena_max, extra_params)
    sent_good = {k: {} for k in Soak.NODES}  # stamp -> (width, height)
    sent_bad, status, stamp = Counter(), {}, [time.time_ns()]

    def next_stamp() -> int:
        stamp[0] = max(stamp[0] + 1000, time.time_ns())
        return stamp[0]

    def send_good(kind, i):
        msg = (good if kind == "raw" else good_jpeg)[i % len(clip)]
        s = next_stamp()
        sent_good[kind][s] = (size[0], size[1])
        soak.publish(kind, msg, s)

    def send_bad(name):
        kind = BAD_KINDS[name][0]
        s = next_stamp()
        if name == "1x1":
            sent_good[kind][s] = (1, 1)
        soak.publish(kind, bad[name], s)
        sent_bad[name] += 1

    def snapshot(label):
        status[label] = {k: proc_status(p.pid) for k, p in procs.items()}
        say(f"  {label:<22}" + "  ".join(f"{k}: RSS {v['rss_mb']:7.1f} MB, {v['threads']} threads"
                                          for k, v in status[label].items()), flush=True)

    result = {"frames": frames, "size": list(size), "bad_share": bad_share, "malloc_arena_max": malloc_arena_max,
              "log_dir": str(log_dir)}
    try:
        for kind in Soak.NODES:  # both nodes up and matched
            if not soak.wait(lambda k=kind: soak.pub[k].get_subscription_count() >= 1 and soak.diagnostics(k),
                             timeout=180):
                raise RuntimeError(f"the {kind} pose node did not come up; see {procs[kind].log_path}")
        # 1. warm-up, closed loop: throughput, and one frame of every kind
        t0 = time.perf_counter()
        for i in range(warmup):
            n = soak.count("raw")
            send_good("raw", i)
            if i % 3 == 0:
                send_good("compressed", i)
            if not soak.wait(lambda: soak.count("raw") > n, timeout=60):
                raise RuntimeError(f"no HumanArray for warm-up frame {i}; see {procs['raw'].log_path}")
        throughput = warmup / (time.perf_counter() - t0)
        for name in BAD_KINDS:
            send_bad(name)
            time.sleep(0.3)
        rate = rate_factor * throughput
        say(f"soak: node throughput {throughput:.1f} frames/s (closed loop, {warmup} frames {size[0]}x{size[1]}); "
            f"sending {frames} frames at {rate:.1f} Hz, {bad_share:.0%} bad, {round_trips} lifecycle round trips; "
            f"logs in {log_dir}", flush=True)
        time.sleep(2.0)
        snapshot("after warm-up")
        # 2. the run, open loop
        bad_every = int(round(1 / bad_share)) if bad_share > 0 else 0
        trips_at = {int(frames * (k + 1) / (round_trips + 1)) for k in range(round_trips)}
        names = list(BAD_KINDS)
        period, next_time, n_bad = 1.0 / rate, time.perf_counter(), 0
        for i in range(frames):
            if i in trips_at:
                ok = soak.transition(4) and soak.transition(3)  # deactivate, activate
                result.setdefault("round_trips_ok", []).append(ok)
                snapshot(f"round trip at {i}")
                next_time = time.perf_counter()
            delay = next_time - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            else:
                next_time = time.perf_counter()  # late: no burst
            next_time += period
            if bad_every and i % bad_every == bad_every // 2:
                send_bad(names[n_bad % len(names)])
                n_bad += 1
            else:
                send_good("raw", i)
            if i % 10 == 0:
                send_good("compressed", i)
        # 3. the end: both nodes still answer a good frame
        time.sleep(3.0)
        for kind in Soak.NODES:
            n = soak.count(kind)
            result[f"{kind}_answers_at_end"] = False
            for attempt in range(5):
                send_good(kind, attempt)
                if soak.wait(lambda k=kind: soak.count(k) > n, timeout=10):
                    result[f"{kind}_answers_at_end"] = True
                    break
        time.sleep(2.5)  # the last /diagnostics
        snapshot("end")
        diag = {k: soak.diagnostics(k) for k in Soak.NODES}
        alive = {k: p.poll() is None for k, p in procs.items()}
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        codes = {}
        for k, p in procs.items():
            try:
                codes[k] = p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
                codes[k] = p.wait()
        soak.close()
    # figures
    with soak.lock:
        results = {k: list(v) for k, v in soak.results.items()}
    stamp_errors = defaultdict(list)
    for kind, rows in results.items():
        last = -1
        for stamp_ns, _, _, width, height, frame_id in rows:
            sent = sent_good[kind].get(stamp_ns)
            if sent is None:
                stamp_errors[kind].append(f"stamp {stamp_ns} was not sent as a good frame")
            elif (width, height) != sent or frame_id != FRAME_ID:
                stamp_errors[kind].append(f"stamp {stamp_ns}: {width}x{height} {frame_id!r}, sent {sent}")
            if stamp_ns <= last:
                stamp_errors[kind].append(f"stamp {stamp_ns} after {last}: not increasing")
            last = stamp_ns
    raw = results["raw"]
    latency = [r[1] for r in raw]
    transport = [r[2] - r[0] * 1e-9 for r in raw]
    counted = {k: {key[len("bad_frames."):]: int(v) for key, v in d.items() if key.startswith("bad_frames.")}
               for k, d in diag.items()}
    bad_rows = {}
    for name, (kind, diag_kind) in BAD_KINDS.items():
        if diag_kind is None:
            got = sum(1 for r in results[kind] if (r[3], r[4]) == (1, 1))
            bad_rows[name] = {"sent": sent_bad[name], "expect": "valid: a HumanArray 1x1", "counted": got,
                              "ok": True}  # a valid frame: published, or dropped for a newer one
        else:
            got = counted.get(kind, {}).get(diag_kind, 0)
            bad_rows[name] = {"sent": sent_bad[name], "expect": f"{kind} node: bad_frames.{diag_kind}",
                              "counted": got, "ok": got >= 1}
    warm, end = status["after warm-up"], status["end"]
    growth = {k: (end[k]["rss_mb"] - warm[k]["rss_mb"]) / warm[k]["rss_mb"] for k in procs}
    trips = [per for label, per in status.items() if label.startswith("round trip")]
    per_trip = {k: (trips[-1][k]["rss_mb"] - trips[0][k]["rss_mb"]) / (len(trips) - 1) if len(trips) > 1
                else float("nan") for k in procs}  # RSS added per round trip after the first
    result.update({
        "throughput_hz": throughput, "rate_hz": rate, "sent_good": {k: len(v) for k, v in sent_good.items()},
        "sent_bad": dict(sent_bad), "humanarrays": {k: len(v) for k, v in results.items()},
        "latency_p50_s": percentile(latency, 50), "latency_p99_s": percentile(latency, 99),
        "stamp_to_arrival_p50_s": percentile(transport, 50), "stamp_to_arrival_p99_s": percentile(transport, 99),
        "status": status, "rss_growth": growth, "rss_mb_per_round_trip": per_trip, "stamp_errors": {k: v[:20] for k, v in stamp_errors.items()},
        "stamp_error_count": sum(len(v) for v in stamp_errors.values()), "bad_frames": bad_rows,
        "diagnostics": diag, "alive_at_end": alive, "exit_codes": codes,
    })
    result["goals"] = {
        "nodes alive, answering, exit 0": all(alive.values()) and all(c == 0 for c in codes.values())
        and result["raw_answers_at_end"] and result["compressed_answers_at_end"],
        "lifecycle round trips succeeded": all(result.get("round_trips_ok", [True])),
        f"RSS growth after warm-up < {RSS_GOAL:.0%}": all(g < RSS_GOAL for g in growth.values()),
        f"p99 processing_latency < {P99_GOAL_S:g} s": result["latency_p99_s"] < P99_GOAL_S,
        "no stamp errors": result["stamp_error_count"] == 0,
        "every bad kind counted": all(r["ok"] for r in bad_rows.values()),
    }
    return result


def report(r: dict) -> str:
    lines = [f"soak: {r['frames']} frames {r['size'][0]}x{r['size'][1]} at {r['rate_hz']:.1f} Hz "
             f"(node throughput {r['throughput_hz']:.1f} frames/s), MALLOC_ARENA_MAX "
             f"{r['malloc_arena_max'] or 'unset (node bounds to 2)'}",
             f"  sent good {r['sent_good']}, bad {sum(r['sent_bad'].values())}; HumanArrays {r['humanarrays']}",
             f"  processing_latency p50 {r['latency_p50_s'] * 1e3:.0f} ms, p99 {r['latency_p99_s'] * 1e3:.0f} ms; "
             f"stamp -> HumanArray here p50 {r['stamp_to_arrival_p50_s'] * 1e3:.0f} ms, "
             f"p99 {r['stamp_to_arrival_p99_s'] * 1e3:.0f} ms"]
    d = r["diagnostics"].get("raw", {})
    lines.append(f"  raw node /diagnostics: received {d.get('frames_received')}, published {d.get('frames_published')}, "
                 f"dropped {d.get('dropped_frames')}, bad {d.get('bad_frames')}")
    for label, per in r["status"].items():
        lines.append(f"  {label:<22}" + "  ".join(f"{k}: RSS {v['rss_mb']:.1f} MB, {v['threads']} threads"
                                                  for k, v in per.items()))
    lines.append("  RSS growth after warm-up: " + ", ".join(f"{k} {g:+.1%}" for k, g in r["rss_growth"].items())
                 + "; per round trip after the first: "
                 + ", ".join(f"{k} {v:+.1f} MB" for k, v in r["rss_mb_per_round_trip"].items()))
    lines.append(f"  stamp errors: {r['stamp_error_count']}" + (f" {r['stamp_errors']}" if r["stamp_error_count"] else ""))
    lines.append(f"  {'bad kind':<24}{'sent':>6}{'counted':>9}  as")
    for name, row in r["bad_frames"].items():
        lines.append(f"  {name:<24}{row['sent']:>6}{row['counted']:>9}  {row['expect']}{'' if row['ok'] else '  MISSING'}")
    lines.append("  goals: " + "; ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in r["goals"].items()))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10_000, help="frames in the run (default 10000)")
    parser.add_argument("--size", default="640x480", help="frame size WxH (default 640x480)")
    parser.add_argument("--rate-factor", type=float, default=2.0, help="send rate / the node's throughput (default 2)")
    parser.add_argument("--bad-share", type=float, default=0.05, help="share of bad frames (default 0.05)")
    parser.add_argument("--warmup", type=int, default=30, help="closed-loop warm-up frames (default 30)")
    parser.add_argument("--round-trips", type=int, default=2, help="lifecycle round trips mid-run (default 2)")
    parser.add_argument("--malloc-arena-max", type=int, default=0,
                        help="MALLOC_ARENA_MAX for the nodes (default 0 = unset: the node bounds itself to 2; "
                             "64 measures unbounded arenas)")
    parser.add_argument("--log-dir", default=None, help="node logs (default: a temporary folder)")
    parser.add_argument("--json", default=None, help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    size = tuple(int(v) for v in args.size.lower().split("x"))
    r = run(args.frames, size, args.rate_factor, args.bad_share, args.warmup, args.round_trips,
            args.malloc_arena_max, args.log_dir)
    print(report(r))
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=1, default=str))
    return 0 if all(r["goals"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
