#!/usr/bin/env bash
# Build probpose_msgs (ament_cmake/rosidl), the fallback hri_msgs (see below) and probpose_ros
# (ament_python) with colcon into install/, using the ROS 2 Kilted wheels installed in the venv
# by `make ros`.
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
# hri_msgs (REP-155): our fallback subset in hri_msgs/ is built only when the environment has
# no hri_msgs of its own, i.e. no ament prefix outside this install/ registers one (a sourced
# /opt/ros/<distro> or workspace). Otherwise theirs is used, and a fallback left in install/ by
# an earlier build is removed (the install/ overlay would shadow theirs).
HRI_MSGS=hri_msgs
IFS=: read -ra prefixes <<< "${AMENT_PREFIX_PATH}"
for prefix in "${prefixes[@]}"; do
  case "$prefix" in "$PWD/install" | "$PWD/install/"*) continue ;; esac
  if [ -e "$prefix/share/ament_index/resource_index/packages/hri_msgs" ]; then
    echo "ros_build: hri_msgs found in $prefix; not building the fallback hri_msgs/"
    HRI_MSGS=
    rm -rf install/hri_msgs build/hri_msgs
    break
  fi
done
# RPATH: the generated libraries and Python extensions find each other without
# LD_LIBRARY_PATH (the wheels' bootstrapper only adds the venv's own library dirs).
colcon --log-base log build --base-paths probpose_msgs $HRI_MSGS . --build-base build --install-base install \
    --symlink-install --event-handlers console_direct- console_cohesion- \
    --cmake-args "-DPython3_EXECUTABLE=$VENV/bin/python" -DBUILD_TESTING=OFF \
                 '-DCMAKE_INSTALL_RPATH=$ORIGIN:$ORIGIN/../../..'
