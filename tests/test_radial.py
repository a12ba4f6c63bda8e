"""Radius profiles of residual segments (stump.radial) and the whole-body fill term
(fit.refine_terms): exact radial scaling, a watertight capped mesh on the moved body, gradients
against finite differences, and the fill term's pull towards uncovered mask outline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import trimesh
from synthetic_people import anny_pose

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LimbStatus
from resihmr_dr.fit.refine_config import RefineConfig
from resihmr_dr.fit.refine_terms import ViewTerms
from resihmr_dr.render.distance import chamfer_to_points, nearest_distances
from resihmr_dr.render.zbuffer import rasterize, silhouette_edge_vertices
from resihmr_dr.stump.cap import CutSpec, cut_and_cap_to_tips
from resihmr_dr.stump.radial import RadialProfile, apply_radial_profiles, radial_displacement, radial_knot_weights


def test_knot_weights_interpolate_linearly_and_vanish_at_the_anchor():
    u = torch.tensor([-0.5, 0.0, 0.125, 0.25, 0.6, 1.0, 1.7], dtype=torch.float64)
    w = radial_knot_weights(u, 4)
    assert w.shape == (7, 4)
    assert torch.allclose(w[0], torch.zeros(4, dtype=torch.float64)) and torch.allclose(w[1], w[0])
    assert torch.allclose(w[2], torch.tensor([0.5, 0, 0, 0], dtype=torch.float64))
    assert torch.allclose(w[4], torch.tensor([0, 0.6, 0.4, 0], dtype=torch.float64))
    assert torch.allclose(w[5], w[6]) and float(w[5, 3]) == 1.0  # constant beyond the cut
    with pytest.raises(ValueError, match="num_knots"):
        radial_knot_weights(u, 0)


def test_displacement_scales_the_distance_from_the_axis_only():
    anchor = torch.tensor([0.1, 0.2, 3.0], dtype=torch.float64)
    target = torch.tensor([0.1, -0.2, 3.1], dtype=torch.float64)
    axis = (target - anchor) / (target - anchor).norm()
    rng = np.random.default_rng(0)
    points = (
        anchor
        + torch.as_tensor(rng.uniform(-0.05, 0.05, (50, 3)))
        + torch.linspace(0, 0.5, 50)[:, None] * (target - anchor)
    )
    coeffs = torch.tensor([0.1, -0.2, 0.05, -0.1], dtype=torch.float64)
    moved = points + radial_displacement(points, anchor=anchor, target=target, cut_fraction=0.5, coefficients=coeffs)
    s0, s1 = (points - anchor) @ axis, (moved - anchor) @ axis
    assert torch.allclose(s0, s1)  # along the axis: unchanged
    r0 = ((points - anchor) - s0[:, None] * axis).norm(dim=1)
    r1 = ((moved - anchor) - s1[:, None] * axis).norm(dim=1)
    u = s0 / (0.5 * (target - anchor).norm())
    expected = 1 + radial_knot_weights(u, 4) @ coeffs
    assert torch.allclose(r1 / r0, expected)


def test_profile_gradients_match_finite_differences():
    anchor = torch.tensor([0.0, 0.0, 2.0], dtype=torch.float64)
    target = torch.tensor([0.0, 0.4, 2.0], dtype=torch.float64)
    points = torch.tensor([[0.03, 0.05, 2.01], [-0.02, 0.15, 1.98], [0.01, 0.33, 2.04]], dtype=torch.float64)
    coeffs = torch.tensor([0.05, -0.1, 0.2], dtype=torch.float64, requires_grad=True)
    torch.autograd.gradcheck(
        lambda c, p: radial_displacement(p, anchor=anchor, target=target, cut_fraction=0.8, coefficients=c),
        (coeffs, points.clone().requires_grad_(True)),
    )


def test_capped_mesh_on_a_thinner_shank_is_watertight_and_thinner(anny_body):
    limb, status = LIMB_BY_NAME["left_leg"], LimbStatus.TRANSTIBIAL
    with torch.no_grad():
        out = anny_body(anny_pose(anny_body))
    verts = out.verts[0].double()
    joints = out.joints[0].double()
    knee, ankle = joints[JOINT_INDEX["left_knee"]], joints[JOINT_INDEX["left_ankle"]]
    residual = cut_and_cap_to_tips(
        verts=verts.numpy(),
        faces=anny_body.faces.numpy(),
        vertex_segment=anny_body.vertex_segment.numpy(),
        tips=[CutSpec(limb, status, knee.numpy(), ankle.numpy(), (knee + 0.6 * (ankle - knee)).numpy())],
    )
    ids = np.flatnonzero(anny_body.vertex_segment.numpy() == SEGMENT_INDEX["left_shank"])
    profile = RadialProfile(
        vertex_ids=ids,
        limb=limb,
        status=status,
        cut_fraction=0.5,
        coefficients=torch.tensor([-0.05, -0.1, -0.15, -0.2], dtype=torch.float64),
    )
    zero = RadialProfile(vertex_ids=ids, limb=limb, status=status, cut_fraction=0.5, coefficients=torch.zeros(4))
    assert torch.equal(apply_radial_profiles(verts, joints, [zero]), verts)
    moved = apply_radial_profiles(verts, joints, [profile])
    assert torch.equal(moved[np.setdiff1d(np.arange(len(verts)), ids)], verts[np.setdiff1d(np.arange(len(verts)), ids)])
    before = trimesh.Trimesh(residual.replay(verts).numpy(), residual.faces, process=False)
    after = trimesh.Trimesh(residual.replay(moved).numpy(), residual.faces, process=False)
    assert after.is_watertight and after.is_winding_consistent
    limb_faces = residual.faces[residual.limb_masks[0][residual.faces].all(axis=1)]
    area = [trimesh.Trimesh(m.vertices, limb_faces, process=False).area for m in (before, after)]
    assert area[1] < area[0]  # a thinner residual limb
    assert profile.to_dict()["radius_change"] == pytest.approx([-0.05, -0.1, -0.15, -0.2])


def _square(cx: float, cy: float, half: float, z: float = 2.0) -> tuple[torch.Tensor, torch.Tensor]:
    """A flat square facing the camera (pixel centre (cx, cy), half-size px) for CAMERA below."""
    f = 100.0
    corners = [(cx - half, cy - half), (cx + half, cy - half), (cx + half, cy + half), (cx - half, cy + half)]
    verts = torch.tensor([[(x - 32) * z / f, (y - 32) * z / f, z] for x, y in corners], dtype=torch.float64)
    return verts, torch.tensor([[0, 1, 2], [0, 2, 3]])


CAMERA = PinholeCamera(fx=100.0, fy=100.0, cx=32.0, cy=32.0, width=64, height=64)


def _view(mask: np.ndarray) -> ViewTerms:
    kp = np.zeros((25, 3))
    return ViewTerms(
        camera=CAMERA,
        mask=mask,
        keypoints_px=kp,
        endpoints_px=[],
        config=RefineConfig(image_size=64),
        dtype=torch.float64,
        device=torch.device("cpu"),
    )


def test_edge_vertices_are_those_of_the_silhouette_outline():
    verts, faces = _square(32, 32, 10)
    face_index = rasterize(verts_cam=verts, faces=faces, camera=CAMERA).face_index
    assert set(silhouette_edge_vertices(face_index, faces).tolist()) == {0, 1, 2, 3}
    assert len(silhouette_edge_vertices(torch.full((8, 8), -1), faces)) == 0


def test_fill_pulls_the_outline_out_to_an_uncovered_mask():
    mask = np.zeros((64, 64), bool)
    mask[18:47, 18:47] = True  # the mesh below covers 22..42
    view = _view(mask)
    small, faces = _square(32, 32, 10)
    small.requires_grad_(True)
    term = view.fill_term(verts=small, faces=faces)
    assert float(term.detach()) > 0
    (grad,) = torch.autograd.grad(term, small)
    # Descent moves every corner outwards (away from the centre, in x and y).
    step = -grad[:, :2]
    outward = small.detach()[:, :2] - small.detach()[:, :2].mean(0)
    assert ((step * outward).sum(1) > 0).all()
    big, faces = _square(32, 32, 16)
    assert float(view.fill_term(verts=big, faces=faces)) == 0.0  # covers the whole outline


def test_nearest_distances_are_per_point_and_allow_an_empty_contour():
    points = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    contour = torch.tensor([[1.0, 0.0], [10.0, 3.0]])
    assert torch.allclose(nearest_distances(contour, points), torch.tensor([1.0, 3.0]))
    assert torch.allclose(nearest_distances(contour, points, hinge_px=1.5), torch.tensor([0.0, 1.5]))
    assert nearest_distances(torch.zeros(0, 2), points).shape == (0,)
    assert float(chamfer_to_points(contour, points)) == pytest.approx(2.0)
    with pytest.raises(ValueError, match="empty"):
        chamfer_to_points(torch.zeros(0, 2), points)
