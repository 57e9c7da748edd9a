"""Our single-file checkpoint format, and converters from the official MMPose / ViTPose files.

Format (one ``torch.save`` dict of tensors and plain Python types only, so
``torch.load(weights_only=True)`` reads it and no training code is needed)::

    {"format": "probpose_core.checkpoint", "format_version": 1,
     "state_dict": {key: tensor},           # PoseModel weights (MMPose-1.x ProbPose key names)
     "config": PoseModelConfig.to_dict(),
     "codec": {input_size, heatmap_size, sigmas, padding, area_factor, blur_sigma, refine_iters, decode_sharpness},
     "temperature": float,                  # calibration temperature of the maps (1.0 = none);
                                            # load_checkpoint multiplies the head temperature by it
     "presence_threshold": float,
     "keypoints": {"names", "sigmas", "flip_index"},
     "model_hash": str,                     # sha256 of the weights, see weights_hash
     "extra": {...}}                        # plain types: source, heatmap_only, notes

Converters (``probpose convert --from mmpose|vitpose IN.pth --out OUT.pt``):

- ``mmpose``: an MMPose-1.x ProbPose checkpoint (``{'meta', 'state_dict', ...}``, ``backbone.``
  / ``head.`` keys, which are already ours). ``data_preprocessor.*`` keys are ignored (the
  normalisation is ``NORMALIZE_MEAN/STD``), a ``module.`` prefix is stripped, missing BN
  ``num_batches_tracked`` counters are filled with 0.
- ``vitpose``: an original ViTPose (mmpose 0.x) checkpoint. Keys are renamed to the mmpretrain
  layout (``blocks.N.norm1`` -> ``layers.N.ln1``, ``mlp.fc1`` -> ``ffn.layers.0.0``, ``last_norm``
  -> ``ln1``, ``keypoint_head.`` -> ``head.`` ...); its ``pos_embed (1, 1 + T, C)`` becomes
  ``pos[:, 1:] + pos[:, :1]`` (ViTPose adds the class slot to every token at inference).
  ViTPose has no presence / visibility / OKS branches: they are created with their last
  1x1 conv set to zero, so they output exactly 0.5 for every keypoint, and the checkpoint is
  marked ``heatmap_only``. For such a model presence carries no information (every keypoint
  counts as present at thresholds <= 0.5): use the map confidence instead. Its maps are
  sparsemax of ViTPose's Gaussian-regression heatmaps over the head temperature, an
  approximation of a probability map, best recalibrated (``probpose calibrate``).

Loading official files: the mmengine ``meta`` holds numpy arrays, which
``torch.load(weights_only=True)`` refuses. We retry with numpy's array types allowed (still no
arbitrary code) and only then, for files whose ``meta`` holds other objects (raw training
checkpoints with optimiser and message-hub state), unpickle fully with a warning: full
unpickling can run code embedded in the file, so convert only files from a source you trust.
"""
import hashlib
import pickle
import re
import warnings
from pathlib import Path

import numpy as np
import torch

from .. import keypoints as kp
from ..codec import ProbMapCodec
from ..errors import InputError
from ..spec import DEFAULT_PRESENCE_THRESHOLD, codec_from_settings, codec_settings
from .pose_model import PoseModel, PoseModelConfig, build_model
from .probmap_head import aux_branch
from .vit import VIT_SIZES, patch_grid

