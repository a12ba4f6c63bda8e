"""Round trips of the whole ResiHMR pipeline: generate a person with known residual limbs with
the Anny body, project its keypoints, fit, and compare; plus degenerate inputs in a batch."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import scipy.spatial
import torch
import trimesh
from synthetic_people import CAMERA, anny_pose, make_person, stumped_person

from resihmr_dr.batch import fit_dataset
from resihmr_dr.body.base import SEGMENT_INDEX
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, LimbStatus
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.failures import FAILURES_FILE, FailureStage
from resihmr_dr.fit.intact_config import IntactFitConfig, StageWeights
from resihmr_dr.fit.pipeline import PipelineConfig, fit_person
from resihmr_dr.fit.refine import RefineConfig

# Two short stages instead of five: enough on noise-free keypoints, and 5x faster; a few
# refinement steps exercise that stage where a mask is given (tests/test_refine.py checks it).
FAST = PipelineConfig(
    intact=IntactFitConfig(
        stages=(
            StageWeights(pose_prior=404.0, shape_prior=100.0, angle_limit=300.0, iterations=10),
            StageWeights(pose_prior=4.78, shape_prior=5.0, angle_limit=50.0, iterations=25),
        )
    ),
    refine=RefineConfig(iterations=3, image_size=96, roi_size=64),
)
S = LimbStatus
SINGLE = [
    ("left_arm", S.TRANSHUMERAL, 0.55),
    ("right_arm", S.TRANSHUMERAL, 0.55),
    ("left_arm", S.TRANSRADIAL, 0.5),
    ("right_arm", S.TRANSRADIAL, 0.5),
    ("left_leg", S.TRANSFEMORAL, 0.6),
    ("right_leg", S.TRANSFEMORAL, 0.6),
    ("left_leg", S.TRANSTIBIAL, 0.45),
    ("right_leg", S.TRANSTIBIAL, 0.45),
]
# The fitted joints differ from the true ones by the single-view depth/shape ambiguity (the 3D
# endpoint is ~20 cm off in depth), so λ, a ratio along the fitted segment, is recovered to ~0.1
# (measured: at most 0.10, on the foreshortened right forearm); the endpoint reprojects exactly.
LAMBDA_TOL = 0.12
REPROJ_TOL_PX = 2.0


def _check_mesh(fit) -> None:
    mesh = trimesh.Trimesh(fit.verts_cam, fit.faces, process=False)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0
    tpose = trimesh.Trimesh(fit.verts_tpose, fit.faces_tpose, process=False)
    assert tpose.is_watertight and tpose.volume > 0
    assert np.array_equal(fit.faces_tpose, fit.faces)  # the same mesh, re-posed
    assert fit.residual_mask.shape == (len(fit.verts_cam),) and fit.residual_mask.any()


@pytest.fixture(scope="module")
def params(anny_body):
    return anny_pose(anny_body)


@pytest.mark.parametrize("limb,status,lam", SINGLE, ids=[f"{s.value}-{limb}" for limb, s, _ in SINGLE])
def test_single_residual_limb_round_trip(anny_body, params, limb, status, lam):
    person, truth = make_person(anny_body, params, {limb: (status, lam)})
    fit = fit_person(body=anny_body, person=person, camera=CAMERA, config=FAST)
    (result,) = fit.rafo
    assert result.limb_name == limb and result.status is status and result.accepted
    assert result.reproj_error_px < REPROJ_TOL_PX
    assert abs(result.lam - lam) < LAMBDA_TOL
    # Without a mask the mesh keeps the intact fit's limb and the tip sits at RAFO's λ on it, so
    # the tip misses the keypoint by as much as RAFO moved the anchor (measured 2.8-14 px here);
    # the silhouette refinement poses the limb onto it (test_params_describe_the_written_mesh).
    assert fit.metrics.intact_px < 3.0 and fit.metrics.res_limb_px < 20.0
    _check_mesh(fit)
    # The other side's limbs keep every vertex, where the fitted body put it.
    other = "right" if limb.startswith("left") else "left"
    with torch.no_grad():
        intact_verts = anny_body(fit.params).verts[0].double().numpy()
    ids = np.flatnonzero(
        np.isin(
            anny_body.vertex_segment.numpy(),
            [
                SEGMENT_INDEX[f"{other}_{segment}"]
                for segment in ("upper_arm", "forearm", "hand", "thigh", "shank", "foot")
            ],
        )
    )
    dist, _ = scipy.spatial.cKDTree(fit.verts_cam).query(intact_verts[ids])
    assert dist.max() < 1e-6
    geometry = fit.stump[0]
    assert 0 < geometry.length_fraction < 1.2 and geometry.volume_m3 > 0


@pytest.mark.parametrize(
    "residual",
    [
        {"left_leg": (S.TRANSTIBIAL, 0.45), "right_leg": (S.TRANSTIBIAL, 0.55)},  # bilateral
        {"right_arm": (S.TRANSRADIAL, 0.5), "left_leg": (S.TRANSFEMORAL, 0.6)},  # arm and leg
    ],
    ids=["bilateral-transtibial", "arm-and-leg"],
)
def test_multi_limb_round_trip(anny_body, params, residual):
    person, _ = make_person(anny_body, params, residual)
    fit = fit_person(body=anny_body, person=person, camera=CAMERA, config=FAST)
    assert [r.limb_name for r in fit.rafo] == [
        n for n in ("left_arm", "right_arm", "left_leg", "right_leg") if n in residual
    ]
    for result in fit.rafo:
        assert result.accepted and result.reproj_error_px < REPROJ_TOL_PX
        assert abs(result.lam - residual[result.limb_name][1]) < LAMBDA_TOL
    assert len(fit.stump) == len(residual) == len(fit.stump_tpose)
    _check_mesh(fit)


def test_endpoint_beyond_distal_joint_is_flagged_not_crashed(anny_body, params):
    person, _ = make_person(anny_body, params, {"right_leg": (S.TRANSTIBIAL, 0.5)})
    kp = np.array(person.keypoints_px)
    ankle_true = np.array(make_person(anny_body, params, {})[0].keypoints_px)[KEYPOINT_INDEX["right_ankle"], :2]
    knee = kp[KEYPOINT_INDEX["right_knee"], :2]
    kp[KEYPOINT_INDEX["below_right_knee_end"], :2] = knee + 1.6 * (ankle_true - knee)  # beyond the ankle
    from dataclasses import replace

    fit = fit_person(body=anny_body, person=replace(person, keypoints_px=kp), camera=CAMERA, config=FAST)
    (result,) = fit.rafo
    assert result.clamped and result.lam == pytest.approx(FAST.rafo.lam_max, abs=1e-3)
    assert not result.accepted and result.fallback and result.reason
    _check_mesh(fit)


def _dataset_with(tmp_path, keypoint_sets):
    """An LDpose file with the sample's image and mask and the given keypoint arrays."""
    doc = json.loads(sample_annotations_path().read_text())
    base = doc["annotations"][0]
    doc["annotations"] = [
        dict(base, id=i + 1, keypoints=[float(v) for v in np.asarray(kp).ravel()]) for i, kp in enumerate(keypoint_sets)
    ]
    for name in ("image.png", "mask.png"):
        (tmp_path / name).write_bytes((sample_annotations_path().parent / name).read_bytes())
    path = tmp_path / "people.json"
    path.write_text(json.dumps(doc))
    return load_annotations(path, on_error="collect")


