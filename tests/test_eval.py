"""The benchmark evaluation: metrics on hand-made cases with known answers, and `eval` end to end
on generated people (every method scored, baselines ordered as expected, bad folders isolated)."""

from __future__ import annotations

import argparse
import csv
import json
import math
import shutil

import numpy as np
import pytest
import roma
import torch
import trimesh
from synthetic_people import FAST_PIPELINE

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.config import ResihmrConfig
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.ldpose import LIMB_BY_NAME, NUM_KEYPOINTS, LimbStatus
from resihmr_dr.eval.baselines import METHOD_LABELS, METHODS, joint_lambda
from resihmr_dr.eval.benchmark import evaluate, summarise, write_outputs
from resihmr_dr.eval.closest_points import SurfaceQuery
from resihmr_dr.eval.eval_cli import add_eval_parser
from resihmr_dr.eval.groundtruth import GroundTruth, GroundTruthError, load_ground_truth
from resihmr_dr.eval.limb_truth import LimbTruth, StumpMeasurements
from resihmr_dr.eval.prediction import Prediction, prediction_from_fit, prediction_from_folder, read_fitted_folder
from resihmr_dr.eval.scores import (
    LIMB_METRICS,
    PERSON_METRICS,
    apply_similarity,
    icp_rigid,
    perimeter_profile,
    procrustes,
    rotation_between,
    rotation_vector_matrix,
    sample_surface_points,
    score_prediction,
    surface_distances,
    symmetric_surface_distance,
)
from resihmr_dr.eval.stump_shapes import StumpShape
from resihmr_dr.eval.sweep import SweepSpec
from resihmr_dr.eval.synth import generate_dataset
from resihmr_dr.fit.pipeline import fit_person
from resihmr_dr.render.zbuffer import rasterize
from resihmr_dr.stump.geometry import StumpGeometry

CAMERA = PinholeCamera(fx=800.0, fy=800.0, cx=160.0, cy=160.0, width=320, height=320)
ANCHOR = np.array([0.0, -0.3, 3.0])  # left knee, camera frame
AXIS = np.array([0.0, 1.0, 0.0])  # the shank points down the image
SEGMENT_M = 0.45  # |J_t - J_a|
RADIUS, HEIGHT = 0.05, 0.2  # the true stump: a capsule from the knee, 0.3 m to its far pole


# --------------------------------------------------------------------------- hand-made cases
def test_procrustes_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(50, 3))
    rot = roma.rotvec_to_rotmat(torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64)).numpy()
    dst = 1.7 * src @ rot.T + np.array([0.4, -2.0, 5.0])
    scale, r, t = procrustes(src, dst)
    assert scale == pytest.approx(1.7) and np.allclose(r, rot) and np.allclose(apply_similarity(src, scale, r, t), dst)
    mirrored = src * np.array([-1.0, 1.0, 1.0])  # never answered with a reflection
    assert np.linalg.det(procrustes(src, mirrored)[1]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="procrustes"):
        procrustes(src[:2], dst[:2])


def test_surface_distances_of_a_box():
    box = trimesh.creation.box(extents=(2.0, 2.0, 2.0))  # faces at +-1
    points = np.array([[0.0, 0.0, 3.0], [0.0, 0.0, 0.5], [2.0, 2.0, 0.0]])
    assert np.allclose(surface_distances(points, box.vertices, box.faces), [2.0, 0.5, math.sqrt(2)])
    same = symmetric_surface_distance(box.vertices, box.faces, box.vertices, box.faces)
    assert np.allclose(same, 0.0)
    bigger = box.vertices * 1.5
    dist = symmetric_surface_distance(bigger, box.faces, box.vertices, box.faces)
    # The big box's corners are 0.5 sqrt(3) from the small box's; the small box's are 0.5 inside the big one's faces.
    assert np.allclose(dist, [0.5 * math.sqrt(3)] * 8 + [0.5] * 8)


