"""Joint silhouette refinement of the body, each residual limb's end and its cap (this project's
extension).

After RAFO and capping, one converged optimisation (L-BFGS with a strong-Wolfe line search, in
scaled units, under :class:`~resihmr_dr.fit.monitor.ConvergenceMonitor`'s stopping rules) fits
the capped body to the person mask, in two stages:

1. **body**: shape, pose, global orientation and translation, and each residual limb's end,
   against the whole mask (and the stump windows), the intact keypoints and the endpoint
   keypoints; the cap keeps its convex shape;
2. **stump**: each residual limb's end and its cap's per-vertex offsets along the dome's normal
   against the stump windows (and the whole mask), with the body fixed.

Each residual limb's end is a variable: the cap's tip height beyond its cut ring, i.e. λ_r (the
tip's fraction along J_a -> J_t, reported). When a tip moves distally more than a ring spacing
beyond the cap's design height (the dome is being stretched over the limb), or down onto its
height floor (the limb ends proximal of the cut), the limbs are cut again with the cut ring the
cap's length proximal of the tip, and the stump stage runs again from the current shape (the new
cap's offsets are set so that it lies on the current limb surface); at most ``max_recuts`` times. The cap's topology never changes
within a stage, so the mesh is watertight and winding-consistent at every iteration.

Terms (dimensionless; each ``weight * (error / sigma)^2`` or a soft IoU mismatch; a weight of 0
switches a term off):

- ``silhouette`` / ``stump_silhouette``: ``(1 - soft IoU) / iou_sigma`` of the whole body /
  each stump window (higher resolution) against the mask;
- ``contour``: the mask's distance transform (``render.distance``): every projected vertex
  outside the mask is pulled in by its distance to the mask, and every mask contour pixel of a
  stump window pulls the nearest projected vertex out to it, so gradients reach beyond the soft
  rasteriser's blur;
- ``keypoints``: the intact 2D keypoints; ``endpoint``: each cap *tip* reprojected onto its
  residual endpoint keypoint (RAFO's reprojection term);
- ``anchor`` (RAFO's α): each anchor joint J_a stays near its start, relative to the pelvis;
  ``length`` (RAFO's μ): |J_t - J_a| stays at its start; ``anthro``: the anthropometric prior on
  |J_t - J_a| for the person's stature;
- ``depth``: the depth anchor. One view cannot see depth, and a silhouette can be matched by
  swinging a limb towards or away from the camera; every joint's depth relative to the pelvis
  stays near that of the keypoint fit (``depth_sigma_m``). ``RefineResult.depth_drift_m``
  reports the largest change;
- ``pose_prior`` / ``shape_prior``: stay near the start;
- ``cap_laplacian``, ``cap_normal``, ``cap_edge``: the cap's mesh regularisers
  (:mod:`~resihmr_dr.fit.mesh_losses`, PyTorch3D's ``mesh_laplacian_smoothing`` (uniform),
  ``mesh_normal_consistency`` and ``mesh_edge_loss`` quantities) taken *relative to the convex
  cap* on the same ring, so that they are at their minimum on the paper's cap and a mask weight
  trades shape against them; ``cap_size``: the offsets' magnitude.

Several images of one person: the per-image terms live in :class:`_ViewTerms`; shape, the
limbs' ends and the caps are shared variables, orientation, translation and pose per-image ones.
With every silhouette weight at 0 the stage does not run and the result is the paper's cap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyOutput, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, Limb, LimbStatus
from resihmr_dr.fit.anthropometry import expected_segment_length_m, residual_segment
from resihmr_dr.fit.intact import intact_targets
from resihmr_dr.fit.mesh_losses import part_topology
from resihmr_dr.fit.monitor import MonitorConfig, StageOutcome, minimize_lbfgs
from resihmr_dr.render.distance import chamfer_to_points, mask_contour_px, mask_distance_maps, sample_map
from resihmr_dr.render.silhouette import SilhouetteConfig, render_silhouette, silhouette_loss
from resihmr_dr.stump.cap import CapConfig, CutSpec, ResidualBody, cut_and_cap_to_tips

__all__ = [
    "RefineConfig",
    "RefineResult",
    "RefineWeights",
    "ResidualTarget",
    "StageRecord",
    "refine",
    "stump_rois",
]


@dataclass(frozen=True)
class RefineWeights:
    """Weights of the refinement terms (see the module docstring)."""

    silhouette: float = 1.0
    stump_silhouette: float = 1.0
    contour: float = 1.0
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
    image_size: long side (px) of the whole-body render; roi_size: side (px) of each stump
    window's render; roi_margin: the window's margin as a fraction of the limb's 2D extent.
    silhouette / stump_silhouette: the soft rasteriser's settings for the whole body / the stump
    windows. loss: "iou", "bce" or "l2" (the silhouette mismatch). The sigmas scale each term to 1 at a
    typical error (see the module docstring); keypoint_sigma is a fraction of the image's long
    side; contour_sigma_px and contour_hinge_px: the distance-transform terms' scale and the
    distance (px) a mask contour pixel may lie from the nearest vertex for free.
    max_offset_fraction: cap offsets are bounded to this fraction of the cut's radius (outward)
    and of each ring vertex's distance from the axis (inward); min_tip_fraction: the tip stays
    at least this fraction of the cut radius beyond the cut ring. refine_body: free the body in
    the first stage (else only the limbs' ends and caps move).
    """

    weights: RefineWeights = field(default_factory=RefineWeights)
    iterations: int = 30
    ftol: float = 1e-4
    gtol: float = 1e-5
    max_recuts: int = 1
    image_size: int = 256
    roi_size: int = 128
    roi_margin: float = 0.35
    loss: str = "iou"
    # Much sharper than PyTorch3D's 1e-4: every face near a pixel adds to its alpha, so a soft
    # silhouette is dilated where faces overlap; against the mask of the true mesh (256 px render)
    # the soft IoU peaks at the true size for 1e-6 (0.949) but at a 1 % smaller body for 1e-5
    # (0.911), which made the fit shrink the body. The distance-transform term supplies the
    # gradients beyond the resulting ~0.4 px blur.
    silhouette: SilhouetteConfig = field(default_factory=lambda: SilhouetteConfig(sigma=1e-6))
    # The stump windows are rendered at ~1.3 window pixels per image pixel, where 1e-5's bias is
    # below an image pixel and its wider blur gives the cap's offsets usable gradients (measured
    # on 3 synthetic people: stump surface distance 19.9 mm at 1e-6, 15.9 mm at 1e-5).
    stump_silhouette: SilhouetteConfig = field(default_factory=lambda: SilhouetteConfig(sigma=1e-5))
    iou_sigma: float = 0.02
    keypoint_sigma: float = 0.01
    contour_sigma_px: float = 3.0
    contour_hinge_px: float = 1.5
    anchor_sigma_m: float = 0.05
    length_sigma_m: float = 0.02
    anthro_sigma_frac: float = 0.25
    depth_sigma_m: float = 0.02
    pose_sigma_rad: float = 0.15
    shape_sigma: float = 0.1
    cap_laplacian_sigma_m: float = 0.002
    cap_normal_sigma: float = 0.05
    cap_edge_sigma_m: float = 0.004
    cap_size_sigma_m: float = 0.03
    max_offset_fraction: float = 0.6
    min_tip_fraction: float = 0.1
    refine_body: bool = True

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.image_size < 16 or self.roi_size < 16 or self.max_recuts < 0:
            raise ValueError(
                "RefineConfig: iterations >= 0, max_recuts >= 0, image_size >= 16 and roi_size >= 16 required"
            )
        silhouette_loss(self.loss)  # raises on an unknown name
        positive = ("ftol", "gtol", "iou_sigma", "keypoint_sigma", "contour_sigma_px", "anchor_sigma_m",
                    "length_sigma_m", "anthro_sigma_frac", "depth_sigma_m", "pose_sigma_rad", "shape_sigma",
                    "cap_laplacian_sigma_m", "cap_normal_sigma", "cap_edge_sigma_m", "cap_size_sigma_m",
                    "max_offset_fraction", "min_tip_fraction", "roi_margin")  # fmt: skip
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


