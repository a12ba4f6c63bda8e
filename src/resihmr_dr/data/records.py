"""The typed records of a loaded LDpose annotation file: images, their intrinsics, the people.

Coordinates are image pixels (``_px``): x right, y down, pixel (0, 0) at the top-left pixel (the
convention of :mod:`resihmr_dr.camera`). :func:`~resihmr_dr.data.annotations.load_annotations`
builds them; masks, images and initial fits stay files until a record's ``load_*`` / ``mask``
method reads them (raising :class:`DataError` naming the annotation and the field).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.images import load_rgb_image
from resihmr_dr.data.init_fit import InitialFit, load_initial_fit
from resihmr_dr.data.ldpose import DEFAULT_FOCAL_PX, Limb, LimbStatus
from resihmr_dr.data.masks import MaskSource, PngMask
from resihmr_dr.data.status import residual_limbs

__all__ = ["Extrinsics", "Intrinsics", "ImageRecord", "PersonAnnotation", "Subject", "LDposeDataset", "group_subjects"]


def _is_real(x: Any) -> bool:
    """Any real number type, numpy scalars included (not bool)."""
    return isinstance(x, numbers.Real) and not isinstance(x, (bool, np.bool_))


def _mask_field(mask: MaskSource) -> str:
    """The annotation key a mask source came from."""
    return "mask_path" if isinstance(mask, PngMask) else "segmentation"


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


@dataclass(frozen=True, eq=False)
class Extrinsics:
    """A camera's pose in a world frame shared by several images: ``X_cam = R @ X_world + t``
    (metres; OpenCV camera frame). R: (3, 3) float64 rotation; t: (3,) float64 (read-only)."""

    R: np.ndarray
    t: np.ndarray

    def __post_init__(self) -> None:
        for name, shape in (("R", (3, 3)), ("t", (3,))):
            try:
                value = np.array(getattr(self, name), dtype=np.float64)
            except (TypeError, ValueError, OverflowError):
                raise DataError(f"{name!r} must be numbers of shape {shape}", field="camera") from None
            if value.shape != shape:
                raise DataError(f"{name!r} must have shape {shape}, got {value.shape}", field="camera")
            if not np.all(np.isfinite(value)):
                raise DataError(f"{name!r} has NaN or infinite entries", field="camera")
            value.setflags(write=False)
            object.__setattr__(self, name, value)
        error = float(np.abs(self.R @ self.R.T - np.eye(3)).max())
        if error > 1e-4 or np.linalg.det(self.R) <= 0:
            raise DataError(
                f"'R' must be a rotation matrix (orthonormal, determinant +1); |R R^T - I| = {error:.2g}, "
                f"det = {np.linalg.det(self.R):.3g}",
                field="camera",
            )

    def to_camera(self, points_world: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> camera frame."""
        return np.asarray(points_world) @ self.R.T + self.t


@dataclass(frozen=True)
class ImageRecord:
    """One ``images`` entry. ``intrinsics`` is ``None`` when the file gives no camera;
    ``extrinsics`` (the camera's ``R`` and ``t``) only where the file gives them."""

    id: int
    file_name: str
    width: int
    height: int
    intrinsics: Intrinsics | None = None
    extrinsics: Extrinsics | None = None

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
        person_id: the subject this annotation shows (several images of one person share it),
            or ``None`` (the annotation is a subject of its own).
    """

    ann_id: int
    image_id: int
    keypoints_px: np.ndarray
    limb_status: Mapping[str, LimbStatus]
    bbox: tuple[float, float, float, float] | None = None
    mask: MaskSource | None = None
    init_fit_path: Path | None = None
    person_id: str | None = None

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
class Subject:
    """One person as the fit sees them: the annotations sharing a ``person_id`` (in file order),
    or a single annotation without one (``person_id`` None)."""

    person_id: str | None
    people: tuple[PersonAnnotation, ...]

    @property
    def multi_view(self) -> bool:
        """Whether the subject has more than one image."""
        return len(self.people) > 1

    @property
    def key(self) -> str:
        """A stable name: the person id, else ``ann<id>`` of the single annotation."""
        return self.person_id if self.person_id is not None else f"ann{self.people[0].ann_id}"


def group_subjects(people: Iterable[PersonAnnotation]) -> tuple[Subject, ...]:
    """The subjects of ``people``, ordered by their first annotation in the file."""
    groups: dict[str | int, list[PersonAnnotation]] = {}
    for person in people:
        key: str | int = person.person_id if person.person_id is not None else -1 - person.ann_id
        groups.setdefault(key, []).append(person)
    return tuple(Subject(group[0].person_id, tuple(group)) for group in groups.values())


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

    def subjects(self) -> tuple[Subject, ...]:
        """The people grouped by ``person_id`` (see :func:`group_subjects`)."""
        return group_subjects(self.people)

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
