"""Fit an LDpose dataset with Lightning's ``Trainer.predict``: one CPU, one GPU, or many (DDP).

The plan and the per-person steps are ``resihmr_dr.jobs``' (as for ``batch.fit_dataset``);
Lightning runs each step where it belongs:

* ``LDposeDataModule`` plans the run (``jobs.plan_fit``: people to fit; finished folders
  skipped unless ``overwrite``; annotation load errors and flagged finished folders become
  failures) and serves the people to fit, each loaded by ``PersonDataset`` (``jobs.load_job``)
  into a ``jobs.JobResult``. Under DDP, ``PeopleSampler`` gives each rank distinct people (no
  padding, a rank may get none); the writer also drops any person it has already handled.
* ``ResihmrFitModule.predict_step`` runs the staged fit (intact -> RAFO -> cap -> silhouette
  refinement: ``jobs.fit_job``) for each person of a batch; no training. Per-stage losses go to
  the Trainer's loggers (rank 0 logs live; the other ranks' rows are logged by rank 0 at the
  end).
* ``PersonWriter`` writes each person's folder atomically as soon as its batch is done
  (``jobs.write_job``), records what its rank did in a per-rank part file (``RankPart``), and
  rank 0 merges every part into ``failures.json`` in the ``teardown`` hook after a barrier
  (every rank reaches it, also a rank that got no person), then writes
  ``keypoints_results.json`` from every finished folder.

The output folder's lock and the stale-partial cleanup belong to the launching process (global
rank 0), see ``resihmr_dr.cli``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from resihmr_dr.atomic import atomic_write_json
from resihmr_dr.body.base import BodyModel
from resihmr_dr.config import OutputConfig
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.records import LDposeDataset
from resihmr_dr.failures import Failure, write_failures
from resihmr_dr.fit.pipeline import PersonFit, PipelineConfig
from resihmr_dr.jobs import FitPlan, Job, JobLog, JobResult, RunSummary, fit_job, load_job, plan_fit, write_job
from resihmr_dr.outputs import write_keypoint_results

PART_PREFIX = ".rank"
PART_SUFFIX = ".partial-fit.json"  # hidden and stale-partial shaped: a killed run's parts are cleaned up


def env_global_rank() -> int:
    """This process's global rank from the launcher's environment (0 when not distributed):
    ``RANK`` (torchrun, SLURM setups) or Lightning's ``NODE_RANK``/``LOCAL_RANK``."""
    if "RANK" in os.environ:
        return int(os.environ["RANK"])
    return int(os.environ.get("NODE_RANK", 0) or 0) + int(os.environ.get("LOCAL_RANK", 0) or 0)


def part_path(out_dir: Path, rank: int) -> Path:
    """Process ``rank``'s part file in ``out_dir`` (the people it wrote, its failures), merged by rank 0."""
    return Path(out_dir) / f"{PART_PREFIX}{rank}{PART_SUFFIX}"


# --------------------------------------------------------------------------- data
class PersonDataset(Dataset):
    """Map-style dataset over the people to fit (DistributedSampler-compatible).

    Item ``i``: job ``i`` loaded (``jobs.load_job``: its ``inputs``, or a ``load`` failure,
    never an exception).
    """

    def __init__(self, dataset: LDposeDataset, todo: Sequence[Job], *, body: BodyModel) -> None:
        self.dataset = dataset
        self.todo = tuple(todo)
        self.body = body

    def __len__(self) -> int:
        return len(self.todo)

    def __getitem__(self, index: int) -> JobResult:
        if not 0 <= index < len(self.todo):
            raise IndexError(f"person index {index} out of range [0, {len(self.todo)})")
        return load_job(self.todo[index], dataset=self.dataset, body=self.body)


class PeopleSampler(DistributedSampler):
    """Rank ``rank`` of ``num_replicas`` gets people ``rank, rank + num_replicas, ...``: every
    person exactly once over all ranks, no padding (unlike ``DistributedSampler``) and no
    minimum (unlike Lightning's ``UnrepeatedDistributedSampler``, which refuses a rank with no
    person). A ``DistributedSampler``, so Lightning keeps it as it is under DDP."""

    def __init__(self, dataset: Dataset, *, num_replicas: int, rank: int) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need 0 <= rank < num_replicas, got rank {rank} of {num_replicas}")
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.indices = list(range(rank, len(dataset), num_replicas))
        self.num_samples = len(self.indices)

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return self.num_samples


def collate_people(items: list[JobResult]) -> list[JobResult]:
    """Keep the loaded people as they are (images differ in size; no stacking)."""
    return list(items)


