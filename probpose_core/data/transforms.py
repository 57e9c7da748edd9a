"""Top-down training augmentation: where the activation window of one instance goes.

The recipe (each step draws from one explicit ``np.random.Generator``, in this order):

1. **Crop augmentation** (ProbPose §3.4), probability ``crop_prob``: the image is cut to a
   random sub-rectangle that passes through the person's box on one or two adjacent sides
   (``cropcoco.cut_crop``: each cut removes a ``crop_cut_range`` fraction of the box side).
   Content outside the rectangle becomes black. Annotated keypoints outside it become
   ``v = 3`` ("outside the image", as exococotools marks them) and KEEP their true
   location. The box is re-fit to the visible part (box ∩ rectangle) and the window is
   built from it, so cut-away keypoints may land outside the activation window too. A draw
   that keeps fewer than ``crop_min_keypoints`` visible keypoints, or cuts none away, is
   dropped (no crop for this sample).
2. **Half-body**, probability ``half_body_prob`` when more than ``half_body_min_keypoints``
   keypoints are visible (v in {1, 2}, in the image): the window is fit (3:4, padding
   ``half_body_padding``) to the visible upper- or lower-body keypoints.
3. **Horizontal flip**, probability ``flip_prob``: UDP mirror ``x -> (width - 1) - x`` (as
   :func:`codec.flip_merge` assumes), left/right keypoints swapped with ``FLIP_INDEX``.
4. **Window jitter**: scale by ``U(scale_range)`` with probability ``scale_prob``; shift the
   centre by ``U(-shift_factor, shift_factor) * scale`` per axis with probability
   ``shift_prob``; rotate by ``U(-rotate_max_deg, rotate_max_deg)`` with probability
   ``rotate_prob``.
5. **Colour jitter** of the 192x256 crop, probability ``colour_prob``: brightness and
   contrast factors ``U(1 - b, 1 + b)``, saturation ``U(1 - s, 1 + s)``, hue shift
   ``U(-hue, hue)`` of a full turn (random order is not used: fixed order b, c, s, h).

Keypoints are never dropped or moved by the recipe: targets are encoded from their true
location in the *window-aligned frame* (the image frame rotated about the window centre by
the window's rotation, so that the window is axis-aligned there). The codec's presence
target ("inside the activation window") is therefore exact for every keypoint, including
those cut away by the crop augmentation. The instance's ``area`` (the OKS scale) is left as
annotated: the frame change is a rotation (no scaling) and cutting the image does not change
the person's size.
"""
from dataclasses import dataclass

import cv2
import numpy as np

from .. import geometry
from ..keypoints import FLIP_INDEX, UPPER_BODY
from .cropcoco import cut_crop


@dataclass
class AugmentConfig:
    """Augmentation settings; ``AugmentConfig.none()`` (or ``enabled=False``) for validation."""

    enabled: bool = True
    flip_prob: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_keypoints: int = 8  # half-body needs MORE than this many visible keypoints
    half_body_padding: float = 1.5
    scale_range: tuple = (0.75, 1.25)
    scale_prob: float = 1.0
    rotate_max_deg: float = 40.0
    rotate_prob: float = 0.6
    shift_factor: float = 0.16
    shift_prob: float = 0.3
    crop_prob: float = 0.3
    crop_min_keypoints: int = 3  # visible keypoints a crop must leave in the image
    crop_cut_range: tuple = (0.2, 0.6)
    colour_prob: float = 0.5
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.02

    @classmethod
    def none(cls) -> "AugmentConfig":
        """No augmentation: the window of the box, as in validation."""
        return cls(enabled=False)


@dataclass
class View:
    """Geometry of one augmented sample, in image coordinates of the (possibly flipped) image.

    keypoints: (K, 3) x, y, v after crop (v = 3 where cut away) and flip; center, scale: (2,)
    the activation window; rotation: degrees (as :func:`geometry.udp_affine`); flip: mirror
    of the original image; crop: (x0, y0, x1, y1) kept rectangle of the ORIGINAL image
    (integers, exclusive end), or None; width: original image width.
    """

    keypoints: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    rotation: float = 0.0
    flip: bool = False
    crop: tuple | None = None
    width: int = 0