def _capsule(*, radius: float, height: float, shift=(0.0, 0.0, 0.0)) -> trimesh.Trimesh:
    """A capsule whose near pole is at ANCHOR + shift, along AXIS (total length height + 2 radius)."""
    mesh = trimesh.creation.capsule(height=height, radius=radius, count=[32, 32])  # along z, centred
    rot = trimesh.geometry.align_vectors([0, 0, 1], AXIS)
    mesh.apply_transform(rot)
    mesh.apply_translation(ANCHOR + np.asarray(shift) + AXIS * (height / 2 + radius))
    return mesh


def _case(
    pred_mesh: trimesh.Trimesh,
    *,
    joint_shift=(0.0, 0.0, 0.0),
    kp_offset=(0.0, 0.0),
    body_transform=None,
    ankle=AXIS * SEGMENT_M,
):
    """A ground truth (a torso box + the true capsule stump on the left shank) and a prediction
    with ``pred_mesh`` as its left-leg residual limb (fitted knee at ANCHOR + joint_shift, the
    ankle ``ankle`` from it)."""
    torso = trimesh.creation.box(extents=(0.3, 0.5, 0.2))
    torso.apply_translation(ANCHOR + np.array([0.2, -0.5, 0.0]))
    stump = _capsule(radius=RADIUS, height=HEIGHT)
    verts = np.concatenate([torso.vertices, stump.vertices])
    faces = np.concatenate([torso.faces, stump.faces + len(torso.vertices)])
    labels = np.concatenate([np.zeros(8, int), np.full(len(stump.vertices), SEGMENT_INDEX["left_shank"])])
    source = np.concatenate([np.arange(8), np.full(len(stump.vertices), -1)])
    kp = np.zeros((NUM_KEYPOINTS, 3))
    kp[:17] = [100.0, 100.0, 2.0]
    true_volume = stump.volume  # all of it lies distal of the plane through the knee
    length = HEIGHT + 2 * RADIUS
    geometry = StumpGeometry(
        limb_name="left_leg",
        status="transtibial",
        length_m=length,
        length_fraction=length / SEGMENT_M,
        segment_length_m=SEGMENT_M,
        volume_m3=true_volume,
        station_m=(),
        area_m2=(),
        perimeter_m=(),
        section_closed=(),
    )
    tip = ANCHOR + AXIS * length
    limb = LimbTruth(
        limb_name="left_leg",
        status=LimbStatus.TRANSTIBIAL,
        type_name="left_transtibial",
        shape=StumpShape("rounded", height_ratio=1.0),
        lam=length / SEGMENT_M,
        lam_cut=(HEIGHT + RADIUS) / SEGMENT_M,  # the far hemisphere is the cap
        anchor_cam=ANCHOR,
        target_cam=ANCHOR + AXIS * SEGMENT_M,
        endpoint_cam=tip,
        tip_index=8 + int(np.argmin(np.linalg.norm(stump.vertices - tip, axis=1))),
        cut_point_cam=ANCHOR + AXIS * (HEIGHT + RADIUS),
        axis_cam=AXIS,
        cap_length_m=RADIUS,
        cut_radius_m=RADIUS,
        measurements=StumpMeasurements(geometry, math.pi * RADIUS**2, 2 * math.pi * RADIUS),
    )
    gt = GroundTruth(
        ann_id=1,
        image_id=1,
        verts=verts,
        faces=faces,
        vertex_segment=labels,
        source_vertex=source,
        keypoints_px=kp,
        limbs=(limb,),
        body_model="box",
        noise_px=0.0,
        info={"camera": CAMERA.to_dict()},
    )

    joint_shift = np.asarray(joint_shift, dtype=np.float64)
    joints = np.zeros((len(JOINT_INDEX), 3))
    joints[JOINT_INDEX["left_knee"]] = ANCHOR + joint_shift
    joints[JOINT_INDEX["left_ankle"]] = ANCHOR + joint_shift + np.asarray(ankle, dtype=np.float64)
    p_verts = np.concatenate([torso.vertices + joint_shift, pred_mesh.vertices])
    p_faces = np.concatenate([torso.faces, pred_mesh.faces + 8])
    limb_mask = np.arange(len(p_verts)) >= 8
    body_verts = torso.vertices if body_transform is None else apply_similarity(torso.vertices, *body_transform)
    pred_kp = kp[:, :2] + np.asarray(kp_offset)
    pred = Prediction(
        method="test",
        ann_id=1,
        verts_cam=p_verts,
        faces=p_faces,
        limb_masks={"left_leg": limb_mask},
        joints_cam=joints,
        keypoints_px=pred_kp,
        body_verts_cam=body_verts,
        body_name="box",
        seconds=0.0,
    )
    mask = rasterize(verts_cam=torch.as_tensor(verts), faces=torch.as_tensor(faces), camera=CAMERA).mask.numpy()
    return pred, gt, mask


