"""Load and validate LDpose-LimbLoss annotation files (COCO-style JSON, 25 keypoints).

File layout::

    {"images": [{"id", "file_name", "width", "height", optional "camera" | "intrinsics" | "K"}],
     "annotations": [{"id", "image_id", "keypoints": [75 numbers], optional "num_keypoints",
                      "bbox" [x, y, w, h], "segmentation" (RLE or polygons) or "mask_path"/"mask"
                      (a PNG), "init_fit" (an initial-fit file), "person_id" (a string)}],
     "categories": [{"id", "name", optional "keypoints": the 25 names, "skeleton"}] (optional)}

Keypoint triplets are read by position (:data:`~resihmr_dr.data.ldpose.KEYPOINT_NAMES` order). A
category that lists ``keypoints`` names must list those 25 in that order (case, ``-``/space for
``_`` and the ``l_``/``r_`` aliases of :data:`~resihmr_dr.data.ldpose.KEYPOINT_ALIASES` aside):
a permutation or an unknown name is a file-level error naming the category and the first
mismatching position, never a silent reassignment.

Coordinates are image pixels (``_px``): x right, y down, pixel (0, 0) at the top-left pixel (the
convention of :mod:`resihmr_dr.camera`). Camera intrinsics may be ``{"fx", "fy", "cx", "cy"}``,
``{"K": 3x3}`` or a bare 3x3 ``K``; without them,
:meth:`~resihmr_dr.data.records.Intrinsics.default_for` gives SMPLify-X's default (focal 5000 px,
principal point ``(W/2, H/2)``). A ``camera`` object may also give the camera's pose in a world
frame shared by several images, ``"R"`` (3x3) and ``"t"`` (3): ``X_cam = R @ X_world + t``
(:class:`~resihmr_dr.data.records.Extrinsics`).

Several images of one person: annotations with the same ``person_id`` are one subject
(:meth:`~resihmr_dr.data.records.LDposeDataset.subjects`), fitted jointly. Their residual limbs
must agree (a limb residual in one image and intact or of another level in another is an error
naming the person and both annotations), and a subject appears at most once per image.

Relative file paths (masks, initial fits) resolve against the JSON's folder, then
``images_dir``; images resolve against ``images_dir`` (default: the JSON's folder).
Masks stay lazy (:data:`~resihmr_dr.data.masks.MaskSource`); their size is checked at load time
from the RLE size or the PNG header (polygons take the image size) and again when decoded.

Every problem raises :class:`~resihmr_dr.data.errors.DataError` naming the file, the annotation
(or image) id and the field. With ``on_error="collect"``, per-image and per-annotation problems
are collected in ``LDposeDataset.errors`` and the good people are kept; file-level problems
(unreadable or malformed JSON, wrong top-level structure, keypoint names) always raise.

This module checks the file and its top-level lists and builds the records of
:mod:`resihmr_dr.data.records`, one entry at a time with :mod:`resihmr_dr.data.entries`. Images,
and the initial fits, are read only when used; :func:`~resihmr_dr.data.validate.check_files`
reads every file the annotations name (what ``resihmr-dr validate`` does) and collects the
problems.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from resihmr_dr.data.entries import parse_annotation, parse_image
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.jsonio import is_int, read_json, type_name
from resihmr_dr.data.ldpose import NUM_KEYPOINTS, keypoint_names_problem
from resihmr_dr.data.records import ImageRecord, LDposeDataset, PersonAnnotation, Subject, group_subjects

__all__ = ["load_annotations"]


def _top_list(doc: Mapping[str, Any], key: str, *, path: Path, required: bool) -> list[Any]:
    if key not in doc:
        if required:
            raise DataError("missing required top-level key", path=path, field=key)
        return []
    value = doc[key]
    if not isinstance(value, list):
        raise DataError(f"expected a list, got {type_name(value)}", path=path, field=key)
    return value


def _parse_categories(entries: list[Any], *, path: Path) -> tuple[Mapping[str, Any], ...]:
    """Check each category; where it lists ``keypoints`` names, they must be the 25 LDpose names in
    LDpose order (spellings and aliases per :func:`~resihmr_dr.data.ldpose.canonical_keypoint_name`):
    keypoints are read by position, so another order would put them on the wrong joints."""
    for i, cat in enumerate(entries):
        if not isinstance(cat, Mapping):
            raise DataError(f"expected an object, got {type_name(cat)}", path=path, item=f"categories[{i}]")
        item = f"categories[{i}]" + (f" (id {cat['id']!r:.20})" if "id" in cat else "")
        names = cat.get("keypoints")
        if names is None:
            continue
        if not isinstance(names, list):
            raise DataError(
                f"expected the {NUM_KEYPOINTS} LDpose keypoint names, got {type_name(names)}",
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


def _subject_problem(subject: Subject, *, path: Path) -> DataError | None:
    """Why the annotations sharing one ``person_id`` cannot be one person, or None: the residual
    limbs must agree across the images (the status is derived from which endpoint keypoints are
    labelled), and each image shows the person once."""
    first = subject.people[0]
    seen: dict[int, int] = {}
    for other in subject.people:
        if other.image_id in seen:
            return DataError(
                f"person {subject.person_id!r} appears twice in image {other.image_id} "
                f"(annotations {seen[other.image_id]} and {other.ann_id})",
                path=path,
                ann_id=other.ann_id,
                field="person_id",
            )
        seen[other.image_id] = other.ann_id
        differ = [n for n in first.limb_status if first.limb_status[n] != other.limb_status[n]]
        if differ:
            name = differ[0]
            return DataError(
                f"person {subject.person_id!r}: {name} is {first.limb_status[name].value} in annotation "
                f"{first.ann_id} but {other.limb_status[name].value} in annotation {other.ann_id}; "
                "the residual limbs of one person must be labelled the same in every image",
                path=path,
                ann_id=other.ann_id,
                field="person_id",
            )
    return None


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
        raise DataError(f"expected a JSON object at the top level, got {type_name(doc)}", path=path)
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
    raw_image_ids = [e["id"] for e in image_entries if isinstance(e, Mapping) and is_int(e.get("id"))]
    dup_images = _duplicates(raw_image_ids)
    for i, entry in enumerate(image_entries):
        entry_id = entry.get("id") if isinstance(entry, Mapping) else None
        known_id = entry_id if is_int(entry_id) else None
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
    raw_ann_ids = [e["id"] for e in ann_entries if isinstance(e, Mapping) and is_int(e.get("id"))]
    dup_anns = _duplicates(raw_ann_ids)
    people: list[PersonAnnotation] = []
    for i, entry in enumerate(ann_entries):
        item = f"annotations[{i}]"
        if not isinstance(entry, Mapping):
            report(DataError(f"expected an object, got {type_name(entry)}", path=path, item=item))
            continue
        if "id" not in entry:
            report(DataError("missing required key", path=path, item=item, field="id"))
            continue
        ann_id = entry["id"]
        if not is_int(ann_id):
            report(
                DataError(
                    f"expected an integer, got {type_name(ann_id)} {ann_id!r:.40}",
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
        if is_int(image_id) and image_id in rejected_images:
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

    for subject in group_subjects(people):
        err = _subject_problem(subject, path=path) if subject.multi_view else None
        if err is not None:
            report(err)
            people = [p for p in people if p not in subject.people]

    return LDposeDataset(
        path=path,
        images_dir=img_dir,
        images=images,
        people=tuple(people),
        categories=categories,
        errors=tuple(errors),
    )
