"""The metrics of one person's fit (``PersonFit.metrics``; ``metrics.json`` without its timings).

:class:`FitMetrics` holds the paper's Table-1 keypoint errors (pixels), the mask IoU, whether the
intact fit converged and each RAFO answer was accepted, a summary of the silhouette refinement
(:class:`RefinementMetrics`) and the quality verdict (``fit.quality.Quality``); ``to_dict`` gives
``metrics.json``'s keys in its order (``outputs.write_person`` adds ``seconds`` and
``stage_seconds``).
"""

from __future__ import annotations

from dataclasses import dataclass

from resihmr_dr.fit.quality import Quality
from resihmr_dr.fit.refine import RefineResult


@dataclass(frozen=True)
class RefinementMetrics:
    """The silhouette refinement in brief: L-BFGS iterations over its stages, how many times limbs
    were cut again, each stage's stop reason, the largest change of a joint's depth relative to
    the pelvis (metres) and its wall time (seconds)."""

    iterations: int
    recuts: int
    stop_reasons: tuple[str, ...]
    depth_drift_m: float
    seconds: float

    @classmethod
    def of(cls, refined: RefineResult) -> RefinementMetrics:
        """The summary of a refinement's result."""
        return cls(
            iterations=refined.iterations,
            recuts=refined.recuts,
            stop_reasons=tuple(s.outcome.reason.value for s in refined.stages),
            depth_drift_m=refined.depth_drift_m,
            seconds=refined.seconds,
        )

    def to_dict(self) -> dict:
        """``metrics.json``'s ``refinement`` entry."""
        return {
            "iterations": self.iterations,
            "recuts": self.recuts,
            "stop_reasons": list(self.stop_reasons),
            "depth_drift_m": self.depth_drift_m,
            "seconds": self.seconds,
        }


@dataclass(frozen=True)
class FitMetrics:
    """One fit's metrics.

    body_px / res_limb_px / intact_px: mean 2D keypoint error (pixels) over all labelled
    keypoints, the residual endpoints (17-24) and the COCO keypoints (0-16), NaN where a group has
    no labelled keypoint (``fit.measures.keypoint_mpjpe_px``); mask_iou: IoU of the written mesh's
    silhouette with the person mask (None without a mask); intact_fit_converged: the intact-body
    fit's own verdict; rafo_accepted: per residual limb, RAFO's answer was accepted (else its
    fallback); refinement: None where the silhouette refinement did not run; quality: the
    non-convergence checks.
    """

    body_px: float
    res_limb_px: float
    intact_px: float
    mask_iou: float | None
    intact_fit_converged: bool
    rafo_accepted: tuple[bool, ...]
    refinement: RefinementMetrics | None
    quality: Quality

    def to_dict(self) -> dict:
        """``metrics.json`` without its timings: ``body``, ``res_limb``, ``intact``, ``mask_iou``
        (absent without a mask), ``intact_fit_converged``, ``rafo_accepted``, ``refinement``
        (absent where it did not run) and ``quality``."""
        out: dict = {"body": self.body_px, "res_limb": self.res_limb_px, "intact": self.intact_px}
        if self.mask_iou is not None:
            out["mask_iou"] = self.mask_iou
        out["intact_fit_converged"] = self.intact_fit_converged
        out["rafo_accepted"] = list(self.rafo_accepted)
        if self.refinement is not None:
            out["refinement"] = self.refinement.to_dict()
        out["quality"] = self.quality.to_dict()
        return out
