"""Load and validate LDpose-LimbLoss annotations (COCO-style JSON, 25 keypoints).

File layout::

    {"images": [{"id", "file_name", "width", "height", optional "camera" | "intrinsics" | "K"}],
     "annotations": [{"id", "image_id", "keypoints": [75 numbers], optional "num_keypoints",
                      "bbox" [x, y, w, h], "segmentation" (RLE or polygons) or "mask_path"/"mask"
                      (a PNG), "init_fit" (an initial-fit file)}],
     "categories": [{"id", "name", optional "keypoints": the 25 names, "skeleton"}] (optional)}

Keypoint triplets are read by position (:data:`~resihmr_dr.data.ldpose.KEYPOINT_NAMES` order). A
category that lists ``keypoints`` names must list those 25 in that order (case, ``-``/space for
``_`` and the ``l_``/``r_`` aliases of :data:`~resihmr_dr.data.ldpose.KEYPOINT_ALIASES` aside):
a permutation or an unknown name is a file-level error naming the category and the first
mismatching position, never a silent reassignment.

Coordinates are image pixels (``_px``): x right, y down, pixel (0, 0) at the top-left pixel (the
convention of :mod:`resihmr_dr.camera`). Camera intrinsics may be ``{"fx", "fy", "cx", "cy"}``,
``{"K": 3x3}`` or a bare 3x3 ``K``; without them, :meth:`Intrinsics.default_for` gives
SMPLify-X's default (focal 5000 px, principal point ``(W/2, H/2)``).

Relative file paths (masks, initial fits) resolve against the JSON's folder, then
``images_dir``; images resolve against ``images_dir`` (default: the JSON's folder).
Masks stay lazy (:data:`MaskSource`); their size is checked at load time from the RLE size or the
PNG header (polygons take the image size) and again when decoded.

Every problem raises :class:`DataError` naming the file, the annotation (or image) id and the
field. With ``on_error="collect"``, per-image and per-annotation problems are collected in
``LDposeDataset.errors`` and the good people are kept; file-level problems (unreadable or
malformed JSON, wrong top-level structure, keypoint names) always raise.

Images, and the initial fits, are read only when used; :func:`check_files` reads every file the
annotations name (what ``resihmr-dr validate`` does) and collects the problems.
"""

from __future__ import annotations

import math
import numbers
import os
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.init_fit import SUPPORTED_SUFFIXES, InitialFit, load_initial_fit
from resihmr_dr.data.jsonio import read_json
from resihmr_dr.data.ldpose import DEFAULT_FOCAL_PX, NUM_KEYPOINTS, Limb, LimbStatus, keypoint_names_problem
from resihmr_dr.data.masks import (
    MAX_SIDE_PX,
    MaskSource,
    PngMask,
    RleMask,
    parse_segmentation,
    png_mask_size,
)
from resihmr_dr.data.status import derive_limb_status, residual_limbs

__all__ = [
    "Intrinsics",
    "ImageRecord",
    "PersonAnnotation",
    "LDposeDataset",
    "load_annotations",
    "load_rgb_image",
    "FileCheck",
    "check_files",
    "check_image_file",
    "check_mask",
    "check_init_fit",
    "parse_image",
    "parse_keypoints",
    "parse_annotation",
    "DEFAULT_FOCAL_PX",
    "OUTSIDE_MARGIN",
]

