"""The `slow` marker: registered, on the heavy trainer tests, and never deselected by `make test` (CI)."""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SLOW = {"test_overfit_32_crops_slow", "test_ddp_gradients_equal_single_process",
        "test_torchrun_two_processes_train_validate_save", "test_cli_ctrl_c_saves_and_resumes"}


def test_slow_marker_is_registered_and_marks_the_heavy_trainer_tests():
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--strict-markers", "-m", "slow",
                           "-p", "no:cacheprovider", "test/test_train.py"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    collected = {line.split("::")[-1] for line in done.stdout.splitlines() if "::" in line}
    assert collected == SLOW


def test_make_test_selects_every_marker():
    """CI runs `make test`: its pytest command deselects nothing (no -m / -k / --deselect)."""
    makefile = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.M).group(1)
    arguments = [line.split("pytest", 1)[1] for line in recipe.splitlines() if "pytest" in line]
    assert arguments, recipe
    assert not any(re.search(r"\s(-m|-k|--deselect|--ignore)\b", args) for args in arguments), arguments
