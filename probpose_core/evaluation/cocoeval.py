"""The COCO keypoint protocol: match, accumulate, summarize (AP, AP50, AP75, APm, APl, AR...).

Parameters are pycocotools' keypoint defaults: OKS thresholds .50:.05:.95, 101 recall
thresholds, at most 20 predictions per image, area ranges all / medium (32^2..96^2) /
large (> 96^2) by GT ``area`` (bounds inclusive). Precision is interpolated (the running max
from the right) and read at the recall thresholds; entries with no GT are -1 and left out of
the means, a summary with nothing defined is -1, as in the reference.

The similarity of the pairs comes from outside (``standard_similarity`` = COCO OKS,
exoks.ex_oks_from_terms = Ex-OKS), so the Ex-mAP threshold search only re-runs match + accumulate.
"""
import numpy as np

from ..geometry import PADDING
from .exoks import ExOksTerms, ex_oks_terms
from .instances import EvalSet
from .matching import greedy_match
from ..oks import instance_oks

OKS_THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
AREA_RANGES = ((0.0, 1e5 ** 2), (32.0 ** 2, 96.0 ** 2), (96.0 ** 2, 1e5 ** 2))  # all, medium, large
METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")


def standard_similarity(es: EvalSet) -> np.ndarray:
    """COCO OKS (P,) of the pairs of ``es``."""
    return instance_oks(es.gt_keypoints[es.pair_gt], es.gt_bbox[es.pair_gt], es.gt_area[es.pair_gt],
                        es.dt_keypoints[es.pair_dt, :, :2])


def extended_terms(es: EvalSet, padding: float = PADDING) -> ExOksTerms:
    """Threshold-independent Ex-OKS terms of the pairs of ``es`` (see exoks)."""
    return ex_oks_terms(es.gt_keypoints[es.pair_gt], es.gt_bbox[es.pair_gt], es.gt_area[es.pair_gt],
                        es.dt_keypoints[es.pair_dt], padding)


def _outside(area: np.ndarray) -> np.ndarray:
    """(A, n): True where ``area (n,)`` lies outside each area range."""
    lo, hi = np.array(AREA_RANGES).T
    return (area[None] < lo[:, None]) | (area[None] > hi[:, None])


def match_flags(es: EvalSet, pair_sim: np.ndarray):
    """True positives and false positives (A, T, ND) and GT ignore flags (A, NG)."""
    gt_ignore = es.gt_ignore[None] | _outside(es.gt_area)
    matched_to = greedy_match(pair_sim, es.pair_dt, es.pair_gt, es.dt_group, es.dt_rank, es.gt_group,
                              es.gt_pos, es.gt_crowd, gt_ignore, es.num_groups, OKS_THRESHOLDS)
    # index -1 (unmatched) reads an appended sentinel GT that neither counts nor is ignored
    counts = np.append(es.gt_counts, False)[matched_to]
    sentinel_ignore = np.pad(gt_ignore, ((0, 0), (0, 1)))
    dt_ignore = np.take_along_axis(sentinel_ignore[:, None, :], matched_to, axis=2)
    dt_ignore |= ~counts & _outside(es.dt_area)[:, None, :]
    if es.extended:
        # exococotools ignores every prediction of a group whose GTs are all ignored (or absent).
        kept_gt = np.zeros((len(AREA_RANGES), es.num_groups), dtype=np.int64)
        np.add.at(kept_gt, (slice(None), es.gt_group), ~gt_ignore)
        dt_ignore |= (kept_gt == 0)[:, None, es.dt_group]
    return counts & ~dt_ignore, ~counts & ~dt_ignore, gt_ignore


def accumulate(es: EvalSet, tp: np.ndarray, fp: np.ndarray, gt_ignore: np.ndarray):
    """Precision (T, R, C, A) and recall (T, C, A) per category C; -1 where undefined."""
    n_t, n_r, n_a = len(OKS_THRESHOLDS), len(RECALL_THRESHOLDS), len(AREA_RANGES)
    precision = -np.ones((n_t, n_r, es.num_categories, n_a))
    recall = -np.ones((n_t, es.num_categories, n_a))
    dt_category = es.group_category[es.dt_group]
    gt_category = es.group_category[es.gt_group]
    for c in range(es.num_categories):
        rows = np.flatnonzero(dt_category == c)
        order = rows[np.argsort(-es.dt_score[rows], kind="mergesort")]
        for a in range(n_a):
            npig = np.count_nonzero(~gt_ignore[a, gt_category == c])
            if npig == 0:
                continue
            tp_sum = np.cumsum(tp[a][:, order], axis=1).astype(np.float64)
            fp_sum = np.cumsum(fp[a][:, order], axis=1).astype(np.float64)
            nd = len(order)
            rc = tp_sum / npig
            pr = tp_sum / (fp_sum + tp_sum + np.spacing(1))
            recall[:, c, a] = rc[:, -1] if nd else 0
            if nd == 0:
                precision[:, :, c, a] = 0
                continue
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]
            for t in range(n_t):
                at = np.searchsorted(rc[t], RECALL_THRESHOLDS, side="left")
                precision[t, :, c, a] = np.where(at < nd, pr[t, np.minimum(at, nd - 1)], 0)
    return precision, recall


def _mean_defined(values: np.ndarray) -> float:
    defined = values[values > -1]
    return -1.0 if defined.size == 0 else float(np.mean(defined))


def summarize(precision: np.ndarray, recall: np.ndarray) -> dict:
    """The ten COCO keypoint numbers as a flat dict (METRICS order)."""
    t50 = np.flatnonzero(OKS_THRESHOLDS == 0.5)
    t75 = np.flatnonzero(OKS_THRESHOLDS == 0.75)
    out = {}
    for prefix, arr in (("AP", precision), ("AR", recall)):
        out[prefix] = _mean_defined(arr[..., 0])
        out[prefix + "50"] = _mean_defined(arr[t50][..., 0])
        out[prefix + "75"] = _mean_defined(arr[t75][..., 0])
        out[prefix + "m"] = _mean_defined(arr[..., 1])
        out[prefix + "l"] = _mean_defined(arr[..., 2])
    return {name: out[name] for name in METRICS}


def coco_stats(es: EvalSet, pair_sim: np.ndarray) -> dict:
    """Match, accumulate and summarize ``es`` with the pair similarities ``pair_sim`` (P,)."""
    tp, fp, gt_ignore = match_flags(es, pair_sim)
    return summarize(*accumulate(es, tp, fp, gt_ignore))
