"""A CI-sized run of the soak benchmark (probpose_ros/soak.py, `make soak`): the real pose node
(raw) and a second one (compressed: true) as processes over DDS, 200 frames of demo/people.mp4 at
twice the node's throughput, 5 % bad frames of every kind plus one of each in the warm-up, two
lifecycle round trips. Checked here: both nodes alive, answering and exiting 0, the round trips
succeed, no stamp errors, every bad kind counted in /diagnostics (1x1 comes back as a 1x1
HumanArray or is dropped for a newer frame). RSS growth and latency are figures of the full
soak (README), not assertions here.
"""
from probpose_ros import soak


def test_soak_ci_sized(tmp_path):
    r = soak.run(frames=200, warmup=10, log_dir=tmp_path, verbose=False)
    print(soak.report(r))
    goals = r["goals"]
    assert goals["nodes alive, answering, exit 0"], (r["alive_at_end"], r["exit_codes"], r["log_dir"])
    assert goals["lifecycle round trips succeeded"], r.get("round_trips_ok")
    assert goals["no stamp errors"], r["stamp_errors"]
    assert goals["every bad kind counted"], r["bad_frames"]
    assert r["humanarrays"]["raw"] > 0 and r["humanarrays"]["compressed"] > 0
    threads = [per["raw"]["threads"] for per in r["status"].values()]
    assert len(set(threads)) == 1, r["status"]  # no thread left behind by the round trips
