"""Other methods' fits as initial fits: files shaped exactly like SMPLify-X's and 4D-Humans' outputs.

SMPLify-X (``smplifyx/fit_single_frame.py``) pickles, with protocol 2, one dict per person of float32
(1, ...) arrays: ``camera_rotation`` (1, 3, 3), ``camera_translation`` (1, 3) from its camera's
parameters, then its SMPL-X body model's parameters (``create_transl=False``): ``betas`` (1, 10),
``global_orient`` (1, 3), ``body_pose`` (1, 63) -- or, with VPoser, the (1, 32) latent --,
``left_hand_pose`` / ``right_hand_pose`` ((1, 12) PCA with ``use_pca``, else (1, 45)), ``jaw_pose``,
``leye_pose``, ``reye_pose`` (1, 3) and ``expression`` (1, 10).
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import roma
import smplx
import torch
from smplx.lbs import batch_rodrigues
from smplx.vertex_joint_selector import VertexJointSelector

# tests/ is on sys.path under pytest's default (prepend) import mode: no package needed.
from resihmr_dr.body.smplx_model import JOINT_SELECTION, NUM_BODY_POSE_JOINTS, SmplxBody
from resihmr_dr.camera import project_points
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.init_fit import (
    VPOSER_LATENT_SIZE,
    InitialFit,
    from_4dhumans,
    load_initial_fit,
    save_initial_fit,
)
from resihmr_dr.fit.pipeline import params_from_initial_fit

RNG = np.random.default_rng(7)
BETAS = RNG.normal(scale=0.5, size=10)
ORIENT = np.array([np.pi - 0.1, 0.2, -0.05])  # upright in the OpenCV camera: ~180 degrees about x
POSE = RNG.normal(scale=0.2, size=(21, 3))
CAM_T = np.array([0.05, 0.3, 12.0])  # SMPLify-X's camera translation (metres), focal 5000 px
F32 = np.float32
SMPLIFYX_KEYS = {
    "camera_rotation",
    "camera_translation",
    "betas",
    "global_orient",
    "body_pose",
    "left_hand_pose",
    "right_hand_pose",
    "jaw_pose",
    "leye_pose",
    "reye_pose",
    "expression",
}


def smplifyx_pickle(*, vposer: bool = False, hand_dim: int = 12, rng_hands: bool = True) -> dict[str, np.ndarray]:
    """Exactly the dict SMPLify-X pickles for one person (keys, shapes, float32)."""
    hands = np.random.default_rng(1).normal(size=(2, 1, hand_dim)) if rng_hands else np.zeros((2, 1, hand_dim))
    return {
        "camera_rotation": np.eye(3, dtype=F32)[None],
        "camera_translation": CAM_T[None].astype(F32),
        "betas": BETAS[None].astype(F32),
        "global_orient": ORIENT[None].astype(F32),
        "body_pose": (np.zeros((1, VPOSER_LATENT_SIZE)) if vposer else POSE.reshape(1, 63)).astype(F32),
        "left_hand_pose": hands[0].astype(F32),
        "right_hand_pose": hands[1].astype(F32),
        "jaw_pose": np.full((1, 3), 0.1, F32),
        "leye_pose": np.zeros((1, 3), F32),
        "reye_pose": np.zeros((1, 3), F32),
        "expression": np.full((1, 10), 0.3, F32),
    }


def write_pickle(path, data) -> None:
    with path.open("wb") as f:
        pickle.dump(data, f, protocol=2)  # SMPLify-X's protocol


# --------------------------------------------------------------------------- SMPLify-X
@pytest.mark.parametrize("hand_dim", [12, 45], ids=["pca12", "full45"])
def test_real_smplifyx_pickle_is_accepted(tmp_path, hand_dim):
    data = smplifyx_pickle(hand_dim=hand_dim)
    assert set(data) == SMPLIFYX_KEYS and "transl" not in data
    assert all(v.dtype == np.float32 and v.shape[0] == 1 for v in data.values())
    path = tmp_path / "results" / "img" / "000.pkl"
    path.parent.mkdir(parents=True)
    write_pickle(path, data)

    fit = load_initial_fit(path)

    np.testing.assert_allclose(fit.transl, CAM_T, atol=1e-6)  # camera_translation -> transl
    assert fit.body_pose.shape == (NUM_BODY_POSE_JOINTS, 3)  # what the SMPL-X body expects
    np.testing.assert_allclose(fit.body_pose, POSE, atol=1e-6)
    np.testing.assert_allclose(fit.global_orient, ORIENT, atol=1e-6)
    np.testing.assert_allclose(fit.betas, BETAS, atol=1e-6)
    for arr in (fit.betas, fit.global_orient, fit.body_pose, fit.transl):
        assert arr.dtype == np.float64
    # hand/face poses and expression are kept as extras (batch dim dropped) and not used
    assert fit.extras["left_hand_pose"].shape == (hand_dim,) and fit.extras["expression"].shape == (10,)
    assert set(fit.extras) == SMPLIFYX_KEYS - {"betas", "global_orient", "body_pose"}


def test_camera_translation_only_is_accepted(tmp_path):
    path = tmp_path / "minimal.pkl"
    write_pickle(path, {k: smplifyx_pickle()[k] for k in ("camera_translation", "betas", "global_orient", "body_pose")})
    fit = load_initial_fit(path)
    np.testing.assert_allclose(fit.transl, CAM_T, atol=1e-6)
    assert fit.body_pose.shape == (21, 3)


@pytest.mark.parametrize("suffix", [".npz", ".json"])
def test_camera_translation_in_other_formats(tmp_path, suffix):
    data = {k: smplifyx_pickle()[k] for k in ("camera_translation", "betas", "global_orient", "body_pose")}
    path = tmp_path / f"fit{suffix}"
    if suffix == ".npz":
        np.savez(path, **data)
    else:
        path.write_text(json.dumps({k: v.tolist() for k, v in data.items()}))
    np.testing.assert_allclose(load_initial_fit(path).transl, CAM_T, atol=1e-6)


def test_vposer_latent_is_a_clear_error(tmp_path):
    path = tmp_path / "000.pkl"
    data = smplifyx_pickle(vposer=True)
    assert data["body_pose"].shape == (1, 32)
    write_pickle(path, data)
    with pytest.raises(DataError) as info:
        load_initial_fit(path)
    err, msg = info.value, str(info.value)
    assert err.path == path and err.field == "body_pose"
    assert "000.pkl" in msg and "'body_pose'" in msg
    assert "VPoser latent" in msg and "vposer.decode(" in msg and "output_type='aa'" in msg and "(1, 63)" in msg


@pytest.mark.parametrize(
    ("camera_rotation", "fragment"),
    [
        pytest.param(roma.rotvec_to_rotmat(torch.tensor([0.0, 0.3, 0.0])).numpy()[None], "not the identity", id="yaw"),
        pytest.param(np.diag([1.0, -1.0, -1.0])[None], "not the identity", id="opengl-flip"),
        pytest.param(np.eye(3)[None, :2], "(3, 3)", id="shape"),
    ],
)
def test_non_identity_camera_rotation_is_refused(tmp_path, camera_rotation, fragment):
    data = smplifyx_pickle()
    data["camera_rotation"] = camera_rotation.astype(F32)
    path = tmp_path / "000.pkl"
    write_pickle(path, data)
    with pytest.raises(DataError, match=fragment) as info:
        load_initial_fit(path)
    assert info.value.field == "camera_rotation" and "000.pkl" in str(info.value)


def test_float32_identity_camera_rotation_round_off_is_accepted(tmp_path):
    data = smplifyx_pickle()
    data["camera_rotation"] = (np.eye(3) + 1e-7).astype(F32)[None]
    path = tmp_path / "000.pkl"
    write_pickle(path, data)
    np.testing.assert_allclose(load_initial_fit(path).transl, CAM_T, atol=1e-6)


def test_transl_and_camera_translation(tmp_path):
    path = tmp_path / "both.pkl"
    data = smplifyx_pickle()
    data["transl"] = np.zeros((1, 3), F32)  # create_transl=True but never moved: the camera's holds it
    write_pickle(path, data)
    np.testing.assert_allclose(load_initial_fit(path).transl, CAM_T, atol=1e-6)

    data["camera_translation"] = np.zeros((1, 3), F32)
    data["transl"] = CAM_T[None].astype(F32)
    write_pickle(path, data)
    np.testing.assert_allclose(load_initial_fit(path).transl, CAM_T, atol=1e-6)

    data["camera_translation"] = CAM_T[None].astype(F32)  # both non-zero: did transl already include it?
    write_pickle(path, data)
    with pytest.raises(DataError, match="ambiguous") as info:
        load_initial_fit(path)
    assert info.value.field == "camera_translation" and "both.pkl" in str(info.value)


def test_neither_translation_names_both_keys(tmp_path):
    path = tmp_path / "000.pkl"
    write_pickle(path, {k: v for k, v in smplifyx_pickle().items() if k != "camera_translation"})
    with pytest.raises(DataError, match="camera_translation") as info:
        load_initial_fit(path)
    assert info.value.field == "transl" and "missing required key 'transl'" in str(info.value)


@pytest.fixture(scope="module")
def tiny(tiny_smplx):
    return tiny_smplx


def test_smplifyx_frame_matches_ours(tmp_path, tiny):
    """SMPLify-X's body (create_transl=False) through its camera (R X + t, pinhole) lands where ours does."""
    data = smplifyx_pickle(rng_hands=False)
    path = tmp_path / "000.pkl"
    write_pickle(path, data)
    # SMPLify-X's side: its model settings, then PerspectiveCamera.forward
    ref = smplx.create(
        str(tiny.root),
        model_type="smplx",
        gender="neutral",
        ext="npz",
        num_betas=10,
        use_pca=True,
        num_pca_comps=12,
        create_transl=False,
    )
    ref.vertex_joint_selector = VertexJointSelector(vertex_ids=tiny.vertex_ids)  # the tiny model's topology
    kw = {k: torch.from_numpy(v) for k, v in data.items() if not k.startswith("camera_")}
    joints_model = ref(**kw).joints[0, list(JOINT_SELECTION)].detach().double()
    rot, t = torch.from_numpy(data["camera_rotation"][0]).double(), torch.from_numpy(data["camera_translation"][0])
    joints_cam_ref = joints_model @ rot.T + t.double()
    focal, center = 5000.0, torch.tensor([240.0, 320.0], dtype=torch.float64)
    pixels_ref = focal * joints_cam_ref[:, :2] / joints_cam_ref[:, 2:] + center

    body = SmplxBody(tiny.root, vertex_ids=tiny.vertex_ids, dtype=torch.float64)
    ours = body.forward(params_from_initial_fit(body, load_initial_fit(path))).joints[0]
    pixels = project_points(ours, fx=focal, fy=focal, cx=240.0, cy=320.0)

    torch.testing.assert_close(ours, joints_cam_ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(pixels, pixels_ref, atol=1e-2, rtol=0)
    assert bool((ours[:, 2] > 0).all())  # in front of the camera
    assert float(ours[1, 1]) < float(ours[0, 1])  # neck above pelvis: y down, the body upright


# --------------------------------------------------------------------------- 4D-Humans (HMR 2.0)
B = 2
ORIENTS = np.array([[np.pi - 0.2, 0.1, 0.0], [3.0, -0.3, 0.2]])
SMPL_POSES = RNG.normal(scale=0.3, size=(B, 23, 3))
SMPL_BETAS = RNG.normal(size=(B, 10))
CAM_T_FULL = np.array([[0.1, 0.2, 30.0], [-0.4, 0.1, 25.0]])


def hmr2_output() -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``out['pred_smpl_params']`` as HMR 2.0 returns it (rotation matrices, float32) and pred_cam_t_full."""
    rotmat = lambda aa: roma.rotvec_to_rotmat(torch.from_numpy(aa)).numpy().astype(F32)  # noqa: E731
    params = {
        "global_orient": rotmat(ORIENTS)[:, None],  # (B, 1, 3, 3)
        "body_pose": rotmat(SMPL_POSES),  # (B, 23, 3, 3)
        "betas": SMPL_BETAS.astype(F32),  # (B, 10)
    }
    return params, CAM_T_FULL.astype(F32)


@pytest.mark.parametrize("as_torch", [False, True], ids=["numpy", "torch"])
@pytest.mark.parametrize("index", [0, 1])
def test_from_4dhumans(index, as_torch):
    params, cam_t = hmr2_output()
    assert params["global_orient"].shape == (B, 1, 3, 3) and params["body_pose"].shape == (B, 23, 3, 3)
    if as_torch:
        params, cam_t = {k: torch.from_numpy(v) for k, v in params.items()}, torch.from_numpy(cam_t)

    fit = from_4dhumans(params, cam_t, index=index)

    assert isinstance(fit, InitialFit)
    assert fit.body_pose.shape == (21, 3) and fit.global_orient.shape == (3,) and fit.transl.shape == (3,)
    np.testing.assert_allclose(fit.global_orient, ORIENTS[index], atol=1e-5)
    np.testing.assert_allclose(fit.body_pose, SMPL_POSES[index, :21], atol=1e-5)  # hands 22, 23 dropped
    np.testing.assert_allclose(fit.betas, SMPL_BETAS[index], atol=1e-6)
    np.testing.assert_allclose(fit.transl, CAM_T_FULL[index], atol=1e-5)
    # SMPL-X turns the axis-angle back into the same rotation matrices
    back = batch_rodrigues(torch.from_numpy(fit.body_pose)).numpy()
    np.testing.assert_allclose(back, roma.rotvec_to_rotmat(torch.from_numpy(SMPL_POSES[index, :21])).numpy(), atol=1e-5)


def test_from_4dhumans_unbatched_options_and_round_trip(tmp_path):
    params, cam_t = hmr2_output()
    single = {k: v[1] for k, v in params.items()}  # (1, 3, 3), (23, 3, 3), (10,)
    fit = from_4dhumans(single, cam_t[1], keep_betas=False, transl_offset=[0.0, 0.1, 0.0])
    np.testing.assert_array_equal(fit.betas, np.zeros(10))
    np.testing.assert_allclose(fit.transl, CAM_T_FULL[1] + [0.0, 0.1, 0.0], atol=1e-5)

    path = save_initial_fit(fit, tmp_path / "fits" / "person1.npz")
    back = load_initial_fit(path)
    for name in ("betas", "global_orient", "body_pose", "transl"):
        np.testing.assert_array_equal(getattr(back, name), getattr(fit, name))


def test_saved_smplifyx_fit_reloads(tmp_path):
    src = tmp_path / "000.pkl"
    write_pickle(src, smplifyx_pickle())
    fit = load_initial_fit(src)
    back = load_initial_fit(save_initial_fit(fit, tmp_path / "000.npz"))  # camera_translation not doubled
    np.testing.assert_allclose(back.transl, CAM_T, atol=1e-6)
    assert "camera_translation" not in back.extras and back.extras["expression"].shape == (10,)


def test_save_needs_npz(tmp_path):
    fit = from_4dhumans(*hmr2_output())
    with pytest.raises(DataError, match=r"\.npz") as info:
        save_initial_fit(fit, tmp_path / "fit.json")
    assert "fit.json" in str(info.value)


def _bad(key: str, value) -> dict:
    params, _ = hmr2_output()
    params[key] = value
    return params


@pytest.mark.parametrize(
    ("params", "field", "fragment"),
    [
        pytest.param(_bad("body_pose", np.zeros((B, 21, 3, 3))), "body_pose", "(B, 23, 3, 3)", id="smplx-joints"),
        pytest.param(_bad("body_pose", np.zeros((B, 69))), "body_pose", "(B, 23, 3, 3)", id="axis-angle"),
        pytest.param(
            _bad("global_orient", np.tile(np.eye(3) * 2, (B, 1, 1, 1))), "global_orient", "rotation", id="scaled"
        ),
        pytest.param(
            _bad("global_orient", np.tile(np.diag([1.0, 1, -1]), (B, 1, 1, 1))),
            "global_orient",
            "determinant",
            id="reflection",
        ),
        pytest.param(_bad("betas", np.full((B, 10), np.nan)), "betas", "NaN", id="betas-nan"),
        pytest.param({k: v for k, v in hmr2_output()[0].items() if k != "betas"}, "betas", "missing", id="no-betas"),
    ],
)
def test_from_4dhumans_bad_input(params, field, fragment):
    with pytest.raises(DataError) as info:
        from_4dhumans(params, CAM_T_FULL)
    assert info.value.field == field and fragment in str(info.value)


def test_from_4dhumans_index_out_of_range():
    with pytest.raises(DataError, match="out of range"):
        from_4dhumans(*hmr2_output(), index=2)
