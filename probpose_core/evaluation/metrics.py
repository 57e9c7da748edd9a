"""``evaluate``: mAP and Ex-mAP of keypoint predictions as one flat dict; ``format_table``."""
import math

from ..errors import InputError
from ..geometry import PADDING
from .cocoeval import METRICS, coco_stats, extended_terms, standard_similarity
from ..spec import DEFAULT_PRESENCE_THRESHOLD
from .exoks import ex_oks_from_terms
from .instances import prepare
from .threshold import search_presence_threshold

EX_METRICS = tuple("Ex-" + name for name in METRICS)

_DESCRIPTIONS = {
    "AP": ("0.50:0.95", "all"), "AP50": ("0.50", "all"), "AP75": ("0.75", "all"),
    "APm": ("0.50:0.95", "medium"), "APl": ("0.50:0.95", "large"),
    "AR": ("0.50:0.95", "all"), "AR50": ("0.50", "all"), "AR75": ("0.75", "all"),
    "ARm": ("0.50:0.95", "medium"), "ARl": ("0.50:0.95", "large"),
}


def _check_options(presence_threshold, padding) -> None:
    if presence_threshold != "best":
        if (isinstance(presence_threshold, bool) or not isinstance(presence_threshold, (int, float))
                or not 0.0 <= presence_threshold <= 1.0):
            raise InputError(f"presence threshold must lie in [0, 1] or be 'best', got {presence_threshold!r}")
    if not isinstance(padding, (int, float)) or not math.isfinite(padding) or padding < 1.0:
        raise InputError(f"padding must be a number >= 1, got {padding!r}")


def evaluate(gt: dict, preds: list, extended: bool = False,
             presence_threshold=DEFAULT_PRESENCE_THRESHOLD, padding: float = PADDING) -> dict:
    """COCO keypoint metrics of ``preds`` (from load_predictions) against ``gt`` (from load_gt).

    Always: AP, AP50, AP75, APm, APl, AR, AR50, AR75, ARm, ARl with COCO OKS, equal to
    pycocotools. With ``extended``: also the same ten as Ex-AP, ... (Ex-OKS, equal to
    exococotools with ``extended_oks=True, confidence_thr=presence_threshold, padding=padding``)
    and ``presence_threshold``, the one used (with "best": the one found by the search in
    threshold.py). Undefined entries (no GT in an area range) are -1.0, as in the references.
    """
    _check_options(presence_threshold, padding)
    standard = prepare(gt, preds, extended=False)
    results = coco_stats(standard, standard_similarity(standard))
    if not extended:
        return results
    ex = prepare(gt, preds, extended=True, padding=padding)
    terms = extended_terms(ex, padding)
    if presence_threshold == "best":
        threshold, stats, _ = search_presence_threshold(ex, terms)
    else:
        threshold = float(presence_threshold)
        stats = coco_stats(ex, ex_oks_from_terms(terms, threshold))
    results.update({"Ex-" + name: stats[name] for name in METRICS})
    results["presence_threshold"] = threshold
    return results


def _cell(value) -> str:
    return "    n/a" if value is None or value == -1 else f"{value:7.4f}"


def format_table(results: dict) -> str:
    """An aligned terminal table of ``evaluate``'s results (n/a: no GT in that area range)."""
    extended = "Ex-AP" in results
    header = f"{'metric':<6}  {'OKS':<9}  {'area':<6}  {'COCO':>7}"
    if extended:
        header += f"  {'Ex-OKS':>7}"
    lines = [header, "-" * len(header)]
    for name in METRICS:
        oks, area = _DESCRIPTIONS[name]
        line = f"{name:<6}  {oks:<9}  {area:<6}  {_cell(results.get(name))}"
        if extended:
            line += f"  {_cell(results.get('Ex-' + name))}"
        lines.append(line)
    if extended:
        lines.append(f"presence threshold: {results['presence_threshold']:.4g}")
    return "\n".join(lines)
