"""What ``resihmr-dr validate`` adds to loading: it reads every file the annotations name.

:func:`~resihmr_dr.data.annotations.load_annotations` checks the JSON (and the keypoint names'
order) and leaves images, masks and initial fits lazy; :func:`check_files` decodes each image
(existence, format, size after EXIF orientation), each person's mask, and loads each
``init_fit``, collecting every problem as a :class:`DataError` instead of raising.
"""

from __future__ import annotations

from dataclasses import dataclass

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.init_fit import load_initial_fit
from resihmr_dr.data.records import ImageRecord, LDposeDataset, PersonAnnotation

__all__ = ["FileCheck", "check_files", "check_image_file", "check_init_fit", "check_mask"]


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
        return DataError(
            f"cannot load the initial fit {person.init_fit_path}: {err.field_reason}",
            path=dataset.path,
            ann_id=person.ann_id,
            field="init_fit",
        )
    return None


def check_files(dataset: LDposeDataset) -> FileCheck:
    """Read every file the annotations name, which
    :func:`~resihmr_dr.data.annotations.load_annotations` leaves lazy: decode each image (existence,
    format, size), each person's mask, and load each ``init_fit``.

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