# Labelled keypoints may lie outside the image by at most this fraction of its width/height.
OUTSIDE_MARGIN = 0.5
VISIBILITY_VALUES = (0, 1, 2)


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels: ``u_px = fx * x / z + cx``, ``v_px = fy * y / z + cy``
    (OpenCV camera frame)."""

    fx: float
    fy: float
    cx: float
    cy: float

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(_is_real(v) and math.isfinite(v) for v in values):
            raise DataError(f"intrinsics must be finite numbers, got {values}", field="camera")
        if self.fx <= 0 or self.fy <= 0:
            raise DataError(f"focal lengths must be positive, got fx={self.fx}, fy={self.fy}", field="camera")

    @classmethod
    def default_for(cls, width: int, height: int, focal_px: float = DEFAULT_FOCAL_PX) -> Intrinsics:
        """SMPLify-X's default camera: focal ``focal_px``, principal point at the image centre."""
        return cls(fx=float(focal_px), fy=float(focal_px), cx=width / 2.0, cy=height / 2.0)

    @classmethod
    def from_matrix(cls, k: np.ndarray | list[list[float]]) -> Intrinsics:
        """From a 3x3 ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]`` (zero skew required)."""
        try:
            raw = np.asarray(k)
        except (TypeError, ValueError):
            raise DataError("'K' must be a 3x3 matrix of numbers", field="camera") from None
        if raw.dtype.kind not in "iuf":  # strings, bools, None, ragged or huge ints
            raise DataError("'K' must be a 3x3 matrix of numbers", field="camera")
        mat = raw.astype(np.float64)
        if mat.shape != (3, 3):
            raise DataError(f"'K' must be 3x3, got shape {mat.shape}", field="camera")
        if not np.all(np.isfinite(mat)):
            raise DataError("'K' has NaN or infinite entries", field="camera")
        scale = max(abs(mat[0, 0]), abs(mat[1, 1]), 1.0)
        if abs(mat[0, 1]) > 1e-6 * scale or mat[1, 0] != 0 or np.any(mat[2] != (0.0, 0.0, 1.0)):
            raise DataError("'K' must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] (no skew)", field="camera")
        fx, fy, cx, cy = (float(v) for v in (mat[0, 0], mat[1, 1], mat[0, 2], mat[1, 2]))
        return cls(fx=fx, fy=fy, cx=cx, cy=cy)

    def as_matrix(self) -> np.ndarray:
        """(3, 3) float64 ``K``."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])


@dataclass(frozen=True)
class ImageRecord:
    """One ``images`` entry. ``intrinsics`` is ``None`` when the file gives no camera."""

    id: int
    file_name: str
    width: int
    height: int
    intrinsics: Intrinsics | None = None

    def intrinsics_or_default(self, focal_px: float = DEFAULT_FOCAL_PX) -> Intrinsics:
        """The given intrinsics, else :meth:`Intrinsics.default_for` this image's size."""
        if self.intrinsics is not None:
            return self.intrinsics
        return Intrinsics.default_for(self.width, self.height, focal_px)


@dataclass(frozen=True, eq=False)
class PersonAnnotation:
    """One annotated person.

    Attributes:
        ann_id: annotation id.
        image_id: id of the image the person is in.
        keypoints_px: (25, 3) float64 ``[x_px, y_px, v]`` (read-only); ``v = 0``: absent,
            1: labelled but occluded, 2: labelled and visible.
        limb_status: limb name -> :class:`LimbStatus` for the four limbs.
        bbox: ``(x_px, y_px, w_px, h_px)`` or ``None``.
        mask: lazy mask source (RLE, polygons or a PNG path) or ``None``.
        init_fit_path: path of an initial body fit (see :func:`load_initial_fit`) or ``None``.
    """

    ann_id: int
    image_id: int
    keypoints_px: np.ndarray
    limb_status: Mapping[str, LimbStatus]
    bbox: tuple[float, float, float, float] | None = None
    mask: MaskSource | None = None
    init_fit_path: Path | None = None

    @property
    def residual_limbs(self) -> list[tuple[Limb, LimbStatus]]:
        """``(Limb, LimbStatus)`` for each residual limb, in ``LIMBS`` order."""
        return residual_limbs(dict(self.limb_status))

    @property
    def labelled(self) -> np.ndarray:
        """Bool (25,): keypoints with ``v > 0``."""
        return self.keypoints_px[:, 2] > 0

    def load_mask(self, *, height: int, width: int) -> np.ndarray | None:
        """Decode the mask to bool (height, width); ``None`` if the annotation has none.

        Raises DataError if the decoded size differs from ``(height, width)``.
        """
        if self.mask is None:
            return None
        try:
            return self.mask.decode(height=height, width=width)
        except DataError as err:
            raise err.with_context(ann_id=self.ann_id, field=_mask_field(self.mask)) from None

    def load_initial_fit(self) -> InitialFit | None:
        """The initial body fit, or ``None`` if the annotation names none."""
        if self.init_fit_path is None:
            return None
        try:
            return load_initial_fit(self.init_fit_path)
        except DataError as err:
            raise err.with_context(ann_id=self.ann_id) from None