def test_a_perfect_prediction_scores_zero_and_iou_one():
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT))
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert row["type"] == "left_transtibial" and row["shape"] == "rounded"
    for key in (
        "endpoint_err_mm",
        "length_err_mm",
        "length_err_pct",
        "volume_err_pct",
        "stump_dist_mean_mm",
        "stump_dist_p95_mm",
        "pa_v2v_mm",
        "kp_body_px",
    ):
        assert row[key] == pytest.approx(0.0, abs=1e-6), key
    assert row["mask_iou"] == 1.0 and row["stump_iou"] == 1.0
    assert math.isnan(row["kp_res_limb_px"])  # the truth labels no residual endpoint here


def test_a_longer_stump_has_the_known_errors():
    extra = 0.04
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT + extra), kp_offset=(3.0, 4.0))
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert row["endpoint_err_mm"] == pytest.approx(40.0, abs=1e-6)
    assert row["length_err_mm"] == pytest.approx(40.0, abs=1e-6)
    assert row["length_err_pct"] == pytest.approx(extra / SEGMENT_M * 100, abs=1e-6)
    # Volume: the extra cylinder, pi r^2 * 4 cm, over the true capsule (discretised alike: 0.5 %).
    expected = math.pi * RADIUS**2 * extra / gt.limbs[0].measurements.geometry.volume_m3 * 100
    assert row["volume_err_pct"] == pytest.approx(expected, rel=0.02)
    assert 0 < row["stump_dist_mean_mm"] < row["stump_dist_p95_mm"] <= 40.0 + 1e-6
    assert row["kp_body_px"] == pytest.approx(5.0) and row["kp_intact_px"] == pytest.approx(5.0)
    assert row["mask_iou"] < 1.0


def test_a_thicker_stump_has_its_surface_distance():
    delta = 0.01
    thick = _capsule(radius=RADIUS, height=HEIGHT)
    # Scale radially about the axis only: the cylinder part moves out by exactly delta.
    rel = thick.vertices - ANCHOR
    along = rel @ AXIS
    radial = rel - np.outer(along, AXIS)
    thick.vertices = ANCHOR + np.outer(along, AXIS) + radial * (RADIUS + delta) / RADIUS
    pred, gt, mask = _case(thick)
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert row["stump_dist_p95_mm"] == pytest.approx(10.0, rel=0.03)
    assert 5.0 < row["stump_dist_mean_mm"] <= 10.0 + 1e-6
    assert row["length_err_mm"] == pytest.approx(0.0, abs=1e-6)  # the poles did not move
    ratio = ((RADIUS + delta) / RADIUS) ** 2
    assert row["volume_err_pct"] == pytest.approx((ratio - 1) * 100, rel=0.02)


def test_anchor_and_procrustes_alignment_take_out_a_rigid_offset():
    shift = np.array([0.05, -0.02, 0.3])  # the whole fit 30 cm deeper: single-view depth ambiguity
    rot = roma.rotvec_to_rotmat(torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64)).numpy()
    pred, gt, mask = _case(
        _capsule(radius=RADIUS, height=HEIGHT, shift=shift), joint_shift=shift, body_transform=(1.2, rot, shift)
    )
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    for key in ("endpoint_err_mm", "length_err_mm", "volume_err_pct", "stump_dist_mean_mm", "pa_v2v_mm"):
        assert row[key] == pytest.approx(0.0, abs=1e-6), key


def test_a_missing_limb_is_nan_and_another_body_model_has_no_vertex_error():
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT))
    pred = Prediction(**{**vars(pred), "limb_masks": {}, "body_name": "smplx"})
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert all(math.isnan(row[k]) for k in ("endpoint_err_mm", "length_err_mm", "volume_err_pct", "pa_v2v_mm"))
    assert row["mask_iou"] == 1.0  # 2D scores need no limb


