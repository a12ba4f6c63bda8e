"""RAFO: round trips on the real Anny body, the closed-form fallback, degenerate inputs.

Tolerance on lam (|lam_hat - lam| < 0.05) and why it holds only for some anchor perturbations:
one endpoint keypoint fixes 2 of RAFO's 4 unknowns (lam, J_a). With J_t fixed, an anchor error
that moves the anchor's *image* across the projected segment is observable (the endpoint leaves
the keypoint's ray unless the anchor moves back), and one along the camera ray barely changes the
projected segment; both leave lam identified up to the priors' pull (measured <= 0.035 here). An
anchor error that slides the anchor's image *along* the projected segment is not observable from
one keypoint: the endpoint stays on the keypoint's ray and lam absorbs the shift,
lam_hat ~ (lam L - d) / (L - d) for a shift d along a segment of length L. That is tested
separately (lam_hat follows the prediction, the 3D endpoint is still recovered), and random
perturbations get the bound 0.1 (0.7 * 2 cm / (0.77 * 0.23 m) on the most foreshortened
segment used here).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import pytest
import roma
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from resihmr_dr.body.anny_model import POSE_BONES
from resihmr_dr.body.base import JOINT_NAMES
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import (
    KEYPOINT_INDEX,
    KEYPOINT_NAMES,
    LIMB_BY_NAME,
    LIMBS,
    LimbStatus,
)
from resihmr_dr.data.status import derive_limb_status
from resihmr_dr.fit.anthropometry import (
    SEGMENT_LENGTH_FRACTIONS,
    expected_segment_length_m,
)
from resihmr_dr.fit.rafo import (
    RafoConfig,
    RafoResult,
    ResidualLimbInput,
    closed_form_lambda,
    endpoint_on_segment,
    inputs_from_joints,
    lambda_from_logit,
    logit_from_lambda,
    rafo_energy_terms,
    solve_rafo,
)

D = torch.float64
ALL_RESIDUALS = [
    (limb.name, status) for limb in LIMBS for status in (limb.above_status, limb.below_status)
]  # both sides x the four types

# Scene name -> (pose, yaw about the vertical in degrees, depth in metres, camera).
SCENES = {
    "apose": ("rest", 0.0, 3.0, PinholeCamera(1200.0, 1200.0, 500.0, 500.0, 1000, 1000)),
    "tpose": ("tpose", 15.0, 4.0, PinholeCamera(1000.0, 1000.0, 320.0, 240.0, 640, 480)),
    "random": ("random", -20.0, 3.0, PinholeCamera(1500.0, 1500.0, 500.0, 500.0, 1000, 1000)),
}


@pytest.fixture(scope="module")
def scenes(anny_body):
    """Scene name -> (joints_cam (15, 3) float64, body height in metres, camera)."""
    out = {}
    for name, (pose, yaw_deg, depth, camera) in SCENES.items():
        params = anny_body.default_params(depth_m=depth)
        if pose == "tpose":
            params = params.replace(body_pose=anny_body.tpose_body_pose(params.shape))
        elif pose == "random":
            gen = torch.Generator().manual_seed(3)
            params = params.replace(body_pose=0.25 * torch.randn(1, len(POSE_BONES), 3, generator=gen))
        yaw = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0]))
        orient = roma.rotmat_to_rotvec(yaw @ roma.rotvec_to_rotmat(params.global_orient[0]))
        params = params.replace(global_orient=orient[None])
        with torch.no_grad():
            joints = anny_body(params).joints[0].to(D)
            tverts = anny_body.tpose(params).verts[0]
        height = float(tverts[:, 1].max() - tverts[:, 1].min())
        out[name] = (joints, height, camera)
    return out


def _segment(joints: torch.Tensor, limb_name: str, status: LimbStatus) -> tuple[torch.Tensor, torch.Tensor]:
    a, t = LIMB_BY_NAME[limb_name].segment_joints(status)
    return joints[JOINT_NAMES.index(KEYPOINT_NAMES[a])], joints[JOINT_NAMES.index(KEYPOINT_NAMES[t])]


def _observable_offset(anchor: torch.Tensor, target: torch.Tensor, camera: PinholeCamera, gen, size_m: float):
    """A random anchor offset (size_m) that does not slide the anchor's image along the segment:
    a mix of the image-perpendicular direction (in 3D, at the anchor's depth) and the camera ray."""
    d2 = camera.project(target) - camera.project(anchor)
    perp = torch.stack((-d2[1], d2[0], torch.zeros((), dtype=D)))
    perp = perp / perp.norm()
    ray = anchor / anchor.norm()
    w = torch.randn(2, generator=gen, dtype=D)
    offset = w[0] * perp + w[1] * ray
    return size_m * offset / offset.norm()


def _solve1(limb_name, status, anchor, target, kp, camera, height, config=None) -> RafoResult:
    item = ResidualLimbInput(
        limb=LIMB_BY_NAME[limb_name], status=status, anchor_cam=anchor, target_cam=target, endpoint_px=kp
    )
    return solve_rafo([item], camera=camera, body_height_m=height, config=config or RafoConfig())[0]


# --------------------------------------------------------------------------- anthropometry


def test_anthropometric_table_and_lengths():
    assert dict(SEGMENT_LENGTH_FRACTIONS) == {
        "upper_arm": 0.186,
        "forearm": 0.146,
        "hand": 0.108,
        "thigh": 0.245,
        "shank": 0.246,
        "foot": 0.152,
    }
    assert expected_segment_length_m("thigh", body_height_m=1.8) == pytest.approx(0.441)
    assert expected_segment_length_m("left_forearm", body_height_m=1.0) == pytest.approx(0.146)
    with pytest.raises(ValueError, match="unknown segment"):
        expected_segment_length_m("neck", body_height_m=1.7)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match="body_height_m"):
            expected_segment_length_m("thigh", body_height_m=bad)


