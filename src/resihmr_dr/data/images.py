"""Decoding image files: photographs as RGB arrays, EXIF orientation applied.

Arrays are image pixels (row = y_px, column = x_px), the size *after* EXIF orientation, which is
what an annotation's ``width``/``height`` describe. Every failure raises :class:`DataError` naming
the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from resihmr_dr.data.errors import DataError

__all__ = ["IMAGE_READ_ERRORS", "load_rgb_image"]

# What Pillow raises on a file that is not a readable image (truncated, another format, too large).
IMAGE_READ_ERRORS: tuple[type[Exception], ...] = (
    UnidentifiedImageError,
    Image.DecompressionBombError,
    OSError,
    ValueError,
)


def load_rgb_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image as RGB uint8 (H, W, 3), honouring EXIF orientation.

    Greyscale (8/16-bit), palette, RGBA/LA (alpha dropped) and CMYK convert to RGB.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img)
            if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(img, dtype=np.float64)
                top = float(arr.max()) if arr.size else 0.0
                if img.mode.startswith("I;16"):
                    peak = 65535.0
                else:  # 32-bit int / float: 8-bit, 16-bit or arbitrary range
                    peak = 255.0 if top <= 255 else 65535.0 if top <= 65535 else top
                grey = np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except FileNotFoundError:
        raise DataError("image file not found", path=path) from None
    except IMAGE_READ_ERRORS as err:
        raise DataError(f"cannot read image: {err}", path=path) from None