# --------------------------------------------------------------------------- pose-free shape
SHAPE_KEYS = ("shape_local_mean_mm", "shape_icp_mean_mm", "perimeter_err_pct", "volume_sf_err_pct", "tip_reproj_px")
ENDPOINT_KP = LIMB_BY_NAME["left_leg"].endpoint_index(LimbStatus.TRANSTIBIAL)


def _about_anchor(mesh: trimesh.Trimesh, matrix: np.ndarray) -> trimesh.Trimesh:
    """A copy of ``mesh`` with its vertices mapped by ``matrix`` (3, 3) about ANCHOR."""
    out = mesh.copy()
    out.vertices = (mesh.vertices - ANCHOR) @ np.asarray(matrix).T + ANCHOR
    return out


def test_surface_query_finds_the_exact_closest_points():
    mesh = _capsule(radius=RADIUS, height=HEIGHT)  # long thin cylinder triangles: bisected inside
    rng = np.random.default_rng(3)
    near = sample_surface_points(mesh.vertices, mesh.faces, 400, seed=1) + rng.normal(0.0, 0.004, (400, 3))
    points = np.concatenate([near, ANCHOR + rng.normal(0.0, 0.3, (100, 3))])
    closest, dist, normal = SurfaceQuery.build(mesh.vertices, mesh.faces).closest(points)
    assert np.allclose(np.linalg.norm(points - closest, axis=1), dist)
    assert np.allclose(surface_distances(closest, mesh.vertices, mesh.faces), 0.0, atol=1e-9)  # on the surface
    reference = surface_distances(points, mesh.vertices, mesh.faces)  # trimesh: a point of the surface too
    assert np.all(dist <= reference + 1e-12) and np.allclose(dist, reference, atol=5e-5)
    assert np.allclose(np.linalg.norm(normal, axis=1), 1.0)


def test_sampled_points_cover_the_surface_by_area_and_repeat_with_the_seed():
    box = trimesh.creation.box(extents=(1.0, 2.0, 3.0))
    points = sample_surface_points(box.vertices, box.faces, 2200, seed=4)
    assert points.shape == (2200, 3) and np.allclose(surface_distances(points, box.vertices, box.faces), 0.0)
    on_face = np.abs(np.abs(points) - np.array([0.5, 1.0, 1.5])) < 1e-9  # which pair of faces each lies on
    # Areas of the x, y, z face pairs: 2 * (6, 3, 2) of 22.
    assert np.allclose(on_face.sum(axis=0) / len(points), [6 / 11, 3 / 11, 2 / 11], atol=0.01)
    assert np.array_equal(points, sample_surface_points(box.vertices, box.faces, 2200, seed=4))
    assert not np.allclose(points, sample_surface_points(box.vertices, box.faces, 2200, seed=5))
    assert sample_surface_points(box.vertices, box.faces[:0], 10, seed=0).shape == (0, 3)


def test_rotation_between_is_the_smallest_and_icp_recovers_a_rigid_motion():
    for a, b in (
        ([0.0, 1.0, 0.0], [1.0, 0.0, 0.0]),
        ([1.0, 2.0, 3.0], [1.0, 2.0, 3.1]),
        ([0.0, 1.0, 0.0], [0.0, -1.0, 0.0]),
        ([0.3, 0.1, 0.2], [0.3, 0.1, 0.2]),
    ):
        a, b = np.array(a) / np.linalg.norm(a), np.array(b) / np.linalg.norm(b)
        rot = rotation_between(a, b)
        assert np.allclose(rot @ rot.T, np.eye(3)) and np.linalg.det(rot) == pytest.approx(1.0)
        assert np.allclose(rot @ a, b)
        if np.linalg.norm(np.cross(a, b)) > 1e-9:  # about a x b, by the angle between them
            assert np.allclose(rot @ np.cross(a, b), np.cross(a, b))
    assert np.allclose(rotation_vector_matrix(np.array([0.0, 0.0, math.pi / 2])) @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0])

    box = trimesh.creation.box(extents=(0.1, 0.2, 0.3))  # no symmetry a small motion could hide in
    source = sample_surface_points(box.vertices, box.faces, 1000, seed=0)
    motion = rotation_vector_matrix(np.array([0.05, -0.03, 0.04]))
    moved = source @ motion.T + np.array([0.01, -0.005, 0.008])
    rot, transl, dist = icp_rigid(moved, SurfaceQuery.build(box.vertices, box.faces))
    assert np.allclose(moved @ rot.T + transl, source, atol=1e-7) and np.allclose(rot @ motion, np.eye(3), atol=1e-7)
    assert dist.shape == (1000,) and dist.max() < 1e-7


