"""The ResiHMR pipeline for one person seen in several images: one body shape, one end per
residual limb and one stump shape, fitted to every image together.

1. each image's intact-body fit on its own (``fit.intact.fit_intact``), then the joint keypoint
   fit of all of them (``fit.intact_views``: one shape; the poses and placements the
   :class:`~resihmr_dr.fit.views.ViewRig` shares);
2. RAFO on each image; each residual limb's λ is the mean of the images' λ (the shape is shared,
   so its segment has one length);
3. the cut and cap on view 0's body, replayed on every other view's body (same vertices, faces
   and residual-limb marking in every view);
4. the joint silhouette refinement of all images (``fit.refine.refine_views``) when every image
   has a mask;
5. per image a ``PersonFit`` whose numbers describe that image's mesh (``fit.pipeline``'s
   measurements); the T-pose mesh and its stump measurements are the same in every view.

A subject of one image is fitted exactly as ``fit_person`` fits it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from resihmr_dr.body.base import BodyModel, BodyOutput, BodyParams, limb_segment_joints, stature_m
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.fit.intact import fit_intact
from resihmr_dr.fit.intact_views import JointIntactResult, fit_intact_views
from resihmr_dr.fit.pipeline import (
    PersonFit,
    PipelineConfig,
    StageClock,
    cut_at,
    fit_person,
    measure_fit,
    rafo_lambdas,
    residual_targets,
    solve_person_rafo,
)
from resihmr_dr.fit.rafo import ResidualLimbInput
from resihmr_dr.fit.refine import RefineView, refine_views
from resihmr_dr.fit.refine_config import RefineConfig
from resihmr_dr.fit.views import ViewRig
from resihmr_dr.stump.cap import ResidualBody
from resihmr_dr.stump.radial import RadialProfile

__all__ = ["SubjectFit", "fit_subject"]


@dataclass(frozen=True)
class SubjectFit:
    """One person fitted from K images: ``views`` one ``PersonFit`` per image (in the subject's
    annotation order; one shape, limb ends and caps), ``rig`` what the images shared, ``joint``
    the joint keypoint fit (None for one image) and the whole fit's wall time."""

    person_id: str | None
    views: tuple[PersonFit, ...]
    rig: ViewRig
    joint: JointIntactResult | None
    seconds: float


def fit_subject(
    *,
    body: BodyModel,
    people: Sequence[PersonAnnotation],
    cameras: Sequence[PinholeCamera],
    masks: Sequence[np.ndarray | None],
    rig: ViewRig,
    inits: Sequence[BodyParams | None] | None = None,
    person_id: str | None = None,
    config: PipelineConfig = PipelineConfig(),
    on_stage: Callable[[str], None] | None = None,
) -> SubjectFit:
    """Fit K annotated images of one person together (module docstring).

    people / cameras / masks / inits: per image its annotation, camera, mask (H, W) bool or None,
    start parameters from another method or None; rig: what the images share
    (``ViewRig.choose``). The refinement runs when every image has a mask. Deterministic like
    ``fit_person`` (torch's RNG seeded with ``config.seed``). Raises FitInputError on unusable
    input.
    """
    num = len(people)
    inits = list(inits) if inits is not None else [None] * num
    if not (len(cameras) == len(masks) == len(inits) == num == rig.num_views):
        raise ValueError(f"need one camera, mask and init per image and a rig of {num} views")
    start = time.perf_counter()
    if num == 1:
        fit = fit_person(
            body=body,
            person=people[0],
            camera=cameras[0],
            mask=masks[0],
            init=inits[0],
            config=config,
            on_stage=on_stage,
        )
        return SubjectFit(person_id, (fit,), rig, None, time.perf_counter() - start)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _fit_views(
            body=body,
            people=people,
            cameras=cameras,
            masks=masks,
            inits=inits,
            rig=rig,
            person_id=person_id,
            config=config,
            clock=StageClock(on_stage),
            start=start,
        )


