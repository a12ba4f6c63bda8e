"""Multi-view benchmark table: fits of the same synthetic people from 1, 2, 4 (calibrated) views.

Usage:
    python benchmarks/multiview_table.py --synth S --fits 1view=D1 2views=D2 4views=D4 \\
        2views_calibrated=D5 --out O [--config FILE]

``S`` is a ``resihmr-dr synth --views N`` folder; each ``D`` the output folder of a fit of it
(single people ``image{I}_ann{A}/`` or multi-view subjects
``subject_<person_id>/views/image{I}_ann{A}/``; ``resihmr_dr.eval.prediction.find_person_folder``
finds either). Every fit is scored (``resihmr_dr.eval.benchmark.evaluate``, method ``ours``)
on the view-0 annotations only, so every row measures the same people from the same camera.
Prints a markdown table (one row per fit: people scored, then the mean over residual limbs of
the anchor-aligned and the absolute endpoint error, the residual length error as a percentage
of the segment, the local (axis-aligned) stump shape distance and the scale-free volume error)
and writes ``O/table.md`` and ``O/table.json`` (the same numbers, the failures, the command).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Column -> heading: the eval's metric keys (resihmr_dr.eval.scores.LIMB_METRICS).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("endpoint_err_mm", "endpoint err, anchor-aligned (mm)"),
    ("endpoint_abs_err_mm", "endpoint err, absolute (mm)"),
    ("length_err_pct", "residual length err (% segment)"),
    ("shape_local_mean_mm", "local stump shape err (mm)"),
    ("volume_sf_err_pct", "scale-free volume err (%)"),
)


@dataclass(frozen=True)
class TableRow:
    """One fit's line: its label and folder, the people and residual limbs scored, the mean of
    each ``COLUMNS`` metric over residual limbs (NaN if none) and the failures (annotation id ->
    reason) of the people that could not be scored."""

    label: str
    folder: str
    people: int
    limbs: int
    means: Mapping[str, float]
    failures: Mapping[int, str]


def parse_fits(items: Sequence[str]) -> list[tuple[str, Path]]:
    """``["1view=D1", ...]`` -> ``[("1view", Path("D1")), ...]``; ValueError naming the item when
    it has no ``=``, an empty label or folder, a repeated label, or a folder that does not exist."""
    out: list[tuple[str, Path]] = []
    for item in items:
        label, sep, folder = item.partition("=")
        label, folder = label.strip(), folder.strip()
        if not sep or not label or not folder:
            raise ValueError(f"--fits {item!r}: expected LABEL=FOLDER")
        if label in {seen for seen, _ in out}:
            raise ValueError(f"--fits {item!r}: the label {label!r} is given twice")
        if not Path(folder).is_dir():
            raise ValueError(f"--fits {item!r}: {folder} is not a folder")
        out.append((label, Path(folder)))
    if not out:
        raise ValueError("--fits: give at least one LABEL=FOLDER")
    return out


def view0_ann_ids(truth: Mapping[int, Any]) -> list[int]:
    """The annotation ids of view 0 of every person (``GroundTruth.view == 0``; every annotation
    of a single-view benchmark), sorted."""
    return sorted(ann_id for ann_id, gt in truth.items() if gt.view == 0)


def table_row(
    label: str, folder: str | Path, rows: Sequence[Mapping[str, Any]], failures: Sequence[Mapping]
) -> TableRow:
    """A fit's :class:`TableRow` from its evaluation rows (one per person and residual limb, as
    ``EvalResult.rows``) and failures (``{method, ann_id, reason}``)."""
    ours = [r for r in rows if r["method"] == "ours"]
    means = {}
    for key, _ in COLUMNS:
        finite = [float(r[key]) for r in ours if r[key] is not None and math.isfinite(r[key])]
        means[key] = sum(finite) / len(finite) if finite else math.nan
    return TableRow(
        label=label,
        folder=str(folder),
        people=len({r["ann_id"] for r in ours}),
        limbs=len(ours),
        means=means,
        failures={int(f["ann_id"]): str(f["reason"]) for f in failures if f["method"] == "ours"},
    )


def markdown_table(rows: Sequence[TableRow]) -> str:
    """The table: one line per fit, the best (lowest) value of each column in bold."""
    header = ["fit", "people", *(title for _, title in COLUMNS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join([":---"] + ["---:"] * (len(header) - 1)) + "|"]
    best = {}
    for key, _ in COLUMNS:
        finite = [r.means[key] for r in rows if math.isfinite(r.means[key])]
        if len(set(finite)) > 1:
            best[key] = min(finite)
    for row in rows:
        cells = [row.label, str(row.people)]
        for key, _ in COLUMNS:
            value = row.means[key]
            text = f"{value:.1f}" if math.isfinite(value) else "–"
            cells.append(f"**{text}**" if best.get(key) == value else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_table(
    out_dir: str | Path, rows: Sequence[TableRow], *, synth: str | Path, ann_ids: Sequence[int], command: str
) -> str:
    """``table.md`` (the command, the table, the failures) and ``table.json`` in ``out_dir``
    (created); returns the markdown table."""
    from resihmr_dr.atomic import atomic_write_json, atomic_write_text

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    lines = [
        "# Multi-view benchmark",
        "",
        "```",
        command,
        "```",
        "",
        f"{synth}: {len(ann_ids)} people scored on their view-0 annotation; means over residual limbs "
        "(metrics: `resihmr_dr.eval.scores`).",
        "",
        table,
        "",
    ]
    failed = [(row.label, ann_id, reason) for row in rows for ann_id, reason in row.failures.items()]
    if failed:
        lines += [
            "## Failures",
            "",
            *(f"- {label}, annotation {ann_id}: {reason}" for label, ann_id, reason in failed),
            "",
        ]
    atomic_write_text(out / "table.md", "\n".join(lines))
    doc = {
        "command": command,
        "synth": str(synth),
        "ann_ids": list(ann_ids),
        "columns": dict(COLUMNS),
        "fits": [asdict(row) for row in rows],
    }
    atomic_write_json(out / "table.json", doc)
    return table


def main(argv: Sequence[str] | None = None, *, body=None) -> int:
    """The command line (module docstring); 0 when every fit scored every person, 1 when some
    failed, 2 on bad input. ``body``: the body model (default: built from the config)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synth", required=True, help="the `resihmr-dr synth` folder (ground truth)")
    parser.add_argument("--fits", nargs="+", required=True, metavar="LABEL=FOLDER", help="fit output folders")
    parser.add_argument("--out", required=True, help="folder for table.md and table.json")
    parser.add_argument("--config", help="the configuration file the fits used (default: built-in)")
    parser.add_argument("--progress", action="store_true", help="a progress bar per fit")
    args = parser.parse_args(argv)

    from resihmr_dr.config import ConfigError, load_config
    from resihmr_dr.data.errors import DataError
    from resihmr_dr.eval.benchmark import evaluate
    from resihmr_dr.eval.groundtruth import load_ground_truth

    try:
        fits = parse_fits(args.fits)
        truth = load_ground_truth(args.synth)
        config = load_config(args.config)
    except (ValueError, DataError, ConfigError, OSError) as err:
        print(f"multiview_table: {err}", file=sys.stderr)
        return 2
    ann_ids = view0_ann_ids(truth)
    if body is None:
        from resihmr_dr.body.factory import build_body_model

        body = build_body_model(config.body.model, smplx_dir=config.body.smplx_dir, device=config.body.device)
    rows = []
    for label, folder in fits:
        result = evaluate(
            pred_dir=folder,
            gt_dir=args.synth,
            body=body,
            config=config,
            methods=("ours",),
            ann_ids=ann_ids,
            progress=args.progress,
        )
        rows.append(table_row(label, folder, result.rows, result.failures))
    command = "python benchmarks/multiview_table.py " + shlex.join(list(argv) if argv is not None else sys.argv[1:])
    print(write_table(args.out, rows, synth=args.synth, ann_ids=ann_ids, command=command))
    for row in rows:
        for ann_id, reason in row.failures.items():
            print(f"FAILED {row.label}, annotation {ann_id}: {reason}", file=sys.stderr)
    return 1 if any(row.failures for row in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main())