def test_perimeter_profile_of_a_capsule():
    mesh = _capsule(radius=RADIUS, height=HEIGHT)
    everything = np.ones(len(mesh.vertices), dtype=bool)
    tip = ANCHOR + AXIS * (HEIGHT + 2 * RADIUS)
    perimeters = perimeter_profile(mesh.vertices, mesh.faces, everything, ANCHOR, ANCHOR + AXIS * SEGMENT_M, tip)
    polygon = 2 * 32 * RADIUS * math.sin(math.pi / 32)  # the cylinder's 32-gon
    assert perimeters[1:4] == pytest.approx([polygon] * 3, rel=1e-9)  # 0.3, 0.5, 0.7: on the cylinder
    assert perimeters[0] < polygon and perimeters[4] < polygon  # 0.1, 0.9: on the caps
    # A tip past the capsule: the stations at 0.5, 0.7, 0.9 of 0.7 m miss the surface.
    far = perimeter_profile(mesh.vertices, mesh.faces, everything, ANCHOR, ANCHOR + AXIS, ANCHOR + AXIS * 0.7)
    assert np.isfinite(far[:2]).all() and np.isnan(far[2:]).all()
    assert np.isnan(perimeter_profile(mesh.vertices, mesh.faces, everything, ANCHOR, ANCHOR + AXIS, ANCHOR)).all()


def test_a_perfect_prediction_has_no_shape_error_and_a_missing_limb_none():
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT))
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    for key in SHAPE_KEYS[:-1]:
        assert row[key] == pytest.approx(0.0, abs=1e-6), key
    assert math.isnan(row["tip_reproj_px"])  # the truth labels no residual endpoint here
    (row,) = score_prediction(Prediction(**{**vars(pred), "limb_masks": {}}), gt, mask=mask, camera=CAMERA)
    assert all(math.isnan(row[k]) for k in SHAPE_KEYS)


def test_a_rotated_and_deeper_stump_has_no_shape_error():
    """The truth turned rigidly about its anchor (with a twist about the limb) and fitted 30 cm
    deeper: the anchor-aligned surface distance is large, the pose-free ones are not."""
    rot = rotation_vector_matrix(np.array([0.5, 0.3, 0.2]))
    depth = np.array([0.0, 0.0, 0.3])
    turned = _about_anchor(_capsule(radius=RADIUS, height=HEIGHT), rot)
    turned.apply_translation(depth)
    pred, gt, mask = _case(turned, joint_shift=depth, ankle=rot @ AXIS * SEGMENT_M)
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert row["stump_dist_mean_mm"] > 30.0 and row["endpoint_err_mm"] > 100.0
    assert row["shape_local_mean_mm"] < 0.5 and row["shape_icp_mean_mm"] < 0.5
    assert row["perimeter_err_pct"] == pytest.approx(0.0, abs=0.5)
    assert row["volume_sf_err_pct"] == pytest.approx(0.0, abs=1e-6)