# --------------------------------------------------------------------------- pure maths


def test_lambda_reparameterisation_is_bounded_and_invertible():
    lam = torch.tensor([0.06, 0.3, 0.5, 0.99], dtype=D)
    u = logit_from_lambda(lam, lam_min=0.05, lam_max=1.0)
    assert torch.allclose(lambda_from_logit(u, lam_min=0.05, lam_max=1.0), lam)
    extreme = lambda_from_logit(torch.tensor([-1e3, 1e3], dtype=D), lam_min=0.05, lam_max=1.0)
    assert extreme.tolist() == [0.05, 1.0]
    a = torch.zeros(1, 3, dtype=D)
    t = torch.tensor([[0.0, 0.0, 2.0]], dtype=D)
    assert endpoint_on_segment(a, t, torch.tensor([0.25], dtype=D)).tolist() == [[0.0, 0.0, 0.5]]


def test_energy_gradients_match_finite_differences():
    camera = PinholeCamera(900.0, 950.0, 300.0, 250.0, 640, 480)
    anchor_init = torch.tensor([[0.1, -0.2, 3.0], [-0.3, 0.4, 2.5]], dtype=D)
    target = torch.tensor([[0.3, 0.0, 3.1], [-0.2, 0.8, 2.6]], dtype=D)
    kp = torch.tensor([[340.0, 200.0], [200.0, 330.0]], dtype=D)
    config = RafoConfig(robust_scale_m=0.02)

    def energy(lam, anchor):
        terms = rafo_energy_terms(
            lam=lam,
            anchor_cam=anchor,
            anchor_init_cam=anchor_init,
            target_cam=target,
            endpoint_px=kp,
            camera=camera,
            px_per_m=torch.tensor([300.0, 400.0], dtype=D),
            expected_length_m=torch.tensor([0.3, 0.4], dtype=D),
            config=config,
            anchor_px=torch.tensor([[330.0, 180.0], [math.nan, math.nan]], dtype=D),
        )
        return sum(terms.values())

    lam = torch.tensor([0.4, 0.7], dtype=D, requires_grad=True)
    anchor = (anchor_init + 0.01).requires_grad_(True)
    assert torch.autograd.gradcheck(energy, (lam, anchor))


