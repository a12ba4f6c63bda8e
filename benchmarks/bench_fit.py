"""Whole-fit benchmark: seconds per stage for the built-in sample and N synthetic people.

Usage:
    python benchmarks/bench_fit.py [--synthetic 10] [--seed 0] [--config FILE] [--device cpu]
        [--threads 2] [--out DIR]

Generates ``--synthetic`` people with ``resihmr-dr synth``'s generator (Anny bodies, all residual
types, 2 px keypoint noise; not timed), then loads, fits and writes the sample and each of them one
after another in one process with one shared body model, as ``resihmr-dr fit`` does, and prints a
markdown table: per person the seconds of the intact fit, RAFO, cut and cap, the silhouette
refinement (with its objective evaluations and milliseconds per evaluation), the measurements,
writing the outputs (meshes, JSON, report figures) and the total; then the median and the maximum.
One untimed fit of the sample first pays the one-time costs (kernel compilation, lazy imports).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch

COLUMNS = ("intact", "rafo", "cut_cap", "refine", "evals", "ms/eval", "measure", "outputs", "total")


def _row(fit, outputs_s: float) -> dict[str, float]:
    st = fit.stage_seconds
    evals = sum(s.outcome.evaluations for s in fit.refinement.stages) if fit.refinement is not None else 0
    return {
        "intact": st.intact,
        "rafo": st.rafo,
        "cut_cap": st.cut_cap,
        "refine": st.refine,
        "evals": evals,
        "ms/eval": 1e3 * st.refine / evals if evals else 0.0,
        "measure": st.measure,
        "outputs": outputs_s,
        "total": st.total + outputs_s,
    }


def _fmt(name: str, value: float) -> str:
    return f"{value:.0f}" if name in ("evals", "ms/eval") else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--synthetic", type=int, default=10, help="synthetic people besides the sample (default 10)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--config", default=None, help="YAML configuration (default: the shipped defaults)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=None, help="folder for the synthetic set and the fits (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    from resihmr_dr.body.factory import build_body_model
    from resihmr_dr.config import load_config
    from resihmr_dr.data.annotations import load_annotations
    from resihmr_dr.data.sample import sample_annotations_path
    from resihmr_dr.eval.synth import generate_dataset
    from resihmr_dr.jobs import fit_loaded, load_person
    from resihmr_dr.outputs import write_person

    config = load_config(args.config)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.out or tmp)
        t0 = time.perf_counter()
        body = build_body_model(config.body.model, smplx_dir=config.body.smplx_dir, device=args.device)
        load_s = time.perf_counter() - t0
        datasets = [load_annotations(sample_annotations_path())]
        if args.synthetic > 0:
            synth = generate_dataset(
                root / "synth", count=args.synthetic, seed=args.seed, noise_px=2.0, body=body, progress=False
            )
            datasets.append(load_annotations(synth))
        print(
            f"device {args.device}, torch threads {torch.get_num_threads()}, body {body.name} "
            f"(loaded in {load_s:.1f} s), load average {os.getloadavg()[0]:.2f}\n"
        )

        # Warm-up: one untimed fit of the sample pays the one-time costs (kernel compilation, lazy
        # imports, first allocations).
        warm_inputs = load_person(datasets[0], datasets[0].people[0], body=body)
        t0 = time.perf_counter()
        write_person(
            fit_loaded(warm_inputs, body=body, config=config.fit),
            root / "warm-up",
            image_rgb=warm_inputs.image_rgb,
            mask=warm_inputs.mask,
        )
        print(f"  warm-up (the sample, untimed): {time.perf_counter() - t0:.1f} s", flush=True)

        rows: list[tuple[str, dict[str, float]]] = []
        for label, dataset in zip(("sample", "synth"), datasets):
            for person in dataset.people:
                inputs = load_person(dataset, person, body=body)
                fit = fit_loaded(inputs, body=body, config=config.fit)
                t0 = time.perf_counter()
                write_person(fit, root / "fit" / label, image_rgb=inputs.image_rgb, mask=inputs.mask)
                rows.append((f"{label} {inputs.folder}", _row(fit, time.perf_counter() - t0)))
                print(
                    f"  {inputs.folder}: " + ", ".join(f"{c} {_fmt(c, v)}" for c, v in rows[-1][1].items()), flush=True
                )
        load_after = os.getloadavg()[0]

    print("\n| person | " + " | ".join(COLUMNS) + " |")
    print("|---|" + "---:|" * len(COLUMNS))
    for name, row in rows:
        print(f"| {name} | " + " | ".join(_fmt(c, row[c]) for c in COLUMNS) + " |")
    for label, agg in (("median", statistics.median), ("max", max)):
        print(f"| **{label}** | " + " | ".join(_fmt(c, agg(r[c] for _, r in rows)) for c in COLUMNS) + " |")
    print(f"\nper column over {len(rows)} people; seconds unless noted; load average at the end {load_after:.2f}")


if __name__ == "__main__":
    main()
