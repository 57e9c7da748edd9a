"""`make bench` (ROS part): the pose node's own overhead per 640x480 frame.

Runs the real node (``PoseNode.process`` on sensor_msgs/Image frames, publishing for real) with
a stand-in runner that returns compact, trained-model-like maps and a detector that returns
fixed boxes, so the network and detector drop out and what remains is the node's overhead:
image conversion, messages, markers, annotated image and publishing. Prints medians per
configuration (1 and 5 people, visualisation subscribers off/on) for both ways of publishing
HumanArray and MarkerArray -- message objects (rclpy converts them) and the CDR bytes of
:mod:`probpose_ros.cdr` (what the node does when its start-up self-check passes), alternating
frame by frame on one node: wall-clock of each, the worker thread's CPU time with CDR (on a
shared, busy machine the wall-clock also holds preemption), and the ratio of its wall-clock to
the target of 3 ms per frame.
Usage: ``python -m probpose_ros.bench_node [--frames 60]`` after ``source install/setup.bash``.
"""
import argparse
import array
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from probpose_core.bench import synthetic_logits
from probpose_core.geometry import INPUT_SIZE
from probpose_core.keypoints import NUM_KEYPOINTS

TARGET_MS = 3.0


class PeakedRunner:
    """Stand-in network: compact Sparsemax maps at random places, confident scalars."""

    input_size, max_batch, name = INPUT_SIZE, 16, "peaked"

    def __init__(self):
        import torch

        torch.set_num_threads(1)  # idle OpenMP workers spinning after each call would slow the timed part

    def run(self, images):
        import torch

        from probpose_core.sparsemax import sparsemax_maps

        n = len(images)
        maps = sparsemax_maps(torch.from_numpy(synthetic_logits(n, seed=n)[0])).numpy()
        full = np.full((n, NUM_KEYPOINTS), 0.9, np.float32)
        return {"prob_maps": maps, "presence": full, "visibility": full, "oks_quality": full}


class FixedBoxes:
    def __init__(self, people: int):
        self.boxes = np.array([[20 + 120 * i, 40, 100, 400] for i in range(people)], dtype=np.float64)

    def detect(self, frame):
        return self.boxes, np.linspace(1.0, 0.5, len(self.boxes))


def _tiny_onnx(folder: Path) -> Path:
    """The node needs a model file at start-up; the bench swaps its runner right after."""
    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    return export_onnx(build_model(cnn_config(embed_dim=32, head_channels=16, aux_channels=8)).eval(),
                       folder / "tiny.onnx")


def measure(model: Path, people: int, visualise: bool, frames: int) -> dict:
    """Median node overhead (ms) over ``frames`` frames per way of publishing, after a warm-up
    of 10: ``objects`` / ``cdr`` wall-clock, ``cdr_cpu`` the worker thread's CPU time (the same
    work without waits on a busy machine), ``cdr_used`` whether the node's self-check let it
    publish CDR bytes for both types. The two ways alternate frame by frame on one node, so a
    busy machine slows both alike."""
    import rclpy
    from sensor_msgs.msg import Image
    from visualization_msgs.msg import MarkerArray

    from probpose_msgs.msg import HumanArray
    from probpose_ros.image_conversion import rgb_to_fields
    from probpose_ros.pose_node import Timings, _node_class

    rclpy.init(args=["bench", "--ros-args", "-p", f"model:={model}", "-p", "detector:=full_frame", "-r", "image:=/bench/none"])
    node = _node_class()()
    try:
        cdr_used = node.cdr_humans and node.cdr_markers
        node.timings = Timings(size=2 * (frames + 10))
        node.pipeline.runner = PeakedRunner()
        node.detector = FixedBoxes(people)
        node.create_subscription(HumanArray, "humans/keypoints", lambda m: None, 10)
        if visualise:  # RViz-like readers: the node then builds markers and the annotated image
            node.create_subscription(MarkerArray, "humans/markers", lambda m: None, 10)
            node.create_subscription(Image, "humans/image_annotated", lambda m: None, 1)
        rgb = (np.random.default_rng(1).random((480, 640, 3)) * 255).astype(np.uint8)
        fields = rgb_to_fields(rgb, "bgr8")
        data = fields.pop("data")
        msg = Image(**fields)
        msg.data = array.array("B", data)
        for _ in range(frames + 10):
            for use_cdr in (False, cdr_used):  # even entries: message objects, odd: CDR bytes
                node.cdr_humans = node.cdr_markers = use_cdr
                node.process(msg, time.perf_counter())
        wall, cpu = (np.array(values)[20:] * 1e3 for values in (node.timings.overhead, node.timings.overhead_cpu))
        return {"objects": float(np.median(wall[0::2])), "cdr": float(np.median(wall[1::2])),
                "cdr_cpu": float(np.median(cpu[1::2])), "cdr_used": cdr_used}
    finally:
        node.stop()
        node.destroy_node()
        rclpy.shutdown()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60, help="timed frames per configuration (default 60)")
    args = parser.parse_args(argv)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory(prefix="probpose-bench-node-") as tmp:
        model = _tiny_onnx(Path(tmp))
        print(f"pose node overhead per 640x480 frame (median of {args.frames}; network and detector excluded; "
              f"target <= {TARGET_MS:g} ms)")
        print(f"  {'':<12}{'outputs':<27}{'objects':>10}{'CDR':>10}{'CDR CPU':>10}   CDR wall / target")
        for people in (1, 5):
            for visualise in (False, True):
                m = measure(model, people, visualise, args.frames)
                what = "markers + annotated image" if visualise else "HumanArray only"
                mark = ("ok" if m["cdr"] <= TARGET_MS else "over") + ("" if m["cdr_used"] else
                                                                       ", self-check failed: objects")
                print(f"  {people} person(s), {what:<27}{m['objects']:7.2f} ms{m['cdr']:7.2f} ms"
                      f"{m['cdr_cpu']:7.2f} ms   {m['cdr'] / TARGET_MS:5.2f} ({mark})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
