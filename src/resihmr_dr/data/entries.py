"""One ``images`` or ``annotations`` entry of an LDpose file, checked and turned into its record.

Each function validates one entry of the parsed JSON (layout: :mod:`resihmr_dr.data.annotations`)
and raises :class:`DataError` with ``field`` set; the file-level loader adds the file and the
image or annotation id. Keypoints are image pixels ``[x_px, y_px, v]``; relative mask and
initial-fit paths resolve against ``search_dirs`` (first existing wins).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.init_fit import SUPPORTED_SUFFIXES
from resihmr_dr.data.jsonio import is_int, is_number, type_name
from resihmr_dr.data.ldpose import NUM_KEYPOINTS
from resihmr_dr.data.masks import MAX_SIDE_PX, MaskSource, PngMask, RleMask, parse_segmentation, png_mask_size
from resihmr_dr.data.records import Extrinsics, ImageRecord, Intrinsics, PersonAnnotation
from resihmr_dr.data.status import derive_limb_status

__all__ = ["OUTSIDE_MARGIN", "parse_annotation", "parse_image", "parse_keypoints"]

# Labelled keypoints may lie outside the image by at most this fraction of its width/height.
OUTSIDE_MARGIN = 0.5
VISIBILITY_VALUES = (0, 1, 2)


def _require(entry: Mapping[str, Any], key: str) -> Any:
    if key not in entry:
        raise DataError("missing required key", field=key)
    return entry[key]


def _int_field(entry: Mapping[str, Any], key: str) -> int:
    value = _require(entry, key)
    if not is_int(value):
        raise DataError(f"expected an integer, got {type_name(value)} {value!r:.40}", field=key)
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
                if not is_number(value[k]):
                    raise DataError(f"{k!r} must be a number, got {type_name(value[k])}")
            try:
                fx, fy, cx, cy = (float(value[k]) for k in ("fx", "fy", "cx", "cy"))
            except OverflowError:
                raise DataError("intrinsics value too large") from None
            return Intrinsics(fx=fx, fy=fy, cx=cx, cy=cy)
        if isinstance(value, list):
            return Intrinsics.from_matrix(value)
        raise DataError(f"expected {{fx, fy, cx, cy}}, {{'K': 3x3}} or a 3x3 list, got {type_name(value)}")
    except DataError as err:
        raise DataError(err.reason, field=key) from None  # under the key the file used


def parse_image(entry: Any) -> ImageRecord:
    """Validate one ``images`` entry (errors carry ``field``; the caller adds file/image id)."""
    if not isinstance(entry, Mapping):
        raise DataError(f"expected an object, got {type_name(entry)}")
    image_id = _int_field(entry, "id")
    file_name = _require(entry, "file_name")
    if not isinstance(file_name, str) or not file_name:
        raise DataError(f"expected a non-empty string, got {type_name(file_name)}", field="file_name")
    width = _positive_side(entry, "width")
    height = _positive_side(entry, "height")
    camera_keys = [k for k in ("camera", "intrinsics", "K") if k in entry and entry[k] is not None]
    if len(camera_keys) > 1:
        raise DataError(f"give only one of {', '.join(camera_keys)}", field=camera_keys[0])
    intrinsics = extrinsics = None
    if camera_keys:
        intrinsics = _parse_intrinsics(entry[camera_keys[0]], key=camera_keys[0])
        extrinsics = _parse_extrinsics(entry[camera_keys[0]], key=camera_keys[0])
    return ImageRecord(
        id=image_id, file_name=file_name, width=width, height=height, intrinsics=intrinsics, extrinsics=extrinsics
    )


def _parse_extrinsics(value: Any, *, key: str) -> Extrinsics | None:
    """The camera's optional ``"R"`` (3x3) and ``"t"`` (3) in a shared world frame (both or neither)."""
    if not isinstance(value, Mapping) or ("R" not in value and "t" not in value):
        return None
    if "R" not in value or "t" not in value:
        missing = "t" if "R" in value else "R"
        raise DataError(f"extrinsics need both 'R' and 't'; {missing!r} is missing", field=key)
    for name in ("R", "t"):
        flat = np.asarray(value[name], dtype=object).reshape(-1)
        if not all(is_number(v) for v in flat):
            raise DataError(f"{name!r} must be a list of numbers", field=key)
    try:
        return Extrinsics(R=value["R"], t=value["t"])
    except DataError as err:
        raise DataError(err.reason, field=key) from None  # under the key the file used


def parse_keypoints(value: Any, *, width: int, height: int) -> np.ndarray:
    """Validate a flat list of 75 numbers -> (25, 3) float64 ``[x_px, y_px, v]``.

    Checks: count, number types, finiteness, ``v`` in {0, 1, 2}, and labelled keypoints within
    ``OUTSIDE_MARGIN`` of the image (by width for x, by height for y).
    """
    expected = NUM_KEYPOINTS * 3
    if not isinstance(value, list):
        raise DataError(f"expected a list of {expected} numbers, got {type_name(value)}", field="keypoints")
    if len(value) != expected:
        raise DataError(
            f"expected {expected} numbers ({NUM_KEYPOINTS} keypoints x 3), got {len(value)}",
            field="keypoints",
        )
    for i, v in enumerate(value):
        if not is_number(v):
            raise DataError(
                f"entry {i} (keypoint {i // 3}) must be a number, got {type_name(v)}",
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
    if not isinstance(value, list) or len(value) != 4 or not all(is_number(v) for v in value):
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
        raise DataError(f"expected a non-empty path string, got {type_name(name)}", field=key)
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
        if not is_int(n) or not 0 <= n <= NUM_KEYPOINTS:
            raise DataError(
                f"expected an integer in [0, {NUM_KEYPOINTS}], got {type_name(n)} {n!r:.40}",
                field="num_keypoints",
            )
    limb_status = derive_limb_status(keypoints)
    bbox = _parse_bbox(entry["bbox"]) if entry.get("bbox") is not None else None
    mask = _parse_mask(entry, record=record, search_dirs=search_dirs)
    init_fit_path = _parse_init_fit(entry.get("init_fit"), search_dirs=search_dirs)
    person_id = entry.get("person_id")
    if person_id is not None and (not isinstance(person_id, str) or not person_id.strip()):
        raise DataError(f"expected a non-empty string, got {type_name(person_id)} {person_id!r:.40}", field="person_id")
    return PersonAnnotation(
        ann_id=ann_id,
        image_id=image_id,
        keypoints_px=keypoints,
        limb_status=limb_status,
        bbox=bbox,
        mask=mask,
        init_fit_path=init_fit_path,
        person_id=person_id,
    )
