"""The synthetic benchmark generator: ground-truth consistency, loader round trip, determinism,
stump shapes that differ from a convex dome."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch
import trimesh
from scipy.ndimage import binary_dilation

from resihmr_dr.atomic import json_value
from resihmr_dr.body.base import SEGMENT_INDEX
from resihmr_dr.data.annotations import load_annotations
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, LIMB_BY_NAME, LimbStatus
from resihmr_dr.eval.groundtruth import load_ground_truth
from resihmr_dr.eval.limb_truth import LimbTruth
from resihmr_dr.eval.stump_shapes import (
    STUMP_SHAPES,
    StumpShape,
    build_stump,
    meridian,
    sample_stump_shape,
)
from resihmr_dr.eval.synth import (
    RESIDUAL_TYPES,
    ResidualSpec,
    generate_dataset,
    generate_sample,
    make_stumped_mesh,
    parse_types,
    view_orient,
)
from resihmr_dr.eval.synth.stumped import MIN_LAMBDA_CUT
from resihmr_dr.eval.synth_cli import add_synth_parser
from resihmr_dr.stump.geometry import cross_section

LIMB_JOINTS = (
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)


@pytest.fixture(scope="module")
def dataset(anny_body, tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    path = generate_dataset(out, count=8, seed=3, image_size=256, body=anny_body, progress=False)
    return out, path


def _gt(out, entry):
    return json.loads((out / "gt" / entry["gt_dir"] / "gt.json").read_text())


def test_dataset_loads_and_statuses_match(dataset):
    out, path = dataset
    data = load_annotations(path)
    assert len(data) == 8 and not data.errors
    index = json.loads((out / "gt" / "index.json").read_text())["samples"]
    seen = set()
    for person, entry in zip(data.people, index):
        assert person.ann_id == entry["ann_id"]
        expected = {}
        for name in entry["residual_types"]:
            side, _, status = name.partition("_")
            limb = next(
                lm
                for lm in LIMB_BY_NAME.values()
                if lm.side.value == side and status in (lm.above_status.value, lm.below_status.value)
            )
            expected[limb.name] = LimbStatus(status)
            seen.add(name)
        for limb_name, status in person.limb_status.items():
            assert status is expected.get(limb_name, LimbStatus.INTACT)
        image = data.load_image(person.image_id)
        mask = data.mask(person)
        assert image.shape == (256, 256, 3) and mask.shape == (256, 256) and mask.mean() > 0.02
    assert seen == set(RESIDUAL_TYPES)  # the primary type cycles through all eight
    shapes = {e["stump_shapes"][0] for e in index}
    assert shapes == set(STUMP_SHAPES)  # and the primary shape through all five


def test_ground_truth_mesh_and_endpoint(dataset):
    out, _ = dataset
    for entry in json.loads((out / "gt" / "index.json").read_text())["samples"]:
        gt = _gt(out, entry)
        mesh = trimesh.load(out / "gt" / entry["gt_dir"] / "mesh.ply", process=False)
        assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0.005
        labels = np.load(out / "gt" / entry["gt_dir"] / "labels.npz")["vertex_segment"]
        assert labels.shape == (len(mesh.vertices),)
        for limb in gt["residual_limbs"]:
            tip = np.array(limb["endpoint_cam"])
            _, dist, _ = trimesh.proximity.closest_point(mesh, tip[None])
            assert dist[0] < 5e-3  # on the stump surface
            anchor, axis = np.array(limb["anchor_cam"]), np.array(limb["axis_cam"])
            residual = LIMB_BY_NAME[limb["limb"]].residual_segment(LimbStatus(limb["status"]))
            along = (mesh.vertices[labels == SEGMENT_INDEX[residual]] - anchor) @ axis
            tip_along = (tip - anchor) @ axis
            assert tip_along > along.max() - 0.015  # the distal end (oblique ends: rim within 1.5 cm)
            assert 0.2 < limb["lambda"] < 0.9
            assert MIN_LAMBDA_CUT - 1e-9 <= limb["lambda_cut"] < limb["lambda"]
            meas = limb["measurements"]
            assert meas["length_fraction"] == pytest.approx(limb["lambda"], abs=1e-5)
            assert meas["volume_m3"] > 0 and meas["cut_section_area_m2"] > 0
            assert all(a > 0 for a in meas["area_m2"][len(meas["area_m2"]) // 2 :])  # near J_a: may be open


def test_limb_truth_reads_back_and_its_tip_is_the_tip_vertex(dataset):
    out, _ = dataset
    truth = load_ground_truth(out)
    index = json.loads((out / "gt" / "index.json").read_text())["samples"]
    assert any(len(entry["residual_types"]) > 1 for entry in index)  # a later cut renumbers an earlier tip
    for entry in index:
        raw = _gt(out, entry)["residual_limbs"]
        gt = truth[entry["ann_id"]]
        assert len(gt.limbs) == len(raw) == len(entry["residual_types"])
        for record, limb in zip(raw, gt.limbs, strict=True):
            assert json_value(limb.to_dict(), digits=7) == record == json_value(LimbTruth.from_dict(record).to_dict())
            assert limb.type_name == record["type"] and limb.status.value == record["status"]
            assert np.allclose(gt.verts[limb.tip_index], limb.endpoint_cam, atol=1e-6)


def test_keypoints_project_inside_mask(dataset):
    out, path = dataset
    data = load_annotations(path)
    index = json.loads((out / "gt" / "index.json").read_text())["samples"]
    for person, entry in zip(data.people, index):
        mask = data.mask(person)
        near = binary_dilation(mask, iterations=2)
        loose = binary_dilation(mask, iterations=6)
        kp = np.array(_gt(out, entry)["keypoints_clean_px"])
        for i in np.flatnonzero(kp[:, 2] == 2):
            col, row = int(np.rint(kp[i, 0])), int(np.rint(kp[i, 1]))
            assert 0 <= row < mask.shape[0] and 0 <= col < mask.shape[1]
            is_face = i < KEYPOINT_INDEX["left_shoulder"]
            assert (loose if is_face else near)[row, col], f"keypoint {i} of person {person.ann_id} off the mask"
        # Every residual endpoint is labelled and visible or occluded (never dropped).
        for limb, status in person.residual_limbs:
            assert person.keypoints_px[limb.endpoint_index(status), 2] > 0


def test_deterministic_for_a_seed(anny_body, tmp_path):
    files = []
    for name in ("a", "b"):
        generate_dataset(
            tmp_path / name,
            count=2,
            seed=11,
            image_size=160,
            noise_px=2.0,
            drop_prob=0.3,
            body=anny_body,
            progress=False,
        )
        files.append(
            {
                p.relative_to(tmp_path / name): p.read_bytes()
                for p in sorted((tmp_path / name).rglob("*"))
                if p.is_file()
            }
        )
    assert files[0].keys() == files[1].keys() and len(files[0]) >= 2 * 5 + 2
    for key in files[0]:
        assert files[0][key] == files[1][key], key
    other = generate_sample(anny_body, index=0, seed=12, image_size=160)
    first = json.loads(files[0][next(k for k in files[0] if k.name == "gt.json")])
    assert not np.allclose(other.params.shape.numpy(), first["body_params"]["shape"])


def test_noise_and_drops_keep_statuses(anny_body):
    clean = generate_sample(anny_body, index=5, seed=2, image_size=160, types=["transtibial"])
    noisy = generate_sample(
        anny_body,
        index=5,
        seed=2,
        image_size=160,
        types="transtibial",
        noise_px=3.0,
        drop_prob=1.0,
    )
    assert np.array_equal(clean.keypoints_clean_px, noisy.keypoints_clean_px)
    kept = noisy.keypoints_px[:, 2] > 0
    offset = np.linalg.norm(noisy.keypoints_px[kept, :2] - clean.keypoints_px[kept, :2], axis=1)
    assert 0.5 < offset.mean() < 10.0
    for name in ("left_shoulder", "right_shoulder", "left_hip", "right_hip"):
        assert noisy.keypoints_px[KEYPOINT_INDEX[name], 2] > 0
    assert all(t.endswith("transtibial") for t in noisy.info["residual_types"])
    dropped = (clean.keypoints_px[:, 2] > 0) & ~kept
    assert dropped.sum() >= 3 and not dropped[KEYPOINT_INDEX["nose"] + 5 :][:2].any()


def _cap_profile(anny_body, name: str, *, seed: int = 0):
    """(fractions, area ratio to the cut section) along the cap of a left transtibial stump."""
    params = anny_body.default_params(1).replace(
        global_orient=torch.tensor(view_orient(yaw_deg=0.0, pitch_deg=0.0)[None], dtype=torch.float32)
    )
    with torch.no_grad():
        out = anny_body(params)
    shape = sample_stump_shape(name, np.random.default_rng(seed))
    mesh = make_stumped_mesh(
        verts_cam=out.verts[0].double().numpy(),
        faces=anny_body.faces.numpy(),
        vertex_segment=anny_body.vertex_segment.numpy(),
        joints_cam=out.joints[0].double().numpy(),
        residuals=[ResidualSpec("left_transtibial", 0.65, shape)],
    )
    limb = mesh.limbs[0]
    cut, axis, length = limb.cut_point_cam, limb.axis_cam, limb.cap_length_m
    region = mesh.faces[(mesh.vertex_segment == SEGMENT_INDEX["left_shank"])[mesh.faces].all(axis=1)]
    base = cross_section(mesh.verts, region, cut - 1e-4 * axis, axis).area_m2
    fractions = np.array([0.2, 0.35, 0.5, 0.65, 0.8])
    ratios = np.array(
        [cross_section(mesh.verts, region, cut + f * length * axis, axis).area_m2 / base for f in fractions]
    )
    return fractions, ratios, mesh, limb


@pytest.mark.parametrize("name", STUMP_SHAPES)
def test_stump_shapes_differ_from_a_dome(anny_body, name):
    fractions, ratios, mesh, limb = _cap_profile(anny_body, name)
    dome = 1.0 - fractions**2  # a half-ellipsoid of the same length (area ratio)
    tm = trimesh.Trimesh(mesh.verts, mesh.faces, process=False)
    assert tm.is_watertight and tm.volume > 0
    if name == "tapered":
        assert ratios[-1] < 0.4 and (np.diff(ratios) < 0).all()  # distal sections clearly smaller
        assert (ratios[1:4] < dome[1:4] - 0.1).all()  # and narrower than a dome mid-way
    elif name == "bulbous":
        assert ratios.max() > 1.15  # wider than the cut plane section
    elif name == "flattened":
        assert ratios[-1] > dome[-1] + 0.25 and limb.cap_length_m < 0.55 * limb.cut_radius_m
    elif name == "rounded":
        assert np.abs(ratios - dome).max() < 0.3
    else:  # oblique: the end face is tilted, its rim is not at one axial level
        assert 10.0 <= limb.shape.oblique_deg <= 20.0
        tip_along = (limb.endpoint_cam - limb.cut_point_cam) @ limb.axis_cam
        assert tip_along == pytest.approx(limb.cap_length_m, abs=1e-9)


def test_oblique_end_is_tilted():
    """A unit circle loop closed by an oblique flat end: the end rim's axial height varies by
    about tan(tilt) times its diameter; the straight flattened end's does not."""
    angles = -np.linspace(0, 2 * np.pi, 48, endpoint=False)  # clockwise seen from the cap (+z)
    loop = np.stack([np.cos(angles), np.sin(angles), np.zeros_like(angles)], axis=1)
    spans = {}
    for deg in (0.0, 15.0):
        shape = StumpShape(
            "oblique" if deg else "flattened",
            height_ratio=0.4,
            end_power=4.0,
            oblique_deg=deg,
        )
        surf = build_stump(
            loop_verts=loop,
            loop_index=np.arange(48),
            first_new=48,
            axis=np.array([0, 0, 1.0]),
            shape=shape,
        )
        ring = surf.verts[-1 - 48 : -1]  # last ring
        spans[deg] = np.ptp(ring[:, 2]) / (2 * np.linalg.norm(ring[:, :2], axis=1).mean())
        faces = np.concatenate(
            [
                surf.faces,
                np.stack([np.zeros(46, int), np.arange(1, 47), np.arange(2, 48)], 1),
            ]
        )
        tm = trimesh.Trimesh(np.concatenate([loop, surf.verts]), faces, process=False)
        assert tm.is_watertight and tm.volume > 0  # outward winding
    assert spans[0.0] < 1e-9 and spans[15.0] == pytest.approx(np.tan(np.radians(15.0)), rel=0.15)


