"""Person masks: COCO RLE (compressed or uncompressed), polygons, and PNG files.

All decoded masks are bool arrays of shape (H, W) in image pixels (row = y_px, column = x_px),
``True`` on the person. Annotations keep a lazy :data:`MaskSource` (one of :class:`RleMask`,
:class:`PolygonMask`, :class:`PngMask`) and decode only on request.

Parsing/validation functions raise :class:`DataError` with ``field`` set; loaders add the file
and annotation id.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image
from pycocotools import mask as coco_mask

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.images import IMAGE_READ_ERRORS
from resihmr_dr.data.jsonio import is_int, is_number

__all__ = [
    "RleMask",
    "PolygonMask",
    "PngMask",
    "MaskSource",
    "parse_segmentation",
    "parse_rle",
    "parse_polygons",
    "rle_to_mask",
    "polygons_to_mask",
    "mask_to_rle",
    "read_png_mask",
    "png_mask_size",
    "write_png_mask",
    "decode_rle_string",
]

# Guards against absurd sizes in corrupted files (a decode allocates H * W bytes).
MAX_SIDE_PX = 1_000_000


def _check_size(decoded_hw: tuple[int, int], *, height: int, width: int, what: str) -> None:
    if decoded_hw != (height, width):
        raise DataError(f"{what} is {decoded_hw[1]}x{decoded_hw[0]} (WxH) but the image is {width}x{height}")


@dataclass(frozen=True)
class RleMask:
    """COCO run-length encoding; ``counts`` is the compressed string or the raw run list.

    Runs are column-major (COCO/Fortran order), starting with a background run.
    """

    height: int
    width: int
    counts: str | tuple[int, ...]

    def decode(self, *, height: int, width: int) -> np.ndarray:
        """Bool (H, W) mask; raises DataError if the RLE size differs from ``(height, width)``."""
        _check_size((self.height, self.width), height=height, width=width, what="RLE mask")
        return rle_to_mask(self)


@dataclass(frozen=True)
class PolygonMask:
    """COCO polygons: each a flat ``(x0_px, y0_px, x1_px, y1_px, ...)`` tuple, >= 3 vertices."""

    polygons: tuple[tuple[float, ...], ...]

    def decode(self, *, height: int, width: int) -> np.ndarray:
        """Bool (H, W) mask rasterised by pycocotools (union of the polygons)."""
        return polygons_to_mask(self.polygons, height=height, width=width)


@dataclass(frozen=True)
class PngMask:
    """A PNG file; any nonzero pixel is the person (see :func:`read_png_mask`)."""

    path: Path

    def decode(self, *, height: int, width: int) -> np.ndarray:
        """Bool (H, W) mask read from the file; raises DataError on a size mismatch."""
        mask = read_png_mask(self.path)
        _check_size(mask.shape, height=height, width=width, what=f"mask PNG {self.path.name}")
        return mask


MaskSource = Union[RleMask, PolygonMask, PngMask]


# --------------------------------------------------------------------------- parsing
def decode_rle_string(counts: str) -> list[int]:
    """Run lengths of a COCO compressed RLE string (pure Python, validating; LEB128-like code).

    Raises DataError on characters outside the code range, a truncated run, or negative runs.
    """
    runs: list[int] = []
    pos = 0
    n = len(counts)
    while pos < n:
        value = 0
        shift = 0
        more = True
        while more:
            if pos >= n:
                raise DataError("compressed RLE string is truncated")
            code = ord(counts[pos]) - 48
            if not 0 <= code < 64:
                raise DataError(f"invalid character {counts[pos]!r} in compressed RLE string")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            pos += 1
            shift += 5
            if not more and code & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        if value < 0:
            raise DataError("compressed RLE string decodes to a negative run length")
        runs.append(value)
    return runs


def parse_rle(obj: Any) -> RleMask:
    """Validate a COCO RLE dict ``{"size": [H, W], "counts": str | list[int]}``."""
    if not isinstance(obj, dict):
        raise DataError(f"expected an RLE object, got {type(obj).__name__}", field="segmentation")
    for key in ("size", "counts"):
        if key not in obj:
            raise DataError(f"RLE is missing key {key!r}", field="segmentation")
    size = obj["size"]
    if not isinstance(size, list) or len(size) != 2 or not all(is_int(s) and 0 < s <= MAX_SIDE_PX for s in size):
        raise DataError(
            f"RLE 'size' must be [height, width] with positive integers, got {size!r}",
            field="segmentation",
        )
    height, width = size
    counts = obj["counts"]
    if isinstance(counts, str):
        try:
            runs = decode_rle_string(counts)
        except DataError as err:
            raise err.with_context(field="segmentation") from None
        stored: str | tuple[int, ...] = counts
    elif isinstance(counts, list):
        if not all(is_int(c) and c >= 0 for c in counts):
            raise DataError("uncompressed RLE 'counts' must be non-negative integers", field="segmentation")
        runs = counts
        stored = tuple(counts)
    else:
        raise DataError(
            f"RLE 'counts' must be a string or a list of integers, got {type(counts).__name__}",
            field="segmentation",
        )
    total = sum(runs)
    if total != height * width:
        raise DataError(
            f"RLE runs cover {total} pixels but size {height}x{width} has {height * width}",
            field="segmentation",
        )
    return RleMask(height=height, width=width, counts=stored)


def parse_polygons(obj: Any) -> PolygonMask:
    """Validate COCO polygons: a list of flat ``[x0, y0, x1, y1, ...]`` lists (>= 3 vertices)."""
    if not isinstance(obj, list) or not obj:
        raise DataError("expected a non-empty list of polygons", field="segmentation")
    polygons: list[tuple[float, ...]] = []
    for i, poly in enumerate(obj):
        if not isinstance(poly, list) or not all(is_number(v) for v in poly):
            raise DataError(f"polygon {i} must be a list of numbers", field="segmentation")
        if len(poly) < 6 or len(poly) % 2:
            raise DataError(
                f"polygon {i} must have an even number (>= 6) of coordinates, got {len(poly)}",
                field="segmentation",
            )
        try:
            values = tuple(float(v) for v in poly)
        except OverflowError:
            raise DataError(f"polygon {i} has a number too large", field="segmentation") from None
        if not all(math.isfinite(v) for v in values):
            raise DataError(f"polygon {i} has NaN or infinite coordinates", field="segmentation")
        polygons.append(values)
    return PolygonMask(polygons=tuple(polygons))


def parse_segmentation(obj: Any) -> RleMask | PolygonMask | None:
    """A COCO ``segmentation`` value -> mask source; ``None`` for an empty list (no mask)."""
    if isinstance(obj, dict):
        return parse_rle(obj)
    if isinstance(obj, list):
        if not obj:
            return None
        return parse_polygons(obj)
    raise DataError(
        f"expected an RLE object or a list of polygons, got {type(obj).__name__}",
        field="segmentation",
    )


# --------------------------------------------------------------------------- decoding / encoding
def _decode(rle: dict[str, Any]) -> np.ndarray:
    """pycocotools decode of one compressed RLE -> bool (H, W)."""
    with warnings.catch_warnings():  # pycocotools' Cython arrays trip a NumPy 2 copy= warning
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode([rle])[:, :, 0].astype(bool)


def rle_to_mask(rle: RleMask | dict[str, Any]) -> np.ndarray:
    """Decode an RLE (an :class:`RleMask` or a raw COCO dict) to a bool (H, W) mask."""
    if isinstance(rle, dict):
        rle = parse_rle(rle)
    if isinstance(rle.counts, str):
        compressed = {"size": [rle.height, rle.width], "counts": rle.counts.encode("ascii")}
    else:
        raw = {"size": [rle.height, rle.width], "counts": list(rle.counts)}
        compressed = coco_mask.frPyObjects(raw, rle.height, rle.width)
    return _decode(compressed)


def polygons_to_mask(
    polygons: tuple[tuple[float, ...], ...] | list[list[float]], *, height: int, width: int
) -> np.ndarray:
    """Rasterise COCO polygons (pixel coordinates) to a bool (height, width) mask (their union)."""
    if isinstance(polygons, list):
        polygons = parse_polygons(polygons).polygons
    rles = coco_mask.frPyObjects([list(p) for p in polygons], height, width)
    return _decode(coco_mask.merge(rles))


def mask_to_rle(mask: np.ndarray) -> dict[str, Any]:
    """Encode a (H, W) mask (nonzero = person) as a JSON-serialisable compressed COCO RLE.

    Returns ``{"size": [H, W], "counts": str}``.
    """
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    rle = coco_mask.encode(np.asfortranarray(mask != 0, dtype=np.uint8))
    height, width = (int(v) for v in rle["size"])
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def _open_image(path: Path) -> Image.Image:
    try:
        return Image.open(path)
    except FileNotFoundError:
        raise DataError(f"mask file not found: {path}", path=path) from None
    except IMAGE_READ_ERRORS as err:
        raise DataError(f"cannot read mask image: {err}", path=path) from None


def png_mask_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(height, width) of a mask image, read from its header only."""
    path = Path(path)
    with _open_image(path) as img:
        width, height = img.size
    return height, width