def test_closed_form_fallback_on_hand_made_cases():
    camera = PinholeCamera(100.0, 100.0, 0.0, 0.0, 200, 200)

    def solve(anchor, target, kp, lam_min=0.05, lam_max=1.0):
        lam, raw, valid = closed_form_lambda(
            anchor_cam=torch.tensor([anchor], dtype=D),
            target_cam=torch.tensor([target], dtype=D),
            endpoint_px=torch.tensor([kp], dtype=D),
            camera=camera,
            lam_min=lam_min,
            lam_max=lam_max,
        )
        return float(lam[0]), float(raw[0]), bool(valid[0])

    # Fronto-parallel: the segment projects from (0, 0) to (100, 0); the 2D fraction is lam.
    assert solve((0, 0, 1), (1, 0, 1), (30, 7)) == pytest.approx((0.3, 0.3, True))
    assert solve((0, 0, 1), (1, 0, 1), (150, -40)) == pytest.approx((1.0, 1.5, True))  # beyond J_t
    assert solve((0, 0, 1), (1, 0, 1), (-50, 3)) == pytest.approx((0.05, -0.5, True))  # behind J_a
    # Receding segment: (0,0,1) -> (1,0,2) projects to (0,0) -> (50,0); its 3D midpoint (0.5,0,1.5)
    # projects to 33.3 px, two thirds along the image segment: lam = 0.5, not 2/3.
    assert solve((0, 0, 1), (1, 0, 2), (100 / 3, 5)) == pytest.approx((0.5, 0.5, True))
    # Along the camera ray: the segment projects to a point; lam is undefined (midpoint of bounds).
    lam, raw, valid = solve((0, 0, 1), (0, 0, 2), (10, 10))
    assert (lam, valid) == (pytest.approx(0.525), False) and math.isnan(raw)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("scene", list(SCENES))
def test_round_trip_noise_free_all_types_both_sides(scenes, scene):
    """Every side x type, lam in {0.3, 0.55, 0.8}, anchor init off by 3 cm in observable directions."""
    joints, height, camera = scenes[scene]
    gen = torch.Generator().manual_seed(7)
    worst_lam, worst_px, times = 0.0, 0.0, []
    for limb_name, status in ALL_RESIDUALS:
        anchor, target = _segment(joints, limb_name, status)
        for lam in (0.3, 0.55, 0.8):
            kp = camera.project(anchor + lam * (target - anchor))
            offset = _observable_offset(anchor, target, camera, gen, 0.03)
            res = _solve1(limb_name, status, anchor + offset, target, kp, camera, height)
            assert res.accepted and not res.fallback and not res.clamped, res.reason
            assert res.reproj_error_px < 2.0
            assert abs(res.lam - lam) < 0.05, (limb_name, status, lam, res.lam)
            assert torch.equal(res.target_cam, target)
            assert torch.allclose(res.endpoint_cam, res.anchor_cam + res.lam * (target - res.anchor_cam))
            worst_lam = max(worst_lam, abs(res.lam - lam))
            worst_px = max(worst_px, res.reproj_error_px)
            times.append(res.solve_time_s)
    print(
        f"\n{scene}: max |dlam| {worst_lam:.3f}, max reproj {worst_px:.2f} px, "
        f"solve time per limb median {sorted(times)[len(times) // 2] * 1e3:.1f} ms, max {max(times) * 1e3:.1f} ms"
    )


