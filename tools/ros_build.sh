#!/usr/bin/env bash
# Build probpose_msgs (ament_cmake/rosidl) and probpose_ros (ament_python) with colcon into
# install/, using the ROS 2 Kilted wheels installed in the venv by `make ros`.
# Usage: tools/ros_build.sh [VENV]   (default .venv). Users with a real ROS 2 install run
# `colcon build` themselves after sourcing /opt/ros/<distro>/setup.bash.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=$(cd "${1:-.venv}" && pwd)
export PATH="$VENV/bin:$PATH"
export AMENT_PREFIX_PATH="$VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}"
export CMAKE_PREFIX_PATH="$VENV${CMAKE_PREFIX_PATH:+:$CMAKE_PREFIX_PATH}"
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
"$VENV/bin/python" tools/fix_ros_cmake.py "$VENV"
tools/ros_underlay.sh "$VENV"
# RPATH: the generated libraries and Python extensions find each other without
# LD_LIBRARY_PATH (the wheels' bootstrapper only adds the venv's own library dirs).
colcon --log-base log build --base-paths probpose_msgs . --build-base build --install-base install \
    --symlink-install --event-handlers console_direct- console_cohesion- \
    --cmake-args "-DPython3_EXECUTABLE=$VENV/bin/python" -DBUILD_TESTING=OFF \
                 '-DCMAKE_INSTALL_RPATH=$ORIGIN:$ORIGIN/../../..'
