"""The multi-view synthetic benchmark (``synth --views N``): one view is today's output, the views of a
person are one body seen by a ring of cameras (ids, person_id, extrinsics, the rigid relation between
the views' true meshes), ``vary`` changes the pose and nothing else, and the loader sees one subject."""

from __future__ import annotations

import argparse
import json
import math

import numpy as np
import pytest
import roma
import torch
import trimesh

from resihmr_dr.body.base import JOINT_INDEX, BodyParams
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.eval.groundtruth import load_ground_truth
from resihmr_dr.eval.synth import camera_ring, generate_dataset, generate_sample, generate_views, view_orient, view_yaws
from resihmr_dr.eval.synth.views import body_up_cam, perturb_pose, view_global_orient, view_name
from resihmr_dr.eval.synth_cli import add_synth_parser

SIZE = 96  # small images: the tests are about geometry and ids


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _rotmat(rotvec) -> np.ndarray:
    return roma.rotvec_to_rotmat(torch.as_tensor(np.asarray(rotvec, dtype=np.float64))).numpy()


@pytest.fixture(scope="module")
def two_views(anny_body, tmp_path_factory):
    """Two people, two views each, 90 degrees apart, one pose."""
    out = tmp_path_factory.mktemp("views")
    generate_dataset(out, count=2, seed=4, image_size=SIZE, noise_px=1.0, views=2, body=anny_body, progress=False)
    return out


def _gt_json(out, ann_id):
    index = json.loads((out / "gt" / "index.json").read_text())
    entry = next(e for e in index["samples"] if e["ann_id"] == ann_id)
    return json.loads((out / "gt" / entry["gt_dir"] / "gt.json").read_text()), out / "gt" / entry["gt_dir"]


# --------------------------------------------------------------------------- the ring, no body needed
def test_the_ring_turns_the_body_about_its_vertical_axis_through_the_centre():
    orient = view_orient(yaw_deg=20.0, pitch_deg=9.0)
    centre = np.array([0.1, -0.2, 3.5])
    ring = camera_ring(global_orient=orient, centre_cam=centre, views=4, yaw_step_deg=90.0)
    assert [v.name for v in ring] == ["yaw000", "yaw090", "yaw180", "yaw270"]
    assert np.array_equal(ring[0].extrinsics.R, np.eye(3)) and np.array_equal(ring[0].extrinsics.t, np.zeros(3))
    up = body_up_cam(orient)
    for view in ring:
        rot = view.extrinsics.R  # a rotation (Extrinsics checks it)
        assert np.allclose(view.to_camera(centre[None])[0], centre)  # the centre stays put
        assert np.allclose(rot @ up, up)  # the vertical axis too
        # The body seen by view k is the body turned k * 90 degrees more (view_orient's yaw).
        turned = _rotmat(view_orient(yaw_deg=20.0 + view.yaw_deg, pitch_deg=9.0))
        assert np.allclose(_rotmat(view_global_orient(orient, view)), turned, atol=1e-12)
    assert math.degrees(math.acos((np.trace(ring[1].extrinsics.R) - 1) / 2)) == pytest.approx(90.0)
    assert view_name(-90.0) == "yaw270" and view_name(359.7) == "yaw000"


def test_the_ring_rejects_repeated_or_bad_views():
    assert view_yaws(3, 120.0) == (0.0, 120.0, 240.0)
    with pytest.raises(ValueError, match="repeat a camera"):
        view_yaws(3, 180.0)
    with pytest.raises(ValueError, match="repeat a camera"):
        view_yaws(2, 360.0)
    with pytest.raises(ValueError, match="views must be an integer"):
        view_yaws(0, 90.0)
    with pytest.raises(ValueError, match="finite"):
        view_yaws(2, math.nan)


def test_perturb_pose_moves_only_the_named_bones_by_at_most_the_amount(anny_body):
    names = anny_body.pose_joint_names
    pose = np.zeros((len(names), 3))
    moved = perturb_pose(pose, np.random.default_rng(0), pose_joint_names=names, amount_rad=0.1)
    changed = {names[i] for i in np.flatnonzero(np.abs(moved).sum(axis=1) > 0)}
    assert changed == {"spine03", "head"} | {
        f"{b}01.{s}" for b in ("upperarm", "lowerarm", "upperleg", "lowerleg") for s in "LR"
    }
    assert np.abs(moved).max() <= 0.1 and not pose.any()  # the input is not changed


