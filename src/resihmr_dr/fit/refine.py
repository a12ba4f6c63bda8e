"""Joint silhouette refinement of the body, each residual limb's end and its cap (this project's
extension).

After RAFO and capping, one converged optimisation (L-BFGS with a strong-Wolfe line search, in
scaled units, under :class:`~resihmr_dr.fit.monitor.ConvergenceMonitor`'s stopping rules) fits
the capped body to the person mask, in two stages:

1. **body**: shape, pose, global orientation and translation, and each residual limb's end,
   against the whole mask (and the stump windows), the intact keypoints and the endpoint
   keypoints; the cap keeps its convex shape;
2. **stump**: each residual limb's end, its cap's per-vertex offsets along the dome's normal and
   its residual segment's radius profile (:mod:`~resihmr_dr.stump.radial`: the girth between the
   anchor joint and the cut, e.g. an atrophied shank) against the stump windows, the contour,
   fill and endpoint terms and the regularisers, with the body fixed (so the whole-body
   silhouette and keypoint terms are constant and skipped).

Each residual limb's end is a variable: the cap's tip height beyond its cut ring, i.e. λ_r (the
tip's fraction along J_a -> J_t, reported). When a tip moves distally more than a ring spacing
beyond the cap's design height (the dome is being stretched over the limb), or down onto its
height floor (the limb ends proximal of the cut), the limbs are cut again with the cut ring the
cap's length proximal of the tip, and the stump stage runs again from the current shape (the new
cap's offsets are set so that it lies on the current limb surface); at most ``max_recuts``
times. The cap's topology never changes within a stage, so the mesh is watertight and
winding-consistent at every iteration.

Terms (dimensionless; each ``weight * (error / sigma)^2`` or a soft IoU mismatch; a weight of 0
switches a term off):

- ``silhouette`` / ``stump_silhouette``: ``(1 - soft IoU) / iou_sigma`` of the whole body /
  each stump window (higher resolution) against the mask;
- ``contour``: the mask's distance transform (``render.distance``): every projected vertex
  outside the mask is pulled in by its distance to the mask, and every mask contour pixel of a
  stump window pulls the nearest projected vertex out to it, so gradients reach beyond the soft
  rasteriser's blur; ``fill``: the same pull outwards for the whole body: every mask contour
  pixel the mesh's hard silhouette does not cover pulls the nearest vertex of the silhouette's
  edge out to it;
- ``keypoints``: the intact 2D keypoints; ``endpoint``: each cap *tip* reprojected onto its
  residual endpoint keypoint (RAFO's reprojection term);
- ``anchor`` (RAFO's α): each anchor joint J_a stays near its start, relative to the pelvis;
  ``length`` (RAFO's μ): |J_t - J_a| stays at its start; ``anthro``: the anthropometric prior on
  |J_t - J_a| for the person's stature;
- ``depth``: the depth anchor. One view cannot see depth, and a silhouette can be matched by
  swinging a limb towards or away from the camera; every joint's depth relative to the pelvis
  stays near that of the keypoint fit (``depth_sigma_m``). ``RefineResult.depth_drift_m``
  reports the largest change. Images that share one pose see each other's depths:
  ``fit.subject`` turns the anchor off for them unless ``fit.views.depth_anchor`` is set;
- ``pose_prior`` / ``shape_prior``: stay near the start;
- ``cap_laplacian``, ``cap_normal``, ``cap_edge``: the cap's mesh regularisers
  (:mod:`~resihmr_dr.fit.mesh_losses`, PyTorch3D's ``mesh_laplacian_smoothing`` (uniform),
  ``mesh_normal_consistency`` and ``mesh_edge_loss`` quantities) taken *relative to the convex
  cap* on the same ring, so that they are at their minimum on the paper's cap and a mask weight
  trades shape against them; ``cap_size``: the offsets' magnitude; ``radial``: the radius
  profiles' magnitude (``radial_sigma``, a relative change).

Several images of one person: the per-image terms live in :class:`~resihmr_dr.fit.refine_terms.ViewTerms`; shape, the
limbs' ends and the caps are shared variables, orientation, translation and pose per-image ones.
With every silhouette weight at 0 the stage does not run and the result is the paper's cap.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX, BodyModel, BodyOutput, BodyParams, limb_segment_joints
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import Limb, LimbStatus
from resihmr_dr.fit.anthropometry import expected_segment_length_m
from resihmr_dr.fit.mesh_losses import part_topology
from resihmr_dr.fit.monitor import MonitorConfig, StageOutcome, minimize_lbfgs
from resihmr_dr.fit.refine_config import RefineConfig, RefineWeights
from resihmr_dr.fit.refine_terms import (
    ViewTerms,
    body_terms,
    bounded_offsets,
    cap_terms,
    inward_bounds,
    loop_rho,
    outward_bounds,
    soft_floor,
)
from resihmr_dr.fit.views import ShareMode, ViewRig, to_view
from resihmr_dr.stump.cap import CapConfig, CutSpec, ResidualBody, cut_and_cap_to_tips
from resihmr_dr.stump.radial import RadialProfile, apply_radial_profiles

# RefineConfig and RefineWeights live in refine_config; they are this module's settings.
__all__ = [
    "RefineConfig",
    "RefineResult",
    "RefineView",
    "RefineWeights",
    "ResidualTarget",
    "StageRecord",
    "refine",
    "refine_views",
]


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
        return {
            "name": o.name,
            "iterations": o.iterations,
            "evaluations": o.evaluations,
            "stop_reason": o.reason.value,
            "message": o.message,
            "converged": o.reason.converged,
            "seconds": o.seconds,
            "loss_first": o.losses[0] if o.losses else None,
            "loss_last": o.final_loss,
            "terms_first": self.terms_first,
            "terms_last": self.terms_last,
        }


@dataclass(frozen=True)
class RefineResult:
    """params: the refined body (B = 1, detached); residual: the cut and capped body the result
    lives on (re-cut where a tip moved); normal_offsets: per cap (R, L) offsets along the dome's
    normal, metres; tip_heights: per cap, the tip's height beyond its cut ring, metres;
    radial: per limb, its residual segment's radius profile (:mod:`~resihmr_dr.stump.radial`;
    applied to the body's vertices before the cut is replayed); verts_cam: (V'', 3) the refined
    capped mesh; lambda_tip: per limb, the tip's fraction along
    the refined body's J_a -> J_t; stages: per stage, its record; history: per objective
    evaluation, the stage's index, the total and every term; recuts: how many times limbs were cut again; depth_drift_m:
    the largest change of a joint's depth relative to the pelvis; seconds: wall time."""

    params: BodyParams
    residual: ResidualBody
    normal_offsets: tuple[torch.Tensor, ...]
    tip_heights: tuple[float, ...]
    radial: tuple[RadialProfile, ...]
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


