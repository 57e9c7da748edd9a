"""The top-down pipeline: frame -> detector -> crops -> runner -> decode -> ``Human`` list.

Built from one :class:`spec.ModelSpec` (read from the runner's checkpoint meta or ONNX
sidecar by :func:`spec.model_spec`): the codec (crop and map size, sigmas, padding), the
presence threshold and ``heatmap_only`` come from it unless the caller overrides them.

Steps, each reusing the one implementation in the house:

1. crops: every box's activation window (:func:`geometry.bbox_to_center_scale`, 3:4, the
   codec's padding) resampled with :func:`geometry.warp_crop` (UDP, bilinear, black border)
   and normalised (:func:`geometry.normalise`, RGB, 0-255) into ONE ``(N, 3, H, W)`` float32
   batch of the codec's input size.
2. the runner sees that batch in chunks of at most ``max_batch`` (the smaller of the
   pipeline's and the runner's limit; :func:`runtime.base.run_in_chunks`): more people are
   split, never dropped. Optional flip test: the mirrored batch runs too and
   :func:`codec.flip_merge` averages maps and scores.
3. :meth:`ProbMapCodec.decode` (expected-OKS by default) with the instance area
   ``area_factor * w * h`` of each box (0.53, as exococotools), the covariance (the map's
   second moment about the published point, :func:`regions.covariance_ellipse`), and
   credible-region outlines from :func:`regions.keypoint_regions` (all maps of a frame in one
   batch per level, ~0.03 ms per map and level for compact maps; a region grown by a
   calibrated dilation costs more), computed only at the configured ``credible_levels`` and
   only for keypoints with ``presence >= presence_threshold`` (the others get
   ``regions == {}``); ``credible_levels=()`` turns them off. Double-heatmap models (a
   ``wide_prob_maps`` output) are read by :func:`codec.read_double`: the wide map (2x window)
   decides, the expert map refines where the wide point falls inside the activation window;
   covariance and outlines come from the map that gave the point, so a published region
   always belongs to the published point. With the model's coverage table
   (``spec.coverage``, :mod:`conformal`) the region at level q is the calibrated one (mass
   level and dilation per keypoint group / box bucket) and a level outside the table is an
   InputError; without it the raw credible sets are published, ``regions_calibrated`` is
   False and a warning says so. The maps are taken as calibrated: the calibration
   temperature is applied by the model before Sparsemax, the pipeline does not touch map
   values.
   Heatmap-baseline models (``map_kind="heatmap"``: a ``heatmaps`` output instead of
   ``prob_maps``) are read by :func:`codec.read_heatmaps`: decoded with ``method="udp"`` whatever
   ``decode_method`` says, presence = the map maximum clipped to [0, 1], oks_quality = the
   UDP confidence (map value at the decoded pixel) clipped to [0, 1] (their OKS-quality branch
   is untrained), and covariance / credible regions from the heatmap made a distribution
   (negative values set to 0, divided by the sum; an all-zero map counts as uniform).
4. ``Human(bbox, score, keypoints, box_score)`` in image coordinates. The pose ``score`` is
   ``box_score * sum(presence * sqrt(oks_quality * expected_oks)) / sum(presence)`` (the plain
   mean when every presence is 0): two estimates of each keypoint's OKS -- the OKS-quality
   head's and the decode's own, the expected OKS of the decoded point under its map
   (``codec.decode``'s confidence; a heatmap model's is its presence) -- combined by their
   geometric mean, and weighting by presence counts each keypoint as likely as it is to be
   there, so the score estimates the pose's OKS, which is what COCO-style ranking needs. It
   does not depend on the presence threshold. Chosen on the even half of coco_train (the shipped
   PP-TinyPose student, calibrated: AP 0.608 with the head alone, 0.613 with the expected OKS
   alone, 0.614 with both; a hard presence cut ranked worse, 0.380 vs 0.390 for the previous
   student; see README "The shipped pose model").

Bad input. A frame that is not a non-empty ``(H, W, 3)`` uint8 array raises InputError. A box
is invalid when it is not finite, has ``w <= 0`` or ``h <= 0``, or lies entirely outside the
frame. :meth:`Pipeline.estimate` (boxes given by the caller) raises InputError naming the
invalid boxes, unless ``invalid_boxes="skip"``; :meth:`Pipeline.__call__` (boxes from the
detector) always skips them. Skipped boxes are counted: ``last_skipped`` holds the indices of
the previous call's skipped boxes and ``skipped_total`` the running count, and a warning is
logged. ``max_people`` then keeps the highest-scoring of the VALID boxes (best first), so an
invalid box never takes a person's place. Otherwise the returned humans follow the order of
the boxes kept.
"""
import logging
import math

