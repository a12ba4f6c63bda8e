"""Convergence monitoring and the L-BFGS stage runner.

``ConvergenceMonitor`` decides, one iterate at a time, whether a stage should stop: small
relative progress (``ftol``), small gradient (``gtol``), the iteration budget, or a non-finite
loss/gradient. ``minimize_lbfgs`` runs PyTorch's L-BFGS (strong-Wolfe line search) one iteration
per step under such a monitor; it never raises on NaN/Inf: it restores the last finite iterate
and reports ``StopReason.NON_FINITE``.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch


class StopReason(str, enum.Enum):
    """Why an optimisation stage stopped."""

    FTOL = "ftol"  # relative loss change below ftol
    GTOL = "gtol"  # largest gradient entry below gtol
    MAX_ITERS = "max_iters"
    NON_FINITE = "non_finite"  # NaN/Inf loss or gradient: aborted

    @property
    def converged(self) -> bool:
        """True for the tolerance stops (``FTOL``, ``GTOL``)."""
        return self in (StopReason.FTOL, StopReason.GTOL)


@dataclass(frozen=True)
class MonitorConfig:
    """Stopping rules of one stage. ftol: relative loss change ``|f_prev - f| / max(|f_prev|, |f|, 1)``;
    min_iters: the ftol test applies from this iteration on (PyTorch's L-BFGS takes a tiny first
    step, scaled by 1 / |grad|_1, which would otherwise pass for convergence)."""

    max_iters: int = 30
    ftol: float = 1e-6
    gtol: float = 1e-6
    min_iters: int = 0

    def __post_init__(self) -> None:
        if self.max_iters < 0:
            raise ValueError(f"max_iters must be >= 0, got {self.max_iters}")
        if self.ftol < 0 or self.gtol < 0:
            raise ValueError(f"ftol and gtol must be >= 0, got {self.ftol}, {self.gtol}")


def relative_change(previous: float, current: float) -> float:
    """SMPLify-X's relative change ``|prev - cur| / max(|prev|, |cur|, 1)``."""
    return abs(previous - current) / max(abs(previous), abs(current), 1.0)


class ConvergenceMonitor:
    """Feed it one (loss, max |grad|) per iterate; it answers the reason to stop, or None."""

    def __init__(self, config: MonitorConfig) -> None:
        self.config = config
        self.losses: list[float] = []
        self.message = ""

    @property
    def iterations(self) -> int:
        """Number of optimiser steps taken (iterates seen minus the start point)."""
        return max(len(self.losses) - 1, 0)

    def update(self, loss: float, grad_max: float) -> StopReason | None:
        """Record one iteration's loss and largest absolute gradient entry; the reason to stop, or
        None to go on (the reason's text is in ``message``)."""
        if not (math.isfinite(loss) and math.isfinite(grad_max)):
            self.message = f"non-finite loss {loss} or gradient {grad_max} at iteration {len(self.losses)}"
            return StopReason.NON_FINITE
        self.losses.append(loss)
        if grad_max <= self.config.gtol:
            self.message = f"max |grad| {grad_max:.3g} <= gtol {self.config.gtol:g}"
            return StopReason.GTOL
        if len(self.losses) > max(1, self.config.min_iters):
            change = relative_change(self.losses[-2], loss)
            if change <= self.config.ftol:
                self.message = f"relative loss change {change:.3g} <= ftol {self.config.ftol:g}"
                return StopReason.FTOL
        if self.iterations >= self.config.max_iters:
            self.message = f"reached max_iters {self.config.max_iters}"
            return StopReason.MAX_ITERS
        return None