# ------------------------------------------------------------------------------- the fit


@dataclass
class _Limb:
    """One residual limb's state across stages: its cap's current offsets and
    tip height (both raw, metres: before the bounds and the height floor of the mesh are applied),
    the tip height the current cut was made for, and its residual segment's radius profile
    (``radial.coefficients``: the current values)."""

    target: ResidualTarget
    raw_offsets: torch.Tensor
    tip_height: torch.Tensor
    design_height: float
    radius: float
    expected_length_m: float
    radial: RadialProfile


@dataclass(frozen=True)
class RefineView:
    """One image of the person as the refinement sees it: its camera, its person mask (H, W)
    bool, its LDpose keypoints (25, 3) and, per residual limb (in the cuts' order), its endpoint
    keypoint (2,) px or None where unlabelled."""

    camera: PinholeCamera
    mask: np.ndarray
    keypoints_px: np.ndarray
    endpoints_px: tuple[np.ndarray | None, ...]


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
    objective evaluation. One image of :func:`refine_views`.
    """
    view = RefineView(
        camera=camera, mask=mask, keypoints_px=keypoints_px, endpoints_px=tuple(t.endpoint_px for t in targets)
    )
    return refine_views(
        body=body,
        params=[params],
        residual=residual,
        targets=targets,
        views=[view],
        rig=ViewRig(ShareMode.INDEPENDENT, 1),
        stature_m=stature_m,
        cap=cap,
        config=config,
        callback=callback,
    )[0]


def refine_views(
    *,
    body: BodyModel,
    params: Sequence[BodyParams],
    residual: ResidualBody,
    targets: Sequence[ResidualTarget],
    views: Sequence[RefineView],
    rig: ViewRig,
    stature_m: float,
    cap: CapConfig = CapConfig(),
    config: RefineConfig = RefineConfig(),
    callback: Callable[[str, torch.Tensor, np.ndarray], None] | None = None,
) -> tuple[RefineResult, ...]:
    """Refine K images of one person together: one shape, one end and one cap per residual limb,
    the poses and placements ``rig`` shares (``fit.views``), against every image's terms.

    ``params``: per view, the body in that view's camera frame; ``residual`` was cut and capped on
    view 0's mesh (its topology holds for every view: the cut is replayed on each view's body);
    ``targets``: the residual limbs (their ``endpoint_px`` are unused: each view has its own);
    the objective is the mean over the views of their per-image terms and body priors, plus the
    caps' regularisers once (on view 0). Returns one result per view (each view's body, mesh,
    λ and depth drift; the shared cap, stages and history). ``callback`` sees view 0's mesh.
    """
    start = time.perf_counter()
    num_views = rig.num_views
    if len(params) != num_views or len(views) != num_views:
        raise ValueError(
            f"need one body and one view per image: {len(params)} bodies, {len(views)} views, {num_views} images"
        )
    if len(targets) != len(residual.steps):
        raise ValueError(f"need one target per cut: {len(targets)} targets, {len(residual.steps)} cuts")
    dtype, device = body.dtype, body.device
    kw = dict(dtype=dtype, device=device)
    w = config.weights
    view_terms = [
        ViewTerms(
            camera=v.camera,
            mask=np.asarray(v.mask),
            keypoints_px=v.keypoints_px,
            endpoints_px=list(v.endpoints_px),
            config=config,
            dtype=dtype,
            device=device,
        )
        for v in views
    ]
    extrinsics = [rig.view_extrinsics(k) for k in range(num_views)]

    # The variables' start: each pose / placement slot from the first view that uses it (world
    # frame when calibrated), one shape.
    starts = rig.in_world(body, [p.detach() for p in params])
    init_pose = [starts[k] for k in rig.pose_slot_starts]
    init_place = [starts[k] for k in rig.place_slot_starts]
    init_shape = starts[0].shape
    pelvis = JOINT_INDEX["pelvis"]
    with torch.no_grad():
        bodies0 = [body(p.detach()) for p in params]
    rel_depth0 = [b.joints[0][:, 2] - b.joints[0][pelvis, 2] for b in bodies0]
    j0 = bodies0[0].joints[0]
    limbs = []
    segment_labels = body.vertex_segment.cpu().numpy()
    for step, target, tip_index in zip(residual.steps, targets, residual.tip_indices):
        expected = expected_segment_length_m(target.limb.residual_segment(target.status), body_height_m=stature_m)
        a, b = (j.double().cpu().numpy() for j in limb_segment_joints(j0, target.limb, target.status))
        seg = b - a
        tip = np.asarray(residual.verts[tip_index], dtype=np.float64)
        length = float(np.linalg.norm(seg))
        cut_fraction = max(((tip - a) @ seg / length - step.tip_height) / length, 0.05)
        ids = np.flatnonzero(segment_labels == SEGMENT_INDEX[target.limb.residual_segment(target.status)])
        radial = RadialProfile(
            vertex_ids=ids,
            limb=target.limb,
            status=target.status,
            cut_fraction=cut_fraction,
            coefficients=torch.zeros(config.radial_knots, **kw),
        )
        limbs.append(
            _Limb(
                target=target,
                raw_offsets=torch.zeros(step.num_rings, len(step.cut.boundary_loop), **kw),
                tip_height=torch.tensor(step.tip_height, **kw),
                design_height=step.tip_height,
                radius=step.loop_radius,
                expected_length_m=expected,
                radial=radial,
            )
        )
    anchor0, length0 = [], []
    for out0 in bodies0:
        joints0 = out0.joints[0]
        segments0 = [limb_segment_joints(joints0, lb.target.limb, lb.target.status) for lb in limbs]
        anchor0.append([a - joints0[pelvis] for a, _ in segments0])
        length0.append([float((b - a).norm()) for a, b in segments0])

    # Optimised in scaled units (L-BFGS is then well conditioned): value = start + scale * u.
    # Translation and orientation move the whole silhouette: their steps are the smallest of the
    # body's (0.05 for both took ~20 % more iterations to the same loss on 4 synthetic people).
    scales = {
        "orient": 0.02,
        "transl": 0.01,
        "pose": 0.05,
        "shape": 0.05,
        "tip": 0.005,
        "offset": 0.003,
        "radial": 0.02,
    }
    u_orient = [torch.zeros(1, 3, **kw) for _ in init_place]
    u_transl = [torch.zeros(1, 3, **kw) for _ in init_place]
    u_pose = [torch.zeros_like(p.body_pose) for p in init_pose]
    u_shape = torch.zeros_like(init_shape)
    history: list[dict[str, float]] = []
    stages: list[StageRecord] = []

    def current_params(k: int) -> BodyParams:
        """View ``k``'s body (world frame when calibrated: ``view_body`` places it)."""
        p, q = rig.pose_slot(k), rig.place_slot(k)
        return BodyParams(
            global_orient=init_place[q].global_orient + scales["orient"] * u_orient[q],
            body_pose=init_pose[p].body_pose + scales["pose"] * u_pose[p],
            shape=init_shape + scales["shape"] * u_shape,
            transl=init_place[q].transl + scales["transl"] * u_transl[q],
        )

    def view_bodies() -> list[BodyOutput]:
        """Every view's posed body in its camera frame (one body evaluation per distinct slot pair)."""
        done: dict[tuple[int, int], BodyOutput] = {}
        outs = []
        for k in range(num_views):
            key = (rig.pose_slot(k), rig.place_slot(k))
            if key not in done:
                done[key] = body(current_params(k))
            outs.append(to_view(done[key], extrinsics[k]))
        return outs

    def radial_coefficients(state: _Stage) -> list[torch.Tensor]:
        return [lb.radial.coefficients + scales["radial"] * u for lb, u in zip(limbs, state.u_radial)]

    def body_verts(out: BodyOutput, state: _Stage) -> torch.Tensor:
        """(V, 3) the posed body with the residual segments' radius profiles applied."""
        if not state.cap_free and not any(bool(lb.radial.coefficients.any()) for lb in limbs):
            return out.verts[0]  # the body stage, before any profile was fitted: nothing to add
        return apply_radial_profiles(
            out.verts[0],
            out.joints[0],
            [lb.radial for lb in limbs],
            coefficients=radial_coefficients(state),
        )

    def mesh(state: _Stage, fixed_bodies: list[BodyOutput] | None):
        """Per view: the posed body, the capped mesh (V'', 3), each cap's axis and the body's
        vertices with the radius profiles; and the caps' offsets and tip heights (shared)."""
        outs = view_bodies() if fixed_bodies is None else fixed_bodies
        offsets, heights = [], []
        for lb, u_tip, u_off, inward, shape in zip(
            limbs, state.u_tips, state.u_offsets, state.inward, state.ring_shape
        ):
            height = soft_floor(
                lb.tip_height + scales["tip"] * u_tip, config.min_tip_fraction * lb.radius, softness=0.1 * lb.radius
            )
            heights.append(height)
            raw = lb.raw_offsets + scales["offset"] * u_off
            outward = outward_bounds(height, *shape, max_m=config.max_offset_fraction * lb.radius)
            offsets.append(bounded_offsets(raw, inward_m=inward, outward_m=outward))
        per_view = []
        for out in outs:
            joints = out.joints[0]
            axes = []
            for lb in limbs:
                a, b = limb_segment_joints(joints, lb.target.limb, lb.target.status)
                axes.append((b - a) / (b - a).norm())
            moved = body_verts(out, state)
            verts = state.residual.replay(moved, normal_offsets=offsets, tip_heights=heights, axes=axes)
            per_view.append(_ViewMesh(out=out, verts=verts, axes=axes, verts_body=moved))
        return per_view, offsets, heights

    def evaluate(
        state: _Stage, fixed_bodies: list[BodyOutput] | None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
        per_view, offsets, heights = mesh(state, fixed_bodies)
        # With the body fixed only the caps move, and the stump windows see them: the whole-body
        # silhouette and keypoint terms are constant then and are not evaluated.
        weights = w if state.body_free else dataclasses.replace(w, silhouette=0.0, keypoints=0.0)
        view_dicts = []
        for k, (vm, terms_k) in enumerate(zip(per_view, view_terms)):
            tips = [vm.verts[i] for i in state.residual.tip_indices]
            terms = terms_k.terms(verts=vm.verts, faces=state.faces, body=vm.out, tips=tips, weights=weights)
            # Body priors (RAFO's alpha and mu, the anthropometric prior, the depth anchor).
            if state.body_free:
                terms.update(
                    body_terms(
                        out=vm.out,
                        limbs=limbs,
                        anchor0=anchor0[k],
                        length0=length0[k],
                        rel_depth0=rel_depth0[k],
                        u_pose=u_pose[rig.pose_slot(k)],
                        u_shape=u_shape,
                        scales=scales,
                        config=config,
                    )
                )
            view_dicts.append(terms)
        terms = view_dicts[0] if num_views == 1 else _mean_terms(view_dicts)
        if state.cap_free:
            terms.update(
                cap_terms(
                    verts=per_view[0].verts,
                    offsets=offsets,
                    state=state,
                    axes=per_view[0].axes,
                    heights=heights,
                    config=config,
                    verts_body=per_view[0].verts_body,
                    radial=radial_coefficients(state),
                )
            )
        return sum(terms.values()), terms, per_view[0].verts

    def run_stage(name: str, state: _Stage) -> None:
        fixed = None
        if not state.body_free:
            with torch.no_grad():
                fixed = view_bodies()
        free = list(state.u_tips) + (list(state.u_offsets) + state.u_radial if state.cap_free else [])
        if state.body_free:
            free += [*u_orient, *u_transl, *u_pose, u_shape]
        for t in free:
            t.requires_grad_(True)

        def objective() -> torch.Tensor:
            total, terms, verts = evaluate(state, fixed)
            if callback is not None:
                callback(name, verts.detach(), state.residual.faces)
            history.append(
                {"stage": float(len(stages)), "total": float(total.detach())}
                | {k: float(v.detach()) for k, v in terms.items()}
            )
            return total

        with torch.no_grad():
            for vm, terms_k in zip(mesh(state, fixed)[0], view_terms):
                terms_k.set_windows(verts_cam=vm.verts.cpu().double().numpy(), limb_masks=state.residual.limb_masks)
            first = evaluate(state, fixed)[1]
        outcome = minimize_lbfgs(
            name=name,
            params=free,
            objective=objective,
            monitor=MonitorConfig(max_iters=config.iterations, ftol=config.ftol, gtol=config.gtol, min_iters=3),
        )
        for t in free:
            t.requires_grad_(False)
        with torch.no_grad():
            last = evaluate(state, fixed)[1]
        stages.append(
            StageRecord(
                outcome=outcome,
                terms_first={k: float(v) for k, v in first.items()},
                terms_last={k: float(v) for k, v in last.items()},
            )
        )
        # Fold the stage's steps into the limbs' state.
        with torch.no_grad():
            for lb, u_tip, u_off, coeffs in zip(limbs, state.u_tips, state.u_offsets, radial_coefficients(state)):
                lb.tip_height = lb.tip_height + scales["tip"] * u_tip  # unfloored: the floor applies in mesh()
                lb.raw_offsets = lb.raw_offsets + scales["offset"] * u_off
                lb.radial = dataclasses.replace(lb.radial, coefficients=coeffs.detach().clone())
                u_tip.zero_()
                u_off.zero_()
            for u in state.u_radial:
                u.zero_()

    recuts = 0
    state = _Stage.build(residual, limbs, body_free=config.refine_body, cap_free=False, kw=kw)
    if config.refine_body:
        run_stage("body", state)
    for attempt in range(config.max_recuts + 1):
        state = _Stage.build(residual, limbs, body_free=False, cap_free=True, kw=kw)
        run_stage("stump" if attempt == 0 else f"stump (re-cut {attempt})", state)
        if attempt == config.max_recuts:
            break
        with torch.no_grad():
            posed_now = view_bodies()
            view0 = mesh(state, posed_now)[0][0]
        residual, changed = _recut_moved(
            body=body,
            posed=posed_now[0],
            verts_body=view0.verts_body,
            residual=residual,
            limbs=limbs,
            cap=cap,
            verts_now=view0.verts,
            config=config,
        )
        if not changed:
            break
        recuts += 1

    results = []
    with torch.no_grad():
        state = _Stage.build(residual, limbs, body_free=False, cap_free=True, kw=kw)
        per_view, offsets, heights = mesh(state, view_bodies())
        for k, vm in enumerate(per_view):
            joints = vm.out.joints[0]
            lambda_tip = []
            for lb, tip_index in zip(limbs, residual.tip_indices):
                a, b = limb_segment_joints(joints, lb.target.limb, lb.target.status)
                seg = b - a
                lambda_tip.append(float((vm.verts[tip_index] - a) @ seg / seg.square().sum()))
            rel_depth = joints[:, 2] - joints[pelvis, 2]
            p = rig.in_camera(body, current_params(k), k)
            results.append(
                RefineResult(
                    params=p.detach(),
                    residual=residual,
                    normal_offsets=tuple(o.detach() for o in offsets),
                    tip_heights=tuple(float(h) for h in heights),
                    radial=tuple(lb.radial for lb in limbs),
                    verts_cam=vm.verts.detach().cpu().double().numpy(),
                    lambda_tip=tuple(lambda_tip),
                    stages=tuple(stages),
                    history=history,
                    recuts=recuts,
                    depth_drift_m=float((rel_depth - rel_depth0[k]).abs().max()),
                    seconds=time.perf_counter() - start,
                )
            )
    return tuple(results)


@dataclass(frozen=True)
class _ViewMesh:
    """One view's mesh at one evaluation: its posed body, the capped mesh (V'', 3), each cap's
    axis and the body's vertices with the radius profiles (V, 3)."""

    out: BodyOutput
    verts: torch.Tensor
    axes: list[torch.Tensor]
    verts_body: torch.Tensor


def _mean_terms(per_view: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Each term's sum over the views divided by their number (a term a view lacks counts 0)."""
    names = list(dict.fromkeys(name for terms in per_view for name in terms))
    return {name: sum(terms[name] for terms in per_view if name in terms) / len(per_view) for name in names}


@dataclass
class _Stage:
    """What one stage optimises on: the cut body, its faces, each cap's scaled variables and
    regulariser topology, and which variable groups are free."""

    residual: ResidualBody
    faces: torch.Tensor
    u_tips: list[torch.Tensor]
    u_offsets: list[torch.Tensor]
    u_radial: list[torch.Tensor]
    inward: list[torch.Tensor]
    ring_shape: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    cap_topology: list
    body_free: bool
    cap_free: bool

    @staticmethod
    def build(residual: ResidualBody, limbs: Sequence[_Limb], *, body_free: bool, cap_free: bool, kw: dict) -> "_Stage":
        faces = torch.as_tensor(residual.faces, device=kw["device"])
        inward, topo, shapes = [], [], []
        for step, cap_ids in zip(residual.steps, _final_cap_ids(residual)):
            inward.append(torch.as_tensor(inward_bounds(step), **kw))
            shapes.append(
                (
                    torch.as_tensor(step.profile, **kw),
                    torch.as_tensor(step.heights / step.tip_height, **kw),
                    torch.as_tensor(loop_rho(step), **kw),
                )
            )
            cap_faces = np.flatnonzero(np.isin(residual.faces, cap_ids).any(axis=1))
            topo.append(part_topology(residual.faces, vertex_ids=cap_ids, face_ids=cap_faces))
        return _Stage(
            residual=residual,
            faces=faces,
            u_tips=[torch.zeros((), **kw) for _ in limbs],
            u_offsets=[torch.zeros_like(lb.raw_offsets) for lb in limbs],
            u_radial=[torch.zeros_like(lb.radial.coefficients) for lb in limbs],
            inward=inward,
            ring_shape=shapes,
            cap_topology=topo,
            body_free=body_free,
            cap_free=cap_free,
        )


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


def _recut_moved(
    *,
    body: BodyModel,
    posed: BodyOutput,
    verts_body: torch.Tensor,
    residual: ResidualBody,
    limbs: Sequence[_Limb],
    cap: CapConfig,
    verts_now: torch.Tensor,
    config: RefineConfig,
) -> tuple[ResidualBody, bool]:
    """Cut the limbs again on the current body where the cut no longer suits the tip: a tip that
    moved distally more than a ring spacing beyond the cap's design height (the cap is being
    stretched over the limb) gets a new cut the default cap length proximal of
    it; a tip pressed onto its height floor (the limb ends proximal of the cut) gets a new cut
    half that far proximal of it. ``posed``: the current body; ``verts_body`` (V, 3): its
    vertices with the radius profiles applied (the new cuts are made on them); ``verts_now``
    (V'', 3): the current mesh; each new cap takes
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
    verts_body = verts_body.detach().double().cpu().numpy()
    joints = posed.joints[0].double().cpu().numpy()
    current = verts_now.detach().double().cpu().numpy()
    specs = []
    for lb, tip_index in zip(limbs, residual.tip_indices):
        a, b = limb_segment_joints(joints, lb.target.limb, lb.target.status)
        specs.append(CutSpec(lb.target.limb, lb.target.status, a, b, current[tip_index]))
    try:
        new = cut_and_cap_to_tips(
            verts=verts_body,
            faces=body.faces.cpu().numpy(),
            vertex_segment=body.vertex_segment.cpu().numpy(),
            tips=specs,
            config=cap,
            cap_lengths_m=[lb.design_height if length is None else length for lb, length in zip(limbs, lengths)],
        )
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
        outward = (
            outward_bounds(
                torch.tensor(step.tip_height),
                torch.as_tensor(step.profile),
                torch.as_tensor(step.heights / step.tip_height),
                torch.as_tensor(loop_rho(step)),
                max_m=config.max_offset_fraction * step.loop_radius,
            )
            .numpy()
            .reshape(-1)
        )
        inward = inward_bounds(step).reshape(-1)
        ratio = np.where(offsets >= 0, offsets / outward, offsets / inward).clip(-0.95, 0.95)
        raw = np.where(offsets >= 0, outward, inward) * np.arctanh(ratio)  # the inverse of bounded_offsets
        lb.raw_offsets = torch.as_tensor(
            raw.reshape(step.num_rings, -1), dtype=lb.raw_offsets.dtype, device=lb.raw_offsets.device
        )
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
