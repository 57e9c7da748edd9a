"""Train a top-down pose model from a YAML experiment file.

    python -m training.train --config training/configs/tiny_cpu.yaml [--resume CKPT|auto]
                             [--out DIR] [--set optim.lr=1e-4 --set run.seed=1 ...]
    torchrun --nproc_per_node=8 -m training.train --config ...      # DDP, batch_size per process

Writes into ``run.out_dir``: ``config.yaml`` (the resolved config), ``train_log.csv``
(iteration, epoch, lr, each loss term, grad_norm, samples_per_s), TensorBoard events under
``tb/``, ``last.pt`` each epoch and ``best.pt`` (best validation Ex-AP) in our checkpoint
format (``probpose predict --model last.pt`` loads them), each with a training-state file
next to it (``last.state.pt``: optimiser, scheduler, AMP scaler, position, RNG states, best
metric) so that ``--resume`` continues the same loss trajectory. Ctrl-C finishes the current
step, writes ``last.pt`` and exits (status 130); ``--resume auto`` picks it up.
"""
import argparse
import csv
import logging
import math
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from probpose_core.codec import ProbMapCodec
from probpose_core.errors import InputError
from probpose_core.losses import training_losses
from probpose_core.models import build_model

from . import distributed as D
from .config import TrainConfig, load_config, save_config
from .data import build_train_set, epoch_batches, make_loader, prepare_synthetic
from .optim import build_optimizer, build_scheduler
from .state import init_weights, load_state, save_state, state_path

log = logging.getLogger("training")
INTERRUPTED = 130


def scaled_lr(config: TrainConfig, world_size: int) -> float:
    """The linear scaling rule: ``lr * global batch / lr_batch`` (``lr`` as is when lr_batch is None)."""
    o = config.optim
    if o.lr_batch is None:
        return o.lr
    return o.lr * config.data.batch_size * world_size / o.lr_batch


