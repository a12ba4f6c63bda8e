"""Fit every person of an LDpose annotation file in this process, one output folder per person
(``demo``'s driver; ``fit`` runs the same jobs through Lightning, ``resihmr_dr.lightning``).

The plan and each person's job are ``resihmr_dr.jobs``': one bad person never stops the batch
(its ``failures.Failure`` goes to ``failures.json``, kept current after every person, and the
others go on); finished people (their folder exists, written atomically, with these settings)
are skipped on a rerun unless ``overwrite``; a fit that did not converge is written, flagged,
and counts as a failure for the exit code, on every rerun too.

A run holds an exclusive lock on the output folder and first removes the hidden
``.*.partial-*`` leftovers of a killed run. After the people, ``keypoints_results.json`` (COCO
results of every finished person of the annotation file, earlier runs' included) is written
atomically.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from tqdm.auto import tqdm

from resihmr_dr.atomic import exclusive_lock, remove_stale_partials
from resihmr_dr.body.base import BodyModel
from resihmr_dr.config import OutputConfig
from resihmr_dr.data.records import LDposeDataset
from resihmr_dr.failures import write_failures
from resihmr_dr.fit.pipeline import PipelineConfig
from resihmr_dr.jobs import JobLog, RunSummary, plan_fit, run_one
from resihmr_dr.outputs import write_keypoint_results


def fit_dataset(
    dataset: LDposeDataset,
    *,
    body: BodyModel,
    out_dir: str | Path,
    config: PipelineConfig = PipelineConfig(),
    overwrite: bool = False,
    progress: bool = True,
    output: OutputConfig = OutputConfig(),
) -> RunSummary:
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
        plan = plan_fit(
            dataset,
            out_dir=out_dir,
            overwrite=overwrite,
            output=output,
            fit_config=config,
            body_name=body.name,
            body_gender=body.gender,
        )
        log = JobLog()
        bar = tqdm(plan.todo, desc="fitting", unit="person", disable=not progress)
        for job in bar:
            bar.set_postfix_str(job.folder)
            result = run_one(
                job,
                dataset=dataset,
                body=body,
                config=config,
                out_dir=out_dir,
                output=output,
                on_stage=lambda stage, name=job.folder: bar.set_postfix_str(f"{name}: {stage}"),
            )
            log.add(result)
            write_failures(out_dir, plan.all_failures(log.failures))
        summary = plan.summary(log)
        write_failures(out_dir, summary.failures)
        write_keypoint_results(out_dir, plan.people, category_id=plan.category_id, output=output)
    return dataclasses.replace(summary, seconds=time.perf_counter() - start)
