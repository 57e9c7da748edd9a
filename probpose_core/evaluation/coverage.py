"""Coverage of published regions and ellipses on labelled data: ``probpose coverage``.

One pass of the pipeline over the GT boxes of a COCO keypoints set (:func:`collect_keypoints`)
gives, for every labelled keypoint inside its activation window that the model declares
present (``presence >= spec.presence_threshold``), its probability map, the published point,
the truth (heatmap coordinates) and its person's box. From those:

- :func:`fit_table`: the split-conformal :class:`conformal.CoverageTable` (the calibration
  step of ``training.calibrate``; the data MUST NOT be the data coverage is reported on);
- :func:`coverage_report`: per level, the fraction of truths inside the region published at
  that level (its actual pixel mask, :func:`regions.region_masks`, tested at the truth's
  sub-cell) and inside the level-q ellipse, overall, per keypoint group, per person-box size
  bucket and per box position (inside / at the image border), with ``n`` and the median region / ellipse area over the person box area; for the
  model's calibrated table ("calibrated") and for the raw Sparsemax credible sets with
  Gaussian ellipses ("raw", the uncalibrated reading);
- :func:`format_report` (the printed table) and :func:`plot_reliability` (stated level vs
  observed coverage, PNG).
"""
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import geometry
from ..conformal import (BORDER_NAMES, BOX_BUCKETS, DEFAULT_LEVELS, box_at_border, box_bucket, calibrate_table,
                         ellipse_scores, keypoint_groups, region_scores)
from ..errors import InputError
from ..regions import cell_index, gaussian_radius2, point_moment, region_masks

#: levels the raw (uncalibrated) regions are drawn at in the reliability plot
RAW_GRID = tuple(np.round(np.linspace(0.05, 0.95, 19), 10)) + (0.975,)
_CHUNK = 256  # keypoints per region_masks call (a dilated region is a 4x-finer mask)


@dataclass
class KeypointSamples:
    """Per labelled, in-window, present keypoint (M rows): ``maps (M, H, W)`` float32, the
    published ``point`` and the ``truth (M, 2)`` in heatmap pixels, ``keypoint (M,)`` index,
    the person's ``box (M, 4)`` xywh, its image's ``frame (M, 2)`` (W, H), ``cell_area (M,)``
    (image px^2 per heatmap pixel), ``people`` (instances read) and the model's ``num_keypoints``."""

    maps: np.ndarray
    point: np.ndarray
    truth: np.ndarray
    keypoint: np.ndarray
    box: np.ndarray
    frame: np.ndarray
    cell_area: np.ndarray
    people: int
    num_keypoints: int = 17

    def __len__(self) -> int:
        return len(self.keypoint)

    @property
    def box_area(self) -> np.ndarray:
        return self.box[:, 2] * self.box[:, 3]

    @staticmethod
    def concat(parts) -> "KeypointSamples":
        parts = list(parts)
        return KeypointSamples(*(np.concatenate([getattr(p, name) for p in parts]) for name in
                                 ("maps", "point", "truth", "keypoint", "box", "frame", "cell_area")),
                               people=sum(p.people for p in parts), num_keypoints=parts[0].num_keypoints)