class StopFlag:
    """First SIGINT asks the loop to stop after the current step; a second one aborts at once
    (KeyboardInterrupt, no checkpoint)."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            log.warning("interrupt: stopping after this step and writing last.pt (Ctrl-C again to abort)")
        try:
            self._previous = signal.signal(signal.SIGINT, handler)
        except ValueError:  # not the main thread
            self._previous = None
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


class CsvLog:
    """Rows of scalars; columns fixed by the first row; resuming keeps rows up to ``iteration``."""

    def __init__(self, path: Path, resume_iteration: int | None):
        self.path, self.columns = path, None
        if resume_iteration is not None and path.is_file():
            with path.open(newline="") as f:
                rows = list(csv.DictReader(f))
            if rows:
                self.columns = list(rows[0])
            with path.open("w", newline="") as f:
                if self.columns:
                    writer = csv.DictWriter(f, self.columns)
                    writer.writeheader()
                    writer.writerows(r for r in rows if int(r["iteration"]) <= resume_iteration)
        elif path.exists():
            path.unlink()

    def write(self, row: dict) -> None:
        new = self.columns is None
        if new:
            self.columns = list(row)
        with self.path.open("a", newline="") as f:
            writer = csv.DictWriter(f, self.columns, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow(row)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def _summary(losses: dict, info: D.DistInfo) -> dict:
    values = torch.stack([v.detach().float() for v in losses.values()])
    values = D.all_reduce_mean(values, info).cpu().tolist()
    return dict(zip(losses, values))


def _should_stop(requested: bool, info: D.DistInfo) -> bool:
    """Every process stops at the same step when any of them was asked to."""
    if not info.distributed:
        return requested
    flag = torch.tensor([float(requested)], device=info.device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _ex_ap(metrics: dict) -> float:
    for key in ("Ex-AP", "ex_ap", "ExAP", "AP"):
        if key in metrics:
            return float(metrics[key])
    raise KeyError(f"no Ex-AP / AP among the evaluation metrics {sorted(metrics)}")


def validate(config: TrainConfig, ckpt: Path, epoch: int) -> dict:
    """Metrics of the checkpoint on the validation set (training.evaluate.evaluate_model)."""
    from .evaluate import evaluate_model
    d = config.data
    return evaluate_model(str(ckpt), d.val_ann, d.val_images, detections=d.val_detections,
                          flip_test=config.run.flip_test, progress=config.run.progress,
                          out_dir=str(Path(config.run.out_dir) / "val" / f"epoch_{epoch:03d}"))


def _validate_and_log(config: TrainConfig, ckpt: Path, epoch: int, writer, iteration: int) -> float:
    """Validate ``ckpt``, log the metrics (TensorBoard + log) and return its Ex-AP."""
    metrics = validate(config, ckpt, epoch)
    numbers = {k: v for k, v in metrics.items() if isinstance(v, (int, float))}
    for k, v in numbers.items():
        writer.add_scalar(f"val/{k}", v, iteration)
    log.info("epoch %d validation: %s", epoch, ", ".join(f"{k} {v:.4f}" for k, v in numbers.items()))
    return _ex_ap(metrics)


def train(config: TrainConfig, resume=None, stop_after: int | None = None) -> dict:
    """Run (or continue) the training described by ``config``.

    resume: None, a ``last.pt`` / ``best.pt`` path, or "auto" (``out_dir/last.pt`` when present).
    stop_after: behave as if interrupted after this many global iterations (tests).
    Returns ``{"iteration", "epoch", "interrupted", "best_metric", "last", "best"}``.
    """
    info = D.init_distributed(config.run.device)
    try:
        return _train(config, info, resume, stop_after)
    finally:
        D.cleanup(info)


@dataclass
class _Run:
    """What the steps of one training run share (built by :func:`_start`)."""

    config: TrainConfig
    info: D.DistInfo
    out: Path
    codec: ProbMapCodec
    dataset: object
    model: torch.nn.Module  # the bare model (grad clipping)
    net: torch.nn.Module  # the model as trained (DDP-wrapped with several processes)
    optimizer: torch.optim.Optimizer
    scheduler: object
    scaler: torch.amp.GradScaler
    use_amp: bool
    iters_per_epoch: int
    position: dict  # epoch, batch, iteration, best_metric, best_epoch: the resumable position
    resumed: bool = False
    writer: object = None  # TensorBoard, main process only
    csv_log: CsvLog | None = None

    def checkpoint(self, name: str) -> Path:
        """Write ``name`` (+ its training state) in the output folder."""
        path = self.out / name
        save_state(path, D.unwrap(self.net), self.config, self.codec, self.optimizer, self.scheduler, self.scaler,
                   self.position, self.info)
        return path


def _start(config: TrainConfig, info: D.DistInfo, resume) -> _Run:
    """Output folder, seeds, data, model, optimiser, schedule, AMP scaler, the resumed position
    and (main process) the loggers."""
    run, out = config.run, Path(config.run.out_dir)
    if run.num_threads > 0:
        torch.set_num_threads(run.num_threads)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        prepare_synthetic(config.data, config.run.seed)
        save_config(config, out / "config.yaml")
    D.barrier(info)
    D.seed_everything(run.seed + info.rank)

    codec = ProbMapCodec(input_size=tuple(config.model.input_size), heatmap_size=tuple(config.model.heatmap_size))
    dataset, load_skipped = build_train_set(config, codec)
    if info.is_main:
        log.info("training set: %d instances from %s%s", len(dataset), config.data.train_ann,
                 f"; skipped {dict(load_skipped)}" if load_skipped else "")
    batches_per_epoch = len(epoch_batches(len(dataset), config.data.batch_size, run.seed, 0, info))
    iters_per_epoch = min(batches_per_epoch, run.max_iters_per_epoch or batches_per_epoch)

    model = build_model(config.model)
    if run.init_weights:
        loaded, fresh = init_weights(model, run.init_weights)
        if info.is_main:
            log.info("initial weights: %d tensors from %s%s", loaded, run.init_weights,
                     f"; {len(fresh)} keep their initialisation ({', '.join(fresh[:4])}...)" if fresh else "")
    frozen = [name for name, p in model.named_parameters() if name.startswith(tuple(config.optim.frozen))]
    for name, p in model.named_parameters():
        p.requires_grad_(name not in frozen)
    if config.optim.frozen and info.is_main:
        log.info("frozen: %d tensors starting with %s", len(frozen), ", ".join(config.optim.frozen))
    model = model.to(info.device)
    if run.frozen_backbone_runtime == "ort":
        run_frozen_in_ort(model.backbone, config.model.input_size, out / "frozen_backbone.onnx", run.num_threads or 2)
        if info.is_main:
            log.info("frozen backbone runs in ONNX Runtime (%s)", out / "frozen_backbone.onnx")
    elif run.frozen_backbone_runtime != "torch":
        raise ValueError(f"run.frozen_backbone_runtime must be 'torch' or 'ort', got {run.frozen_backbone_runtime!r}")
    vit_depth = config.model.depth if config.model.backbone == "vit" else None
    optimizer = build_optimizer(model, scaled_lr(config, info.world_size), config.optim.weight_decay,
                                config.optim.layer_decay, config.optim.betas, vit_depth, config.optim.lr_scale)
    s = config.schedule
    scheduler = build_scheduler(optimizer, iters_per_epoch, s.warmup_iters, s.warmup_ratio, s.milestones, s.gamma)
    use_amp = run.amp and info.device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    position = {"epoch": 0, "batch": 0, "iteration": 0, "best_metric": None, "best_epoch": None}
    ckpt = out / "last.pt" if resume == "auto" else (Path(resume) if resume else None)
    if ckpt is not None and (resume != "auto" or ckpt.is_file()):
        position = load_state(ckpt, model, optimizer, scheduler, scaler, info)
        if info.is_main:
            log.info("resumed from %s at epoch %d batch %d (iteration %d)", ckpt, position["epoch"],
                     position["batch"], position["iteration"])
    state = _Run(config, info, out, codec, dataset, model, D.wrap_model(model, info), optimizer, scheduler, scaler,
                 use_amp, iters_per_epoch, position, resumed=ckpt is not None)
    if info.is_main:
        from torch.utils.tensorboard import SummaryWriter
        state.writer = SummaryWriter(str(out / "tb"), purge_step=position["iteration"] or None)
        state.csv_log = CsvLog(out / "train_log.csv", position["iteration"] if state.resumed else None)
        log.info("model %s, %d iterations per epoch, %d epochs, lr %.3g (global batch %d), device %s, amp %s",
                 config.model.backbone, iters_per_epoch, s.epochs, scaled_lr(config, info.world_size),
                 config.data.batch_size * info.world_size, info.device, use_amp)
    return state


def run_frozen_in_ort(module: torch.nn.Module, input_size, path: Path, threads: int) -> None:
    """From now on ``module`` (every parameter frozen, no batch norm or dropout that trains)
    computes its forward in ONNX Runtime, from an export of it written to ``path``: the same
    function, without gradients (none would pass a frozen module whose input needs none).
    Its parameters and state_dict stay as they are, so checkpoints are unchanged."""
    import onnxruntime as ort

    from probpose_core.runtime.ort_runner import session_options

    trainable = [name for name, p in module.named_parameters() if p.requires_grad]
    if trainable:
        raise ValueError(f"run.frozen_backbone_runtime 'ort' needs the whole backbone frozen (optim.frozen); "
                         f"trainable: {', '.join(trainable[:3])}...")
    w, h = input_size
    path.parent.mkdir(parents=True, exist_ok=True)
    module.eval()
    torch.onnx.export(module, (torch.zeros(2, 3, h, w),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"], output_names=["features"],
                      dynamic_axes={"images": {0: "batch"}, "features": {0: "batch"}})
    session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])

    def forward(images: torch.Tensor) -> torch.Tensor:
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(session.run(["features"], {"images": array})[0]).to(images.device)

    module.forward = forward


def _step(state: _Run, batch: dict) -> tuple[dict, torch.Tensor, float, bool]:
    """One optimisation step on ``batch``: ``(losses, grad_norm, lr, stepped)``; a step with
    non-finite gradients is skipped (without AMP; the AMP scaler skips such steps itself)."""
    config = state.config
    with torch.autocast("cuda", dtype=torch.float16) if state.use_amp else nullcontext():
        outputs = state.net(batch["image"])
    losses = training_losses(outputs, batch, state.codec, config.loss)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(losses["total"]).backward()
    state.scaler.unscale_(state.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(state.model.parameters(), config.optim.grad_clip or math.inf)
    lr = max(g["lr"] for g in state.optimizer.param_groups)
    stepped = bool(torch.isfinite(grad_norm)) or state.use_amp
    if stepped:  # else: gradients are already averaged, so every process skips the same step
        state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    return losses, grad_norm, lr, stepped


def _log_step(state: _Run, losses: dict, grad_norm, lr: float, epoch: int, speed: float, bar) -> None:
    """Loss terms, lr, grad norm and speed to the CSV log, TensorBoard and the progress bar."""
    iteration = state.position["iteration"]
    values = _summary(losses, state.info)
    if not math.isfinite(values["total"]) and state.info.is_main:
        log.warning("non-finite loss at iteration %d: %s", iteration, values)
    if not state.info.is_main:
        return
    row = {"iteration": iteration, "epoch": epoch + 1, "lr": lr, **{f"loss_{k}": v for k, v in values.items()},
           "grad_norm": float(grad_norm), "samples_per_s": speed}
    state.csv_log.write(row)
    for k, v in row.items():
        if k not in ("iteration", "epoch"):
            state.writer.add_scalar(f"train/{k}", v, iteration)
    bar.set_postfix(loss=f"{values['total']:.4f}", lr=f"{lr:.2e}")


def _run_epoch(state: _Run, epoch: int, stop: StopFlag, stop_after: int | None) -> bool:
    """Train one epoch from the resumed batch on; True when interrupted (Ctrl-C or ``stop_after``)."""
    config, info, run, position = state.config, state.info, state.config.run, state.position
    start = position["batch"] if epoch == position["epoch"] else 0
    state.dataset.set_epoch(epoch)
    batches = epoch_batches(len(state.dataset), config.data.batch_size, run.seed, epoch, info)[:state.iters_per_epoch]
    loader = make_loader(state.dataset, batches[start:], config, epoch, info)
    state.net.train()
    replaced, bad_steps, tick, tick_iter = 0, 0, time.perf_counter(), position["iteration"]
    bar = tqdm(total=len(batches), initial=start, desc=f"epoch {epoch + 1}/{config.schedule.epochs}", leave=False,
               disable=not (info.is_main and run.progress), dynamic_ncols=True)
    interrupted = False
    try:
        for b, batch in enumerate(loader, start=start):
            replaced += int((batch["index"] != torch.as_tensor(batches[b])).sum())
            losses, grad_norm, lr, stepped = _step(state, _to_device(batch, info.device))
            bad_steps += not stepped
            position.update(epoch=epoch, batch=b + 1, iteration=position["iteration"] + 1)
            if position["iteration"] % max(1, run.log_every) == 0 or b + 1 == len(batches):
                now = time.perf_counter()
                speed = ((position["iteration"] - tick_iter) * config.data.batch_size * info.world_size
                         / max(now - tick, 1e-9))
                tick, tick_iter = now, position["iteration"]
                _log_step(state, losses, grad_norm, lr, epoch, speed, bar)
            bar.update(1)
            if _should_stop(stop.requested or (stop_after is not None and position["iteration"] >= stop_after), info):
                interrupted = True
                break
    except RuntimeError:
        if not stop.requested:  # DataLoader workers die on Ctrl-C too
            raise
        interrupted = True
    finally:
        bar.close()
        del loader
    if info.is_main and bad_steps:
        log.warning("epoch %d: %d steps skipped (non-finite gradients)", epoch + 1, bad_steps)
    if info.is_main and replaced + sum(state.dataset.skipped.values()):
        log.warning("epoch %d: %d samples replaced (unreadable images: %s)", epoch + 1, replaced,
                    dict(state.dataset.skipped) or "counted in workers")
    return interrupted


def _end_epoch(state: _Run, epoch: int) -> None:
    """After a finished epoch: ``last.pt``, and on validation epochs the score and ``best.pt``."""
    run, info, position = state.config.run, state.info, state.position
    position.update(epoch=epoch + 1, batch=0)
    last = state.checkpoint("last.pt")
    if run.val_every and ((epoch + 1) % run.val_every == 0 or epoch + 1 == state.config.schedule.epochs):
        score = None
        if info.is_main:  # the other processes wait for rank 0's score
            score = _validate_and_log(state.config, last, epoch + 1, state.writer, position["iteration"])
        score = D.broadcast_object(score, info)
        if position["best_metric"] is None or score > position["best_metric"]:
            position.update(best_metric=score, best_epoch=epoch + 1)
            state.checkpoint("last.pt")  # the best metric is part of the training state
            if info.is_main:
                shutil.copyfile(last, state.out / "best.pt")
                shutil.copyfile(state_path(last), state_path(state.out / "best.pt"))
    D.barrier(info)


def _train(config: TrainConfig, info: D.DistInfo, resume, stop_after) -> dict:
    state = _start(config, info, resume)
    position, out, interrupted = state.position, state.out, False
    with StopFlag() as stop:
        for epoch in range(position["epoch"], config.schedule.epochs):
            interrupted = _run_epoch(state, epoch, stop, stop_after)
            if interrupted:
                break
            _end_epoch(state, epoch)
    if interrupted:
        state.checkpoint("last.pt")
        if info.is_main:
            log.warning("interrupted at epoch %d, iteration %d: wrote %s (continue with --resume auto)",
                        position["epoch"] + 1, position["iteration"], out / "last.pt")
    if state.writer is not None:
        state.writer.close()
    return {"iteration": position["iteration"], "epoch": position["epoch"], "interrupted": interrupted,
            "best_metric": position["best_metric"], "last": str(out / "last.pt"),
            "best": str(out / "best.pt") if (out / "best.pt").exists() else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True, help="experiment YAML (training/configs/*.yaml)")
    parser.add_argument("--resume", help="checkpoint to continue (last.pt / best.pt) or 'auto'")
    parser.add_argument("--out", help="output folder (overrides run.out_dir)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set optim.lr=1e-4 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        config = load_config(args.config, args.overrides)
        if args.out:
            config.run.out_dir = str(Path(args.out).resolve())
        result = train(config, resume=args.resume)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # the second Ctrl-C: no checkpoint
        print("aborted (second Ctrl-C): last.pt is the one of the last finished epoch or interruption",
              file=sys.stderr)
        return INTERRUPTED
    return INTERRUPTED if result["interrupted"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