def test_a_thicker_stump_has_its_shape_and_perimeter_errors():
    delta = 0.01
    # Offset surface: radius + delta about the same centres (the poles move out by delta too).
    (row,) = score_prediction(
        *_case(_capsule(radius=RADIUS + delta, height=HEIGHT, shift=-delta * AXIS))[:2],
        mask=_case(_capsule(radius=RADIUS, height=HEIGHT))[2],
        camera=CAMERA,
    )
    assert row["shape_local_mean_mm"] == pytest.approx(10.0, abs=0.3)
    assert row["shape_icp_mean_mm"] == pytest.approx(10.0, abs=0.5)
    # Radially scaled about the axis (the poles stay): each section's perimeter grows by (r + delta) / r.
    thick = _capsule(radius=RADIUS, height=HEIGHT)
    rel = thick.vertices - ANCHOR
    along = np.outer(rel @ AXIS, AXIS)
    thick.vertices = ANCHOR + along + (rel - along) * (RADIUS + delta) / RADIUS
    (row,) = score_prediction(*_case(thick)[:2], mask=_case(thick)[2], camera=CAMERA)
    assert row["perimeter_err_pct"] == pytest.approx(2 * math.pi * delta / (2 * math.pi * RADIUS) * 100, rel=1e-6)
    assert 0.7 * 10.0 < row["shape_local_mean_mm"] <= 10.0 + 1e-6  # delta on the cylinder, less on the caps


def test_a_uniformly_scaled_stump_has_no_scale_free_volume_error():
    scale = 1.2
    big = _about_anchor(_capsule(radius=RADIUS, height=HEIGHT), scale * np.eye(3))
    pred, gt, mask = _case(big, ankle=AXIS * SEGMENT_M * scale)
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert row["volume_err_pct"] == pytest.approx((scale**3 - 1) * 100, rel=1e-6)
    assert row["volume_sf_err_pct"] == pytest.approx(0.0, abs=1e-6)
    assert row["length_err_pct"] == pytest.approx(0.0, abs=1e-6)
    assert row["perimeter_err_pct"] == pytest.approx((scale - 1) * 100, rel=1e-6)  # stations scale alike


def test_tip_reprojection_against_the_clean_endpoint_keypoint():
    pred, gt, mask = _case(_capsule(radius=RADIUS, height=HEIGHT, shift=(0.03, 0.0, 0.0)), joint_shift=(0.03, 0.0, 0.0))
    gt.keypoints_px[ENDPOINT_KP] = [163.0, 164.0, 2.0]
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    # The tip (0.03, 0, 3.0) projects to (800 * 0.03 / 3 + 160, 160) = (168, 160): 5 and 4 px off.
    assert row["tip_reproj_px"] == pytest.approx(math.sqrt(41.0), abs=1e-9)
    gt.keypoints_px[ENDPOINT_KP, 2] = 0.0  # unlabelled
    (row,) = score_prediction(pred, gt, mask=mask, camera=CAMERA)
    assert math.isnan(row["tip_reproj_px"])


def test_the_shape_scores_are_deterministic():
    rot = rotation_vector_matrix(np.array([0.2, -0.4, 0.1]))
    lumpy = _about_anchor(_capsule(radius=RADIUS, height=HEIGHT), rot @ np.diag([1.3, 0.9, 1.1]))
    pred, gt, mask = _case(lumpy, ankle=rot @ AXIS * SEGMENT_M)
    gt.keypoints_px[ENDPOINT_KP] = [150.0, 250.0, 2.0]
    first, second = (score_prediction(pred, gt, mask=mask, camera=CAMERA)[0] for _ in range(2))
    for key in SHAPE_KEYS:
        assert math.isfinite(first[key]) and first[key] == second[key], key
    assert first["shape_icp_mean_mm"] < first["shape_local_mean_mm"]


def test_joint_lambda_snaps_to_the_nearer_joint():
    assert joint_lambda(0.2, lam_min=0.05) == 0.05 and joint_lambda(0.49, lam_min=0.05) == 0.05
    assert joint_lambda(0.5, lam_min=0.05) == 1.0 and joint_lambda(0.9, lam_min=0.05) == 1.0


# --------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def fitted(anny_body, tmp_path_factory):
    """Three generated people (transtibial and transfemoral limbs; the third at 2 px keypoint
    noise) fitted and written as `fit` does."""
    from resihmr_dr.batch import fit_dataset

    root = tmp_path_factory.mktemp("bench")
    generate_dataset(
        root / "synth",
        count=3,
        seed=5,
        types="left_transtibial,right_transfemoral",
        image_size=192,
        noise_px=(0.0, 2.0),
        body=anny_body,
        progress=False,
    )
    dataset = load_annotations(root / "synth" / "annotations.json")
    summary = fit_dataset(dataset, body=anny_body, out_dir=root / "fit", config=FAST_PIPELINE, progress=False)
    assert summary.ok, summary.failures
    return root