@dataclass(frozen=True)
class ResidualTarget:
    """One residual limb as the refinement sees it: the limb, its status and its endpoint
    keypoint (2,) px (None if unlabelled)."""

    limb: Limb
    status: LimbStatus
    endpoint_px: np.ndarray | None


@dataclass(frozen=True)
class StageRecord:
    """One stage of the refinement: the optimiser's outcome (iterations, evaluations, stop
    reason) and every term's value at the stage's start and end."""

    outcome: StageOutcome
    terms_first: dict[str, float]
    terms_last: dict[str, float]

    def to_dict(self) -> dict:
        """JSON-friendly summary."""
        o = self.outcome
        return {"name": o.name, "iterations": o.iterations, "evaluations": o.evaluations,
                "stop_reason": o.reason.value, "message": o.message, "converged": o.reason.converged,
                "seconds": o.seconds, "loss_first": o.losses[0] if o.losses else None,
                "loss_last": o.final_loss, "terms_first": self.terms_first, "terms_last": self.terms_last}  # fmt: skip


@dataclass(frozen=True)
class RefineResult:
    """params: the refined body (B = 1, detached); residual: the cut and capped body the result
    lives on (re-cut where a tip moved); normal_offsets: per cap (R, L) offsets along the dome's
    normal, metres; tip_heights: per cap, the tip's height beyond its cut ring, metres;
    verts_cam: (V'', 3) the refined capped mesh; lambda_tip: per limb, the tip's fraction along
    the refined body's J_a -> J_t; stages: per stage, its record; history: per objective
    evaluation, the stage's index, the total and every term; recuts: how many times limbs were cut again; depth_drift_m:
    the largest change of a joint's depth relative to the pelvis; seconds: wall time."""

    params: BodyParams
    residual: ResidualBody
    normal_offsets: tuple[torch.Tensor, ...]
    tip_heights: tuple[float, ...]
    verts_cam: np.ndarray
    lambda_tip: tuple[float, ...]
    stages: tuple[StageRecord, ...]
    history: list[dict[str, float]]
    recuts: int
    depth_drift_m: float
    seconds: float

    @property
    def iterations(self) -> int:
        """L-BFGS iterations over all stages."""
        return sum(s.outcome.iterations for s in self.stages)