FORMAT = "probpose_core.checkpoint"
FORMAT_VERSION = 1
SOURCES = ("mmpose", "vitpose")
_FIELDS = ("state_dict", "config", "codec", "temperature", "presence_threshold", "keypoints", "model_hash")
_MAX_LISTED = 8  # offending keys named in one error message
#: heads of the known ViT widths (not recoverable from the weights); others: width / 64
_HEADS = {dim: heads for dim, _, heads in VIT_SIZES.values()} | {1024: 16, 1280: 16}
_VITPOSE_RULES = (  # original ViTPose key -> MMPose-1.x / ours
    (r"^backbone\.patch_embed\.proj\.", "backbone.patch_embed.projection."),
    (r"^backbone\.blocks\.(\d+)\.norm1\.", r"backbone.layers.\1.ln1."),
    (r"^backbone\.blocks\.(\d+)\.norm2\.", r"backbone.layers.\1.ln2."),
    (r"^backbone\.blocks\.(\d+)\.attn\.", r"backbone.layers.\1.attn."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc1\.", r"backbone.layers.\1.ffn.layers.0.0."),
    (r"^backbone\.blocks\.(\d+)\.mlp\.fc2\.", r"backbone.layers.\1.ffn.layers.1."),
    (r"^backbone\.last_norm\.", "backbone.ln1."),
    (r"^keypoint_head\.", "head."),
)
_AUX_BRANCHES = ("probability_layers", "visibility_layers", "oks_layers", "error_layers")


# ---------------------------------------------------------------- our format

def weights_hash(state_dict: dict) -> str:
    """sha256 over the sorted keys, dtypes, shapes and bytes of the tensors."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key].detach().cpu().contiguous()
        h.update(f"{key}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _check_plain(obj, where: str) -> None:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return
    if isinstance(obj, (list, tuple)):
        for v in obj:
            _check_plain(v, where)
        return
    if isinstance(obj, dict) and all(isinstance(k, str) for k in obj):
        for v in obj.values():
            _check_plain(v, where)
        return
    raise ValueError(f"{where} must hold plain Python types (dict/list/str/number/bool/None), got {type(obj).__name__}")


def save_checkpoint(path, model: PoseModel, config: PoseModelConfig, *, codec: ProbMapCodec = ProbMapCodec(),
                    temperature: float = 1.0, presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD, extra=None) -> Path:
    """Write ``model``'s weights and settings to ``path`` (our format, see module docstring)."""
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    if config.num_keypoints != len(codec.sigmas):
        raise ValueError(f"model has {config.num_keypoints} keypoints but the codec {len(codec.sigmas)} sigmas")
    state_dict = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    names = list(kp.NAMES) if config.num_keypoints == kp.NUM_KEYPOINTS else [f"kpt_{i}" for i in range(config.num_keypoints)]
    flip = list(kp.FLIP_INDEX) if config.num_keypoints == kp.NUM_KEYPOINTS else list(range(config.num_keypoints))
    payload = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "state_dict": state_dict,
        "config": config.to_dict(), "codec": codec_settings(codec), "temperature": float(temperature),
        "presence_threshold": float(presence_threshold),
        "keypoints": {"names": names, "sigmas": [float(s) for s in codec.sigmas], "flip_index": flip},
        "model_hash": weights_hash(state_dict), "extra": extra,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def _names(keys, what: str) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - _MAX_LISTED} more)" if len(keys) > _MAX_LISTED else ""
    return f"{what} {', '.join(keys[:_MAX_LISTED])}{more}"