@dataclass(frozen=True)
class StageOutcome:
    """How one stage ended. losses: loss at each iterate (start point first); evaluations: objective calls."""

    name: str
    reason: StopReason
    message: str
    losses: tuple[float, ...]
    iterations: int
    evaluations: int
    seconds: float

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN if none)."""
        return self.losses[-1] if self.losses else math.nan


class _NonFinite(Exception):
    pass


class _CachedObjective:
    """L-BFGS closure that remembers recent evaluations, so re-evaluating an iterate is free.

    PyTorch's L-BFGS re-evaluates the current point at the start of every ``step``; the point
    was already evaluated by the previous line search, and its parameters are bitwise equal.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        objective: Callable[[], torch.Tensor],
        keep: int = 32,
    ) -> None:
        self.params = list(params)
        self.objective = objective
        self.keep = keep
        self.cache: list[tuple[torch.Tensor, float, list[torch.Tensor]]] = []
        self.evaluations = 0

    def _flat(self) -> torch.Tensor:
        return torch.cat([p.detach().reshape(-1) for p in self.params])

    def __call__(self) -> torch.Tensor:
        flat = self._flat()
        for key, loss, grads in self.cache:
            if torch.equal(key, flat):
                for p, g in zip(self.params, grads):
                    p.grad = g.clone()
                return torch.tensor(loss, dtype=flat.dtype)
        for p in self.params:
            p.grad = None
        with torch.enable_grad():
            loss_t = self.objective()
            self.evaluations += 1
            loss = float(loss_t.detach())
            if not math.isfinite(loss):
                raise _NonFinite(f"non-finite loss {loss}")
            loss_t.backward()
        grads = [torch.zeros_like(p) if p.grad is None else p.grad.detach().clone() for p in self.params]
        for p, g in zip(self.params, grads):
            if not bool(torch.isfinite(g).all()):
                raise _NonFinite("non-finite gradient")
            p.grad = g.clone()
        self.cache.append((flat, loss, grads))
        del self.cache[: -self.keep]
        return loss_t.detach()

    def grad_max(self) -> float:
        return max(
            (float(p.grad.abs().max()) for p in self.params if p.grad is not None and p.numel()),
            default=0.0,
        )


def minimize_lbfgs(
    *,
    name: str,
    params: Sequence[torch.Tensor],
    objective: Callable[[], torch.Tensor],
    monitor: MonitorConfig,
    history_size: int = 30,
    lr: float = 1.0,
    max_line_search_evals: int = 25,
) -> StageOutcome:
    """Minimise ``objective()`` (a scalar tensor built from ``params``) in place with L-BFGS.

    params: leaf tensors with ``requires_grad``; they hold the last finite iterate on return.
    Stops as ``monitor`` says; a NaN/Inf loss or gradient (at an iterate or inside a line search)
    restores the last finite iterate and returns ``StopReason.NON_FINITE`` (never raises).
    """
    start = time.perf_counter()
    params = list(params)
    closure = _CachedObjective(params, objective)
    mon = ConvergenceMonitor(monitor)
    optimizer = torch.optim.LBFGS(
        params,
        lr=lr,
        max_iter=1,
        max_eval=max_line_search_evals,
        history_size=history_size,
        tolerance_grad=0.0,
        tolerance_change=0.0,
        line_search_fn="strong_wolfe",
    )
    last_good = [p.detach().clone() for p in params]
    reason: StopReason | None = None
    while reason is None:
        try:
            loss = float(closure())
            reason = mon.update(loss, closure.grad_max())
        except _NonFinite as exc:
            mon.message = f"{exc} at iteration {mon.iterations}"
            reason = StopReason.NON_FINITE
        if reason is not None:
            break
        last_good = [p.detach().clone() for p in params]
        try:
            optimizer.step(closure)
        except _NonFinite as exc:
            mon.message = f"{exc} in the line search of iteration {mon.iterations + 1}"
            reason = StopReason.NON_FINITE
    if reason is StopReason.NON_FINITE:
        with torch.no_grad():
            for p, good in zip(params, last_good):
                p.copy_(good)
    for p in params:
        p.grad = None
    return StageOutcome(
        name=name,
        reason=reason,
        message=mon.message,
        losses=tuple(mon.losses),
        iterations=mon.iterations,
        evaluations=closure.evaluations,
        seconds=time.perf_counter() - start,
    )