@dataclass(frozen=True, eq=False)
class LDposeDataset:
    """A loaded annotation file.

    Attributes:
        path: the annotation JSON.
        images_dir: folder image ``file_name``\\ s resolve against.
        images: image id -> :class:`ImageRecord`.
        people: the valid annotations, in file order.
        categories: the raw ``categories`` entries.
        errors: problems collected with ``on_error="collect"`` (empty otherwise).
    """

    path: Path
    images_dir: Path
    images: Mapping[int, ImageRecord]
    people: tuple[PersonAnnotation, ...]
    categories: tuple[Mapping[str, Any], ...] = ()
    errors: tuple[DataError, ...] = ()

    def __len__(self) -> int:
        return len(self.people)

    def __iter__(self) -> Iterator[PersonAnnotation]:
        return iter(self.people)

    def _image(self, image: ImageRecord | int) -> ImageRecord:
        if isinstance(image, ImageRecord):
            return image
        try:
            return self.images[image]
        except KeyError:
            raise DataError(f"unknown image id {image}", path=self.path) from None

    def image_of(self, person: PersonAnnotation) -> ImageRecord:
        """The :class:`ImageRecord` a person is in."""
        return self._image(person.image_id)

    def people_in(self, image: ImageRecord | int) -> list[PersonAnnotation]:
        """The people annotated in one image."""
        image_id = self._image(image).id
        return [p for p in self.people if p.image_id == image_id]

    def image_path(self, image: ImageRecord | int) -> Path:
        """Path of an image file: ``images_dir / file_name``."""
        return self.images_dir / self._image(image).file_name

    def load_image(self, image: ImageRecord | int) -> np.ndarray:
        """RGB uint8 (H, W, 3) image, EXIF orientation applied; checks its size against the
        annotation's ``width``/``height``."""
        record = self._image(image)
        rgb = load_rgb_image(self.image_path(record))
        if rgb.shape[:2] != (record.height, record.width):
            raise DataError(
                f"image is {rgb.shape[1]}x{rgb.shape[0]} (WxH, after EXIF orientation) but "
                f"{self.path.name} says {record.width}x{record.height}",
                path=self.image_path(record),
                image_id=record.id,
                field="width/height",
            )
        return rgb

    def mask(self, person: PersonAnnotation) -> np.ndarray | None:
        """Bool (H, W) person mask at the image's size, or ``None`` if the annotation has none."""
        record = self.image_of(person)
        try:
            return person.load_mask(height=record.height, width=record.width)
        except DataError as err:
            raise err.with_context(path=self.path) from None

    def intrinsics(self, image: ImageRecord | int, *, focal_px: float = DEFAULT_FOCAL_PX) -> Intrinsics:
        """The image's intrinsics, else the SMPLify-X default camera for its size."""
        return self._image(image).intrinsics_or_default(focal_px)

    def initial_fit(self, person: PersonAnnotation) -> InitialFit | None:
        """The person's initial body fit, or ``None``."""
        return person.load_initial_fit()


# --------------------------------------------------------------------------- image loading
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
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as err:
        raise DataError(f"cannot read image: {err}", path=path) from None