def test_meridian_ends():
    for name in STUMP_SHAPES:
        shape = sample_stump_shape(name, np.random.default_rng(1))
        z, s = meridian(shape, np.array([0.0, 1.0]), radius_m=0.05)
        assert z[0] == pytest.approx(0.0) and s[0] == pytest.approx(1.0) and s[1] == pytest.approx(0.0, abs=1e-6)
        assert z[1] == pytest.approx(shape.height_ratio * 0.05)


def test_bad_generator_options(anny_body, tmp_path):
    with pytest.raises(ValueError, match="noise_px"):
        generate_sample(anny_body, index=0, seed=0, noise_px=-1.0)
    with pytest.raises(ValueError, match="drop_prob"):
        generate_sample(anny_body, index=0, seed=0, drop_prob=1.5)
    with pytest.raises(ValueError, match="image_size"):
        generate_sample(anny_body, index=0, seed=0, image_size=10)
    with pytest.raises(ValueError, match="count"):
        generate_dataset(tmp_path, count=0, body=anny_body)


def test_bad_inputs():
    with pytest.raises(ValueError, match="unknown residual type"):
        parse_types("transfoot")
    assert parse_types("transtibial") == ("left_transtibial", "right_transtibial")
    assert parse_types(None) == parse_types("all") == RESIDUAL_TYPES
    with pytest.raises(ValueError, match="unknown stump shape"):
        StumpShape("square", height_ratio=1.0)
    with pytest.raises(ValueError, match="height_ratio"):
        StumpShape("rounded", height_ratio=0.0)


