"""Soft-silhouette refinement of the body and the stump caps (this project's extension).

After RAFO and capping, the body (translation, orientation, pose and, lightly, shape) and each
cap's geometry are refined jointly so that the rendered soft silhouette matches the person
mask. The cap keeps its ring topology, so the mesh stays watertight: each cap is parameterised
by radial offsets of its ring vertices (R x L, metres; smooth through Laplacian regularisers, and
free to become tapered, bulbous or flattened) and a dome height scale (the stump's length beyond
the cut). Terms (each weight a config value; 0 switches a term off):

- ``silhouette``: soft IoU (or BCE / L2) of the full-body soft silhouette against the mask;
- ``stump_silhouette``: the same in a higher-resolution crop around each residual limb;
- ``keypoints``: intact 2D keypoints (pixels / ``keypoint_sigma_px``);
- ``endpoint``: RAFO's term, each cap tip reprojected onto its residual endpoint keypoint;
- ``length``: each residual segment's length |J_t - J_a| stays at its initial value (RAFO's μ term);
- ``pose_prior``, ``shape_prior``, ``transl_prior``: stay near the initial fit;
- ``cap_smooth`` / ``cap_size``: second differences / magnitude of the cap offsets.

With every silhouette weight at 0 the result is the paper's convex cap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, Limb, LimbStatus
from resihmr_dr.fit.intact import intact_targets
from resihmr_dr.render.silhouette import SilhouetteConfig, render_silhouette, silhouette_loss
from resihmr_dr.stump.cap import ResidualBody


@dataclass(frozen=True)
class RefineWeights:
    """Weights of the refinement terms (see the module docstring)."""

    silhouette: float = 1.0
    stump_silhouette: float = 2.0
    keypoints: float = 1.0
    endpoint: float = 1.0
    length: float = 1.0
    pose_prior: float = 1.0
    shape_prior: float = 1.0
    transl_prior: float = 1.0
    cap_smooth: float = 1.0
    cap_size: float = 1.0

    def __post_init__(self) -> None:
        for name, value in self.__dict__.items():
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"RefineWeights.{name} must be finite and >= 0, got {value}")


@dataclass(frozen=True)
class RefineConfig:
    """Settings of the silhouette refinement.

    iterations: Adam steps (0 disables the stage). image_size: long side (px) of the full-body
    render; roi_size: side (px) of each stump crop; roi_margin: crop margin as a fraction of the
    residual limb's 2D extent. loss: "iou", "bce" or "l2". The sigmas scale each term to ~1 at
    a typical error: keypoint_sigma_px (as a fraction of the image's long side), pose_sigma_rad,
    shape_sigma, transl_sigma_m, length_sigma_m, cap_smooth_sigma_m, cap_size_sigma_m.
    max_offset_fraction: ring offsets are bounded to this fraction of the cut's radius.
    """

    weights: RefineWeights = field(default_factory=RefineWeights)
    iterations: int = 40
    image_size: int = 256
    roi_size: int = 128
    roi_margin: float = 0.35
    loss: str = "iou"
    # A sharper sigma than PyTorch3D's 1e-4: at 1e-4 the soft silhouette of a thin limb in a
    # 128 px crop is dilated by ~1 px (IoU 0.76 against the hard mask); at 1e-5 it is 0.92.
    silhouette: SilhouetteConfig = field(default_factory=lambda: SilhouetteConfig(sigma=1e-5))
    keypoint_sigma: float = 0.01
    pose_sigma_rad: float = 0.02
    shape_sigma: float = 0.02
    transl_sigma_m: float = 0.05
    length_sigma_m: float = 0.01
    cap_smooth_sigma_m: float = 0.004
    cap_size_sigma_m: float = 0.03
    max_offset_fraction: float = 0.8
    learning_rate: float = 0.01
    # Moving the body too improves the 2D fit but, seen from one view, drifts the limb in depth
    # (measured on a tapered stump: stump surface error 22 -> 29 mm with the body, -> 18 mm without).
    refine_body: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 0 or self.image_size < 16 or self.roi_size < 16:
            raise ValueError("RefineConfig: iterations >= 0, image_size >= 16 and roi_size >= 16 required")
        silhouette_loss(self.loss)  # raises on an unknown name
        for name in ("keypoint_sigma", "pose_sigma_rad", "shape_sigma", "transl_sigma_m", "length_sigma_m",
                     "cap_smooth_sigma_m", "cap_size_sigma_m", "max_offset_fraction", "learning_rate", "roi_margin"):  # fmt: skip
            if not getattr(self, name) > 0:
                raise ValueError(f"RefineConfig.{name} must be > 0, got {getattr(self, name)}")

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
class RefineResult:
    """params: refined body (B = 1, detached); radial_offsets: per cap (R, L) metres;
    height_scales: per cap dome stretch; verts_cam: (V'', 3) refined capped mesh; history:
    per-term loss values per iteration; lambda_tip: per limb, the cap tip's position along
    J_a -> J_t; seconds: wall time."""

    params: BodyParams
    radial_offsets: tuple[torch.Tensor, ...]
    height_scales: tuple[float, ...]
    verts_cam: np.ndarray
    history: dict[str, list[float]]
    lambda_tip: tuple[float, ...]
    seconds: float


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


def _second_difference(offsets: torch.Tensor) -> torch.Tensor:
    """Mean squared Laplacian of an (R, L) ring-offset grid (circular along L, open across R)."""
    around = offsets.roll(1, dims=1) - 2 * offsets + offsets.roll(-1, dims=1)
    padded = torch.cat([torch.zeros_like(offsets[:1]), offsets], dim=0)  # ring 0 (the cut) is fixed
    across = padded[:-2] - 2 * padded[1:-1] + padded[2:] if len(offsets) > 1 else offsets[:0]
    return around.square().mean() + (across.square().mean() if across.numel() else 0.0)


def refine(
    *,
    body: BodyModel,
    params: BodyParams,
    residual: ResidualBody,
    targets: Sequence[ResidualTarget],
    keypoints_px: np.ndarray,
    camera: PinholeCamera,
    mask: np.ndarray,
    config: RefineConfig = RefineConfig(),
) -> RefineResult:
    """Jointly refine the body and the caps of ``residual`` against ``mask`` (H, W) bool.

    ``residual`` was cut and capped on ``body(params)``'s mesh; ``targets`` are its residual
    limbs in the same order as ``residual.steps``.
    """
    start = time.perf_counter()
    if len(targets) != len(residual.steps):
        raise ValueError(f"need one target per cut: {len(targets)} targets, {len(residual.steps)} cuts")
    if mask.shape != (camera.height, camera.width):
        raise ValueError(f"mask is {mask.shape}, the camera image is {(camera.height, camera.width)}")
    dtype, device = body.dtype, body.device
    kw = dict(dtype=dtype, device=device)
    faces = torch.as_tensor(residual.faces, device=device)
    loss_fn = silhouette_loss(config.loss)
    w = config.weights

    # Full-body render size (long side = image_size) and the matching mask.
    scale = config.image_size / max(camera.width, camera.height)
    full_size = (max(16, round(camera.height * scale)), max(16, round(camera.width * scale)))
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)
    mask_full = _resize_mask(mask_t, full_size).to(dtype)
    rois = stump_rois(verts_cam=residual.verts, limb_masks=residual.limb_masks, camera=camera, margin=config.roi_margin)
    roi_masks = [_resize_mask(mask_t[y0:y1, x0:x1], (config.roi_size, config.roi_size)).to(dtype) for x0, y0, x1, y1 in rois]

    target_np, weights_np = intact_targets(keypoints_px)
    kp_target = torch.as_tensor(target_np, **kw)
    kp_weight = torch.as_tensor(weights_np, **kw)
    kp_sigma = config.keypoint_sigma * max(camera.width, camera.height)
    ends = [(i, torch.as_tensor(t.endpoint_px, **kw)) for i, t in enumerate(targets) if t.endpoint_px is not None]
    seg_names = [_segment_joint_names(t.limb, t.status) for t in targets]

    init = params.detach()
    d_orient = torch.zeros(1, 3, **kw, requires_grad=True)
    d_transl = torch.zeros(1, 3, **kw, requires_grad=True)
    d_pose = torch.zeros_like(init.body_pose, requires_grad=True)
    d_shape = torch.zeros_like(init.shape, requires_grad=True)
    raw_offsets = [torch.zeros(step.num_rings, len(step.cut.boundary_loop), **kw, requires_grad=True) for step in residual.steps]
    log_heights = [torch.zeros((), **kw, requires_grad=True) for _ in residual.steps]
    max_offsets = [config.max_offset_fraction * step.loop_radius for step in residual.steps]
    lr = config.learning_rate
    # Adam steps ~lr in parameter units: rad, metres, phenotype units, metres, log-scale.
    groups = [{"params": raw_offsets, "lr": 0.1 * lr}, {"params": log_heights, "lr": 2.0 * lr}]
    if config.refine_body:
        groups += [{"params": [d_orient], "lr": 0.2 * lr}, {"params": [d_transl], "lr": 0.1 * lr},
                   {"params": [d_pose], "lr": 0.5 * lr}, {"params": [d_shape], "lr": 0.5 * lr}]  # fmt: skip
    optimizer = torch.optim.Adam(groups)

    with torch.no_grad():
        joints0 = body(init).joints[0]
    length0 = [float((joints0[JOINT_INDEX[b]] - joints0[JOINT_INDEX[a]]).norm()) for a, b in seg_names]

    def current():
        p = BodyParams(
            global_orient=init.global_orient + d_orient, body_pose=init.body_pose + d_pose,
            shape=init.shape + d_shape, transl=init.transl + d_transl,
        )  # fmt: skip
        offsets = [m * torch.tanh(r / m) for r, m in zip(raw_offsets, max_offsets)]
        heights = [h.clamp(-2.0, 1.0).exp() for h in log_heights]
        return p, offsets, heights

    history: dict[str, list[float]] = {}
    fixed_body = None
    if not config.refine_body:
        with torch.no_grad():
            fixed_body = body(init)  # the body does not move: evaluate it once
    for _ in range(config.iterations):
        optimizer.zero_grad(set_to_none=True)
        p, offsets, heights = current()
        out = body(p) if fixed_body is None else fixed_body
        verts = residual.replay(out.verts[0], radial_offsets=offsets, height_scales=heights)
        terms: dict[str, torch.Tensor] = {}
        if w.silhouette > 0:
            alpha = render_silhouette(verts_cam=verts[None], faces=faces, camera=camera, image_size=full_size,
                                      config=config.silhouette)[0]  # fmt: skip
            terms["silhouette"] = w.silhouette * loss_fn(alpha, mask_full)
        if w.stump_silhouette > 0:
            roi_losses = []
            for (x0, y0, x1, y1), roi_mask in zip(rois, roi_masks):
                alpha = render_silhouette(verts_cam=verts[None], faces=faces, camera=camera,
                                          image_size=(config.roi_size, config.roi_size),
                                          crop=(x0, y0, x1, y1), config=config.silhouette)[0]  # fmt: skip
                roi_losses.append(loss_fn(alpha, roi_mask))
            terms["stump_silhouette"] = w.stump_silhouette * torch.stack(roi_losses).mean()
        if w.keypoints > 0:
            err = (camera.project(out.coco_kp[0]) - kp_target).square().sum(-1) / kp_sigma**2
            terms["keypoints"] = w.keypoints * (kp_weight * err).sum() / kp_weight.sum().clamp_min(1.0)
        if w.endpoint > 0 and ends:
            tips = [verts[residual.tip_indices[i]] for i, _ in ends]
            errs = [(camera.project(tip) - k).square().sum() / kp_sigma**2 for tip, (_, k) in zip(tips, ends)]
            terms["endpoint"] = w.endpoint * torch.stack(errs).mean()
        if w.length > 0:
            lengths = [(out.joints[0, JOINT_INDEX[b]] - out.joints[0, JOINT_INDEX[a]]).norm() for a, b in seg_names]
            terms["length"] = w.length * torch.stack(
                [((L - L0) / config.length_sigma_m).square() for L, L0 in zip(lengths, length0)]
            ).mean()
        d_all = torch.cat([d_orient[:, None], d_pose], dim=1)  # global orientation counts as a joint
        terms["pose_prior"] = w.pose_prior * (d_all / config.pose_sigma_rad).square().mean()
        terms["shape_prior"] = w.shape_prior * (d_shape / config.shape_sigma).square().mean()
        terms["transl_prior"] = w.transl_prior * (d_transl / config.transl_sigma_m).square().mean()
        terms["cap_smooth"] = w.cap_smooth * torch.stack(
            [_second_difference(o) / config.cap_smooth_sigma_m**2 for o in offsets]
        ).mean()
        terms["cap_size"] = w.cap_size * torch.stack([(o / config.cap_size_sigma_m).square().mean() for o in offsets]).mean()
        total = sum(terms.values())
        if not torch.isfinite(total):
            history.setdefault("aborted", []).append(1.0)
            break
        total.backward()
        optimizer.step()
        for name, value in terms.items():
            history.setdefault(name, []).append(float(value.detach()))
        history.setdefault("total", []).append(float(total.detach()))

    with torch.no_grad():
        p, offsets, heights = current()
        out = body(p)
        verts = residual.replay(out.verts[0], radial_offsets=offsets, height_scales=heights)
        lambda_tip = []
        for i, (a, b) in enumerate(seg_names):
            ja, jt = out.joints[0, JOINT_INDEX[a]], out.joints[0, JOINT_INDEX[b]]
            seg = jt - ja
            lambda_tip.append(float((verts[residual.tip_indices[i]] - ja) @ seg / seg.square().sum()))
    return RefineResult(
        params=p.detach(),
        radial_offsets=tuple(o.detach() for o in offsets),
        height_scales=tuple(float(h) for h in heights),
        verts_cam=verts.detach().cpu().double().numpy(),
        history=history,
        lambda_tip=tuple(lambda_tip),
        seconds=time.perf_counter() - start,
    )


def _segment_joint_names(limb: Limb, status: LimbStatus) -> tuple[str, str]:
    anchor, target = limb.segment_joints(status)
    return KEYPOINT_NAMES[anchor], KEYPOINT_NAMES[target]
