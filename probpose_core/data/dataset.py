"""TopDownDataset: one augmented 192x256 crop and its ProbPose targets per instance.

A sample is built as: read the image (:func:`image_io.read_image`, RGB) ->
:func:`transforms.sample_view` (crop augmentation, half-body, flip, scale/shift/rotation of the
activation window) -> :func:`transforms.warp_image` (one UDP affine incl. flip and rotation) ->
colour jitter -> :func:`geometry.normalise` -> :meth:`ProbMapCodec.encode` of the keypoints in
the window-aligned frame.

Determinism: sample ``i`` draws from ``np.random.default_rng([seed, epoch, i])`` only, so
the same (seed, epoch, index) gives the same sample in any worker and in any order;
:meth:`TopDownDataset.set_epoch` changes the stream. With DataLoader workers that are kept
alive (``persistent_workers=True``) the epoch must reach them another way (e.g. a fresh
DataLoader per epoch, as the trainer does).

A sample whose image cannot be read is replaced by the next readable instance (the
``skipped`` Counter counts it per process; each bad file is logged once per process).
"""
import logging
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from .. import geometry
from ..codec import ProbMapCodec
from ..errors import InputError
from ..image_io import read_image
from .transforms import AugmentConfig, aligned_keypoints, colour_jitter, sample_view, warp_image

log = logging.getLogger(__name__)
SKIP_UNREADABLE = "unreadable image"


class TopDownDataset(torch.utils.data.Dataset):
    """Top-down samples of ``instances`` (list of :class:`instances.Instance`).

    ``__getitem__(i)`` returns a dict of numpy arrays (torch's default collate makes tensors):

    - ``image (3, 256, 192)`` float32, normalised RGB crop;
    - the codec targets of the instance: ``oks_maps (K, 64, 48)``, ``keypoints_map (K, 2)``,
      ``keypoint_weights``, ``presence``, ``map_weights``, ``visibility (K,)`` float32;
    - ``heatmaps (K, 64, 48)`` Gaussian targets, only when ``heatmap_sigma`` is set;
    - ``keypoints (K, 2)`` float64 and ``area ()`` in the window-aligned frame, ``center (2,)``,
      ``scale (2,)`` float64 of the window (``codec.decode(maps, center, scale)`` compares
      directly to ``keypoints``); ``keypoint_flags (K,)`` int64: COCO v after augmentation
      (3 where the crop augmentation cut the keypoint away);
    - ``image_id``, ``ann_id`` (-1 for detections), ``index`` int64.
    """

    def __init__(self, instances, images_dir, codec: ProbMapCodec = ProbMapCodec(),
                 augment: AugmentConfig | None = None, heatmap_sigma: float | None = None, seed: int = 0):
        self.instances = list(instances)
        self.images_dir = Path(images_dir)
        self.codec = codec
        self.augment = augment
        self.heatmap_sigma = heatmap_sigma
        self.seed = int(seed)
        self.epoch = 0
        self.skipped: Counter = Counter()
        self._bad_files: set = set()

    def __len__(self) -> int:
        return len(self.instances)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = int(epoch)

    def _read(self, index: int):
        name = self.instances[index].file_name
        if name in self._bad_files:
            return None
        try:
            return read_image(self.images_dir / name)
        except InputError as exc:
            self._bad_files.add(name)
            self.skipped[SKIP_UNREADABLE] += 1
            log.warning("skipping unreadable image (instance %d): %s", index, exc)
            return None

    def __getitem__(self, index: int) -> dict:
        n = len(self.instances)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} instances")
        index %= n
        for step in range(n):
            i = (index + step) % n
            image = self._read(i)
            if image is not None:
                return self.sample(i, image)
        raise InputError(f"no readable image among the {n} instances under {self.images_dir}")

    def sample(self, index: int, image: np.ndarray) -> dict:
        """The sample of instance ``index`` cut from its already read ``image (H, W, 3)`` RGB."""
        inst = self.instances[index]
        rng = np.random.default_rng([self.seed, self.epoch, index])
        height, width = image.shape[:2]
        view = sample_view(inst.keypoints, inst.bbox, width, height, self.augment, rng, self.codec.padding)
        crop = warp_image(image, view, self.codec.input_size)
        if self.augment is not None:
            crop = colour_jitter(crop, rng, self.augment)
        keypoints = aligned_keypoints(view)
        flags = view.keypoints[:, 2].astype(np.int64)
        targets = self.codec.encode(keypoints[None], flags[None], [inst.area], view.center[None], view.scale[None])
        out = {"image": geometry.normalise(crop[None])[0]}
        out.update({k: v[0] for k, v in targets.items()})
        if self.heatmap_sigma is not None:
            from ..codec import gaussian_heatmaps

            out["heatmaps"] = gaussian_heatmaps(targets["keypoints_map"], targets["map_weights"],
                                                self.codec.heatmap_size, self.heatmap_sigma)[0]
        out.update(
            keypoints=keypoints, area=np.float64(inst.area), center=view.center.astype(np.float64),
            scale=view.scale.astype(np.float64), keypoint_flags=flags,
            image_id=np.int64(inst.image_id), ann_id=np.int64(-1 if inst.ann_id is None else inst.ann_id),
            index=np.int64(index),
        )
        return out