@pytest.mark.parametrize("scene", ["apose", "random"])
def test_round_trip_with_keypoint_noise(scenes, scene):
    joints, height, camera = scenes[scene]
    gen = torch.Generator().manual_seed(11)
    for limb_name, status in ALL_RESIDUALS:
        anchor, target = _segment(joints, limb_name, status)
        for lam in (0.3, 0.8):
            noise = torch.randn(2, generator=gen, dtype=D)
            noise = 1.5 * noise / noise.norm()  # 1.5 px
            kp = camera.project(anchor + lam * (target - anchor)) + noise
            offset = _observable_offset(anchor, target, camera, gen, 0.02)
            res = _solve1(limb_name, status, anchor + offset, target, kp, camera, height)
            assert res.accepted, res.reason
            assert res.reproj_error_px < 2.0  # the anchor absorbs the noise across the segment
            assert abs(res.lam - lam) < 0.05, (limb_name, status, lam, res.lam)


def test_random_anchor_error_bounded_and_along_segment_shift_is_absorbed(scenes):
    joints, height, camera = scenes["apose"]
    gen = torch.Generator().manual_seed(5)
    for limb_name, status in ALL_RESIDUALS:
        anchor, target = _segment(joints, limb_name, status)
        length = float((target - anchor).norm())
        axis = (target - anchor) / length
        for lam in (0.3, 0.8):
            truth = anchor + lam * (target - anchor)
            kp = camera.project(truth)
            offset = torch.randn(3, generator=gen, dtype=D)
            res = _solve1(limb_name, status, anchor + 0.02 * offset / offset.norm(), target, kp, camera, height)
            assert res.accepted and res.reproj_error_px < 2.0
            assert abs(res.lam - lam) < 0.1
            assert float((res.endpoint_cam - truth).norm()) < 0.03
            for shift in (-0.02, 0.02):  # unobservable: lam absorbs it, the endpoint stays put
                res = _solve1(limb_name, status, anchor + shift * axis, target, kp, camera, height)
                predicted = (lam * length - shift) / (length - shift)
                assert abs(res.lam - predicted) < 0.02, (limb_name, status, lam, shift, res.lam, predicted)
                assert float((res.endpoint_cam - truth).norm()) < 0.003


def test_anchor_keypoint_resolves_the_along_segment_shift(scenes):
    """Optional extension: with the anchor's own keypoint, lam is recovered despite the shift."""
    joints, height, camera = scenes["apose"]
    for limb_name, status in ALL_RESIDUALS:
        anchor, target = _segment(joints, limb_name, status)
        axis = (target - anchor) / (target - anchor).norm()
        lam = 0.3
        kp = camera.project(anchor + lam * (target - anchor))
        item = ResidualLimbInput(
            LIMB_BY_NAME[limb_name], status, anchor + 0.03 * axis, target, kp, anchor_px=camera.project(anchor)
        )
        with_kp = solve_rafo([item], camera=camera, body_height_m=height)[0]
        without = solve_rafo([dataclasses.replace(item, anchor_px=None)], camera=camera, body_height_m=height)[0]
        assert with_kp.accepted and with_kp.reproj_error_px < 2.0
        assert abs(with_kp.lam - lam) < 0.05 < abs(without.lam - lam), (limb_name, status, with_kp.lam, without.lam)
        off = RafoConfig(anchor_reproj_sigma_m=None)
        assert solve_rafo([item], camera=camera, body_height_m=height, config=off)[0].lam == without.lam