class LDposeDataModule(pl.LightningDataModule):
    """Predict-only data module over an LDpose annotation file (loaded with on_error="collect").

    The plan (who to fit, who is skipped) is made once, at construction or in ``setup``; under
    DDP every rank makes it before any rank writes (Lightning's setup barriers), so all ranks
    agree on the list.
    """

    def __init__(
        self,
        dataset: LDposeDataset,
        *,
        body: BodyModel,
        out_dir: str | Path,
        overwrite: bool = False,
        batch_size: int = 1,
        num_workers: int = 0,
        output: OutputConfig = OutputConfig(),
        fit_config: PipelineConfig | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        self.dataset = dataset
        self.body = body
        self.out_dir = Path(out_dir)
        self.overwrite = overwrite
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.output = output
        self.fit_config = fit_config  # given: folders fitted with other settings are refitted
        self._plan: FitPlan | None = None

    @classmethod
    def from_file(
        cls,
        annotations: str | Path,
        *,
        images_dir: str | Path | None = None,
        body: BodyModel,
        out_dir: str | Path,
        overwrite: bool = False,
        batch_size: int = 1,
    ) -> LDposeDataModule:
        """A data module over an annotation file; people that fail to load become failures, not errors."""
        dataset = load_annotations(annotations, images_dir=images_dir, on_error="collect")
        return cls(dataset, body=body, out_dir=out_dir, overwrite=overwrite, batch_size=batch_size)

    @property
    def plan(self) -> FitPlan:
        """Who is fitted and who is skipped (``plan_fit``), computed once."""
        if self._plan is None:
            self._plan = plan_fit(
                self.dataset,
                out_dir=self.out_dir,
                overwrite=self.overwrite,
                output=self.output,
                fit_config=self.fit_config,
                body_name=self.body.name,
                body_gender=self.body.gender,
            )
        return self._plan

    def setup(self, stage: str) -> None:
        self.plan  # noqa: B018 - make the plan now (before any rank writes)

    def transfer_batch_to_device(self, batch, device, dataloader_idx: int):  # noqa: ANN001 - Lightning's hook
        return batch  # per-person numpy inputs (frozen dataclasses): the fit moves what it needs

    def predict_dataloader(self) -> DataLoader:
        people = PersonDataset(self.dataset, self.plan.todo, body=self.body)
        trainer = self.trainer  # None outside a Trainer
        world, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        return DataLoader(
            people,
            batch_size=self.batch_size,
            sampler=PeopleSampler(people, num_replicas=world, rank=rank),
            collate_fn=collate_people,
            num_workers=self.num_workers,
        )


# --------------------------------------------------------------------------- model
LossRow = tuple[int, dict[str, float]]  # (step = iteration, logger metrics)


def loss_rows(fit: PersonFit, *, position: int) -> list[LossRow]:
    """Logger rows (step = iteration) of one person's per-stage losses: ``intact/<stage>`` for
    each intact-fit stage and ``refine/<term>`` for each refinement loss term; every row carries
    ``person`` (its position in the annotation file)."""
    rows: dict[int, dict[str, float]] = {}
    for stage, losses in fit.intact.stage_losses.items():
        for step, value in enumerate(losses):
            rows.setdefault(step, {})[f"intact/{stage}"] = float(value)
    if fit.refinement is not None:
        for step, row in enumerate(fit.refinement.history):
            rows.setdefault(step, {}).update({f"refine/{term}": float(value) for term, value in row.items()})
    return [(step, {"person": float(position)} | row) for step, row in sorted(rows.items())]


def log_rows(trainer: pl.Trainer, rows: Sequence[LossRow]) -> None:
    """Send rows to every logger of ``trainer`` (loggers write on global rank 0 only)."""
    for logger in trainer.loggers:
        for step, metrics in rows:
            logger.log_metrics(metrics, step=step)
        logger.save()


class ResihmrFitModule(pl.LightningModule):
    """Runs ``fit_person`` for each person of a batch in ``predict_step``; nothing is trained.

    Use with ``LDposeDataModule`` (its batches stay on the host: the fit moves what it needs) and
    ``Trainer(inference_mode=False)`` (the fit optimises with autograd; the step also
    enables gradients itself, as Lightning runs prediction under ``no_grad``).
    """

    def __init__(self, body: BodyModel, config: PipelineConfig = PipelineConfig()) -> None:
        super().__init__()
        # Not a registered submodule: every rank builds the same body, and DDP's start-up
        # broadcast of module states cannot write into the body's expanded (stride-0) buffers.
        self._body = [body]
        self.config = config

    @property
    def body(self) -> BodyModel:
        """The body model (not a registered submodule, so DDP does not broadcast its buffers)."""
        return self._body[0]

    def on_predict_start(self) -> None:
        if self.body.device != self.device:  # e.g. each DDP rank's own GPU
            self._body[0] = self.body.to(self.device)

    def predict_step(self, batch: list[JobResult], batch_idx: int = 0) -> list[JobResult]:
        """Each loaded person of ``batch`` fitted (``jobs.fit_job``: its ``fit``, or a ``fit``
        failure; a person that failed to load is passed on as it is)."""
        results = []
        for item in batch:
            with torch.enable_grad():
                result = fit_job(item, body=self.body, config=self.config)
            if result.fit is not None and self._trainer is not None and self.trainer.is_global_zero:
                log_rows(self.trainer, loss_rows(result.fit, position=result.job.position))
            results.append(result)
        return results


# --------------------------------------------------------------------------- writer
@dataclass(frozen=True)
class RankPart:
    """What one rank did, as its part file holds it: (position, folder) of each folder written,
    (position, failure) of each failure, and the loss rows rank 0 logs for it at the end (none
    for rank 0, which logs live)."""

    written: tuple[tuple[int, str], ...] = ()
    failures: tuple[tuple[int, Failure], ...] = ()
    rows: tuple[LossRow, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """The part file's JSON object: ``written``, ``failures`` (``Failure.to_dict`` records) and ``rows``."""
        return {
            "written": [[position, folder] for position, folder in self.written],
            "failures": [[position, failure.to_dict()] for position, failure in self.failures],
            "rows": [[step, row] for step, row in self.rows],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RankPart:
        """The part of a ``to_dict`` object (read back from a part file)."""
        return cls(
            written=tuple((int(position), str(folder)) for position, folder in data["written"]),
            failures=tuple((int(position), Failure.from_dict(record)) for position, record in data["failures"]),
            rows=tuple((int(step), dict(row)) for step, row in data["rows"]),
        )


class PersonWriter(BasePredictionWriter):
    """Writes each fitted person's folder atomically (with ``plan.output``'s mesh exports) as its
    batch ends and records failures.

    Every rank keeps ``.rank<R>.partial-fit.json`` in ``out_dir`` up to date (written people,
    failure records, loss rows); in ``teardown`` all ranks meet at a barrier and rank 0 merges
    the parts with the plan's failures into ``failures.json`` (dataset order; removed when there
    is none), writes ``keypoints_results.json`` (every finished folder of ``plan.people``, this
    run's and earlier runs'), logs the other ranks' loss rows, deletes the parts and sets
    ``summary``.
    """

    def __init__(self, out_dir: str | Path, *, plan: FitPlan) -> None:
        super().__init__(write_interval="batch")
        self.out_dir = Path(out_dir)
        self.plan = plan
        self.job_log = JobLog()  # not "log": Lightning sets callback.log
        self.rows: list[LossRow] = []
        self._seen: set[str] = set()
        self.summary: RunSummary | None = None

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):  # noqa: ANN001, D102
        for fitted in prediction:
            if fitted.job.folder in self._seen:  # a repeated sample: handled once only
                continue
            self._seen.add(fitted.job.folder)
            result = write_job(fitted, out_dir=self.out_dir, output=self.plan.output)
            self.job_log.add(result)
            if result.written and not trainer.is_global_zero:
                self.rows.extend(loss_rows(result.fit, position=result.job.position))
            self._save_part(trainer.global_rank)
            if trainer.world_size == 1:  # keep failures.json current, as batch.fit_dataset does
                write_failures(self.out_dir, self.plan.all_failures(self.job_log.failures))

    def _save_part(self, rank: int) -> None:
        part = RankPart(
            written=tuple(self.job_log.written), failures=tuple(self.job_log.failures), rows=tuple(self.rows)
        )
        atomic_write_json(part_path(self.out_dir, rank), part.to_dict(), indent=None)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._save_part(trainer.global_rank)
        trainer.strategy.barrier("resihmr-merge-failures")
        if trainer.is_global_zero:
            self.summary = self.merge(world_size=trainer.world_size, trainer=trainer)

    def merge(self, *, world_size: int, trainer: pl.Trainer | None = None) -> RunSummary:
        """Merge every rank's part (rank 0 only) into the run's summary and ``failures.json``, and
        write ``keypoints_results.json``."""
        merged = JobLog()
        seen: set[str] = set()
        for rank in range(world_size):
            path = part_path(self.out_dir, rank)
            if not path.is_file():
                continue
            part = RankPart.from_dict(json.loads(path.read_text()))
            for position, folder in part.written:
                if folder not in seen:
                    seen.add(folder)
                    merged.written.append((position, folder))
            merged.failures.extend(part.failures)
            if trainer is not None and rank != 0 and part.rows:
                log_rows(trainer, part.rows)
            path.unlink()
        summary = self.plan.summary(merged)
        write_failures(self.out_dir, summary.failures)
        write_keypoint_results(
            self.out_dir, self.plan.people, category_id=self.plan.category_id, output=self.plan.output
        )
        return summary


def make_loggers(save_dir: str | Path) -> list:
    """CSV logger into ``save_dir`` (always), plus TensorBoard when ``tensorboard`` is installed."""
    import importlib.util

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    loggers: list = [CSVLogger(save_dir=str(save_dir), name="fit")]
    if importlib.util.find_spec("tensorboard") is not None or importlib.util.find_spec("tensorboardX") is not None:
        loggers.append(TensorBoardLogger(save_dir=str(save_dir), name="fit"))
    return loggers