def _visible(keypoints) -> np.ndarray:
    return np.isin(keypoints[:, 2], (1, 2))


def crop_augment(keypoints, bbox, width: int, height: int, rng: np.random.Generator,
                 cut_range=(0.2, 0.6), min_keypoints: int = 3):
    """Cut the image to a rectangle through the person's box (ProbPose crop augmentation).

    keypoints: (K, 3); bbox: (4,) xywh. Returns ``(keypoints, bbox, crop)``: annotated
    keypoints outside ``crop = (x0, y0, x1, y1)`` get v = 3 with their location kept, and
    ``bbox`` is the part of the box inside the crop. Returns None when no draw keeps
    ``min_keypoints`` visible keypoints while cutting at least one away.
    """
    kpts = np.array(keypoints, dtype=np.float64)
    person = {"keypoints": kpts.ravel().tolist(), "bbox": [float(v) for v in bbox]}
    crop = cut_crop(rng, int(width), int(height), person, min_in_image=min_keypoints, cut_range=cut_range)
    inside = geometry.in_window(kpts[:, :2], np.asarray(crop, dtype=np.float64))
    visible = _visible(kpts)
    if np.sum(visible & inside) < min_keypoints or not np.any(visible & ~inside):
        return None
    x, y, w, h = (float(v) for v in bbox)
    x0, y0 = max(x, crop[0]), max(y, crop[1])
    x1, y1 = min(x + w, crop[2]), min(y + h, crop[3])
    if x1 - x0 < 1 or y1 - y0 < 1:
        return None
    kpts[(kpts[:, 2] > 0) & ~inside, 2] = 3
    return kpts, np.array([x0, y0, x1 - x0, y1 - y0]), tuple(int(c) for c in crop)


def half_body_window(keypoints, rng: np.random.Generator, min_keypoints: int = 8, padding: float = 1.5):
    """Window ``(center, scale)`` around the visible upper or lower body, or None.

    keypoints: (K, 3). Needs more than ``min_keypoints`` visible keypoints; picks the upper
    body with probability 1/2 (the other half if the pick has fewer than 2 visible points).
    """
    visible = _visible(keypoints)
    if visible.sum() <= min_keypoints:
        return None
    upper = np.zeros(len(keypoints), dtype=bool)
    upper[list(UPPER_BODY)] = True
    parts = [visible & upper, visible & ~upper]
    if rng.random() >= 0.5:
        parts.reverse()
    chosen = parts[0] if parts[0].sum() >= 2 else parts[1]
    if chosen.sum() < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    box = np.concatenate([lo, np.maximum(hi - lo, 1.0)])
    return geometry.bbox_to_center_scale(box, padding=padding)


def flip_keypoints(keypoints, width: int, flip_index=FLIP_INDEX) -> np.ndarray:
    """Mirror (K, 3) keypoints about the image: ``x -> (width - 1) - x``, left <-> right.

    Unannotated keypoints (v = 0) stay at (0, 0). Applying it twice is the identity.
    """
    kpts = np.array(keypoints, dtype=np.float64)[list(flip_index)]
    kpts[:, 0] = (width - 1) - kpts[:, 0]
    kpts[kpts[:, 2] == 0, :2] = 0.0
    return kpts


def flip_center(center, width: int) -> np.ndarray:
    """Mirror a window centre (2,) like :func:`flip_keypoints`."""
    c = np.array(center, dtype=np.float64)
    c[0] = (width - 1) - c[0]
    return c


def jitter_window(center, scale, rng: np.random.Generator, config: AugmentConfig):
    """Random scale / shift / rotation of a window: returns ``(center, scale, rotation)``."""
    center = np.array(center, dtype=np.float64)
    scale = np.array(scale, dtype=np.float64)
    if rng.random() < config.scale_prob:
        scale = scale * rng.uniform(*config.scale_range)
    if rng.random() < config.shift_prob:
        center = center + rng.uniform(-config.shift_factor, config.shift_factor, 2) * scale
    rotation = 0.0
    if rng.random() < config.rotate_prob:
        rotation = float(rng.uniform(-config.rotate_max_deg, config.rotate_max_deg))
    return center, scale, rotation