def test_several_limbs_in_one_call_are_independent(scenes):
    """Bilateral transtibial, and transradial arm + transfemoral leg: one call = separate calls."""
    joints, height, camera = scenes["tpose"]
    cases = [
        [("left_leg", LimbStatus.TRANSTIBIAL, 0.4), ("right_leg", LimbStatus.TRANSTIBIAL, 0.7)],
        [("right_arm", LimbStatus.TRANSRADIAL, 0.6), ("left_leg", LimbStatus.TRANSFEMORAL, 0.35)],
    ]
    for case in cases:
        items = []
        for limb_name, status, lam in case:
            anchor, target = _segment(joints, limb_name, status)
            kp = camera.project(anchor + lam * (target - anchor))
            items.append(ResidualLimbInput(LIMB_BY_NAME[limb_name], status, anchor + 0.01, target, kp))
        together = solve_rafo(items, camera=camera, body_height_m=height)
        assert [r.limb_name for r in together] == [c[0] for c in case]
        for item, res, (_, status, lam) in zip(items, together, case):
            alone = solve_rafo([item], camera=camera, body_height_m=height)[0]
            assert res.status is status and res.accepted and abs(res.lam - lam) < 0.05
            assert res.lam == alone.lam and torch.equal(res.anchor_cam, alone.anchor_cam)


def test_solution_does_not_depend_on_image_resolution(scenes):
    """The same view at 256 px and at 4000 px (intrinsics and keypoint scaled) gives the same lam."""
    joints, height, camera = scenes["apose"]
    anchor, target = _segment(joints, "left_arm", LimbStatus.TRANSRADIAL)
    offset = torch.tensor([0.01, -0.015, 0.02], dtype=D)
    kp_1000 = camera.project(anchor + 0.45 * (target - anchor))
    lams = []
    for size in (256, 4000):
        s = size / camera.width
        cam = PinholeCamera(camera.fx * s, camera.fy * s, camera.cx * s, camera.cy * s, size, size)
        res = _solve1("left_arm", LimbStatus.TRANSRADIAL, anchor + offset, target, kp_1000 * s, cam, height)
        assert res.accepted
        lams.append(res.lam)
    assert lams[0] == pytest.approx(lams[1], abs=1e-4)


def test_inputs_from_joints_maps_segments_and_keypoints(scenes):
    joints = scenes["apose"][0]
    kp = torch.zeros(len(KEYPOINT_NAMES), 3, dtype=D)
    kp[KEYPOINT_INDEX["below_left_elbow_end"]] = torch.tensor([11.0, 12.0, 2.0])
    kp[KEYPOINT_INDEX["above_right_knee_end"]] = torch.tensor([21.0, 22.0, 2.0])
    status = {
        "left_arm": LimbStatus.TRANSRADIAL,
        "right_arm": LimbStatus.INTACT,
        "left_leg": LimbStatus.INTACT,
        "right_leg": LimbStatus.TRANSFEMORAL,
    }
    items = inputs_from_joints(joints_cam=joints, joint_names=JOINT_NAMES, keypoints_px=kp, status=status)
    assert [(i.limb.name, i.status) for i in items] == [
        ("left_arm", LimbStatus.TRANSRADIAL),
        ("right_leg", LimbStatus.TRANSFEMORAL),
    ]
    assert torch.equal(items[0].anchor_cam, joints[JOINT_NAMES.index("left_elbow")])
    assert torch.equal(items[0].target_cam, joints[JOINT_NAMES.index("left_wrist")])
    assert torch.equal(items[1].anchor_cam, joints[JOINT_NAMES.index("right_hip")])
    assert torch.equal(items[1].target_cam, joints[JOINT_NAMES.index("right_knee")])
    assert items[0].endpoint_px.tolist() == [11.0, 12.0] and items[1].endpoint_px.tolist() == [21.0, 22.0]
    items = inputs_from_joints(
        joints_cam=joints, joint_names=JOINT_NAMES, keypoints_px=kp, status=status, with_anchor_keypoints=True
    )
    assert all(i.anchor_px is None for i in items)  # anchors not labelled
    kp[KEYPOINT_INDEX["left_elbow"]] = torch.tensor([31.0, 32.0, 2.0])
    items = inputs_from_joints(
        joints_cam=joints, joint_names=JOINT_NAMES, keypoints_px=kp, status=status, with_anchor_keypoints=True
    )
    assert items[0].anchor_px.tolist() == [31.0, 32.0] and items[1].anchor_px is None
    with pytest.raises(ValueError, match="joint_names lacks"):
        inputs_from_joints(joints_cam=joints[:3], joint_names=JOINT_NAMES[:3], keypoints_px=kp, status=status)


