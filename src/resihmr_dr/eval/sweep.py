"""Ablation sweeps: one config key (or several, set together) over a list of values, fitted on a
synthetic LDpose set with ground truth (``resihmr-dr synth``), scored against the true stumps.

A sweep file (``configs/ablations/*.yaml``)::

    name: mask_weight
    keys: [fit.refine.weights.silhouette, fit.refine.weights.stump_silhouette]
    values: [0, 0.25, 0.5, 1, 2, 4]

Every key is set to each value in turn on top of a base config (``configs/default.yaml`` or
``--config``); the result is validated like any config file (unknown keys are errors).

Metrics per person (limb metrics averaged over its residual limbs), see :func:`person_metrics`:
``mask_iou``, ``stump_iou``, ``stump_dist_mean_mm`` / ``stump_dist_p95_mm`` (symmetric surface
distance between the fitted and true residual limbs, anchor-aligned), ``endpoint_err_mm``,
``length_err_mm`` and ``volume_err_pct``, as defined in :mod:`resihmr_dr.eval.scores` (the
benchmark's metrics).

Frames: camera frame (OpenCV, metres) throughout; pixels ``_px``.
"""

from __future__ import annotations

import csv
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from resihmr_dr.config import ConfigError, ResihmrConfig, apply_override, load_config
from resihmr_dr.eval.groundtruth import GroundTruth, load_ground_truth
from resihmr_dr.eval.scores import LIMB_METRICS, PERSON_METRICS

__all__ = [
    "METRICS",
    "SweepResult",
    "SweepSpec",
    "apply_override",
    "expand_sweep",
    "load_sweep",
    "person_metrics",
    "run_sweep",
    "summarise",
    "write_csv",
    "write_markdown",
    "write_outputs",
    "write_plot",
]

# (column, label, higher is better): the benchmark's metrics that a sweep reports.
METRICS: tuple[tuple[str, str, bool], ...] = tuple(
    metric
    for metric in PERSON_METRICS + LIMB_METRICS
    if metric[0]
    in (
        "mask_iou",
        "stump_iou",
        "stump_dist_mean_mm",
        "stump_dist_p95_mm",
        "endpoint_err_mm",
        "length_err_mm",
        "volume_err_pct",
    )
)


