"""The ResiHMR pipeline for one person: intact fit -> RAFO -> cut and cap -> measurements.

Pure orchestration: every stage lives in its own module; this one wires them and returns a
``PersonFit`` (writing files is ``resihmr_dr.outputs``'s job).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from resihmr_dr.body.base import (
    JOINT_INDEX,
    JOINT_NAMES,
    BodyModel,
    BodyOutput,
    BodyParams,
    limb_segment_joints,
    stature_m,
)
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.init_fit import InitialFit
from resihmr_dr.data.ldpose import Limb, LimbStatus
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.fit.fit_metrics import FitMetrics, RefinementMetrics
from resihmr_dr.fit.intact import IntactFitResult, fit_intact
from resihmr_dr.fit.intact_config import IntactFitConfig
from resihmr_dr.fit.intact_problem import FitInputError
from resihmr_dr.fit.measures import keypoint_mpjpe_px, mask_iou, predicted_keypoints_px
from resihmr_dr.fit.quality import QualityConfig, check_quality
from resihmr_dr.fit.rafo import RafoConfig, RafoResult, ResidualLimbInput, inputs_from_joints, solve_rafo
from resihmr_dr.fit.refine import RefineConfig, RefineResult, ResidualTarget, refine
from resihmr_dr.fit.views import ViewsConfig
from resihmr_dr.mesh_export import colored_trimesh, export_vertices, pytorch3d_meshes
from resihmr_dr.render.zbuffer import rasterize
from resihmr_dr.stump.cap import CapConfig, ResidualBody, cut_and_cap_to_tips, cut_spec
from resihmr_dr.stump.geometry import StumpGeometry, residual_length, stump_geometry
from resihmr_dr.stump.radial import RadialProfile, apply_radial_profiles


@dataclass(frozen=True)
class PipelineConfig:
    """Settings of every stage (``configs/default.yaml``'s ``fit`` section)."""

    intact: IntactFitConfig = field(default_factory=IntactFitConfig)
    rafo: RafoConfig = field(default_factory=RafoConfig)
    cap: CapConfig = field(default_factory=CapConfig)
    num_stations: int = 10  # cross-section stations along each residual limb
    quality: QualityConfig = field(default_factory=QualityConfig)  # non-convergence checks
    refine: RefineConfig = field(default_factory=RefineConfig)  # silhouette refinement (needs a mask)
    views: ViewsConfig = field(default_factory=ViewsConfig)  # several images of one person (fit.subject)
    seed: int = 0  # torch's RNG is seeded with it for each person (restored afterwards)


@dataclass(frozen=True)
class LimbState:
    """One residual limb as the written mesh has it (camera frame, metres): J_a and J_t of the
    fitted body, the cap's tip (the residual endpoint) and λ, the tip's fraction along
    J_a -> J_t; ``rafo``: RAFO's own answer (its endpoint and possibly moved anchor), kept for
    reference."""

    limb: Limb
    status: LimbStatus
    anchor_cam: np.ndarray
    target_cam: np.ndarray
    tip_cam: np.ndarray
    lam: float
    rafo: RafoResult


@dataclass(frozen=True)
class StageSeconds:
    """Wall-clock seconds of one person's fit, per stage: the intact-body fit, RAFO, cutting and
    capping, the silhouette refinement (0 where it did not run) and the measurements (stump
    geometry, T-pose, metrics, quality checks)."""

    intact: float = 0.0
    rafo: float = 0.0
    cut_cap: float = 0.0
    refine: float = 0.0
    measure: float = 0.0

    @property
    def total(self) -> float:
        """The sum of the stages' seconds."""
        return self.intact + self.rafo + self.cut_cap + self.refine + self.measure


class StageClock:
    """Marks the end of each stage of one fit and reports progress (``on_stage(name)`` when a
    stage starts, if given)."""

    def __init__(self, on_stage: Callable[[str], None] | None):
        self.on_stage = on_stage
        self.last = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def start(self, name: str) -> None:
        """Stage ``name`` starts (tells ``on_stage``)."""
        if self.on_stage is not None:
            self.on_stage(name)

    def done(self, name: str) -> None:
        """Stage ``name`` ended: its seconds since the last mark are added to it."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now

    def record(self) -> StageSeconds:
        """The seconds per stage so far."""
        return StageSeconds(**self.seconds)


@dataclass(frozen=True)
class PersonFit:
    """Everything fitted for one person (camera frame: OpenCV, metres).

    verts_cam: (V', 3) posed mesh after cutting and capping (the intact mesh if no residual
    limb; refined against the mask when ``config.refine`` is enabled and a mask is given);
    faces: (F', 3); residual_mask: (V',) bool m_r. verts_tpose: (V', 3) the same mesh in the
    T-pose (model frame; the posed cut replayed, so faces_tpose == faces and
    residual_mask_tpose == residual_mask); pred_keypoints_px: (25, 2) the fit's LDpose keypoints
    (residual endpoints: the caps' tips); metrics: the Table-1 metrics and the quality verdict
    (``fit.fit_metrics.FitMetrics``); stump / stump_tpose: per residual limb measurements in the
    pose and the T-pose. params: the final body (refined where the refinement ran);
    intact_params: the intact-body fit it started from; lambda_intact: per residual limb, RAFO's
    λ on the intact fit's segment (where the first cut was made); limbs: per residual limb, its
    joints, tip and λ on the written mesh.
    """

    ann_id: int
    image_id: int
    body_name: str
    camera: PinholeCamera
    params: BodyParams
    intact: IntactFitResult
    rafo: tuple[RafoResult, ...]
    intact_params: BodyParams
    lambda_intact: tuple[float, ...]
    limbs: tuple[LimbState, ...]
    verts_cam: np.ndarray
    verts_tpose: np.ndarray
    faces: np.ndarray
    residual_mask: np.ndarray
    faces_tpose: np.ndarray
    residual_mask_tpose: np.ndarray
    keypoints_px: np.ndarray  # (25, 3) the annotation's [x, y, v]
    pred_keypoints_px: np.ndarray
    stump: tuple[StumpGeometry, ...]
    stump_tpose: tuple[StumpGeometry, ...]
    metrics: FitMetrics
    root_model: np.ndarray  # (3,) root joint in the model frame (undoes the global transform)
    refinement: RefineResult | None  # the silhouette refinement, None where it did not run
    seconds: float
    stage_seconds: StageSeconds = StageSeconds()
    config: PipelineConfig | None = None  # the settings it was fitted with (provenance of its folder)
    body_gender: str | None = None  # the body model's gender (BodyModel.gender): SMPL-X's file; None for Anny

    def to_trimesh(self, *, tpose: bool = False, frame: str | None = None, units: str = "m"):
        """The posed mesh (camera frame) or, ``tpose``, the T-pose mesh (model frame) as a coloured
        ``trimesh.Trimesh`` (residual limbs red); ``frame`` ("camera", "y-up") and ``units`` ("m",
        "mm") convert it (``resihmr_dr.mesh_export.export_vertices``)."""

        verts = export_vertices(
            self.verts_tpose if tpose else self.verts_cam,
            tpose=tpose,
            frame=frame,
            units=units,
            global_orient=self.params.global_orient[0].detach().cpu().double().numpy(),
            transl=self.params.transl[0].detach().cpu().double().numpy(),
            root_model=self.root_model,
        )
        return colored_trimesh(verts, self.faces, self.residual_mask)

    def to_pytorch3d(self, *, tpose: bool = False, device: str | torch.device = "cpu"):
        """The posed (camera frame) or T-pose (model frame) mesh as a ``pytorch3d.structures.Meshes``
        (metres, vertex colours); ImportError saying how to install PyTorch3D without it."""

        return pytorch3d_meshes(
            self.verts_tpose if tpose else self.verts_cam, self.faces, self.residual_mask, device=device
        )

    def __repr__(self) -> str:
        limbs = ", ".join(f"{s.limb.name} {s.status.value} λ={s.lam:.2f}" for s in self.limbs) or "no residual limb"
        iou = self.metrics.mask_iou
        return (
            f"PersonFit(ann_id={self.ann_id}, image_id={self.image_id}, body={self.body_name!r}, {limbs}, "
            f"keypoint error {self.metrics.body_px:.1f} px"
            + (f", mask IoU {iou:.3f}" if iou is not None else "")
            + f", {len(self.verts_cam)} vertices, {self.seconds:.1f} s)"
        )


def params_from_initial_fit(body: BodyModel, init: InitialFit) -> BodyParams:
    """BodyParams from another method's fit; its parameter counts must match ``body``'s."""
    pose = np.asarray(init.body_pose, dtype=np.float64).reshape(-1, 3)
    if pose.shape[0] != body.num_pose_joints:
        raise FitInputError(
            f"{init.path}: body_pose has {pose.shape[0]} joints but the {body.name} body model has "
            f"{body.num_pose_joints}; initial fits must come from the same body model (use --body smplx "
            "for SMPL-X fits)"
        )
    betas = np.zeros(body.num_shape)
    n = min(body.num_shape, len(init.betas))
    betas[:n] = np.asarray(init.betas)[:n]
    kw = dict(device=body.device, dtype=body.dtype)
    return BodyParams(
        global_orient=torch.as_tensor(np.asarray(init.global_orient), **kw).reshape(1, 3),
        body_pose=torch.as_tensor(pose, **kw)[None],
        shape=torch.as_tensor(betas, **kw)[None],
        transl=torch.as_tensor(np.asarray(init.transl), **kw).reshape(1, 3),
    )


def fit_person(
    *,
    body: BodyModel,
    person: PersonAnnotation,
    camera: PinholeCamera,
    mask: np.ndarray | None = None,
    init: BodyParams | None = None,
    config: PipelineConfig = PipelineConfig(),
    on_stage: Callable[[str], None] | None = None,
) -> PersonFit:
    """Run the ResiHMR stages for one annotated person.

    mask: (H, W) bool person mask (for the IoU metric), or None. init: start parameters from
    another method (skips the SMPLify-X-style stages). on_stage(name), if given, is called as
    each stage starts ("intact", "rafo", "cut_cap", "refine", "measure"), e.g. for a progress bar.
    Raises FitInputError on unusable input.

    Deterministic: torch's global RNG is seeded with ``config.seed`` for the fit and restored
    afterwards, so the same inputs, config and seed give the same outputs on the same machine.
    ``metrics.quality`` says whether the fit converged (see ``resihmr_dr.fit.quality``).
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        return _fit_person(
            body=body, person=person, camera=camera, mask=mask, init=init, config=config, clock=StageClock(on_stage)
        )


def _fit_person(
    *,
    body: BodyModel,
    person: PersonAnnotation,
    camera: PinholeCamera,
    mask: np.ndarray | None,
    init: BodyParams | None,
    config: PipelineConfig,
    clock: StageClock,
) -> PersonFit:
    start = time.perf_counter()
    keypoints = np.array(person.keypoints_px, dtype=np.float64)  # a writable copy
    clock.start("intact")
    intact = fit_intact(body=body, keypoints_px=keypoints, camera=camera, config=config.intact, init=init)
    params = intact.params
    with torch.no_grad():
        posed = body(params)
        tpose = body.tpose(params)
    stature = float(stature_m(tpose.verts)[0])
    clock.done("intact")

    clock.start("rafo")
    limb_inputs, rafo = solve_person_rafo(
        person=person, keypoints=keypoints, posed=posed, camera=camera, stature=stature, config=config
    )
    clock.done("rafo")

    lambda_intact: tuple[float, ...] = ()
    refined: RefineResult | None = None
    residual: ResidualBody | None = None
    normal_offsets = tip_heights = None
    radial: list[RadialProfile] = []
    if rafo:
        clock.start("cut_cap")
        # RAFO may move the anchor joint; the mesh keeps the fitted body's joints, so the
        # endpoint is taken at RAFO's λ along the mesh's own segment (the refinement then poses
        # the limb onto the endpoint keypoint), and the cap's tip is placed there.
        joints_np = posed.joints[0].cpu().numpy().astype(np.float64)
        lambda_intact = rafo_lambdas(rafo=rafo, limb_inputs=limb_inputs, joints_np=joints_np, config=config)
        residual = cut_at(body=body, posed=posed, limb_inputs=limb_inputs, lams=lambda_intact, config=config)
        clock.done("cut_cap")
        if mask is not None and config.refine.enabled:
            clock.start("refine")
            refined = refine(
                body=body,
                params=params,
                residual=residual,
                targets=residual_targets(limb_inputs, keypoints),
                keypoints_px=keypoints,
                camera=camera,
                mask=mask,
                stature_m=stature,
                cap=config.cap,
                config=config.refine,
            )
            residual = dataclasses.replace(refined.residual, verts=refined.verts_cam)
            normal_offsets = [o.double() for o in refined.normal_offsets]
            tip_heights = list(refined.tip_heights)
            radial = list(refined.radial)
            params = refined.params
            with torch.no_grad():
                posed = body(params)
                tpose = body.tpose(params)
            clock.done("refine")

    return measure_fit(
        body=body,
        person=person,
        camera=camera,
        mask=mask,
        config=config,
        intact=intact,
        intact_params=intact.params,
        params=params,
        posed=posed,
        tpose=tpose,
        rafo=rafo,
        limb_inputs=limb_inputs,
        residual=residual,
        lambda_intact=lambda_intact,
        refined=refined,
        normal_offsets=normal_offsets,
        tip_heights=tip_heights,
        radial=radial,
        clock=clock,
        start=start,
    )


def measure_fit(
    *,
    body: BodyModel,
    person: PersonAnnotation,
    camera: PinholeCamera,
    mask: np.ndarray | None,
    config: PipelineConfig,
    intact: IntactFitResult,
    intact_params: BodyParams,
    params: BodyParams,
    posed: BodyOutput,
    tpose: BodyOutput,
    rafo: tuple[RafoResult, ...],
    limb_inputs: Sequence[ResidualLimbInput],
    residual: ResidualBody | None,
    lambda_intact: tuple[float, ...],
    refined: RefineResult | None,
    normal_offsets: Sequence[torch.Tensor] | None,
    tip_heights: Sequence[float] | None,
    radial: Sequence[RadialProfile],
    clock: StageClock,
    start: float,
) -> PersonFit:
    """The written mesh's numbers (limbs, stump geometry, T-pose, keypoints, metrics, quality) as
    a ``PersonFit``. ``residual``: the cut and capped body with this image's vertices (None
    without a residual limb); ``posed`` / ``tpose``: ``body(params)`` and its T-pose."""
    keypoints = np.array(person.keypoints_px, dtype=np.float64)
    faces = body.faces.cpu().numpy()
    verts_cam = posed.verts[0].cpu().numpy().astype(np.float64)
    residual_mask = np.zeros(len(verts_cam), dtype=bool)
    stump: tuple[StumpGeometry, ...] = ()
    stump_tpose: tuple[StumpGeometry, ...] = ()
    limbs: list[LimbState] = []
    if residual is not None:
        clock.start("measure")
        verts_cam, faces, residual_mask = residual.verts, residual.faces, residual.residual_mask
        # Every number describes the written mesh: its joints, its tips.
        final_joints = posed.joints[0].double().cpu().numpy()
        for item, result, tip_index in zip(limb_inputs, rafo, residual.tip_indices):
            anchor, target = limb_segment_joints(final_joints, item.limb, item.status)
            tip = verts_cam[tip_index]
            limbs.append(
                LimbState(
                    limb=item.limb,
                    status=item.status,
                    anchor_cam=anchor,
                    target_cam=target,
                    tip_cam=tip,
                    lam=residual_length(anchor, target, tip)[1],
                    rafo=result,
                )
            )
        stump = tuple(
            stump_geometry(
                verts=verts_cam,
                faces=faces,
                residual_mask=limb_mask,
                anchor=s.anchor_cam,
                target=s.target_cam,
                tip=s.tip_cam,
                num_stations=config.num_stations,
                limb_name=s.limb.name,
                status=s.status.value,
            )
            for s, limb_mask in zip(limbs, residual.limb_masks)
        )

    # The T-pose: the posed cut replayed on the T-pose body (same vertices and faces, so m_r
    # holds for both), each cap rebuilt along its T-pose limb axis with the refined cap shape.
    verts_tpose = tpose.verts[0].double()
    if residual is not None:
        tpose_joints = tpose.joints[0].double().cpu().numpy()
        segments = [limb_segment_joints(tpose_joints, item.limb, item.status) for item in limb_inputs]
        with torch.no_grad():
            verts_tpose = apply_radial_profiles(verts_tpose, tpose.joints[0].double(), radial)
            verts_tpose = residual.replay(
                verts_tpose,
                normal_offsets=normal_offsets,
                tip_heights=tip_heights,
                axes=[torch.as_tensor(target - anchor) for anchor, target in segments],
            )
        verts_tpose_np = verts_tpose.cpu().numpy()
        stump_tpose = tuple(
            stump_geometry(
                verts=verts_tpose_np,
                faces=faces,
                residual_mask=limb_mask,
                anchor=anchor,
                target=target,
                tip=verts_tpose_np[tip],
                num_stations=config.num_stations,
                limb_name=item.limb.name,
                status=item.status.value,
            )
            for item, (anchor, target), limb_mask, tip in zip(
                limb_inputs, segments, residual.limb_masks, residual.tip_indices
            )
        )
    verts_tpose = verts_tpose.cpu().numpy()
    faces_tpose, residual_mask_tpose = faces, residual_mask
    # The root joint in the model frame: the global transform maps it to root + transl.
    root_model = (posed.joints[0, JOINT_INDEX["pelvis"]] - params.transl[0]).double().cpu().numpy()

    # Endpoints of intact limbs have no prediction (0); they are unlabelled in the annotation too.
    pred_kp = predicted_keypoints_px(
        camera=camera,
        coco_cam=posed.coco_kp[0].double().cpu().numpy(),
        endpoints_cam={s.limb.endpoint_index(s.status): s.tip_cam for s in limbs},
    )
    errors_px = keypoint_mpjpe_px(pred_px=pred_kp, gt_px=keypoints)
    iou = None
    if mask is not None:
        rendered = rasterize(verts_cam=torch.as_tensor(verts_cam), faces=torch.as_tensor(faces), camera=camera).mask
        iou = mask_iou(rendered.numpy(), mask)
    metrics = FitMetrics(
        body_px=errors_px["body"],
        res_limb_px=errors_px["res_limb"],
        intact_px=errors_px["intact"],
        mask_iou=iou,
        intact_fit_converged=bool(intact.converged),
        rafo_accepted=tuple(bool(r.accepted) for r in rafo),
        refinement=RefinementMetrics.of(refined) if refined is not None else None,
        quality=check_quality(
            keypoints_px=keypoints,
            pred_keypoints_px=pred_kp,
            losses=intact.stage_losses,
            params={k: np.asarray(v, dtype=np.float64) for k, v in params.to_dict().items()},
            meshes={"posed mesh": (verts_cam, faces), "T-pose mesh": (verts_tpose, faces_tpose)},
            config=config.quality,
        ),
    )
    clock.done("measure")
    return PersonFit(
        ann_id=person.ann_id,
        image_id=person.image_id,
        body_name=body.name,
        camera=camera,
        params=params,
        intact=intact,
        rafo=rafo,
        intact_params=intact_params,
        lambda_intact=lambda_intact,
        limbs=tuple(limbs),
        verts_cam=np.asarray(verts_cam, dtype=np.float64),
        verts_tpose=np.asarray(verts_tpose, dtype=np.float64),
        faces=np.asarray(faces, dtype=np.int64),
        residual_mask=residual_mask,
        faces_tpose=np.asarray(faces_tpose, dtype=np.int64),
        residual_mask_tpose=residual_mask_tpose,
        keypoints_px=keypoints,
        pred_keypoints_px=pred_kp,
        stump=stump,
        stump_tpose=stump_tpose,
        metrics=metrics,
        root_model=root_model,
        refinement=refined,
        seconds=time.perf_counter() - start,
        stage_seconds=clock.record(),
        config=config,
        body_gender=body.gender,
    )


def solve_person_rafo(
    *,
    person: PersonAnnotation,
    keypoints: np.ndarray,
    posed: BodyOutput,
    camera: PinholeCamera,
    stature: float,
    config: PipelineConfig,
) -> tuple[list[ResidualLimbInput], tuple[RafoResult, ...]]:
    """(RAFO's inputs, its results) for the residual limbs of ``person`` on the posed body."""
    limb_inputs = inputs_from_joints(
        joints_cam=posed.joints[0].double(),
        joint_names=JOINT_NAMES,
        keypoints_px=torch.as_tensor(keypoints),
        status=dict(person.limb_status),
    )
    if not limb_inputs:
        return limb_inputs, ()
    return limb_inputs, tuple(solve_rafo(limb_inputs, camera=camera, body_height_m=stature, config=config.rafo))


def rafo_lambdas(
    *,
    rafo: Sequence[RafoResult],
    limb_inputs: Sequence[ResidualLimbInput],
    joints_np: np.ndarray,
    config: PipelineConfig,
) -> tuple[float, ...]:
    """Per residual limb, RAFO's λ on the mesh's own segment (the point nearest its endpoint)."""
    lams = []
    for result, item in zip(rafo, limb_inputs):
        anchor, target = limb_segment_joints(joints_np, item.limb, item.status)
        lams.append(
            _lambda_on_segment(
                endpoint=result.endpoint_cam.detach().cpu().numpy(),
                anchor=anchor,
                target=target,
                lam_min=config.rafo.lam_min,
                lam_max=config.rafo.lam_max,
            )
        )
    return tuple(lams)


def cut_at(
    *,
    body: BodyModel,
    posed: BodyOutput,
    limb_inputs: Sequence[ResidualLimbInput],
    lams: Sequence[float],
    config: PipelineConfig,
) -> ResidualBody:
    """The posed body cut and capped with each residual limb's tip at its λ."""
    joints_np = posed.joints[0].cpu().numpy().astype(np.float64)
    specs = [cut_spec(joints=joints_np, limb=i.limb, status=i.status, lam=lam) for i, lam in zip(limb_inputs, lams)]
    return cut_and_cap_to_tips(
        verts=posed.verts[0].cpu().numpy().astype(np.float64),
        faces=body.faces.cpu().numpy(),
        vertex_segment=body.vertex_segment.cpu().numpy(),
        tips=specs,
        config=config.cap,
    )


def residual_targets(limb_inputs: Sequence[ResidualLimbInput], keypoints: np.ndarray) -> list[ResidualTarget]:
    """The residual limbs with their endpoint keypoints (None where unlabelled)."""
    return [
        ResidualTarget(item.limb, item.status, _labelled_xy(keypoints, item.limb.endpoint_index(item.status)))
        for item in limb_inputs
    ]


def _labelled_xy(keypoints_px: np.ndarray, index: int) -> np.ndarray | None:
    """(2,) pixel position of keypoint ``index`` if labelled (v > 0), else None."""
    return keypoints_px[index, :2].copy() if keypoints_px[index, 2] > 0 else None


def _lambda_on_segment(*, endpoint, anchor, target, lam_min: float, lam_max: float) -> float:
    """λ of the point of the mesh's segment nearest RAFO's endpoint (RAFO may move the anchor)."""
    seg = target - anchor
    lam = float(np.dot(endpoint - anchor, seg) / max(float(np.dot(seg, seg)), 1e-12))
    return float(np.clip(lam, lam_min, lam_max))
