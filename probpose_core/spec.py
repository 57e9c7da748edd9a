"""ModelSpec: what a pose model says about itself, read once from its metadata.

Every caller that feeds a model or reads its outputs (the pipeline and so the node,
``probpose predict``, ``training.evaluate``, ``training.calibrate``, the demo) builds its codec
and thresholds from one :class:`ModelSpec`, never from the metadata directly:

- ``codec``: the :class:`codec.ProbMapCodec` the model was trained with (input and map size,
  sigmas, padding, area factor, decode settings);
- ``map_kind``: "probmap" (Sparsemax ``prob_maps``) or "heatmap" (the Gaussian heatmap
  baseline, a ``heatmaps`` output); ``double_heatmap``: the variant with a ``wide_prob_maps``
  output over a 2x window;
- ``heatmap_only``: a converted ViTPose model whose presence branch says nothing (0.5), so
  presence is judged by the map;
- ``presence_threshold``: keypoints with presence at or above it count as present
  (:data:`DEFAULT_PRESENCE_THRESHOLD` when the model does not say);
- ``temperature``: the calibration temperature (already applied inside the model, recorded
  for reports); ``keypoint_names``: one per map;
- ``coverage``: the model's :class:`conformal.CoverageTable` (the calibrated levels, and per
  keypoint group / box bucket the region and ellipse constants that make a level-q region hold
  the truth in q of held-out cases), or None: **uncalibrated coverage**
  (``coverage_calibrated`` False): the raw credible sets' levels are only the maps' mass.

Where it is read from (:meth:`ModelSpec.from_meta`): the ``meta`` every runner carries — our
checkpoint's (``models.checkpoints.load_checkpoint``: ``config`` a PoseModelConfig) or the
ONNX sidecar (``runtime.export``: ``config`` a dict). A runner without metadata (a stand-in,
an in-memory torch module) gets the defaults, sized to its model's config when it has one
(:func:`model_spec`). Plain data only: no torch, no ROS.
"""
from dataclasses import dataclass, field

from .codec import ProbMapCodec
from .conformal import CoverageTable
from .errors import InputError
from .keypoints import NAMES

#: presence >= this counts as present when a model carries no calibrated threshold (the official 0.45)
DEFAULT_PRESENCE_THRESHOLD = 0.45
MAP_KINDS = ("probmap", "heatmap")


def codec_settings(codec: ProbMapCodec) -> dict:
    """The plain-data form of ``codec`` stored in checkpoints and sidecars (``meta["codec"]``)."""
    return {"input_size": list(codec.input_size), "heatmap_size": list(codec.heatmap_size),
            "sigmas": [float(s) for s in codec.sigmas], "padding": float(codec.padding),
            "area_factor": float(codec.area_factor), "blur_sigma": float(codec.blur_sigma),
            "refine_iters": int(codec.refine_iters), "decode_sharpness": float(codec.decode_sharpness)}


def codec_from_settings(settings: dict) -> ProbMapCodec:
    """The ProbMapCodec described by ``meta["codec"]`` (inverse of :func:`codec_settings`)."""
    try:
        return ProbMapCodec(**{k: tuple(v) if isinstance(v, list) else v for k, v in settings.items()})
    except TypeError as exc:
        raise InputError(f"bad codec settings in the model's metadata: {exc}") from None


def _config_value(config, name: str, default):
    if config is None:
        return default
    value = config.get(name, default) if isinstance(config, dict) else getattr(config, name, default)
    return tuple(value) if isinstance(value, list) else value


