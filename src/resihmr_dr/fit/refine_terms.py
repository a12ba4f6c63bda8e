"""The terms of the silhouette refinement (:mod:`resihmr_dr.fit.refine`), as pure functions and
one per-image record: the stump windows, the bounds of the cap's offsets, the per-image terms
(:class:`ViewTerms`: silhouettes, distance-transform contour, keypoints, endpoints), the body's
priors (RAFO's anchor and length terms, the anthropometric prior, the depth anchor) and the
caps' regularisers relative to the convex cap. Frames: camera frame (metres); pixels ``_px``."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from resihmr_dr.body.base import JOINT_INDEX, BodyOutput, limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.fit.intact_problem import intact_targets
from resihmr_dr.fit.refine_config import RefineConfig, RefineWeights
from resihmr_dr.render.distance import (
    chamfer_to_points,
    mask_contour_px,
    mask_distance_maps,
    nearest_distances,
    sample_map,
)
from resihmr_dr.render.silhouette import render_silhouette, silhouette_loss
from resihmr_dr.render.zbuffer import nearest_faces, silhouette_edge_vertices

__all__ = [
    "ViewTerms",
    "body_terms",
    "bounded_offsets",
    "cap_terms",
    "inward_bounds",
    "loop_rho",
    "outward_bounds",
    "soft_floor",
    "stump_rois",
]


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


class ViewTerms:
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
        scale = min(config.image_size, max(camera.width, camera.height)) / max(camera.width, camera.height)
        self.full_size = (max(16, round(camera.height * scale)), max(16, round(camera.width * scale)))
        self.full_scale = (self.full_size[1] / camera.width, self.full_size[0] / camera.height)  # (x, y)
        self.mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32), device=device)
        self.mask_full = _resize_mask(self.mask_t, self.full_size).to(dtype)
        self.contour_px = mask_contour_px(np.asarray(mask, bool), device=device, dtype=dtype)  # (N, 2) image px
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
        # Each window's part of the mask's contour (found once, on the whole mask, in __init__).
        x, y = self.contour_px[:, 0], self.contour_px[:, 1]
        self.roi_contours = [
            self.contour_px[(x >= x0) & (x < x1) & (y >= y0) & (y < y1)].to(self.mask_full)
            for x0, y0, x1, y1 in self.rois
        ]
        self.limb_vertices = [torch.as_tensor(np.flatnonzero(m), device=self.mask_t.device) for m in limb_masks]
        xy = self.camera.project(torch.as_tensor(verts_cam)).numpy()
        pad = 2 * cfg.contour_hinge_px + 2
        self.roi_vertices = [
            torch.as_tensor(
                np.flatnonzero(
                    (xy[:, 0] > x0 - pad) & (xy[:, 0] < x1 + pad) & (xy[:, 1] > y0 - pad) & (xy[:, 1] < y1 + pad)
                ),
                device=self.mask_t.device,
            )
            for x0, y0, x1, y1 in self.rois
        ]

    def terms(
        self,
        *,
        verts: torch.Tensor,
        faces: torch.Tensor,
        body: BodyOutput,
        tips: Sequence[torch.Tensor],
        weights: RefineWeights,
    ) -> dict[str, torch.Tensor]:
        """Per-image terms of the mesh ``verts`` (V'', 3) / ``faces``, the posed body (B = 1) and
        each limb's tip (3,)."""
        cfg, cam, w = self.config, self.camera, weights
        out: dict[str, torch.Tensor] = {}
        if w.silhouette > 0:
            alpha = render_silhouette(
                verts_cam=verts[None], faces=faces, camera=cam, image_size=self.full_size, config=cfg.silhouette
            )[0]
            out["silhouette"] = w.silhouette * self.loss_fn(alpha, self.mask_full) / cfg.iou_sigma
        if w.stump_silhouette > 0 and self.rois:
            losses = []
            for roi, roi_mask in zip(self.rois, self.roi_masks):
                alpha = render_silhouette(
                    verts_cam=verts[None],
                    faces=faces,
                    camera=cam,
                    image_size=(cfg.roi_size, cfg.roi_size),
                    crop=roi,
                    config=cfg.stump_silhouette,
                )[0]
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
        if w.fill > 0 and len(self.contour_px):
            out["fill"] = w.fill * self.fill_term(verts=verts, faces=faces)
        if w.keypoints > 0:
            err = (cam.project(body.coco_kp[0]) - self.kp_target).square().sum(-1) / self.kp_sigma**2
            out["keypoints"] = w.keypoints * (self.kp_weight * err).sum() / self.kp_weight.sum().clamp_min(1.0)
        pairs = [(tip, k) for tip, k in zip(tips, self.endpoints) if k is not None]
        if w.endpoint > 0 and pairs:
            errs = [(cam.project(tip) - k).square().sum() / self.kp_sigma**2 for tip, k in pairs]
            out["endpoint"] = w.endpoint * torch.stack(errs).mean()
        return out

    def fill_term(self, *, verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """The mask's contour pixels that the mesh's hard silhouette does not cover pull the nearest
        vertex on the silhouette's edge out to them: the sum of ``(max(d - hinge, 0) / sigma)^2``
        over those pixels divided by the number of contour pixels (0 when the mesh covers the
        whole contour). The counterpart of the contour term's pull inwards, for the whole body."""
        cfg = self.config
        with torch.no_grad():
            face_index = nearest_faces(verts_cam=verts.detach(), faces=faces, camera=self.camera)
            cx, cy = self.contour_px[:, 0].long(), self.contour_px[:, 1].long()
            uncovered = self.contour_px[face_index[cy, cx] < 0]
            edge_ids = silhouette_edge_vertices(face_index, faces)
        if len(uncovered) == 0 or len(edge_ids) == 0:
            return verts.sum() * 0.0
        xy = self.camera.project(verts[edge_ids])
        gap = nearest_distances(uncovered, xy, hinge_px=cfg.contour_hinge_px) / cfg.contour_sigma_px
        return gap.square().sum() / len(self.contour_px)


def loop_rho(step) -> np.ndarray:
    """(L,) each loop vertex's distance (metres) from a cap's axis through the loop's centroid."""
    loop = step.cut.verts[step.cut.boundary_loop]
    rel = loop - loop.mean(axis=0)
    return np.linalg.norm(rel - np.outer(rel @ step.cut.axis, step.cut.axis), axis=1)


def inward_bounds(step) -> np.ndarray:
    """(R, L) how far (metres) each ring vertex of a cap may move inwards: 60 % of its distance
    from the axis (at least 5 % of the cut's radius), so that no ring crosses the axis."""
    ring_rho = step.profile[:, None] * loop_rho(step)[None, :]
    return np.maximum(0.6 * ring_rho, 0.05 * step.loop_radius)


def _weighted(weights: RefineWeights, per_limb: dict[str, list[torch.Tensor]]) -> dict[str, torch.Tensor]:
    """``{name: weight * mean over the limbs}`` for the terms whose weight is > 0."""
    return {
        name: getattr(weights, name) * torch.stack(values).mean()
        for name, values in per_limb.items()
        if getattr(weights, name) > 0
    }


def body_terms(*, out: BodyOutput, limbs, anchor0, length0, rel_depth0, u_pose, u_shape, scales, config) -> dict:
    """RAFO's anchor and length terms, the anthropometric prior, the depth anchor, the priors."""
    w = config.weights
    joints = out.joints[0]
    pelvis = joints[JOINT_INDEX["pelvis"]]
    terms = {}
    anchor, length, anthro = [], [], []
    for lb, a0, l0 in zip(limbs, anchor0, length0):
        a, b = limb_segment_joints(joints, lb.target.limb, lb.target.status)
        anchor.append(((a - pelvis) - a0).square().sum() / config.anchor_sigma_m**2)
        seg = (b - a).norm()
        length.append(((seg - l0) / config.length_sigma_m).square())
        anthro.append(((seg - lb.expected_length_m) / (config.anthro_sigma_frac * lb.expected_length_m)).square())
    terms.update(_weighted(w, {"anchor": anchor, "length": length, "anthro": anthro}))
    if w.depth > 0:
        rel_depth = joints[:, 2] - pelvis[2]
        terms["depth"] = w.depth * ((rel_depth - rel_depth0) / config.depth_sigma_m).square().mean()
    if w.pose_prior > 0:
        terms["pose_prior"] = w.pose_prior * (scales["pose"] * u_pose / config.pose_sigma_rad).square().sum()
    if w.shape_prior > 0:
        terms["shape_prior"] = w.shape_prior * (scales["shape"] * u_shape / config.shape_sigma).square().sum()
    return terms


def cap_terms(*, verts, offsets, state, axes, heights, config, verts_body, radial) -> dict:
    """The caps' mesh regularisers relative to the convex cap on the same ring, their size, and
    the residual segments' radius profiles' size. verts_body: (V, 3) the body the cut is
    replayed on (radius profiles applied; the convex cap sits on its rings); radial: per limb its
    (K,) profile coefficients."""
    w = config.weights
    with torch.no_grad():
        convex = state.residual.replay(
            verts_body.detach(), tip_heights=[h.detach() for h in heights], axes=[a.detach() for a in axes]
        )
    lap, normal, edge, size = [], [], [], []
    for topo, o in zip(state.cap_topology, offsets):
        # The uniform Laplacian is linear: that of the offsets from the convex cap.
        lap.append((topo.laplacian(verts - convex) / config.cap_laplacian_sigma_m).square())
        normal.append(
            (topo.pair_cosines(verts) - topo.pair_cosines(convex)).square().mean() / config.cap_normal_sigma**2
        )
        edge.append((topo.edge_lengths(verts) - topo.edge_lengths(convex)).square().mean() / config.cap_edge_sigma_m**2)
        size.append((o / config.cap_size_sigma_m).square().mean())
    terms = _weighted(w, {"cap_laplacian": lap, "cap_normal": normal, "cap_edge": edge, "cap_size": size})
    if w.radial > 0 and radial and len(radial[0]):
        terms["radial"] = w.radial * torch.stack([(c / config.radial_sigma).square().mean() for c in radial]).mean()
    return terms