def sample_view(keypoints, bbox, width: int, height: int, config: AugmentConfig | None,
                rng: np.random.Generator, padding: float = geometry.PADDING) -> View:
    """The augmented geometry of one instance (see the module docstring for the recipe).

    keypoints: (K, 3); bbox: (4,) xywh; width, height: the image's size; padding: of the
    box's activation window (the codec's).
    """
    kpts = np.array(keypoints, dtype=np.float64)
    bbox = np.asarray(bbox, dtype=np.float64)
    if config is None or not config.enabled:
        center, scale = geometry.bbox_to_center_scale(bbox, padding=padding)
        return View(kpts, center, scale, width=int(width))
    crop = None
    if rng.random() < config.crop_prob:
        cut = crop_augment(kpts, bbox, width, height, rng, config.crop_cut_range, config.crop_min_keypoints)
        if cut is not None:
            kpts, bbox, crop = cut
    center, scale = geometry.bbox_to_center_scale(bbox, padding=padding)
    if rng.random() < config.half_body_prob:
        half = half_body_window(kpts, rng, config.half_body_min_keypoints, config.half_body_padding)
        if half is not None:
            center, scale = half
    flip = bool(rng.random() < config.flip_prob)
    if flip:
        kpts, center = flip_keypoints(kpts, width), flip_center(center, width)
    center, scale, rotation = jitter_window(center, scale, rng, config)
    return View(kpts, center, scale, rotation, flip, crop, int(width))


def rotate_points(points, center, rotation: float) -> np.ndarray:
    """Points (..., 2) into the window-aligned frame: rotated by ``rotation`` degrees about
    ``center`` exactly as :func:`geometry.udp_affine` rotates the window (no scaling).
    Without rotation the points come back unchanged (bit for bit)."""
    if rotation == 0:
        return np.array(points, dtype=np.float64)
    r = np.deg2rad(rotation)
    rot = np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])
    c = np.asarray(center, dtype=np.float64)
    return (np.asarray(points, dtype=np.float64) - c) @ rot.T + c


def aligned_keypoints(view: View) -> np.ndarray:
    """The view's keypoints (K, 2) in the window-aligned frame (where the codec encodes)."""
    return rotate_points(view.keypoints[:, :2], view.center, view.rotation)


def image_affine(view: View, size=geometry.INPUT_SIZE) -> np.ndarray:
    """(2, 3) affine from the ORIGINAL image (flip and crop undone) to a ``size`` grid."""
    m = np.vstack([geometry.udp_affine(view.center, view.scale, size, view.rotation), [0, 0, 1]])
    if view.flip:
        m = m @ np.array([[-1.0, 0, view.width - 1], [0, 1, 0], [0, 0, 1]])
    return m[:2]


def warp_image(image: np.ndarray, view: View, size=geometry.INPUT_SIZE) -> np.ndarray:
    """The view's crop of ``image (H, W, C)`` as ``(size[1], size[0], C)`` (bilinear, UDP).

    Pixels outside the view's crop rectangle (and outside the image) are black.
    """
    m = np.vstack([image_affine(view, size), [0, 0, 1]])
    if view.crop is not None:
        x0, y0, x1, y1 = view.crop
        image = image[y0:y1, x0:x1]
        m = m @ np.array([[1.0, 0, x0], [0, 1, y0], [0, 0, 1]])
    return cv2.warpAffine(image, m[:2], (int(size[0]), int(size[1])), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Brightness, contrast, saturation and hue jitter of an RGB uint8 image (H, W, 3)."""
    if not config.enabled or rng.random() >= config.colour_prob:
        return image
    b = rng.uniform(1 - config.brightness, 1 + config.brightness)
    c = rng.uniform(1 - config.contrast, 1 + config.contrast)
    s = rng.uniform(1 - config.saturation, 1 + config.saturation)
    h = rng.uniform(-config.hue, config.hue)
    img = image.astype(np.float32) * b
    img = (img - img.mean()) * c + img.mean()
    gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - gray[..., None]) * s + gray[..., None]
    img = np.clip(img, 0, 255).astype(np.uint8)
    if h != 0:
        hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV)
        hsv[..., 0] = ((hsv[..., 0].astype(np.int16) + int(round(h * 180))) % 180).astype(np.uint8)
        img = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return img