def test_cli_parser(anny_body, tmp_path):
    parser = argparse.ArgumentParser()
    add_synth_parser(parser.add_subparsers())
    args = parser.parse_args(
        [
            "synth",
            "--out",
            str(tmp_path),
            "--count",
            "1",
            "--types",
            "left_transradial",
            "--image-size",
            "128",
            "--no-progress",
            "--noise-px",
            "1.5",
            "--drop-prob",
            "0.1",
        ]
    )
    assert args.func(args) == 0
    data = load_annotations(tmp_path / "annotations.json")
    assert data.people[0].limb_status["left_arm"] is LimbStatus.TRANSRADIAL
    with pytest.raises(SystemExit):
        bad = parser.parse_args(["synth", "--out", str(tmp_path), "--types", "nope"])
        bad.func(bad)
    with pytest.raises(SystemExit):
        bad = parser.parse_args(["synth", "--out", str(tmp_path), "--noise-px", "1,-2"])
        bad.func(bad)
    with pytest.raises(SystemExit):  # argparse rejects the list itself
        parser.parse_args(["synth", "--out", str(tmp_path), "--noise-px", "1,two"])
    levels = parser.parse_args(["synth", "--out", str(tmp_path), "--noise-px", "0,2,5"]).noise_px
    assert levels == (0.0, 2.0, 5.0)
