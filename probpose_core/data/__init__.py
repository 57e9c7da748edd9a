"""COCO data: files (coco), instances and augmentation for top-down training.

The exports below are loaded lazily (``codec`` -> ``evaluation`` -> ``data.coco`` would be
circular, and ``TopDownDataset`` needs torch).
"""
import importlib

_EXPORTS = {"Instance": "instances", "load_instances": "instances", "AugmentConfig": "transforms",
            "TopDownDataset": "dataset"}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