def collect_keypoints(runner, spec, ann, images, flip_test: bool = False, progress: bool = True) -> KeypointSamples:
    """:class:`KeypointSamples` of the pipeline (``runner`` with ``spec``) on the GT boxes of
    ``ann`` / ``images``: crops as deployed (:meth:`Pipeline.crops`), points and presence as
    published (:meth:`Pipeline.humans`), truth and in-window flags from the codec's targets."""
    from ..calibration import _batches
    from ..data.instances import load_instances
    from ..pipeline import Pipeline, read_heatmaps
    from ..runtime.base import HEATMAP_OUTPUT, WIDE_OUTPUT

    images = Path(images)
    if not images.is_dir():
        raise InputError(f"images folder not found: {images}")
    instances, _ = load_instances(ann, images_dir=images)
    if not instances:
        raise InputError(f"{ann}: no instance with annotated keypoints and an image file")
    pipe = Pipeline(runner, spec=spec, flip_test=flip_test, credible_levels=())
    codec, (w, h) = pipe.codec, pipe.codec.heatmap_size
    parts = []
    for crops, center, scale, rows in _batches(instances, images, pipe, progress):
        out = pipe.infer(crops)
        if WIDE_OUTPUT in out:
            raise InputError("coverage of double-heatmap models is not supported (two maps per keypoint)")
        boxes = np.stack([instances[r].bbox for r in rows])
        frames = np.array([[instances[r].width, instances[r].height] for r in rows], dtype=np.float64)
        humans = pipe.humans(out, boxes, np.ones(len(rows)), center, scale)
        maps = read_heatmaps(codec, out[HEATMAP_OUTPUT], center, scale)[3] if HEATMAP_OUTPUT in out \
            else np.asarray(out["prob_maps"])
        kpts = np.stack([instances[r].keypoints for r in rows])
        targets = codec.encode(kpts[..., :2], kpts[..., 2].astype(np.int64), np.array([instances[r].area for r in rows]),
                               center, scale)
        arr = np.stack([hm.keypoint_array() for hm in humans])  # (N, K, 3) x, y, presence
        points = geometry.image_to_heatmap(arr[..., :2], center[:, None], scale[:, None], (w, h))
        keep = (np.asarray(targets["map_weights"]) > 0) & (arr[..., 2] >= pipe.presence_threshold)
        n_idx, k_idx = np.nonzero(keep)
        last = np.array([w - 1, h - 1], dtype=np.float64)
        cell = np.prod(scale / last, axis=1)
        parts.append(KeypointSamples(maps=np.asarray(maps, dtype=np.float32)[n_idx, k_idx], point=points[n_idx, k_idx],
                                     truth=np.asarray(targets["keypoints_map"], dtype=np.float64)[n_idx, k_idx],
                                     keypoint=k_idx, box=boxes[n_idx], frame=frames[n_idx],
                                     cell_area=cell[n_idx], people=len(rows), num_keypoints=keep.shape[1]))
    return KeypointSamples.concat(parts)


def sample_scores(samples: KeypointSamples) -> tuple[np.ndarray, np.ndarray]:
    """``(region scores (M,), ellipse scores (M,))`` (:mod:`conformal`) of the samples."""
    return region_scores(samples.maps, samples.truth), ellipse_scores(samples.maps, samples.point, samples.truth)


def fit_table(samples: KeypointSamples, levels=DEFAULT_LEVELS, by_bucket: bool = False, by_border: bool = True,
              data: str = ""):
    """The :class:`conformal.CoverageTable` of the samples (calibration data; see module docstring)."""
    if len(samples) == 0:
        raise InputError("no labelled in-window keypoint declared present: nothing to calibrate coverage on")
    region, ellipse = sample_scores(samples)
    return calibrate_table(region, ellipse, samples.keypoint, samples.box, samples.frame, levels,
                           keypoint_groups(samples.num_keypoints), by_bucket, by_border,
                           data=f"{data}; {len(samples)} keypoints of {samples.people} people")


def region_contains(samples: KeypointSamples, mass, dilation) -> tuple[np.ndarray, np.ndarray]:
    """``(inside (M,), area (M,) heatmap px^2)`` of the regions at mass level ``mass (M,)`` grown by
    ``dilation (M,)``: whether the truth's (sub-)cell is in the region's mask, and its area."""
    mass = np.broadcast_to(np.asarray(mass, dtype=np.float64), (len(samples),))
    dilation = np.broadcast_to(np.asarray(dilation, dtype=np.float64), (len(samples),))
    inside, area = np.zeros(len(samples), dtype=bool), np.zeros(len(samples))
    h, w = samples.maps.shape[1:]
    for s in range(0, len(samples), _CHUNK):
        sl = slice(s, s + _CHUNK)
        masks = region_masks(samples.maps[sl], mass[sl], dilation[sl])
        u = masks.shape[1] // h
        ix, iy = cell_index(samples.truth[sl], (w, h), u)
        on = ix >= 0
        inside[sl] = on & masks[np.arange(len(masks)), np.maximum(iy, 0), np.maximum(ix, 0)]
        area[sl] = masks.sum(axis=(1, 2)) / float(u * u)
    return inside, area