def _fit_views(
    *,
    body: BodyModel,
    people: Sequence[PersonAnnotation],
    cameras: Sequence[PinholeCamera],
    masks: Sequence[np.ndarray | None],
    inits: Sequence[BodyParams | None],
    rig: ViewRig,
    person_id: str | None,
    config: PipelineConfig,
    clock: StageClock,
    start: float,
) -> SubjectFit:
    keypoints = [np.array(p.keypoints_px, dtype=np.float64) for p in people]
    clock.start("intact")
    intact = [
        fit_intact(body=body, keypoints_px=kp, camera=cam, config=config.intact, init=init)
        for kp, cam, init in zip(keypoints, cameras, inits)
    ]
    joint = fit_intact_views(
        body=body,
        keypoints_px=keypoints,
        cameras=cameras,
        starts=[r.params for r in intact],
        rig=rig,
        config=config.intact,
        iterations=config.views.joint_iterations,
        turn_starts=config.views.turn_starts,
    )
    params = list(joint.params)
    with torch.no_grad():
        posed = [body(p) for p in params]
        tpose = body.tpose(params[0])
    stature = float(stature_m(tpose.verts)[0])
    clock.done("intact")

    clock.start("rafo")
    solved = [
        solve_person_rafo(person=p, keypoints=kp, posed=out, camera=cam, stature=stature, config=config)
        for p, kp, out, cam in zip(people, keypoints, posed, cameras)
    ]
    limb_inputs = solved[0][0]
    rafo = [r for _, r in solved]
    clock.done("rafo")

    residual = None
    refined = None
    normal_offsets = tip_heights = None
    radial: list[RadialProfile] = []
    lambda_views: list[tuple[float, ...]] = [()] * len(people)
    verts_views = [None] * len(people)
    if limb_inputs:
        clock.start("cut_cap")
        lambda_views = [
            rafo_lambdas(
                rafo=r, limb_inputs=inputs, joints_np=out.joints[0].cpu().numpy().astype(np.float64), config=config
            )
            for (inputs, r), out in zip(solved, posed)
        ]
        shared = tuple(float(np.mean(lams)) for lams in zip(*lambda_views))
        residual = cut_at(body=body, posed=posed[0], limb_inputs=limb_inputs, lams=shared, config=config)
        clock.done("cut_cap")
        if config.refine.enabled and all(m is not None for m in masks):
            clock.start("refine")
            views = [
                RefineView(
                    camera=cam,
                    mask=mask,
                    keypoints_px=kp,
                    endpoints_px=tuple(t.endpoint_px for t in residual_targets(limb_inputs, kp)),
                )
                for cam, mask, kp in zip(cameras, masks, keypoints)
            ]
            refined = refine_views(
                body=body,
                params=params,
                residual=residual,
                targets=residual_targets(limb_inputs, keypoints[0]),
                views=views,
                rig=rig,
                stature_m=stature,
                cap=config.cap,
                config=refine_config_for(rig, config),
            )
            residual = refined[0].residual
            normal_offsets = [o.double() for o in refined[0].normal_offsets]
            tip_heights = list(refined[0].tip_heights)
            radial = list(refined[0].radial)
            params = [r.params for r in refined]
            verts_views = [r.verts_cam for r in refined]
            with torch.no_grad():
                posed = [body(p) for p in params]
                tpose = body.tpose(params[0])
            clock.done("refine")
        else:
            with torch.no_grad():
                verts_views = [residual.verts] + [_replay_on(residual, out, limb_inputs) for out in posed[1:]]

    fits = []
    for k, person in enumerate(people):
        view_residual = None if residual is None else dataclasses.replace(residual, verts=verts_views[k])
        fits.append(
            measure_fit(
                body=body,
                person=person,
                camera=cameras[k],
                mask=masks[k],
                config=config,
                intact=intact[k],
                intact_params=joint.params[k],
                params=params[k],
                posed=posed[k],
                tpose=tpose,
                rafo=rafo[k],
                limb_inputs=solved[k][0],
                residual=view_residual,
                lambda_intact=lambda_views[k],
                refined=None if refined is None else refined[k],
                normal_offsets=normal_offsets,
                tip_heights=tip_heights,
                radial=radial,
                clock=clock,
                start=start,
            )
        )
    return SubjectFit(person_id, tuple(fits), rig, joint, time.perf_counter() - start)


def _replay_on(residual: ResidualBody, posed: BodyOutput, limb_inputs: Sequence[ResidualLimbInput]) -> np.ndarray:
    """(V'', 3) the cut and capped mesh on another view's posed body (each cap along that view's
    limb axis)."""
    joints = posed.joints[0]
    axes = []
    for item in limb_inputs:
        a, b = limb_segment_joints(joints, item.limb, item.status)
        axes.append(((b - a) / (b - a).norm()).double())
    verts = residual.replay(posed.verts[0].double(), axes=axes)
    return verts.cpu().numpy()


def refine_config_for(rig: ViewRig, config: PipelineConfig) -> RefineConfig:
    """The refinement's config for ``rig``'s images: ``config.refine``, without the depth anchor
    when the images share one pose and ``fit.views.depth_anchor`` is off."""
    if rig.shares_pose and not config.views.depth_anchor:
        return dataclasses.replace(config.refine, weights=dataclasses.replace(config.refine.weights, depth=0.0))
    return config.refine
