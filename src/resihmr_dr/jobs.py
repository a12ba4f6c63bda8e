"""One job per person, for both drivers (``batch.fit_dataset`` and the Lightning ``fit`` path); a
person seen in several images (annotations sharing a ``person_id``) is one job of all of them
(:func:`subject_jobs`; fitted by ``fit.subject``, written to ``subject_<person_id>/``).

* :func:`plan_fit` decides, before anything is fitted, which people of an annotation file to fit
  (:class:`Job`), which to skip (their folder is finished: every ``outputs.OUTPUT_FILES`` and the
  run's mesh exports, a readable ``metrics.json`` and, when the fit settings are given, the same
  settings and body model in its params.json ``provenance``; unless ``overwrite``) and which
  failures are known already (the annotation file's load errors, finished folders flagged as not
  converged): a :class:`FitPlan`.
* A job runs in three steps, each turning any exception (even a bug) into one
  ``failures.Failure`` of its stage, so one person never stops a run (KeyboardInterrupt
  propagates): :func:`load_job` (image, mask, camera, initial fit), :func:`fit_job`
  (``fit_person``) and :func:`write_job` (the person's folder, atomically; a fit that did not
  converge is written and gets a ``quality`` failure). Each takes and returns a
  :class:`JobResult` and passes a failed one on untouched; :func:`run_one` runs all three. The
  Lightning path runs them where Lightning wants them (data set, ``predict_step``, writer).
* :class:`JobLog` collects what one process's jobs did; ``FitPlan.summary`` turns it into the
  run's :class:`RunSummary` (failures in annotation-file order).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from resihmr_dr.body.base import BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.config import OutputConfig
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.records import Extrinsics, LDposeDataset, PersonAnnotation
from resihmr_dr.failures import Failure, FailureStage
from resihmr_dr.fit.pipeline import PersonFit, PipelineConfig, fit_person, params_from_initial_fit
from resihmr_dr.fit.subject import SubjectFit, fit_subject
from resihmr_dr.fit.views import ViewRig
from resihmr_dr.outputs import (
    SUBJECT_VIEWS_DIR,
    folder_complete,
    person_category_id,
    person_folder_name,
    same_provenance,
    subject_complete,
    subject_folder_name,
    subject_view_path,
    write_person,
    write_subject,
)


# --------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Job:
    """One person to fit: its position among the annotation file's valid people (its first
    image's) and the person; ``views``: every image of a person seen in several (sharing a
    ``person_id``; ``person`` is the first), fitted together (``fit.subject``), else empty."""

    position: int
    person: PersonAnnotation
    views: tuple[PersonAnnotation, ...] = ()

    @property
    def multi_view(self) -> bool:
        """Whether the job fits several images of one person."""
        return len(self.views) > 1

    @property
    def folder(self) -> str:
        """The output folder name: ``outputs.person_folder_name``, or ``outputs.subject_folder_name``
        for several images."""
        if self.multi_view:
            return subject_folder_name(self.person.person_id or "")
        return person_folder_name(self.person)

    @property
    def people(self) -> tuple[PersonAnnotation, ...]:
        """The annotations the job fits: its images' for several, else its one person."""
        return self.views if self.multi_view else (self.person,)

    def image_folder(self, person: PersonAnnotation) -> str:
        """The folder (relative to the run's output folder) of one of the job's images."""
        if self.multi_view:
            return subject_view_path(self.person.person_id or "", person)
        return person_folder_name(person)


@dataclass(frozen=True)
class RunSummary:
    """What a run did: folders written and skipped (already done) in annotation-file order, every
    failure (the annotation file's load errors first, then in annotation-file order) and its wall
    time (seconds)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no person failed."""
        return not self.failures


@dataclass
class JobLog:
    """What one process's jobs did so far: (position, folder) of each folder written and
    (position, failure) of each failure, in the order they happened."""

    written: list[tuple[int, str]] = field(default_factory=list)
    failures: list[tuple[int, Failure]] = field(default_factory=list)

    def add(self, result: JobResult) -> None:
        """Record one finished job."""
        if result.written:
            self.written.append((result.job.position, result.job.folder))
        if result.failure is not None:
            self.failures.append((result.job.position, result.failure))


