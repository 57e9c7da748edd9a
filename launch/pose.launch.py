"""ros2 launch probpose_ros pose.launch.py [image_topic:=/camera/image_raw] [model:=/path/model.onnx]
[params_file:=...] [use_rviz:=true] [namespace:=...] [autostart:=true|false] [image_qos:=reliable|best_effort]

A thin reader of config/params.yaml: the node ``probpose`` (executable ``pose_node``) gets the
params file, the model path when one is given (it overrides the file's ``model``), ``image_qos``
when given, and the remapping ``image:=<image_topic>``; ``autostart`` (default true) configures
and activates the lifecycle node at start-up (false: it waits for a lifecycle manager or
``ros2 lifecycle set /probpose configure``). No argument is needed: an empty model means the
shipped pose model (models/probpose_student.onnx) and the default detector is the shipped PicoDet-S-320 pedestrian.

- The node failing (a configure error with autostart, e.g. ``model:=/missing.onnx``: the node
  logs the reason and exits 2) stops the launch with a non-zero exit: ``ros2 launch`` returns 1
  (launch only returns 0 or 1; the node's own code is in the log line ``pose_node exited with
  code 2``). A node stopped by a signal (Ctrl-C) ends the launch normally, exit 0.
- RViz (``use_rviz:=true``, config/pose.rviz) is optional: where rviz2 is not installed the
  launch logs that and runs the node alone (no failed launch, no orphaned node).
- Plain logs: no emulated TTY, so no colour codes in recorded output.
- ``image_qos:=best_effort`` also sets the shipped Fast DDS profile (config/fastdds_shm.xml,
  32 MB shared-memory segments) for the node and RViz, unless FASTDDS_DEFAULT_PROFILES_FILE or
  FASTRTPS_DEFAULT_PROFILES_FILE is already set (README "Image QoS": the camera driver needs it
  too), with RMW_FASTRTPS_USE_QOS_FROM_XML=1 for the node so its readers free each sample (the
  profile's reader section). Otherwise the node picks config/fastdds_node.xml itself
  (probpose_ros/dds_profile.py).
"""
import os

from ament_index_python.packages import PackageNotFoundError, get_package_prefix, get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


class NodeFailed(RuntimeError):
    """Raised in the launch's event loop when the pose node exits with an error: launch then shuts
    everything down and ``ros2 launch`` returns 1 (a Shutdown event alone would return 0)."""


def _on_node_exit(event, context):
    if event.returncode is not None and event.returncode > 0:  # negative: stopped by a signal
        raise NodeFailed(f"pose_node exited with code {event.returncode} (the reason is in its log above): "
                         f"stopping the launch")


def _arg(context, name: str) -> str:
    return LaunchConfiguration(name).perform(context)


def _rviz_installed() -> bool:
    try:
        prefix = get_package_prefix("rviz2")
    except PackageNotFoundError:
        return False
    return os.access(os.path.join(prefix, "lib", "rviz2", "rviz2"), os.X_OK)


def launch_setup(context):
    """The pose node (and RViz) with the launch arguments resolved (the model overrides the params file)."""
    share = get_package_share_directory("probpose_ros")
    parameters = [_arg(context, "params_file")]
    overrides = {"autostart": _arg(context, "autostart").lower() == "true"}
    if _arg(context, "model"):
        overrides["model"] = _arg(context, "model")
    if _arg(context, "image_qos"):
        overrides["image_qos"] = _arg(context, "image_qos")
    parameters.append(overrides)
    env = {}
    if _arg(context, "image_qos") == "best_effort" and not any(v in os.environ for v in PROFILE_VARS):
        profile = os.path.join(share, "config", "fastdds_shm.xml")
        env.update(FASTDDS_DEFAULT_PROFILES_FILE=profile, RMW_FASTRTPS_USE_QOS_FROM_XML="1")
    node = Node(package="probpose_ros", executable="pose_node", name="probpose",
                namespace=_arg(context, "namespace"), output="screen", parameters=parameters,
                remappings=[("image", _arg(context, "image_topic"))], additional_env=env)
    actions = [node, RegisterEventHandler(OnProcessExit(target_action=node, on_exit=_on_node_exit))]
    if _arg(context, "use_rviz").lower() == "true":
        if _rviz_installed():
            actions.append(Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
                                arguments=["-d", os.path.join(share, "config", "pose.rviz")],
                                additional_env={k: v for k, v in env.items() if k in PROFILE_VARS}))
        else:
            actions.append(LogInfo(msg="use_rviz:=true but rviz2 is not installed (no package 'rviz2' on "
                                       "AMENT_PREFIX_PATH): running the pose node without RViz"))
    return actions


def generate_launch_description():
    share = get_package_share_directory("probpose_ros")
    return LaunchDescription([
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera topic (CompressedImage when the params say compressed: true)"),
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "params.yaml"),
                              description="Node parameters (YAML)"),
        DeclareLaunchArgument("model", default_value="",
                              description="Pose model (.pt or .onnx); empty = the params file's 'model' "
                                          "(itself empty = the shipped model)"),
        DeclareLaunchArgument("use_rviz", default_value="false",
                              description="Also start RViz with config/pose.rviz (skipped, with a message, "
                                          "where rviz2 is not installed)"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the lifecycle node at start-up (false: wait "
                                          "for the lifecycle services)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        DeclareLaunchArgument("image_qos", default_value="",
                              description="Image subscription reliability: reliable or best_effort (a camera on "
                                          "sensor-data QoS; also sets config/fastdds_shm.xml); empty = the "
                                          "params file's (reliable)"),
        OpaqueFunction(function=launch_setup),
    ])
