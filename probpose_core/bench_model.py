"""`probpose bench --model M.pt`: network latency per runtime and the pipeline's own cost.

For each available runtime (torch, ONNX Runtime fp32, ONNX Runtime dynamic int8; TensorRT
only where it imports) it times one batch at batch sizes 1/4/8 and reports milliseconds per
person; then it times the pipeline's pre-processing (crop + normalise) and post-processing
(decode, covariance, credible regions) per person on a 640x480 frame with 8 people, and the
ratio (pre + post) / network. Medians of repeated runs; the machine is shared, so compare
ratios measured in one run.
"""
import tempfile
from pathlib import Path

import numpy as np

from .bench import median_ms

BATCHES = (1, 4, 8)


def _runners(model_path: Path, work: Path, log) -> dict:
    from .runtime.export import export_model
    from .runtime.ort_runner import OrtRunner
    from .runtime.torch_runner import TorchRunner
    from .models.checkpoints import load_checkpoint

    model, _ = load_checkpoint(model_path)
    onnx_path = work / "model.onnx"
    export_model(model_path, onnx_path, int8=True, log=lambda line: None)
    runners = {"torch fp32": TorchRunner(model, threads=2), "ort fp32": OrtRunner(onnx_path, threads=2),
               "ort int8": OrtRunner(onnx_path.with_suffix(".int8.onnx"), threads=2)}
    try:
        from .runtime.trt_runner import TrtRunner, import_tensorrt

        import_tensorrt()
        runners["trt fp16"] = TrtRunner(onnx_path, work / "trt")
    except Exception as exc:  # TensorRT is absent on CPU machines: say so and go on
        log(f"(TensorRT not timed: {str(exc).splitlines()[0]})")
    return runners


def run_model_bench(model_path, repeats: int = 10, out=print) -> dict:
    """Time every runtime at batch 1/4/8 and the pipeline's pre/post-processing; print a table."""
    import torch

    from .bench import synthetic_logits
    from .pipeline import Pipeline
    from .runtime.export import sample_images
    from .sparsemax import sparsemax_maps

    model_path = Path(model_path)
    results = {}
    with tempfile.TemporaryDirectory(prefix="probpose-bench-") as tmp:
        runners = _runners(model_path, Path(tmp), out)
        input_size = next(iter(runners.values())).input_size
        out(f"probpose bench --model {model_path.name}: medians of {repeats} runs, ms per person")
        out(f"{'runtime':<12}" + "".join(f"{f'batch {b}':>12}" for b in BATCHES))
        for name, runner in runners.items():
            row = {}
            for b in BATCHES:
                images = sample_images(b, input_size, seed=b)
                row[b] = median_ms(lambda: runner.run(images), repeats) / b
            results[name] = row
            out(f"{name:<12}" + "".join(f"{row[b]:>12.2f}" for b in BATCHES))

        rng = np.random.default_rng(0)
        frame = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
        boxes = np.array([[20 + 75 * i, 40 + 10 * i, 60, 160] for i in range(8)], dtype=np.float64)
        runner = runners["ort fp32"]
        pipe = Pipeline(runner, credible_levels=(0.5,))
        bare = Pipeline(runner, credible_levels=())
        images, center, scale = pipe.crops(frame, boxes)
        outputs = pipe.infer(images)
        scores = np.ones(len(boxes))
        pre = median_ms(lambda: pipe.crops(frame, boxes), repeats) / len(boxes)
        network = results["ort fp32"][8]
        out(f"pre-processing (crop + normalise):                  {pre:8.3f} ms/person")
        # An untrained model's maps are nearly flat (supports of ~3000 px), which makes decoding
        # and regions far costlier than on a trained model's compact maps: time both.
        peaked = dict(outputs, prob_maps=sparsemax_maps(torch.from_numpy(synthetic_logits(len(boxes))[0])).numpy())
        post = {}
        for label, maps in (("this model's maps", outputs), ("peaked maps (trained-like)", peaked)):
            bare_ms = median_ms(lambda: bare.humans(maps, boxes, scores, center, scale), repeats) / len(boxes)
            full_ms = median_ms(lambda: pipe.humans(maps, boxes, scores, center, scale), repeats) / len(boxes)
            post[label] = (bare_ms, full_ms)
            out(f"post-processing, {label}: {bare_ms:.3f} ms/person; with 0.5 credible regions {full_ms:.3f}; "
                f"(pre + post) / network {(pre + bare_ms) / network:.4f} (with regions {(pre + full_ms) / network:.4f})")
        out("target: (pre + post) / network <= 0.02 for ViT-S")
        out(f"ratio ORT fp32 / torch at batch 1:      {results['ort fp32'][1] / results['torch fp32'][1]:.3f}")
        out(f"ratio ORT int8 / ORT fp32 at batch 1:   {results['ort int8'][1] / results['ort fp32'][1]:.3f} (target <= 0.6)")
        results["pipeline"] = {"pre_ms": pre, "post_ms": post}
    return results
