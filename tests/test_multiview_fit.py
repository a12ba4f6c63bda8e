"""Several images of one person: the rigid maps between cameras and the world are exact, the
rig ties the right variables, the joint refinement of identical views is the single-view one, and
a person seen from two sides 90° apart is fitted with one shape, one limb end and one cap, each
image's numbers describing its own mesh."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import roma
import torch
import trimesh
from synthetic_people import CAMERA, FAST_PIPELINE, anny_pose, make_person, stumped_person

from resihmr_dr.body.base import BodyParams, limb_segment_joints
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LimbStatus
from resihmr_dr.data.records import Extrinsics
from resihmr_dr.fit.refine import RefineConfig, RefineView, ResidualTarget, refine, refine_views
from resihmr_dr.fit.subject import fit_subject, refine_config_for
from resihmr_dr.fit.views import ShareMode, ViewRig, ViewsConfig, params_in_camera, params_in_world, to_view
from resihmr_dr.render.zbuffer import rasterize
from resihmr_dr.stump.cap import CutSpec, cut_and_cap_to_tips

LIMB = LIMB_BY_NAME["left_leg"]
STATUS = LimbStatus.TRANSTIBIAL


def _yaw_extrinsics(yaw_deg: float, centre: np.ndarray) -> Extrinsics:
    """A camera turned by ``yaw_deg`` about the vertical axis through ``centre`` (camera 0's frame
    is the world): the person seen from the side, at the same distance."""
    rot = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=torch.float64)).numpy()
    return Extrinsics(R=rot, t=centre - rot @ centre)


def test_rigid_maps_are_exact(tiny_smplx_body):
    body = tiny_smplx_body
    p = body.default_params()
    p = BodyParams(
        global_orient=p.global_orient + 0.1, body_pose=p.body_pose + 0.05, shape=p.shape + 0.3, transl=p.transl
    )
    rot = roma.rotvec_to_rotmat(torch.tensor([0.1, 1.4, -0.2], dtype=torch.float64)).numpy()
    ext = Extrinsics(R=rot, t=np.array([0.5, -0.1, 2.0]))
    with torch.no_grad():
        carried = to_view(body(p), ext)
        in_camera = body(params_in_camera(body, p, ext))
        back = body(params_in_world(body, params_in_camera(body, p, ext), ext))
        direct = body(p)
    for a, b in ((carried, in_camera), (back, direct)):
        assert torch.allclose(a.verts, b.verts, atol=2e-6)
        assert torch.allclose(a.joints, b.joints, atol=2e-6)
        assert torch.allclose(a.coco_kp, b.coco_kp, atol=2e-6)
    assert to_view(direct, None) is direct


def test_rig_ties_the_right_variables():
    ext = [Extrinsics(R=np.eye(3), t=np.zeros(3)), _yaw_extrinsics(90.0, np.array([0.0, 0.0, 3.0]))]
    assert ViewRig.choose(1, extrinsics=ext[:1]).mode is ShareMode.INDEPENDENT  # one image: today's fit
    assert ViewRig.choose(2, extrinsics=ext).mode is ShareMode.CALIBRATED
    assert ViewRig.choose(2, extrinsics=ext, use_extrinsics=False).mode is ShareMode.INDEPENDENT
    assert ViewRig.choose(2, extrinsics=[ext[0], None], same_pose=True).mode is ShareMode.SAME_POSE
    independent, same, calibrated = (
        ViewRig(ShareMode.INDEPENDENT, 3),
        ViewRig(ShareMode.SAME_POSE, 3),
        ViewRig(ShareMode.CALIBRATED, 2, tuple(ext)),
    )
    assert [independent.pose_slot(k) for k in range(3)] == [0, 1, 2] == [independent.place_slot(k) for k in range(3)]
    assert [same.pose_slot(k) for k in range(3)] == [0, 0, 0] and [same.place_slot(k) for k in range(3)] == [0, 1, 2]
    assert (calibrated.num_pose_slots, calibrated.num_place_slots) == (1, 1)
    assert calibrated.view_extrinsics(1) is ext[1] and same.view_extrinsics(1) is None
    with pytest.raises(ValueError, match="one extrinsics per view"):
        ViewRig(ShareMode.CALIBRATED, 2, (ext[0],))
    with pytest.raises(ValueError, match="max_views"):
        ViewsConfig(max_views=-1)


def _two_views(body, *, yaw_deg: float = 90.0):
    """One person with a true tapered stump seen by CAMERA from the front and from ``yaw_deg``
    to the side: per view (annotation, mask, extrinsics), and the truth (params, true tips)."""
    truth = anny_pose(body)
    person0, mask0, gt = stumped_person(body, truth, limb="left_leg", status=STATUS, lam=0.6, shape="tapered", seed=3)
    with torch.no_grad():
        centre = body(truth).joints[0, 0].double().numpy()
    views = []
    for k, ext in enumerate((Extrinsics(R=np.eye(3), t=np.zeros(3)), _yaw_extrinsics(yaw_deg, centre))):
        verts = ext.to_camera(gt.verts)
        mask = rasterize(verts_cam=torch.as_tensor(verts), faces=torch.as_tensor(gt.faces), camera=CAMERA).mask.numpy()
        person, _ = make_person(body, params_in_camera(body, truth, ext), {"left_leg": (STATUS, gt.limbs[0].lam)})
        person = dataclasses.replace(person, ann_id=k + 1, image_id=k + 1, person_id="p1")
        views.append((person, mask, ext, ext.to_camera(gt.limbs[0].endpoint_cam[None])[0]))
    return views, truth


def test_identical_views_refine_as_one(anny_body):
    views, _ = _two_views(anny_body)
    person, mask = views[0][:2]
    keypoints = np.array(person.keypoints_px)
    start = anny_pose(anny_body)
    start = start.replace(shape=start.shape + torch.tensor([[0.0, 0.0, -0.06, -0.08, 0.0, 0.0]]))
    with torch.no_grad():
        out = anny_body(start)
    knee, ankle = (j.double().numpy() for j in limb_segment_joints(out.joints[0], LIMB, STATUS))
    residual = cut_and_cap_to_tips(
        verts=out.verts[0].double().numpy(),
        faces=anny_body.faces.numpy(),
        vertex_segment=anny_body.vertex_segment.numpy(),
        tips=[CutSpec(LIMB, STATUS, knee, ankle, knee + 0.6 * (ankle - knee))],
    )
    endpoint = keypoints[LIMB.endpoint_index(STATUS), :2]
    config = RefineConfig(iterations=6, image_size=96, roi_size=64)
    single = refine(
        body=anny_body,
        params=start,
        residual=residual,
        targets=[ResidualTarget(LIMB, STATUS, endpoint)],
        keypoints_px=keypoints,
        camera=CAMERA,
        mask=mask,
        stature_m=1.7,
        config=config,
    )
    # Two copies of the same image by one calibrated camera: the mean of equal terms is the term.
    same = Extrinsics(R=np.eye(3), t=np.zeros(3))
    view = RefineView(camera=CAMERA, mask=mask, keypoints_px=keypoints, endpoints_px=(endpoint,))
    both = refine_views(
        body=anny_body,
        params=[start, start],
        residual=residual,
        targets=[ResidualTarget(LIMB, STATUS, endpoint)],
        views=[view, view],
        rig=ViewRig(ShareMode.CALIBRATED, 2, (same, same)),
        stature_m=1.7,
        config=config,
    )
    assert len(both) == 2
    for result in both:
        assert (
            np.abs(result.verts_cam - single.verts_cam).max() < 1e-3
        )  # float32 rounding of the world map, through L-BFGS
        assert abs(result.lambda_tip[0] - single.lambda_tip[0]) < 2e-3
    assert np.array_equal(both[0].verts_cam, both[1].verts_cam)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["same_pose", "calibrated"])
def test_two_views_round_trip(anny_body, mode):
    views, truth = _two_views(anny_body)
    rig = ViewRig.choose(2, extrinsics=[v[2] for v in views], same_pose=True, use_extrinsics=mode == "calibrated")
    assert rig.mode.value == mode
    config = dataclasses.replace(FAST_PIPELINE, views=ViewsConfig(joint_iterations=30))
    subject = fit_subject(
        body=anny_body,
        people=[v[0] for v in views],
        cameras=[CAMERA, CAMERA],
        masks=[v[1] for v in views],
        rig=rig,
        person_id="p1",
        config=config,
    )
    first, second = subject.views
    # One body: the same shape, T-pose mesh and stump in both images.
    assert torch.equal(first.params.shape, second.params.shape)
    assert np.array_equal(first.verts_tpose, second.verts_tpose)
    assert np.array_equal(first.faces, second.faces) and np.array_equal(first.residual_mask, second.residual_mask)
    assert first.stump_tpose[0].volume_m3 == second.stump_tpose[0].volume_m3
    assert abs(first.limbs[0].lam - second.limbs[0].lam) < 0.02
    for fit, (_, _, ext, tip_true) in zip(subject.views, views):
        mesh = trimesh.Trimesh(fit.verts_cam, fit.faces, process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent
        state = fit.limbs[0]
        # Every number describes this image's mesh: the tip is its vertex, the joints its body's.
        with torch.no_grad():
            joints = anny_body(fit.params).joints[0].double().numpy()
        anchor, target = limb_segment_joints(joints, LIMB, STATUS)
        assert np.allclose(state.anchor_cam, anchor, atol=1e-6) and np.allclose(state.target_cam, target, atol=1e-6)
        assert np.min(np.linalg.norm(fit.verts_cam - state.tip_cam, axis=1)) < 1e-9
        assert fit.metrics.mask_iou > 0.85
        if mode == "calibrated":
            assert np.linalg.norm(state.tip_cam - tip_true) < 0.08
    if mode == "calibrated":  # one body in the world, seen by both cameras
        world = [v[2] for v in views]
        back0 = (first.verts_cam - world[0].t) @ world[0].R
        back1 = (second.verts_cam - world[1].t) @ world[1].R
        assert np.abs(back0 - back1).max() < 1e-5


def test_same_pose_fit_turns_a_side_view_that_faces_the_wrong_way(anny_body):
    from resihmr_dr.fit.intact_views import fit_intact_views

    views, truth = _two_views(anny_body)
    starts = [truth, params_in_camera(anny_body, truth, views[1][2])]
    # The side view's own fit facing away: its orientation turned 180° about the body's vertical axis.
    turned = roma.rotvec_to_rotmat(starts[1].global_orient) @ roma.rotvec_to_rotmat(torch.tensor([[0.0, math.pi, 0.0]]))
    starts[1] = starts[1].replace(global_orient=roma.rotmat_to_rotvec(turned))
    joint = fit_intact_views(
        body=anny_body,
        keypoints_px=[np.array(v[0].keypoints_px) for v in views],
        cameras=[CAMERA, CAMERA],
        starts=starts,
        rig=ViewRig(ShareMode.SAME_POSE, 2),
        iterations=40,
        turn_starts=True,
    )
    r0, r1 = (roma.rotvec_to_rotmat(p.global_orient[0].double()) for p in joint.params)
    relative = (r1 @ r0.T) @ torch.tensor(views[1][2].R.copy()).T  # the fitted camera turn against the true one
    assert math.degrees(float(roma.rotmat_to_rotvec(relative).norm())) < 10.0
    assert max(joint.keypoint_error_px) < 5.0


def test_depth_anchor_is_dropped_only_for_a_shared_pose_when_asked():
    from resihmr_dr.fit.pipeline import PipelineConfig

    ext = Extrinsics(R=np.eye(3), t=np.zeros(3))
    rigs = {
        "one image": ViewRig(ShareMode.INDEPENDENT, 1),
        "independent": ViewRig(ShareMode.INDEPENDENT, 2),
        "same pose": ViewRig(ShareMode.SAME_POSE, 2),
        "calibrated": ViewRig(ShareMode.CALIBRATED, 2, (ext, ext)),
    }
    for anchor in (True, False):
        config = PipelineConfig(views=ViewsConfig(depth_anchor=anchor))
        for name, rig in rigs.items():
            got = refine_config_for(rig, config)
            dropped = not anchor and name in ("same pose", "calibrated")
            assert got.weights.depth == (0.0 if dropped else config.refine.weights.depth), (anchor, name)
            assert dataclasses.replace(got, weights=config.refine.weights) == config.refine  # nothing else