@dataclass(frozen=True)
class SweepSpec:
    """A sweep: ``keys`` (dotted config paths, e.g. "fit.refine.weights.silhouette") all set to
    each of ``values`` in turn (integers stay integers, for integer keys such as iterations)."""

    name: str
    keys: tuple[str, ...]
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.keys:
            raise ConfigError(f"sweep {self.name!r}: 'keys' must list at least one config key")
        if not self.values:
            raise ConfigError(f"sweep {self.name!r}: 'values' must list at least one value")
        if len(set(self.values)) != len(self.values):
            raise ConfigError(f"sweep {self.name!r}: duplicate values {list(self.values)}")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read a sweep YAML file (``name``, ``keys``, ``values``; ``description`` optional)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: invalid YAML: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping with 'keys' and 'values'")
    unknown = sorted(set(data) - {"name", "description", "keys", "values"})
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {unknown}; allowed: description, keys, name, values")
    keys, values = data.get("keys"), data.get("values")
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ConfigError(f"{path}: 'keys' must be a list of dotted config keys, got {keys!r}")
    if not isinstance(values, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise ConfigError(f"{path}: 'values' must be a list of finite numbers, got {values!r}")
    values = tuple(v if isinstance(v, int) else float(v) for v in values)  # integer keys need integers
    return SweepSpec(name=str(data.get("name", path.stem)), keys=tuple(keys), values=values)


def expand_sweep(spec: SweepSpec, base: ResihmrConfig) -> list[tuple[float, ResihmrConfig]]:
    """One (value, config) per sweep value: ``base`` with every key set to the value."""
    out = []
    for value in spec.values:
        config = base
        for key in spec.keys:
            config = apply_override(config, key=key, value=value, source=f"sweep {spec.name!r}")
        out.append((value, config))
    return out


# --------------------------------------------------------------------------- metrics
def person_metrics(*, fit, gt: GroundTruth, mask: np.ndarray, body) -> dict[str, float]:
    """Sweep metrics (``METRICS``, defined in :mod:`resihmr_dr.eval.scores`) of one ``PersonFit``
    against its ground truth, limb metrics averaged over the person's residual limbs (NaN where
    none was fitted). mask: (H, W) bool person mask."""
    from resihmr_dr.eval.prediction import prediction_from_fit
    from resihmr_dr.eval.scores import score_prediction

    rows = score_prediction(prediction_from_fit(fit, body=body, method="sweep"), gt, mask=mask, camera=fit.camera)
    out = {}
    for key, _, _ in METRICS:
        finite = [r[key] for r in rows if math.isfinite(r[key])]
        out[key] = float(np.mean(finite)) if finite else math.nan
    return out


# --------------------------------------------------------------------------- running
@dataclass
class SweepResult:
    """rows: one dict per (value, person): value, ann_id, image_id, residual_types, seconds and
    the METRICS columns; failures: (value, ann_id, reason) for people that could not be fitted."""

    spec: SweepSpec
    rows: list[dict[str, Any]]
    failures: list[tuple[float, int, str]]
    seconds: float


def run_sweep(
    *,
    data_dir: str | Path,
    spec: SweepSpec,
    base: ResihmrConfig | None = None,
    body=None,
    limit: int | None = None,
    reuse_intact: bool = True,
    partial_csv: str | Path | None = None,
    progress: bool = True,
) -> SweepResult:
    """Fit every person of ``data_dir`` (a ``resihmr-dr synth`` folder) once per sweep value.

    base: the config each value overrides (default: the packaged default, ``config.load_config()``). body: a BodyModel
    (default: built from ``base.body``). limit: the first N people only. partial_csv: rewritten
    after each person, so a long sweep that is stopped keeps its finished rows.
    reuse_intact: where no sweep key touches ``fit.intact``, the intact fit of the first value
    is handed to the later values as ``init`` (its parameters used as is), so each person's
    SMPLify-X-style stages run once; the later values' ``intact_fit`` reports differ, their
    meshes do not.
    """
    from tqdm import tqdm

    from resihmr_dr.body.factory import build_body_model
    from resihmr_dr.camera import PinholeCamera
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.fit.intact_problem import FitInputError
    from resihmr_dr.fit.pipeline import fit_person

    start = time.perf_counter()
    data_dir = Path(data_dir)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    base = load_config() if base is None else base
    configs = expand_sweep(spec, base)
    truth = load_ground_truth(data_dir)
    if body is None:
        body = build_body_model(base.body.model, smplx_dir=base.body.smplx_dir, device=base.body.device)
    dataset = load_annotations(data_dir / "annotations.json")
    people = [p for p in dataset.people if p.ann_id in truth][: limit or None]
    if not people:
        raise ValueError(f"{data_dir}: no annotated person has ground truth in gt/index.json")
    reuse = reuse_intact and not any(k.startswith(("fit.intact", "body")) for k in spec.keys)
    rows, failures = [], []
    bar = tqdm(total=len(people) * len(configs), desc=f"sweep {spec.name}", unit="fit", disable=not progress)
    for person in people:
        record = dataset.image_of(person)
        camera = PinholeCamera.for_image(record)
        mask = dataset.mask(person)
        if mask is None:
            raise ValueError(f"{data_dir}: annotation {person.ann_id} has no mask")
        init = None
        for value, config in configs:
            bar.update(1)
            try:
                fit = fit_person(body=body, person=person, camera=camera, mask=mask, init=init, config=config.fit)
            except FitInputError as err:
                failures.append((value, person.ann_id, str(err)))
                continue
            if reuse and init is None:
                init = fit.intact.params
            row = {
                "value": value,
                "ann_id": person.ann_id,
                "image_id": person.image_id,
                "residual_types": " ".join(limb.type_name for limb in truth[person.ann_id].limbs),
                "stump_shapes": " ".join(limb.shape.name for limb in truth[person.ann_id].limbs),
                "seconds": fit.seconds,
            }
            row.update(person_metrics(fit=fit, gt=truth[person.ann_id], mask=mask, body=body))
            rows.append(row)
        if partial_csv is not None:
            write_csv(partial_csv, rows)
    bar.close()
    return SweepResult(spec=spec, rows=rows, failures=failures, seconds=time.perf_counter() - start)


# --------------------------------------------------------------------------- outputs
def summarise(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per sweep value (in first-seen order): n people, mean of each METRICS column (NaNs
    skipped) and mean seconds per fit."""
    out = []
    for value in dict.fromkeys(r["value"] for r in rows):
        sel = [r for r in rows if r["value"] == value]
        entry: dict[str, Any] = {"value": value, "n": len(sel)}
        for key, _, _ in METRICS + (("seconds", "", False),):
            finite = [r[key] for r in sel if math.isfinite(r[key])]
            entry[key] = float(np.mean(finite)) if finite else math.nan
        out.append(entry)
    return out


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """All rows (one per value and person) as CSV."""
    path = Path(path)
    columns = ["value", "ann_id", "image_id", "residual_types", "stump_shapes", *(k for k, _, _ in METRICS), "seconds"]
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in columns})
    return path


def write_markdown(path: str | Path, result: SweepResult) -> Path:
    """A markdown table: one row per sweep value, the mean of each metric (best in bold)."""
    path = Path(path)
    summary = summarise(result.rows)
    header = ["value", "n", *(label for _, label, _ in METRICS), "s / fit"]
    lines = [
        (
            f"Sweep `{result.spec.name}`: {', '.join(f'`{k}`' for k in result.spec.keys)} = value "
            f"(mean over people; {result.seconds:.0f} s in all)."
        ),
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" for _ in header) + "|",
    ]
    best = {}
    for key, _, higher in METRICS:
        finite = [s[key] for s in summary if math.isfinite(s[key])]
        if finite:
            best[key] = max(finite) if higher else min(finite)
    for s in summary:
        cells = [f"{s['value']:g}", str(s["n"])]
        for key, _, _ in METRICS:
            text = "nan" if not math.isfinite(s[key]) else (f"{s[key]:.3f}" if "iou" in key else f"{s[key]:.1f}")
            cells.append(f"**{text}**" if key in best and s[key] == best[key] else text)
        cells.append(f"{s['seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    if result.failures:
        lines += [
            "",
            f"{len(result.failures)} fit(s) failed: "
            + "; ".join(f"value {v:g}, ann {a}: {r}" for v, a, r in result.failures),
        ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_plot(path: str | Path, result: SweepResult) -> Path:
    """One panel per metric: per-person values (dots) and the mean (line) against the value."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    path = Path(path)
    summary = summarise(result.rows)
    xs = [s["value"] for s in summary]
    fig = Figure(figsize=(16, 7))
    axes = fig.subplots(2, 4)
    for ax, (key, label, higher) in zip(axes.flat, METRICS):
        ax.scatter([r["value"] for r in result.rows], [r[key] for r in result.rows], s=10, alpha=0.4, color="grey")
        ax.plot(xs, [s[key] for s in summary], "o-", color="C0")
        ax.set_title(f"{label} ({'higher' if higher else 'lower'} is better)", fontsize=9)
        ax.set_xlabel(result.spec.name)
        if min(xs) >= 0 and max(xs) > 0:
            ax.set_xscale("symlog", linthresh=min([x for x in xs if x > 0]))
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
        ax.minorticks_off()
    axes.flat[-1].axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_outputs(out_dir: str | Path, result: SweepResult) -> dict[str, Path]:
    """sweep.csv, sweep.md and sweep.png in ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return {
        "csv": write_csv(out / "sweep.csv", result.rows),
        "md": write_markdown(out / "sweep.md", result),
        "png": write_plot(out / "sweep.png", result),
    }
