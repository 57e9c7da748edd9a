"""Pose models: ViT / CNN / MobileNetV2-FPN backbones, the ProbMap head, checkpoints (see pose_model.py)."""
from .pose_model import (NORMALIZE_MEAN, NORMALIZE_STD, OUTPUT_NAMES, PoseModel, PoseModelConfig, build_model,
                         cnn_config, gmacs, mobilenet_fpn_config, num_params, vit_config)

__all__ = ["NORMALIZE_MEAN", "NORMALIZE_STD", "OUTPUT_NAMES", "PoseModel", "PoseModelConfig", "build_model",
           "cnn_config", "gmacs", "mobilenet_fpn_config", "num_params", "vit_config"]
