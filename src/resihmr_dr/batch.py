"""Fit every person of an LDpose annotation file, one output folder per person.

One bad person never stops the batch: its reason goes to ``failures.json`` and the others go
on. Finished people (their folder exists, written atomically) are skipped on a rerun unless
``overwrite``.
"""

from __future__ import annotations

import json
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from resihmr_dr.atomic import atomic_write_text
from resihmr_dr.body.base import BodyModel
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.annotations import LDposeDataset
from resihmr_dr.data.errors import DataError
from resihmr_dr.fit.pipeline import PipelineConfig, fit_person, params_from_initial_fit
from resihmr_dr.outputs import person_folder_name, write_person

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
    with ``on_error="collect"``) are reported as failures too."""
    start = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = BatchSummary()
    for err in dataset.errors:
        summary.failures.append({"ann_id": err.ann_id, "image_id": err.image_id, "stage": "load", "reason": str(err)})
    bar = tqdm(dataset.people, desc="fitting", unit="person", disable=not progress)
    for person in bar:
        name = person_folder_name((person.image_id, person.ann_id))
        bar.set_postfix_str(name)
        if (out_dir / name).is_dir() and not overwrite:
            summary.skipped.append(name)
            continue
        stage = "load"
        try:
            record = dataset.image_of(person)
            camera = PinholeCamera.for_image(record)
            image = dataset.load_image(record)
            mask = dataset.mask(person)
            initial = dataset.initial_fit(person)
            init = params_from_initial_fit(body, initial) if initial is not None else None
            stage = "fit"
            fit = fit_person(body=body, person=person, camera=camera, mask=mask, init=init, config=config)
            stage = "write"
            write_person(fit, out_dir, image_rgb=image, mask=mask)
            summary.written.append(name)
        except KeyboardInterrupt:
            raise
        except (DataError, ValueError, RuntimeError, OSError) as err:
            summary.failures.append({
                "ann_id": person.ann_id, "image_id": person.image_id, "folder": name, "stage": stage,
                "reason": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(limit=4),
            })  # fmt: skip
        _write_failures(out_dir, summary.failures)
    _write_failures(out_dir, summary.failures)
    summary.seconds = time.perf_counter() - start
    return summary


def _write_failures(out_dir: Path, failures: list[dict]) -> None:
    path = out_dir / FAILURES_FILE
    if failures:
        atomic_write_text(path, json.dumps(failures, indent=2))
    else:
        path.unlink(missing_ok=True)