def test_result_to_dict_is_json_and_dtype_follows_input(scenes):
    joints, height, camera = scenes["apose"]
    anchor, target = _segment(joints, "right_leg", LimbStatus.TRANSTIBIAL)
    kp = camera.project(anchor + 0.5 * (target - anchor))
    res = _solve1("right_leg", LimbStatus.TRANSTIBIAL, anchor.float(), target.float(), kp.float(), camera, height)
    assert res.endpoint_cam.dtype == torch.float32 and res.anchor_cam.shape == (3,)
    data = json.loads(json.dumps(res.to_dict()))
    assert data["limb_name"] == "right_leg" and data["status"] == "transtibial" and data["accepted"] is True
    assert len(data["endpoint_cam"]) == 3 and data["iterations"] >= 1


# --------------------------------------------------------------------------- degenerate inputs


def _arm(scenes):
    joints, height, camera = scenes["apose"]
    anchor, target = _segment(joints, "left_arm", LimbStatus.TRANSHUMERAL)
    return anchor, target, height, camera


def test_zero_length_segment_is_flagged_not_crashing(scenes):
    anchor, _, height, camera = _arm(scenes)
    kp = camera.project(anchor) + 5.0
    res = _solve1("left_arm", LimbStatus.TRANSHUMERAL, anchor, anchor.clone(), kp, camera, height)
    assert not res.accepted and res.fallback and "degenerate segment" in res.reason
    assert res.iterations == 0 and torch.equal(res.endpoint_cam, anchor)
    assert math.isfinite(res.reproj_error_px)


@pytest.mark.parametrize("lam_true", [1.04, 1.6])
def test_keypoint_beyond_distal_joint_is_clamped(scenes, lam_true):
    anchor, target, height, camera = _arm(scenes)
    kp = camera.project(anchor + lam_true * (target - anchor))
    res = _solve1("left_arm", LimbStatus.TRANSHUMERAL, anchor, target, kp, camera, height)
    assert res.clamped and res.lam == 1.0 and "beyond" in res.reason
    if lam_true < 1.1:  # a few px beyond the elbow: accepted, but flagged
        assert res.accepted and not res.fallback and res.reproj_error_px < 15.0
    else:  # far beyond: rejected, the fallback is clamped at the bound too
        assert not res.accepted and res.fallback and res.reproj_error_px >= 15.0
        assert torch.allclose(res.endpoint_cam, target)


def test_keypoint_before_anchor_is_clamped_to_lam_min(scenes):
    anchor, target, height, camera = _arm(scenes)
    kp = camera.project(anchor - 0.03 * (target - anchor))  # just above the shoulder
    res = _solve1("left_arm", LimbStatus.TRANSHUMERAL, anchor, target, kp, camera, height)
    assert res.clamped and res.lam == 0.05 and "lam_min" in res.reason


@pytest.mark.parametrize("robust", [None, 0.02])
def test_keypoint_far_off_segment_falls_back(scenes, robust):
    anchor, target, height, camera = _arm(scenes)
    d2 = camera.project(target) - camera.project(anchor)
    normal = torch.stack((-d2[1], d2[0])) / d2.norm()
    kp = camera.project(anchor + 0.4 * (target - anchor)) + 250.0 * normal
    config = RafoConfig(robust_scale_m=robust)
    res = _solve1("left_arm", LimbStatus.TRANSHUMERAL, anchor, target, kp, camera, height, config)
    assert not res.accepted and res.fallback
    # Plain squared error drags the anchor to the keypoint (rejected by max_anchor_shift_m);
    # Geman-McClure leaves it, and the endpoint stays far from the keypoint.
    assert ("moved the anchor" if robust is None else "px from the keypoint (>= 15.0 px)") in res.reason
    assert torch.equal(res.anchor_cam, anchor)  # the fallback keeps the initial anchor
    assert res.lam == pytest.approx(0.4, abs=1e-6)  # closest point of the segment to kp
    assert res.reproj_error_px == pytest.approx(250.0, rel=1e-3)


