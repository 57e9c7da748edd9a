"""GPU check of issue 10 item 14: TensorRT FP16 vs ONNX Runtime CUDA vs torch CUDA.

Prepared for a machine with a CUDA GPU; it has NOT been run (the development machines have no
GPU, and the GPU machine lent to some sessions has no TensorRT or onnxruntime-gpu, which are too
large to carry there). Needs CUDA torch; TensorRT 10 (``tensorrt``) and onnxruntime-gpu (the
CUDA execution provider) are used where installed, and listed as not available otherwise.

    bash tools/trt_check.sh                 # writes $OUT (default out/trt_check)
    python tools/trt_check.py --out DIR [--budget-s 540] [--no-ablation]

Models: ViT-S with random weights (the official ProbPose-s shape; untrained maps spread over
thousands of pixels, the hard case for an FP16 Sparsemax), the same ViT-S with its map layer
scaled to trained-like peaked maps (``test/test_export.peaked_model``), and the shipped default
``models/probpose_student`` (ONNX for ORT / TensorRT, its ``.pt`` for torch).

For each model and runtime: parity against ONNX Runtime on the CPU in FP32 (the reference) with
``runtime.export.parity_report`` on 16 sample crops other than the ones the TensorRT build
checks itself (max and median keypoint difference in crop pixels, max |diff| of the maps and
of presence), and persons/s at batch 1 / 8 / 32 (median time of ``runner.run`` on host arrays,
so the host-device copies are included). TensorRT FP16 engines are built by ``TrtRunner`` (batch
profile 1 / 8 / 32; the Sparsemax kept in FP32; the build's own parity check, per-precision tolerances). An
engine the check refuses is reported as refused, then rebuilt with the check off so that its
numbers still show. With the ablation (default on, random ViT-S only) an FP16 engine is also
built without the FP32 marks, to show what they change.

Writes ``trt_check.md`` (the table), ``trt_check.json`` and the log to ``--out``; stops adding
work once ``--budget-s`` seconds have passed (default 540, inside a 10-minute device call).
"""
import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "test"))  # peaked_model (test helper)

BATCHES = (1, 8, 32)
PROFILE = (1, 8, 32)
PARITY_CROPS = 16
PARITY_SEED = 123  # not the build check's seed 0


