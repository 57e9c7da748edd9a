"""Run the reference evaluators (test dependencies only): pycocotools and exococotools 1.0.0.

Workarounds for exococotools (FACTS.md): its ``mask.py`` imports ``ExCocotools._mask``, so the
extension is registered under that name first; its ``_prepare`` indexes per-visibility flags by
the visibility value and crashes unless the GT's levels are exactly {1, 2, 3}, so the levels are
pinned to [1, 2, 3] (only the per-visibility lines depend on them; the overall numbers compared
here do not). Both print progress to stdout, which is swallowed.
"""
import contextlib
import copy
import io
import sys
import types
import warnings

METRICS = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
_EXO_NAMES = ("AP", "AP .5", "AP .75", "AP (M)", "AP (L)", "AR", "AR .5", "AR .75", "AR (M)", "AR (L)")


@contextlib.contextmanager
def _quiet():
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def pycocotools_stats(gt: dict, preds: list) -> dict:
    """pycocotools COCOeval('keypoints') stats of a validated GT dict and predictions."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        if preds:
            coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        else:  # loadRes([]) raises IndexError in pycocotools 2.0.x
            coco_dt = COCO()
            coco_dt.dataset = {"images": list(gt["images"]), "categories": list(gt["categories"]),
                               "annotations": []}
            coco_dt.createIndex()
        ev = COCOeval(coco_gt, coco_dt, "keypoints")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return {name: float(v) for name, v in zip(METRICS, ev.stats)}


def _exococotools():
    import exococotools
    import exococotools._mask as mask_ext

    if "ExCocotools._mask" not in sys.modules:
        alias = types.ModuleType("ExCocotools")
        alias._mask = mask_ext
        sys.modules["ExCocotools"] = alias
        sys.modules["ExCocotools._mask"] = mask_ext
    from exococotools.coco import COCO
    from exococotools.cocoeval import COCOeval

    class _Levels(list):
        def update(self, _values):  # _prepare collects the levels with set.update
            pass

    class PinnedLevelsEval(COCOeval):
        gt_visibilities = property(lambda self: _Levels([1, 2, 3]), lambda self, value: None)

    return exococotools, COCO, PinnedLevelsEval


def exococotools_stats(gt: dict, preds: list, presence_threshold: float, padding: float = 1.25) -> dict:
    """exococotools COCOeval(extended_oks=True) overall stats."""
    _, COCO, COCOeval = _exococotools()
    with _quiet():
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(copy.deepcopy(preds))
        ev = COCOeval(coco_gt, coco_dt, "keypoints", extended_oks=True, confidence_thr=presence_threshold,
                      padding=padding)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    named = dict(zip(ev.stats_names, ev.stats))
    return {name: float(named[ref]) for name, ref in zip(METRICS, _EXO_NAMES)}