def stump_rois(
    *, verts_cam: np.ndarray, limb_masks: Sequence[np.ndarray], camera: PinholeCamera, margin: float
) -> list[tuple[int, int, int, int]]:
    """Square integer pixel windows (x0, y0, x1, y1) around each residual limb's projection."""
    xy = camera.project(torch.as_tensor(verts_cam)).numpy()
    rois = []
    for mask in limb_masks:
        pts = xy[np.asarray(mask, bool)]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        centre = (lo + hi) / 2
        half = max(float((hi - lo).max()) * (0.5 + margin), 8.0)
        x0, y0 = int(math.floor(centre[0] - half)), int(math.floor(centre[1] - half))
        side = int(math.ceil(2 * half))
        x0 = min(max(x0, 0), max(camera.width - side, 0))
        y0 = min(max(y0, 0), max(camera.height - side, 0))
        rois.append((x0, y0, min(x0 + side, camera.width), min(y0 + side, camera.height)))
    return rois


def _resize_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(H, W) {0, 1} -> (h, w) float coverage by area averaging."""
    return F.interpolate(mask[None, None].float(), size=size, mode="area")[0, 0]


def _segment_joint_names(limb: Limb, status: LimbStatus) -> tuple[str, str]:
    anchor, target = limb.segment_joints(status)
    return KEYPOINT_NAMES[anchor], KEYPOINT_NAMES[target]


def bounded_offsets(raw: torch.Tensor, *, inward_m: torch.Tensor, outward_m: torch.Tensor | float) -> torch.Tensor:
    """(R, L) offsets in (-inward_m, outward_m) from unbounded ``raw`` (metres), 0 at 0, slope 1
    there: a smooth map (``tanh`` on each side) so that no ring vertex crosses the axis."""
    return torch.where(raw >= 0, outward_m * torch.tanh(raw / outward_m), inward_m * torch.tanh(raw / inward_m))


def outward_bounds(
    tip_height: torch.Tensor, profile: torch.Tensor, lift: torch.Tensor, rho: torch.Tensor, *, max_m: float
) -> torch.Tensor:
    """(R, L) largest outward offsets (metres) of a cap's ring vertices: ``max_m``, and no more
    than keeps each vertex below 90 % of the way from its ring's level to the tip along the axis
    (so the tip stays the limb's end). profile, lift: (R,) the rings' scale and lift fraction;
    rho: (L,) the loop vertices' distances from the axis."""
    radial = tip_height * profile[:, None]  # the dome normal's radial and axial components
    axial = rho[None, :] * lift[:, None]
    n_axial = axial / (radial.square() + axial.square()).sqrt().clamp_min(1e-12)
    room = 0.9 * tip_height * (1 - lift)[:, None] / n_axial.clamp_min(1e-6)
    return room.clamp_max(max_m)


def soft_floor(value: torch.Tensor, floor: float, *, softness: float) -> torch.Tensor:
    """A smooth ``max(value, floor)``: ``floor + softness * softplus((value - floor) / softness)``."""
    return floor + softness * F.softplus((value - floor) / softness)


# ------------------------------------------------------------------------------- one image


class _ViewTerms:
    """The terms of one image: silhouettes, the distance-transform terms, keypoints and endpoints
    (its camera, mask and keypoints are fixed; the mesh comes in per evaluation)."""

    def __init__(
        self,
        *,
        camera: PinholeCamera,
        mask: np.ndarray,
        keypoints_px: np.ndarray,
        endpoints_px: Sequence[np.ndarray | None],
        config: RefineConfig,
        dtype: torch.dtype,
        device: torch.device,
    ) -> None:
        if mask.shape != (camera.height, camera.width):
            raise ValueError(f"mask is {mask.shape}, the camera image is {(camera.height, camera.width)}")
        kw = dict(dtype=dtype, device=device)
        self.camera, self.config = camera, config
        self.loss_fn = silhouette_loss(config.loss)
        scale = config.image_size / max(camera.width, camera.height)
        self.full_size = (max(16, round(camera.height * scale)), max(16, round(camera.width * scale)))
        self.full_scale = (self.full_size[1] / camera.width, self.full_size[0] / camera.height)  # (x, y)
        self.mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)
        self.mask_full = _resize_mask(self.mask_t, self.full_size).to(dtype)
        # The distance transform at the render's resolution, in full-image pixels.
        dist = mask_distance_maps(self.mask_full > 0.5, device=device, dtype=dtype)
        self.outside_px = dist.outside_px / min(self.full_scale)
        target_np, weights_np = intact_targets(keypoints_px)
        self.kp_target = torch.as_tensor(target_np, **kw)
        self.kp_weight = torch.as_tensor(weights_np, **kw)
        self.kp_sigma = config.keypoint_sigma * max(camera.width, camera.height)
        self.endpoints = [None if e is None else torch.as_tensor(e, **kw) for e in endpoints_px]
        self.rois: list[tuple[int, int, int, int]] = []

    def set_windows(self, *, verts_cam: np.ndarray, limb_masks: Sequence[np.ndarray]) -> None:
        """Place each stump's window around its current projection (per stage)."""
        cfg = self.config
        self.rois = stump_rois(verts_cam=verts_cam, limb_masks=limb_masks, camera=self.camera, margin=cfg.roi_margin)
        self.roi_masks = [
            _resize_mask(self.mask_t[y0:y1, x0:x1], (cfg.roi_size, cfg.roi_size)).to(self.mask_full.dtype)
            for x0, y0, x1, y1 in self.rois
        ]
        self.roi_contours = [mask_contour_px(self.mask_t > 0.5, window=roi).to(self.mask_full) for roi in self.rois]
        self.limb_vertices = [torch.as_tensor(np.flatnonzero(m), device=self.mask_t.device) for m in limb_masks]
        xy = self.camera.project(torch.as_tensor(verts_cam)).numpy()
        pad = 2 * cfg.contour_hinge_px + 2
        self.roi_vertices = [
            torch.as_tensor(np.flatnonzero((xy[:, 0] > x0 - pad) & (xy[:, 0] < x1 + pad) & (xy[:, 1] > y0 - pad)
                                           & (xy[:, 1] < y1 + pad)), device=self.mask_t.device)  # fmt: skip
            for x0, y0, x1, y1 in self.rois
        ]

    def terms(self, *, verts: torch.Tensor, faces: torch.Tensor, body: BodyOutput, tips: Sequence[torch.Tensor],
              weights: RefineWeights) -> dict[str, torch.Tensor]:  # fmt: skip
        """Per-image terms of the mesh ``verts`` (V'', 3) / ``faces``, the posed body (B = 1) and
        each limb's tip (3,)."""
        cfg, cam, w = self.config, self.camera, weights
        out: dict[str, torch.Tensor] = {}
        if w.silhouette > 0:
            alpha = render_silhouette(verts_cam=verts[None], faces=faces, camera=cam, image_size=self.full_size,
                                      config=cfg.silhouette)[0]  # fmt: skip
            out["silhouette"] = w.silhouette * self.loss_fn(alpha, self.mask_full) / cfg.iou_sigma
        if w.stump_silhouette > 0 and self.rois:
            losses = []
            for roi, roi_mask in zip(self.rois, self.roi_masks):
                alpha = render_silhouette(verts_cam=verts[None], faces=faces, camera=cam,
                                          image_size=(cfg.roi_size, cfg.roi_size), crop=roi,
                                          config=cfg.stump_silhouette)[0]  # fmt: skip
                losses.append(self.loss_fn(alpha, roi_mask))
            out["stump_silhouette"] = w.stump_silhouette * torch.stack(losses).mean() / cfg.iou_sigma
        if w.contour > 0:
            xy = cam.project(verts)
            xy_full = xy * torch.as_tensor(self.full_scale, dtype=xy.dtype, device=xy.device)
            outside = (sample_map(self.outside_px, xy_full) / cfg.contour_sigma_px).square()
            term = outside.mean()
            for contour, ids, limb_ids in zip(self.roi_contours, self.roi_vertices, self.limb_vertices):
                term = term + outside[limb_ids].mean()  # each residual limb's own vertices
                if len(contour) and len(ids):
                    gap = chamfer_to_points(contour, xy[ids], hinge_px=cfg.contour_hinge_px)
                    term = term + (gap / cfg.contour_sigma_px).square()
            out["contour"] = w.contour * term
        if w.keypoints > 0:
            err = (cam.project(body.coco_kp[0]) - self.kp_target).square().sum(-1) / self.kp_sigma**2
            out["keypoints"] = w.keypoints * (self.kp_weight * err).sum() / self.kp_weight.sum().clamp_min(1.0)
        pairs = [(tip, k) for tip, k in zip(tips, self.endpoints) if k is not None]
        if w.endpoint > 0 and pairs:
            errs = [(cam.project(tip) - k).square().sum() / self.kp_sigma**2 for tip, k in pairs]
            out["endpoint"] = w.endpoint * torch.stack(errs).mean()
        return out


