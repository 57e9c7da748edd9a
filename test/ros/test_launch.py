"""launch/pose.launch.py and config/params.yaml.

``launch`` / ``launch_ros`` do not exist on these machines (see ROS2_HERE.md), so the installed
node executable is started with exactly the arguments launch_ros generates for the launch
file's Node action; the real launch file runs in a test skipped unless ``launch_ros`` imports.
"""
import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ros_harness import Probe, child_env, fresh_domain, installed_executable, output, start, start_node, stop

from probpose_ros.pose_node import MACHINE_DEFAULTS, NODE_NAME, PARAMETERS, parameter_defaults

ROOT = Path(__file__).resolve().parents[2]
LAUNCH_FILE = ROOT / "launch" / "pose.launch.py"
LAUNCH_ARGUMENTS = {"image_topic", "params_file", "model", "use_rviz", "namespace", "autostart"}


def _share_dir() -> Path:
    from ament_index_python.packages import get_package_share_directory

    return Path(get_package_share_directory("probpose_ros"))


def test_params_yaml_defaults_equal_the_declared_ones():
    params = yaml.safe_load((ROOT / "config" / "params.yaml").read_text())["/**"]["ros__parameters"]
    # a default that depends on the machine (rep155: whether hri_msgs imports) stays out of the file
    assert params == {k: v for k, v in parameter_defaults().items() if k not in MACHINE_DEFAULTS}
    for p in PARAMETERS:  # same ROS types too (a 0 where 0.0 is declared would be refused)
        assert type(params.get(p.name, p.default)) is type(p.default), p.name


def test_launch_file_declares_the_documented_arguments():
    tree = ast.parse(LAUNCH_FILE.read_text())
    declared = {call.args[0].value for call in ast.walk(tree) if isinstance(call, ast.Call)
                and getattr(call.func, "id", None) == "DeclareLaunchArgument"}
    assert declared == LAUNCH_ARGUMENTS
    assert '"pose_node"' in LAUNCH_FILE.read_text() and f'name="{NODE_NAME}"' in LAUNCH_FILE.read_text()


def test_installed_files():
    share = _share_dir()
    assert (share / "launch" / "pose.launch.py").is_file()
    assert (share / "config" / "pose.rviz").is_file()
    assert yaml.safe_load((share / "config" / "params.yaml").read_text()) == \
        yaml.safe_load((ROOT / "config" / "params.yaml").read_text())
    assert installed_executable("pose_node") and installed_executable("camera_replay")


def test_installed_node_with_the_arguments_launch_ros_generates(tiny_model, tmp_path):
    """launch_ros runs ``<exe> --ros-args -r __node:=probpose -r __ns:=/robot1 --params-file <share>/config/
    params.yaml --params-file <its temp file with {model: ..., autostart: true}> -r image:=<image_topic>``."""
    from rcl_interfaces.srv import DescribeParameters, GetParameters

    exe = installed_executable("pose_node")
    assert exe is not None, "pose_node is not installed: run `make ros`"
    overrides = tmp_path / "launch_params.yaml"
    overrides.write_text(yaml.safe_dump({"/**": {"ros__parameters": {"model": str(tiny_model), "autostart": True}}}))
    domain = fresh_domain()
    probe = Probe(domain)
    describe = probe.node.create_client(DescribeParameters, "/robot1/probpose/describe_parameters")
    get = probe.node.create_client(GetParameters, "/robot1/probpose/get_parameters")
    node = start_node(domain, tmp_path, "-r", "__node:=probpose", "-r", "__ns:=/robot1",
                      "--params-file", _share_dir() / "config" / "params.yaml", "--params-file", overrides,
                      "-r", "image:=/camera/image_raw", executable=exe)
    try:
        assert probe.wait_for(lambda: describe.service_is_ready() and get.service_is_ready(), proc=node), output(node)
        names = [p.name for p in PARAMETERS]
        described = _call(probe, describe, DescribeParameters.Request(names=names)).descriptors
        assert [d.description for d in described] == [p.description for p in PARAMETERS]
        assert all(d.read_only for d in described)
        values = _call(probe, get, GetParameters.Request(names=["model", "detector", "image_topic"])).values
        assert [values[0].string_value, values[1].string_value, values[2].string_value] == \
            [str(tiny_model), "nanodet", "image"]
        assert probe.wait_for(lambda: "/robot1/humans/keypoints" in dict(probe.node.get_topic_names_and_types()))
        topics = dict(probe.node.get_topic_names_and_types())
        assert topics["/robot1/humans/keypoints"] == ["probpose_msgs/msg/HumanArray"]
        assert "/robot1/humans/markers" in topics and "/robot1/humans/image_annotated" in topics
        # the endpoint can be discovered before its node's name (then "_NODE_NAME_UNKNOWN_"): wait for both
        def subscribers():
            return [(s.node_name, s.node_namespace) for s in probe.node.get_subscriptions_info_by_topic("/camera/image_raw")]

        assert probe.wait_for(lambda: subscribers() == [("probpose", "/robot1")]), subscribers()
        subs = probe.node.get_subscriptions_info_by_topic("/camera/image_raw")
        assert subs[0].qos_profile.reliability.name == "RELIABLE"  # image_qos default (depth is not shared by discovery)
    finally:
        probe.close()
        code = stop(node)
    assert code == 0, output(node)


def _call(probe, client, request):
    future = client.call_async(request)
    assert probe.wait_for(future.done), "service call timed out"
    return future.result()


def test_real_launch_file(tiny_model, tmp_path):
    """``ros2 launch probpose_ros pose.launch.py model:=... namespace:=...`` for real (only where
    launch_ros and the ros2 CLI exist, i.e. on a real ROS 2 machine)."""
    pytest.importorskip("launch_ros", reason="launch_ros is not installed here (it is on a real ROS 2 machine)")
    ros2 = shutil.which("ros2")
    if ros2 is None:
        pytest.skip("the ros2 command line is not installed")
    import cv2
    import numpy as np

    from probpose_msgs.msg import HumanArray

    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((96, 128, 3), 40 * i, np.uint8))
    domain = fresh_domain()
    probe = Probe(domain)
    probe.subscribe(HumanArray, "/lt/humans/keypoints")
    probe.wait_for(lambda: True)
    launch = start([ros2, "launch", "probpose_ros", "pose.launch.py", f"model:={tiny_model}", "namespace:=lt",
                    "image_topic:=/camera/image_raw"], domain, tmp_path / "launch.log")
    try:
        replay = subprocess.run([sys.executable, "-m", "probpose_ros.camera_replay", tmp_path, "--loop",
                                 "--max-frames", "100", "--rate", "10", "--wait-subscribers", "1"],
                                env=child_env(domain), capture_output=True, text=True, timeout=120)
        assert replay.returncode == 0, replay.stderr
        assert probe.wait_for(lambda: probe.messages("/lt/humans/keypoints"), proc=launch), output(launch)
        assert probe.messages("/lt/humans/keypoints")[0].image_width == 128
    finally:
        probe.close()
        code = stop(launch)
    assert code == 0, output(launch)
