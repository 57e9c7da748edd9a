"""Object Keypoint Similarity, the one formula used by codec, losses and evaluation.

COCO: ``OKS_k = exp(-d_k^2 / (2 * area * (2 sigma_k)^2))`` with ``area`` the instance area
(segmentation area in COCO, in the same units as ``d``) and sigmas from keypoints.SIGMAS.
"""
import numpy as np

from ..keypoints import SIGMAS


def oks_exponent(sq_dist, area, sigmas=SIGMAS):
    """``d^2 / (2 area (2 sigma)^2)``, broadcasting ``sq_dist`` (..., K) against sigmas (K,).

    ``area`` broadcasts against ``sq_dist``; the tiny ``np.spacing(1)`` guard is COCO's.
    Works on numpy arrays and (via operator overloading) torch tensors.
    """
    variances = (2 * np.asarray(sigmas, dtype=np.float64)) ** 2
    return sq_dist / variances / (area + np.spacing(1)) / 2


def keypoint_oks(sq_dist, area, sigmas=SIGMAS):
    """Per-keypoint OKS ``exp(-oks_exponent)`` for squared distances ``(..., K)``."""
    return np.exp(-oks_exponent(sq_dist, area, sigmas))
