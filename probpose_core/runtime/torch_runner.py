"""TorchRunner: the PyTorch model itself behind the Runner protocol (reference and training-side use)."""
import numpy as np
import torch

from .base import DEFAULT_MAX_BATCH, check_outputs, run_in_chunks, validate_images


class TorchRunner:
    """Run a ``PoseModel`` (or any module with the same ``forward`` contract) in eval mode.

    ``device`` defaults to the model's; ``threads`` sets ``torch.set_num_threads`` (process-wide,
    so only when asked); ``meta`` is the checkpoint meta (temperature, presence threshold, ...);
    ``return_logits`` adds ``map_logits`` (before the temperature, for calibration).
    Outputs come back as float32 numpy arrays.
    """

    name = "torch"

    def __init__(self, model: torch.nn.Module, device=None, max_batch: int = DEFAULT_MAX_BATCH, threads=None,
                 meta=None, return_logits: bool = False):
        self.model = model.eval()
        param = next(model.parameters(), None)
        self.device = torch.device(device) if device is not None else (param.device if param is not None
                                                                       else torch.device("cpu"))
        self.model.to(self.device)
        self.input_size = tuple(int(v) for v in model.config.input_size)
        self.max_batch = int(max_batch)
        self.meta = dict(meta or {})
        self.return_logits = bool(return_logits)
        if threads:
            torch.set_num_threads(int(threads))

    def _run_batch(self, images: np.ndarray) -> dict:
        with torch.inference_mode():
            out = self.model(torch.from_numpy(images).to(self.device), return_logits=self.return_logits)
        return check_outputs({k: v.float().cpu().numpy() for k, v in out.items()}, len(images), "the torch model")

    def run(self, images: np.ndarray) -> dict:
        """images: (N, 3, H, W) float32 -> the model's named outputs as numpy arrays."""
        return run_in_chunks(self._run_batch, validate_images(images, self.input_size), self.max_batch)