@dataclass(frozen=True)
class FitPlan:
    """Who to fit: ``todo`` in annotation-file order; ``skipped`` folder names already done;
    ``failures`` (position, failure) known before fitting (the annotation file's load errors at
    position -1, flagged finished folders at theirs); ``people``: every valid person of the
    annotation file and ``category_id`` their COCO category (for ``keypoints_results.json``);
    ``output``: the mesh exports every folder gets."""

    todo: tuple[Job, ...] = ()
    skipped: tuple[str, ...] = ()
    failures: tuple[tuple[int, Failure], ...] = ()
    people: tuple[PersonAnnotation, ...] = ()
    category_id: int = 1
    output: OutputConfig = field(default_factory=OutputConfig)

    def all_failures(self, failures: Iterable[tuple[int, Failure]] = ()) -> list[Failure]:
        """The plan's failures and the jobs' ``failures`` (position, failure), in annotation-file
        order (load errors of the file first; at one position, the plan's first)."""
        ordered = sorted([*self.failures, *failures], key=lambda placed: placed[0])
        return [failure for _, failure in ordered]

    def summary(self, log: JobLog) -> RunSummary:
        """The run's summary from every job's record (its ``seconds`` left at 0)."""
        return RunSummary(
            written=[folder for _, folder in sorted(log.written)],
            skipped=list(self.skipped),
            failures=self.all_failures(log.failures),
        )


def plan_fit(
    dataset: LDposeDataset,
    *,
    out_dir: Path,
    overwrite: bool,
    output: OutputConfig = OutputConfig(),
    fit_config: PipelineConfig | None = None,
    body_name: str | None = None,
    body_gender: str | None = None,
) -> FitPlan:
    """Who to fit, who to skip, which failures are known (see the module docstring); with
    ``fit_config``, folders fitted with other settings or another body model (``body_name``, its
    ``body_gender``: ``BodyModel.gender``) are fitted again."""
    todo: list[Job] = []
    skipped: list[str] = []
    failures = [(-1, Failure.from_load_error(err)) for err in dataset.errors]
    position_of = {person.ann_id: i for i, person in enumerate(dataset.people)}
    max_views = fit_config.views.max_views if fit_config is not None else 0
    for job in subject_jobs(dataset, position_of=position_of, max_views=max_views):
        if not overwrite:
            done, failure = finished_job_status(
                Path(out_dir), job, output=output, fit_config=fit_config, body_name=body_name, body_gender=body_gender
            )
            if done:
                skipped.append(job.folder)
                if failure is not None:
                    failures.append((job.position, failure))
                continue
        todo.append(job)
    return FitPlan(
        todo=tuple(todo),
        skipped=tuple(skipped),
        failures=tuple(failures),
        people=tuple(dataset.people),
        category_id=person_category_id(dataset.categories),
        output=output,
    )


def subject_jobs(dataset: LDposeDataset, *, position_of: dict[int, int], max_views: int = 0) -> list[Job]:
    """The jobs of ``dataset`` in annotation-file order: one per image, except a person seen in
    several images (a shared ``person_id``), who is one job of their first ``max_views`` images
    (0: all)."""
    jobs = []
    for subject in dataset.subjects():
        people = subject.people if max_views == 0 else subject.people[:max_views]
        if len(people) > 1:
            jobs.append(Job(position=position_of[people[0].ann_id], person=people[0], views=tuple(people)))
        else:
            jobs.extend(Job(position=position_of[p.ann_id], person=p) for p in people)
    return sorted(jobs, key=lambda job: job.position)


