"""Failure records of a run: why a person got no folder (or a flagged one), and ``failures.json``.

One :class:`Failure` per failed person, whatever the driver (``batch.fit_dataset`` or the
Lightning ``fit`` path). Stages (:class:`FailureStage`): ``load`` (a bad annotation, image or
mask: no folder), ``fit`` (the fit raised: no folder), ``write`` (writing raised: no folder) and
``quality`` (the fit finished but did not converge: its folder *is* written, flagged in
``metrics.json``). ``Failure.to_dict`` is one entry of ``failures.json``.
"""

from __future__ import annotations

import enum
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resihmr_dr.atomic import atomic_write_json
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.outputs import person_folder_name

FAILURES_FILE = "failures.json"
TRACEBACK_FRAMES = 4  # the frames of a failure's traceback kept, from the step that caught it down


class FailureStage(str, enum.Enum):
    """Where a person failed."""

    LOAD = "load"
    FIT = "fit"
    WRITE = "write"
    QUALITY = "quality"


@dataclass(frozen=True)
class Failure:
    """Why one person failed.

    ann_id / image_id: the annotation and its image (None where the annotation file did not say);
    folder: the person's output folder name (None for annotations the file could not parse);
    reason: one line; traceback: the exception's (the first ``TRACEBACK_FRAMES`` frames) for a
    ``load``, ``fit`` or ``write`` exception; problems: the quality checks' findings for a
    ``quality`` failure.
    """

    ann_id: int | None
    image_id: int | None
    stage: FailureStage
    reason: str
    folder: str | None = None
    traceback: str | None = None
    problems: tuple[str, ...] | None = None

    @classmethod
    def from_load_error(cls, err: DataError) -> Failure:
        """A ``load`` failure for an annotation the annotation file could not parse."""
        return cls(ann_id=err.ann_id, image_id=err.image_id, stage=FailureStage.LOAD, reason=str(err))

    @classmethod
    def from_exception(
        cls, person: PersonAnnotation, *, stage: FailureStage, err: BaseException, folder: str | None = None
    ) -> Failure:
        """A failure for ``err`` raised at ``stage`` (``load``, ``fit`` or ``write``) for ``person``
        (its output folder: ``folder``, default ``person_folder_name``)."""
        return cls(
            ann_id=person.ann_id,
            image_id=person.image_id,
            folder=folder or person_folder_name(person),
            stage=stage,
            reason=f"{type(err).__name__}: {err}",
            traceback="".join(traceback.format_exception(type(err), err, err.__traceback__, limit=TRACEBACK_FRAMES)),
        )

    @classmethod
    def from_quality(cls, person: PersonAnnotation, problems: Sequence[str], *, folder: str | None = None) -> Failure:
        """A ``quality`` failure of ``person``'s written folder (``folder``, default
        ``person_folder_name``) with the checks' ``problems``."""
        found = tuple(problems) or ("quality check failed",)
        return cls(
            ann_id=person.ann_id,
            image_id=person.image_id,
            folder=folder or person_folder_name(person),
            stage=FailureStage.QUALITY,
            reason="fit did not converge: " + "; ".join(found) + " (folder written for inspection)",
            problems=found,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``failures.json`` entry: ``ann_id``, ``image_id``, ``folder`` (when known), ``stage``,
        ``reason``, and ``traceback`` or ``problems`` where the failure has them."""
        out: dict[str, Any] = {"ann_id": self.ann_id, "image_id": self.image_id}
        if self.folder is not None:
            out["folder"] = self.folder
        out |= {"stage": self.stage.value, "reason": self.reason}
        if self.traceback is not None:
            out["traceback"] = self.traceback
        if self.problems is not None:
            out["problems"] = list(self.problems)
        return out

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Failure:
        """The failure of a ``to_dict`` record (e.g. read back from a Lightning rank's part file)."""
        problems = record.get("problems")
        return cls(
            ann_id=record["ann_id"],
            image_id=record["image_id"],
            stage=FailureStage(record["stage"]),
            reason=record["reason"],
            folder=record.get("folder"),
            traceback=record.get("traceback"),
            problems=None if problems is None else tuple(problems),
        )


def write_failures(out_dir: Path, failures: Sequence[Failure]) -> None:
    """Write ``out_dir/failures.json`` atomically (the records in the given order), or remove it
    when there is no failure."""
    path = Path(out_dir) / FAILURES_FILE
    if failures:
        atomic_write_json(path, [failure.to_dict() for failure in failures])
    else:
        path.unlink(missing_ok=True)
