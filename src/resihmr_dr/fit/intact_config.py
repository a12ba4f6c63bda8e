"""Settings of the intact-body fit (``fit.intact.fit_intact``): the pose-and-shape schedule
(SMPLify-X-style stage weights), the torso camera stage and the optimiser."""

from __future__ import annotations

import math
from dataclasses import dataclass

from resihmr_dr.fit.monitor import MonitorConfig

__all__ = ["DEFAULT_STAGES", "IntactFitConfig", "StageWeights"]


@dataclass(frozen=True)
class StageWeights:
    """Weights of one pose-and-shape stage. Each term is ``weight^2 * term`` (SMPLify-X style).

    data: keypoint term weight (times the image-size normalisation); pose_prior: L2 on
    body_pose (rad); shape_prior: L2 on the standardised shape; angle_limit: elbow/knee
    hyper-extension hinge (rad); iterations: L-BFGS iterations.
    """

    pose_prior: float
    shape_prior: float
    angle_limit: float
    data: float = 1.0
    iterations: int = 30

    def __post_init__(self) -> None:
        for name in ("pose_prior", "shape_prior", "angle_limit", "data"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"StageWeights.{name} must be finite and >= 0, got {value}")
        if self.iterations < 0:
            raise ValueError(f"StageWeights.iterations must be >= 0, got {self.iterations}")


# SMPLify-X's body-pose prior [404, 404, 57.4, 4.78, 4.78] and shape [100, 50, 10, 5, 5] weights.
# Here the data term is ~1 per px^2 (1000 px image), the pose prior is a plain L2 on axis-angles
# (rad^2) instead of VPoser's latent, and the shape prior is standardised (betas; Anny
# phenotypes divided by ``phenotype_sigma``). SMPLify-X's first stages keep the pose near rest
# while the global placement settles; its last stages let the data dominate.
DEFAULT_STAGES: tuple[StageWeights, ...] = (
    StageWeights(pose_prior=404.0, shape_prior=100.0, angle_limit=300.0, iterations=10),
    StageWeights(pose_prior=404.0, shape_prior=50.0, angle_limit=300.0, iterations=10),
    StageWeights(pose_prior=57.4, shape_prior=10.0, angle_limit=100.0, iterations=20),
    StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, iterations=30),
    StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, iterations=30),
)


@dataclass(frozen=True)
class IntactFitConfig:
    """Settings of ``fit_intact``.

    stages: the pose-and-shape schedule (stage (b)), one ``StageWeights`` per stage.
    rho_px: Geman-McClure scale. data_weight_ref_px: the keypoint term is scaled by
    ``(data_weight_ref_px / max(width, height))^2`` (SMPLify-X: 1000 / image height).
    camera_iterations / depth_prior_weight: the torso stage (a) and its pull to the initial depth
    (``weight^2 * (t_z - z0)^2``, metres). flip_threshold_px: 2D shoulder distance below which the
    180°-turned orientation is also fitted. camera_yaw_starts_deg: stage (a) starts from each of
    these turns about the vertical axis (a torso alone cannot tell a turn to the left from one to
    the right) and keeps the one whose rest body best fits all keypoints (robust term: mostly the
    face decides). phenotype_sigma: Anny phenotypes' prior scale about
    0.5. refine_iterations: with ``init``, L-BFGS iterations of refinement (0: none).
    """

    stages: tuple[StageWeights, ...] = DEFAULT_STAGES
    rho_px: float = 100.0
    data_weight_ref_px: float = 1000.0
    camera_iterations: int = 30
    depth_prior_weight: float = 100.0
    flip_threshold_px: float = 25.0
    camera_yaw_starts_deg: tuple[float, ...] = (0.0, 45.0, -45.0)
    phenotype_sigma: float = 0.25
    ftol: float = 1e-7
    gtol: float = 1e-7
    history_size: int = 30
    lr: float = 1.0
    refine_iterations: int = 0

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("IntactFitConfig.stages must hold at least one StageWeights")
        if not all(isinstance(s, StageWeights) for s in self.stages):
            raise ValueError("IntactFitConfig.stages must be StageWeights entries")
        for name in ("rho_px", "data_weight_ref_px", "phenotype_sigma", "lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"IntactFitConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.camera_yaw_starts_deg or not all(math.isfinite(a) for a in self.camera_yaw_starts_deg):
            raise ValueError(
                f"IntactFitConfig.camera_yaw_starts_deg must be finite angles, got {self.camera_yaw_starts_deg}"
            )
        for name in ("camera_iterations", "refine_iterations", "history_size"):
            if getattr(self, name) < 0:
                raise ValueError(f"IntactFitConfig.{name} must be >= 0, got {getattr(self, name)}")

    def monitor(self, iterations: int) -> MonitorConfig:
        """The convergence settings of a stage of ``iterations`` iterations (this config's ftol,
        gtol)."""
        return MonitorConfig(max_iters=iterations, ftol=self.ftol, gtol=self.gtol)
