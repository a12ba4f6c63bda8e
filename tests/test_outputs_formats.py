"""Outputs other tools read: params.npz (smplx reproduces our mesh), mesh exports in other formats,
frames and units, the COCO keypoint results file, and ``read_person`` round trips.

One SMPL-X person (the tests' tiny SMPL-X-format model, refined against its mask) is fitted and
written once for the module; the demo runs once with the Anny body for the CLI path."""

from __future__ import annotations

import dataclasses
import json
import sys

import numpy as np
import pytest
import scipy.spatial
import torch
import trimesh
from synthetic_people import CAMERA, FAST_PIPELINE, stumped_person

from resihmr_dr import FittedPerson, read_person
from resihmr_dr.body.base import SEGMENT_INDEX, BodyParams
from resihmr_dr.cli import _output_from_args, build_parser, main
from resihmr_dr.config import ConfigError, OutputConfig, load_config
from resihmr_dr.data.ldpose import NUM_COCO_KEYPOINTS, LimbStatus
from resihmr_dr.data.sample import sample_annotations_path
from resihmr_dr.fit.pipeline import fit_person
from resihmr_dr.jobs import FitPlan
from resihmr_dr.lightning import PersonWriter
from resihmr_dr.outputs import (
    KEYPOINT_RESULTS_FILE,
    OUTPUT_FILES,
    predicted_keypoints_coco,
    write_keypoint_results,
    write_mesh_exports,
    write_person,
)
from resihmr_dr.results import ResultsError, export_vertices

EXPORT = OutputConfig(mesh_format="obj", mesh_frame="y-up", units="mm")
FAST_YAML = """fit:
  intact:
    stages:
    - {pose_prior: 404.0, shape_prior: 100.0, angle_limit: 300.0, iterations: 6}
    - {pose_prior: 4.78, shape_prior: 5.0, angle_limit: 50.0, iterations: 15}
  refine: {iterations: 2}
"""