import numpy as np

from . import geometry
from .codec import ProbMapCodec, flip_merge, read_double, read_heatmaps
from .errors import InputError
from .regions import covariance_ellipse, keypoint_regions
from .results import Human, Keypoint
from .runtime.base import HEATMAP_OUTPUT, OUTPUT_NAMES, WIDE_OUTPUT, check_outputs, run_in_chunks
from .spec import ModelSpec, model_spec

log = logging.getLogger(__name__)


def check_frame(frame) -> np.ndarray:
    """The frame as an (H, W, 3) uint8 array, or InputError saying what is wrong with it."""
    if not isinstance(frame, np.ndarray):
        raise InputError(f"frame must be a numpy array (H, W, 3) uint8 RGB, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise InputError(f"frame must be (H, W, 3) RGB, got shape {frame.shape}")
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise InputError(f"frame is empty: shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise InputError(f"frame must be uint8, got {frame.dtype}")
    return frame


def box_problems(boxes, frame_shape) -> list[str | None]:
    """Per box (M, 4) xywh: None when usable, else why not (non-finite, empty, outside)."""
    h_img, w_img = frame_shape[:2]
    problems = []
    for x, y, w, h in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
        if not all(math.isfinite(v) for v in (x, y, w, h)):
            problems.append("not finite")
        elif w <= 0 or h <= 0:
            problems.append("zero or negative size")
        elif x + w <= 0 or y + h <= 0 or x >= w_img or y >= h_img:
            problems.append("entirely outside the frame")
        else:
            problems.append(None)
    return problems


class Pipeline:
    """Detector + runner + codec -> ``list[Human]`` for one RGB frame.

    runner: a ``Runner`` (``run(images (N, 3, H, W) float32) -> dict``, optional ``max_batch``,
    ``input_size`` and ``meta``); detector: a ``Detector`` (``detect(frame) -> boxes (M, 4)
    xywh, scores (M,)``) or None; spec: the model's :class:`spec.ModelSpec` (None: read from the
    runner by :func:`spec.model_spec`); codec / presence_threshold: None takes the spec's, a
    value overrides it; decode_method: a :data:`codec.DECODE_METHODS` name; flip_test: also
    run the mirrored crops and average; invalid_boxes: "raise" or "skip" for boxes given to
    :meth:`estimate`; max_people: at most this many people per frame, the highest box scores
    among the valid boxes (None: no limit). See the module docstring.
    """

    def __init__(self, runner, detector=None, codec: ProbMapCodec | None = None, credible_levels=(0.5,),
                 presence_threshold: float | None = None, max_batch: int = 16, decode_method: str = "expected_oks",
                 flip_test: bool = False, invalid_boxes: str = "raise", *, spec: ModelSpec | None = None,
                 max_people: int | None = None):
        if int(max_batch) < 1:
            raise InputError(f"max_batch must be at least 1, got {max_batch}")
        if invalid_boxes not in ("raise", "skip"):
            raise InputError(f"invalid_boxes must be 'raise' or 'skip', got {invalid_boxes!r}")
        if max_people is not None and int(max_people) < 1:
            raise InputError(f"max_people must be at least 1 (or None: no limit), got {max_people}")
        levels = tuple(float(q) for q in credible_levels)
        if not all(0.0 < q <= 1.0 for q in levels):
            raise InputError(f"credible levels must lie in (0, 1], got {levels}")
        self.spec = model_spec(runner) if spec is None else spec
        codec = self.spec.codec if codec is None else codec
        runner_size = getattr(runner, "input_size", None)
        if runner_size is not None and tuple(runner_size) != tuple(codec.input_size):
            raise InputError(f"the runner expects input size {tuple(runner_size)} (W, H) but the codec "
                             f"crops {tuple(codec.input_size)}")
        self.runner, self.detector, self.codec = runner, detector, codec
        self.credible_levels = levels
        # Coverage: with the model's calibrated table a level-q region is the table's (it holds the
        # truth in q of held-out cases); without it the raw credible sets are published and say so.
        self.coverage = self.spec.coverage
        self.regions_calibrated = self.coverage is not None
        if self.coverage is not None:
            for q in levels:
                self.coverage.check_level(q)
        elif levels:
            log.warning("the model carries no coverage table: its credible regions are raw (uncalibrated "
                        "coverage: a level-q region holds q of the map's mass, not the truth in q of cases)")
        self.presence_threshold = self.spec.presence_threshold if presence_threshold is None \
            else float(presence_threshold)
        runner_batch = getattr(runner, "max_batch", None)
        self.max_batch = min(int(max_batch), int(runner_batch)) if runner_batch else int(max_batch)
        self.decode_method = decode_method
        self.flip_test = bool(flip_test)
        self.invalid_boxes = invalid_boxes
        self.max_people = None if max_people is None else int(max_people)
        self.last_skipped: list[int] = []
        self.skipped_total = 0
        # A converted ViTPose model has no presence branch (it outputs 0.5): judge presence by
        # the map instead, i.e. the expected OKS of the decoded point (codec.decode's confidence).
        self.heatmap_only = self.spec.heatmap_only

    # -- pre-processing ---------------------------------------------------------------
    def crops(self, frame, boxes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normalised crops of ``boxes (N, 4)`` xywh: ``images (N, 3, H, W)`` float32,
        ``center (N, 2)``, ``scale (N, 2)`` (activation windows, image px).

        Boxes are used as given (see :func:`box_problems` for the checks :meth:`estimate` makes).
        """
        frame = check_frame(frame)
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        center, scale = geometry.bbox_to_center_scale(boxes, padding=self.codec.padding)
        w, h = self.codec.input_size
        patches = np.empty((len(boxes), h, w, 3), dtype=np.uint8)
        for i in range(len(boxes)):
            patches[i] = geometry.warp_crop(frame, center[i], scale[i], size=(w, h))
        return geometry.normalise(patches), center, scale

    # -- network ----------------------------------------------------------------------
    def _run_batch(self, images) -> dict:
        return check_outputs(self.runner.run(images), len(images), "the model")

    def infer(self, images) -> dict:
        """Runner outputs for ``images (N, 3, H, W)``, run in chunks of ``max_batch``.

        With ``flip_test`` the mirrored images run too and every output is merged with
        :func:`codec.flip_merge`.
        """
        images = np.asarray(images, dtype=np.float32)
        if len(images) == 0:
            return {}
        out = run_in_chunks(self._run_batch, images, self.max_batch)
        if self.flip_test:
            flipped = run_in_chunks(self._run_batch, np.ascontiguousarray(images[..., ::-1]), self.max_batch)
            out = {key: flip_merge(value, flipped[key]) for key, value in out.items()}
        return out

    # -- post-processing --------------------------------------------------------------
    def _spread(self, sources, present, points, boxes, frame_size):
        """Covariance ``(N, K, 2, 2)`` and credible-region outlines ``[n][k]`` of every keypoint
        from the map that gave its point. ``sources``: ``(maps (N, K, H, W), gave (N, K) bool or
        None for all, center, scale)`` whose ``gave`` masks split the keypoints between them;
        ``points (N, K, 2)``: the published points (image px). The covariance is the map's second
        moment about the published point (:func:`regions.covariance_ellipse`), the point's error."""
        cov, regions = None, None
        points = np.asarray(points, dtype=np.float64)[..., :2]
        for maps, gave, center, scale in sources:
            gave = np.ones(present.shape, dtype=bool) if gave is None else gave
            _, part_cov = covariance_ellipse(maps, center, scale, about=points)
            params = None if self.coverage is None else (lambda q: self.coverage.region_params(q, boxes, frame_size))
            part = keypoint_regions(maps, present & gave, center, scale, self.credible_levels, params)
            cov = part_cov if cov is None else np.where(gave[..., None, None], part_cov, cov)
            regions = part if regions is None else [[mine or theirs for mine, theirs in zip(row, other)]
                                                    for row, other in zip(regions, part)]
        return cov, regions

    def humans(self, outputs, boxes, box_scores, center, scale, frame_size=None) -> list[Human]:
        """``Human`` list from runner ``outputs`` (N leading) for ``boxes (N, 4)`` xywh with
        ``box_scores (N,)`` and their windows ``center``/``scale (N, 2)``; ``frame_size`` (W, H):
        the image's (a coverage table with cells per box position needs it)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return []
        presence, visibility, quality = (np.asarray(outputs[k], dtype=np.float64) for k in OUTPUT_NAMES[1:])
        area = self.codec.area_factor * boxes[:, 2] * boxes[:, 3]
        if HEATMAP_OUTPUT in outputs:  # heatmap baseline: UDP decode, presence from the map (read_heatmaps)
            points, presence, quality, maps = read_heatmaps(self.codec, outputs[HEATMAP_OUTPUT], center, scale)
            confidence, sources = presence, [(maps, None, center, scale)]
        elif WIDE_OUTPUT in outputs:  # double heatmap: each keypoint from the map that gave its point
            maps, wide = outputs[OUTPUT_NAMES[0]], outputs[WIDE_OUTPUT]
            points, confidence, refined = read_double(self.codec, maps, wide, center, scale, area, self.decode_method)
            sources = [(maps, refined, center, scale), (wide, ~refined, *geometry.wide_window(center, scale))]
        else:
            maps = outputs[OUTPUT_NAMES[0]]
            points, confidence = self.codec.decode(maps, center, scale, area=area, method=self.decode_method)
            sources = [(maps, None, center, scale)]
        if self.heatmap_only and HEATMAP_OUTPUT not in outputs:
            presence = np.asarray(confidence, dtype=np.float64)
        present = presence >= self.presence_threshold
        cov, regions = self._spread(sources, present, points, boxes, frame_size)
        names = self.spec.keypoint_names
        out = []
        for n in range(len(boxes)):
            keypoints = [Keypoint(name=name, x=float(points[n, k, 0]), y=float(points[n, k, 1]),
                                  presence=float(presence[n, k]), visibility=float(visibility[n, k]),
                                  oks_quality=float(quality[n, k]), covariance=cov[n, k], regions=regions[n][k])
                         for k, name in enumerate(names)]
            weight = presence[n].sum()
            estimate = np.sqrt(np.clip(quality[n], 0.0, 1.0) * np.clip(confidence[n], 0.0, 1.0))
            pose_quality = (presence[n] * estimate).sum() / weight if weight > 0 else estimate.mean()
            box_score = float(box_scores[n])
            out.append(Human(bbox=tuple(float(v) for v in boxes[n]), score=box_score * float(pose_quality),
                             keypoints=keypoints, box_score=box_score))
        return out

    # -- whole frame ------------------------------------------------------------------
    def _keep_valid(self, frame, boxes, scores, skip: bool):
        problems = box_problems(boxes, frame.shape)
        bad = [i for i, p in enumerate(problems) if p is not None]
        if bad and not skip:
            listed = "; ".join(f"box #{i} {boxes[i].tolist()}: {problems[i]}" for i in bad[:5])
            more = f" (and {len(bad) - 5} more)" if len(bad) > 5 else ""
            raise InputError(f"{len(bad)} invalid box(es) for a {frame.shape[1]}x{frame.shape[0]} frame: {listed}{more}")
        self.last_skipped = bad
        if bad:
            self.skipped_total += len(bad)
            log.warning("skipped %d invalid box(es): %s", len(bad), ", ".join(f"#{i} ({problems[i]})" for i in bad))
        keep = np.array([p is None for p in problems], dtype=bool)
        boxes, scores = boxes[keep], scores[keep]
        if self.max_people is not None:  # the best of the VALID boxes, best first
            best = np.argsort(-scores, kind="stable")[:self.max_people]
            boxes, scores = boxes[best], scores[best]
        return boxes, scores

    def estimate(self, frame, boxes, scores=None, *, skip_invalid: bool | None = None) -> list[Human]:
        """Poses of the people in ``boxes (M, 4)`` xywh (``scores (M,)``, default 1) of ``frame``.

        All people go through the network in one batch (split only at ``max_batch``).
        ``skip_invalid`` overrides the pipeline's ``invalid_boxes`` policy for this call; with
        ``max_people`` only the best-scoring valid boxes are kept (best first).
        """
        frame = check_frame(frame)
        try:
            boxes = np.asarray(boxes, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError("boxes must be numbers, (M, 4) xywh") from None
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise InputError(f"boxes must be (M, 4) xywh, got shape {boxes.shape}")
        scores = np.ones(len(boxes)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(scores) != len(boxes):
            raise InputError(f"got {len(scores)} scores for {len(boxes)} boxes")
        skip = self.invalid_boxes == "skip" if skip_invalid is None else bool(skip_invalid)
        boxes, scores = self._keep_valid(frame, boxes, scores, skip)
        if len(boxes) == 0:
            return []
        images, center, scale = self.crops(frame, boxes)
        return self.humans(self.infer(images), boxes, scores, center, scale, (frame.shape[1], frame.shape[0]))

    def __call__(self, frame) -> list[Human]:
        """Detect people in ``frame`` (H, W, 3) uint8 RGB and estimate their poses."""
        if self.detector is None:
            raise InputError("this pipeline has no person detector: give boxes to Pipeline.estimate or "
                             "construct it with a detector")
        frame = check_frame(frame)
        boxes, scores = self.detector.detect(frame)
        return self.estimate(frame, boxes, scores, skip_invalid=True)