def test_batch_records_degenerate_people_and_keeps_the_rest(anny_body, tmp_path):
    good = np.array(load_annotations(sample_annotations_path()).people[0].keypoints_px)
    no_torso = good.copy()
    no_torso[[KEYPOINT_INDEX[n] for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")], 2] = 0
    on_a_line = good.copy()
    labelled = on_a_line[:, 2] > 0
    on_a_line[labelled, 0] = 240.0  # every keypoint on one vertical line
    dataset = _dataset_with(tmp_path, [no_torso, good, on_a_line])
    out = tmp_path / "out"
    summary = fit_dataset(dataset, body=anny_body, out_dir=out, config=FAST, progress=False)
    assert "image1_ann2" in summary.written
    failed = {f.ann_id: f for f in summary.failures}
    assert 1 in failed and failed[1].stage == FailureStage.FIT
    assert any(word in failed[1].reason.lower() for word in ("shoulder", "torso", "hip"))
    # A line of keypoints either fails with a reason or is fitted (and written, flagged or not);
    # it never crashes the batch.
    fit_failed = 3 in failed and failed[3].stage != FailureStage.QUALITY
    assert fit_failed != ("image1_ann3" in summary.written)
    assert not (out / "image1_ann1").exists()
    recorded = json.loads((out / FAILURES_FILE).read_text())
    assert {f["ann_id"] for f in recorded} == set(failed)
    # A rerun skips the finished people and retries (and again records) the failed ones.
    again = fit_dataset(dataset, body=anny_body, out_dir=out, config=FAST, progress=False)
    assert "image1_ann2" in again.skipped and again.written == []
    assert {f.ann_id for f in again.failures} == set(failed)


def test_smplx_body_round_trip(tiny_smplx_body):
    """The same pipeline on the SMPL-X adapter (a small SMPL-X-format model made by the tests)."""
    import torch

    body = tiny_smplx_body
    params = body.default_params(1, depth_m=3.2)
    pose = torch.zeros_like(params.body_pose)
    pose[0, body.pose_joint_names.index("left_shoulder"), 2] = -0.9  # arms down from the T-pose
    pose[0, body.pose_joint_names.index("right_shoulder"), 2] = 0.9
    pose[0, body.pose_joint_names.index("right_knee"), 0] = 0.4
    params = params.replace(body_pose=pose, transl=torch.tensor([[0.0, 0.1, 3.2]]))
    person, _ = make_person(body, params, {"right_leg": (S.TRANSTIBIAL, 0.5)})
    fit = fit_person(body=body, person=person, camera=CAMERA, config=FAST)
    (result,) = fit.rafo
    assert result.accepted and result.reproj_error_px < REPROJ_TOL_PX
    assert abs(result.lam - 0.5) < LAMBDA_TOL
    _check_mesh(fit)


def test_imported_initial_fit_skips_the_intact_stages(anny_body, params):
    person, _ = make_person(anny_body, params, {"left_leg": (S.TRANSFEMORAL, 0.6)})
    fit = fit_person(body=anny_body, person=person, camera=CAMERA, init=params, config=FAST)
    assert fit.intact.stages == ()  # refine_iterations = 0 by default: the import is used as is
    assert fit.metrics.intact_px < 1.0  # the true parameters reproject exactly
    (result,) = fit.rafo
    assert abs(result.lam - 0.6) < 0.02  # the joints are the true ones: only RAFO's own error


@pytest.mark.parametrize("refined", [False, True], ids=["convex", "refined"])
def test_params_describe_the_written_mesh(anny_body, params, tmp_path, refined):
    """params.json's anchor, target, endpoint and λ, and stump.json's length, are the written
    mesh's: its body's joints, its cap's tip vertex and the tip's fraction along J_a -> J_t."""
    from resihmr_dr.outputs import write_person

    person, mask, _ = stumped_person(
        anny_body, params, limb="right_leg", status=S.TRANSFEMORAL, lam=0.55, shape="tapered", seed=1
    )
    config = FAST if refined else PipelineConfig(intact=FAST.intact, refine=RefineConfig(iterations=0))
    fit = fit_person(body=anny_body, person=person, camera=CAMERA, mask=mask if refined else None, config=config)
    assert (fit.refinement is not None) == refined
    assert repr(fit).startswith(f"PersonFit(ann_id={fit.ann_id}, ") and "right_leg transfemoral λ=" in repr(fit)
    assert len(repr(fit)) < 200  # a summary, not the arrays
    assert sum(dataclasses.astuple(fit.stage_seconds)) == pytest.approx(fit.stage_seconds.total)
    assert 0 < fit.stage_seconds.total <= fit.seconds and (fit.stage_seconds.refine > 0) == refined
    folder = write_person(fit, tmp_path)
    written = json.loads((folder / "params.json").read_text())
    stump = json.loads((folder / "stump.json").read_text())["posed"]
    mesh = trimesh.load(folder / "mesh.ply", process=False)
    from resihmr_dr.body.base import JOINT_INDEX, BodyParams

    body_params = BodyParams.from_dict({k: [v] for k, v in written["params"].items()})
    with torch.no_grad():
        joints = anny_body(body_params).joints[0].double().numpy()
    (limb,) = written["residual_limbs"]
    anchor, target, tip = (np.asarray(limb[k]) for k in ("anchor_cam", "target_cam", "endpoint_cam"))
    np.testing.assert_allclose(anchor, joints[JOINT_INDEX["right_hip"]], atol=1e-5)
    np.testing.assert_allclose(target, joints[JOINT_INDEX["right_knee"]], atol=1e-5)
    # The endpoint is the tip: a vertex of the written mesh, the farthest of the limb along the axis.
    verts = np.asarray(mesh.vertices)
    residual = np.load(folder / "residual_mask.npy")
    axis = (target - anchor) / np.linalg.norm(target - anchor)
    limb_verts = verts[residual]
    assert np.linalg.norm(verts - tip, axis=1).min() < 1e-6
    assert ((limb_verts - anchor) @ axis).max() <= (tip - anchor) @ axis + 1e-7, (
        (limb_verts - anchor) @ axis
    ).max() - (tip - anchor) @ axis
    lam = float((tip - anchor) @ (target - anchor) / np.sum((target - anchor) ** 2))
    assert limb["lambda"] == pytest.approx(lam, abs=1e-6)
    assert stump[0]["length_fraction"] == pytest.approx(lam, abs=1e-6)
    assert stump[0]["length_m"] == pytest.approx(lam * np.linalg.norm(target - anchor), abs=1e-6)
    # Its reprojection is what params.json says.
    xy = CAMERA.project(torch.as_tensor(tip)[None]).numpy()[0]
    kp = np.asarray(person.keypoints_px)[KEYPOINT_INDEX["above_right_knee_end"], :2]
    assert limb["endpoint_reprojection_px"] == pytest.approx(float(np.linalg.norm(xy - kp)), abs=1e-6)
    if refined:
        stages = written["refinement"]["stages"]
        assert [s["name"] for s in stages][:2] == ["body", "stump"]
        assert all(s["iterations"] >= 1 and s["stop_reason"] in ("ftol", "gtol", "max_iters") for s in stages)
        assert set(stages[0]["terms_last"]) >= {"silhouette", "stump_silhouette", "contour", "depth", "endpoint"}


def test_zero_mask_weights_give_the_convex_cap_exactly(anny_body, params):
    """Mask weight 0 is the paper's reconstruction: the same mesh as with the refinement off."""
    import dataclasses

    from resihmr_dr.fit.refine import RefineWeights
    from resihmr_dr.render.zbuffer import rasterize

    person, _ = make_person(anny_body, params, {"left_leg": (S.TRANSTIBIAL, 0.5)})
    with torch.no_grad():
        out = anny_body(params)
    mask = rasterize(verts_cam=out.verts[0].double(), faces=anny_body.faces, camera=CAMERA).mask.numpy()
    off = dataclasses.replace(FAST, refine=RefineConfig(iterations=0))
    zero = dataclasses.replace(FAST, refine=RefineConfig(weights=RefineWeights(silhouette=0.0, stump_silhouette=0.0)))
    a = fit_person(body=anny_body, person=person, camera=CAMERA, mask=mask, config=off)
    b = fit_person(body=anny_body, person=person, camera=CAMERA, mask=mask, config=zero)
    assert a.refinement is None and b.refinement is None
    np.testing.assert_array_equal(a.verts_cam, b.verts_cam)
    np.testing.assert_array_equal(a.faces, b.faces)
