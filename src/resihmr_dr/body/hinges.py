"""The elbow and knee hinges of a body model: which posable joint bends each, about which axis, and
how far the rest pose is already bent.

A body model finds its own hinges once (``BodyModel.joint_hinges``, from the model's kinematics);
this module holds the record, the joints that define each hinge, and the flexion of a pose.
Angles are radians; axes are in the body model's pose-parameter axes (``BodyParams.body_pose``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class HingeJoint:
    """One hinge: ``name`` bends the segment from ``proximal`` through ``name`` to ``distal``
    (joint names of ``body.base.JOINT_NAMES``); flexing moves the distal segment along
    ``flex_direction`` (model frame, Y up, facing +Z)."""

    name: str
    proximal: str
    distal: str
    flex_direction: tuple[float, float, float]


# The forearm flexes forwards (+Z), the shank backwards (-Z).
HINGE_JOINTS: tuple[HingeJoint, ...] = (
    HingeJoint("left_elbow", "left_shoulder", "left_wrist", (0.0, 0.0, 1.0)),
    HingeJoint("right_elbow", "right_shoulder", "right_wrist", (0.0, 0.0, 1.0)),
    HingeJoint("left_knee", "left_hip", "left_ankle", (0.0, 0.0, -1.0)),
    HingeJoint("right_knee", "right_hip", "right_ankle", (0.0, 0.0, -1.0)),
)


def flexion_angles(
    body_pose: torch.Tensor,
    *,
    pose_index: torch.Tensor,
    flex_axis: torch.Tensor,
    rest_flexion: torch.Tensor,
) -> torch.Tensor:
    """Flexion of hinge joints (elbows, knees) from the body pose, radians.

    body_pose: (B, P, 3) axis-angle in the body model's pose-parameter axes; pose_index: (H,) long,
    the posable joint of each hinge; flex_axis: (H, 3) unit flexion axis in those axes (a positive
    rotation about it bends the joint); rest_flexion: (H,) the flexion the model's rest pose
    already has. Returns (B, H) ``rest_flexion + <rotvec, axis>`` (the rotation's component
    about the flexion axis, exact for pure hinge rotations); negative means hyper-extended.
    """
    rotvec = body_pose.index_select(1, pose_index)  # (B, H, 3)
    return rest_flexion + (rotvec * flex_axis).sum(-1)


@dataclass(frozen=True)
class JointHinges:
    """The elbows and knees of one body model, found from its kinematics (``BodyModel.joint_hinges``).

    names: hinge joint names (``HINGE_JOINTS`` order); pose_index: (H,) long index into body_pose;
    flex_axis: (H, 3) unit axis in the pose-parameter axes (positive rotation flexes);
    rest_flexion: (H,) flexion of the rest pose, radians.
    """

    names: tuple[str, ...]
    pose_index: torch.Tensor
    flex_axis: torch.Tensor
    rest_flexion: torch.Tensor

    def flexion(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, H) flexion angles of ``body_pose`` (B, P, 3), radians; < 0 is hyper-extension."""
        return flexion_angles(
            body_pose,
            pose_index=self.pose_index,
            flex_axis=self.flex_axis,
            rest_flexion=self.rest_flexion,
        )
