"""PNG plots of an evaluation: presence reliability, map coverage, Ex-AP vs presence threshold."""
from pathlib import Path

import numpy as np

from probpose_core.calibration import _figure, _save, plot_coverage_curve, plot_reliability


def plot_threshold_curve(curve, path, best: float, model_threshold: float,
                         title: str = "Ex-AP vs presence threshold") -> Path:
    """Ex-AP over the tried presence thresholds ``curve`` ([threshold, Ex-AP] pairs), with the
    best threshold and the model's own marked; PNG."""
    data = np.asarray(curve, dtype=np.float64).reshape(-1, 2)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(data[:, 0], data[:, 1], "-", marker="o", markersize=2, label="Ex-AP")
    ax.axvline(best, color="C2", linestyle="--", label=f"best {best:.3g}")
    ax.axvline(model_threshold, color="C3", linestyle=":", label=f"model's {model_threshold:.3g}")
    ax.set(xlim=(0, 1), xlabel="presence threshold", ylabel="Ex-AP", title=title)
    ax.legend(loc="lower left", fontsize=8)
    return _save(fig, path)


def write_plots(metrics: dict, outputs: dict, out_dir) -> list[Path]:
    """The evaluation plots into ``out_dir``: ``presence_reliability.png`` (GT-instance
    presence vs presence target), ``map_coverage.png`` (only for probability-map models) and
    ``presence_threshold.png``. ``outputs``: arrays from ``evaluate.gt_outputs`` (None: no
    GT instance with keypoints, only the threshold curve)."""
    out_dir = Path(out_dir)
    written = []
    if outputs is not None:
        annotated = outputs["keypoint_weights"] > 0
        written.append(plot_reliability(outputs["presence"][annotated], outputs["presence_target"][annotated],
                                        out_dir / "presence_reliability.png",
                                        title="Presence vs GT inside the activation window"))
    maps = (metrics.get("calibration") or {}).get("maps")
    if maps and maps["calibration_error"] is not None:
        coverage = np.array([np.nan if c is None else c for c in maps["coverage"]])
        written.append(plot_coverage_curve(coverage, out_dir / "map_coverage.png", grid=maps["grid"]))
    written.append(plot_threshold_curve(metrics["presence_threshold_curve"], out_dir / "presence_threshold.png",
                                        metrics["presence_threshold"], metrics["checkpoint_presence_threshold"]))
    return written
