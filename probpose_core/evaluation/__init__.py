"""Evaluation: OKS, Ex-OKS and the COCO keypoint protocol (mAP and Ex-mAP).

An independent numpy implementation that reproduces two references number for number
(checked to 1e-9 by test/test_cross_check.py; neither is imported here):

- **mAP** (``probpose eval`` without ``--extended``) = pycocotools ``COCOeval(iouType='keypoints')``.
  Its conventions, kept on purpose: a GT ``v = 3`` (outside the image) is scored like any
  labelled keypoint (pycocotools only asks ``v > 0``); a GT is ignored when ``iscrowd`` or its
  ``num_keypoints`` field is 0 (the field, not the keypoints); a GT with no labelled keypoint
  scores the distance to its doubled bbox; a match to a GT whose ``id`` is 0 counts as no match
  (pycocotools marks "unmatched" with 0). Presence values play no part.
- **Ex-mAP** (``--extended``) = exococotools 1.0.0 ``COCOeval(..., extended_oks=True,
  confidence_thr=T, padding=P)``, overall numbers (its per-visibility 'AP (v=k)' lines are not
  reproduced). Its conventions, kept on purpose: Ex-OKS as in exoks.py; a GT is ignored only when
  it has no labelled keypoint, so crowds count as GTs (that can match many predictions);
  predictions with no presence > 0 are dropped; in an image (and area range) whose GTs are all
  ignored or absent, every prediction is ignored rather than a false positive; a match to a GT
  with a negative ``id`` counts as no match; ``pad_to_contain`` is honoured.

Shared protocol (cocoeval.py): OKS thresholds .50:.05:.95, 101 recall points, 20 predictions
per image, area ranges all/medium/large by GT area, score ties broken by file order (stable).

Modules: exoks (Ex-OKS), instances (GT/predictions as arrays), matching (greedy matching),
cocoeval (accumulate/summarize), threshold (presence threshold search), predictions (results
files), metrics (evaluate, format_table), areas (A-E). The OKS formula and COCO instance OKS
are one level up, in ``probpose_core.oks`` (the codec and the losses use them too).
"""
from ..data.coco import load_coco as load_gt
from .metrics import EX_METRICS, evaluate, format_table
from .cocoeval import METRICS
from .predictions import load_predictions, validate_predictions

__all__ = ["load_gt", "load_predictions", "validate_predictions", "evaluate", "format_table",
           "METRICS", "EX_METRICS"]
