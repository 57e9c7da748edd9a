"""Rewrite the build machine's Python paths hard-coded in the ROS 2 wheels' CMake exports.

The PyPI ROS 2 Kilted wheels export ``*.cmake`` files under ``$VENV/share`` that name
``/opt/python/cp311-cp311/include/python3.11`` and that Python's numpy include directory.
CMake rejects imported targets whose include paths do not exist, so ``colcon build`` of a
message package fails until they point at this interpreter's include dir and
``numpy.get_include()``. Idempotent: prints how many files it changed.

Usage: python tools/fix_ros_cmake.py [PREFIX]   (PREFIX defaults to sys.prefix, the venv)
"""
import pathlib
import sys
import sysconfig

import numpy

_BUILD_INCLUDE = "/opt/python/cp311-cp311/include/python3.11"
_BUILD_NUMPY = "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include"


def fix(prefix: pathlib.Path) -> int:
    """Rewrite every ``prefix/share/**/*.cmake`` naming the wheel builder's paths; return the count."""
    replacements = ((_BUILD_NUMPY, numpy.get_include()), (_BUILD_INCLUDE, sysconfig.get_paths()["include"]))
    changed = 0
    for path in (prefix / "share").rglob("*.cmake"):
        text = path.read_text()
        new = text
        for old, real in replacements:
            new = new.replace(old, real)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else sys.prefix)
    print(f"fix_ros_cmake: rewrote {fix(root)} file(s) under {root / 'share'}")