def test_segment_along_the_camera_ray_does_not_crash():
    camera = PinholeCamera(1000.0, 1000.0, 500.0, 500.0, 1000, 1000)
    anchor = torch.tensor([0.0, 0.0, 3.0], dtype=D)
    target = torch.tensor([0.0, 0.0, 3.3], dtype=D)
    res = _solve1(
        "right_leg", LimbStatus.TRANSTIBIAL, anchor, target, torch.tensor([540.0, 470.0], dtype=D), camera, 1.7
    )
    assert math.isfinite(res.lam) and torch.isfinite(res.endpoint_cam).all()
    assert res.accepted == (res.reproj_error_px < 15.0)


def test_bad_inputs_raise_clear_errors(scenes):
    anchor, target, height, camera = _arm(scenes)
    kp = camera.project(0.5 * (anchor + target))
    arm = LIMB_BY_NAME["left_arm"]

    def call(items, **overrides):
        kwargs = {"camera": camera, "body_height_m": height} | overrides
        return solve_rafo(items, **kwargs)

    nan_anchor = anchor.clone()
    nan_anchor[1] = math.nan
    for bad in (
        ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, nan_anchor, target, kp),
        ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, anchor, target, torch.tensor([math.inf, 1.0])),
        ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, anchor[:2], target, kp),
        ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, anchor * torch.tensor([1.0, 1.0, -1.0], dtype=D), target, kp),
        ResidualLimbInput(arm, LimbStatus.TRANSFEMORAL, anchor, target, kp),
        ResidualLimbInput(arm, LimbStatus.INTACT, anchor, target, kp),
        ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, anchor, target, kp, anchor_px=torch.tensor([math.nan, 0.0])),
    ):
        with pytest.raises(ValueError, match="left_arm"):
            call([bad])
    good = ResidualLimbInput(arm, LimbStatus.TRANSHUMERAL, anchor, target, kp)
    with pytest.raises(ValueError, match="given twice"):
        call([good, good])
    with pytest.raises(ValueError, match="body_height_m"):
        call([good], body_height_m=math.nan)
    assert call([]) == []
    with pytest.raises(ValueError, match="lam_init"):
        RafoConfig(lam_init=0.01)
    with pytest.raises(ValueError, match="lam_min < lam_max"):
        RafoConfig(lam_min=0.5, lam_max=0.4)
    with pytest.raises(ValueError, match="reproj_sigma_m"):
        RafoConfig(reproj_sigma_m=0.0)
    with pytest.raises(ValueError, match="iterations"):
        RafoConfig(iterations=0)


def test_solve_time_per_limb(scenes):
    joints, height, camera = scenes["random"]
    items = []
    for limb_name, status in [
        ("left_arm", LimbStatus.TRANSRADIAL),
        ("right_arm", LimbStatus.TRANSHUMERAL),
        ("left_leg", LimbStatus.TRANSTIBIAL),
        ("right_leg", LimbStatus.TRANSFEMORAL),
    ]:
        anchor, target = _segment(joints, limb_name, status)
        kp = camera.project(anchor + 0.5 * (target - anchor)) + 1.0
        items.append(ResidualLimbInput(LIMB_BY_NAME[limb_name], status, anchor + 0.02, target, kp))
    solve_rafo(items, camera=camera, body_height_m=height)  # warm-up
    start = time.perf_counter()
    results = solve_rafo(items, camera=camera, body_height_m=height)
    per_limb = (time.perf_counter() - start) / len(items)
    print(f"\nRAFO: {per_limb * 1e3:.1f} ms per limb, iterations {[r.iterations for r in results]}")
    assert all(r.accepted for r in results)
    assert per_limb < 0.5