@dataclass(frozen=True)
class ModelSpec:
    """The model's codec, map kind and thresholds (see the module docstring); a value object."""

    codec: ProbMapCodec = field(default_factory=ProbMapCodec)
    map_kind: str = "probmap"
    double_heatmap: bool = False
    heatmap_only: bool = False
    presence_threshold: float = DEFAULT_PRESENCE_THRESHOLD
    temperature: float = 1.0
    keypoint_names: tuple = NAMES
    coverage: CoverageTable | None = None

    def __post_init__(self):
        if self.map_kind not in MAP_KINDS:
            raise InputError(f"map_kind must be one of {MAP_KINDS}, got {self.map_kind!r}")
        threshold = float(self.presence_threshold)
        if not 0.0 <= threshold <= 1.0:
            raise InputError(f"presence threshold must lie in [0, 1], got {self.presence_threshold}")
        object.__setattr__(self, "presence_threshold", threshold)
        object.__setattr__(self, "keypoint_names", tuple(str(n) for n in self.keypoint_names))
        if len(self.keypoint_names) != len(self.codec.sigmas):
            raise InputError(f"the model names {len(self.keypoint_names)} keypoints but its codec has "
                             f"{len(self.codec.sigmas)} sigmas")
        if self.coverage is not None and sorted(k for ks in self.coverage.groups.values() for k in ks) != list(
                range(len(self.keypoint_names))):
            raise InputError(f"the coverage table's keypoint groups {self.coverage.groups} do not cover the model's "
                             f"{len(self.keypoint_names)} keypoints once each")

    @property
    def coverage_calibrated(self) -> bool:
        """Whether the model carries a coverage table (else its region levels are uncalibrated)."""
        return self.coverage is not None

    @property
    def input_size(self) -> tuple:
        """Crop size (W, H) the network takes."""
        return self.codec.input_size

    @property
    def heatmap_size(self) -> tuple:
        """Map size (W, H) the network gives."""
        return self.codec.heatmap_size

    @classmethod
    def from_meta(cls, meta: dict | None, config=None) -> "ModelSpec":
        """The spec in checkpoint ``meta`` or an ONNX sidecar; ``config`` (a PoseModelConfig or
        its dict) is used when ``meta`` has none. Missing fields take the defaults; a codec whose
        sizes disagree with the model config's is an InputError (the crops would not fit)."""
        meta = meta or {}
        config = meta.get("config") or config
        sizes = {name: _config_value(config, name, None) for name in ("input_size", "heatmap_size")}
        if isinstance(meta.get("codec"), dict):
            codec = codec_from_settings(meta["codec"])
            for name, size in sizes.items():
                if size is not None and tuple(int(v) for v in size) != getattr(codec, name):
                    raise InputError(f"the model's {name} is {tuple(size)} (W, H) but its codec settings say "
                                     f"{getattr(codec, name)}")
        else:
            codec = ProbMapCodec(**{k: v for k, v in sizes.items() if v is not None})
        names = (meta.get("keypoints") or {}).get("names")
        extra = meta.get("extra") or {}
        threshold = meta.get("presence_threshold")
        table = meta.get("coverage") or extra.get("coverage")  # sidecar / checkpoint (extra)
        return cls(coverage=None if table is None else CoverageTable.from_dict(table),
                   codec=codec, map_kind=str(_config_value(config, "map_kind", "probmap")),
                   double_heatmap=bool(_config_value(config, "double_heatmap", False)),
                   heatmap_only=bool(meta.get("heatmap_only") or extra.get("heatmap_only")),
                   presence_threshold=DEFAULT_PRESENCE_THRESHOLD if threshold is None else float(threshold),
                   temperature=float(meta.get("temperature", 1.0)),
                   keypoint_names=tuple(names) if names else cls._default_names(len(codec.sigmas)))

    @staticmethod
    def _default_names(count: int) -> tuple:
        return NAMES if count == len(NAMES) else tuple(f"kpt_{i}" for i in range(count))


def model_spec(runner) -> ModelSpec:
    """The :class:`ModelSpec` of a Runner: from its ``meta`` (checkpoint or sidecar), else from
    the config of the torch model it wraps, else the defaults."""
    config = getattr(getattr(runner, "model", None), "config", None)
    return ModelSpec.from_meta(getattr(runner, "meta", None), config)
