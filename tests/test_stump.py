"""Residual-limb reconstruction: cut, cap, stump geometry (Anny body and hand-made tubes)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.spatial
import scipy.spatial.transform
import torch
import trimesh
from hypothesis import given, settings
from hypothesis import strategies as st

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX, SEGMENT_NAMES, limb_segment_joints
from resihmr_dr.data.ldpose import LIMB_BY_NAME, LIMBS, LimbStatus
from resihmr_dr.stump.cap import (
    CapConfig,
    CutSpec,
    cap_faces,
    cap_vertices,
    cut_and_cap,
    cut_and_cap_to_tips,
    cut_spec,
    dome_profile,
)
from resihmr_dr.stump.cut import (
    CutError,
    boundary_loops,
    cut_limb,
    endpoint_from_lambda,
)
from resihmr_dr.stump.geometry import (
    EMPTY_SECTION,
    closed_volume_distal,
    cross_section,
    residual_body_geometry,
)

# Anny pose (axis-angles in Anny's Z-up axes): knees bent ~66 / 50 deg, elbows ~67 / 59 deg, hips flexed.
BENT = {
    "lowerleg01.L": (1.0, 0.0, 0.0),
    "lowerleg01.R": (0.7, 0.2, 0.0),
    "upperleg01.L": (-0.6, 0.0, 0.2),
    "upperleg01.R": (-0.3, 0.0, -0.2),
    "lowerarm01.L": (-0.9, 0.0, 0.3),
    "lowerarm01.R": (-0.7, 0.0, -0.3),
    "upperarm01.L": (0.5, 0.3, 0.0),
    "upperarm01.R": (-0.4, 0.0, 0.3),
}
CONFIG = CapConfig(num_rings=5, height_fraction=0.6)


@pytest.fixture(scope="module")
def anny_meshes(anny_body):
    """pose name -> (verts (V, 3) float64, joints (15, 3), faces (F, 3), labels (V,))."""
    from resihmr_dr.body.anny_model import POSE_BONES

    params = anny_body.default_params(1)
    bent = params.body_pose.clone()
    for bone, aa in BENT.items():
        bent[0, POSE_BONES.index(bone)] = torch.tensor(aa, dtype=bent.dtype)
    meshes = {}
    for name, pose in (("rest", params.body_pose), ("bent", bent)):
        with torch.no_grad():
            out = anny_body.forward_model(pose, params.shape)
        meshes[name] = (
            out.verts[0].double().numpy(),
            out.joints[0].double().numpy(),
            anny_body.faces.numpy(),
            anny_body.vertex_segment.numpy(),
        )
    return meshes


def _spec(joints, limb, status, lam) -> CutSpec:
    spec = cut_spec(joints=joints, limb=limb, status=status, lam=lam)
    a_name, t_name = limb.segment_joint_names(status)
    np.testing.assert_array_equal(spec.anchor, joints[JOINT_INDEX[a_name]])
    np.testing.assert_allclose(spec.endpoint, (1 - lam) * spec.anchor + lam * joints[JOINT_INDEX[t_name]])
    return spec


def _check_closed(verts, faces):
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight
    assert mesh.is_winding_consistent
    assert mesh.volume > 0
    return mesh


def _check_other_limbs_untouched(body, verts0, labels0, cut_segments):
    """Every vertex outside the cut segments survives every step, at the same position."""
    keep = ~np.isin(labels0, [SEGMENT_INDEX[s] for s in cut_segments])
    index, num_in = np.arange(len(verts0)), len(verts0)
    for step in body.steps:
        vmap = step.cut.vertex_map
        old_to_new = np.full(num_in + 1, -1)  # the extra slot maps -1 to -1
        old_to_new[vmap[vmap >= 0]] = np.flatnonzero(vmap >= 0)
        index, num_in = old_to_new[index], len(step.verts)
    survivors = index[keep]
    assert (survivors >= 0).all()
    np.testing.assert_array_equal(body.verts[survivors], verts0[keep])
    np.testing.assert_array_equal(body.vertex_segment[survivors], labels0[keep])


def _check_cut_plane(step, tol=1e-6):
    cut = step.cut
    signed = (cut.verts - cut.plane_point) @ cut.axis
    residual = cut.vertex_segment == SEGMENT_INDEX[cut.residual_segment]
    assert signed[residual].max() < tol
    # The loop lies on the plane; the tip is beyond the endpoint by the configured height.
    np.testing.assert_allclose(signed[cut.boundary_loop], 0.0, atol=1e-9)
    tip_height = float((step.tip - cut.plane_point) @ cut.axis)
    assert tip_height == pytest.approx(CONFIG.height_fraction * step.loop_radius, rel=1e-9)
    assert 0.015 < tip_height < 0.08  # 60% of a limb's radius


CASES = [
    (limb.name, status, pose)
    for limb in LIMBS
    for status in (limb.above_status, limb.below_status)
    for pose in ("rest", "bent")
]


@pytest.mark.parametrize("limb_name,status,pose", CASES)
def test_single_cut_on_anny(anny_meshes, limb_name, status, pose):
    verts, joints, faces, labels = anny_meshes[pose]
    limb = LIMB_BY_NAME[limb_name]
    lam = 0.45 if pose == "rest" else 0.6
    body = cut_and_cap(
        verts=verts, faces=faces, vertex_segment=labels, cuts=[_spec(joints, limb, status, lam)], config=CONFIG
    )
    _check_closed(body.verts, body.faces)
    residual, distal = limb.residual_segment(status), limb.distal_segments(status)
    _check_other_limbs_untouched(body, verts, labels, (residual, *distal))
    assert not np.isin(body.vertex_segment, [SEGMENT_INDEX[s] for s in distal]).any()
    (step,) = body.steps
    _check_cut_plane(step)
    # m_r: the residual segment's vertices plus every cap vertex.
    assert body.residual_mask[step.cap_vertex_ids].all()
    np.testing.assert_array_equal(body.residual_mask, body.vertex_segment == SEGMENT_INDEX[residual])
    assert step.cap_ring_index.shape == step.cap_vertex_ids.shape
    (geom,) = residual_body_geometry(body, num_stations=6)
    expected = lam + float((step.tip - step.cut.plane_point) @ step.cut.axis) / geom.segment_length_m
    assert geom.length_fraction == pytest.approx(expected, abs=1e-9)
    assert 2e-5 < geom.volume_m3 < 5e-3
    assert all(a > 0 for a in geom.area_m2) and all(p > 0 for p in geom.perimeter_m)


def test_bilateral_transtibial_and_arm_plus_leg(anny_meshes):
    verts, joints, faces, labels = anny_meshes["bent"]
    for cuts in (
        [
            (LIMB_BY_NAME["left_leg"], LimbStatus.TRANSTIBIAL, 0.5),
            (LIMB_BY_NAME["right_leg"], LimbStatus.TRANSTIBIAL, 0.4),
        ],
        [
            (LIMB_BY_NAME["left_arm"], LimbStatus.TRANSRADIAL, 0.5),
            (LIMB_BY_NAME["right_leg"], LimbStatus.TRANSFEMORAL, 0.6),
            (LIMB_BY_NAME["right_arm"], LimbStatus.TRANSHUMERAL, 0.7),
        ],
    ):
        specs = [_spec(joints, limb, status, lam) for limb, status, lam in cuts]
        body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=specs, config=CONFIG)
        _check_closed(body.verts, body.faces)
        cut_segments = [
            s for limb, status, _ in cuts for s in (limb.residual_segment(status), *limb.distal_segments(status))
        ]
        _check_other_limbs_untouched(body, verts, labels, cut_segments)
        for step in body.steps:
            _check_cut_plane(step)
        # Tips survive later steps; each limb's mask holds its own tip only.
        for i, (tip, step) in enumerate(zip(body.tip_indices, body.steps)):
            assert body.limb_masks[i][tip]
            assert sum(mask[tip] for mask in body.limb_masks) == 1
            np.testing.assert_allclose(body.verts[tip], step.tip)
        geoms = residual_body_geometry(body, num_stations=4)
        assert [g.limb_name for g in geoms] == [limb.name for limb, _, _ in cuts]
        for geom, (_, _, lam) in zip(geoms, cuts):
            assert geom.length_fraction > lam and geom.volume_m3 > 0
        json.dumps([g.to_dict() for g in geoms])


def test_longer_stump_has_more_volume(anny_meshes):
    verts, joints, faces, labels = anny_meshes["rest"]
    limb = LIMB_BY_NAME["left_leg"]
    volumes = []
    for lam in (0.3, 0.5, 0.7, 0.9):
        body = cut_and_cap(
            verts=verts,
            faces=faces,
            vertex_segment=labels,
            cuts=[_spec(joints, limb, LimbStatus.TRANSFEMORAL, lam)],
            config=CONFIG,
        )
        volumes.append(residual_body_geometry(body, num_stations=2)[0].volume_m3)
    assert np.all(np.diff(volumes) > 0), volumes


def test_replay_reproduces_the_mesh_and_is_differentiable(anny_meshes):
    verts, joints, faces, labels = anny_meshes["rest"]
    specs = [
        _spec(joints, LIMB_BY_NAME["left_leg"], LimbStatus.TRANSTIBIAL, 0.5),
        _spec(joints, LIMB_BY_NAME["right_arm"], LimbStatus.TRANSRADIAL, 0.5),
    ]
    body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=specs, config=CONFIG)
    verts_t = torch.tensor(verts, requires_grad=True)
    replayed = body.replay(verts_t)
    np.testing.assert_allclose(replayed.detach().numpy(), body.verts, atol=1e-12)
    shift = torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64)
    np.testing.assert_allclose(body.replay(verts_t + shift).detach().numpy(), body.verts + shift.numpy(), atol=1e-12)
    replayed[body.tip_indices[0]].sum().backward()
    assert verts_t.grad.abs().sum() > 0
    # Per-step normal offsets move only that step's cap vertices (its last R L + 1 vertices there).
    first = body.steps[0]
    offsets = torch.full(
        (first.num_rings, len(first.cut.boundary_loop)), 0.005, dtype=torch.float64, requires_grad=True
    )
    moved = body.replay(torch.tensor(verts), normal_offsets=[offsets, None])
    changed = np.flatnonzero(np.abs(moved.detach().numpy() - body.verts).max(axis=1) > 1e-9)
    assert len(changed) == first.num_rings * len(first.cut.boundary_loop)
    moved.sum().backward()
    assert offsets.grad is not None and offsets.grad.abs().sum() > 0
    # A new axis (e.g. from re-posed joints) tilts the dome: the tip follows it, the loop stays.
    last = body.steps[-1]
    tilted = torch.tensor(last.cut.axis + np.array([0.3, 0.0, 0.0]), dtype=torch.float64)
    step_in = torch.tensor(body.steps[0].verts)
    tilted_verts = last.replay(step_in, axis=tilted).numpy()
    loop = last.cut.boundary_loop
    np.testing.assert_allclose(tilted_verts[loop], last.verts[loop], atol=1e-12)
    expected_tip = last.verts[loop].mean(axis=0) + last.tip_height * (tilted / tilted.norm()).numpy()
    np.testing.assert_allclose(tilted_verts[last.tip_index], expected_tip, atol=1e-12)
    with pytest.raises(CutError, match="one entry per step"):
        body.replay(torch.tensor(verts), normal_offsets=[offsets])


# --------------------------------------------------------------------------------------------
# Hand-made tube: radius r, axis along -Y; "other" above J_a (y = 0), thigh to J_t (y = -L), shank below.

RADIUS, LENGTH, AROUND = 0.05, 0.4, 64


def _tube(*, radius=RADIUS, length=LENGTH, around=AROUND):
    depths = np.linspace(-0.2, 2 * length, 61)
    labels = np.where(
        depths < 0, 0, np.where(depths <= length, SEGMENT_INDEX["left_thigh"], SEGMENT_INDEX["left_shank"])
    )
    ang = 2 * np.pi * np.arange(around) / around
    rings = [np.stack([radius * np.cos(ang), np.full(around, -z), radius * np.sin(ang)], axis=1) for z in depths]
    verts = np.concatenate(rings + [np.array([[0.0, -depths[0], 0.0], [0.0, -depths[-1], 0.0]])])
    i, i_next = np.arange(around), (np.arange(around) + 1) % around
    faces = []
    for k in range(len(depths) - 1):
        a, b = k * around, (k + 1) * around
        faces += [np.stack([a + i, a + i_next, b + i], 1), np.stack([a + i_next, b + i_next, b + i], 1)]
    top, bottom, last = len(verts) - 2, len(verts) - 1, (len(depths) - 1) * around
    faces += [
        np.stack([np.full(around, top), i_next, i], 1),
        np.stack([np.full(around, bottom), last + i, last + i_next], 1),
    ]
    vertex_labels = np.concatenate([np.repeat(labels, around), [labels[0], labels[-1]]])
    return verts, np.concatenate(faces), vertex_labels


@pytest.mark.parametrize("lam", [0.33, 0.61, 0.9])
def test_tube_geometry_matches_closed_form(lam):
    verts, faces, labels = _tube()
    _check_closed(verts, faces)
    anchor, target = np.zeros(3), np.array([0.0, -LENGTH, 0.0])
    config = CapConfig(num_rings=12, height_fraction=0.7)
    spec = CutSpec(
        LIMB_BY_NAME["left_leg"], LimbStatus.TRANSFEMORAL, anchor, target, endpoint_from_lambda(anchor, target, lam)
    )
    body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec], config=config)
    mesh = _check_closed(body.verts, body.faces)
    (geom,) = residual_body_geometry(body, num_stations=5)
    height = config.height_fraction * RADIUS
    disc = math.pi * RADIUS**2
    assert geom.length_m == pytest.approx(lam * LENGTH + height, rel=2e-3)
    assert geom.length_fraction == pytest.approx(lam + height / LENGTH, rel=2e-3)
    # Cylinder of length lam L plus a half-ellipsoid dome of height H: pi r^2 lam L + 2/3 pi r^2 H.
    assert geom.volume_m3 == pytest.approx(disc * lam * LENGTH + 2 / 3 * disc * height, rel=0.01)
    # Independent check: trimesh's plane slice with a cap gives the same closed volume.
    sliced = trimesh.intersections.slice_mesh_plane(mesh, plane_normal=[0.0, -1.0, 0.0], plane_origin=anchor, cap=True)
    assert geom.volume_m3 == pytest.approx(sliced.volume, rel=1e-6)
    # Stations on the cylinder: area pi r^2, perimeter 2 pi r; the last may be on the dome.
    on_cylinder = np.asarray(geom.station_m) < lam * LENGTH
    assert on_cylinder.sum() >= 3 and all(geom.section_closed)
    np.testing.assert_allclose(np.asarray(geom.area_m2)[on_cylinder], disc, rtol=0.01)
    np.testing.assert_allclose(np.asarray(geom.perimeter_m)[on_cylinder], 2 * math.pi * RADIUS, rtol=0.01)
    assert all(a < disc * 1.001 for a in geom.area_m2)


@pytest.mark.parametrize("lam", [0.1, 0.5, 0.95])
def test_cut_to_tips_ends_the_cap_at_the_endpoint(lam):
    verts, faces, labels = _tube()
    anchor, target = np.zeros(3), np.array([0.0, -LENGTH, 0.0])
    tip = endpoint_from_lambda(anchor, target, lam)
    spec = CutSpec(LIMB_BY_NAME["left_leg"], LimbStatus.TRANSFEMORAL, anchor, target, tip)
    body = cut_and_cap_to_tips(verts=verts, faces=faces, vertex_segment=labels, tips=[spec], config=CONFIG)
    (step,) = body.steps
    _check_closed(body.verts, body.faces)
    # The tip is the endpoint; the cut plane lies the cap's length proximal of it (or, for a
    # short residual limb, halfway to the anchor).
    np.testing.assert_allclose(body.verts[body.tip_indices[0]], tip, atol=1e-9)
    plane_along = float((step.cut.plane_point - anchor) @ step.cut.axis)
    expected = max(lam * LENGTH - CONFIG.height_fraction * RADIUS, CONFIG.min_plane_fraction * lam * LENGTH)
    assert plane_along == pytest.approx(expected, rel=0.02)
    (geom,) = residual_body_geometry(body)
    assert geom.length_fraction == pytest.approx(lam, abs=1e-9)


def test_cross_section_picks_the_loop_around_the_axis():
    a, fa, _ = _tube(radius=0.05)
    b, fb, _ = _tube(radius=0.02)
    b = b + np.array([0.3, 0.0, 0.0])  # a second, thinner tube beside the first
    verts, faces = np.concatenate([a, b]), np.concatenate([fa, fb + len(a)])
    section = cross_section(verts, faces, np.array([0.0, -0.1, 0.0]), np.array([0.0, -1.0, 0.0]))
    assert section.closed and section.area_m2 == pytest.approx(math.pi * 0.05**2, rel=0.01)
    assert section.max_radius_m == pytest.approx(0.05, rel=1e-6)
    section = cross_section(verts, faces, np.array([0.3, -0.1, 0.0]), np.array([0.0, -1.0, 0.0]))
    assert section.area_m2 == pytest.approx(math.pi * 0.02**2, rel=0.01)
    assert cross_section(verts, faces, np.array([0.0, 5.0, 0.0]), np.array([0.0, 1.0, 0.0])) == EMPTY_SECTION


def test_closed_volume_fans_holes_off_the_plane():
    verts, faces, labels = _tube()
    # The thigh band alone (open at both ends) distal of y = -0.1: a cylinder of length L - 0.1.
    band = faces[(labels[faces] == SEGMENT_INDEX["left_thigh"]).all(axis=1)]
    volume = closed_volume_distal(verts, band, np.array([0.0, -0.1, 0.0]), np.array([0.0, -1.0, 0.0]))
    assert volume == pytest.approx(math.pi * RADIUS**2 * (LENGTH - 0.1), rel=0.01)


def test_normal_offsets_grow_the_cap_and_keep_it_closed():
    verts, faces, labels = _tube()
    anchor, target = np.zeros(3), np.array([0.0, -LENGTH, 0.0])
    spec = CutSpec(
        LIMB_BY_NAME["left_leg"], LimbStatus.TRANSFEMORAL, anchor, target, endpoint_from_lambda(anchor, target, 0.5)
    )
    body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec], config=CONFIG)
    (step,) = body.steps
    # Ring structure: ring k holds the loop scaled by profile[k] (a circle of radius profile[k] r).
    rings = step.cap_ring_index
    for k in range(1, CONFIG.num_rings + 1):
        pts = body.verts[step.cap_vertex_ids[rings == k]]
        radial = np.linalg.norm(pts[:, [0, 2]], axis=1)
        np.testing.assert_allclose(radial, step.profile[k - 1] * step.loop_radius, rtol=0.01)
    assert len(np.unique(np.round(step.cap_ring_angle[rings == 1], 9))) == len(step.cut.boundary_loop)
    offsets = torch.full((CONFIG.num_rings, len(step.cut.boundary_loop)), 0.01, dtype=torch.float64)
    moved = step.replay(torch.tensor(verts), normal_offsets=offsets).numpy()
    grown = _check_closed(moved, body.faces)
    assert grown.volume > trimesh.Trimesh(body.verts, body.faces, process=False).volume
    # Each ring vertex moved by exactly its offset, along the dome's outward normal: on a
    # circular tube the dome is an ellipsoid of revolution, and the move is normal to it.
    cap = step.cap_vertex_ids[:-1]
    delta = moved[cap] - body.verts[cap]
    np.testing.assert_allclose(np.linalg.norm(delta, axis=1), 0.01, rtol=1e-9)
    rel = body.verts[cap] - body.verts[step.cut.boundary_loop].mean(axis=0)
    along = rel @ step.cut.axis
    radial = rel - np.outer(along, step.cut.axis)
    grad = radial / step.loop_radius**2 + np.outer(along / step.tip_height**2, step.cut.axis)  # ellipsoid normal
    cosine = np.sum(grad * delta, axis=1) / np.linalg.norm(grad, axis=1) / 0.01
    np.testing.assert_allclose(cosine, 1.0, atol=0.02)
    # A new tip height moves the tip along the axis and lifts the rings with it.
    taller = step.replay(torch.tensor(verts), tip_height=2 * step.tip_height).numpy()
    np.testing.assert_allclose(
        (taller[step.tip_index] - body.verts[step.tip_index]) @ step.cut.axis, step.tip_height, rtol=1e-9
    )


def test_cap_vertices_gradcheck():
    gen = torch.Generator().manual_seed(0)
    ang = torch.linspace(0, 2 * math.pi, 8, dtype=torch.float64)[:-1]
    loop = torch.stack([torch.cos(ang), torch.sin(ang), 0.1 * torch.sin(2 * ang)], dim=1)
    loop = (loop + 0.05 * torch.randn(loop.shape, generator=gen, dtype=torch.float64)).requires_grad_()
    axis = torch.tensor([0.1, -0.2, 1.0], dtype=torch.float64, requires_grad=True)
    profile, heights = (t.requires_grad_() for t in dome_profile(3, 0.5))
    offsets = (0.01 * torch.randn(3, 7, generator=gen, dtype=torch.float64)).requires_grad_()
    tip = torch.tensor(0.5, dtype=torch.float64, requires_grad=True)

    def fn(loop, axis, profile, heights, offsets, tip):
        return cap_vertices(loop, axis, profile, heights, tip_height=tip, normal_offsets=offsets)

    assert torch.autograd.gradcheck(fn, (loop, axis, profile, heights, offsets, tip))
    out = fn(loop, axis, profile, heights, offsets, tip)
    assert out.shape == (3 * 7 + 1, 3)


def test_cap_faces_close_a_disc_consistently():
    # A fan-triangulated disc (open boundary 0..n-1) closed by a cap is a watertight sphere.
    n, rings = 9, 3
    ang = 2 * np.pi * np.arange(n) / n
    loop_pts = np.stack([np.cos(ang), np.sin(ang), np.zeros(n)], axis=1)
    disc_verts = np.concatenate([loop_pts, [[0.0, 0.0, -0.5]]])
    disc_faces = np.stack([np.arange(n), np.full(n, n), (np.arange(n) + 1) % n], axis=1)
    (loop,) = boundary_loops(disc_faces)
    profile, heights = dome_profile(rings, 0.7)
    cap = cap_vertices(
        torch.from_numpy(disc_verts[loop]),
        torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64),
        profile,
        heights,
        tip_height=0.7,
    ).numpy()
    faces = np.concatenate([disc_faces, cap_faces(loop, n + 1, rings)])
    mesh = _check_closed(np.concatenate([disc_verts, cap]), faces)
    assert len(faces) == n + n * (2 * rings + 1) and mesh.euler_number == 2


def test_bad_inputs(anny_meshes):
    verts, joints, faces, labels = anny_meshes["rest"]
    leg = LIMB_BY_NAME["left_leg"]
    spec = _spec(joints, leg, LimbStatus.TRANSTIBIAL, 0.5)
    base = {
        "verts": verts,
        "faces": faces,
        "vertex_segment": labels,
        "limb": leg,
        "status": spec.status,
        "anchor": spec.anchor,
        "target": spec.target,
        "endpoint": spec.endpoint,
    }
    with pytest.raises(CutError, match="not a residual"):
        cut_limb(**{**base, "status": LimbStatus.INTACT})
    with pytest.raises(CutError, match="does not apply"):
        cut_limb(**{**base, "status": LimbStatus.TRANSRADIAL})
    with pytest.raises(CutError, match="beyond the anchor"):
        cut_limb(**{**base, "endpoint": spec.anchor - (spec.target - spec.anchor) * 0.1})
    with pytest.raises(CutError, match="coincide"):
        cut_limb(**{**base, "target": spec.anchor})
    with pytest.raises(CutError, match=r"verts must have shape"):
        cut_limb(**{**base, "verts": verts[:, :2]})
    with pytest.raises(CutError, match="vertex_segment must have shape"):
        cut_limb(**{**base, "vertex_segment": labels[:-1]})
    with pytest.raises(CutError, match="outside"):
        cut_limb(**{**base, "faces": faces + len(verts)})
    with pytest.raises(CutError, match="no left_foot"):
        cut_limb(**{**base, "vertex_segment": np.where(labels == SEGMENT_INDEX["left_foot"], 0, labels)})
    with pytest.raises(CutError, match="joints must have shape"):
        cut_spec(joints=joints[:5], limb=leg, status=LimbStatus.TRANSTIBIAL, lam=0.5)
    with pytest.raises(CutError, match="lam must lie"):
        cut_spec(joints=joints, limb=leg, status=LimbStatus.TRANSTIBIAL, lam=1.5)
    with pytest.raises(CutError, match="once"):
        cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec, spec])
    with pytest.raises(CutError, match="num_rings"):
        CapConfig(num_rings=0)
    with pytest.raises(CutError, match="height_fraction"):
        CapConfig(height_fraction=-1.0)
    with pytest.raises(CutError, match="normal_offsets"):
        cap_vertices(
            torch.zeros(5, 3),
            torch.tensor([0.0, 0.0, 1.0]),
            *dome_profile(2, 0.1, dtype=torch.float32),
            tip_height=0.1,
            normal_offsets=torch.zeros(3, 5),
        )
    # A limb already cut above the knee cannot be cut again below it (the shank is gone).
    body = cut_and_cap(
        verts=verts,
        faces=faces,
        vertex_segment=labels,
        cuts=[_spec(joints, leg, LimbStatus.TRANSFEMORAL, 0.5)],
        config=CONFIG,
    )
    with pytest.raises(CutError):
        cut_limb(**{**base, "verts": body.verts, "faces": body.faces, "vertex_segment": body.vertex_segment})


def test_segment_tables():
    left_leg, right_leg = LIMB_BY_NAME["left_leg"], LIMB_BY_NAME["right_leg"]
    left_arm, right_arm = LIMB_BY_NAME["left_arm"], LIMB_BY_NAME["right_arm"]
    assert left_leg.residual_segment(LimbStatus.TRANSTIBIAL) == "left_shank"
    assert left_leg.distal_segments(LimbStatus.TRANSTIBIAL) == ("left_foot",)
    assert right_leg.residual_segment(LimbStatus.TRANSFEMORAL) == "right_thigh"
    assert right_leg.distal_segments(LimbStatus.TRANSFEMORAL) == ("right_shank", "right_foot")
    assert left_arm.residual_segment(LimbStatus.TRANSRADIAL) == "left_forearm"
    assert right_arm.distal_segments(LimbStatus.TRANSHUMERAL) == ("right_forearm", "right_hand")
    assert left_arm.segment_joint_names(LimbStatus.TRANSHUMERAL) == ("left_shoulder", "left_elbow")
    assert right_leg.segment_joint_names(LimbStatus.TRANSTIBIAL) == ("right_knee", "right_ankle")
    assert set(SEGMENT_NAMES) >= {
        limb.residual_segment(st) for limb in LIMBS for st in (limb.above_status, limb.below_status)
    }
    with pytest.raises(ValueError, match="not a residual"):
        left_arm.residual_segment(LimbStatus.INTACT)
    with pytest.raises(ValueError, match="left_arm.*does not apply"):
        left_arm.residual_segment(LimbStatus.TRANSFEMORAL)
    joints = np.arange(len(JOINT_INDEX) * 3.0).reshape(-1, 3)
    anchor, target = limb_segment_joints(joints, right_leg, LimbStatus.TRANSTIBIAL)
    np.testing.assert_array_equal(anchor, joints[JOINT_INDEX["right_knee"]])
    np.testing.assert_array_equal(target, joints[JOINT_INDEX["right_ankle"]])
    batched_anchor, _ = limb_segment_joints(torch.as_tensor(joints)[None], right_leg, LimbStatus.TRANSTIBIAL)
    assert batched_anchor.shape == (1, 3)


def test_tiny_smplx_body_every_residual_type(tiny_smplx):
    """The SMPL-X path: a body made of separate closed tubes (tests/smplx_tiny.py), bent limbs."""
    from resihmr_dr.body.smplx_model import SmplxBody

    body = SmplxBody(tiny_smplx.root, vertex_ids=tiny_smplx.vertex_ids, dtype=torch.float64)
    shape = torch.zeros(1, body.num_shape, dtype=torch.float64)
    pose = 0.3 * torch.randn(
        1, body.num_pose_joints, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    with torch.no_grad():
        out = body.forward_model(pose, shape)
    verts, joints = out.verts[0].numpy(), out.joints[0].numpy()
    faces, labels = body.faces.numpy(), body.vertex_segment.numpy()
    for limb in LIMBS:
        for status in (limb.above_status, limb.below_status):
            spec = _spec(joints, limb, status, 0.55)
            result = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec], config=CONFIG)
            _check_closed(result.verts, result.faces)
            residual, distal = limb.residual_segment(status), limb.distal_segments(status)
            _check_other_limbs_untouched(result, verts, labels, (residual, *distal))
            _check_cut_plane(result.steps[0])
    both = [
        _spec(joints, LIMB_BY_NAME["left_leg"], LimbStatus.TRANSTIBIAL, 0.5),
        _spec(joints, LIMB_BY_NAME["right_arm"], LimbStatus.TRANSHUMERAL, 0.5),
    ]
    result = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=both, config=CONFIG)
    _check_closed(result.verts, result.faces)
    assert all(g.volume_m3 > 0 for g in residual_body_geometry(result))


@settings(max_examples=40, deadline=None)
@given(
    lam=st.floats(0.15, 0.95),
    around=st.integers(12, 48),
    radius=st.floats(0.02, 0.09),
    rotation=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=3),
    height_fraction=st.floats(0.2, 1.2),
)
def test_rotated_tube_any_endpoint(lam, around, radius, rotation, height_fraction):
    """Any orientation, endpoint, resolution and dome height: closed, convex cap, exact volume."""
    rot = scipy.spatial.transform.Rotation.from_rotvec(rotation).as_matrix()
    verts, faces, labels = _tube(radius=radius, around=around)
    verts = verts @ rot.T + np.array([0.3, -0.1, 2.0])
    anchor, target = np.array([0.3, -0.1, 2.0]), np.array([0.0, -LENGTH, 0.0]) @ rot.T + np.array([0.3, -0.1, 2.0])
    config = CapConfig(num_rings=4, height_fraction=height_fraction)
    spec = CutSpec(
        LIMB_BY_NAME["right_leg"], LimbStatus.TRANSFEMORAL, anchor, target, endpoint_from_lambda(anchor, target, lam)
    )
    labels = np.where(labels == SEGMENT_INDEX["left_thigh"], SEGMENT_INDEX["right_thigh"], labels)
    labels = np.where(labels == SEGMENT_INDEX["left_shank"], SEGMENT_INDEX["right_shank"], labels)
    body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec], config=config)
    mesh = _check_closed(body.verts, body.faces)
    (step,) = body.steps
    tip_height = float((step.tip - step.cut.plane_point) @ step.cut.axis)
    assert tip_height == pytest.approx(height_fraction * step.loop_radius, rel=1e-9)
    # The dome closed by the cut disc is convex: its volume equals its convex hull's.
    loop = step.cut.boundary_loop
    dome_pts = np.concatenate([body.verts[loop], body.verts[step.cap_vertex_ids]])
    hull = scipy.spatial.ConvexHull(dome_pts)
    disc_centre = body.verts[loop].mean(axis=0)
    dome = trimesh.Trimesh(
        np.concatenate([body.verts, disc_centre[None]]),
        np.concatenate(
            [
                body.faces[-len(loop) * (2 * config.num_rings + 1) :],
                np.stack([loop, np.roll(loop, -1), np.full(len(loop), len(body.verts))], axis=1),
            ]
        ),
        process=False,
    )
    assert dome.is_watertight and dome.volume == pytest.approx(hull.volume, rel=1e-6)
    (geom,) = residual_body_geometry(body, num_stations=3)
    sliced = trimesh.intersections.slice_mesh_plane(mesh, plane_normal=step.cut.axis, plane_origin=anchor, cap=True)
    assert geom.volume_m3 == pytest.approx(sliced.volume, rel=1e-6)
    assert geom.length_m == pytest.approx(lam * LENGTH + tip_height, rel=1e-6)


def test_shank_profile_is_closed_and_smooth(anny_meshes):
    """Near the knee the shank's label border crosses the section planes; the whole mesh's loop
    around the knee closes those sections, so the profile has no spurious near-zero areas."""
    verts, joints, faces, labels = anny_meshes["rest"]
    spec = _spec(joints, LIMB_BY_NAME["right_leg"], LimbStatus.TRANSTIBIAL, 0.5)
    body = cut_and_cap(verts=verts, faces=faces, vertex_segment=labels, cuts=[spec], config=CONFIG)
    (geom,) = residual_body_geometry(body, num_stations=10)
    assert all(geom.section_closed)
    areas = np.asarray(geom.area_m2)
    assert 0.004 < areas[:-1].min() and areas.max() < 0.015  # a shank: ~5-7 cm radius
    assert np.all(areas[1:-1] / areas[:-2] > 0.8)  # no jumps before the dome


@pytest.mark.parametrize("limb_name,status", [(limb.name, limb.above_status) for limb in LIMBS])
def test_cut_to_tips_next_to_the_anchor_joint(anny_meshes, limb_name, status):
    """A residual limb ending next to its anchor joint (joint-level collapse, λ = 0.05): the cut
    ring there follows the segment's label border, off the plane; the cap still closes it."""
    verts, joints, faces, labels = anny_meshes["rest"]
    spec = cut_spec(joints=joints, limb=LIMB_BY_NAME[limb_name], status=status, lam=0.05)
    body = cut_and_cap_to_tips(verts=verts, faces=faces, vertex_segment=labels, tips=[spec], config=CONFIG)
    _check_closed(body.verts, body.faces)
    (step,) = body.steps
    assert step.tip_height >= 0.1 * step.loop_radius * 0.99