# ------------------------------------------------------------------------------- the fit


@dataclass
class _Limb:
    """One residual limb's state across stages: its joints' names, its cap's current offsets
    (raw, metres) and tip height, and the tip height the current cut was made for."""

    target: ResidualTarget
    joints: tuple[str, str]
    raw_offsets: torch.Tensor
    tip_height: torch.Tensor
    design_height: float
    radius: float
    expected_length_m: float


def refine(
    *,
    body: BodyModel,
    params: BodyParams,
    residual: ResidualBody,
    targets: Sequence[ResidualTarget],
    keypoints_px: np.ndarray,
    camera: PinholeCamera,
    mask: np.ndarray,
    stature_m: float,
    cap: CapConfig = CapConfig(),
    config: RefineConfig = RefineConfig(),
    callback: Callable[[str, torch.Tensor, np.ndarray], None] | None = None,
) -> RefineResult:
    """Jointly refine the body, each residual limb's end and its cap against ``mask`` (H, W) bool.

    ``residual`` was cut and capped on ``body(params)``'s mesh (``cut_and_cap_to_tips``);
    ``targets`` are its residual limbs in the same order as ``residual.steps``; ``stature_m``:
    the person's stature (the anthropometric prior); ``cap``: the cap settings used for re-cuts;
    ``callback(stage, verts (V'', 3), faces (F'', 3))``, if given, sees the mesh at every
    objective evaluation.
    """
    start = time.perf_counter()
    if len(targets) != len(residual.steps):
        raise ValueError(f"need one target per cut: {len(targets)} targets, {len(residual.steps)} cuts")
    dtype, device = body.dtype, body.device
    kw = dict(dtype=dtype, device=device)
    w = config.weights
    view = _ViewTerms(camera=camera, mask=np.asarray(mask), keypoints_px=keypoints_px,
                      endpoints_px=[t.endpoint_px for t in targets], config=config, dtype=dtype, device=device)  # fmt: skip

    init = params.detach()
    with torch.no_grad():
        body0 = body(init)
    j0 = body0.joints[0]
    pelvis = JOINT_INDEX["pelvis"]
    rel_depth0 = j0[:, 2] - j0[pelvis, 2]
    limbs = []
    for step, target in zip(residual.steps, targets):
        names = _segment_joint_names(target.limb, target.status)
        expected = expected_segment_length_m(residual_segment(target.status), body_height_m=stature_m)
        limbs.append(_Limb(target=target, joints=names,
                           raw_offsets=torch.zeros(step.num_rings, len(step.cut.boundary_loop), **kw),
                           tip_height=torch.tensor(step.tip_height, **kw), design_height=step.tip_height,
                           radius=step.loop_radius, expected_length_m=expected))  # fmt: skip
    anchor0 = [j0[JOINT_INDEX[a]] - j0[pelvis] for a, _ in (lb.joints for lb in limbs)]
    length0 = [float((j0[JOINT_INDEX[b]] - j0[JOINT_INDEX[a]]).norm()) for a, b in (lb.joints for lb in limbs)]

    # Optimised in scaled units (L-BFGS is then well conditioned): value = start + scale * u.
    scales = {"orient": 0.05, "transl": 0.05, "pose": 0.05, "shape": 0.05, "tip": 0.005, "offset": 0.003}
    u_orient = torch.zeros(1, 3, **kw)
    u_transl = torch.zeros(1, 3, **kw)
    u_pose = torch.zeros_like(init.body_pose)
    u_shape = torch.zeros_like(init.shape)
    history: list[dict[str, float]] = []
    stages: list[StageRecord] = []

    def current_params() -> BodyParams:
        return BodyParams(
            global_orient=init.global_orient + scales["orient"] * u_orient,
            body_pose=init.body_pose + scales["pose"] * u_pose,
            shape=init.shape + scales["shape"] * u_shape,
            transl=init.transl + scales["transl"] * u_transl,
        )

    def mesh(state: _Stage, fixed_body: BodyOutput | None):
        """The posed body, the capped mesh (V'', 3) and each cap's axis, offsets and tip height."""
        out = body(current_params()) if fixed_body is None else fixed_body
        joints = out.joints[0]
        axes, offsets, heights = [], [], []
        for lb, u_tip, u_off, inward, shape in zip(limbs, state.u_tips, state.u_offsets, state.inward, state.ring_shape):
            a, b = (joints[JOINT_INDEX[n]] for n in lb.joints)
            axes.append((b - a) / (b - a).norm())
            height = soft_floor(lb.tip_height + scales["tip"] * u_tip, config.min_tip_fraction * lb.radius,
                                softness=0.1 * lb.radius)  # fmt: skip
            heights.append(height)
            raw = lb.raw_offsets + scales["offset"] * u_off
            outward = outward_bounds(height, *shape, max_m=config.max_offset_fraction * lb.radius)
            offsets.append(bounded_offsets(raw, inward_m=inward, outward_m=outward))
        verts = state.residual.replay(out.verts[0], normal_offsets=offsets, tip_heights=heights, axes=axes)
        return out, verts, axes, offsets, heights

    def evaluate(state: _Stage, fixed_body: BodyOutput | None) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        out, verts, axes, offsets, heights = mesh(state, fixed_body)
        tips = [verts[i] for i in state.residual.tip_indices]
        terms = view.terms(verts=verts, faces=state.faces, body=out, tips=tips, weights=w)
        # Body priors (RAFO's alpha and mu, the anthropometric prior, the depth anchor).
        if state.body_free:
            terms.update(_body_terms(out=out, limbs=limbs, anchor0=anchor0, length0=length0, rel_depth0=rel_depth0,
                                     u_pose=u_pose, u_shape=u_shape, scales=scales, config=config))  # fmt: skip
        if state.cap_free:
            terms.update(_cap_terms(verts=verts, offsets=offsets, state=state, axes=axes, heights=heights,
                                    config=config, out=out))  # fmt: skip
        return sum(terms.values()), terms, verts

    def run_stage(name: str, state: _Stage) -> None:
        fixed = None
        if not state.body_free:
            with torch.no_grad():
                fixed = body(current_params())
        free = list(state.u_tips) + (list(state.u_offsets) if state.cap_free else [])
        if state.body_free:
            free += [u_orient, u_transl, u_pose, u_shape]
        for t in free:
            t.requires_grad_(True)
        def objective() -> torch.Tensor:
            total, terms, verts = evaluate(state, fixed)
            if callback is not None:
                callback(name, verts.detach(), state.residual.faces)
            history.append({"stage": float(len(stages)), "total": float(total.detach())}
                           | {k: float(v.detach()) for k, v in terms.items()})  # fmt: skip
            return total

        with torch.no_grad():
            verts = mesh(state, fixed)[1]
            view.set_windows(verts_cam=verts.cpu().double().numpy(), limb_masks=state.residual.limb_masks)
            first = evaluate(state, fixed)[1]
        outcome = minimize_lbfgs(name=name, params=free, objective=objective,
                                 monitor=MonitorConfig(max_iters=config.iterations, ftol=config.ftol, gtol=config.gtol,
                                                       min_iters=3))  # fmt: skip
        for t in free:
            t.requires_grad_(False)
        with torch.no_grad():
            last = evaluate(state, fixed)[1]
        stages.append(StageRecord(outcome=outcome, terms_first={k: float(v) for k, v in first.items()},
                                  terms_last={k: float(v) for k, v in last.items()}))  # fmt: skip
        # Fold the stage's steps into the limbs' state.
        with torch.no_grad():
            for lb, u_tip, u_off in zip(limbs, state.u_tips, state.u_offsets):
                lb.tip_height = soft_floor(lb.tip_height + scales["tip"] * u_tip, config.min_tip_fraction * lb.radius,
                                           softness=0.1 * lb.radius)  # fmt: skip
                lb.raw_offsets = lb.raw_offsets + scales["offset"] * u_off
                u_tip.zero_()
                u_off.zero_()

    def stage_mesh(state: _Stage) -> torch.Tensor:
        with torch.no_grad():
            return mesh(state, body(current_params()))[1]

    recuts = 0
    state = _Stage.build(residual, limbs, body_free=config.refine_body, cap_free=False, kw=kw)
    if config.refine_body:
        run_stage("body", state)
    for attempt in range(config.max_recuts + 1):
        state = _Stage.build(residual, limbs, body_free=False, cap_free=True, kw=kw)
        run_stage("stump" if attempt == 0 else f"stump (re-cut {attempt})", state)
        if attempt == config.max_recuts:
            break
        residual, changed = _recut_moved(body=body, params=current_params(), residual=residual, limbs=limbs,
                                         cap=cap, verts_now=stage_mesh(state), config=config)  # fmt: skip
        if not changed:
            break
        recuts += 1

    with torch.no_grad():
        p = current_params()
        state = _Stage.build(residual, limbs, body_free=False, cap_free=True, kw=kw)
        out, verts, _, offsets, _ = mesh(state, body(p))
        joints = out.joints[0]
        lambda_tip = []
        for lb, tip_index in zip(limbs, residual.tip_indices):
            a, b = (joints[JOINT_INDEX[n]] for n in lb.joints)
            seg = b - a
            lambda_tip.append(float((verts[tip_index] - a) @ seg / seg.square().sum()))
        rel_depth = joints[:, 2] - joints[pelvis, 2]
        drift = float((rel_depth - rel_depth0).abs().max())
    return RefineResult(
        params=p.detach(),
        residual=residual,
        normal_offsets=tuple(o.detach() for o in offsets),
        tip_heights=tuple(float(lb.tip_height) for lb in limbs),
        verts_cam=verts.detach().cpu().double().numpy(),
        lambda_tip=tuple(lambda_tip),
        stages=tuple(stages),
        history=history,
        recuts=recuts,
        depth_drift_m=drift,
        seconds=time.perf_counter() - start,
    )