def test_end_to_end_from_ldpose_keypoints(scenes):
    """25 LDpose keypoints (intact joints projected, residual endpoints labelled) -> statuses ->
    inputs_from_joints -> solve: a transradial left arm and a transfemoral right leg."""
    joints, height, camera = scenes["random"]
    kp = torch.zeros(len(KEYPOINT_NAMES), 3, dtype=D)
    for name in KEYPOINT_NAMES:
        if name in JOINT_NAMES:
            kp[KEYPOINT_INDEX[name]] = torch.cat(
                (camera.project(joints[JOINT_NAMES.index(name)]), torch.ones(1, dtype=D))
            )
    truth = {"left_arm": (LimbStatus.TRANSRADIAL, 0.45), "right_leg": (LimbStatus.TRANSFEMORAL, 0.6)}
    for limb_name, (status, lam) in truth.items():
        limb = LIMB_BY_NAME[limb_name]
        anchor, target = _segment(joints, limb_name, status)
        kp[limb.endpoint_index(status), :2] = camera.project(anchor + lam * (target - anchor))
        kp[limb.endpoint_index(status), 2] = 2.0
        replaced = limb.middle if status is limb.above_status else limb.distal
        kp[[replaced, limb.distal]] = 0.0  # the replaced joint and anything beyond are absent
    statuses = derive_limb_status(kp.numpy())
    assert statuses == {
        "left_arm": LimbStatus.TRANSRADIAL,
        "right_arm": LimbStatus.INTACT,
        "left_leg": LimbStatus.INTACT,
        "right_leg": LimbStatus.TRANSFEMORAL,
    }
    items = inputs_from_joints(
        joints_cam=joints, joint_names=JOINT_NAMES, keypoints_px=kp, status=statuses, with_anchor_keypoints=True
    )
    results = solve_rafo(items, camera=camera, body_height_m=height)
    for res in results:
        status, lam = truth[res.limb_name]
        assert res.status is status and res.accepted and res.reproj_error_px < 1.0
        assert abs(res.lam - lam) < 0.02


@settings(max_examples=25, deadline=None)
@given(
    anchor=st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.5, 6)),
    target=st.tuples(st.floats(-1, 1), st.floats(-1, 1), st.floats(0.5, 6)),
    kp=st.tuples(st.floats(-3000, 3000), st.floats(-3000, 3000)),
    robust=st.sampled_from([None, 0.03]),
)
def test_never_crashes_and_reports_consistently(anchor, target, kp, robust):
    camera = PinholeCamera(1000.0, 1000.0, 500.0, 400.0, 1000, 800)
    config = RafoConfig(robust_scale_m=robust)
    res = _solve1(
        "left_leg",
        LimbStatus.TRANSTIBIAL,
        torch.tensor(anchor, dtype=D),
        torch.tensor(target, dtype=D),
        torch.tensor(kp, dtype=D),
        camera,
        1.7,
        config,
    )
    assert config.lam_min <= res.lam <= config.lam_max
    assert torch.isfinite(res.endpoint_cam).all() and math.isfinite(res.reproj_error_px)
    assert torch.allclose(res.endpoint_cam, res.anchor_cam + res.lam * (res.target_cam - res.anchor_cam))
    assert res.reproj_error_px == pytest.approx(
        float((camera.project(res.endpoint_cam) - torch.tensor(kp, dtype=D)).norm())
    )
    if res.accepted:
        assert res.reproj_error_px < config.accept_px and not res.fallback
        assert float((res.anchor_cam - torch.tensor(anchor, dtype=D)).norm()) <= config.max_anchor_shift_m
    else:
        assert res.fallback and res.reason