def _kept(verts: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The vertices outside m_r: copies of the uncut body's vertices (the cut interpolates only
    the crossing ring, which m_r holds)."""
    return np.asarray(verts)[~np.asarray(mask, dtype=bool)]


def _max_distance_to(points: np.ndarray, reference: np.ndarray) -> float:
    """Largest distance from each of ``points`` to the nearest of ``reference``."""
    return float(scipy.spatial.cKDTree(np.asarray(reference)).query(np.asarray(points))[0].max())


@pytest.fixture(scope="module")
def smplx_case(tmp_path_factory):
    """The tiny SMPL-X body, a right transtibial person fitted (with the refinement) and written
    with an OBJ export in the model frame (Y up) and millimetres."""
    from smplx_tiny import write_tiny_smplx

    from resihmr_dr.body.smplx_model import SmplxBody

    root = tmp_path_factory.mktemp("outputs_formats")
    tiny = write_tiny_smplx(root / "model")
    body = SmplxBody(tiny.root, vertex_ids=tiny.vertex_ids)
    params = body.default_params(1, depth_m=3.2)
    pose = torch.zeros_like(params.body_pose)
    pose[0, body.pose_joint_names.index("left_shoulder"), 2] = -0.9  # arms down from the T-pose
    pose[0, body.pose_joint_names.index("right_shoulder"), 2] = 0.9
    params = params.replace(body_pose=pose, transl=torch.tensor([[0.0, 0.1, 3.2]]))
    person, mask, _ = stumped_person(
        body, params, limb="right_leg", status=LimbStatus.TRANSTIBIAL, lam=0.5, shape="tapered", seed=0
    )
    fit = fit_person(body=body, person=person, camera=CAMERA, mask=mask, config=FAST_PIPELINE)
    assert fit.refinement is not None and fit.limbs
    folder = write_person(fit, root / "out", output=EXPORT)
    return dataclasses.make_dataclass("Case", ["tiny", "body", "person", "fit", "folder"])(
        tiny, body, person, fit, folder
    )


# --------------------------------------------------------------------------- params.npz
def test_params_npz_is_smplx_loadable_and_reproduces_the_posed_mesh(smplx_case):
    """smplx.create with params.npz gives our body's vertices and joints, in the camera frame: the
    written mesh.ply before the cut (its vertices outside m_r are smplx's)."""
    import smplx
    from smplx.vertex_joint_selector import VertexJointSelector

    from resihmr_dr.body.smplx_model import JOINT_SELECTION

    npz = np.load(smplx_case.folder / "params.npz")
    assert str(npz["model_type"]) == "smplx" and str(npz["gender"]) == smplx_case.fit.body_gender == "neutral"
    assert json.loads((smplx_case.folder / "params.json").read_text())["body_gender"] == "neutral"
    tensors = ("betas", "global_orient", "body_pose", "transl")
    assert {k: npz[k].shape for k in tensors} == {
        "betas": (1, 10),
        "global_orient": (1, 3),
        "body_pose": (1, 63),
        "transl": (1, 3),
    }
    assert all(npz[k].dtype == np.float32 for k in tensors)
    model = smplx.create(
        str(smplx_case.tiny.root),
        model_type="smplx",
        gender=str(npz["gender"]),
        num_betas=npz["betas"].shape[1],
        flat_hand_mean=True,
    )
    # Only for the tests' tiny model: smplx's default extra-joint vertex ids need the official topology.
    model.vertex_joint_selector = VertexJointSelector(vertex_ids=smplx_case.tiny.vertex_ids)
    with torch.no_grad():
        theirs = model(**{k: torch.tensor(npz[k]) for k in tensors})
        ours = smplx_case.body(smplx_case.fit.params)
    np.testing.assert_allclose(theirs.vertices.numpy(), ours.verts.numpy(), atol=2e-6)
    np.testing.assert_allclose(theirs.joints[:, list(JOINT_SELECTION)].numpy(), ours.joints.numpy(), atol=2e-6)
    mesh = trimesh.load(smplx_case.folder / "mesh.ply", process=False)
    kept = _kept(mesh.vertices, np.load(smplx_case.folder / "residual_mask.npy"))
    assert len(kept) > 0.8 * len(mesh.vertices)
    assert _max_distance_to(kept, theirs.vertices[0].numpy()) < 2e-6


def _taller_female_model(root):
    """Write the tiny model as root/smplx/SMPLX_FEMALE.npz, 5 % larger than SMPLX_NEUTRAL.npz next
    to it (loading the wrong one moves every vertex by centimetres)."""
    from smplx_tiny import write_tiny_smplx

    neutral = write_tiny_smplx(root, gender="neutral")
    female = write_tiny_smplx(root, gender="female")
    arrays = dict(np.load(female.model_file))
    arrays["v_template"] = arrays["v_template"] * np.float32(1.05)
    np.savez(female.model_file, **arrays)
    return neutral, female


def test_a_female_smplx_fit_records_its_gender_and_loads_with_it(tmp_path):
    """The gender of the fitted model file goes to PersonFit.body_gender, params.json and
    params.npz, and smplx.create with that gender reproduces the body (the neutral file does not)."""
    import smplx
    from smplx.vertex_joint_selector import VertexJointSelector

    from resihmr_dr.body.smplx_model import SmplxBody

    neutral, female = _taller_female_model(tmp_path / "model")
    body = SmplxBody(female.model_file, vertex_ids=female.vertex_ids)  # the file's name gives the gender
    params = body.default_params(1, depth_m=3.2)
    pose = torch.zeros_like(params.body_pose)
    pose[0, body.pose_joint_names.index("left_shoulder"), 2] = -0.9
    pose[0, body.pose_joint_names.index("right_shoulder"), 2] = 0.9
    params = params.replace(body_pose=pose, transl=torch.tensor([[0.0, 0.1, 3.2]]))
    person, _, _ = stumped_person(
        body, params, limb="left_leg", status=LimbStatus.TRANSTIBIAL, lam=0.5, shape="tapered", seed=0
    )
    fit = fit_person(body=body, person=person, camera=CAMERA, mask=None, config=FAST_PIPELINE)
    assert fit.body_gender == "female"
    folder = write_person(fit, tmp_path / "out")
    written = json.loads((folder / "params.json").read_text())
    assert written["body_gender"] == written["provenance"]["body_gender"] == "female"
    npz = np.load(folder / "params.npz")
    assert str(npz["gender"]) == "female"
    tensors = {k: torch.tensor(npz[k]) for k in ("betas", "global_orient", "body_pose", "transl")}
    with torch.no_grad():
        ours = body(fit.params).verts[0].numpy()
        loaded = {}
        for gender in ("female", "neutral"):
            model = smplx.create(
                str(tmp_path / "model"),
                model_type="smplx",
                gender=gender,
                num_betas=npz["betas"].shape[1],
                flat_hand_mean=True,
            )
            model.vertex_joint_selector = VertexJointSelector(vertex_ids=female.vertex_ids)
            loaded[gender] = model(**tensors).vertices[0].numpy()
    np.testing.assert_allclose(loaded[str(npz["gender"])], ours, atol=2e-6)
    assert np.abs(loaded["neutral"] - ours).max() > 0.01


def test_params_npz_of_a_smplx_fit_without_its_gender_is_an_error(smplx_case):
    from resihmr_dr.outputs import params_npz_arrays

    with pytest.raises(ValueError, match="body_gender"):
        params_npz_arrays(dataclasses.replace(smplx_case.fit, body_gender=None))


# --------------------------------------------------------------------------- read_person
def test_read_person_returns_what_was_written(smplx_case):
    fit, folder = smplx_case.fit, smplx_case.folder
    person = read_person(folder)
    assert isinstance(person, FittedPerson) and person.folder == folder
    assert (person.ann_id, person.image_id, person.body_name) == (fit.ann_id, fit.image_id, "smplx")
    assert person.body_gender == fit.body_gender == "neutral"
    assert person.camera == fit.camera
    for read, written in ((person.params, fit.params), (person.intact_params, fit.intact_params)):
        for a, b in zip(read.as_tuple(), written.as_tuple()):
            np.testing.assert_allclose(a.numpy(), b.detach().double().numpy(), rtol=0, atol=1e-12)
    # mesh.ply and mesh_tpose.ply store float32 (trimesh's PLY writer).
    np.testing.assert_allclose(person.verts_cam, fit.verts_cam, rtol=0, atol=5e-7)
    np.testing.assert_allclose(person.verts_tpose, fit.verts_tpose, rtol=0, atol=5e-7)
    np.testing.assert_array_equal(person.faces, fit.faces)
    np.testing.assert_array_equal(person.residual_mask, fit.residual_mask)
    np.testing.assert_allclose(person.root_model, fit.root_model)
    np.testing.assert_allclose(person.pred_keypoints_px, predicted_keypoints_coco(fit))
    (limb,), (state,) = person.limbs, fit.limbs
    assert (limb.limb, limb.status, limb.lam) == (state.limb, state.status, pytest.approx(state.lam))
    assert limb.lambda_intact == pytest.approx(fit.lambda_intact[0])
    for read, written in (
        (limb.anchor_cam, state.anchor_cam),
        (limb.target_cam, state.target_cam),
        (limb.endpoint_cam, state.tip_cam),
    ):
        np.testing.assert_allclose(read, written)
    assert limb.rafo_accepted == state.rafo.accepted
    assert person.stump == fit.stump and person.stump_tpose == fit.stump_tpose
    assert person.metrics["quality"] == json.loads(json.dumps(fit.metrics.quality.to_dict()))
    assert person.quality_ok is fit.metrics.quality.ok
    assert person.seconds == pytest.approx(fit.seconds)
    # The meshes, coloured as mesh.ply (residual limb red), from the record and from the fit.
    for mesh in (person.to_trimesh(), fit.to_trimesh()):
        np.testing.assert_allclose(mesh.vertices, fit.verts_cam, rtol=0, atol=5e-7)
        colours = np.asarray(mesh.visual.vertex_colors)
        assert (colours[fit.residual_mask, 0] > 200).all() and (colours[fit.residual_mask, 1] < 60).all()
    np.testing.assert_allclose(person.to_trimesh(tpose=True).vertices, fit.verts_tpose, rtol=0, atol=5e-7)
    np.testing.assert_allclose(
        person.to_trimesh(frame="y-up", units="mm").vertices,
        fit.to_trimesh(frame="y-up", units="mm").vertices,
        rtol=0,
        atol=1e-3,
    )


def test_read_person_names_the_file_and_field(smplx_case, tmp_path):
    import shutil

    folder = tmp_path / smplx_case.folder.name
    shutil.copytree(smplx_case.folder, folder)
    params = json.loads((folder / "params.json").read_text())
    (folder / "params.json").write_text(json.dumps(params | {"params": params["params"] | {"transl": [0.0, 1.0]}}))
    with pytest.raises(ResultsError, match=r"params\.json.*field 'params\.transl'.*\[3\]"):
        read_person(folder)
    (folder / "params.json").write_text(json.dumps(params | {"body_gender": 3}))
    with pytest.raises(ResultsError, match=r"params\.json.*field 'body_gender'.*expected a string or null, got 3"):
        read_person(folder)
    del params["residual_limbs"]
    (folder / "params.json").write_text(json.dumps(params))
    with pytest.raises(ResultsError, match=r"params\.json.*'residual_limbs'"):
        read_person(folder)
    (folder / "params.json").write_text('{"ann_id": ')
    with pytest.raises(ResultsError, match=r"params\.json.*malformed JSON"):
        read_person(folder)
    shutil.copy(smplx_case.folder / "params.json", folder / "params.json")
    np.save(folder / "residual_mask.npy", np.zeros(3, dtype=bool))
    with pytest.raises(ResultsError, match=r"residual_mask\.npy.*bool for mesh\.ply"):
        read_person(folder)
    (folder / "mesh_tpose.ply").unlink()
    with pytest.raises(ResultsError, match=r"mesh_tpose\.ply.*not found"):
        read_person(folder)
    with pytest.raises(ResultsError, match="not a person folder"):
        read_person(tmp_path / "absent")


def test_to_pytorch3d_gives_meshes_or_a_clear_import_error(smplx_case, monkeypatch):
    fit = smplx_case.fit
    try:
        import pytorch3d.structures  # noqa: F401
    except (ImportError, OSError):
        pass
    else:
        meshes = read_person(smplx_case.folder).to_pytorch3d()
        np.testing.assert_allclose(meshes.verts_packed().numpy(), fit.verts_cam, rtol=0, atol=1e-6)
        assert meshes.faces_packed().shape == fit.faces.shape and meshes.textures is not None
        assert fit.to_pytorch3d(tpose=True).verts_packed().shape == fit.verts_tpose.shape
    for name in [m for m in sys.modules if m == "pytorch3d" or m.startswith("pytorch3d.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "pytorch3d", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"needs PyTorch3D.*resihmr-dr\[pytorch3d\]"):
        fit.to_pytorch3d()


# --------------------------------------------------------------------------- mesh exports
def test_obj_export_is_the_model_frame_in_millimetres(smplx_case):
    """mesh_export.obj: the posed mesh with the global transform undone (the body model's own
    frame: Y up, facing +Z, the person's left +X), in mm; mesh.ply stays camera frame, metres."""
    fit, body, folder = smplx_case.fit, smplx_case.body, smplx_case.folder
    assert sorted(p.name for p in folder.iterdir()) == sorted(OUTPUT_FILES + EXPORT.export_files)
    np.testing.assert_allclose(trimesh.load(folder / "mesh.ply", process=False).vertices, fit.verts_cam, atol=5e-7)
    obj = np.asarray(trimesh.load(folder / "mesh_export.obj", process=False).vertices)
    assert obj.shape == fit.verts_cam.shape
    with torch.no_grad():
        model = body.forward_model(fit.params.body_pose, fit.params.shape)
    model_verts = model.verts[0].double().numpy()
    # To the float32 rounding of the camera-frame vertices (about 3 m from the camera).
    assert _max_distance_to(_kept(obj, fit.residual_mask) / 1000.0, model_verts) < 2e-6
    # Orientation and extent: standing along +Y (about 1.7 m, in mm), the feet point +Z, the left hand at +X.
    extent = obj.max(axis=0) - obj.min(axis=0)
    assert extent.argmax() == 1 and 1500.0 < extent[1] < 1900.0
    segment = body.vertex_segment.numpy()
    on = lambda name: scipy.spatial.cKDTree(obj / 1000.0).query(model_verts[segment == SEGMENT_INDEX[name]])[1]  # noqa: E731
    head, foot = obj[on("other")][:, 1].max(), obj[on("left_foot")][:, 1].mean()
    assert head > 1200.0 + foot
    joints = model.joints[0].double().numpy() * 1000.0
    from resihmr_dr.body.base import JOINT_INDEX

    assert obj[on("left_foot")][:, 2].max() > joints[JOINT_INDEX["left_ankle"], 2] + 50.0
    assert obj[on("left_hand")][:, 0].mean() > 300.0 > -300.0 > obj[on("right_hand")][:, 0].mean()
    # The T-pose export is mesh_tpose.ply (model frame) in mm.
    tpose = np.asarray(trimesh.load(folder / "mesh_tpose_export.obj", process=False).vertices)
    np.testing.assert_allclose(tpose, fit.verts_tpose * 1000.0, atol=1e-5)
    exports = json.loads((folder / "params.json").read_text())["mesh_exports"]
    assert exports["mesh_export.obj"]["units"] == "mm" and exports["mesh_export.obj"]["frame"].startswith("model")
    assert exports["mesh_tpose_export.obj"]["mesh"] == "mesh_tpose.ply"


@pytest.mark.parametrize(
    "output",
    [OutputConfig("stl", "camera", "mm"), OutputConfig("glb", "y-up", "m"), OutputConfig("ply", "y-up", "m")],
    ids=str,
)
def test_other_formats_frames_and_units(smplx_case, tmp_path, output):
    fit = smplx_case.fit
    write_mesh_exports(fit, tmp_path, output)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(output.export_files)
    posed, tpose = (trimesh.load(tmp_path / name, process=False, force="mesh") for name in output.export_files)
    expected = fit.to_trimesh(frame=output.mesh_frame, units=output.units).vertices
    scale = 1000.0 if output.units == "mm" else 1.0
    # STL and glTF store float32 (STL also one vertex per face corner): compare the point sets.
    tol = 1e-6 * scale
    assert _max_distance_to(posed.vertices, expected) < tol and _max_distance_to(expected, posed.vertices) < tol
    assert _max_distance_to(tpose.vertices, fit.verts_tpose * scale) < tol
    assert not OutputConfig().exports and OutputConfig().export_files == ()


def test_bad_export_settings_are_errors():
    with pytest.raises(ConfigError, match="output.mesh_format"):
        OutputConfig(mesh_format="fbx")
    with pytest.raises(ConfigError, match="output.units"):
        OutputConfig(units="cm")
    with pytest.raises(ValueError, match="T-pose"):
        export_vertices(
            np.zeros((1, 3)),
            tpose=True,
            frame="camera",
            units="m",
            global_orient=np.zeros(3),
            transl=np.zeros(3),
            root_model=np.zeros(3),
        )


def test_config_section_and_flags_agree(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("output:\n  mesh_format: obj\n  units: mm\n")
    config = load_config(path)
    assert config.output == OutputConfig(mesh_format="obj", mesh_frame="camera", units="mm")
    parser = build_parser()
    args = parser.parse_args(["fit", "--annotations", "a.json", "--out", "o", "--mesh-frame", "y-up"])
    assert _output_from_args(args, config.output) == OutputConfig("obj", "y-up", "mm")  # flags over the file
    args = parser.parse_args(["demo", "--mesh-format", "glb", "--units", "m"])
    assert _output_from_args(args, config.output) == OutputConfig("glb", "camera", "m")
    path.write_text("output:\n  mesh_frame: z-up\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*output.*mesh_frame"):
        load_config(path)
    with pytest.raises(SystemExit):
        parser.parse_args(["demo", "--units", "cm"])


# --------------------------------------------------------------------------- keypoint results
def _annotation_file(tmp_path, person) -> str:
    """A COCO annotation file holding ``person`` (25 keypoints, category 1)."""
    kp = np.asarray(person.keypoints_px)
    doc = {
        "images": [{"id": person.image_id, "file_name": "image.png", "width": CAMERA.width, "height": CAMERA.height}],
        "annotations": [
            {
                "id": person.ann_id,
                "image_id": person.image_id,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": kp.reshape(-1).tolist(),
                "num_keypoints": int((kp[:, 2] > 0).sum()),
                "bbox": [0, 0, CAMERA.width, CAMERA.height],
                "area": float(CAMERA.width * CAMERA.height),
            }
        ],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(doc))
    return str(path)


def test_keypoint_results_are_coco_results_of_the_written_keypoints(smplx_case, tmp_path, capsys):
    """Written by the Lightning writer's merge (rank 0) from the person folders; loadRes accepts it."""
    from pycocotools.coco import COCO

    fit, person, out = smplx_case.fit, smplx_case.person, smplx_case.folder.parent
    writer = PersonWriter(out, plan=FitPlan(people=(person,), category_id=1, output=EXPORT))
    writer.merge(world_size=1)  # nothing fitted in this run: the earlier folder is included
    results = json.loads((out / KEYPOINT_RESULTS_FILE).read_text())
    (entry,) = results
    assert (entry["image_id"], entry["category_id"], entry["ann_id"]) == (fit.image_id, 1, fit.ann_id)
    assert entry["score"] == (1.0 if fit.metrics.quality.ok else 0.0)
    kp = np.asarray(entry["keypoints"], dtype=np.float64).reshape(25, 3)
    np.testing.assert_allclose(kp[:, :2], predicted_keypoints_coco(fit)[:, :2])
    (limb,) = fit.limbs
    tip = limb.limb.endpoint_index(limb.status)
    np.testing.assert_allclose(kp[tip, :2], CAMERA.project(torch.as_tensor(limb.tip_cam)[None]).numpy()[0])
    assert kp[tip, 2] == 1 and (kp[:NUM_COCO_KEYPOINTS, 2] == 1).all()
    intact = [i for i in range(NUM_COCO_KEYPOINTS, 25) if i != tip]
    assert (kp[intact] == 0).all()  # no prediction for the endpoints of intact limbs
    coco = COCO(_annotation_file(tmp_path, person))
    loaded = coco.loadRes(str(out / KEYPOINT_RESULTS_FILE))
    (ann,) = loaded.loadAnns(loaded.getAnnIds(imgIds=[fit.image_id]))
    assert ann["keypoints"] == entry["keypoints"] and ann["area"] > 0
    # A person without a complete folder (here: missing an export the run asks for) is left out.
    assert write_keypoint_results(out, [person], output=OutputConfig("glb")).read_text() == "[]"


def test_a_folder_without_the_keypoints_names_the_field(smplx_case, tmp_path):
    import shutil

    folder = tmp_path / smplx_case.folder.name
    shutil.copytree(smplx_case.folder, folder)
    params = json.loads((folder / "params.json").read_text())
    del params["pred_keypoints_px"]
    (folder / "params.json").write_text(json.dumps(params))
    with pytest.raises(ResultsError, match=r"params\.json.*'pred_keypoints_px'"):
        write_keypoint_results(tmp_path, [smplx_case.person], output=EXPORT)
    assert not (tmp_path / KEYPOINT_RESULTS_FILE).exists()


# --------------------------------------------------------------------------- the demo (Anny)
def test_demo_writes_anny_params_an_stl_export_and_keypoint_results(anny_body, tmp_path, capsys):
    from pycocotools.coco import COCO

    config = tmp_path / "fast.yaml"
    config.write_text(FAST_YAML)
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--config",
                str(config),
                "--mesh-format",
                "stl",
                "--mesh-frame",
                "y-up",
                "--units",
                "mm",
            ]
        )
        == 0
    )
    assert "mesh_export.stl" in capsys.readouterr().out
    folder = out / "image1_ann1"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        OUTPUT_FILES + ("mesh_export.stl", "mesh_tpose_export.stl")
    )
    person = read_person(folder)
    # params.npz: Anny's parameters under their own names, not smplx's.
    npz = np.load(folder / "params.npz")
    assert str(npz["model_type"]) == "anny" and "betas" not in npz and "body_pose" not in npz
    assert "gender" not in npz and json.loads((folder / "params.json").read_text())["body_gender"] is None
    assert npz["anny_phenotypes"].shape == (1, 6) and list(npz["anny_phenotype_names"]) == list(anny_body.shape_names)
    assert npz["anny_pose"].shape == (1, 19, 3) and list(npz["anny_pose_bones"]) == list(anny_body.pose_joint_names)
    params = BodyParams(
        global_orient=torch.tensor(npz["anny_global_orient"]),
        body_pose=torch.tensor(npz["anny_pose"]),
        shape=torch.tensor(npz["anny_phenotypes"]),
        transl=torch.tensor(npz["anny_transl"]),
    )
    with torch.no_grad():
        posed, model = anny_body(params), anny_body.forward_model(params.body_pose, params.shape)
    assert _max_distance_to(_kept(person.verts_cam, person.residual_mask), posed.verts[0].numpy()) < 1e-5
    # The STL export: the model frame (standing along +Y) in mm.
    stl = np.asarray(trimesh.load(folder / "mesh_export.stl", process=False).vertices)
    extent = stl.max(axis=0) - stl.min(axis=0)
    assert extent.argmax() == 1 and 1300.0 < extent[1] < 2100.0
    assert (
        _max_distance_to(
            _kept(person.mesh_vertices(frame="y-up", units="mm"), person.residual_mask), model.verts[0].numpy() * 1000.0
        )
        < 0.05
    )
    # keypoints_results.json of the batch path, accepted against the sample's annotation file.
    results = json.loads((out / KEYPOINT_RESULTS_FILE).read_text())
    assert [(r["image_id"], r["category_id"], r["ann_id"]) for r in results] == [(1, 1, 1)]
    np.testing.assert_allclose(np.reshape(results[0]["keypoints"], (25, 3)), person.pred_keypoints_px)
    COCO(str(sample_annotations_path())).loadRes(str(out / KEYPOINT_RESULTS_FILE))
