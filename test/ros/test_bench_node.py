"""The node-overhead benchmark (`make bench`) runs the real node end to end, also with depth on
(no timing asserted; it fails itself when a frame was not paired with its depth image)."""
import subprocess
import sys


def test_bench_node_reports_every_configuration(ros_env):
    out = subprocess.run([sys.executable, "-m", "probpose_ros.bench_node", "--frames", "2"], env=ros_env,
                         capture_output=True, text=True, timeout=240)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if "person(s)" in line]
    assert len(rows) == 9 and all(" ms " in row for row in rows)  # 6 overhead rows, 3 with depth on
    assert [row.split()[0] for row in rows] == ["1", "1", "3", "3", "5", "5", "1", "3", "5"]  # people found
    assert "with depth on" in out.stdout
