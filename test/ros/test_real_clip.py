"""The shipped default path over DDS on real footage: camera_replay of demo/people.mp4 (two
people, centre-cropped to 4:3 and scaled to 640x480) -> pose_node with NO model or detector
parameter (the shipped NanoDet + the shipped ProbPose student) -> a subscriber.

Checks that people are found and that their keypoints are plausible: the present keypoints of
a person lie in (or next to) that person's box. Prints the end-to-end numbers (messages per
second at the subscriber, processing_latency, stamp -> receipt latency); they are measured
here, on a shared machine, and asserted on nothing but counts.
"""
import numpy as np
import pytest
from ros_harness import ROOT, output, replay_cmd, stamp_ns, start, start_node, stop

CLIP = ROOT / "demo" / "people.mp4"


def write_640x480(path, frames: int = 60):
    """The clip's first ``frames`` frames, centre-cropped to 4:3 and resized to 640x480 (MJPG AVI)."""
    import cv2

    cap = cv2.VideoCapture(str(CLIP))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (640, 480))
    for _ in range(frames):
        ok, bgr = cap.read()
        if not ok:
            break
        h, w = bgr.shape[:2]
        side = int(round(h * 4 / 3))
        x0 = (w - side) // 2
        writer.write(cv2.resize(bgr[:, x0:x0 + side], (640, 480), interpolation=cv2.INTER_AREA))
    writer.release()
    cap.release()
    return path


def keypoints_in_box(human, presence_threshold: float, margin: float = 0.15) -> tuple[int, int]:
    """(present keypoints inside the box widened by ``margin`` of its size per side, present keypoints)."""
    x, y, w, h = human.bbox
    lo = np.array([x - margin * w, y - margin * h])
    hi = np.array([x + (1 + margin) * w, y + (1 + margin) * h])
    pts = np.array([[k.x, k.y] for k in human.keypoints if k.presence >= presence_threshold]).reshape(-1, 2)
    inside = np.all((pts >= lo) & (pts <= hi), axis=1)
    return int(inside.sum()), len(pts)


def test_real_clip_default_model_and_detector(domain, probe, tmp_path):
    from probpose_core import shipped

    try:
        shipped.default_pose_model()
    except Exception as exc:  # noqa: BLE001  (the shipped model is what this test is about)
        pytest.fail(f"no shipped pose model: {exc}")
    from diagnostic_msgs.msg import DiagnosticArray

    from probpose_msgs.msg import HumanArray

    probe.subscribe(HumanArray, "/humans/keypoints")
    probe.subscribe(DiagnosticArray, "/diagnostics")
    video = write_640x480(tmp_path / "people_640x480.avi")
    node = start_node(domain, tmp_path, "-r", "image:=/camera/image_raw", "-p", "publish_annotated_image:=false",
                      "-p", "publish_markers:=false")
    try:
        assert probe.wait_for(lambda: probe.diagnostics(), proc=node), output(node)
        # the clip loops until 20 HumanArrays arrived (a count, not a time: the machine is shared)
        replay = start(replay_cmd(video, "--rate", "15", "--wait-subscribers", "1", "--stamp", "now", "--loop"),
                       domain, tmp_path / "replay.log")
        try:
            assert probe.wait_for(lambda: len(probe.messages("/humans/keypoints")) >= 20, timeout=120, proc=node), \
                output(node) + output(replay)
        finally:
            assert stop(replay) == 0, output(replay)
    finally:
        code = stop(node)
    assert code == 0, output(node)
    with probe.lock:
        received = list(probe.received["/humans/keypoints"])
    msgs = [m for m, _ in received]
    assert all((m.image_width, m.image_height) == (640, 480) for m in msgs)
    assert all(m.model_id.startswith("probpose_student.onnx:") for m in msgs), msgs[0].model_id
    people = [len(m.humans) for m in msgs]
    assert np.mean([n >= 1 for n in people]) >= 0.9, people  # someone is found in (almost) every frame
    assert np.median(people) == 2, people  # the clip shows two people
    inside = total = 0
    for m in msgs:
        for h in m.humans:
            a, b = keypoints_in_box(h, m.presence_threshold)
            inside, total = inside + a, total + b
    assert total >= 10 * len(msgs), (total, len(msgs))  # most keypoints of standing people are present
    assert inside >= 0.9 * total, (inside, total)
    # measured, not asserted: throughput and latency on this machine
    times = np.array([t for _, t in received])
    fps = (len(times) - 1) / max(times[-1] - times[0], 1e-9)
    latency = np.array([m.processing_latency for m in msgs]) * 1000
    print(f"\nreal clip 640x480, {np.mean(people):.2f} people/frame: {fps:.1f} HumanArray/s at the subscriber "
          f"(camera 15 Hz), processing_latency median {np.median(latency):.0f} ms (p95 "
          f"{np.percentile(latency, 95):.0f} ms), stamps {len({stamp_ns(m.header) for m in msgs})} distinct")
