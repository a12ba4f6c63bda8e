"""Fit every person of an LDpose annotation file, one output folder per person.

One bad person never stops the batch: its reason goes to ``failures.json`` and the others go
on. Finished people (their folder exists, written atomically) are skipped on a rerun unless
``overwrite``.

Failure stages: ``load`` (bad annotation, image or mask: no folder), ``fit`` (the fit raised:
no folder), ``write`` (no folder) and ``quality`` (the fit finished but did not converge: its
folder *is* written so it can be inspected, ``metrics.json`` has ``quality.ok = false`` and the
problems, and it counts as a failure for the exit code, on every rerun too).

A run holds an exclusive lock on the output folder and first removes the hidden
``.*.partial-*`` leftovers of a killed run; a folder missing any of ``OUTPUT_FILES`` or of the
mesh exports the run asks for (``config.OutputConfig``), or with an unreadable ``metrics.json``,
is refitted rather than skipped. After the people, ``keypoints_results.json`` (COCO results of
every finished person of the annotation file, earlier runs' included) is written atomically.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from resihmr_dr.atomic import atomic_write_json, exclusive_lock, remove_stale_partials
from resihmr_dr.body.base import BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.config import OutputConfig
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.records import LDposeDataset, PersonAnnotation
from resihmr_dr.fit.pipeline import PersonFit, PipelineConfig, fit_person, params_from_initial_fit
from resihmr_dr.outputs import (
    folder_complete,
    person_category_id,
    person_folder_name,
    same_provenance,
    write_keypoint_results,
    write_person,
)

FAILURES_FILE = "failures.json"


@dataclass
class BatchSummary:
    """What a batch did: folders written, skipped (already done), and failures with reasons."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[dict] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no person failed."""
        return not self.failures

    def add(self, outcome: PersonOutcome) -> None:
        """Count one person's outcome."""
        if outcome.written:
            self.written.append(outcome.folder)
        if outcome.failure is not None:
            self.failures.append(outcome.failure)


def fit_dataset(
    dataset: LDposeDataset,
    *,
    body: BodyModel,
    out_dir: str | Path,
    config: PipelineConfig = PipelineConfig(),
    overwrite: bool = False,
    progress: bool = True,
    output: OutputConfig = OutputConfig(),
) -> BatchSummary:
    """Fit and write every valid person of ``dataset`` (with ``output``'s mesh exports); the
    dataset's own load errors (collected with ``on_error="collect"``) are reported as failures
    too. Ends by writing ``keypoints_results.json`` (``outputs.write_keypoint_results``).

    Raises ``atomic.FolderBusyError`` if another run is writing to ``out_dir``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir):
        remove_stale_partials(out_dir)
        summary = _fit_all(
            dataset, body=body, out_dir=out_dir, config=config, overwrite=overwrite, progress=progress, output=output
        )
        write_keypoint_results(
            out_dir, dataset.people, category_id=person_category_id(dataset.categories), output=output
        )
    summary.seconds = time.perf_counter() - start
    return summary


def _fit_all(
    dataset: LDposeDataset,
    *,
    body: BodyModel,
    out_dir: Path,
    config: PipelineConfig,
    overwrite: bool,
    progress: bool,
    output: OutputConfig,
) -> BatchSummary:
    summary = BatchSummary()
    summary.failures.extend(load_error_failures(dataset))
    bar = tqdm(dataset.people, desc="fitting", unit="person", disable=not progress)
    for person in bar:
        name = person_folder_name(person)
        bar.set_postfix_str(name)
        if not overwrite:
            done, failure = finished_status(out_dir, person, output=output, fit_config=config, body_name=body.name)
            if done:
                summary.skipped.append(name)
                summary.failures.extend([failure] if failure is not None else [])
                continue
        outcome = process_person(
            dataset,
            person,
            body=body,
            out_dir=out_dir,
            config=config,
            output=output,
            on_stage=lambda stage, name=name: bar.set_postfix_str(f"{name}: {stage}"),
        )
        summary.add(outcome)
        write_failures(out_dir, summary.failures)
    write_failures(out_dir, summary.failures)
    return summary


@dataclass(frozen=True)
class PersonInputs:
    """One person's loaded inputs: image_rgb (H, W, 3) uint8, mask (H, W) bool or None, the
    camera of its image and the initial parameters from another method (or None)."""

    person: PersonAnnotation
    camera: PinholeCamera
    image_rgb: np.ndarray
    mask: np.ndarray | None
    init: BodyParams | None

    @property
    def folder(self) -> str:
        """The person's output folder name (``person_folder_name``)."""
        return person_folder_name(self.person)


@dataclass
class PersonOutcome:
    """What happened to one person: ``written`` (its folder exists now), ``failure`` (a record
    for ``failures.json`` or None) and the fit itself where it ran (for loss logging)."""

    folder: str
    written: bool
    failure: dict | None = None
    fit: PersonFit | None = None


def person_ids(person: PersonAnnotation) -> dict:
    """The identifying fields of a failure record."""
    return {"ann_id": person.ann_id, "image_id": person.image_id, "folder": person_folder_name(person)}


def load_error_failures(dataset: LDposeDataset) -> list[dict]:
    """Failure records (stage ``load``) of the annotations the dataset could not parse."""
    return [{"ann_id": e.ann_id, "image_id": e.image_id, "stage": "load", "reason": str(e)} for e in dataset.errors]


