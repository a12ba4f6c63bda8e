"""Fit every person of an LDpose annotation file, one output folder per person.

One bad person never stops the batch: its reason goes to ``failures.json`` and the others go
on. Finished people (their folder exists, written atomically) are skipped on a rerun unless
``overwrite``.

Failure stages: ``load`` (bad annotation, image or mask: no folder), ``fit`` (the fit raised:
no folder), ``write`` (no folder) and ``quality`` (the fit finished but did not converge: its
folder *is* written so it can be inspected, ``metrics.json`` has ``quality.ok = false`` and the
problems, and it counts as a failure for the exit code, on every rerun too).

A run holds an exclusive lock on the output folder and first removes the hidden
``.*.partial-*`` leftovers of a killed run; a folder missing any of ``OUTPUT_FILES`` (or with an
unreadable ``metrics.json``) is refitted rather than skipped.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from resihmr_dr.atomic import atomic_write_text, exclusive_lock, remove_stale_partials
from resihmr_dr.body.base import BodyModel
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.annotations import LDposeDataset
from resihmr_dr.data.errors import DataError
from resihmr_dr.fit.pipeline import PipelineConfig, fit_person, params_from_initial_fit
from resihmr_dr.outputs import OUTPUT_FILES, person_folder_name, write_person

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
        return not self.failures


def fit_dataset(
    dataset: LDposeDataset,
    *,
    body: BodyModel,
    out_dir: str | Path,
    config: PipelineConfig = PipelineConfig(),
    overwrite: bool = False,
    progress: bool = True,
) -> BatchSummary:
    """Fit and write every valid person of ``dataset``; the dataset's own load errors (collected
    with ``on_error="collect"``) are reported as failures too.

    Raises ``atomic.FolderBusyError`` if another run is writing to ``out_dir``.
    """
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(out_dir):
        remove_stale_partials(out_dir)
        summary = _fit_all(dataset, body=body, out_dir=out_dir, config=config, overwrite=overwrite, progress=progress)
    summary.seconds = time.perf_counter() - start
    return summary


def _fit_all(
    dataset: LDposeDataset, *, body: BodyModel, out_dir: Path, config: PipelineConfig, overwrite: bool, progress: bool
) -> BatchSummary:
    summary = BatchSummary()
    for err in dataset.errors:
        summary.failures.append({"ann_id": err.ann_id, "image_id": err.image_id, "stage": "load", "reason": str(err)})
    bar = tqdm(dataset.people, desc="fitting", unit="person", disable=not progress)
    for person in bar:
        name = person_folder_name((person.image_id, person.ann_id))
        bar.set_postfix_str(name)
        ids = {"ann_id": person.ann_id, "image_id": person.image_id, "folder": name}
        if not overwrite:
            metrics = finished_metrics(out_dir / name)
            if metrics is not None:
                summary.skipped.append(name)
                quality = metrics.get("quality")
                if isinstance(quality, dict) and quality.get("ok") is False:
                    summary.failures.append(ids | _quality_failure(quality))
                continue
        stage = "load"
        try:
            record = dataset.image_of(person)
            camera = PinholeCamera.for_image(record)
            try:
                image = dataset.load_image(record)
            except DataError as err:  # name the annotation and the images entry's field too
                raise err.with_context(ann_id=person.ann_id, image_id=record.id, field="file_name") from None
            mask = dataset.mask(person)
            initial = dataset.initial_fit(person)
            init = params_from_initial_fit(body, initial) if initial is not None else None
            stage = "fit"
            fit = fit_person(body=body, person=person, camera=camera, mask=mask, init=init, config=config)
            stage = "write"
            write_person(fit, out_dir, image_rgb=image, mask=mask)
            summary.written.append(name)
            quality = fit.metrics["quality"]
            if not quality["ok"]:
                summary.failures.append(ids | _quality_failure(quality))
        except KeyboardInterrupt:
            raise
        except Exception as err:  # noqa: BLE001 - one person's failure (even a bug) never stops the batch
            summary.failures.append(ids | {
                "stage": stage, "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=4),
            })  # fmt: skip
        _write_failures(out_dir, summary.failures)
    _write_failures(out_dir, summary.failures)
    return summary


def finished_metrics(folder: Path) -> dict | None:
    """The ``metrics.json`` of a complete person folder (every ``OUTPUT_FILES`` present and
    ``metrics.json`` a JSON object), else ``None`` (absent or incomplete: fit it again)."""
    if not folder.is_dir() or not all((folder / f).is_file() for f in OUTPUT_FILES):
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


def _write_failures(out_dir: Path, failures: list[dict]) -> None:
    path = out_dir / FAILURES_FILE
    if failures:
        atomic_write_text(path, json.dumps(failures, indent=2, default=str))
    else:
        path.unlink(missing_ok=True)