@dataclass
class _Stage:
    """What one stage optimises on: the cut body, its faces, each cap's scaled variables and
    regulariser topology, and which variable groups are free."""

    residual: ResidualBody
    faces: torch.Tensor
    u_tips: list[torch.Tensor]
    u_offsets: list[torch.Tensor]
    inward: list[torch.Tensor]
    ring_shape: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    cap_topology: list
    body_free: bool
    cap_free: bool

    @staticmethod
    def build(residual: ResidualBody, limbs: Sequence[_Limb], *, body_free: bool, cap_free: bool, kw: dict) -> "_Stage":
        faces = torch.as_tensor(residual.faces, device=kw["device"])
        inward, topo, shapes = [], [], []
        for step, lb, cap_ids in zip(residual.steps, limbs, _final_cap_ids(residual)):
            inward.append(torch.as_tensor(_inward_bounds(step), **kw))
            loop = step.cut.verts[step.cut.boundary_loop]
            rel = loop - loop.mean(axis=0)
            rho = np.linalg.norm(rel - np.outer(rel @ step.cut.axis, step.cut.axis), axis=1)
            shapes.append((torch.as_tensor(step.profile, **kw), torch.as_tensor(step.heights / step.tip_height, **kw),
                           torch.as_tensor(rho, **kw)))  # fmt: skip
            cap_faces = np.flatnonzero(np.isin(residual.faces, cap_ids).any(axis=1))
            topo.append(part_topology(residual.faces, vertex_ids=cap_ids, face_ids=cap_faces))
        return _Stage(
            residual=residual, faces=faces,
            u_tips=[torch.zeros((), **kw) for _ in limbs],
            u_offsets=[torch.zeros_like(lb.raw_offsets) for lb in limbs],
            inward=inward, ring_shape=shapes, cap_topology=topo, body_free=body_free, cap_free=cap_free,
        )  # fmt: skip


