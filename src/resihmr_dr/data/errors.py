"""The one exception type raised for bad input data.

Every problem with an input file (annotation JSON, mask, image, initial fit) raises
:class:`DataError`, never ``AssertionError``/``KeyError``/``TypeError``. The message names the
file, the annotation (or image) and the field, e.g.::

    annotations.json: annotation 17: field 'keypoints': expected 75 numbers (25 keypoints x 3), got 51
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DataError"]


class DataError(ValueError):
    """Bad input data.

    Attributes:
        path: the file the problem is in (``None`` while not yet known; loaders fill it in).
        ann_id: the annotation id, or ``None`` when the problem is not in one annotation (or the
            annotation has no usable id; ``item`` then locates it, e.g. ``"annotations[3]"``).
        field: the offending key, e.g. ``"keypoints"``, ``"segmentation"``, ``"betas"``.
        reason: what is wrong, in words.
        image_id: the image id for problems in an ``images`` entry.
        item: a free-form locator used when no id is available, e.g. ``"images[2]"``.
    """

    def __init__(
        self,
        reason: str,
        *,
        path: str | os.PathLike[str] | None = None,
        ann_id: int | None = None,
        field: str | None = None,
        image_id: int | None = None,
        item: str | None = None,
    ) -> None:
        self.reason = reason
        self.path = Path(path) if path is not None else None
        self.ann_id = ann_id
        self.field = field
        self.image_id = image_id
        self.item = item
        super().__init__(self._message())

    def _message(self) -> str:
        parts: list[str] = []
        if self.path is not None:
            parts.append(str(self.path))
        if self.ann_id is not None:
            parts.append(f"annotation {self.ann_id}")
        if self.image_id is not None:
            parts.append(f"image {self.image_id}")
        if self.item is not None:
            parts.append(self.item)
        parts.append(self.field_reason)
        return ": ".join(parts)

    @property
    def field_reason(self) -> str:
        """The message's tail: ``"field 'betas': missing required key 'betas'"``, or the reason alone
        when no field is set (no file or ids)."""
        return f"field {self.field!r}: {self.reason}" if self.field is not None else self.reason

    def __str__(self) -> str:
        return self._message()

    def __reduce__(self):  # keep the attributes through pickling (multiprocessing loaders)
        return (
            _rebuild,
            (self.reason, self.path, self.ann_id, self.field, self.image_id, self.item),
        )

    def with_context(
        self,
        *,
        path: str | os.PathLike[str] | None = None,
        ann_id: int | None = None,
        field: str | None = None,
        image_id: int | None = None,
        item: str | None = None,
    ) -> DataError:
        """A copy with the given locators filled in where this error has none yet."""
        return DataError(
            self.reason,
            path=self.path if self.path is not None else path,
            ann_id=self.ann_id if self.ann_id is not None else ann_id,
            field=self.field if self.field is not None else field,
            image_id=self.image_id if self.image_id is not None else image_id,
            item=self.item if self.item is not None else item,
        )


def _rebuild(
    reason: str,
    path: Path | None,
    ann_id: int | None,
    field: str | None,
    image_id: int | None,
    item: str | None,
) -> DataError:
    return DataError(reason, path=path, ann_id=ann_id, field=field, image_id=image_id, item=item)
