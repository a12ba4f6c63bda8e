"""SMPL-X adapter, tested on a tiny SMPL-X-format model generated at test time (tests/smplx_tiny.py).

The model is loaded through the real ``smplx`` code path; the official files cannot be shipped.
"""

from __future__ import annotations

import numpy as np
import pytest
import smplx
import torch
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

# tests/ is on sys.path under pytest's default (prepend) import mode: no package needed.
from smplx_tiny import write_tiny_smplx  # noqa: E402

from resihmr_dr.body.base import FACING_CAMERA_ORIENT, JOINT_INDEX, JOINT_NAMES, SEGMENT_NAMES, BodyParams
from resihmr_dr.body.errors import BodyModelError
from resihmr_dr.body.smplx_model import (
    COCO_FROM_SMPLX,
    JOINT_SELECTION,
    SMPLX_DIR_ENV,
    SMPLX_JOINT_NAMES,
    SmplxBody,
    model_file_gender,
    resolve_smplx_path,
)

COCO_BODY_NAMES = (
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
LIMB_SEGMENTS = SEGMENT_NAMES[1:]
# A pickle that imports chumpy, like the official .pkl model files.
CHUMPY_PICKLE = b"\x80\x02cchumpy.ch\nCh\nq\x00)\x81q\x01."


@pytest.fixture(scope="module")
def tiny(tiny_smplx):
    return tiny_smplx


@pytest.fixture(scope="module")
def body(tiny_smplx_body):
    return tiny_smplx_body


@pytest.fixture(scope="module")
def body64(tiny):
    return SmplxBody(tiny.root, vertex_ids=tiny.vertex_ids, dtype=torch.float64)


@pytest.fixture(scope="module")
def rest(body):
    zeros = torch.zeros(1, body.num_shape)
    return body.forward_model(body.tpose_body_pose(zeros), zeros)


def random_params(body: SmplxBody, batch: int, *, seed: int) -> BodyParams:
    gen = torch.Generator().manual_seed(seed)
    rand = lambda *shape: torch.randn(*shape, generator=gen, dtype=body.dtype)  # noqa: E731
    return BodyParams(
        global_orient=torch.tensor(FACING_CAMERA_ORIENT, dtype=body.dtype) + 0.3 * rand(batch, 3),
        body_pose=0.3 * rand(batch, body.num_pose_joints, 3),
        shape=rand(batch, body.num_shape),
        transl=torch.tensor((0.1, -0.2, 3.0), dtype=body.dtype) + 0.1 * rand(batch, 3),
    )


# --- loading and model location -------------------------------------------------------------


def test_loads_through_smplx(body, tiny):
    assert isinstance(body.smplx_layer, smplx.SMPLX)
    assert body.name == "smplx"
    assert body.model_file == tiny.model_file
    assert body.num_verts == body.smplx_layer.v_template.shape[0] > 1000
    assert body.faces.shape[1] == 3 and body.faces.dtype == torch.long
    assert body.pose_joint_names == SMPLX_JOINT_NAMES[1:22] and body.num_pose_joints == 21
    assert body.shape_names == tuple(f"beta{i}" for i in range(10))
    assert torch.equal(body.default_shape(), torch.zeros(10))
    assert body.dtype == torch.float32
    assert list(body.parameters()) == []  # nothing learnable hidden inside: params are inputs


def test_num_betas_and_gender(tiny, tmp_path):
    assert SmplxBody(tiny.root, num_betas=16, vertex_ids=tiny.vertex_ids).num_shape == 16
    female = write_tiny_smplx(tmp_path, gender="female")
    assert SmplxBody(tmp_path, gender="female", vertex_ids=female.vertex_ids).model_file.name == "SMPLX_FEMALE.npz"
    with pytest.raises(BodyModelError, match="SMPLX_NEUTRAL.npz"):
        SmplxBody(tmp_path, vertex_ids=female.vertex_ids)
    with pytest.raises(BodyModelError, match="gender"):
        resolve_smplx_path(tmp_path, gender="other")


def test_the_model_gender_comes_from_the_file_and_a_contradiction_is_an_error(tiny, tmp_path):
    """BodyModel.gender (recorded in params.npz): a folder gives the gender asked for (neutral by
    default); a model file given directly gives the gender its official name says."""
    female = write_tiny_smplx(tmp_path, gender="female")
    assert SmplxBody(tiny.root, vertex_ids=tiny.vertex_ids).gender == "neutral"
    assert SmplxBody(tmp_path, gender="female", vertex_ids=female.vertex_ids).gender == "female"
    assert SmplxBody(female.model_file, vertex_ids=female.vertex_ids).gender == "female"
    with pytest.raises(BodyModelError, match=r"SMPLX_FEMALE.npz is the female SMPL-X model, but gender 'male'"):
        SmplxBody(female.model_file, gender="male", vertex_ids=female.vertex_ids)
    assert model_file_gender(tmp_path / "my_model.npz") == "neutral"  # no official name: neutral
    assert model_file_gender(tmp_path / "my_model.npz", "male") == "male"
    assert model_file_gender(tmp_path / "smplx_male.NPZ") == "male"
    with pytest.raises(BodyModelError, match="unknown SMPL-X gender 'other'"):
        model_file_gender(tmp_path / "my_model.npz", "other")


def test_anny_has_no_model_gender():
    from resihmr_dr.body.anny_model import AnnyBody

    assert AnnyBody.gender is None and "gender" in AnnyBody.shape_names  # its sex is a fitted phenotype


def test_resolve_explicit_path(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv(SMPLX_DIR_ENV, str(tmp_path / "elsewhere"))
    assert resolve_smplx_path(tiny.root) == tiny.model_file  # folder/smplx/SMPLX_NEUTRAL.npz
    assert resolve_smplx_path(str(tiny.model_file.parent)) == tiny.model_file  # folder/SMPLX_NEUTRAL.npz
    assert resolve_smplx_path(tiny.model_file) == tiny.model_file  # the file itself


def test_resolve_env_var(tiny, monkeypatch):
    monkeypatch.setenv(SMPLX_DIR_ENV, str(tiny.root))
    assert resolve_smplx_path(None) == tiny.model_file
    assert SmplxBody(vertex_ids=tiny.vertex_ids).model_file == tiny.model_file
    monkeypatch.setenv(SMPLX_DIR_ENV, str(tiny.model_file))
    assert resolve_smplx_path(None) == tiny.model_file


def _assert_helpful(message: str) -> None:
    for needle in ("https://smpl-x.is.tue.mpg.de", "SMPL-X v1.1 NPZ", "--smplx-dir", "body.smplx_dir", SMPLX_DIR_ENV):
        assert needle in message


def test_error_without_location(monkeypatch):
    monkeypatch.delenv(SMPLX_DIR_ENV, raising=False)
    with pytest.raises(BodyModelError) as err:
        SmplxBody()
    assert "SMPLX_NEUTRAL.npz" in str(err.value) and "unset" in str(err.value)
    _assert_helpful(str(err.value))


def test_error_wrong_folder(tmp_path, monkeypatch):
    monkeypatch.setenv(SMPLX_DIR_ENV, str(tmp_path))
    for path in (tmp_path, None):
        with pytest.raises(BodyModelError) as err:
            resolve_smplx_path(path)
        message = str(err.value)
        assert str(tmp_path / "smplx" / "SMPLX_NEUTRAL.npz") in message
        assert str(tmp_path / "SMPLX_NEUTRAL.npz") in message
        _assert_helpful(message)
    assert SMPLX_DIR_ENV in message  # says where the location came from


def test_error_missing_folder(tmp_path):
    with pytest.raises(BodyModelError, match="does not exist") as err:
        SmplxBody(tmp_path / "no_such_dir")
    _assert_helpful(str(err.value))


def test_error_pkl_needs_chumpy(tmp_path):
    (tmp_path / "smplx").mkdir()
    (tmp_path / "smplx" / "SMPLX_NEUTRAL.pkl").write_bytes(CHUMPY_PICKLE)
    with pytest.raises(BodyModelError, match="chumpy") as err:
        SmplxBody(tmp_path)
    assert ".npz" in str(err.value)


def test_error_broken_file(tmp_path, tiny):
    np.savez(tmp_path / "SMPLX_NEUTRAL.npz", v_template=np.zeros((10, 3)))
    with pytest.raises(BodyModelError, match="could not load SMPL-X model"):
        SmplxBody(tmp_path, vertex_ids=tiny.vertex_ids)


def test_error_default_vertex_ids_on_small_topology(tiny):
    with pytest.raises(BodyModelError, match="vertex_ids"):
        SmplxBody(tiny.root)


def test_input_validation(body):
    with pytest.raises(ValueError, match="body_pose"):
        body.forward_model(torch.zeros(1, 23, 3), torch.zeros(1, 10))
    with pytest.raises(ValueError, match="shape"):
        body.forward_model(torch.zeros(1, 21, 3), torch.zeros(1, 11))


# --- geometry of the rest pose ----------------------------------------------------------------


def test_rest_joints_match_model(rest, tiny):
    expected = torch.as_tensor(tiny.joints[list(JOINT_SELECTION)], dtype=torch.float32)
    torch.testing.assert_close(rest.joints[0], expected, atol=1e-5, rtol=0)


def test_rest_joints_layout(rest):
    j = {name: rest.joints[0, i] for i, name in enumerate(JOINT_NAMES)}
    for part in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        assert j[f"left_{part}"][0] > 0 > j[f"right_{part}"][0]  # person's left is +X
    for side in ("left", "right"):
        assert j[f"{side}_hip"][1] > j[f"{side}_knee"][1] > j[f"{side}_ankle"][1]  # Y up
        xs = [abs(j[f"{side}_{p}"][0]) for p in ("shoulder", "elbow", "wrist")]
        assert xs[0] < xs[1] < xs[2]  # T-pose: arms out along X
        assert abs(j[f"{side}_wrist"][1] - j[f"{side}_shoulder"][1]) < 0.05
    assert j["head"][1] > j["neck"][1] > j["pelvis"][1]
    height = rest.verts[0, :, 1].max() - rest.verts[0, :, 1].min()
    assert 1.6 < height < 1.9


def test_coco_keypoints_consistent_with_joints(rest):
    coco, joints = rest.coco_kp[0], rest.joints[0]
    for k, name in enumerate(COCO_BODY_NAMES, start=5):
        torch.testing.assert_close(coco[k], joints[JOINT_INDEX[name]])
    nose, l_eye, r_eye, l_ear, r_ear = coco[:5]
    head, neck = joints[JOINT_INDEX["head"]], joints[JOINT_INDEX["neck"]]
    for point in coco[:5]:
        assert point[1] > neck[1] and torch.linalg.norm(point - head) < 0.2
    assert nose[2] > head[2] and l_eye[2] > head[2]  # the face looks along +Z
    assert l_eye[0] > 0 > r_eye[0] and l_ear[0] > 0 > r_ear[0]
    assert COCO_FROM_SMPLX[1:3] == (57, 56)  # smplx's extra joints list the right eye first


# --- segment labels ---------------------------------------------------------------------------


def _largest_component_fraction(faces: np.ndarray, keep: np.ndarray) -> float:
    edges = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    edges = edges[keep[edges[:, 0]] & keep[edges[:, 1]]]
    n = len(keep)
    graph = coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    sizes = np.bincount(labels[keep])
    return sizes.max() / keep.sum()


def test_segments_non_empty_and_connected(body):
    faces = body.faces.numpy()
    labels = body.vertex_segment.numpy()
    for segment in LIMB_SEGMENTS:
        keep = labels == SEGMENT_NAMES.index(segment)
        assert keep.sum() > 20, segment
        assert _largest_component_fraction(faces, keep) >= 0.99, segment


def test_segments_sides_and_order(body, rest):
    verts = rest.verts[0]
    centre = {s: verts[body.segment_vertex_ids(s)].mean(0) for s in LIMB_SEGMENTS}
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for part in ("upper_arm", "forearm", "hand", "thigh", "shank", "foot"):
            assert sign * centre[f"{side}_{part}"][0] > 0.03, (side, part)
        arm = [abs(centre[f"{side}_{p}"][0]) for p in ("upper_arm", "forearm", "hand")]
        leg = [centre[f"{side}_{p}"][1] for p in ("thigh", "shank", "foot")]
        assert arm[0] < arm[1] < arm[2] and leg[0] > leg[1] > leg[2]


def test_limbs_move_with_their_joints(body, rest):
    pose = torch.zeros(1, 21, 3)
    pose[0, body.pose_joint_names.index("left_elbow"), 1] = torch.pi / 2  # bend the left elbow
    moved = (body.forward_model(pose, torch.zeros(1, 10)).verts - rest.verts)[0].norm(dim=1)
    for segment, distance in (("left_forearm", 0.1), ("left_hand", 0.3)):  # at ~0.13 m and ~0.34 m from the elbow
        assert moved[body.segment_vertex_ids(segment)].median() > distance, segment
    for segment in ("left_upper_arm", "right_forearm", "right_hand", "left_thigh"):
        assert moved[body.segment_vertex_ids(segment)].max() < 1e-6, segment


def test_shape_changes_height(body):
    pose = torch.zeros(1, 21, 3)
    heights = []
    for beta0 in (-2.0, 0.0, 2.0):
        shape = torch.zeros(1, 10)
        shape[0, 0] = beta0
        y = body.forward_model(pose, shape).verts[0, :, 1]
        heights.append(float(y.max() - y.min()))
    assert heights[0] < heights[1] < heights[2]


# --- the global transform, smplx equality, gradients ------------------------------------------


def test_forward_equals_direct_smplx(body, tiny):
    direct = smplx.create(
        str(tiny.root),
        model_type="smplx",
        gender="neutral",
        num_betas=10,
        use_pca=False,
        flat_hand_mean=True,
        batch_size=1,
    )
    direct.vertex_joint_selector = body.smplx_layer.vertex_joint_selector  # tiny topology's extra joints
    params = random_params(body, 3, seed=1)
    zeros = lambda n: torch.zeros(3, n)  # noqa: E731
    with torch.no_grad():
        ref = direct(
            betas=params.shape,
            global_orient=params.global_orient,
            body_pose=params.body_pose.reshape(3, 63),
            transl=params.transl,
            left_hand_pose=zeros(45),
            right_hand_pose=zeros(45),
            expression=zeros(10),
            jaw_pose=zeros(3),
            leye_pose=zeros(3),
            reye_pose=zeros(3),
        )
        out = body(params)
    torch.testing.assert_close(out.verts, ref.vertices, atol=2e-5, rtol=0)
    torch.testing.assert_close(out.joints, ref.joints[:, list(JOINT_SELECTION)], atol=2e-5, rtol=0)
    torch.testing.assert_close(out.coco_kp, ref.joints[:, list(COCO_FROM_SMPLX)], atol=2e-5, rtol=0)


def test_gradients_reach_all_parameters(body):
    params = random_params(body, 2, seed=2)
    params = BodyParams(*(t.clone().requires_grad_(True) for t in params.as_tuple()))
    out = body(params)
    loss = out.verts.square().mean() + out.joints.square().mean() + out.coco_kp.square().mean()
    loss.backward()
    for name, tensor in zip(("global_orient", "body_pose", "shape", "transl"), params.as_tuple()):
        assert tensor.grad is not None and torch.isfinite(tensor.grad).all(), name
        assert tensor.grad.abs().sum() > 0, name
    assert (params.shape.grad.abs() > 0).all()  # every beta moves the mesh


def test_finite_difference_gradients(body64):
    params = random_params(body64, 1, seed=3)
    gen = torch.Generator().manual_seed(4)
    weights = torch.randn(body64.num_verts, 3, generator=gen, dtype=torch.float64) / body64.num_verts

    def projected(global_orient, body_pose, shape, transl):
        verts = body64(BodyParams(global_orient, body_pose, shape, transl)).verts
        return (verts * weights).sum(dim=1)  # (1, 3)

    inputs = tuple(t.clone().requires_grad_(True) for t in params.as_tuple())
    assert torch.autograd.gradcheck(projected, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_tpose(body):
    shape = torch.randn(2, 10)
    torch.testing.assert_close(body.tpose_body_pose(shape), torch.zeros(2, 21, 3))
    t = body.tpose(body.default_params(2).replace(shape=shape))
    for side in ("left", "right"):
        dy = t.joint(f"{side}_wrist")[:, 1] - t.joint(f"{side}_shoulder")[:, 1]
        assert dy.abs().max() < 0.05  # arms horizontal