# --------------------------------------------------------------------------- datasets
def test_one_view_is_the_single_view_benchmark_and_view_0_its_sample(anny_body, tmp_path, two_views):
    generate_dataset(
        tmp_path / "default", count=2, seed=4, image_size=SIZE, noise_px=1.0, body=anny_body, progress=False
    )
    generate_dataset(
        tmp_path / "one", count=2, seed=4, image_size=SIZE, noise_px=1.0, views=1, body=anny_body, progress=False
    )
    default, one = _files(tmp_path / "default"), _files(tmp_path / "one")
    assert default.keys() == one.keys() and all(default[k] == one[k] for k in default)
    doc = json.loads(default[next(k for k in default if k.name == "annotations.json")])
    assert all("person_id" not in a for a in doc["annotations"]) and all("R" not in i["camera"] for i in doc["images"])
    # View 0 of person i is the single-view sample i: the same image and true mesh.
    multi = _files(two_views)
    for person, view0 in ((1, 1), (2, 3)):
        assert (
            multi[next(k for k in multi if k.name == f"{view0:06d}.png" and k.parts[0] == "images")]
            == default[next(k for k in default if k.name == f"{person:06d}.png" and k.parts[0] == "images")]
        )
        a = trimesh.load(two_views / "gt" / f"{view0:06d}_{view0}" / "mesh.ply", process=False)
        b = trimesh.load(tmp_path / "default" / "gt" / f"{person:06d}_{person}" / "mesh.ply", process=False)
        assert np.array_equal(a.vertices, b.vertices) and np.array_equal(a.faces, b.faces)


def test_two_views_ids_person_ids_and_cameras(two_views):
    doc = json.loads((two_views / "annotations.json").read_text())
    assert [a["id"] for a in doc["annotations"]] == [1, 2, 3, 4]
    assert [a["image_id"] for a in doc["annotations"]] == [1, 2, 3, 4] == [i["id"] for i in doc["images"]]
    assert [a["person_id"] for a in doc["annotations"]] == ["p0001", "p0001", "p0002", "p0002"]
    generator = doc["info"]["generator"]
    assert (generator["views"], generator["view_yaw_step_deg"], generator["view_pose"]) == (2, 90.0, "same")
    for image in doc["images"]:
        rot, transl = np.array(image["camera"]["R"]), np.array(image["camera"]["t"])
        if image["id"] % 2:  # view 0: the world frame
            assert np.array_equal(rot, np.eye(3)) and np.array_equal(transl, np.zeros(3))
        else:
            angle = math.degrees(math.acos(np.clip((np.trace(rot) - 1) / 2, -1, 1)))
            assert angle == pytest.approx(90.0, abs=1e-6) and np.linalg.norm(transl) > 0.5  # turned about the pelvis
    index = json.loads((two_views / "gt" / "index.json").read_text())
    assert index["subjects"] == [{"person_id": "p0001", "ann_ids": [1, 2]}, {"person_id": "p0002", "ann_ids": [3, 4]}]
    assert [(e["person_id"], e["view"], e["view_name"]) for e in index["samples"]] == [
        ("p0001", 0, "yaw000"),
        ("p0001", 1, "yaw090"),
        ("p0002", 0, "yaw000"),
        ("p0002", 1, "yaw090"),
    ]
    gt, _ = _gt_json(two_views, 2)
    assert (gt["person_id"], gt["view"], gt["view_name"]) == ("p0001", 1, "yaw090")
    assert gt["view_kind"] in ("front", "three_quarter", "side")
    first, _ = _gt_json(two_views, 1)
    assert gt["yaw_deg"] == pytest.approx(first["yaw_deg"] + 90.0) and gt["view_kind"] == first["view_kind"]
    assert np.allclose(gt["extrinsics"]["R"], doc["images"][1]["camera"]["R"])


def test_the_loader_sees_one_subject_per_person_with_its_extrinsics(two_views):
    data = load_annotations(two_views / "annotations.json")
    assert not data.errors
    subjects = data.subjects()
    assert [(s.person_id, [p.ann_id for p in s.people], s.multi_view) for s in subjects] == [
        ("p0001", [1, 2], True),
        ("p0002", [3, 4], True),
    ]
    for subject in subjects:
        first, second = subject.people
        assert dict(first.limb_status) == dict(second.limb_status)  # the residual limbs agree
        assert data.image_of(second).extrinsics is not None
        assert np.array_equal(data.image_of(first).extrinsics.R, np.eye(3))
    truth = load_ground_truth(two_views)
    assert [(truth[i].person_id, truth[i].view, truth[i].view_name) for i in (1, 2)] == [
        ("p0001", 0, "yaw000"),
        ("p0001", 1, "yaw090"),
    ]
    assert np.allclose(truth[2].extrinsics.R, data.image_of(data.people[1]).extrinsics.R)


