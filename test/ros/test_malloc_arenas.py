"""The pose node bounds its glibc malloc arenas itself (issue 19 item 8): every lifecycle
activate starts a worker thread, and an arena a thread filled with frame buffers keeps its
memory after the thread ends, so unbounded arenas ratchet RSS over round trips."""
import ctypes
import subprocess
import sys

import pytest

if not hasattr(ctypes.CDLL(None), "malloc_stats"):
    pytest.skip("not glibc: no malloc arenas to bound", allow_module_level=True)

#: a process that imports the node (its imports start threads of their own), maybe bounds its
#: arenas, prints glibc's malloc_stats (one "Arena N:" line per arena) to stderr, has 8 threads
#: allocate at once (as worker threads of lifecycle round trips would) and prints them again
SCRIPT = """
import ctypes, sys, threading
from probpose_ros.pose_node import bound_malloc_arenas
print(bound_malloc_arenas() if sys.argv[1] == "bound" else "skipped")
ctypes.CDLL(None).malloc_stats()
print("=== threads", file=sys.stderr, flush=True)
barrier = threading.Barrier(9)
def work():
    kept = [bytearray(4096) for _ in range(50)]
    barrier.wait()
    barrier.wait()
threads = [threading.Thread(target=work) for _ in range(8)]
for t in threads:
    t.start()
barrier.wait()
ctypes.CDLL(None).malloc_stats()
barrier.wait()
for t in threads:
    t.join()
"""


def _arenas(ros_env, mode: str, **env) -> tuple[str, int, int]:
    """What bound_malloc_arenas said, and the arena count before and after the 8 threads."""
    run = subprocess.run([sys.executable, "-c", SCRIPT, mode], env=dict(ros_env, **env),
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    before, after = run.stderr.split("=== threads")
    count = lambda text: sum(line.startswith("Arena ") for line in text.splitlines())  # noqa: E731
    return run.stdout.strip(), count(before), count(after)


def test_node_process_bounds_its_arenas(ros_env):
    ros_env = {k: v for k, v in ros_env.items() if k != "MALLOC_ARENA_MAX"}
    _, before, after = _arenas(ros_env, "free")
    assert after >= before + 4, "without a bound, allocating threads get arenas of their own"
    said, before, after = _arenas(ros_env, "bound")
    assert said == "True" and after <= max(before, 2)


def test_users_malloc_arena_max_wins(ros_env):
    said, before, after = _arenas(ros_env, "bound", MALLOC_ARENA_MAX="5")
    assert said == "False" and after == max(before, 5)