def _inward_bounds(step) -> np.ndarray:
    """(R, L) how far (metres) each ring vertex of a cap may move inwards: 60 % of its distance
    from the axis (at least 5 % of the cut's radius), so that no ring crosses the axis."""
    loop = step.cut.verts[step.cut.boundary_loop]
    rel = loop - loop.mean(axis=0)
    in_plane = rel - np.outer(rel @ step.cut.axis, step.cut.axis)
    ring_rho = step.profile[:, None] * np.linalg.norm(in_plane, axis=1)[None, :]
    return np.maximum(0.6 * ring_rho, 0.05 * step.loop_radius)


def _final_cap_ids(residual: ResidualBody) -> list[np.ndarray]:
    """Per step, the ids of its cap's vertices (rings and tip) in the final mesh."""
    out = []
    for i, step in enumerate(residual.steps):
        ids = step.cap_vertex_ids
        for later in residual.steps[i + 1 :]:
            vmap = later.cut.vertex_map
            lookup = np.full(int(vmap.max()) + 2 if len(vmap) else 1, -1)
            kept = vmap >= 0
            lookup[vmap[kept]] = np.flatnonzero(kept)
            ids = lookup[ids]
        out.append(ids)
    return out


def _body_terms(*, out: BodyOutput, limbs, anchor0, length0, rel_depth0, u_pose, u_shape, scales, config) -> dict:
    """RAFO's anchor and length terms, the anthropometric prior, the depth anchor, the priors."""
    w = config.weights
    joints = out.joints[0]
    pelvis = joints[JOINT_INDEX["pelvis"]]
    terms = {}
    anchor, length, anthro = [], [], []
    for lb, a0, l0 in zip(limbs, anchor0, length0):
        a, b = (joints[JOINT_INDEX[n]] for n in lb.joints)
        anchor.append(((a - pelvis) - a0).square().sum() / config.anchor_sigma_m**2)
        seg = (b - a).norm()
        length.append(((seg - l0) / config.length_sigma_m).square())
        anthro.append(((seg - lb.expected_length_m) / (config.anthro_sigma_frac * lb.expected_length_m)).square())
    if w.anchor > 0:
        terms["anchor"] = w.anchor * torch.stack(anchor).mean()
    if w.length > 0:
        terms["length"] = w.length * torch.stack(length).mean()
    if w.anthro > 0:
        terms["anthro"] = w.anthro * torch.stack(anthro).mean()
    if w.depth > 0:
        rel_depth = joints[:, 2] - pelvis[2]
        terms["depth"] = w.depth * ((rel_depth - rel_depth0) / config.depth_sigma_m).square().mean()
    if w.pose_prior > 0:
        terms["pose_prior"] = w.pose_prior * (scales["pose"] * u_pose / config.pose_sigma_rad).square().sum()
    if w.shape_prior > 0:
        terms["shape_prior"] = w.shape_prior * (scales["shape"] * u_shape / config.shape_sigma).square().sum()
    return terms


