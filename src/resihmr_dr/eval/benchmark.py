"""Evaluate fitted people against the synthetic benchmark's ground truth, next to the baselines
(``resihmr-dr eval``).

For each person of the ground-truth folder (``resihmr-dr synth``), the folder that
``resihmr-dr fit`` wrote is read back (``ours``), and the baselines of
:mod:`resihmr_dr.eval.baselines` are built from its intact-body fit; optionally, ``ours`` is
refitted once per value of an ablation sweep (e.g. ``configs/ablations/mask_weight.yaml``).
Every method is scored by :func:`resihmr_dr.eval.scores.score_prediction`.

Outputs (:func:`write_outputs`): ``eval.csv`` (one row per method, person and residual limb),
``eval.md`` (the mean of every metric per method: 2D, 3D and pose-free shape tables; and the
main 3D metrics by residual type, stump shape and keypoint-noise level) and
``eval_by_type.png``, ``eval_by_shape.png``, ``eval_by_noise.png``.
"""

from __future__ import annotations

import csv
import io
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_dr.atomic import atomic_write_text
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.errors import DataError
from resihmr_dr.eval.baselines import METHOD_LABELS, METHODS, intact_baseline, joint_collapse_baseline, refit
from resihmr_dr.eval.groundtruth import load_ground_truth
from resihmr_dr.eval.prediction import (
    FittedFolder,
    Prediction,
    PredictionError,
    find_person_folder,
    pose_body,
    prediction_from_folder,
    read_fitted_folder,
)
from resihmr_dr.eval.scores import LIMB_METRICS, PERSON_METRICS, score_prediction

__all__ = [
    "GROUPS",
    "EvalResult",
    "evaluate",
    "summarise",
    "write_csv",
    "write_markdown",
    "write_outputs",
    "write_group_plot",
]

ALL_METRICS = PERSON_METRICS + LIMB_METRICS
PERSON_KEYS = {key for key, _, _ in PERSON_METRICS} | {"seconds"}
# Grouping column -> (title, the metrics shown per group).
GROUP_METRICS = ("endpoint_err_mm", "length_err_mm", "volume_err_pct", "stump_dist_mean_mm")
GROUPS: dict[str, str] = {"type": "residual type", "shape": "stump shape", "noise_px": "keypoint noise (px)"}
ID_COLUMNS = (
    "method",
    "ann_id",
    "image_id",
    "person_id",
    "view",
    "limb",
    "type",
    "status",
    "shape",
    "noise_px",
    "quality_ok",
)


@dataclass
class EvalResult:
    """rows: one dict per (method, person, residual limb): ``ID_COLUMNS``, the metrics of
    :mod:`resihmr_dr.eval.scores` and ``seconds``; failures: ``{method, ann_id, reason}`` for
    each method that could not be scored for a person; methods: in table order."""

    rows: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    methods: list[str]
    people: int
    seconds: float
    labels: dict[str, str] = field(default_factory=dict)


