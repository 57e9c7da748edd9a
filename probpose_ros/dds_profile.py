"""The Fast DDS profiles shipped in config/ and the environment that selects them.

- ``fastdds_node.xml``: the pose node's own process: readers allocate each sample on arrival and
  free it when taken (``DYNAMIC``), so the node does not keep buffers of the largest frame it
  ever received; writers as rmw_fastrtps sets them. :func:`node_env` is what ``pose_node.main``
  adds to its environment before rclpy starts, unless the user set a profile of their own.
- ``fastdds_shm.xml``: large best-effort images on one host (32 MB shared-memory segments), for
  the camera driver and the node (the launch file sets it with ``image_qos:=best_effort``); it
  carries the same reader / writer sections.
"""
import os
from pathlib import Path

NODE_PROFILE = "fastdds_node.xml"
SHM_PROFILE = "fastdds_shm.xml"
#: where Fast DDS 3 (Kilted) and 2 (Humble; deprecated in Kilted, which warns when it is set)
#: look for a profile file: either one set by the user means a profile of their own
PROFILE_VARS = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")
PROFILE_VAR = PROFILE_VARS[0]
#: rmw_fastrtps reads the history memory policy and the publish mode from XML only with this set to 1
QOS_FROM_XML = "RMW_FASTRTPS_USE_QOS_FROM_XML"


def config_path(name: str) -> Path:
    """config/``name``: the installed share copy when the package is installed, else the source tree's."""
    try:
        from ament_index_python.packages import get_package_share_directory

        path = Path(get_package_share_directory("probpose_ros")) / "config" / name
        if path.is_file():
            return path
    except Exception:  # noqa: BLE001  (not installed / no ament index: the source tree)
        pass
    return Path(__file__).resolve().parents[1] / "config" / name


def profile_env(name: str) -> dict:
    """The variables that make a process use config/``name`` with its reader / writer policies."""
    return {PROFILE_VAR: str(config_path(name)), QOS_FROM_XML: "1"}


def node_env(environ=None) -> dict:
    """What the pose node adds to its environment: :data:`NODE_PROFILE` and ``QOS_FROM_XML``
    when ``environ`` (default ``os.environ``) names no Fast DDS profile; nothing when it does
    (the user's profile decides, read as rmw_fastrtps would); an ``RMW_FASTRTPS_USE_QOS_FROM_XML``
    already there is kept."""
    environ = os.environ if environ is None else environ
    if any(var in environ for var in PROFILE_VARS):
        return {}
    return {var: value for var, value in profile_env(NODE_PROFILE).items() if var not in environ}
