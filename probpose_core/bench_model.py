"""`probpose bench --model M`: network latency per runtime and the pipeline's own cost.

An exported ``.onnx`` (with its sidecar, e.g. the shipped ``models/probpose_student.onnx``):
:func:`run_onnx_bench` times onnxruntime session options against the shipped ones
(:func:`ort_runner.session_options`) and every installed runtime for ``.onnx`` models (ORT,
OpenVINO; plus any ``--compare`` models, e.g. an int8 export, on ORT) at batch 1 and 3, all
candidates taking turns in one loop so that the shared machine's load falls on all of them alike.

Our checkpoint (``.pt``): for each available runtime (torch, ONNX Runtime fp32, ONNX Runtime dynamic int8; TensorRT
only where it imports) it times one batch at batch sizes 1/4/8 and reports milliseconds per
person; then it times the pipeline's pre-processing (crop + normalise) and post-processing
(decode, covariance, credible regions) per person on a 640x480 frame with 8 people, and the
ratio (pre + post) / network. Medians of repeated runs; the machine is shared, so compare
ratios measured in one run.
"""
import tempfile
import time
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


#: The batches of the ``.onnx`` bench: one person, and the issue's three-people frame.
ONNX_BATCHES = (1, 3)


def _ort_variants() -> dict:
    """onnxruntime SessionOptions candidates: name -> a change to the shipped options."""
    import onnxruntime as ort

    level = ort.GraphOptimizationLevel

    def config(key, value):
        return lambda o: o.add_session_config_entry(key, value)

    def attr(**values):
        return lambda o: [setattr(o, k, v) for k, v in values.items()]

    return {
        "shipped": lambda o: None,
        "intra-op threads 1": attr(intra_op_num_threads=1),
        "intra-op threads 2": attr(intra_op_num_threads=2),
        "spinning on": config("session.intra_op.allow_spinning", "1"),
        "graph opt basic": attr(graph_optimization_level=level.ORT_ENABLE_BASIC),
        "graph opt extended": attr(graph_optimization_level=level.ORT_ENABLE_EXTENDED),
        "graph opt off": attr(graph_optimization_level=level.ORT_DISABLE_ALL),
        "parallel execution": attr(execution_mode=ort.ExecutionMode.ORT_PARALLEL, inter_op_num_threads=2),
        "mem pattern off": attr(enable_mem_pattern=False),
        "cpu mem arena off": attr(enable_cpu_mem_arena=False),
        "denormals as zero": config("session.set_denormal_as_zero", "1"),
        "dynamic block base 4": config("session.dynamic_block_base", "4"),
    }


def _interleaved_ms(candidates: dict, repeats: int, warmup: int = 2) -> dict:
    """Median ms of every ``candidates[name]()``, the candidates taking turns ``repeats`` times."""
    for fn in candidates.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in candidates}
    for _ in range(max(1, repeats)):
        for name, fn in candidates.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def _onnx_runners(onnx_path: Path, compare, log) -> dict:
    """name -> Runner: ORT (shipped options) and OpenVINO on ``onnx_path``, ORT on each ``compare``."""
    from .errors import InputError
    from .runtime import make_runner

    runners = {"ort": make_runner(onnx_path, "ort")}
    try:
        runners["openvino"] = make_runner(onnx_path, "openvino")
    except InputError as exc:  # OpenVINO is optional: say so and go on
        log(f"(OpenVINO not timed: {exc})")
    for path in compare:
        runners[f"ort {Path(path).name}"] = make_runner(path, "ort")
    return runners


def _frame_call(detector, run_pose, image, people):
    """One frame's two networks: the detector session, then ``run_pose(people)``."""
    def call():
        detector.run(None, {detector.get_inputs()[0].name: image})
        run_pose(people)
    return call


def run_onnx_bench(onnx_path, repeats: int = 20, compare=(), out=print) -> dict:
    """ms per person at batch 1 and 3 of onnxruntime session options and of the runtimes, and ms
    per frame: the shipped detector's network (PicoDet 320x320, ORT) and then the pose model on 3
    people, taking turns as in the node, where one session's intra-op spinning steals the other's
    cores (in the options table both sessions get the row's options). Prints two tables with each
    row's ratio to the first row. ``compare``: more ``.onnx`` models (with sidecars) timed on ORT
    in the runtimes table. Returns {table: {row: {batch or "frame": ms}}}."""
    import functools

    import onnxruntime as ort

    from .detection.picodet import SHIPPED
    from .runtime.export import sample_images
    from .runtime.base import onnx_input_size
    from .runtime.ort_runner import session_options
    from .shipped import shipped_file

    def cpu_session(path, options):
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    onnx_path = Path(onnx_path)
    input_size, _ = onnx_input_size(onnx_path)
    images = {b: sample_images(b, input_size, seed=b) for b in ONNX_BATCHES}
    detector_path, detector_image = shipped_file(SHIPPED), sample_images(1, (320, 320), seed=0)
    option_rows = {}  # name -> (run the pose model on a batch, the detector session)
    for name, change in _ort_variants().items():
        options = session_options()
        change(options)
        pose = cpu_session(onnx_path, options)
        option_rows[name] = (lambda x, pose=pose: pose.run(None, {"images": x}), cpu_session(detector_path, options))
    detector = cpu_session(detector_path, session_options())
    runtime_rows = {name: (runner.run, detector) for name, runner in _onnx_runners(onnx_path, compare, out).items()}
    tables = {}
    for table, rows in (("onnxruntime session options", option_rows), ("runtimes", runtime_rows)):
        result = {name: {} for name in rows}
        for b in ONNX_BATCHES:
            calls = {name: functools.partial(run, images[b]) for name, (run, _) in rows.items()}
            for name, ms in _interleaved_ms(calls, repeats).items():
                result[name][b] = ms / b
        people = images[ONNX_BATCHES[-1]]
        frames = {name: _frame_call(det, run, detector_image, people) for name, (run, det) in rows.items()}
        for name, ms in _interleaved_ms(frames, repeats).items():
            result[name]["frame"] = ms
        columns = list(ONNX_BATCHES) + ["frame"]
        first = result[next(iter(result))]
        out(f"{table} ({onnx_path.name}, ORT {ort.__version__}, CPU, medians of {repeats} turns): ms per person at "
            f"batch 1 and 3; frame: {detector_path.name} + {ONNX_BATCHES[-1]} people, ms; ratio to the first row")
        out(f"{'':<28}" + "".join(f"{'frame' if c == 'frame' else f'batch {c}':>10}{'ratio':>7}" for c in columns))
        for name, row in result.items():
            out(f"{name:<28}" + "".join(f"{row[c]:>10.2f}{row[c] / first[c]:>7.2f}" for c in columns))
        tables[table] = result
    return tables
