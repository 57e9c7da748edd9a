"""Image files in: the one reader for inference, training and the tools (no ROS, no torch)."""
from pathlib import Path

import numpy as np

from .errors import InputError

#: the file endings ``probpose predict`` picks up in a folder of images
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def read_image(path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; InputError when missing or unreadable."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"cannot read image {path} (not an image, or a format OpenCV cannot decode)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
