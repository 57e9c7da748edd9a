"""TrainConfig: one YAML file per experiment, mapped 1:1 onto nested dataclasses.

No inheritance, no ``_base_``: every field of a run is in its YAML file (or takes the default
written here). ``load_config(path, overrides=["optim.lr=1e-4"])`` reads a file, checks every key
and type (an unknown key or a wrong type raises one InputError naming the key path, e.g.
``optim.lr``), resolves relative paths against the YAML file's folder and applies dotted
command-line overrides (their relative paths resolve against the current directory).
``save_config`` writes the resolved config; ``load_config(save_config(cfg))`` gives ``cfg`` back.

YAML 1.1 reads ``5e-5`` (no dot) as a string; float fields accept such strings.
"""
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from probpose_core.data.transforms import AugmentConfig
from probpose_core.errors import InputError
from probpose_core.losses import LossConfig
from probpose_core.models import PoseModelConfig


@dataclass
class DataConfig:
    """Where the data is and how it is batched. Paths: absolute after loading."""

    train_ann: str = "data/coco/annotations/person_keypoints_train2017.json"
    train_images: str = "data/coco/train2017"
    val_ann: str = "data/coco/annotations/person_keypoints_val2017.json"
    val_images: str = "data/coco/val2017"
    val_detections: str | None = None  # COCO detections JSON; None = ground-truth boxes
    batch_size: int = 64  # per process
    workers: int = 4  # DataLoader workers per process
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    heatmap_sigma: float | None = None  # Gaussian heatmap targets (heatmap models) when set
    min_keypoints: int = 1  # training instances need at least this many annotated keypoints
    # When > 0 and train_ann / val_ann do not exist, write a synthetic COCO set of this many
    # images there first (probpose_core.data.synthetic; the tiny CPU config, needs no download).
    synthetic_images: int = 0


@dataclass
class OptimConfig:
    """AdamW with layer-wise lr decay (see training.optim)."""

    lr: float = 5e-5
    # Global batch ``lr`` is given for; the lr used is lr * batch_size * world_size / lr_batch
    # (linear scaling rule). None: use ``lr`` as it is.
    lr_batch: int | None = 512
    weight_decay: float = 0.1
    layer_decay: float = 0.8
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float | None = 1.0  # max global gradient norm; None = no clipping
    # Parameters whose names start with one of these prefixes are frozen (no gradient, not in the
    # optimiser; e.g. ["backbone."] fine-tunes only the head on a pretrained backbone; BN running
    # statistics of frozen layers still update in training mode).
    frozen: list[str] = field(default_factory=list)
    # [prefix, scale] pairs: parameters whose names start with the prefix (the first that
    # matches) train at lr x scale, e.g. [[backbone.features., 0.1]] (training/optim.py).
    lr_scale: list[tuple[str, float]] = field(default_factory=list)


@dataclass
class ScheduleConfig:
    """Linear warm-up per iteration, then multi-step decay per epoch."""

    epochs: int = 210
    warmup_iters: int = 500
    warmup_ratio: float = 0.001
    milestones: list[int] = field(default_factory=lambda: [170, 200])
    gamma: float = 0.1


@dataclass
class RunConfig:
    out_dir: str = "out/run"
    seed: int = 0
    amp: bool = True  # mixed precision; only used on CUDA
    device: str = "auto"  # "auto" (CUDA when available) | "cpu" | "cuda"
    val_every: int = 10  # epochs; 0 = never
    flip_test: bool = True
    log_every: int = 50  # iterations between CSV / TensorBoard rows
    num_threads: int = 0  # torch CPU threads; 0 = torch's default
    max_iters_per_epoch: int | None = None  # cut epochs short (smoke runs)
    progress: bool = True  # tqdm progress bars
    # Initial weights: a probpose checkpoint (our format; official files via `probpose convert`);
    # tensors whose name and shape match the model are loaded, the rest keep their init.
    init_weights: str | None = None
    # "ort": a backbone that is frozen whole (optim.frozen) runs its forward in ONNX Runtime (an
    # export of it, made at the start) instead of torch: the same function, no gradient passes
    # through it, ~5-10x faster on a CPU for depthwise-heavy nets (Lite-HRNet). "torch": as is.
    frozen_backbone_runtime: str = "torch"