def evaluate(
    *,
    pred_dir: str | Path,
    gt_dir: str | Path,
    body=None,
    config=None,
    methods: Sequence[str] = METHODS,
    sweep=None,
    limit: int | None = None,
    ann_ids: Collection[int] | None = None,
    progress: bool = True,
    partial_csv: str | Path | None = None,
) -> EvalResult:
    """Score ``methods`` (a subset of ``METHODS``) for every person of ``gt_dir``.

    pred_dir: the output folder of ``resihmr-dr fit`` run on ``gt_dir/annotations.json``: a
    person's folder is ``image{I}_ann{A}`` or, for a view of a multi-view subject,
    ``subject_<person_id>/views/image{I}_ann{A}`` (:func:`find_person_folder`).
    config: the ``ResihmrConfig`` the fit used (default: the packaged default,
    ``config.load_config()``); the refitted
    methods (``resihmr``, the sweep) use its ``fit`` section. sweep: a ``SweepSpec``; adds one
    method per value, ``ours`` refitted with the value. body: a BodyModel (default: built from
    ``config.body``). limit: the first N people only. ann_ids: score only these annotations
    (ValueError naming those without ground truth or annotation), e.g. view 0 of every
    multi-view subject. partial_csv: rewritten after each person.
    A person whose folder is missing or unreadable, or a method that raises, is recorded in
    ``failures`` and the others go on.
    """
    from tqdm import tqdm

    from resihmr_dr.body.factory import build_body_model
    from resihmr_dr.config import load_config
    from resihmr_dr.eval.sweep import expand_sweep

    start = time.perf_counter()
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"unknown method(s) {unknown}; choose from {', '.join(METHODS)}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    if not pred_dir.is_dir():
        raise FileNotFoundError(f"{pred_dir}: no such folder (the --out folder of `resihmr-dr fit`)")
    config = load_config() if config is None else config
    truth = load_ground_truth(gt_dir)
    dataset = load_annotations(gt_dir / "annotations.json")
    people = [p for p in dataset.people if p.ann_id in truth]
    if ann_ids is not None:
        wanted = set(ann_ids)
        unknown_ids = sorted(wanted - {p.ann_id for p in people})
        if unknown_ids:
            raise ValueError(f"{gt_dir}: no annotated person with ground truth has ann_id {unknown_ids}")
        people = [p for p in people if p.ann_id in wanted]
    people = people[: limit or None]
    if not people:
        raise ValueError(f"{gt_dir}: no annotated person has ground truth in gt/index.json")
    sweep_configs = [] if sweep is None else expand_sweep(sweep, config)
    labels = {m: METHOD_LABELS[m] for m in methods}
    for value, _ in sweep_configs:
        labels[_sweep_method(sweep, value)] = f"ours, {sweep.name} = {value:g}"
    if body is None:
        body = build_body_model(config.body.model, smplx_dir=config.body.smplx_dir, device=config.body.device)

    rows: list[dict[str, Any]] = []
    failures: list[dict[str, Any]] = []
    bar = tqdm(people, desc="eval", unit="person", disable=not progress)
    for person in bar:
        try:
            mask = dataset.mask(person)
            if mask is None:
                raise DataError(f"{gt_dir / 'annotations.json'}: annotation {person.ann_id} has no person mask")
            fitted = _read_folder(find_person_folder(pred_dir, person.image_id, person.ann_id), body=body)
        except DataError as err:  # nothing to score this person with (PredictionError is one)
            failures.extend({"method": m, "ann_id": person.ann_id, "reason": str(err)} for m in labels)
            continue
        gt = truth[person.ann_id]
        camera = PinholeCamera.for_image(dataset.image_of(person))
        builders = _person_methods(
            person,
            fitted=fitted,
            mask=mask,
            camera=camera,
            body=body,
            config=config.fit,
            methods=methods,
            sweep=sweep,
            sweep_configs=sweep_configs,
        )
        for method, build in builders:
            try:
                pred = build()
                scored = score_prediction(pred, gt, mask=mask, camera=gt.camera)
            except Exception as err:  # noqa: BLE001 (one method's failure must not stop the others)
                failures.append({"method": method, "ann_id": person.ann_id, "reason": f"{type(err).__name__}: {err}"})
                continue
            ids = {
                "method": method,
                "ann_id": person.ann_id,
                "image_id": person.image_id,
                "person_id": gt.person_id if gt.person_id is not None else person.person_id,
                "view": gt.view,
                "noise_px": gt.noise_px,
                "quality_ok": fitted.quality_ok,
            }
            rows.extend({**ids, **row, "seconds": pred.seconds} for row in scored)
        if partial_csv is not None:
            write_csv(partial_csv, rows)
    bar.close()
    return EvalResult(
        rows=rows,
        failures=failures,
        methods=list(labels),
        people=len(people),
        seconds=time.perf_counter() - start,
        labels=labels,
    )


def _sweep_method(sweep, value: float) -> str:
    return f"ours[{sweep.name}={value:g}]"


def _read_folder(folder: Path, *, body) -> FittedFolder:
    """The fitted folder of one person; PredictionError if it is unreadable or fitted with
    another body model."""
    fitted = read_fitted_folder(folder)
    if fitted.body_name != body.name:
        raise PredictionError(
            f"fitted with the {fitted.body_name} body model, evaluating with {body.name}", path=folder
        )
    return fitted


def _person_methods(
    person,
    *,
    fitted: FittedFolder,
    mask: np.ndarray,
    camera: PinholeCamera,
    body,
    config,
    methods,
    sweep,
    sweep_configs,
) -> list[tuple[str, Callable[[], Prediction]]]:
    """[(method, () -> Prediction)] for one person: the requested methods, then the sweep's."""
    params = fitted.params_for(body, intact=True)  # the intact-body fit every method starts from
    posed = pose_body(body, params)  # shared by the baselines
    limbs = [(limb, status) for limb, status, _, _ in fitted.residual_limbs]
    lams = [(limb, status, lam) for limb, status, lam, _ in fitted.residual_limbs]
    common = dict(body=body, posed=posed, camera=camera, ann_id=person.ann_id, seconds=fitted.intact_seconds)

    def refitted(method: str, fit_config, refine: bool) -> Callable[[], Prediction]:
        return lambda: refit(
            body=body,
            person=person,
            camera=camera,
            mask=mask,
            params=params,
            config=fit_config,
            method=method,
            intact_seconds=fitted.intact_seconds,
            refine=refine,
        )

    build = {
        "intact": lambda: intact_baseline(residual_limbs=limbs, **common),
        "joint": lambda: joint_collapse_baseline(
            residual_limbs=lams, lam_min=config.rafo.lam_min, cap=config.cap, **common
        ),
        "resihmr": refitted("resihmr", config, refine=False),
        "ours": lambda: prediction_from_folder(fitted, body=body, method="ours"),
    }
    out = [(m, build[m]) for m in methods]
    out += [(_sweep_method(sweep, v), refitted(_sweep_method(sweep, v), c.fit, refine=True)) for v, c in sweep_configs]
    return out