# --------------------------------------------------------------------------- validation helpers
def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_number(x: Any) -> bool:
    """A JSON number (int or float, not bool)."""
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _is_real(x: Any) -> bool:
    """Any real number type, numpy scalars included (not bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _type_name(x: Any) -> str:
    return "null" if x is None else type(x).__name__


def _mask_field(mask: MaskSource) -> str:
    return "mask_path" if isinstance(mask, PngMask) else "segmentation"


def _require(entry: Mapping[str, Any], key: str) -> Any:
    if key not in entry:
        raise DataError("missing required key", field=key)
    return entry[key]


def _int_field(entry: Mapping[str, Any], key: str) -> int:
    value = _require(entry, key)
    if not _is_int(value):
        raise DataError(f"expected an integer, got {_type_name(value)} {value!r:.40}", field=key)
    return value


def _positive_side(entry: Mapping[str, Any], key: str) -> int:
    value = _int_field(entry, key)
    if not 0 < value <= MAX_SIDE_PX:
        raise DataError(f"expected a positive size in pixels (<= {MAX_SIDE_PX}), got {value}", field=key)
    return value


def _parse_intrinsics(value: Any, *, key: str) -> Intrinsics:
    """``{"fx", "fy", "cx", "cy"}``, ``{"K": 3x3}`` or a bare 3x3 list."""
    try:
        if isinstance(value, Mapping):
            if "K" in value:
                return Intrinsics.from_matrix(value["K"])
            missing = [k for k in ("fx", "fy", "cx", "cy") if k not in value]
            if missing:
                raise DataError(f"expected keys fx, fy, cx, cy (or 'K'); missing {', '.join(missing)}")
            for k in ("fx", "fy", "cx", "cy"):
                if not _is_number(value[k]):
                    raise DataError(f"{k!r} must be a number, got {_type_name(value[k])}")
            try:
                fx, fy, cx, cy = (float(value[k]) for k in ("fx", "fy", "cx", "cy"))
            except OverflowError:
                raise DataError("intrinsics value too large") from None
            return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy)
        if isinstance(value, list):
            return Intrinsics.from_matrix(value)
        raise DataError(f"expected {{fx, fy, cx, cy}}, {{'K': 3x3}} or a 3x3 list, got {_type_name(value)}")
    except DataError as err:
        raise DataError(err.reason, field=key) from None  # under the key the file used


def parse_image(entry: Any) -> ImageRecord:
    """Validate one ``images`` entry (errors carry ``field``; the caller adds file/image id)."""
    if not isinstance(entry, Mapping):
        raise DataError(f"expected an object, got {_type_name(entry)}")
    image_id = _int_field(entry, "id")
    file_name = _require(entry, "file_name")
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"expected a non-empty string, got {_type_name(file_name)}", field="file_name")
    width = _positive_side(entry, "width")
    height = _positive_side(entry, "height")
    camera_keys = [k for k in ("camera", "intrinsics", "K") if k in entry and entry[k] is not None]
    if len(camera_keys) > 1:
        raise DataError(f"give only one of {', '.join(camera_keys)}", field=camera_keys[0])
    intrinsics = None
    if camera_keys:
        intrinsics = _parse_intrinsics(entry[camera_keys[0]], key=camera_keys[0])
    return ImageRecord(id=image_id, file_name=file_name, width=width, height=height, intrinsics=intrinsics)


def parse_keypoints(value: Any, *, width: int, height: int) -> np.ndarray:
    """Validate a flat list of 75 numbers -> (25, 3) float64 ``[x_px, y_px, v]``.

    Checks: count, number types, finiteness, ``v`` in {0, 1, 2}, and labelled keypoints within
    ``OUTSIDE_MARGIN`` of the image (by width for x, by height for y).
    """
    expected = NUM_KEYPOINTS * 3
    if not isinstance(value, list):
        raise DataError(f"expected a list of {expected} numbers, got {_type_name(value)}", field="keypoints")
    if len(value) != expected:
        raise DataError(
            f"expected {expected} numbers ({NUM_KEYPOINTS} keypoints x 3), got {len(value)}",
            field="keypoints",
        )
    for i, v in enumerate(value):
        if not _is_number(v):
            raise DataError(
                f"entry {i} (keypoint {i // 3}) must be a number, got {_type_name(v)}",
                field="keypoints",
            )
    try:
        kp = np.asarray(value, dtype=np.float64).reshape(NUM_KEYPOINTS, 3)
    except OverflowError:
        raise DataError("a number is too large", field="keypoints") from None
    bad = ~np.isfinite(kp)
    if bad.any():
        k = int(np.argwhere(bad)[0, 0])
        raise DataError(f"keypoint {k} has NaN or infinite values", field="keypoints")
    vis = kp[:, 2]
    bad_vis = ~np.isin(vis, VISIBILITY_VALUES)
    if bad_vis.any():
        k = int(np.flatnonzero(bad_vis)[0])
        raise DataError(f"keypoint {k} has visibility {vis[k]:g}; expected 0, 1 or 2", field="keypoints")
    lo_x, hi_x = -OUTSIDE_MARGIN * width, (1.0 + OUTSIDE_MARGIN) * width
    lo_y, hi_y = -OUTSIDE_MARGIN * height, (1.0 + OUTSIDE_MARGIN) * height
    x_px, y_px = kp[:, 0], kp[:, 1]
    outside = (vis > 0) & ((x_px < lo_x) | (x_px > hi_x) | (y_px < lo_y) | (y_px > hi_y))
    if outside.any():
        k = int(np.flatnonzero(outside)[0])
        raise DataError(
            f"keypoint {k} at ({kp[k, 0]:g}, {kp[k, 1]:g}) px lies more than "
            f"{OUTSIDE_MARGIN:.0%} of the image size outside the {width}x{height} image",
            field="keypoints",
        )
    kp.setflags(write=False)
    return kp


def _parse_bbox(value: Any) -> tuple[float, float, float, float]:
    if not isinstance(value, list) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise DataError("expected [x, y, width, height] (4 numbers)", field="bbox")
    try:
        x, y, w, h = (float(v) for v in value)
    except OverflowError:
        raise DataError("a number is too large", field="bbox") from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise DataError("has NaN or infinite values", field="bbox")
    if w < 0 or h < 0:
        raise DataError(f"width and height must be >= 0, got {w:g}, {h:g}", field="bbox")
    return (x, y, w, h)


def _resolve(name: Any, *, key: str, search_dirs: tuple[Path, ...]) -> Path:
    """Resolve a relative file name against ``search_dirs`` (first existing wins)."""
    if not isinstance(name, str) or not name:
        raise DataError(f"expected a non-empty path string, got {_type_name(name)}", field=key)
    candidate = Path(name)
    if candidate.is_absolute():
        candidates = [candidate]
    else:
        candidates = [d / candidate for d in search_dirs]
    for c in candidates:
        if c.is_file():
            return c
    tried = ", ".join(str(c) for c in candidates)
    raise DataError(f"file {name!r} not found (tried {tried})", field=key)


def _parse_mask(entry: Mapping[str, Any], *, record: ImageRecord, search_dirs: tuple[Path, ...]) -> MaskSource | None:
    """The mask source: a PNG ('mask_path'/'mask') else 'segmentation'; size-checked."""
    png_keys = [k for k in ("mask_path", "mask") if entry.get(k) is not None]
    if len(png_keys) > 1:
        raise DataError("give only one of 'mask_path' and 'mask'", field="mask_path")
    if png_keys:
        # A PNG file takes precedence over a COCO 'segmentation' (typically a coarse polygon).
        key = png_keys[0]
        path = _resolve(entry[key], key=key, search_dirs=search_dirs)
        try:
            height, width = png_mask_size(path)
        except DataError as err:
            raise DataError(err.reason, field=key) from None
        if (height, width) != (record.height, record.width):
            raise DataError(
                f"mask {path.name} is {width}x{height} (WxH) but image {record.id} is {record.width}x{record.height}",
                field=key,
            )
        return PngMask(path=path)
    if entry.get("segmentation") is None:
        return None
    mask = parse_segmentation(entry["segmentation"])
    if isinstance(mask, RleMask) and (mask.height, mask.width) != (record.height, record.width):
        raise DataError(
            f"RLE size is {mask.width}x{mask.height} (WxH) but image {record.id} is {record.width}x{record.height}",
            field="segmentation",
        )
    return mask


def _parse_init_fit(value: Any, *, search_dirs: tuple[Path, ...]) -> Path | None:
    if value is None:
        return None
    path = _resolve(value, key="init_fit", search_dirs=search_dirs)
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"unsupported initial-fit format {path.suffix!r}; expected one of {', '.join(SUPPORTED_SUFFIXES)}",
            field="init_fit",
        )
    return path


def parse_annotation(
    entry: Any,
    *,
    images: Mapping[int, ImageRecord],
    search_dirs: tuple[Path, ...],
) -> PersonAnnotation:
    """Validate one ``annotations`` entry (its id must already be known valid by the caller)."""
    ann_id = entry["id"]
    image_id = _int_field(entry, "image_id")
    if image_id not in images:
        raise DataError(f"refers to unknown image id {image_id}", field="image_id")
    record = images[image_id]
    keypoints = parse_keypoints(_require(entry, "keypoints"), width=record.width, height=record.height)
    if "num_keypoints" in entry:
        n = entry["num_keypoints"]
        if not _is_int(n) or not 0 <= n <= NUM_KEYPOINTS:
            raise DataError(
                f"expected an integer in [0, {NUM_KEYPOINTS}], got {_type_name(n)} {n!r:.40}",
                field="num_keypoints",
            )
    limb_status = derive_limb_status(keypoints)
    bbox = _parse_bbox(entry["bbox"]) if entry.get("bbox") is not None else None
    mask = _parse_mask(entry, record=record, search_dirs=search_dirs)
    init_fit_path = _parse_init_fit(entry.get("init_fit"), search_dirs=search_dirs)
    return PersonAnnotation(
        ann_id=ann_id,
        image_id=image_id,
        keypoints_px=keypoints,
        limb_status=limb_status,
        bbox=bbox,
        mask=mask,
        init_fit_path=init_fit_path,
    )


# --------------------------------------------------------------------------- file level
def _top_list(doc: Mapping[str, Any], key: str, *, path: Path, required: bool) -> list[Any]:
    if key not in doc:
        if required:
            raise DataError("missing required top-level key", path=path, field=key)
        return []
    value = doc[key]
    if not isinstance(value, list):
        raise DataError(f"expected a list, got {_type_name(value)}", path=path, field=key)
    return value


def _parse_categories(entries: list[Any], *, path: Path) -> tuple[Mapping[str, Any], ...]:
    """Check each category; where it lists ``keypoints`` names, they must be the 25 LDpose names in
    LDpose order (spellings and aliases per :func:`~resihmr_dr.data.ldpose.canonical_keypoint_name`):
    keypoints are read by position, so another order would put them on the wrong joints."""
    for i, cat in enumerate(entries):
        if not isinstance(cat, Mapping):
            raise DataError(f"expected an object, got {_type_name(cat)}", path=path, item=f"categories[{i}]")
        item = f"categories[{i}]" + (f" (id {cat['id']!r:.20})" if "id" in cat else "")
        names = cat.get("keypoints")
        if names is None:
            continue
        if not isinstance(names, list):
            raise DataError(
                f"expected the {NUM_KEYPOINTS} LDpose keypoint names, got {_type_name(names)}",
                path=path,
                item=item,
                field="keypoints",
            )
        problem = keypoint_names_problem(names)
        if problem is not None:
            raise DataError(problem, path=path, item=item, field="keypoints")
    return tuple(entries)


def _duplicates(ids: list[Any]) -> set[int]:
    return {i for i, n in Counter(ids).items() if n > 1}


def load_annotations(
    path: str | os.PathLike[str],
    *,
    images_dir: str | os.PathLike[str] | None = None,
    on_error: Literal["raise", "collect"] = "raise",
) -> LDposeDataset:
    """Load and validate an LDpose-LimbLoss annotation file.

    Args:
        path: the COCO-style JSON file.
        images_dir: folder image file names (and, second to the JSON's folder, relative mask and
            initial-fit paths) resolve against; default the JSON's folder.
        on_error: ``"raise"``: the first bad image/annotation raises. ``"collect"``: bad images
            (with their annotations) and bad annotations are skipped and their errors returned
            in ``dataset.errors``. File-level problems always raise.

    Raises:
        DataError: naming the file, the annotation/image id and the field.
    """
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    path = Path(path)
    json_dir = path.parent
    img_dir = Path(images_dir) if images_dir is not None else json_dir
    search_dirs = (json_dir,) if img_dir == json_dir else (json_dir, img_dir)

    doc = read_json(path)
    if not isinstance(doc, Mapping):
        raise DataError(f"expected a JSON object at the top level, got {_type_name(doc)}", path=path)
    image_entries = _top_list(doc, "images", path=path, required=True)
    ann_entries = _top_list(doc, "annotations", path=path, required=True)
    raw_categories = _top_list(doc, "categories", path=path, required=False)
    categories = _parse_categories(raw_categories, path=path)

    errors: list[DataError] = []

    def report(err: DataError) -> None:
        if on_error == "raise":
            raise err
        errors.append(err)

    # Images.
    images: dict[int, ImageRecord] = {}
    rejected_images: set[int] = set()
    raw_image_ids = [e["id"] for e in image_entries if isinstance(e, Mapping) and _is_int(e.get("id"))]
    dup_images = _duplicates(raw_image_ids)
    for i, entry in enumerate(image_entries):
        entry_id = entry.get("id") if isinstance(entry, Mapping) else None
        known_id = entry_id if _is_int(entry_id) else None
        item = None if known_id is not None else f"images[{i}]"
        if known_id is not None and known_id in dup_images:
            rejected_images.add(known_id)
            report(DataError("duplicate image id", path=path, image_id=known_id, field="id"))
            continue
        try:
            record = parse_image(entry)
        except DataError as err:
            if known_id is not None:
                rejected_images.add(known_id)
            report(err.with_context(path=path, image_id=known_id, item=item))
            continue
        images[record.id] = record

    # Annotations.
    raw_ann_ids = [e["id"] for e in ann_entries if isinstance(e, Mapping) and _is_int(e.get("id"))]
    dup_anns = _duplicates(raw_ann_ids)
    people: list[PersonAnnotation] = []
    for i, entry in enumerate(ann_entries):
        item = f"annotations[{i}]"
        if not isinstance(entry, Mapping):
            report(DataError(f"expected an object, got {_type_name(entry)}", path=path, item=item))
            continue
        if "id" not in entry:
            report(DataError("missing required key", path=path, item=item, field="id"))
            continue
        ann_id = entry["id"]
        if not _is_int(ann_id):
            report(
                DataError(
                    f"expected an integer, got {_type_name(ann_id)} {ann_id!r:.40}",
                    path=path,
                    item=item,
                    field="id",
                )
            )
            continue
        if ann_id in dup_anns:
            report(DataError("duplicate annotation id", path=path, ann_id=ann_id, field="id"))
            continue
        image_id = entry.get("image_id")
        if _is_int(image_id) and image_id in rejected_images:
            report(
                DataError(
                    f"refers to image {image_id}, which was rejected",
                    path=path,
                    ann_id=ann_id,
                    field="image_id",
                )
            )
            continue
        try:
            people.append(parse_annotation(entry, images=images, search_dirs=search_dirs))
        except DataError as err:
            report(err.with_context(path=path, ann_id=ann_id))

    return LDposeDataset(
        path=path,
        images_dir=img_dir,
        images=images,
        people=tuple(people),
        categories=categories,
        errors=tuple(errors),
    )


# --------------------------------------------------------------------------- the files it names
@dataclass(frozen=True)
class FileCheck:
    """What :func:`check_files` found.

    Attributes:
        valid: the people whose image, mask and initial fit all load, in file order.
        errors: every problem: the dataset's own (``dataset.errors``, from ``on_error="collect"``),
            then one per image file that is missing, does not decode or has another size than the
            file says, then per person: its image is bad, its mask does not decode, its ``init_fit``
            does not load (a person can have more than one).
    """

    valid: tuple[PersonAnnotation, ...]
    errors: tuple[DataError, ...]


def check_image_file(dataset: LDposeDataset, record: ImageRecord) -> DataError | None:
    """Decode one image with :meth:`LDposeDataset.load_image` (which checks its size); the problem,
    naming the annotation file, the image id and ``file_name`` (or ``width/height``), or ``None``."""
    try:
        dataset.load_image(record)
    except DataError as err:
        return DataError(
            f"{record.file_name!r} ({dataset.image_path(record)}): {err.reason}",
            path=dataset.path,
            image_id=record.id,
            field=err.field or "file_name",
        )
    return None


def check_mask(dataset: LDposeDataset, person: PersonAnnotation) -> DataError | None:
    """Decode the person's mask (checking its size against the image); the problem or ``None``."""
    try:
        dataset.mask(person)
    except DataError as err:
        return err
    return None


