"""Silhouette refinement: on generated people whose true stump is not a convex dome (tapered,
bulbous), refining the cap against the mask improves the stump-region IoU and the stump
surface distance over the paper's convex cap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh

from resihmr_dr.body.base import JOINT_INDEX
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LimbStatus
from resihmr_dr.eval.stump_shapes import sample_stump_shape
from resihmr_dr.eval.synth import ResidualSpec, make_stumped_mesh
from resihmr_dr.fit.refine import RefineConfig, RefineWeights, ResidualTarget, refine, stump_rois
from resihmr_dr.render.zbuffer import rasterize
from resihmr_dr.stump.cap import CutSpec, cut_and_cap
from synthetic_people import CAMERA, anny_pose, make_person

LIMB = LIMB_BY_NAME["left_leg"]
STATUS = LimbStatus.TRANSTIBIAL
FAST = RefineConfig(iterations=25, image_size=128, roi_size=96)


def _scene(body, shape_name: str):
    params = anny_pose(body)
    with torch.no_grad():
        out = body(params)
    spec = ResidualSpec("left_transtibial", 0.6, sample_stump_shape(shape_name, np.random.default_rng(3)))
    gt = make_stumped_mesh(
        verts_cam=out.verts[0].double().numpy(), faces=body.faces.numpy(), vertex_segment=body.vertex_segment.numpy(),
        joints_cam=out.joints[0].double().numpy(), residuals=[spec],
    )  # fmt: skip
    mask = rasterize(verts_cam=torch.as_tensor(gt.verts), faces=torch.as_tensor(gt.faces), camera=CAMERA).mask.numpy()
    lam_tip = gt.limbs[0]["lambda"]
    person, _ = make_person(body, params, {"left_leg": (STATUS, lam_tip)})
    # The paper's reconstruction: cut at the endpoint, convex dome.
    knee = out.joints[0, JOINT_INDEX["left_knee"]].double().numpy()
    ankle = out.joints[0, JOINT_INDEX["left_ankle"]].double().numpy()
    convex = cut_and_cap(
        verts=out.verts[0].double().numpy(), faces=body.faces.numpy(), vertex_segment=body.vertex_segment.numpy(),
        cuts=[CutSpec(LIMB, STATUS, knee, ankle, knee + lam_tip * (ankle - knee))],
    )  # fmt: skip
    return params, gt, mask, person, convex


def _roi_iou(verts, faces, mask, roi) -> float:
    pred = rasterize(verts_cam=torch.as_tensor(verts), faces=torch.as_tensor(faces), camera=CAMERA).mask.numpy()
    x0, y0, x1, y1 = roi
    a, g = pred[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    return float((a & g).sum() / (a | g).sum())


def _surface_mm(verts, residual_mask, gt) -> float:
    _, dist, _ = trimesh.proximity.closest_point(trimesh.Trimesh(gt.verts, gt.faces, process=False), verts[residual_mask])
    return float(dist.mean() * 1000)


@pytest.mark.parametrize("shape_name", ["tapered", "bulbous"])
def test_refinement_follows_non_convex_stumps(anny_body, shape_name):
    params, gt, mask, person, convex = _scene(anny_body, shape_name)
    target = ResidualTarget(LIMB, STATUS, np.array(person.keypoints_px)[LIMB.endpoint_index(STATUS), :2])
    result = refine(body=anny_body, params=params, residual=convex, targets=[target],
                    keypoints_px=np.array(person.keypoints_px), camera=CAMERA, mask=mask, config=FAST)  # fmt: skip
    (roi,) = stump_rois(verts_cam=convex.verts, limb_masks=convex.limb_masks, camera=CAMERA, margin=0.35)
    iou_before, iou_after = _roi_iou(convex.verts, convex.faces, mask, roi), _roi_iou(result.verts_cam, convex.faces, mask, roi)
    dist_before = _surface_mm(convex.verts, convex.residual_mask, gt)
    dist_after = _surface_mm(result.verts_cam, convex.residual_mask, gt)
    assert iou_after > iou_before + 0.005, (iou_before, iou_after)
    assert dist_after < 0.9 * dist_before, (dist_before, dist_after)
    refined = trimesh.Trimesh(result.verts_cam, convex.faces, process=False)
    assert refined.is_watertight and refined.is_winding_consistent and refined.volume > 0
    assert result.history["stump_silhouette"][-1] < result.history["stump_silhouette"][0]


def test_zero_mask_weights_keep_the_convex_cap(anny_body):
    params, _, mask, person, convex = _scene(anny_body, "tapered")
    off = RefineConfig(weights=RefineWeights(silhouette=0.0, stump_silhouette=0.0), iterations=5)
    assert not off.enabled
    target = ResidualTarget(LIMB, STATUS, None)
    result = refine(body=anny_body, params=params, residual=convex, targets=[target],
                    keypoints_px=np.array(person.keypoints_px), camera=CAMERA, mask=mask, config=off)  # fmt: skip
    # Only the regularisers act, and they are at their minimum: nothing moves.
    assert np.abs(result.verts_cam - convex.verts).max() < 1e-6


def test_bad_inputs_are_clear_errors(anny_body):
    params, _, mask, person, convex = _scene(anny_body, "tapered")
    with pytest.raises(ValueError, match="one target per cut"):
        refine(body=anny_body, params=params, residual=convex, targets=[], keypoints_px=np.array(person.keypoints_px),
               camera=CAMERA, mask=mask)  # fmt: skip
    with pytest.raises(ValueError, match="mask"):
        refine(body=anny_body, params=params, residual=convex, targets=[ResidualTarget(LIMB, STATUS, None)],
               keypoints_px=np.array(person.keypoints_px), camera=CAMERA, mask=mask[:10])  # fmt: skip
    with pytest.raises(ValueError):
        RefineConfig(loss="dice")
