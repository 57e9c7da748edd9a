"""Presence-threshold search: the threshold that gives the best Ex-mAP.

Ex-OKS depends on the threshold only through which keypoints count as present, so the
result is piecewise constant and changes only at the presence values themselves. The search
tries the grid 0.00, 0.05, ..., 1.00 and, when there are at most ``MAX_EXACT_VALUES`` distinct
presence values (clipped to [0, 1]), every one of them too (then the search is exact). It keeps
the highest Ex-AP; ties go to the threshold closest to the official 0.45, then to the lower one.
"""
import numpy as np

from .cocoeval import coco_stats
from ..spec import DEFAULT_PRESENCE_THRESHOLD
from .exoks import ExOksTerms, ex_oks_from_terms
from .instances import EvalSet

GRID = np.round(np.arange(21) * 0.05, 2)
MAX_EXACT_VALUES = 100


def candidate_thresholds(presence) -> np.ndarray:
    """Sorted candidate thresholds for the presence values ``presence (...)``."""
    values = np.unique(np.clip(np.asarray(presence, dtype=np.float64).ravel(), 0, 1))
    if len(values) <= MAX_EXACT_VALUES:
        return np.union1d(GRID, values)
    return GRID.copy()


def _preference(threshold: float, ex_ap: float):
    return (ex_ap, -abs(threshold - DEFAULT_PRESENCE_THRESHOLD), -threshold)


def search_presence_threshold(es: EvalSet, terms: ExOksTerms, candidates=None):
    """Best threshold for an extended EvalSet and its pair terms.

    Returns ``(threshold, stats, curve)``: the chosen threshold, its COCO stats dict and
    ``curve`` = list of (threshold, Ex-AP) for every candidate tried.
    """
    if candidates is None:
        candidates = candidate_thresholds(es.dt_keypoints[..., 2])
    best = None
    curve = []
    for thr in candidates:
        thr = float(thr)
        stats = coco_stats(es, ex_oks_from_terms(terms, thr))
        curve.append((thr, stats["AP"]))
        if best is None or _preference(thr, stats["AP"]) > _preference(best[0], best[1]["AP"]):
            best = (thr, stats)
    return best[0], best[1], curve