def check_init_fit(dataset: LDposeDataset, person: PersonAnnotation) -> DataError | None:
    """Load the person's ``init_fit`` file with :func:`load_initial_fit`; the problem, naming the
    annotation file, the annotation id and the field ``init_fit`` (the fit file's own field after
    it), or ``None`` (also when the person names no initial fit)."""
    if person.init_fit_path is None:
        return None
    try:
        load_initial_fit(person.init_fit_path)
    except DataError as err:
        inner = f"field {err.field!r}: {err.reason}" if err.field else err.reason
        return DataError(
            f"cannot load the initial fit {person.init_fit_path}: {inner}",
            path=dataset.path,
            ann_id=person.ann_id,
            field="init_fit",
        )
    return None


def check_files(dataset: LDposeDataset) -> FileCheck:
    """Read every file the annotations name, which :func:`load_annotations` leaves lazy: decode each
    image (existence, format, size), each person's mask, and load each ``init_fit``.

    Problems are collected, never raised (see :class:`FileCheck`); a person in an image whose file
    is bad is invalid too. Images are decoded one at a time and not kept.
    """
    errors = list(dataset.errors)
    bad_images: set[int] = set()
    for record in dataset.images.values():
        problem = check_image_file(dataset, record)
        if problem is not None:
            bad_images.add(record.id)
            errors.append(problem)
    valid: list[PersonAnnotation] = []
    for person in dataset:
        problems = [check_mask(dataset, person), check_init_fit(dataset, person)]
        if person.image_id in bad_images:
            problems.insert(
                0,
                DataError(
                    f"refers to image {person.image_id}, whose file cannot be read",
                    path=dataset.path,
                    ann_id=person.ann_id,
                    field="image_id",
                ),
            )
        found = [p for p in problems if p is not None]
        errors.extend(found)
        if not found:
            valid.append(person)
    return FileCheck(valid=tuple(valid), errors=tuple(errors))