def read_png_mask(path: str | os.PathLike[str]) -> np.ndarray:
    """Read a mask image as bool (H, W); any nonzero pixel is the person.

    Works for 0/1 and 0/255, 1-bit, greyscale (8/16-bit), palette (nonzero index), RGB (any
    nonzero channel) and RGBA/LA: the alpha channel when it varies (a cut-out on a transparent
    background), otherwise the colour channels.
    """
    path = Path(path)
    with _open_image(path) as img:
        try:
            img.load()
        except IMAGE_READ_ERRORS as err:
            raise DataError(f"cannot decode mask image: {err}", path=path) from None
        bands = img.getbands()
        if "A" in bands:
            alpha = np.asarray(img.getchannel("A"))
            if alpha.min() != alpha.max():
                return alpha != 0
            colour = img.convert("RGB" if len(bands) == 4 else "L")
            arr = np.asarray(colour)
        else:
            arr = np.asarray(img)
    if arr.ndim == 3:
        return np.any(arr != 0, axis=2)
    return arr != 0


def write_png_mask(path: str | os.PathLike[str], mask: np.ndarray) -> None:
    """Write a (H, W) mask (nonzero = person) as an 8-bit greyscale 0/255 PNG."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected a (H, W) mask, got shape {mask.shape}")
    Image.fromarray(np.where(mask != 0, 255, 0).astype(np.uint8)).save(Path(path))