def _breakdown(hit, keypoint, box_area, at_border, groups) -> dict:
    """Coverage overall / per group / per size bucket / per box position, with n, of boolean ``hit (M,)``."""
    def share(pick):
        return {"coverage": float(hit[pick].mean()) if pick.any() else None, "n": int(pick.sum())}

    bucket = box_bucket(box_area)
    out = {"overall": share(np.ones(len(hit), dtype=bool))}
    out["groups"] = {g: share(np.isin(keypoint, ks)) for g, ks in groups.items()}
    out["buckets"] = {name: share(bucket == i) for i, name in enumerate(BOX_BUCKETS["names"])}
    out["position"] = {name: share(at_border == bool(i)) for i, name in enumerate(BORDER_NAMES)}
    return out


def _level_entry(samples, region_hit, region_area, ellipse_hit, ellipse_r2, moment_det, groups) -> dict:
    box = samples.box_area
    border = box_at_border(samples.box, samples.frame)
    entry = {"region": _breakdown(region_hit, samples.keypoint, box, border, groups),
             "ellipse": _breakdown(ellipse_hit, samples.keypoint, box, border, groups)}
    entry["region"]["median_area_over_box"] = float(np.median(region_area * samples.cell_area / box))
    ellipse_area = np.pi * ellipse_r2 * np.sqrt(np.clip(moment_det, 0, None)) * samples.cell_area
    entry["ellipse"]["median_area_over_box"] = float(np.median(ellipse_area / box))
    return entry


def coverage_report(samples: KeypointSamples, table=None, levels=None, raw_grid=RAW_GRID) -> dict:
    """Coverage numbers (module docstring) at ``levels`` (default: the table's, else
    :data:`conformal.DEFAULT_LEVELS`): ``{"calibrated": {q: entry} or None, "raw": {q: entry},
    "raw_curve": {q: region coverage} over raw_grid, "n": M, "people", "groups"}``."""
    if len(samples) == 0:
        raise InputError("no labelled in-window keypoint declared present: no coverage to report")
    levels = tuple(float(q) for q in (levels or (table.levels if table is not None else DEFAULT_LEVELS)))
    groups = table.groups if table is not None else keypoint_groups(samples.num_keypoints)
    ellipse = ellipse_scores(samples.maps, samples.point, samples.truth)
    det = np.linalg.det(point_moment(samples.maps, samples.point))
    rows = np.arange(len(samples))
    report = {"n": len(samples), "people": samples.people, "groups": {g: list(k) for g, k in groups.items()},
              "levels": list(levels), "raw": {}, "calibrated": None if table is None else {}}
    for q in levels:
        hit, area = region_contains(samples, q, 0.0)
        r2 = gaussian_radius2(q)
        report["raw"][q] = _level_entry(samples, hit, area, ellipse <= r2, np.full(len(samples), r2), det, groups)
        if table is not None:
            hit, area = region_contains(samples, *_per_keypoint(table, q, samples))
            r2k = table.ellipse_radius2(q, samples.box, samples.frame)[rows, samples.keypoint]
            report["calibrated"][q] = _level_entry(samples, hit, area, ellipse <= r2k, r2k, det, groups)
    report["raw_curve"] = {q: float(region_contains(samples, q, 0.0)[0].mean()) for q in raw_grid}
    return report


def _per_keypoint(table, q, samples) -> tuple[np.ndarray, np.ndarray]:
    """Mass level and dilation ``(M,)`` of each sample's own keypoint and box."""
    rows = np.arange(len(samples))
    mass, grow = table.region_params(q, samples.box, samples.frame)
    return mass[rows, samples.keypoint], grow[rows, samples.keypoint]


def _worst(part: dict) -> tuple[str, float, int]:
    """``(name, coverage, n)`` of the group, size bucket or box position with the lowest coverage."""
    items = [(f"{name}", v["coverage"], v["n"]) for kind in ("groups", "buckets", "position")
             for name, v in part[kind].items() if v["n"] > 0]
    return min(items, key=lambda kv: kv[1]) if items else ("-", float("nan"), 0)


def _share(part: dict) -> str:
    return "-" if part["coverage"] is None else f"{part['coverage']:.3f} ({part['n']})"


#: the printed name of each reading
READINGS = {"calibrated": "calibrated", "raw": "raw map (uncalibrated)"}