# --------------------------------------------------------------------------- summaries
def _mean(values: Sequence[float]) -> float:
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def summarise(rows: Sequence[dict[str, Any]], *, by: str | None = None) -> list[dict[str, Any]]:
    """Per method (and per value of the column ``by``, e.g. "type"), in first-seen order: the
    number of people and residual limbs, the mean of each person metric over people and of each
    limb metric over residual limbs (NaNs skipped), and the mean seconds per person."""
    keys = dict.fromkeys((r["method"], r[by] if by else None) for r in rows)
    out = []
    for method, group in keys:
        sel = [r for r in rows if r["method"] == method and (by is None or r[by] == group)]
        per_person = list({r["ann_id"]: r for r in sel}.values())
        entry: dict[str, Any] = {"method": method, "group": group, "people": len(per_person), "limbs": len(sel)}
        for key, _, _ in ALL_METRICS:
            entry[key] = _mean([r[key] for r in (per_person if key in PERSON_KEYS else sel)])
        entry["seconds"] = _mean([r["seconds"] for r in per_person])
        out.append(entry)
    return out


def _fmt(key: str, value: float) -> str:
    if not math.isfinite(value):
        return "–"
    if "iou" in key:
        return f"{value:.3f}"
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:,.0f}"


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]]) -> Path:
    """All rows (one per method, person and residual limb) as CSV."""
    path = Path(path)
    columns = [*ID_COLUMNS, *(k for k, _, _ in ALL_METRICS), "seconds"]
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: (f"{row[k]:.6g}" if isinstance(row[k], float) else row[k]) for k in columns})
    atomic_write_text(path, text.getvalue())
    return path


# The method tables: the paper's 2D protocol (and the seconds), the 3D metrics, then the stump's
# shape apart from its pose (and the tip's reprojection).
TABLE_2D = ("kp_body_px", "kp_res_limb_px", "kp_intact_px", "mask_iou", "stump_iou")
TABLE_3D = (
    "endpoint_err_mm",
    "endpoint_abs_err_mm",
    "length_err_mm",
    "length_err_pct",
    "volume_err_pct",
    "stump_dist_mean_mm",
    "stump_dist_p95_mm",
    "pa_v2v_mm",
)
TABLE_SHAPE = ("shape_local_mean_mm", "shape_icp_mean_mm", "perimeter_err_pct", "volume_sf_err_pct", "tip_reproj_px")


def _method_table(result: EvalResult, keys: Sequence[str], *, seconds: bool) -> list[str]:
    """One row per method: the mean of each metric in ``keys`` (best in bold)."""
    summary = summarise(result.rows)
    spec = {key: (label, higher) for key, label, higher in ALL_METRICS}
    header = ["method", "people", "limbs", *(spec[k][0] for k in keys)] + (["s / person"] if seconds else [])
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    best = {}
    for key in keys:
        finite = [s[key] for s in summary if math.isfinite(s[key])]
        if finite and len(set(finite)) > 1:
            best[key] = max(finite) if spec[key][1] else min(finite)
    for s in summary:
        cells = [result.labels.get(s["method"], s["method"]), str(s["people"]), str(s["limbs"])]
        for key in keys:
            text = _fmt(key, s[key])
            cells.append(f"**{text}**" if key in best and s[key] == best[key] else text)
        if seconds:
            cells.append(f"{s['seconds']:.1f}")
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _group_tables(result: EvalResult, by: str) -> list[str]:
    summary = summarise(result.rows, by=by)
    methods = [m for m in result.methods if m in METHODS]
    groups = sorted({s["group"] for s in summary}, key=lambda g: (isinstance(g, str), g))
    lines = []
    labels = dict((k, lab) for k, lab, _ in ALL_METRICS)
    for key in GROUP_METRICS:
        lines += [
            f"**{labels[key]}** by {GROUPS[by]}",
            "",
            "| " + " | ".join([GROUPS[by], "limbs", *methods]) + " |",
            "|" + "|".join([":---", "---:"] + ["---:"] * len(methods)) + "|",
        ]
        for group in groups:
            cells = {s["method"]: s for s in summary if s["group"] == group}
            n = max((c["limbs"] for c in cells.values()), default=0)
            values = [cells[m][key] if m in cells else math.nan for m in methods]
            finite = [v for v in values if math.isfinite(v)]
            best = min(finite) if finite else None
            texts = [f"**{_fmt(key, v)}**" if v == best else _fmt(key, v) for v in values]
            lines.append(
                "| " + " | ".join([f"{group:g}" if isinstance(group, float) else str(group), str(n), *texts]) + " |"
            )
        lines.append("")
    return lines