def _cap_terms(*, verts, offsets, state: _Stage, axes, heights, config, out) -> dict:
    """The caps' mesh regularisers relative to the convex cap on the same ring, and their size."""
    w = config.weights
    with torch.no_grad():
        convex = state.residual.replay(out.verts[0], tip_heights=[h.detach() for h in heights],
                                       axes=[a.detach() for a in axes])  # fmt: skip
    lap, normal, edge, size = [], [], [], []
    for topo, o in zip(state.cap_topology, offsets):
        # The uniform Laplacian is linear: that of the offsets from the convex cap.
        lap.append((topo.laplacian(verts - convex) / config.cap_laplacian_sigma_m).square())
        normal.append((topo.pair_cosines(verts) - topo.pair_cosines(convex)).square().mean() / config.cap_normal_sigma**2)
        edge.append((topo.edge_lengths(verts) - topo.edge_lengths(convex)).square().mean() / config.cap_edge_sigma_m**2)
        size.append((o / config.cap_size_sigma_m).square().mean())
    terms = {}
    if w.cap_laplacian > 0:
        terms["cap_laplacian"] = w.cap_laplacian * torch.stack(lap).mean()
    if w.cap_normal > 0:
        terms["cap_normal"] = w.cap_normal * torch.stack(normal).mean()
    if w.cap_edge > 0:
        terms["cap_edge"] = w.cap_edge * torch.stack(edge).mean()
    if w.cap_size > 0:
        terms["cap_size"] = w.cap_size * torch.stack(size).mean()
    return terms


