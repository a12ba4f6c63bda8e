"""Plot the metrics of an ``eval --sweep`` run against the swept value (the README's figure).

Usage:
    python scripts/plot_eval_sweep.py EVAL_CSV OUT_PNG

Reads the ``eval.csv`` written by ``resihmr-dr eval --sweep FILE`` (rows ``ours[KEY=VALUE]``)
and draws, per metric, the mean over residual limbs (mask IoU: over people) against the value,
with the RAFO + convex cap baseline as a dashed line where the run scored it.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

METRICS = (
    ("stump_iou", "stump-region IoU"),
    ("mask_iou", "mask IoU"),
    ("tip_reproj_px", "tip reprojection (px)"),
    ("length_err_pct", "residual length error (% segment)"),
    ("shape_local_mean_mm", "local shape error (mm)"),
    ("shape_icp_mean_mm", "ICP shape error (mm)"),
)
SWEPT = re.compile(r"ours\[(?P<key>[^=]+)=(?P<value>[^\]]+)\]")


def _mean(rows: list[dict], key: str, *, per_person: bool) -> float:
    if per_person:
        by_person = {r["ann_id"]: r[key] for r in rows}
        values = [float(v) for v in by_person.values() if v not in ("", "nan")]
    else:
        values = [float(r[key]) for r in rows if r[key] not in ("", "nan")]
    return sum(values) / len(values) if values else math.nan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_csv", type=Path)
    parser.add_argument("out_png", type=Path)
    args = parser.parse_args()
    rows = list(csv.DictReader(args.eval_csv.open()))
    swept: dict[float, list[dict]] = defaultdict(list)
    name = "value"
    for row in rows:
        match = SWEPT.fullmatch(row["method"])
        if match:
            name = match["key"]
            swept[float(match["value"])].append(row)
    if not swept:
        raise SystemExit(f"{args.eval_csv}: no rows of a sweep (method 'ours[KEY=VALUE]')")
    baseline = [r for r in rows if r["method"] == "resihmr"]
    values = sorted(swept)
    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (key, label) in zip(axes.flat, METRICS):
        per_person = key == "mask_iou"
        ax.plot(
            values, [_mean(swept[v], key, per_person=per_person) for v in values], "o-", color="tab:red", label="ours"
        )
        if baseline:
            ax.axhline(
                _mean(baseline, key, per_person=per_person), color="tab:blue", ls="--", label="RAFO + convex cap"
            )
        ax.set_xscale("symlog", linthresh=0.1)
        ax.set_xlim(min(values) - 0.01, max(values) * 1.3)
        ax.set_xlabel(name)
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes.flat[0].legend()
    people = len({r["ann_id"] for r in swept[values[0]]})
    fig.suptitle(f"{name}: means over {len(swept[values[0]])} residual limbs of {people} people")
    fig.tight_layout()
    fig.savefig(args.out_png, dpi=110)
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()