def finished_job_status(
    out_dir: Path,
    job: Job,
    *,
    output: OutputConfig = OutputConfig(),
    fit_config: PipelineConfig | None = None,
    body_name: str | None = None,
    body_gender: str | None = None,
) -> tuple[bool, Failure | None]:
    """``finished_status`` of a job: for several images, the subject folder must be complete
    (``outputs.subject_complete``) and each image's folder finished."""
    if not job.multi_view:
        return finished_status(
            out_dir, job.person, output=output, fit_config=fit_config, body_name=body_name, body_gender=body_gender
        )
    folder = out_dir / job.folder
    if not subject_complete(folder, job.views, output):
        return False, None
    failure = None
    for person in job.views:
        done, view_failure = finished_status(
            folder / SUBJECT_VIEWS_DIR,
            person,
            output=output,
            fit_config=fit_config,
            body_name=body_name,
            body_gender=body_gender,
        )
        if not done:
            return False, None
        if failure is None and view_failure is not None:
            failure = dataclasses.replace(view_failure, folder=job.image_folder(person))
    return True, failure


def finished_status(
    out_dir: Path,
    person: PersonAnnotation,
    *,
    output: OutputConfig = OutputConfig(),
    fit_config: PipelineConfig | None = None,
    body_name: str | None = None,
    body_gender: str | None = None,
) -> tuple[bool, Failure | None]:
    """(already done?, its quality failure if it was written flagged as not converged); done
    needs ``output``'s mesh exports too and, when ``fit_config`` is given, a folder fitted with
    these settings and this body model of this gender (its params.json ``provenance``): a folder from other
    settings, or one written before provenance was recorded, is fitted again."""
    folder = out_dir / person_folder_name(person)
    metrics = finished_metrics(folder, output=output)
    if metrics is None:
        return False, None
    if fit_config is not None and not same_provenance(
        folder, fit_config, body_name=body_name or "", body_gender=body_gender
    ):
        return False, None
    quality = metrics.get("quality")
    if isinstance(quality, dict) and quality.get("ok") is False:
        return True, Failure.from_quality(person, [str(p) for p in quality.get("problems", [])])
    return True, None


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


# --------------------------------------------------------------------------- the job's steps
@dataclass(frozen=True)
class PersonInputs:
    """One person's loaded inputs: image_rgb (H, W, 3) uint8, mask (H, W) bool or None, the
    camera of its image and the initial parameters from another method (or None)."""

    person: PersonAnnotation
    camera: PinholeCamera
    image_rgb: np.ndarray
    mask: np.ndarray | None
    init: BodyParams | None
    extrinsics: Extrinsics | None = None  # the camera's R, t where the annotation file gives them

    @property
    def folder(self) -> str:
        """The person's output folder name (``person_folder_name``)."""
        return person_folder_name(self.person)


@dataclass(frozen=True)
class JobResult:
    """What became of one job so far: its loaded inputs, its fit, whether its folder is written,
    and its failure (a ``quality`` failure comes with a written folder; any other means the job
    stopped at that stage). Several images of one person: ``view_inputs`` per image (``inputs``
    the first's), ``subject`` the joint fit (``fit`` its first image's)."""

    job: Job
    inputs: PersonInputs | None = None
    fit: PersonFit | None = None
    written: bool = False
    failure: Failure | None = None
    view_inputs: tuple[PersonInputs, ...] = ()
    subject: SubjectFit | None = None

    def failed(self, stage: FailureStage, err: BaseException) -> JobResult:
        """This result stopped at ``stage`` by ``err``."""
        failure = Failure.from_exception(self.job.person, stage=stage, err=err, folder=self.job.folder)
        return dataclasses.replace(self, failure=failure)


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
    return PersonInputs(
        person=person, camera=camera, image_rgb=image, mask=mask, init=init, extrinsics=record.extrinsics
    )


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


def fit_views_loaded(
    views: Sequence[PersonInputs],
    *,
    body: BodyModel,
    config: PipelineConfig,
    on_stage: Callable[[str], None] | None = None,
) -> SubjectFit:
    """Fit several loaded images of one person together (``fit_subject``; what they share:
    ``ViewRig.choose`` with ``config.views``)."""
    rig = ViewRig.choose(
        len(views),
        extrinsics=[v.extrinsics for v in views],
        same_pose=config.views.same_pose,
        use_extrinsics=config.views.use_extrinsics,
    )
    return fit_subject(
        body=body,
        people=[v.person for v in views],
        cameras=[v.camera for v in views],
        masks=[v.mask for v in views],
        inits=[v.init for v in views],
        rig=rig,
        person_id=views[0].person.person_id,
        config=config,
        on_stage=on_stage,
    )