@dataclass
class TrainConfig:
    model: PoseModelConfig = field(default_factory=PoseModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    run: RunConfig = field(default_factory=RunConfig)


#: Fields holding file-system paths (resolved against the YAML file's folder).
PATH_KEYS = frozenset({"data.train_ann", "data.train_images", "data.val_ann", "data.val_images",
                       "data.val_detections", "run.out_dir", "run.init_weights"})


# ---------------------------------------------------------------- dataclass <-> plain dict

def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _is_optional(tp) -> tuple[bool, typing.Any]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) < len(typing.get_args(tp)):
            return True, (args[0] if len(args) == 1 else typing.Union[tuple(args)])
    return False, tp


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value, tp, key: str):
    """``value`` (from YAML) checked against the annotation ``tp``; raises InputError naming ``key``."""
    optional, inner = _is_optional(tp)
    if value is None:
        if optional or tp is typing.Any:
            return None
        raise InputError(f"{key}: expected {_type_name(tp)}, got null")
    tp = inner
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, key)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is typing.Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp in (tuple, list) or origin in (tuple, list):
        if isinstance(value, (list, tuple)):
            container = origin or tp
            if container is tuple and args and args[-1] is not Ellipsis:
                if len(value) != len(args):
                    raise InputError(f"{key}: expected {len(args)} values, got {len(value)}")
                items = [convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
            else:
                item_tp = args[0] if args else typing.Any
                items = [convert(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
            return container(items)
    elif origin is typing.Literal:
        if value in args:
            return value
        raise InputError(f"{key}: expected one of {', '.join(map(repr, args))}, got {value!r}")
    elif origin in (typing.Union, types.UnionType):
        for arg in args:
            try:
                return convert(value, arg, key)
            except InputError:
                continue
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise InputError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_dict(cls, data, key: str = ""):
    """Build dataclass ``cls`` from a plain dict; unknown keys / wrong types raise InputError."""
    where = key or "config"
    if not isinstance(data, dict):
        raise InputError(f"{where}: expected a mapping of {cls.__name__} fields, got {type(data).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = [k for k in data if k not in names]
    if unknown:
        path = f"{key}.{unknown[0]}" if key else str(unknown[0])
        raise InputError(f"unknown key {path} (known in {where}: {', '.join(names)})")
    kwargs = {name: convert(data[name], hints[name], f"{key}.{name}" if key else name) for name in names
              if name in data}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{where}: {exc}") from None


def to_dict(obj):
    """Plain YAML-safe types: dataclasses -> dicts, tuples -> lists."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# ---------------------------------------------------------------- files and overrides

def _resolve(value, base: Path):
    if value is None or value == "":
        return value
    path = Path(value).expanduser()
    return str(path if path.is_absolute() else (base / path).resolve())


def _resolve_paths(config: TrainConfig, base: Path, keys=PATH_KEYS) -> None:
    for dotted in keys:
        section, name = dotted.split(".")
        part = getattr(config, section)
        setattr(part, name, _resolve(getattr(part, name), base))


def set_value(config: TrainConfig, dotted: str, value) -> None:
    """Set ``config.<dotted>`` to ``value`` (a YAML value), type-checked like the file."""
    parts = dotted.split(".")
    obj, walked = config, []
    for part in parts[:-1]:
        walked.append(part)
        if not dataclasses.is_dataclass(obj) or part not in {f.name for f in dataclasses.fields(obj)}:
            raise InputError(f"unknown key {'.'.join(walked)}")
        obj = getattr(obj, part)
    name = parts[-1]
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise InputError(f"unknown key {dotted}")
    new = convert(value, _hints(type(obj))[name], dotted)
    setattr(obj, name, new)
    try:  # re-run the dataclass's own checks (e.g. PoseModelConfig.__post_init__)
        if hasattr(obj, "__post_init__"):
            obj.__post_init__()
    except ValueError as exc:
        if isinstance(exc, InputError):
            raise
        raise InputError(f"{dotted}: {exc}") from None


def parse_override(text: str) -> tuple[str, object]:
    """``"optim.lr=1e-4"`` -> ``("optim.lr", 1e-4)`` (the value parsed as YAML)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"override {text!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise InputError(f"override {key}: cannot parse {raw!r}: {str(exc).splitlines()[0]}") from None
    return key.strip(), value


def config_from_dict(data: dict, base_dir=".") -> TrainConfig:
    """TrainConfig from a plain dict (as read from YAML); relative paths resolve against ``base_dir``."""
    config = from_dict(TrainConfig, data if data is not None else {})
    _resolve_paths(config, Path(base_dir).resolve())
    return config


def load_config(path, overrides=()) -> TrainConfig:
    """Read a YAML experiment file and apply ``overrides`` (``["section.key=value", ...]``)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
    try:
        config = config_from_dict(data, path.parent)
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    for text in overrides:
        key, value = parse_override(text)
        set_value(config, key, value)
        if key in PATH_KEYS:
            _resolve_paths(config, Path.cwd(), [key])
    return config


class _Dumper(yaml.SafeDumper):
    """Block style for sections, flow style for lists (``input_size: [192, 256]``)."""


_Dumper.add_representer(list, lambda dumper, data: dumper.represent_sequence(
    "tag:yaml.org,2002:seq", data, flow_style=True))


def dump_config(config: TrainConfig) -> str:
    return yaml.dump(to_dict(config), Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=100)


def save_config(config: TrainConfig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_config(config))
    return path