def format_report(report: dict, title: str = "", breakdown: bool = True) -> str:
    """The printed table: per reading (calibrated / raw map), level and kind (region / ellipse) the
    overall coverage, each group's, bucket's and box position's (with n; ``breakdown`` False: only
    the worst of them) and the median area / box area."""
    groups = list(report["groups"])
    buckets = list(BOX_BUCKETS["names"])
    lines = [title] if title else []
    lines.append(f"{report['n']} labelled in-window keypoints declared present, {report['people']} people")
    parts = groups + buckets + list(BORDER_NAMES) if breakdown else ["worst group / size / position"]
    head = ["reading", "level", "kind", "overall"] + parts + ["area/box"]
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    for reading, name in READINGS.items():
        if report[reading] is None:
            lines.append(f"| {name} | - | - | model has no coverage table (uncalibrated coverage) |")
            continue
        for q, entry in report[reading].items():
            for kind in ("region", "ellipse"):
                e = entry[kind]
                cells = [name, f"{q:g}", kind, f"{e['overall']['coverage']:.3f} (n {e['overall']['n']})"]
                if breakdown:
                    cells += [_share(e["groups"][g]) for g in groups] + [_share(e["buckets"][b]) for b in buckets]
                    cells += [_share(e["position"][p]) for p in BORDER_NAMES]
                else:
                    worst, share, n = _worst(e)
                    cells.append(f"{worst} {share:.3f} (n {n})")
                cells.append(f"{e['median_area_over_box']:.4f}")
                lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_reliability(report: dict, path, title: str = "Coverage of published regions") -> Path:
    """Stated level vs observed coverage (PNG): calibrated regions and ellipses (with the worst
    group / bucket per level), the raw Sparsemax regions over a grid and the raw Gaussian ellipses."""
    from ..calibration import _figure, _save

    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], "--", color="grey", label="stated = observed")
    ax.fill_between([0, 1], [-0.03, 0.97], [0.03, 1.03], color="grey", alpha=0.15, label="+-0.03")
    curve = report["raw_curve"]
    ax.plot(list(curve), list(curve.values()), "o-", ms=3, color="C3", label="raw Sparsemax regions")
    raw = report["raw"]
    ax.plot(list(raw), [e["ellipse"]["overall"]["coverage"] for e in raw.values()], "x:", color="C1",
            label="raw Gaussian ellipses")
    if report["calibrated"]:
        cal = report["calibrated"]
        qs = list(cal)
        ax.plot(qs, [e["region"]["overall"]["coverage"] for e in cal.values()], "s-", color="C0",
                label="calibrated regions")
        ax.plot(qs, [_worst(e["region"])[1] for e in cal.values()], "v", color="C0", alpha=0.6,
                label="calibrated regions, worst group / bucket")
        ax.plot(qs, [e["ellipse"]["overall"]["coverage"] for e in cal.values()], "D-", ms=4, color="C2",
                label="calibrated ellipses")
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="stated level q", ylabel="fraction of truths inside", title=title)
    ax.set_aspect("equal")
    ax.legend(loc="lower right", fontsize=7)
    return _save(fig, path)


def run_coverage(images, ann, model="", runtime: str = "ort", out=None, levels=None, flip_test: bool = False,
                 progress: bool = True) -> dict:
    """``probpose coverage``: collect, report, print, and with ``out`` write coverage.json and
    coverage_reliability.png there. Returns the report."""
    from ..jsonio import dump_json
    from ..runtime import as_runner
    from ..spec import model_spec

    runner = as_runner(model, runtime)
    spec = model_spec(runner)
    samples = collect_keypoints(runner, spec, ann, images, flip_test=flip_test, progress=progress)
    report = coverage_report(samples, spec.coverage, levels)
    title = f"coverage on {ann} ({'calibrated' if spec.coverage_calibrated else 'UNCALIBRATED: no coverage table'})"
    print(format_report(report, title))
    if out is not None:
        out = Path(out)
        dump_json(report, out / "coverage.json")
        path = plot_reliability(report, out / "coverage_reliability.png", title=f"Coverage: {Path(str(ann)).name}")
        print(f"wrote {out / 'coverage.json'} and {path}", file=sys.stderr)
    return report