def finished_status(
    out_dir: Path,
    person: PersonAnnotation,
    *,
    output: OutputConfig = OutputConfig(),
    fit_config: PipelineConfig | None = None,
    body_name: str | None = None,
) -> tuple[bool, dict | None]:
    """(already done?, its quality failure record if it was written flagged as not converged);
    done needs ``output``'s mesh exports too and, when ``fit_config`` is given, a folder fitted
    with these settings and this body model (its params.json ``provenance``): a folder from other
    settings, or one written before provenance was recorded, is fitted again."""
    folder = out_dir / person_folder_name(person)
    metrics = finished_metrics(folder, output=output)
    if metrics is None:
        return False, None
    if fit_config is not None and not same_provenance(folder, fit_config, body_name=body_name or ""):
        return False, None
    quality = metrics.get("quality")
    if isinstance(quality, dict) and quality.get("ok") is False:
        return True, person_ids(person) | _quality_failure(quality)
    return True, None


def exception_failure(person: PersonAnnotation, *, stage: str, err: BaseException) -> dict:
    """A failure record for ``err`` raised at ``stage`` (``load``, ``fit`` or ``write``)."""
    return person_ids(person) | {
        "stage": stage,
        "reason": f"{type(err).__name__}: {err}",
        "traceback": "".join(traceback.format_exception(type(err), err, err.__traceback__, limit=4)),
    }


def load_person(dataset: LDposeDataset, person: PersonAnnotation, *, body: BodyModel) -> PersonInputs:
    """Load one person's image, mask, camera and initial fit; raises DataError/FitInputError."""
    record = dataset.image_of(person)
    camera = PinholeCamera.for_image(record)
    try:
        image = dataset.load_image(record)
    except DataError as err:  # name the annotation and the images entry's field too
        raise err.with_context(ann_id=person.ann_id, image_id=record.id, field="file_name") from None
    mask = dataset.mask(person)
    initial = dataset.initial_fit(person)
    init = params_from_initial_fit(body, initial) if initial is not None else None
    return PersonInputs(person=person, camera=camera, image_rgb=image, mask=mask, init=init)


def fit_loaded(
    inputs: PersonInputs, *, body: BodyModel, config: PipelineConfig, on_stage: Callable[[str], None] | None = None
) -> PersonFit:
    """Run the staged fit (``fit_person``) on loaded inputs; ``on_stage`` sees each stage's name."""
    return fit_person(
        body=body,
        person=inputs.person,
        camera=inputs.camera,
        mask=inputs.mask,
        init=inputs.init,
        config=config,
        on_stage=on_stage,
    )


def write_fitted(
    fit: PersonFit, inputs: PersonInputs, *, out_dir: Path, output: OutputConfig = OutputConfig()
) -> PersonOutcome:
    """Write the person's folder atomically (with ``output``'s mesh exports); a fit that did not
    converge is written and flagged. Raises what writing raised (the caller records it as a
    ``write`` failure)."""
    write_person(fit, out_dir, image_rgb=inputs.image_rgb, mask=inputs.mask, output=output)
    quality = fit.metrics["quality"]
    failure = None if quality["ok"] else person_ids(inputs.person) | _quality_failure(quality)
    return PersonOutcome(folder=inputs.folder, written=True, failure=failure, fit=fit)


def process_person(
    dataset: LDposeDataset,
    person: PersonAnnotation,
    *,
    body: BodyModel,
    out_dir: Path,
    config: PipelineConfig,
    on_stage: Callable[[str], None] | None = None,
    output: OutputConfig = OutputConfig(),
) -> PersonOutcome:
    """Load, fit and write one person (with ``output``'s mesh exports); any exception (even a bug)
    becomes a failure record of the stage it happened in, so one person never stops a batch
    (KeyboardInterrupt propagates). ``on_stage(name)``, if given, is called as each stage starts
    (progress display)."""
    name = person_folder_name(person)
    stage = "load"
    notify = on_stage if on_stage is not None else (lambda _: None)
    try:
        notify("load")
        inputs = load_person(dataset, person, body=body)
        stage = "fit"
        fit = fit_loaded(inputs, body=body, config=config, on_stage=on_stage)
        stage = "write"
        notify("write")
        return write_fitted(fit, inputs, out_dir=out_dir, output=output)
    except KeyboardInterrupt:
        raise
    except Exception as err:  # noqa: BLE001 - one person's failure (even a bug) never stops the batch
        return PersonOutcome(folder=name, written=False, failure=exception_failure(person, stage=stage, err=err))


def finished_metrics(folder: Path, *, output: OutputConfig = OutputConfig()) -> dict | None:
    """The ``metrics.json`` of a complete person folder (every ``OUTPUT_FILES`` and ``output``'s
    mesh exports present, ``metrics.json`` a JSON object), else ``None`` (absent or incomplete:
    fit it again)."""
    if not folder_complete(folder, output):
        return None
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    return metrics if isinstance(metrics, dict) else None


def _quality_failure(quality: dict) -> dict:
    problems = [str(p) for p in quality.get("problems", [])] or ["quality check failed"]
    return {
        "stage": "quality",
        "reason": "fit did not converge: " + "; ".join(problems) + " (folder written for inspection)",
        "problems": problems,
    }


def write_failures(out_dir: Path, failures: list[dict]) -> None:
    """Write ``failures.json`` atomically, or remove it when there is no failure."""
    path = out_dir / FAILURES_FILE
    if failures:
        atomic_write_json(path, failures)
    else:
        path.unlink(missing_ok=True)
