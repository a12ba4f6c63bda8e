"""Synthetic people with known residual limbs, for round-trip tests of the pipeline."""

from __future__ import annotations

import math

import numpy as np
import roma
import torch

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LIMB_BY_NAME, NUM_KEYPOINTS, LimbStatus
from resihmr_dr.data.records import PersonAnnotation
from resihmr_dr.data.status import derive_limb_status
from resihmr_dr.fit.intact_config import IntactFitConfig, StageWeights
from resihmr_dr.fit.pipeline import PipelineConfig
from resihmr_dr.fit.refine import RefineConfig

# A short pipeline for tests that fit whole synthetic people (two stages, one start, a few
# refinement steps at low resolution): seconds per person instead of ~12 s.
FAST_PIPELINE = PipelineConfig(
    intact=IntactFitConfig(
        stages=(
            StageWeights(pose_prior=404.0, shape_prior=100.0, angle_limit=300.0, iterations=8),
            StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, iterations=15),
        ),
        camera_yaw_starts_deg=(0.0,),
    ),
    refine=RefineConfig(iterations=4, image_size=96, roi_size=64),
)

CAMERA = PinholeCamera(fx=1200.0, fy=1200.0, cx=320.0, cy=400.0, width=640, height=800)


def anny_pose(body: BodyModel, *, yaw_deg: float = 15.0) -> BodyParams:
    """A natural pose: arms lowered a little forward, one knee bent, 3.2 m from the camera."""
    params = body.default_params(1, depth_m=3.2)
    pose = torch.zeros_like(params.body_pose)
    names = body.pose_joint_names
    pose[0, names.index("upperarm01.R")] = torch.tensor([0.2, 0.0, -0.3])
    pose[0, names.index("lowerarm01.R")] = torch.tensor([-0.5, 0.0, 0.0])
    pose[0, names.index("lowerarm01.L")] = torch.tensor([-0.3, 0.0, 0.0])
    pose[0, names.index("upperleg01.L")] = torch.tensor([-0.25, 0.0, 0.05])
    pose[0, names.index("lowerleg01.L")] = torch.tensor([0.35, 0.0, 0.0])
    turn = roma.rotvec_to_rotmat(torch.tensor([[0.0, math.radians(yaw_deg), 0.0]]))
    orient = roma.rotmat_to_rotvec(roma.rotvec_to_rotmat(params.global_orient) @ turn)
    shape = torch.tensor([[0.4, 0.5, 0.5, 0.45, 0.6, 0.5]])
    return BodyParams(global_orient=orient, body_pose=pose, shape=shape, transl=torch.tensor([[0.0, 0.1, 3.2]]))


def make_person(
    body: BodyModel, params: BodyParams, residual: dict[str, tuple[LimbStatus, float]], *, ann_id: int = 1
) -> tuple[PersonAnnotation, dict[str, np.ndarray]]:
    """Keypoints of ``params`` seen by CAMERA with the given residual limbs (limb -> (status, λ)).

    Returns the annotation and, per residual limb, the true endpoint in the camera frame.
    """
    with torch.no_grad():
        out = body(params)
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:17, :2] = CAMERA.project(out.coco_kp[0]).numpy()
    kp[:17, 2] = 2
    truth = {}
    for name, (status, lam) in residual.items():
        limb = LIMB_BY_NAME[name]
        anchor_kp, target_kp = limb.segment_joints(status)
        from resihmr_dr.data.ldpose import KEYPOINT_NAMES

        anchor = out.joints[0, JOINT_INDEX[KEYPOINT_NAMES[anchor_kp]]]
        target = out.joints[0, JOINT_INDEX[KEYPOINT_NAMES[target_kp]]]
        endpoint = anchor + lam * (target - anchor)
        truth[name] = endpoint.numpy()
        # The replaced joint and everything distal are absent.
        absent = (limb.middle, limb.distal) if status is limb.above_status else (limb.distal,)
        kp[list(absent), 2] = 0
        kp[list(absent), :2] = 0
        kp[limb.endpoint_index(status)] = [*CAMERA.project(endpoint).numpy(), 2]
    kp.setflags(write=False)
    person = PersonAnnotation(ann_id=ann_id, image_id=1, keypoints_px=kp, limb_status=derive_limb_status(kp))
    return person, truth


def stumped_person(
    body: BodyModel, params: BodyParams, *, limb: str, status: LimbStatus, lam: float, shape: str, seed: int
):
    """A person with a true stump: ``params``' mesh cut at ``lam`` and capped with the stump
    ``shape`` by the benchmark's generator, its mask seen by CAMERA, and the annotation whose
    endpoint keypoint is the true tip. Returns (person, mask (H, W) bool, the stumped mesh)."""
    from resihmr_dr.eval.stump_shapes import sample_stump_shape
    from resihmr_dr.eval.synth import ResidualSpec, make_stumped_mesh
    from resihmr_dr.render.zbuffer import rasterize

    with torch.no_grad():
        out = body(params)
    spec = ResidualSpec(
        f"{LIMB_BY_NAME[limb].side.value}_{status.value}", lam, sample_stump_shape(shape, np.random.default_rng(seed))
    )
    gt = make_stumped_mesh(
        verts_cam=out.verts[0].double().numpy(),
        faces=body.faces.numpy(),
        vertex_segment=body.vertex_segment.numpy(),
        joints_cam=out.joints[0].double().numpy(),
        residuals=[spec],
    )
    mask = rasterize(verts_cam=torch.as_tensor(gt.verts), faces=torch.as_tensor(gt.faces), camera=CAMERA).mask.numpy()
    person, _ = make_person(body, params, {limb: (status, gt.limbs[0].lam)})
    return person, mask, gt