def load_weights(model: torch.nn.Module, state_dict: dict, where: str) -> None:
    """Strict load that reports every missing / unexpected / wrongly shaped key in ONE InputError.

    Missing BatchNorm ``num_batches_tracked`` counters are not an error (they keep 0).
    """
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [f"{k} {tuple(state_dict[k].shape)} vs model {tuple(v.shape)}" for k, v in expected.items()
             if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(_names(missing, "missing keys"))
    if unexpected:
        problems.append(_names(unexpected, "unexpected keys"))
    if wrong:
        problems.append(_names(wrong, "shape mismatch"))
    if problems:
        raise InputError(f"{where}: weights do not fit the model: " + "; ".join(problems))
    model.load_state_dict({k: state_dict[k] if k in state_dict else torch.zeros_like(v, device="cpu")
                           for k, v in expected.items()}, strict=True)


def _torch_load(path, **kw):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", **kw)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise
        raise InputError(f"cannot read checkpoint {path}: {_first_line(exc)}") from None
    except Exception as exc:  # truncated zip, garbage bytes, ...
        raise InputError(f"cannot read checkpoint {path} (corrupt or truncated?): {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def load_checkpoint(path) -> tuple[PoseModel, dict]:
    """Read our checkpoint: ``(model in eval mode, meta)``; bad files raise InputError.

    meta: ``config`` (PoseModelConfig), ``temperature``, ``presence_threshold``, ``keypoints``
    (names, sigmas, flip_index), ``codec`` (settings dict, see :func:`codec_from_settings`),
    ``model_hash``, ``format_version``, ``heatmap_only``, ``extra``.
    """
    try:
        data = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        raise InputError(f"{path} is not a probpose checkpoint (it holds Python objects); convert official "
                         "MMPose / ViTPose files with `probpose convert`") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"{path} is not a probpose checkpoint; convert official MMPose / ViTPose files with "
                         "`probpose convert --from mmpose|vitpose`")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(f"{path}: checkpoint format version {data['format_version']} is newer than this "
                         f"library ({FORMAT_VERSION})")
    absent = [k for k in _FIELDS if k not in data]
    if absent:
        raise InputError(f"{path}: checkpoint lacks {', '.join(absent)}")
    try:
        config = PoseModelConfig.from_dict(data["config"])
        model = empty_model(config)  # every tensor comes from the file
    except (TypeError, ValueError) as exc:
        raise InputError(f"{path}: bad model config: {exc}") from None
    state_dict = data["state_dict"]
    load_weights(model, state_dict, str(path))
    digest = weights_hash(state_dict)
    if digest != data["model_hash"]:
        raise InputError(f"{path}: weights do not match their recorded hash (file altered or corrupt)")
    if len(data["keypoints"]["names"]) != config.num_keypoints:
        raise InputError(f"{path}: keypoint table has {len(data['keypoints']['names'])} names, model "
                         f"{config.num_keypoints} keypoints")
    extra = data.get("extra") or {}
    # The calibration temperature multiplies the head's own (logits / (T_head * T_cal)), so every
    # runtime built from this model (torch, the ONNX export) gives calibrated maps.
    model.head.temperature = config.temperature * float(data["temperature"])
    meta = {"config": config, "temperature": float(data["temperature"]),
            "presence_threshold": float(data["presence_threshold"]), "keypoints": data["keypoints"],
            "codec": data["codec"], "model_hash": digest, "format_version": int(data["format_version"]),
            "heatmap_only": bool(extra.get("heatmap_only", False)), "extra": extra}
    return model.eval(), meta


# ---------------------------------------------------------------- official files

def _numpy_globals() -> list:
    """numpy's array-rebuilding globals, under their numpy 2 and numpy 1 names."""
    try:
        from numpy._core import multiarray
    except ImportError:  # numpy 1
        from numpy.core import multiarray
    dtypes = {type(np.dtype(t)) for t in (np.float64, np.float32, np.float16, np.int64, np.int32, np.int16,
                                          np.int8, np.uint8, np.bool_)}
    allowed = [np.ndarray, np.dtype, *dtypes]
    for name in ("_reconstruct", "scalar"):
        fn = getattr(multiarray, name)
        allowed += [fn, (fn, f"numpy.core.multiarray.{name}"), (fn, f"numpy._core.multiarray.{name}")]
    return allowed


def read_official(path) -> dict:
    """The raw state_dict of an official ``.pth`` (``ckpt.get('state_dict', ckpt)``), see module docstring."""
    try:
        ckpt = _torch_load(path, weights_only=True)
    except pickle.UnpicklingError:
        try:
            with torch.serialization.safe_globals(_numpy_globals()):
                ckpt = _torch_load(path, weights_only=True)
        except pickle.UnpicklingError:
            warnings.warn(f"{path}: holds Python objects beyond tensors and numpy arrays; unpickling it fully "
                          "(this can run code stored in the file: convert only files you trust)", stacklevel=2)
            ckpt = _torch_load(path, weights_only=False)
    state_dict = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state_dict, dict) or not state_dict:
        raise InputError(f"{path}: no state_dict in the checkpoint")
    bad = [str(k) for k, v in state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise InputError(f"{path}: state_dict entries that are not tensors: {_names(bad, 'keys')}")
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def mmpose_state_dict(raw: dict) -> tuple[dict, dict]:
    """MMPose-1.x ProbPose keys -> ours: ``(state_dict, notes)``; notes may hold a ``temperature``."""
    state_dict = {k: v for k, v in raw.items() if not k.startswith("data_preprocessor.")}
    notes = {}
    if "head.temperature" in state_dict:  # an older head build kept the temperature as a parameter
        notes["temperature"] = float(state_dict.pop("head.temperature").reshape(-1)[0])
    return state_dict, notes


def vitpose_state_dict(raw: dict) -> tuple[dict, dict]:
    """Original ViTPose keys -> ours (module docstring): ``(state_dict, notes)``."""
    state_dict = {}
    for key, value in raw.items():
        for pattern, repl in _VITPOSE_RULES:
            if re.match(pattern, key):
                key = re.sub(pattern, repl, key)
                break
        state_dict[key] = value
    pos = state_dict.get("backbone.pos_embed")
    if pos is not None and pos.dim() == 3 and _grid_of(pos.shape[1] - 1) is not None:
        state_dict["backbone.pos_embed"] = pos[:, 1:] + pos[:, :1]  # the class slot is added to every token
    return state_dict, {"heatmap_only": True}


def _grid_of(tokens: int):
    """Token grid (h, w) = (4a, 3a) of a 3:4 input holding ``tokens`` tokens, or None."""
    a = int(round((tokens / 12) ** 0.5))
    return (4 * a, 3 * a) if a > 0 and 12 * a * a == tokens else None


def infer_config(state_dict: dict, where: str) -> PoseModelConfig:
    """PoseModelConfig of a ViT ProbPose/ViTPose state_dict (num_heads from the width, see _HEADS)."""
    needed = ("backbone.pos_embed", "backbone.layers.0.ffn.layers.0.0.weight", "head.final_layer.weight",
              "head.deconv_layers.0.weight")
    absent = [k for k in needed if k not in state_dict]
    if absent:
        raise InputError(f"{where}: not a ViT pose checkpoint: {_names(absent, 'missing keys')}")
    pos = state_dict["backbone.pos_embed"]
    grid = _grid_of(pos.shape[1]) if pos.dim() == 3 else None
    if grid is None:
        raise InputError(f"{where}: backbone.pos_embed has shape {tuple(pos.shape)}; expected (1, tokens, C) "
                         "with tokens = 12 a^2 (a 3:4 grid such as 16x12)")
    dim = int(pos.shape[2])
    depth = 1 + max(int(m.group(1)) for k in state_dict if (m := re.match(r"backbone\.layers\.(\d+)\.", k)))
    hidden = int(state_dict["backbone.layers.0.ffn.layers.0.0.weight"].shape[0])
    aux = state_dict.get("head.probability_layers.0.weight")
    input_size = (16 * grid[1], 16 * grid[0])  # (W, H) = (192, 256) for the 16x12 grid (patch 16, padding 2)
    cfg = PoseModelConfig(backbone="vit", embed_dim=dim, depth=depth, num_heads=_HEADS.get(dim, max(1, dim // 64)),
                          mlp_ratio=hidden / dim, input_size=input_size, heatmap_size=(4 * grid[1], 4 * grid[0]),
                          num_keypoints=int(state_dict["head.final_layer.weight"].shape[0]),
                          head_channels=int(state_dict["head.deconv_layers.0.weight"].shape[1]),
                          aux_channels=0 if aux is None or aux.shape[0] == dim else int(aux.shape[0]),
                          double_heatmap="head.wide_final_layer.weight" in state_dict)
    built = patch_grid(cfg.input_size)
    if tuple(built) != tuple(grid):
        raise InputError(f"{where}: backbone.pos_embed holds a {grid[0]}x{grid[1]} token grid, but our ViT's patch "
                         f"embedding gives {built[0]}x{built[1]} for the inferred {input_size[0]}x{input_size[1]} "
                         f"(W x H) input; this checkpoint's ViT cannot be built")
    return cfg


def empty_model(config: PoseModelConfig) -> PoseModel:
    """A PoseModel with uninitialised weights (no random init: fast when every tensor is loaded next)."""
    with torch.device("meta"):
        model = build_model(config)
    return model.to_empty(device="cpu")


def _silent_aux(config: PoseModelConfig, state_dict: dict) -> dict:
    """Add absent presence/visibility/OKS/error branches, freshly initialised with a zero last conv (output 0.5)."""
    filled = dict(state_dict)
    for name in _AUX_BRANCHES:
        act = torch.nn.ReLU() if name == "error_layers" else torch.nn.Sigmoid()
        branch = aux_branch(config.embed_dim, config.aux_channels or config.embed_dim, config.num_keypoints, act)
        torch.nn.init.zeros_(branch[-2].weight)
        torch.nn.init.zeros_(branch[-2].bias)
        for key, value in branch.state_dict().items():
            filled.setdefault(f"head.{name}.{key}", value)
    return filled


def convert_checkpoint(input_path, out_path, source: str = "mmpose") -> Path:
    """Convert an official ProbPose (``source="mmpose"``) or ViTPose (``"vitpose"``) file to ours."""
    if source not in SOURCES:
        raise InputError(f"unknown checkpoint source {source!r}; choose from {', '.join(SOURCES)}")
    raw = read_official(input_path)
    state_dict, notes = (mmpose_state_dict if source == "mmpose" else vitpose_state_dict)(raw)
    config = infer_config(state_dict, str(input_path))
    if "temperature" in notes:
        config.temperature = notes["temperature"]
    model = empty_model(config)
    if notes.get("heatmap_only"):
        state_dict = _silent_aux(config, state_dict)
    load_weights(model, state_dict, str(input_path))
    extra = {"source": source, "source_file": Path(input_path).name, "heatmap_only": bool(notes.get("heatmap_only"))}
    return save_checkpoint(out_path, model.eval(), config, extra=extra)