def test_noise_levels_cycle_over_rounds_of_types(fitted):
    truth = load_ground_truth(fitted / "synth")
    assert [truth[i].noise_px for i in (1, 2, 3)] == [0.0, 0.0, 2.0]  # a level per round of the two types
    index = json.loads((fitted / "synth" / "gt" / "index.json").read_text())
    assert index["generator"]["noise_px"] == [0.0, 2.0]


@pytest.mark.slow
def test_eval_scores_every_method_and_the_baselines_rank_as_expected(anny_body, fitted, tmp_path):
    config = ResihmrConfig(fit=FAST_PIPELINE)
    sweep = SweepSpec("mask_weight", ("fit.refine.weights.silhouette", "fit.refine.weights.stump_silhouette"), (0.0,))
    result = evaluate(
        pred_dir=fitted / "fit", gt_dir=fitted / "synth", body=anny_body, config=config, sweep=sweep, progress=False
    )
    assert not result.failures
    assert result.methods == [*METHODS, "ours[mask_weight=0]"]
    limbs = sum(len(gt.limbs) for gt in load_ground_truth(fitted / "synth").values())
    by = {(r["method"], r["ann_id"], r["limb"]): r for r in result.rows}
    assert len(by) == len(result.rows) == 5 * limbs
    for (method, ann_id, limb), row in by.items():
        for key, _, _ in PERSON_METRICS + LIMB_METRICS:
            if key != "kp_res_limb_px" or method != "intact":
                assert math.isfinite(row[key]), (method, key)
        intact = by[("intact", ann_id, limb)]
        # The hallucinated limb runs on past the true stump by the rest of the limb.
        assert (
            intact["length_err_mm"] > 150
            and intact["length_err_mm"] > 3 * by[("resihmr", ann_id, limb)]["length_err_mm"]
        )
        assert intact["stump_dist_mean_mm"] > by[("resihmr", ann_id, limb)]["stump_dist_mean_mm"]
        if method != "ours":  # the baselines share the intact fit; ours refines the body against the mask
            assert row["pa_v2v_mm"] == pytest.approx(intact["pa_v2v_mm"])
        # The sweep's weight 0 is the convex cap refitted: the resihmr baseline exactly.
        sweep_row = by[("ours[mask_weight=0]", ann_id, limb)]
        for key, _, _ in LIMB_METRICS:
            assert sweep_row[key] == pytest.approx(by[("resihmr", ann_id, limb)][key], abs=1e-9), key
        assert intact["seconds"] < by[("resihmr", ann_id, limb)]["seconds"]

    summary = {s["method"]: s for s in summarise(result.rows)}
    assert summary["intact"]["people"] == 3 and summary["ours"]["limbs"] == limbs
    paths = write_outputs(tmp_path / "eval", result, command="resihmr-dr eval --pred P --gt G")
    assert {p.name for p in paths.values()} == {
        "eval.csv",
        "eval.md",
        "eval_by_type.png",
        "eval_by_shape.png",
        "eval_by_noise.png",
    }
    with open(paths["csv"]) as fh:
        assert len(list(csv.DictReader(fh))) == 5 * limbs
    md = paths["md"].read_text()
    assert all(label in md for label in METHOD_LABELS.values()) and "resihmr-dr eval --pred P --gt G" in md
    assert "## By residual type" in md and "left_transtibial" in md and "## By stump shape" in md
    assert "Shape (pose-free)" in md and "| shape dist., ICP (mm) |" in md


