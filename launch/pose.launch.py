"""ros2 launch probpose_ros pose.launch.py [image_topic:=/camera/image_raw] [model:=/path/model.onnx]
[params_file:=...] [use_rviz:=true] [namespace:=...] [autostart:=true|false]

A thin reader of config/params.yaml: the node ``probpose`` (executable ``pose_node``) gets the
params file, the model path when one is given (it overrides the file's ``model``) and the
remapping ``image:=<image_topic>``; ``autostart`` (default true) configures and activates the
lifecycle node at start-up (false: it waits for a lifecycle manager or
``ros2 lifecycle set /probpose configure``). RViz, optional, opens config/pose.rviz. No argument is
needed: an empty model means the shipped pose model (models/probpose_student.onnx) and the
default detector is the shipped NanoDet.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node


def pose_node(context):
    """The pose node with the launch arguments resolved (the model overrides the params file)."""
    parameters = [LaunchConfiguration("params_file").perform(context)]
    model = LaunchConfiguration("model").perform(context)
    if model:
        parameters.append({"model": model})
    parameters.append({"autostart": LaunchConfiguration("autostart").perform(context).lower() == "true"})
    return [Node(package="probpose_ros", executable="pose_node", name="probpose",
                 namespace=LaunchConfiguration("namespace"), output="screen", emulate_tty=True,
                 parameters=parameters, remappings=[("image", LaunchConfiguration("image_topic"))])]


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
        DeclareLaunchArgument("use_rviz", default_value="false", description="Also start RViz with config/pose.rviz"),
        DeclareLaunchArgument("autostart", default_value="true",
                              description="Configure and activate the lifecycle node at start-up (false: wait "
                                          "for the lifecycle services)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node and its topics"),
        OpaqueFunction(function=pose_node),
        Node(package="rviz2", executable="rviz2", name="rviz2", output="screen",
             arguments=["-d", os.path.join(share, "config", "pose.rviz")],
             condition=IfCondition(LaunchConfiguration("use_rviz"))),
    ])
