"""The Anny adapter: frames, named joints, COCO keypoints, segment labels, T-pose, gradients."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse
import scipy.sparse.csgraph
import torch

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_NAMES, BodyParams


def _joint(out, name):
    return out.joints[0, JOINT_INDEX[name]]


def test_rest_pose_frame_and_sizes(anny_body):
    params = anny_body.default_params(1)
    out = anny_body.forward_model(params.body_pose, params.shape)
    assert out.verts.shape == (1, anny_body.num_verts, 3)
    assert anny_body.faces.shape[1] == 3 and int(anny_body.faces.max()) < anny_body.num_verts
    height = float(out.verts[0, :, 1].max() - out.verts[0, :, 1].min())
    assert 1.4 < height < 2.0  # metres, Y up
    # Person faces +Z: the nose is in front of the head joint.
    assert float(out.coco_kp[0, 0, 2]) > float(_joint(out, "head")[2])


@pytest.mark.parametrize("side,sign", [("left", 1.0), ("right", -1.0)])
def test_joints_on_the_correct_side_and_ordered(anny_body, side, sign):
    params = anny_body.default_params(1)
    out = anny_body.forward_model(params.body_pose, params.shape)
    for joint in ("shoulder", "elbow", "wrist", "hip", "knee", "ankle"):
        assert sign * float(_joint(out, f"{side}_{joint}")[0]) > 0.03, joint
    hip, knee, ankle = (_joint(out, f"{side}_{j}") for j in ("hip", "knee", "ankle"))
    assert float(hip[1]) > float(knee[1]) > float(ankle[1])
    shoulder, elbow, wrist = (_joint(out, f"{side}_{j}") for j in ("shoulder", "elbow", "wrist"))
    assert float(shoulder[1]) > float(elbow[1]) > float(wrist[1])  # A-pose: arms hang down
    assert float(_joint(out, "head")[1]) > float(_joint(out, "neck")[1]) > float(_joint(out, "pelvis")[1])


def test_coco_keypoints_match_named_joints(anny_body):
    params = anny_body.default_params(1)
    out = anny_body.forward_model(params.body_pose, params.shape)
    pairs = {
        5: "left_shoulder",
        6: "right_shoulder",
        7: "left_elbow",
        8: "right_elbow",
        9: "left_wrist",
        10: "right_wrist",
        11: "left_hip",
        12: "right_hip",
        13: "left_knee",
        14: "right_knee",
        15: "left_ankle",
        16: "right_ankle",
    }
    for coco_id, name in pairs.items():
        dist = float((out.coco_kp[0, coco_id] - _joint(out, name)).norm())
        assert dist < 0.12, (name, dist)
    assert float(out.coco_kp[0, 1, 0]) > 0 > float(out.coco_kp[0, 2, 0])  # left eye at +X


def test_segments_cover_each_limb_contiguously(anny_body):
    labels = anny_body.vertex_segment.cpu().numpy()
    faces = anny_body.faces.cpu().numpy()
    rest = anny_body.forward_model(*_rest(anny_body)).verts[0].detach().cpu().numpy()
    for seg_id, name in enumerate(SEGMENT_NAMES):
        ids = np.flatnonzero(labels == seg_id)
        assert ids.size > 50, name
        if name == "other":
            continue
        # Connected over mesh edges: the largest component holds nearly every vertex.
        keep = np.all(labels[faces] == seg_id, axis=1)
        f = faces[keep]
        edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
        graph = scipy.sparse.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(len(labels),) * 2)
        _, comp = scipy.sparse.csgraph.connected_components(graph, directed=False)
        largest = np.bincount(comp[ids]).max()
        assert largest / ids.size > 0.97, (name, largest, ids.size)
        side = 1.0 if name.startswith("left") else -1.0
        assert side * np.median(rest[ids, 0]) > 0.05, name  # left segments at +X


def _rest(body):
    params = body.default_params(1)
    return params.body_pose, params.shape


def test_tpose_arms_horizontal(anny_body):
    params = anny_body.default_params(1)
    out = anny_body.tpose(params)
    for side, sign in (("left", 1.0), ("right", -1.0)):
        shoulder, elbow, wrist = (_joint(out, f"{side}_{j}") for j in ("shoulder", "elbow", "wrist"))
        for a, b in ((shoulder, elbow), (elbow, wrist)):
            d = torch.nn.functional.normalize(b - a, dim=0)
            assert float(sign * d[0]) > 0.99, (side, d)


def test_camera_frame_faces_camera(anny_body):
    params = anny_body.default_params(1, depth_m=3.0)
    out = anny_body(params)
    # OpenCV camera: y down, so the head is above (smaller y than) the ankles; the nose points at
    # the camera (smaller z than the head joint); the person's left appears on the image right.
    assert float(out.joint("head")[0, 1]) < float(out.joint("left_ankle")[0, 1])
    assert float(out.coco_kp[0, 0, 2]) < float(out.joint("head")[0, 2])
    assert float(out.joint("left_shoulder")[0, 0]) > float(out.joint("right_shoulder")[0, 0])
    assert abs(float(out.joint("pelvis")[0, 2]) - 3.0) < 1e-4


def test_gradients_flow_to_all_parameters(anny_body):
    params = anny_body.default_params(2)
    params = BodyParams(*(t.clone().requires_grad_(True) for t in params.as_tuple()))
    out = anny_body(params)
    (out.verts.square().sum() + out.coco_kp.square().sum()).backward()
    for name, t in zip(("global_orient", "body_pose", "shape", "transl"), params.as_tuple()):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0, name
    # Each posable joint of the limbs moves vertices.
    assert (params.body_pose.grad.abs().sum(-1) > 0).all()


def test_pose_gradient_matches_finite_differences(anny_body):
    params = anny_body.default_params(1)
    body_pose = params.body_pose.double().clone()
    j = anny_body.pose_joint_names.index("lowerarm01.L")
    weights = torch.randn(anny_body.num_verts, 3, generator=torch.Generator().manual_seed(1))

    def loss(pose):
        out = anny_body.forward_model(pose.float(), params.shape)
        return (out.verts[0] * weights).sum().double()

    pose = body_pose.clone().requires_grad_(True)
    loss(pose).backward()
    eps = 1e-3
    for axis in range(3):
        plus, minus = body_pose.clone(), body_pose.clone()
        plus[0, j, axis] += eps
        minus[0, j, axis] -= eps
        fd = (loss(plus) - loss(minus)) / (2 * eps)
        assert float(pose.grad[0, j, axis]) == pytest.approx(float(fd), rel=0.05, abs=0.05)


def _random_body(seed: int):
    g = torch.Generator().manual_seed(seed)
    return 0.4 * torch.randn(2, 19, 3, generator=g), torch.rand(2, 6, generator=g)


def test_forward_matches_anny_own_forward(anny_body):
    """The adapter's coefficient shortcut (local changes and facial actions at zero) gives Anny's
    own vertices, bones and keypoints."""
    pose, shape = _random_body(0)
    raw = anny_body._anny(pose_parameters=anny_body.pose_matrices(pose), phenotype_kwargs=shape)
    out = anny_body.forward_model(pose, shape)
    to_model = anny_body._to_model.T
    torch.testing.assert_close(out.verts, raw["vertices"] @ to_model, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.coco_kp, anny_body._coco(raw) @ to_model, rtol=0, atol=1e-6)


def test_keypoints_model_equals_forward_model(anny_body):
    """Keypoints through the per-bone rest points equal the regressor on the skinned mesh, in value
    and in the gradients with respect to pose and shape."""
    pose, shape = _random_body(1)
    results = []
    for fn in (
        lambda p, s: (lambda o: (o.joints, o.coco_kp))(anny_body.forward_model(p, s)),
        anny_body.keypoints_model,
    ):
        p, s = pose.clone().requires_grad_(True), shape.clone().requires_grad_(True)
        joints, coco = fn(p, s)
        weights = torch.linspace(-1.0, 1.0, coco.numel()).view_as(coco)
        ((coco * weights).sum() + joints.square().sum()).backward()
        results.append((joints.detach(), coco.detach(), p.grad, s.grad))
    (j_ref, c_ref, gp_ref, gs_ref), (j, c, gp, gs) = results
    torch.testing.assert_close(j, j_ref, rtol=0, atol=1e-6)
    torch.testing.assert_close(c, c_ref, rtol=0, atol=2e-6)
    torch.testing.assert_close(gp, gp_ref, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gs, gs_ref, rtol=1e-4, atol=1e-4)


def test_first_build_notice_names_the_cache(tmp_path, monkeypatch):
    """Before Anny's first construction the user is told what happens and how long it takes; with
    a built cache nothing is said."""
    from resihmr_dr.body.anny_model import first_build_notice

    monkeypatch.setenv("ANNY_CACHE_DIR", str(tmp_path))
    notice = first_build_notice()
    assert notice is not None and "2.5 min" in notice and str(tmp_path) in notice
    from anny.models.model_data import CURRENT_DATA_VERSION

    built = tmp_path / f"v{CURRENT_DATA_VERSION}"
    built.mkdir()
    (built / "build_model_data_0123.safetensors").write_bytes(b"")
    assert first_build_notice() is None


def test_warp_driver_note_is_dropped_other_stderr_kept(capfd):
    """The note Warp's C library prints on machines without an NVIDIA driver is dropped; anything
    else written to file descriptor 2 meanwhile still reaches stderr."""
    import os

    from resihmr_dr.body.anny_model import WARP_NO_DRIVER_NOTE, _stderr_without

    with _stderr_without(WARP_NO_DRIVER_NOTE):
        os.write(2, WARP_NO_DRIVER_NOTE + b". GPU execution will not be available.\n")
        os.write(2, b"something else\n")
    err = capfd.readouterr().err
    assert "something else" in err and "NVIDIA CUDA driver" not in err


def test_warp_is_quiet_inside_and_the_applications_level_comes_back():
    warp = pytest.importorskip("warp")
    from resihmr_dr.body.anny_model import _warp_quiet

    before = warp.config.log_level
    try:
        for chosen in (warp.LOG_DEBUG, warp.LOG_INFO, warp.LOG_ERROR):
            warp.config.log_level = chosen
            with _warp_quiet() as inside:
                assert inside is warp and warp.config.log_level == max(chosen, warp.LOG_WARNING)
            assert warp.config.log_level == chosen
    finally:
        warp.config.log_level = before


def test_a_script_building_anny_prints_no_warp_banner():
    """A plain Python script (not the command line) that builds Anny and runs a forward pass prints
    nothing of Warp's: no start-up banner ("CUDA driver not available"), no kernel load times; and
    Warp's log level is its default again afterwards."""
    import subprocess
    import sys

    script = (
        "from resihmr_dr.body.anny_model import AnnyBody\n"
        "body = AnnyBody()\n"
        "p = body.default_params(1)\n"
        "body.forward_model(p.body_pose, p.shape)\n"
        "import warp\n"
        "print('done', warp.config.log_level == warp.LOG_INFO)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True)
    assert run.stdout.strip() == "done True", run.stdout  # Warp's own default level is kept
    assert "Warp" not in run.stderr and "CUDA driver" not in run.stderr, run.stderr