def test_the_views_true_meshes_are_one_mesh_moved_rigidly(anny_body, two_views):
    truth = load_ground_truth(two_views)
    for view0, view1 in ((1, 2), (3, 4)):
        a, b = truth[view0], truth[view1]
        rot, transl = b.extrinsics.R, b.extrinsics.t
        assert np.array_equal(a.faces, b.faces) and np.array_equal(a.vertex_segment, b.vertex_segment)
        assert np.array_equal(a.source_vertex, b.source_vertex)
        # The extrinsics are written to 7 digits; the meshes in full (float64 PLY).
        assert np.abs(a.verts @ rot.T + transl - b.verts).max() < 2e-6
        for la, lb in zip(a.limbs, b.limbs, strict=True):
            assert la.type_name == lb.type_name and la.shape == lb.shape and la.lam == pytest.approx(lb.lam)
            assert np.allclose(rot @ la.endpoint_cam + transl, lb.endpoint_cam, atol=2e-6)
            assert np.allclose(b.verts[lb.tip_index], lb.endpoint_cam, atol=1e-6)
            assert la.measurements.geometry.volume_m3 == lb.measurements.geometry.volume_m3
        gt, _ = _gt_json(two_views, view1)
        # The recorded body parameters pose the body as this view's camera sees it.
        with torch.no_grad():
            joints = anny_body(BodyParams.from_dict(gt["body_params"], dtype=anny_body.dtype)).joints[0]
        assert np.abs(joints.double().numpy() - np.asarray(gt["joints_cam"])).max() < 1e-4
        first, _ = _gt_json(two_views, view0)
        pelvis = JOINT_INDEX["pelvis"]  # the cameras turn about it: it stays put
        assert np.allclose(gt["joints_cam"][pelvis], first["joints_cam"][pelvis], atol=1e-6)


def test_vary_changes_the_pose_and_keeps_shape_and_stumps(anny_body):
    same = generate_views(anny_body, index=3, seed=7, views=2, view_pose="same", image_size=SIZE)
    vary = generate_views(anny_body, index=3, seed=7, views=2, view_pose="vary", image_size=SIZE)
    assert np.array_equal(vary[0].image, same[0].image)  # view 0 is the sample itself
    single = generate_sample(anny_body, index=3, seed=7, image_size=SIZE)
    assert np.array_equal(same[0].image, single.image) and np.array_equal(same[0].mesh.verts, single.mesh.verts)
    base, moved = vary
    assert not np.allclose(base.params.body_pose.numpy(), moved.params.body_pose.numpy())
    assert np.array_equal(base.params.shape.numpy(), moved.params.shape.numpy())
    assert np.array_equal(base.params.transl.numpy(), moved.params.transl.numpy())
    assert np.array_equal(same[1].params.body_pose.numpy(), same[0].params.body_pose.numpy())
    for la, lb in zip(base.mesh.limbs, moved.mesh.limbs, strict=True):
        assert la.type_name == lb.type_name and la.shape.name == lb.shape.name
        assert la.lam == pytest.approx(lb.lam, abs=0.02)

    def distances(sample):  # between the joints: kept by a rigid motion, changed by a new pose
        return np.linalg.norm(sample.joints_cam[:, None] - sample.joints_cam[None], axis=-1)

    assert np.allclose(distances(same[1]), distances(same[0]), atol=1e-9)
    assert np.abs(distances(moved) - distances(base)).max() > 0.01
    assert vary[1].view.name == "yaw090" and same[1].view.name == "yaw090"


def test_bad_view_options(anny_body, tmp_path):
    with pytest.raises(ValueError, match="repeat a camera"):
        generate_dataset(tmp_path, count=1, views=3, view_yaw_step_deg=180.0, body=anny_body)
    with pytest.raises(ValueError, match="view_pose"):
        generate_dataset(tmp_path, count=1, views=2, view_pose="wobble", body=anny_body)
    with pytest.raises(ValueError, match="view_pose"):
        generate_views(anny_body, index=0, seed=0, views=2, view_pose="wobble")
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--views", "4", "--view-yaw-step", "45"])
    assert (args.views, args.view_yaw_step, args.view_pose) == (4, 45.0, "same")
    for bad in (["--views", "0"], ["--views", "3", "--view-yaw-step", "180"]):
        with pytest.raises(SystemExit, match="synth: "):
            parsed = parser.parse_args(["synth", "--out", str(tmp_path), *bad])
            parsed.func(parsed)
    with pytest.raises(SystemExit):  # argparse's own choice check
        parser.parse_args(["synth", "--out", str(tmp_path), "--view-pose", "wobble"])
    assert not (tmp_path / "annotations.json").exists()