def write_markdown(
    path: str | Path, result: EvalResult, *, title: str = "Benchmark", command: str | None = None
) -> Path:
    """``eval.md``: the method tables (2D, 3D, pose-free shape; best value of each column in
    bold) and the main 3D metrics by residual type, stump shape and noise level, and the
    failures."""
    path = Path(path)
    limbs = len({(r["ann_id"], r["limb"]) for r in result.rows})
    lines = [f"# {title}", ""]
    if command:
        lines += ["```", command, "```", ""]
    lines += [
        f"{result.people} people, {limbs} residual limbs; mean over people (2D, mask IoU, body vertex error, "
        f"seconds) and over residual limbs (the rest); {result.seconds:.0f} s in all. Metrics: "
        "`resihmr_dr.eval.scores`.",
        "",
        "2D, the paper's protocol (keypoint errors against the clean keypoints), and seconds per person:",
        "",
        *_method_table(result, TABLE_2D, seconds=True),
        "",
        "3D, against the true mesh (endpoint and surface distances after moving the fitted anchor joint onto "
        "the true one, the absolute endpoint error without; body vertex error after Procrustes alignment):",
        "",
        *_method_table(result, TABLE_3D, seconds=False),
        "",
        "Shape (pose-free): each residual limb against the true one in its own frame (surface distances "
        "after putting the fitted anchor on the true one and turning the limb's anchor-to-tip direction onto "
        "the true one, then after a rigid ICP; perimeters along each limb's own axis; volume over segment "
        "length cubed), and the fitted tip's reprojection against the clean endpoint keypoint:",
        "",
        *_method_table(result, TABLE_SHAPE, seconds=False),
        "",
    ]
    for by, title_ in GROUPS.items():
        if any(r.get(by) is not None for r in result.rows):
            lines += [f"## By {title_}", "", *_group_tables(result, by)]
    if result.failures:
        lines += ["## Failures", ""]
        lines += [f"- {f['method']}, annotation {f['ann_id']}: {f['reason']}" for f in result.failures]
    atomic_write_text(path, "\n".join(lines).rstrip() + "\n")
    return path


def write_group_plot(path: str | Path, result: EvalResult, *, by: str) -> Path:
    """Grouped bars: ``GROUP_METRICS`` (one panel each) per value of ``by`` and method."""
    from matplotlib.figure import Figure  # no pyplot: the caller's backend stays as it is

    path = Path(path)
    summary = summarise(result.rows, by=by)
    methods = [m for m in result.methods if m in METHODS]
    groups = sorted({s["group"] for s in summary}, key=lambda g: (isinstance(g, str), g))
    labels = dict((k, lab) for k, lab, _ in ALL_METRICS)
    fig = Figure(figsize=(max(10, 1.3 * len(groups) + 6), 7.5))
    axes = fig.subplots(2, 2)
    width = 0.8 / max(len(methods), 1)
    x = np.arange(len(groups))
    for ax, key in zip(axes.flat, GROUP_METRICS, strict=True):
        for i, method in enumerate(methods):
            cells = {s["group"]: s[key] for s in summary if s["method"] == method}
            ax.bar(
                x + (i - (len(methods) - 1) / 2) * width,
                [cells.get(g, math.nan) for g in groups],
                width,
                label=result.labels.get(method, method),
                color=f"C{i}",
            )
        ax.set_yscale("log")  # the hallucinated limb's errors are 10x the others'
        ax.set_xticks(
            x, [f"{g:g}" if isinstance(g, float) else str(g).replace("_", "\n", 1) for g in groups], fontsize=8
        )
        ax.set_title(f"{labels[key]} (lower is better)", fontsize=10)
        ax.set_xlabel(GROUPS[by], fontsize=9)
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(methods), fontsize=9, frameon=False)
    fig.suptitle(f"Errors by {GROUPS[by]} (mean over residual limbs; log scale)")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    tmp = path.with_name(f".{path.name}.partial.png")
    fig.savefig(tmp, dpi=110)
    tmp.replace(path)
    return path


def write_outputs(out_dir: str | Path, result: EvalResult, *, command: str | None = None) -> dict[str, Path]:
    """eval.csv, eval.md and eval_by_{type,shape,noise}.png in ``out_dir`` (created)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "csv": write_csv(out / "eval.csv", result.rows),
        "md": write_markdown(out / "eval.md", result, command=command),
    }
    if result.rows:
        for by, name in (("type", "type"), ("shape", "shape"), ("noise_px", "noise")):
            paths[f"png_{name}"] = write_group_plot(out / f"eval_by_{name}.png", result, by=by)
    return paths
