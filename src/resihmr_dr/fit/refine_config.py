"""Settings of the silhouette refinement (:mod:`resihmr_dr.fit.refine`): the terms' weights and
scales, the stages' stopping rules, the renders' sizes and the cap's bounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from resihmr_dr.render.silhouette import SilhouetteConfig, silhouette_loss

__all__ = ["RefineConfig", "RefineWeights"]


@dataclass(frozen=True)
class RefineWeights:
    """Weights of the refinement terms (see the module docstring)."""

    silhouette: float = 1.0
    stump_silhouette: float = 1.0
    contour: float = 1.0
    fill: float = 1.0
    keypoints: float = 1.0
    endpoint: float = 1.0
    anchor: float = 1.0
    length: float = 1.0
    anthro: float = 1.0
    depth: float = 1.0
    pose_prior: float = 1.0
    shape_prior: float = 1.0
    cap_laplacian: float = 1.0
    cap_normal: float = 1.0
    cap_edge: float = 1.0
    cap_size: float = 1.0
    radial: float = 1.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RefineWeights.{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the silhouette refinement.

    iterations: L-BFGS iteration cap of each stage (0 disables the refinement); ftol / gtol: the
    stages' convergence tests (relative loss change, largest scaled gradient entry);
    max_recuts: how often a limb may be cut again when its tip moved more than a ring spacing.
    image_size: long side (px) of the whole-body render (at most the image's own); roi_size: side (px) of each stump
    window's render; roi_margin: the window's margin as a fraction of the limb's 2D extent.
    silhouette / stump_silhouette: the soft rasteriser's settings for the whole body / the stump
    windows. loss: "iou", "bce" or "l2" (the silhouette mismatch). The sigmas scale each term to 1 at a
    typical error (see the module docstring); keypoint_sigma is a fraction of the image's long
    side; contour_sigma_px and contour_hinge_px: the distance-transform terms' scale and the
    distance (px) a mask contour pixel may lie from the nearest vertex for free.
    radial_knots: knots of each residual segment's radius profile (:mod:`resihmr_dr.stump.radial`;
    0: none), radial_sigma: its prior's scale (a relative radius change).
    max_offset_fraction: cap offsets are bounded to this fraction of the cut's radius (outward)
    and of each ring vertex's distance from the axis (inward); min_tip_fraction: the tip stays
    at least this fraction of the cut radius beyond the cut ring. refine_body: free the body in
    the first stage (else only the limbs' ends and caps move).
    """

    weights: RefineWeights = field(default_factory=RefineWeights)
    iterations: int = 100
    ftol: float = 1e-4
    gtol: float = 1e-5
    max_recuts: int = 1
    image_size: int = 512
    roi_size: int = 128
    roi_margin: float = 0.35
    loss: str = "iou"
    # Much sharper than PyTorch3D's 1e-4: every face near a pixel adds to its alpha, so a soft
    # silhouette is dilated where faces overlap, and a fit against it comes out too small: against
    # the mask of the true mesh (256 px render) the soft IoU peaks at the true size for 1e-6 but at
    # a 1 % smaller body for 1e-5. The whole body is rendered at the image's own resolution (512 px
    # on the benchmark): at half of it the fitted silhouettes stayed ~1 image pixel inside the
    # mask's outline (12 benchmark people: mask IoU 0.941 at 256 px, 0.947 at 512 px; 1e-7 at
    # 256 px did not help, 0.931). The distance-transform terms supply the gradients beyond the blur.
    silhouette: SilhouetteConfig = field(default_factory=lambda: SilhouetteConfig(sigma=1e-6))
    # The stump windows too: at 1e-5 the fitted stumps stayed ~1 image pixel inside the mask's
    # outline all round (12 benchmark people: stump-region IoU 0.926 at 1e-5, 0.961 at 1e-6).
    stump_silhouette: SilhouetteConfig = field(default_factory=lambda: SilhouetteConfig(sigma=1e-6))
    iou_sigma: float = 0.02
    keypoint_sigma: float = 0.01
    contour_sigma_px: float = 3.0
    contour_hinge_px: float = 1.5
    anchor_sigma_m: float = 0.05
    length_sigma_m: float = 0.02
    anthro_sigma_frac: float = 0.25
    depth_sigma_m: float = 0.02
    pose_sigma_rad: float = 0.5
    shape_sigma: float = 1.0
    cap_laplacian_sigma_m: float = 0.002
    cap_normal_sigma: float = 0.05
    cap_edge_sigma_m: float = 0.004
    cap_size_sigma_m: float = 0.03
    radial_knots: int = 4
    radial_sigma: float = 0.1
    max_offset_fraction: float = 0.6
    min_tip_fraction: float = 0.1
    refine_body: bool = True

    def __post_init__(self) -> None:
        if self.radial_knots < 0:
            raise ValueError(f"RefineConfig.radial_knots must be >= 0, got {self.radial_knots}")
        if self.iterations < 0 or self.image_size < 16 or self.roi_size < 16 or self.max_recuts < 0:
            raise ValueError(
                "RefineConfig: iterations >= 0, max_recuts >= 0, image_size >= 16 and roi_size >= 16 required"
            )
        silhouette_loss(self.loss)  # raises on an unknown name
        positive = (
            "ftol",
            "gtol",
            "iou_sigma",
            "keypoint_sigma",
            "contour_sigma_px",
            "anchor_sigma_m",
            "length_sigma_m",
            "anthro_sigma_frac",
            "depth_sigma_m",
            "pose_sigma_rad",
            "shape_sigma",
            "cap_laplacian_sigma_m",
            "cap_normal_sigma",
            "cap_edge_sigma_m",
            "cap_size_sigma_m",
            "radial_sigma",
            "max_offset_fraction",
            "min_tip_fraction",
            "roi_margin",
        )
        for name in positive:
            if not getattr(self, name) > 0:
                raise ValueError(f"RefineConfig.{name} must be > 0, got {getattr(self, name)}")
        if not self.contour_hinge_px >= 0:
            raise ValueError(f"RefineConfig.contour_hinge_px must be >= 0, got {self.contour_hinge_px}")
        if not self.max_offset_fraction < 1:
            raise ValueError(f"RefineConfig.max_offset_fraction must be < 1, got {self.max_offset_fraction}")

    @property
    def enabled(self) -> bool:
        """True when the refinement runs: iterations > 0 and a silhouette weight > 0."""
        w = self.weights
        return self.iterations > 0 and (w.silhouette > 0 or w.stump_silhouette > 0)
