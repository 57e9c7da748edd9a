"""Files shipped with the package (``models/``: weights, detector; ``demo/``: the demo clip),
found without any download and checked against ``models/SHA256SUMS`` when loaded.

Lookup order for the folder: ``$PROBPOSE_MODELS``; ``models/`` next to ``probpose_core/`` (a
source checkout, ``pip install -e .`` or ``colcon build --symlink-install``); the installed
``share/probpose_ros/models`` of the Python prefix (``pip install .`` / ``colcon build``).
A file whose SHA-256 differs from the one listed (corrupt, truncated, replaced) raises
InputError naming the file, before anything reads it.
"""
import hashlib
import os
import sys
from functools import lru_cache
from pathlib import Path

from probpose_core.errors import InputError

SUMS = "SHA256SUMS"


def models_dir() -> Path:
    """The folder of the shipped files (see the module docstring for the lookup order)."""
    candidates = [Path(os.environ["PROBPOSE_MODELS"])] if os.environ.get("PROBPOSE_MODELS") else []
    candidates += [Path(__file__).resolve().parents[1] / "models",
                   Path(sys.prefix) / "share" / "probpose_ros" / "models"]
    for folder in candidates:
        if (folder / SUMS).is_file():
            return folder
    raise InputError("the shipped models folder was not found (looked in: "
                     + ", ".join(str(c) for c in candidates) + "); set PROBPOSE_MODELS to it")


def read_sums(folder: Path) -> dict:
    """``SHA256SUMS`` (``<hex>  <name>`` lines, as sha256sum writes) -> {name: hex}."""
    sums = {}
    for line in (folder / SUMS).read_text().splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*").strip()] = digest.lower()
    return sums


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@lru_cache(maxsize=None)
def _verified(path: Path, size: int, mtime_ns: int, expected: str) -> None:
    got = sha256(path)
    if got != expected:
        raise InputError(f"shipped file {path} is corrupt or was replaced: SHA-256 {got[:16]}... does not "
                         f"match {SUMS} ({expected[:16]}...); restore it (git checkout -- {path.name}) or "
                         f"rebuild it (tools/)")


def shipped_file(name: str) -> Path:
    """The shipped file ``name`` (e.g. ``"nanodet.onnx"``), verified against SHA256SUMS."""
    folder = models_dir()
    path = folder / name
    expected = read_sums(folder).get(name)
    if expected is None:
        raise InputError(f"{name} is not listed in {folder / SUMS}")
    if not path.is_file():
        raise InputError(f"shipped file {path} is missing (git checkout -- {path}, or rebuild it with tools/)")
    stat = path.stat()
    _verified(path, stat.st_size, stat.st_mtime_ns, expected)
    return path


#: the shipped pose model (ONNX) and its export sidecar (same stem, .json)
POSE_MODEL = "probpose_student.onnx"


def default_pose_model() -> Path:
    """The shipped pose model's ONNX (its sidecar ``.json`` checked too): what an empty
    ``model`` parameter / ``--model`` means."""
    sidecar = Path(POSE_MODEL).with_suffix(".json").name
    shipped_file(sidecar)
    return shipped_file(POSE_MODEL)