def test_the_folder_reads_back_as_the_fit_it_was_written_from(anny_body, fitted):
    """`ours` scored from the written folder equals `ours` scored from the fit in memory."""
    dataset = load_annotations(fitted / "synth" / "annotations.json")
    person = dataset.people[0]
    mask = dataset.mask(person)
    fit = fit_person(
        body=anny_body,
        person=person,
        camera=PinholeCamera.for_image(dataset.image_of(person)),
        mask=mask,
        config=FAST_PIPELINE,
    )
    folder = fitted / "fit" / f"image{person.image_id}_ann{person.ann_id}"
    gt = load_ground_truth(fitted / "synth")[person.ann_id]
    from_folder = score_prediction(
        prediction_from_folder(read_fitted_folder(folder), body=anny_body, method="ours"),
        gt,
        mask=mask,
        camera=gt.camera,
    )
    in_memory = score_prediction(
        prediction_from_fit(fit, body=anny_body, method="ours"), gt, mask=mask, camera=gt.camera
    )
    for a, b in zip(from_folder, in_memory, strict=True):
        for key, _, _ in PERSON_METRICS + LIMB_METRICS:
            # ICP's nearest-point pairs can flip on the PLY round trip's last digits: 0.02 mm there.
            tol = 0.02 if key == "shape_icp_mean_mm" else 1e-3
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=tol), key
    stump = json.loads((folder / "stump.json").read_text())["posed"][0]
    # The evaluator's own measurement of the folder matches the pipeline's stump.json.
    true_length = gt.limbs[0].measurements.geometry.length_m
    assert abs(stump["length_m"] - true_length) * 1000 == pytest.approx(from_folder[0]["length_err_mm"], abs=1.0)


@pytest.mark.slow
def test_a_bad_folder_fails_alone_and_the_cli_reports_it(anny_body, fitted, tmp_path, capsys, monkeypatch):
    pred = tmp_path / "fit"
    shutil.copytree(fitted / "fit", pred)
    (pred / "image1_ann1" / "params.json").write_text('{"params": ')  # truncated
    shutil.rmtree(pred / "image2_ann2")
    result = evaluate(
        pred_dir=pred,
        gt_dir=fitted / "synth",
        body=anny_body,
        config=ResihmrConfig(fit=FAST_PIPELINE),
        methods=("intact", "ours"),
        progress=False,
    )
    assert {r["ann_id"] for r in result.rows} == {3} and len(result.failures) == 4  # 2 methods x 2 people
    reasons = {f["ann_id"]: f["reason"] for f in result.failures}
    assert "params.json" in reasons[1] and "malformed JSON" in reasons[1]
    assert "no fitted folder" in reasons[2]

    shutil.copytree(fitted / "fit" / "image2_ann2", pred / "image2_ann2")  # one good person back
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    monkeypatch.setattr("resihmr_dr.body.factory.build_body_model", lambda *a, **k: anny_body)
    args = parser.parse_args(
        [
            "eval",
            "--pred",
            str(pred),
            "--gt",
            str(fitted / "synth"),
            "--out",
            str(tmp_path / "e"),
            "--methods",
            "intact,joint",
            "--no-progress",
        ]
    )
    assert args.func(args) == 1  # one person failed
    captured = capsys.readouterr()
    assert "FAILED intact, annotation 1" in captured.err and "params.json" in captured.err
    with open(tmp_path / "e" / "eval.csv") as fh:
        assert {row["ann_id"] for row in csv.DictReader(fh)} == {"2", "3"}  # the good people are scored


def test_cli_rejects_bad_input(fitted, tmp_path, capsys):
    parser = argparse.ArgumentParser()
    add_eval_parser(parser.add_subparsers())
    cases = [
        (["--gt", str(tmp_path)], "resihmr-dr synth"),
        (["--gt", str(fitted / "synth"), "--methods", "intact,magic"], "unknown method"),
        (["--gt", str(fitted / "synth"), "--sweep", str(tmp_path / "none.yaml")], "none.yaml"),
    ]
    for extra, message in cases:
        args = parser.parse_args(["eval", "--pred", str(fitted / "fit"), "--out", str(tmp_path / "o"), *extra])
        assert args.func(args) == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    args = parser.parse_args(["eval", "--pred", str(tmp_path / "nowhere"), "--gt", str(fitted / "synth")])
    assert args.func(args) == 2 and "nowhere" in capsys.readouterr().err


def test_a_corrupt_ground_truth_names_the_file(fitted, tmp_path):
    gt = tmp_path / "synth"
    shutil.copytree(fitted / "synth", gt)
    path = next((gt / "gt").glob("*/gt.json"))
    data = json.loads(path.read_text())
    del data["residual_limbs"][0]["measurements"]
    path.write_text(json.dumps(data))
    with pytest.raises(GroundTruthError, match="gt.json"):
        load_ground_truth(gt)
