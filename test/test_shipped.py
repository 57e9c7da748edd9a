"""Shipped files: found without ../shared, checked against models/SHA256SUMS on load."""
import shutil

import pytest

from probpose_core import shipped
from probpose_core.errors import InputError


def test_every_listed_file_matches_its_sum():
    folder = shipped.models_dir()
    sums = shipped.read_sums(folder)
    assert "nanodet.onnx" in sums
    for name, digest in sums.items():
        assert shipped.sha256(folder / name) == digest, name
        assert shipped.shipped_file(name) == folder / name


def _copy(tmp_path, monkeypatch):
    folder = tmp_path / "models"
    shutil.copytree(shipped.models_dir(), folder)
    monkeypatch.setenv("PROBPOSE_MODELS", str(folder))
    return folder


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete"])
def test_damaged_file_is_one_clear_error_naming_it(tmp_path, monkeypatch, damage):
    folder = _copy(tmp_path, monkeypatch)
    path = folder / "nanodet.onnx"
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        path.write_bytes(data[:1000] + bytes([data[1000] ^ 1]) + data[1001:])
    else:
        path.unlink()
    with pytest.raises(InputError, match="nanodet.onnx"):
        shipped.shipped_file("nanodet.onnx")
    from probpose_core.detection import make_detector
    with pytest.raises(InputError, match="nanodet.onnx"):
        make_detector("nanodet")


def test_unlisted_and_missing_folder(tmp_path, monkeypatch):
    _copy(tmp_path, monkeypatch)
    with pytest.raises(InputError, match="not listed"):
        shipped.shipped_file("other.onnx")
    monkeypatch.setenv("PROBPOSE_MODELS", str(tmp_path / "nowhere"))
    monkeypatch.setattr(shipped, "__file__", str(tmp_path / "a" / "pkg" / "shipped.py"))
    monkeypatch.setattr(shipped.sys, "prefix", str(tmp_path / "prefix"))
    with pytest.raises(InputError, match="PROBPOSE_MODELS"):
        shipped.models_dir()