def median_seconds(fn, min_time: float = 1.0, max_runs: int = 200, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times, start = [], time.perf_counter()
    while len(times) < 5 or (time.perf_counter() - start < min_time and len(times) < max_runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def models(work: Path, log):
    """(name, onnx path, torch model or None) for the three models."""
    import torch

    from probpose_core.models.checkpoints import load_checkpoint
    from probpose_core.models.pose_model import build_model, vit_config
    from probpose_core.runtime.export import export_onnx
    from test_export import peaked_model

    torch.manual_seed(0)
    random_vit = build_model(vit_config("s")).eval()
    peaked_vit = peaked_model(vit_config("s"))
    student, _ = load_checkpoint(ROOT / "models" / "probpose_student.pt")
    out = []
    for name, model in (("ViT-S random", random_vit), ("ViT-S peaked", peaked_vit)):
        path = export_onnx(model, work / f"{name.replace(' ', '_')}.onnx")
        log(f"exported {name} -> {path}")
        out.append((name, path, model))
    out.append(("shipped student", ROOT / "models" / "probpose_student.onnx", student))
    return out


def runners(onnx_path, model, work: Path, log, ablation: bool, time_left):
    """Yield (runtime label, runner or None, note) for torch, ORT CUDA and TensorRT FP16."""
    import torch

    from probpose_core.runtime.ort_runner import OrtRunner
    from probpose_core.runtime.torch_runner import TorchRunner

    if torch.cuda.is_available():
        yield "torch fp32 cuda", TorchRunner(model, device="cuda:0", max_batch=max(BATCHES)), ""
    else:
        yield "torch fp32 cuda", None, "torch sees no CUDA device"
    try:
        ort_cuda = OrtRunner(onnx_path, providers=["CUDAExecutionProvider"], max_batch=max(BATCHES))
        if ort_cuda.providers[0] != "CUDAExecutionProvider":
            raise RuntimeError(f"the CUDA execution provider did not load (providers {ort_cuda.providers})")
        yield "ort fp32 cuda", ort_cuda, ""
    except Exception as exc:  # noqa: BLE001 - report any reason and go on
        yield "ort fp32 cuda", None, f"not available: {str(exc).splitlines()[0]}"
    yield from trt_runners(onnx_path, work, log, ablation, time_left)


def trt_runners(onnx_path, work: Path, log, ablation: bool, time_left, build_s: float = 150.0):
    """TensorRT FP16 (and the ablation); a build is only started with ``build_s`` seconds left."""
    from probpose_core.runtime import trt_runner
    from probpose_core.runtime.export import PARITY_TOLERANCES
    from probpose_core.runtime.trt_runner import EngineParityError, TrtRunner

    unchecked = dict.fromkeys(PARITY_TOLERANCES["fp16"], float("inf"))  # measure, refuse nothing

    def build(cache, **kw):
        t0 = time.perf_counter()
        runner = TrtRunner(onnx_path, work / cache, fp16=True, profile=PROFILE, device=0, **kw)
        return runner, f"built in {time.perf_counter() - t0:.0f} s"

    try:
        trt_runner.import_tensorrt()
    except Exception as exc:  # noqa: BLE001
        yield "trt fp16", None, f"not available: {str(exc).splitlines()[0]}"
        return
    if time_left() < build_s:
        yield "trt fp16", None, "skipped: time budget spent"
        return
    try:
        runner, note = build("trt")
        yield "trt fp16", runner, f"{note}; build parity {runner.parity['keypoints_max_px_diff']:.3f} px: accepted"
    except EngineParityError as exc:
        log(f"REFUSED: {exc}")
        try:
            runner, note = build("trt-unchecked", parity_tolerances=unchecked)
            yield "trt fp16", runner, f"{note}; REFUSED by the FP16 build check (numbers of the refused engine)"
        except Exception as again:  # noqa: BLE001
            yield "trt fp16", None, f"refused, then failed: {str(again).splitlines()[0]}"
    except Exception as exc:  # noqa: BLE001
        yield "trt fp16", None, f"failed: {str(exc).splitlines()[0]}"
    if ablation and time_left() < build_s:
        yield "trt fp16, Sparsemax not kept FP32", None, "skipped: time budget spent"
    elif ablation:
        original = trt_runner.keep_fp32
        trt_runner.keep_fp32 = lambda trt, network, start_tensors: []  # no FP32 marks
        try:
            runner, note = build("trt-no-fp32-marks", parity_tolerances=unchecked)
            yield "trt fp16, Sparsemax not kept FP32", runner, f"{note}; ablation, check off"
        except Exception as exc:  # noqa: BLE001
            yield "trt fp16, Sparsemax not kept FP32", None, f"failed: {str(exc).splitlines()[0]}"
        finally:
            trt_runner.keep_fp32 = original


def measure(runner, onnx_path, log) -> dict:
    from probpose_core.runtime.base import load_sidecar
    from probpose_core.runtime.export import parity_report, sample_images
    from probpose_core.runtime.ort_runner import OrtRunner
    from probpose_core.spec import ModelSpec

    reference = OrtRunner(onnx_path, providers=["CPUExecutionProvider"])
    codec = ModelSpec.from_meta(load_sidecar(onnx_path)).codec
    images = sample_images(PARITY_CROPS, reference.input_size, seed=PARITY_SEED)
    report = parity_report(reference, runner, images, codec)
    result = {"keypoints_max_px": report["keypoints_max_px_diff"],
              "keypoints_median_px": report["keypoints_median_px_diff"],
              "max_abs_diff": report["max_abs_diff"], "max_support": report["max_support"], "persons_per_s": {}}
    for b in BATCHES:
        batch = sample_images(b, reference.input_size, seed=b)
        result["persons_per_s"][b] = b / median_seconds(lambda: runner.run(batch))
    log(f"  parity {result['keypoints_max_px']:.4f} px; persons/s "
        + ", ".join(f"b{b} {v:.0f}" for b, v in result["persons_per_s"].items()))
    return result


def environment() -> dict:
    import onnxruntime
    import torch

    env = {"python": platform.python_version(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
           "ort_providers": onnxruntime.get_available_providers(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    try:
        import tensorrt

        env["tensorrt"] = tensorrt.__version__
    except ImportError:
        env["tensorrt"] = None
    return env


def table(rows) -> str:
    head = ("| model | runtime | keypoints max / median px vs ORT CPU | prob_maps max abs diff | presence max abs diff | "
            + " | ".join(f"persons/s b{b}" for b in BATCHES) + " | note |")
    lines = [head, "|" + "---|" * (6 + len(BATCHES))]
    for row in rows:
        m = row.get("measured")
        if m is None:
            cells = ["–", "–", "–"] + ["–"] * len(BATCHES)
        else:
            d = m["max_abs_diff"]
            cells = [f"{m['keypoints_max_px']:.4f} / {m['keypoints_median_px']:.4f}",
                     f"{d.get('prob_maps', float('nan')):.2e}", f"{d.get('presence', float('nan')):.2e}"]
            cells += [f"{m['persons_per_s'][b]:.0f}" for b in BATCHES]
        lines.append(f"| {row['model']} | {row['runtime']} | " + " | ".join(cells) + f" | {row['note']} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=540.0)
    parser.add_argument("--no-ablation", action="store_true")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    log_file = open(args.out / "trt_check.log", "a")

    def log(line):
        line = f"[{time.perf_counter() - start:6.1f} s] {line}"
        print(line, flush=True)
        log_file.write(line + "\n")

    env = environment()
    log(f"environment: {env}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="trt-check-") as tmp:
        work = Path(tmp)
        for name, onnx_path, model in models(work, log):
            ablation = not args.no_ablation and name == "ViT-S random"
            time_left = lambda: args.budget_s - (time.perf_counter() - start)  # noqa: E731
            for runtime, runner, note in runners(onnx_path, model, work, log, ablation, time_left):
                if runner is not None and time_left() < 20:
                    rows.append({"model": name, "runtime": runtime, "note": "skipped: time budget spent"})
                    continue
                log(f"{name} / {runtime}: {note or 'ok'}")
                row = {"model": name, "runtime": runtime, "note": note}
                if runner is not None:
                    try:
                        row["measured"] = measure(runner, onnx_path, log)
                    except Exception as exc:  # noqa: BLE001 - one failing runtime must not lose the rest
                        row["note"] = f"{note}; measuring failed: {str(exc).splitlines()[0]}"
                rows.append(row)
                (args.out / "trt_check.md").write_text(f"environment: {json.dumps(env)}\n\n" + table(rows))
                (args.out / "trt_check.json").write_text(json.dumps({"environment": env, "rows": rows}, indent=2))
    log(f"done in {time.perf_counter() - start:.0f} s; table in {args.out / 'trt_check.md'}")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
