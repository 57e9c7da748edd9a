"""The pose node and an .onnx without its sidecar (issue 17 c): configure fails with the reason
naming the missing file, unless the allow_uncalibrated parameter is true (then it runs with the
default presence threshold, warned)."""
import shutil

import pytest
from ros_harness import Spun

from probpose_core.spec import DEFAULT_PRESENCE_THRESHOLD


def _configure(domain, **params):
    """A PoseNode in this process configured with ``params``: (started?, its failure, its threshold)."""
    from rclpy.parameter import Parameter

    from probpose_ros.pose_node import PoseNode

    spun = Spun(domain)
    node = PoseNode(context=spun.context, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    started = False
    try:
        started = node.start()
        return started, node.failure, getattr(node.pipeline, "presence_threshold", None)
    finally:
        if started:
            node.stop()
        node.destroy_node()
        spun.close()


def test_node_refuses_an_onnx_without_its_sidecar_unless_allowed(domain, tiny_model, tmp_path):
    bare = tmp_path / "bare.onnx"
    shutil.copyfile(tiny_model, bare)  # the model, not its .json
    started, failure, _ = _configure(domain, model=str(bare), detector="full_frame")
    assert not started and str(tmp_path / "bare.json") in failure and "allow" in failure
    with pytest.warns(UserWarning, match="UNCALIBRATED"):
        started, failure, threshold = _configure(domain, model=str(bare), detector="full_frame",
                                                 allow_uncalibrated=True)
    assert started, failure
    assert threshold == DEFAULT_PRESENCE_THRESHOLD
