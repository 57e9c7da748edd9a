"""One node parameter as declared from a table: name, default, description (the pose node's
:data:`~probpose_ros.pose_node.PARAMETERS` and the depth side's
:data:`~probpose_ros.depth_outputs.PARAMETERS`)."""
from typing import NamedTuple


class Param(NamedTuple):
    name: str
    default: object
    description: str
