"""Set-up shared by the ROS 2 tests (real rclpy, real DDS on localhost).

On import this makes the messages built by ``make ros`` importable even when
``install/setup.bash`` was not sourced (``make test`` sources it; a bare ``pytest`` does not):
``install/`` is put on ``sys.path``, ``PYTHONPATH``, ``LD_LIBRARY_PATH`` and
``AMENT_PREFIX_PATH`` (so subprocesses inherit it), and the message libraries are preloaded
when the loader was started without them. Every test process gets
``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` and a private ``ROS_DOMAIN_ID``
(``PROBPOSE_TEST_DOMAIN_ID`` overrides it).

If ``rclpy`` or ``probpose_msgs`` cannot be used, the tests of this folder are skipped with the
reason (run ``make ros``) -- except in CI (``CI=true``), where that is a collection error.

Fixtures: ``ros_domain_id``, ``ros_env`` (environment for subprocesses), ``rclpy_context``
(an initialised, private ``rclpy.Context``), ``ros_node`` (a node in that context spun by an
executor thread), and the DDS harness of the node tests: ``domain`` (a fresh ROS_DOMAIN_ID per
test), ``probe`` (a :class:`ros_harness.Probe` on it), ``tiny_model`` (a tiny exported ONNX).
The harness helpers live in ros_harness.py; like this file it imports without ROS (rclpy is
imported inside the fixtures and helpers that use it).
"""
import ctypes
import os
import pathlib
import sys
import sysconfig
import threading

import pytest
from ros_harness import Probe, fresh_domain

ROOT = pathlib.Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install"
_PY = f"python{sys.version_info.major}.{sys.version_info.minor}"
MSGS_LIB = INSTALL / "probpose_msgs" / "lib"
MSGS_SITE = MSGS_LIB / _PY / "site-packages"
HRI_LIB = INSTALL / "hri_msgs" / "lib"  # the REP-155 fallback, built where no hri_msgs is installed
HRI_SITE = HRI_LIB / _PY / "site-packages"

DOMAIN_ID = int(os.environ.get("PROBPOSE_TEST_DOMAIN_ID") or 1 + os.getpid() % 100)


def _prepend(var: str, *paths) -> None:
    old = [p for p in os.environ.get(var, "").split(os.pathsep) if p]
    new = [str(p) for p in paths if str(p) not in old]
    os.environ[var] = os.pathsep.join(new + old)


def _use_install_tree() -> None:
    """Make ``install/`` (from ``make ros``) usable in this process and its children."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_DOMAIN_ID"] = str(DOMAIN_ID)
    if not MSGS_SITE.is_dir():
        return  # a real ROS workspace sourced by the user, or not built: imports decide
    loaded_at_start = str(MSGS_LIB) in os.environ.get("LD_LIBRARY_PATH", "").split(os.pathsep)
    _prepend("AMENT_PREFIX_PATH", INSTALL / "probpose_ros", INSTALL / "probpose_msgs", sys.prefix)
    libs = [(MSGS_LIB, MSGS_SITE)]
    if HRI_SITE.is_dir():
        _prepend("AMENT_PREFIX_PATH", INSTALL / "hri_msgs")
        libs.append((HRI_LIB, HRI_SITE))
    for lib_dir, site in libs:
        _prepend("PYTHONPATH", site)
        _prepend("LD_LIBRARY_PATH", lib_dir)
        if str(site) not in sys.path:
            sys.path.insert(0, str(site))
        if not loaded_at_start:
            # The loader read LD_LIBRARY_PATH at start-up; rosidl dlopens type supports by bare name,
            # which finds a library already loaded under that soname (they carry $ORIGIN RPATHs).
            for lib in sorted(lib_dir.glob("lib*.so")):
                ctypes.CDLL(str(lib), mode=ctypes.RTLD_GLOBAL)


def _check_ros() -> str | None:
    """None if real rclpy and the built probpose_msgs work, else why not."""
    try:
        import rclpy  # noqa: F401
        from rclpy.serialization import deserialize_message, serialize_message
    except Exception as exc:  # ImportError, or a missing middleware library (OSError)
        return f"rclpy does not import ({exc}); run `make ros`"
    try:
        from probpose_msgs.msg import HumanArray
        msg = deserialize_message(serialize_message(HumanArray(model_id="probe")), HumanArray)
        assert msg.model_id == "probe"
    except Exception as exc:
        return f"probpose_msgs is not built or its type support does not load ({exc}); run `make ros`"
    return None


_use_install_tree()
ROS_UNAVAILABLE = _check_ros()
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


class _RosUnavailableModule(pytest.Module):
    """Stands in for a ROS test module when ROS cannot be used: skipped, or an error in CI."""

    def collect(self):
        if IN_CI:
            raise RuntimeError(f"ROS tests must run in CI: {ROS_UNAVAILABLE}")
        pytest.skip(f"ROS 2 unavailable: {ROS_UNAVAILABLE}", allow_module_level=True)


def pytest_pycollect_makemodule(module_path, parent):
    if ROS_UNAVAILABLE is not None:
        return _RosUnavailableModule.from_parent(parent, path=module_path)
    return None


def pytest_report_header(config):
    state = "ok" if ROS_UNAVAILABLE is None else ROS_UNAVAILABLE
    return f"ROS tests: ROS_DOMAIN_ID={DOMAIN_ID}, discovery LOCALHOST, {state}"


@pytest.fixture(scope="session")
def ros_domain_id() -> int:
    return DOMAIN_ID


@pytest.fixture
def ros_env() -> dict:
    """Environment for ROS subprocesses: this one's, with LOCALHOST discovery, the private domain
    and ``install/`` on the paths; unbuffered Python output."""
    env = dict(os.environ)
    env.update(ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", ROS_DOMAIN_ID=str(DOMAIN_ID), PYTHONUNBUFFERED="1")
    env["PATH"] = os.pathsep.join([sysconfig.get_path("scripts"), env.get("PATH", "")])
    return env


@pytest.fixture
def rclpy_context():
    """An initialised private ``rclpy.Context`` on the test domain; shut down afterwards."""
    import rclpy
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context, domain_id=DOMAIN_ID)
    yield context
    if context.ok():
        rclpy.shutdown(context=context)


@pytest.fixture
def ros_node(rclpy_context):
    """A node ``probpose_test`` in :func:`rclpy_context`, spun by an executor in a thread."""
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node

    node = Node("probpose_test", context=rclpy_context)
    executor = SingleThreadedExecutor(context=rclpy_context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown()
    node.destroy_node()
    thread.join(timeout=5)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> pathlib.Path:
    """A tiny randomly initialised CNN pose model exported to ONNX (structure and timing only)."""
    import torch

    from probpose_core.models.pose_model import build_model, cnn_config
    from probpose_core.runtime.export import export_onnx

    torch.manual_seed(0)
    config = cnn_config(embed_dim=32, head_channels=16, aux_channels=8)
    model = build_model(config).eval()
    with torch.no_grad():  # sharp, trained-like maps: an untrained model's maps cover the whole window
        model.head.final_layer.weight.mul_(300.0)  # (exact Sparsemax export), its regions and messages are huge
    return export_onnx(model, tmp_path_factory.mktemp("model") / "tiny.onnx")


@pytest.fixture
def domain() -> int:
    """A ROS_DOMAIN_ID of this test's own (children get it through ros_harness.child_env)."""
    return fresh_domain()


@pytest.fixture
def probe(domain):
    """The test's own DDS participant on ``domain`` (rclpy imported by Probe, not at import time)."""
    p = Probe(domain)
    yield p
    p.close()