def load_job(
    job: Job, *, dataset: LDposeDataset, body: BodyModel, on_stage: Callable[[str], None] | None = None
) -> JobResult:
    """The job with its inputs loaded (``load_person``), or stopped by a ``load`` failure."""
    result = JobResult(job=job)
    try:
        _notify(on_stage, "load")
        views = tuple(load_person(dataset, person, body=body) for person in job.views)
        inputs = views[0] if views else load_person(dataset, job.person, body=body)
    except Exception as err:  # noqa: BLE001 - one person's failure (even a bug) never stops the run
        return result.failed(FailureStage.LOAD, err)
    return dataclasses.replace(result, inputs=inputs, view_inputs=views)


def fit_job(
    result: JobResult,
    *,
    body: BodyModel,
    config: PipelineConfig,
    on_stage: Callable[[str], None] | None = None,
) -> JobResult:
    """The loaded job fitted (``fit_person``; ``on_stage`` sees each stage's name), or stopped by
    a ``fit`` failure; a job that failed already, or is fitted, is returned as it is."""
    if result.failure is not None or result.inputs is None or result.fit is not None:
        return result
    try:
        if result.job.multi_view:
            subject = fit_views_loaded(result.view_inputs, body=body, config=config, on_stage=on_stage)
            return dataclasses.replace(result, fit=subject.views[0], subject=subject)
        fit = fit_loaded(result.inputs, body=body, config=config, on_stage=on_stage)
    except Exception as err:  # noqa: BLE001 - one person's failure (even a bug) never stops the run
        return result.failed(FailureStage.FIT, err)
    return dataclasses.replace(result, fit=fit)


def write_job(
    result: JobResult,
    *,
    out_dir: Path,
    output: OutputConfig = OutputConfig(),
    on_stage: Callable[[str], None] | None = None,
) -> JobResult:
    """The fitted job's folder written atomically (``outputs.write_person`` with ``output``'s mesh
    exports; a fit that did not converge is written and gets a ``quality`` failure), or stopped by
    a ``write`` failure; a job without a fit, or written already, is returned as it is."""
    if result.failure is not None or result.fit is None or result.inputs is None or result.written:
        return result
    fit, inputs = result.fit, result.inputs
    try:
        _notify(on_stage, "write")
        if result.subject is not None:
            views = result.view_inputs
            write_subject(
                result.subject,
                out_dir,
                images_rgb=[v.image_rgb for v in views],
                masks=[v.mask for v in views],
                output=output,
            )
        else:
            write_person(fit, out_dir, image_rgb=inputs.image_rgb, mask=inputs.mask, output=output)
    except Exception as err:  # noqa: BLE001 - one person's failure (even a bug) never stops the run
        return result.failed(FailureStage.WRITE, err)
    fits = result.subject.views if result.subject is not None else (fit,)
    failure = next(
        (
            Failure.from_quality(f_person, f.metrics.quality.problems, folder=result.job.image_folder(f_person))
            for f, f_person in zip(fits, result.job.people)
            if not f.metrics.quality.ok
        ),
        None,
    )
    return dataclasses.replace(result, written=True, failure=failure)


def run_one(
    job: Job,
    *,
    dataset: LDposeDataset,
    body: BodyModel,
    config: PipelineConfig,
    out_dir: Path,
    output: OutputConfig = OutputConfig(),
    on_stage: Callable[[str], None] | None = None,
) -> JobResult:
    """Load, fit and write one person (``load_job``, ``fit_job``, ``write_job``); ``on_stage(name)``,
    if given, is called as each stage starts ("load", the fit's stages, "write")."""
    result = load_job(job, dataset=dataset, body=body, on_stage=on_stage)
    result = fit_job(result, body=body, config=config, on_stage=on_stage)
    return write_job(result, out_dir=out_dir, output=output, on_stage=on_stage)


def _notify(on_stage: Callable[[str], None] | None, stage: str) -> None:
    if on_stage is not None:
        on_stage(stage)
