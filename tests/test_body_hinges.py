"""The elbow and knee hinges a body model finds from its kinematics (body/hinges.py,
``BodyModel.joint_hinges``): on Anny and on the tiny SMPL-X-format test model."""

from __future__ import annotations

import math

import pytest
import torch

from resihmr_dr.body.anny_model import POSE_BONES
from resihmr_dr.body.base import JOINT_INDEX
from resihmr_dr.body.hinges import HINGE_JOINTS, flexion_angles


@pytest.fixture(scope="module")
def smplx_body(tiny_smplx):
    """A fresh adapter (the hinge tests check what one instance finds and caches)."""
    from resihmr_dr.body.smplx_model import SmplxBody

    return SmplxBody(tiny_smplx.root, vertex_ids=tiny_smplx.vertex_ids)


def test_flexion_angles_are_the_rest_flexion_plus_the_rotation_about_the_axis():
    pose = torch.zeros(1, 4, 3, dtype=torch.float64)
    pose[0, 2] = torch.tensor([0.3, 0.0, 0.0])
    pose[0, 3] = torch.tensor([0.5, 0.0, 0.7])  # no component about its axis (+y)
    axis = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], dtype=torch.float64)
    kw = {
        "pose_index": torch.tensor([2, 3]),
        "flex_axis": axis,
        "rest_flexion": torch.tensor([0.1, -0.2], dtype=torch.float64),
    }
    assert torch.allclose(flexion_angles(pose, **kw), torch.tensor([[0.4, -0.2]], dtype=torch.float64))


def test_hinges_are_found_once_per_body_instance(smplx_body):
    hinges = smplx_body.joint_hinges
    assert smplx_body.joint_hinges is hinges
    assert hinges.names == tuple(h.name for h in HINGE_JOINTS)
    # Found with gradients even when the caller has them off.
    with torch.no_grad():
        del smplx_body.joint_hinges
        again = smplx_body.joint_hinges
    assert again is not hinges and torch.equal(again.flex_axis, hinges.flex_axis)
    assert torch.equal(again.pose_index, hinges.pose_index) and torch.equal(again.rest_flexion, hinges.rest_flexion)


def test_anny_hinges_flex_the_right_way(anny_body):
    hinges = anny_body.joint_hinges
    assert hinges.names == ("left_elbow", "right_elbow", "left_knee", "right_knee")
    assert [POSE_BONES[i] for i in hinges.pose_index] == [
        "lowerarm01.L",
        "lowerarm01.R",
        "lowerleg01.L",
        "lowerleg01.R",
    ]
    # The knee flexes about Anny's +X (brief); the A-pose elbow is already bent ~40 degrees.
    assert hinges.flex_axis[2, 0] > 0.99 and hinges.flex_axis[3, 0] > 0.99
    assert torch.allclose(hinges.rest_flexion[:2], torch.full((2,), math.radians(42.0)), atol=0.05)
    rest = anny_body.default_params()
    base = anny_body.forward_model(rest.body_pose, rest.shape).joints[0]
    for h, (name, child, forward) in enumerate(
        [
            ("left_elbow", "left_wrist", 1),
            ("right_elbow", "right_wrist", 1),
            ("left_knee", "left_ankle", -1),
            ("right_knee", "right_ankle", -1),
        ]
    ):
        pose = rest.body_pose.clone()
        pose[0, hinges.pose_index[h]] = 0.5 * hinges.flex_axis[h]
        moved = anny_body.forward_model(pose, rest.shape).joints[0]
        assert forward * (moved[JOINT_INDEX[child], 2] - base[JOINT_INDEX[child], 2]) > 0.03, name
        assert hinges.flexion(pose)[0, h] == pytest.approx(hinges.rest_flexion[h].item() + 0.5, abs=1e-5)


def test_smplx_hinges_match_smplify_angle_prior(smplx_body):
    body = smplx_body
    hinges = body.joint_hinges
    assert [body.pose_joint_names[i] for i in hinges.pose_index] == [
        "left_elbow",
        "right_elbow",
        "left_knee",
        "right_knee",
    ]
    # SMPLify: the left elbow bends at -pi/2 about y, the right at +pi/2, knees at +pi/2 about x.
    expected = torch.tensor([[0.0, -1.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    # (The tiny model's thighs slant outwards, tilting the knee axis by ~7 degrees.)
    assert (hinges.flex_axis * expected).sum(-1).min() > math.cos(math.radians(10.0))
    assert torch.allclose(hinges.rest_flexion, torch.zeros(4), atol=0.2)
