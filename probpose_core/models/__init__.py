"""Pose models: ViT / small-CNN backbones, the ProbMap head, checkpoints (see pose_model.py)."""
from .pose_model import (NORMALIZE_MEAN, NORMALIZE_STD, OUTPUT_NAMES, PoseModel, PoseModelConfig, build_model,
                         cnn_config, gmacs, num_params, vit_config)
from .probmap_head import decode_double

__all__ = ["NORMALIZE_MEAN", "NORMALIZE_STD", "OUTPUT_NAMES", "PoseModel", "PoseModelConfig", "build_model",
           "cnn_config", "decode_double", "gmacs", "num_params", "vit_config"]
