"""ament_python package `probpose_ros`, also installable with `pip install -e .`.

It ships two Python packages: `probpose_core` (the ROS-free library) and `probpose_ros`
(the ROS 2 adapter), plus the `probpose` command.
"""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "probpose_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    packages=find_packages(include=["probpose_core", "probpose_core.*", "probpose_ros", "probpose_ros.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob("config/*.xml")),
        (f"share/{PACKAGE}/models", glob("models/*")),
        (f"share/{PACKAGE}/demo", glob("demo/*.mp4") + ["demo/NOTICE"]),
    ],
    install_requires=["numpy", "opencv-python-headless", "matplotlib", "tqdm", "PyYAML"],
    zip_safe=True,
    maintainer="probpose_ros developers",
    maintainer_email="dev@probpose-ros.invalid",
    description="ProbPose human pose estimation for ROS 2",
    license="Apache-2.0",
    entry_points={"console_scripts": [
        "probpose = probpose_core.cli:main",
        "pose_node = probpose_ros.pose_node:main",
        "camera_replay = probpose_ros.camera_replay:main",
    ]},
)
