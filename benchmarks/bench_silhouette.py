"""Soft-silhouette benchmark: the native kernels vs PyTorch3D, forward and backward, on the Anny body.

Usage:
    python benchmarks/bench_silhouette.py [--sizes 128 256 512] [--sigmas 1e-4 1e-5 1e-6]
        [--repeats 3] [--threads 2] [--backends numba torch pytorch3d] [--device cpu]

Renders the default Anny body (27,420 faces) 3 m in front of a camera whose image it fills (a
512 x 512 camera image, focal 800 px, rescaled to each size), times forward and backward (a soft
IoU loss against a shifted mask) of each backend side by side, and prints a markdown table with
the median wall times, process CPU time, and the peak memory above the starting point (sampled RSS on CPU,
``torch.cuda.max_memory_allocated`` on GPU). Backends: ``numba`` (native backend, compiled CPU
kernel), ``torch`` (native backend, PyTorch passes; the GPU path), ``pytorch3d``
(``MeshRasterizer`` + ``SoftSilhouetteShader``, K = 50). σ is in squared NDC units (PyTorch3D's
default 1e-4; the refinement uses 1e-6 for the whole body at 256 px and 1e-5 in the stump windows).
PyTorch3D on CPU is slow at 512 px (tens of seconds). ``--threads`` sets torch's intra-op threads,
which the Numba kernel's blocks follow (``SilhouetteConfig.threads=None``); the ``torch`` kernel runs
its many small ops on one intra-op thread (``threads=1``; more are slower on a loaded machine).
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import torch


class PeakMemory:
    """Peak memory above the starting point while the block runs, in MiB (RSS sampled every ms on
    CPU; the CUDA allocator's peak on GPU)."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak_mib = 0.0

    @staticmethod
    def _rss_bytes() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        self._base = self._rss_bytes()
        self._peak = self._base
        self._stop = threading.Event()

        def sample():
            while not self._stop.is_set():
                self._peak = max(self._peak, self._rss_bytes())
                time.sleep(0.001)

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
            return
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._rss_bytes())
        self.peak_mib = (self._peak - self._base) / 2**20


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


BACKEND_CONFIGS = {
    "numba": {"backend": "native", "kernel": "numba"},
    "torch": {"backend": "native", "kernel": "torch", "threads": 1},
    "pytorch3d": {"backend": "pytorch3d"},
}


def time_backend(*, backend, sigma, verts, faces, camera, size, target, repeats, device):
    """Median forward ms, median backward ms (wall clock), peak MiB of one forward+backward, and
    the median process CPU ms of forward+backward (less sensitive to other processes' load)."""
    from resihmr_dr.render.silhouette import (
        SilhouetteConfig,
        render_silhouette,
        soft_iou_loss,
    )

    config = SilhouetteConfig(sigma=sigma, **BACKEND_CONFIGS[backend])

    def once():
        v = verts.clone().requires_grad_(True)
        _sync(device)
        c0, t0 = time.process_time(), time.perf_counter()
        alpha = render_silhouette(verts_cam=v, faces=faces, camera=camera, image_size=(size, size), config=config)
        loss = soft_iou_loss(alpha, target).sum()
        _sync(device)
        t1 = time.perf_counter()
        loss.backward()
        _sync(device)
        t2, c2 = time.perf_counter(), time.process_time()
        return 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (c2 - c0)

    # Timed runs without the memory sampler (its thread would compete for the cores), then one
    # run for the peak memory.
    times = [once() for _ in range(repeats)]
    with PeakMemory(device) as mem:
        once()
    fwd, bwd, cpu = (statistics.median(t[i] for t in times) for i in range(3))
    return fwd, bwd, mem.peak_mib, cpu


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[1e-4, 1e-5, 1e-6])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backends", nargs="+", default=list(BACKEND_CONFIGS), choices=list(BACKEND_CONFIGS))
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    backends = [b for b in args.backends if not (b == "numba" and device.type != "cpu")]

    from resihmr_dr.body.anny_model import AnnyBody
    from resihmr_dr.camera import PinholeCamera
    from resihmr_dr.render.silhouette import SilhouetteConfig, render_silhouette

    body = AnnyBody().to(device)
    with torch.no_grad():
        verts = body(body.default_params(1, depth_m=3.0)).verts.float()
    faces = body.faces
    camera = PinholeCamera(fx=800.0, fy=800.0, cx=255.5, cy=255.5, width=512, height=512)
    print(
        f"device {device}, threads {args.threads}, {faces.shape[0]} faces, load average "
        f"{os.getloadavg()[0]:.2f}, repeats {args.repeats} (median), forward+backward of a soft-IoU loss\n"
    )

    rows = []
    for size in args.sizes:
        for sigma in args.sigmas:
            with torch.no_grad():
                shifted = verts + torch.tensor([0.03, 0.02, 0.0], device=device)
                target = (
                    render_silhouette(
                        verts_cam=shifted,
                        faces=faces,
                        camera=camera,
                        image_size=(size, size),
                        config=SilhouetteConfig(sigma=sigma),
                    )
                    > 0.5
                ).float()
            # Warm-up (first-call allocations, lazy imports, kernel compilation) outside the timings.
            for backend in backends:
                time_backend(
                    backend=backend,
                    sigma=sigma,
                    verts=verts,
                    faces=faces,
                    camera=camera,
                    size=min(size, 64),
                    target=target[:, :64, :64],
                    repeats=1,
                    device=device,
                )
            res = {}
            for backend in backends:
                res[backend] = time_backend(
                    backend=backend,
                    sigma=sigma,
                    verts=verts,
                    faces=faces,
                    camera=camera,
                    size=size,
                    target=target,
                    repeats=args.repeats,
                    device=device,
                )
            rows.append((size, sigma, res))
            print(
                f"  {size} px, sigma {sigma:g}: "
                + ", ".join(
                    f"{b} fwd {r[0]:.0f} ms bwd {r[1]:.0f} ms cpu {r[3]:.0f} ms peak {r[2]:.0f} MiB"
                    for b, r in res.items()
                ),
                flush=True,
            )

    fastest = "numba" if "numba" in backends else backends[0]

    def cell(res, backend, i):
        return f"{res[backend][i]:,.0f}" if backend in res else "-"

    def ratio(res, backend):
        if backend not in res or fastest not in res:
            return "-"
        return f"{(res[backend][0] + res[backend][1]) / (res[fastest][0] + res[fastest][1]):,.1f}×"

    header = "| size | σ |"
    for b in backends:
        header += f" {b} fwd ms | {b} bwd ms | {b} peak MiB |"
    header += "".join(f" {b} / {fastest} |" for b in backends if b != fastest)
    print("\n" + header)
    print("|" + "---:|" * (header.count("|") - 1))
    for size, sigma, res in rows:
        line = f"| {size}² | {sigma:g} |"
        for b in backends:
            line += f" {cell(res, b, 0)} | {cell(res, b, 1)} | {cell(res, b, 2)} |"
        line += "".join(f" {ratio(res, b)} |" for b in backends if b != fastest)
        print(line)


if __name__ == "__main__":
    main()
