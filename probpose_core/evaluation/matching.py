"""COCO's greedy matching of predictions to GT instances, for all groups, area ranges and
similarity thresholds at once.

Per group and threshold t, predictions are taken by rank (highest score first); each one
takes, among the GT instances still free (a crowd is never used up) with similarity >= t,
the best non-ignored one (the *last* in file order among equal bests, as pycocotools' scan
does); only when no non-ignored GT qualifies may it take an ignored one (same rule). This is
the reference loop, vectorised over (area range, threshold, group); only the rank loop
(at most MAX_DETS steps) stays in Python.
"""
import numpy as np


def _last_best(candidate: np.ndarray, sim: np.ndarray):
    """Index of the last maximum of ``sim`` where ``candidate`` (..., G), and whether any exists."""
    values = np.where(candidate, sim, -np.inf)
    best = values.max(axis=-1, keepdims=True)
    at_best = candidate & (sim == best)
    size = candidate.shape[-1]
    return size - 1 - np.argmax(at_best[..., ::-1], axis=-1), candidate.any(axis=-1)


def greedy_match(pair_sim, pair_dt, pair_gt, dt_group, dt_rank, gt_group, gt_pos, gt_crowd,
                 gt_ignore, num_groups: int, thresholds) -> np.ndarray:
    """Match predictions to GT instances.

    pair_sim: (P,) similarity of the pairs (pair_dt, pair_gt); dt_group/dt_rank: (ND,);
    gt_group/gt_pos/gt_crowd: (NG,); gt_ignore: (A, NG) per area range; thresholds: (T,).
    Returns (A, T, ND): the GT index each prediction is matched to, or -1.
    """
    thresholds = np.minimum(np.asarray(thresholds, dtype=np.float64), 1 - 1e-10)
    gt_ignore = np.asarray(gt_ignore, dtype=bool)
    n_areas, n_thr, n_dt = gt_ignore.shape[0], len(thresholds), len(dt_group)
    result = np.full((n_areas, n_thr, n_dt), -1, dtype=np.int64)
    if n_dt == 0 or len(gt_group) == 0:
        return result
    size_g = int(gt_pos.max()) + 1
    size_d = int(dt_rank.max()) + 1

    sim = np.full((num_groups, size_d, size_g), -np.inf)
    sim[dt_group[pair_dt], dt_rank[pair_dt], gt_pos[pair_gt]] = pair_sim
    valid = np.zeros((num_groups, size_g), dtype=bool)
    valid[gt_group, gt_pos] = True
    crowd = np.zeros((num_groups, size_g), dtype=bool)
    crowd[gt_group, gt_pos] = gt_crowd
    ignored = np.ones((n_areas, 1, num_groups, size_g), dtype=bool)
    ignored[:, 0, gt_group, gt_pos] = gt_ignore
    gt_index = np.full((num_groups, size_g), -1, dtype=np.int64)
    gt_index[gt_group, gt_pos] = np.arange(len(gt_group))

    used = np.zeros((n_areas, n_thr, num_groups, size_g), dtype=bool)
    chosen = np.full((n_areas, n_thr, num_groups, size_d), -1, dtype=np.int64)
    thr = thresholds[None, :, None, None]
    dt_count = np.bincount(dt_group, minlength=num_groups)
    for rank in range(size_d):
        active = np.flatnonzero(dt_count > rank)  # groups with a prediction of this rank
        s = sim[None, None, active, rank, :]
        ok = valid[active] & (~used[:, :, active] | crowd[active]) & (s >= thr)
        kept = ok & ~ignored[:, :, active]
        candidate = np.where(kept.any(axis=-1, keepdims=True), kept, ok & ignored[:, :, active])
        best, found = _last_best(candidate, s)
        m = np.where(found, best, -1)
        chosen[:, :, active, rank] = m
        a, t, n = np.nonzero(m >= 0)
        used[a, t, active[n], m[a, t, n]] = True
    pos = chosen[:, :, dt_group, dt_rank]
    return np.where(pos >= 0, gt_index[dt_group, np.maximum(pos, 0)], -1)