def _recut_moved(
    *, body: BodyModel, params: BodyParams, residual: ResidualBody, limbs: Sequence[_Limb], cap: CapConfig,
    verts_now: torch.Tensor, config: RefineConfig,
) -> tuple[ResidualBody, bool]:  # fmt: skip
    """Cut the limbs again on the current body where the cut no longer suits the tip: a tip that moved distally more than a ring spacing beyond the cap's design height
    (the cap is being stretched over the limb) gets a new cut the default cap length proximal of
    it; a tip pressed onto its height floor (the limb ends proximal of the cut) gets a new cut
    half that far proximal of it. ``verts_now`` (V'', 3): the current mesh; each new cap takes
    its shape (offsets along the new dome's normals onto the current limb surface). Returns
    (the residual body to go on with, whether it was re-cut)."""
    lengths: list[float | None] = []
    for lb, step in zip(limbs, residual.steps):
        height, floor = float(lb.tip_height), config.min_tip_fraction * lb.radius
        if height > lb.design_height * (1 + 1 / (step.num_rings + 1)):
            lengths.append(cap.height_fraction * lb.radius)
        elif height < 1.5 * floor:
            lengths.append(0.5 * cap.height_fraction * lb.radius)
        else:
            lengths.append(None)
    if all(length is None for length in lengths):
        return residual, False
    with torch.no_grad():
        out = body(params)
    verts_body = out.verts[0].double().cpu().numpy()
    joints = out.joints[0].double().cpu().numpy()
    current = verts_now.detach().double().cpu().numpy()
    specs = []
    for lb, tip_index in zip(limbs, residual.tip_indices):
        a, b = (joints[JOINT_INDEX[n]] for n in lb.joints)
        specs.append(CutSpec(lb.target.limb, lb.target.status, a, b, current[tip_index]))
    try:
        new = cut_and_cap_to_tips(verts=verts_body, faces=body.faces.cpu().numpy(),
                                  vertex_segment=body.vertex_segment.cpu().numpy(), tips=specs, config=cap,
                                  cap_lengths_m=[lb.design_height if length is None else length
                                                 for lb, length in zip(limbs, lengths)])  # fmt: skip
    except ValueError:
        return residual, False  # keep the current cut (its topology is valid)
    # Each new cap takes the current limb's shape: offsets along its normals onto that surface.
    base = torch.as_tensor(verts_body)
    unit = [torch.ones(step.num_rings, len(step.cut.boundary_loop), dtype=torch.float64) for step in new.steps]
    with torch.no_grad():
        normals = (new.replay(base, normal_offsets=unit) - new.replay(base)).numpy()
    for i, (lb, step, ring_ids) in enumerate(zip(limbs, new.steps, _final_cap_ids(new))):
        ring_ids = ring_ids[:-1]  # the tip stays where it is
        limb_faces = residual.faces[residual.limb_masks[i][residual.faces].all(axis=1)]
        offsets = _offsets_onto(new.verts[ring_ids], normals[ring_ids], current, limb_faces)
        loop = step.cut.verts[step.cut.boundary_loop]
        rel = loop - loop.mean(axis=0)
        rho = np.linalg.norm(rel - np.outer(rel @ step.cut.axis, step.cut.axis), axis=1)
        outward = outward_bounds(torch.tensor(step.tip_height), torch.as_tensor(step.profile),
                                 torch.as_tensor(step.heights / step.tip_height), torch.as_tensor(rho),
                                 max_m=config.max_offset_fraction * step.loop_radius).numpy().reshape(-1)  # fmt: skip
        inward = _inward_bounds(step).reshape(-1)
        ratio = np.where(offsets >= 0, offsets / outward, offsets / inward).clip(-0.95, 0.95)
        raw = np.where(offsets >= 0, outward, inward) * np.arctanh(ratio)  # the inverse of bounded_offsets
        lb.raw_offsets = torch.as_tensor(raw.reshape(step.num_rings, -1), dtype=lb.raw_offsets.dtype,
                                         device=lb.raw_offsets.device)  # fmt: skip
        lb.tip_height = torch.tensor(step.tip_height, dtype=lb.tip_height.dtype, device=lb.tip_height.device)
        lb.design_height = step.tip_height
        lb.radius = step.loop_radius
    return new, True


def _offsets_onto(points: np.ndarray, normals: np.ndarray, verts: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """(N,) signed distances along unit ``normals`` (N, 3) from ``points`` (N, 3) to the surface
    (verts, faces), by two closest-point projections."""
    import trimesh

    mesh = trimesh.Trimesh(verts, faces, process=False)
    t = np.zeros(len(points))
    for _ in range(2):
        closest, _, _ = trimesh.proximity.closest_point(mesh, points + t[:, None] * normals)
        t = t + np.sum((closest - (points + t[:, None] * normals)) * normals, axis=1)
    return t
