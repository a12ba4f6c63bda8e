"""The body-model interface shared by the Anny and SMPL-X adapters.

Frames:
- *model frame*: metres, Y up, the person faces +Z, the person's left is +X (SMPL convention).
  Every adapter converts its native output to this frame.
- *camera frame*: OpenCV convention (x right, y down, z forward), metres. A body reaches it by
  ``verts_cam = R(global_orient) @ (verts_model - root) + root + transl``, where ``root`` is the
  model's root joint (pelvis) in the model frame; this equals SMPL-X's own use of
  ``global_orient`` and ``transl``, so parameters imported from SMPL-X fits apply unchanged.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from dataclasses import dataclass

import roma
import torch

from resihmr_dr.body.hinges import HINGE_JOINTS, JointHinges
from resihmr_dr.data.ldpose import Limb, LimbStatus

# Named joints every body model provides, in this order.
JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "neck",
    "head",
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
JOINT_INDEX = {name: i for i, name in enumerate(JOINT_NAMES)}

# Per-vertex limb-segment labels. 0 ("other") is torso, head, and everything not on a limb.
SEGMENT_NAMES: tuple[str, ...] = (
    "other",
    "left_upper_arm",
    "left_forearm",
    "left_hand",
    "right_upper_arm",
    "right_forearm",
    "right_hand",
    "left_thigh",
    "left_shank",
    "left_foot",
    "right_thigh",
    "right_shank",
    "right_foot",
)
SEGMENT_INDEX = {name: i for i, name in enumerate(SEGMENT_NAMES)}


def limb_segment_joints(joints, limb: Limb, status: LimbStatus):
    """(J_a, J_t) of the residual segment of ``limb`` with ``status``, each (..., 3), from
    (..., len(JOINT_NAMES), 3) joints (numpy or torch, any frame)."""
    anchor, target = limb.segment_joint_names(status)
    return joints[..., JOINT_INDEX[anchor], :], joints[..., JOINT_INDEX[target], :]


# Rotation from a body facing the camera in the model frame (Y up, facing +Z) to the OpenCV
# camera frame (y down, facing -z, towards the camera): 180 degrees about X.
FACING_CAMERA_ORIENT = (torch.pi, 0.0, 0.0)


@dataclass(frozen=True)
class BodyParams:
    """Batched body parameters (B people). Fields are tensors; all are optimisable.

    global_orient: (B, 3) axis-angle, model frame -> camera frame, about the root joint.
    body_pose: (B, P, 3) axis-angle per posable joint (model-specific, ``BodyModel.pose_joint_names``).
    shape: (B, S) shape coefficients (SMPL-X betas; Anny phenotypes in [0, 1]).
    transl: (B, 3) translation in the camera frame, metres.
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    shape: torch.Tensor
    transl: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of people B."""
        return int(self.global_orient.shape[0])

    def replace(self, **changes: torch.Tensor) -> "BodyParams":
        """A copy with the given fields replaced (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    def detach(self) -> "BodyParams":
        """The same tensors detached from the autograd graph (no copy)."""
        return BodyParams(*(t.detach() for t in self.as_tuple()))

    def clone(self) -> "BodyParams":
        """Detached copies of the tensors."""
        return BodyParams(*(t.detach().clone() for t in self.as_tuple()))

    def as_tuple(self) -> tuple[torch.Tensor, ...]:
        """(global_orient, body_pose, shape, transl)."""
        return (self.global_orient, self.body_pose, self.shape, self.transl)

    def to_dict(self) -> dict[str, list]:
        """JSON-friendly nested lists."""
        return {f.name: getattr(self, f.name).detach().cpu().tolist() for f in dataclasses.fields(self)}

    @staticmethod
    def from_dict(values: dict, *, dtype: torch.dtype = torch.float32) -> "BodyParams":
        """The inverse of ``to_dict``: tensors of ``dtype`` from nested lists or arrays."""
        return BodyParams(
            **{f.name: torch.as_tensor(values[f.name], dtype=dtype) for f in dataclasses.fields(BodyParams)}
        )


@dataclass(frozen=True)
class BodyOutput:
    """Posed body in the camera frame (metres).

    verts: (B, V, 3); joints: (B, len(JOINT_NAMES), 3); coco_kp: (B, 17, 3) COCO keypoints.
    """

    verts: torch.Tensor
    joints: torch.Tensor
    coco_kp: torch.Tensor

    def joint(self, name: str) -> torch.Tensor:
        """(B, 3) position of the named joint."""
        return self.joints[:, JOINT_INDEX[name]]


def apply_global_transform(
    points_model: torch.Tensor,
    root_model: torch.Tensor,
    global_orient: torch.Tensor,
    transl: torch.Tensor,
) -> torch.Tensor:
    """Model frame -> camera frame: ``R (p - root) + root + transl``.

    points_model: (B, N, 3); root_model: (B, 3); global_orient: (B, 3) axis-angle; transl: (B, 3).
    """
    rot = roma.rotvec_to_rotmat(global_orient)  # (B, 3, 3)
    root = root_model[:, None, :]
    return (points_model - root) @ rot.transpose(1, 2) + root + transl[:, None, :]


def stature_m(verts_tpose: torch.Tensor) -> torch.Tensor:
    """(B,) standing height in metres: the vertical (Y) extent of (B, V, 3) T-pose vertices."""
    return verts_tpose[..., 1].amax(dim=1) - verts_tpose[..., 1].amin(dim=1)


class BodyModel(torch.nn.Module, abc.ABC):
    """A differentiable parametric body. Subclasses set the attributes below in ``__init__``.

    Attributes:
        name: "anny" or "smplx".
        faces: (F, 3) long tensor buffer, counter-clockwise seen from outside.
        vertex_segment: (V,) long tensor buffer, index into ``SEGMENT_NAMES``.
        pose_joint_names: names of the P posable joints of ``BodyParams.body_pose``.
        shape_names: names of the S shape coefficients.
        gender: the model file's gender, "neutral", "male" or "female" (SMPL-X); None for a model
            without one (Anny: one model for everyone, its sex is the fitted "gender" phenotype,
            a shape coefficient).
    """

    name: str
    gender: str | None = None
    pose_joint_names: tuple[str, ...]
    shape_names: tuple[str, ...]
    faces: torch.Tensor
    vertex_segment: torch.Tensor

    @property
    def num_verts(self) -> int:
        """Number of mesh vertices V."""
        return int(self.vertex_segment.shape[0])

    @property
    def num_pose_joints(self) -> int:
        """Number of posable joints P (``body_pose`` is (B, P, 3))."""
        return len(self.pose_joint_names)

    @property
    def num_shape(self) -> int:
        """Number of shape coefficients S (``shape`` is (B, S))."""
        return len(self.shape_names)

    @property
    def device(self) -> torch.device:
        """The device of the model's tensors."""
        return self.faces.device

    @property
    @abc.abstractmethod
    def dtype(self) -> torch.dtype:
        """The dtype of the model's floating-point tensors."""

    @abc.abstractmethod
    def default_shape(self) -> torch.Tensor:
        """(S,) the mean/neutral shape."""

    @abc.abstractmethod
    def forward_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        """Posed body in the *model frame* (no global orientation, no translation)."""

    def keypoints_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(joints (B, len(JOINT_NAMES), 3), coco_kp (B, 17, 3)) in the model frame: the values of
        ``forward_model``'s, without the mesh (models that can skip skinning every vertex do)."""
        out = self.forward_model(body_pose, shape)
        return out.joints, out.coco_kp

    @abc.abstractmethod
    def tpose_body_pose(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) body pose giving the T-pose (arms horizontal, legs straight) for ``shape``."""

    def default_params(self, batch_size: int = 1, *, facing_camera: bool = True, depth_m: float = 3.0) -> BodyParams:
        """Neutral shape and rest pose, standing ``depth_m`` in front of the camera."""
        kw = dict(device=self.device, dtype=self.dtype)
        orient = torch.tensor(FACING_CAMERA_ORIENT if facing_camera else (0.0, 0.0, 0.0), **kw)
        return BodyParams(
            global_orient=orient.expand(batch_size, 3).clone(),
            body_pose=torch.zeros(batch_size, self.num_pose_joints, 3, **kw),
            shape=self.default_shape().to(**kw).expand(batch_size, -1).clone(),
            transl=torch.tensor((0.0, 0.0, depth_m), **kw).expand(batch_size, 3).clone(),
        )

    def forward(self, params: BodyParams) -> BodyOutput:
        """Posed body in the camera frame."""
        out = self.forward_model(params.body_pose, params.shape)
        root = out.joints[:, JOINT_INDEX["pelvis"]]
        move = lambda p: apply_global_transform(p, root, params.global_orient, params.transl)  # noqa: E731
        return BodyOutput(verts=move(out.verts), joints=move(out.joints), coco_kp=move(out.coco_kp))

    def tpose(self, params: BodyParams) -> BodyOutput:
        """The body of ``params``'s shape in the T-pose, model frame (Y up, facing +Z)."""
        return self.forward_model(self.tpose_body_pose(params.shape), params.shape)

    def segment_vertex_ids(self, segment: str) -> torch.Tensor:
        """Indices of the vertices labelled ``segment``."""
        return torch.nonzero(self.vertex_segment == SEGMENT_INDEX[segment]).flatten()

    @functools.cached_property
    def joint_hinges(self) -> JointHinges:
        """Each elbow's and knee's posable joint, flexion axis and rest flexion, found from the model
        (on the model's device and dtype at the first call; kept by this instance).

        At the rest pose and mean shape (model frame): the posable joint is the one that moves the
        distal joint (wrist/ankle) but not the hinge joint itself. The flexion axis (model frame) is
        normal to the upper segment ``u`` and the anatomical flexion direction (forearm forwards,
        shank backwards), signed so that flexing moves the distal segment that way. It is mapped
        into the pose parameters' axes through the Jacobian of the distal joint w.r.t. that joint's
        axis-angle (the minimum-norm solution, i.e. the part normal to the lower segment). The rest
        flexion is the angle from ``u`` to the lower segment projected into the flexion plane.
        """
        kw = {"device": self.device, "dtype": self.dtype}
        with torch.enable_grad():
            pose = torch.zeros(1, self.num_pose_joints, 3, requires_grad=True, **kw)
            shape = self.default_shape().to(**kw)[None]
            joints = self.keypoints_model(pose, shape)[0][0]
            probe = torch.tensor([0.31, -0.57, 0.76], **kw)
            pose_index, axes, rests = [], [], []
            for hinge in HINGE_JOINTS:
                j_hinge, j_prox, j_dist = (joints[JOINT_INDEX[n]] for n in (hinge.name, hinge.proximal, hinge.distal))
                (g_dist,) = torch.autograd.grad(j_dist @ probe, pose, retain_graph=True)
                (g_hinge,) = torch.autograd.grad(j_hinge @ probe, pose, retain_graph=True)
                moves_dist = g_dist[0].abs().sum(-1) > 1e-6
                moves_hinge = g_hinge[0].abs().sum(-1) > 1e-6
                candidates = torch.nonzero(moves_dist & ~moves_hinge).flatten().tolist()
                if len(candidates) != 1:
                    names = [self.pose_joint_names[i] for i in candidates]
                    raise RuntimeError(
                        f"{self.name}: cannot identify the posable joint of {hinge.name} (candidates {names})"
                    )
                idx = candidates[0]
                jac = torch.stack(
                    [torch.autograd.grad(j_dist[k], pose, retain_graph=True)[0][0, idx] for k in range(3)]
                )  # (3 distal coords, 3 axis-angle params)
                u = (j_hinge - j_prox).detach()
                f = (j_dist - j_hinge).detach()
                d = torch.tensor(hinge.flex_direction, **kw)
                normal = torch.linalg.cross(u, d - (d @ u) / (u @ u) * u)  # normal to u and the flexing direction
                axis_model = normal / normal.norm()
                velocity = torch.linalg.cross(axis_model, f)  # distal joint's motion per radian of flexion
                omega = torch.linalg.pinv(jac.detach()) @ velocity  # minimum norm: the part normal to f
                axis_param = omega / omega.norm()
                f_plane = f - (f @ axis_model) * axis_model  # lower segment within the flexion plane
                rest = torch.atan2(torch.linalg.cross(u, f_plane) @ axis_model, u @ f_plane)
                pose_index.append(idx)
                axes.append(axis_param)
                rests.append(rest)
        return JointHinges(
            names=tuple(h.name for h in HINGE_JOINTS),
            pose_index=torch.tensor(pose_index, device=self.device),
            flex_axis=torch.stack(axes).detach(),
            rest_flexion=torch.stack(rests).detach(),
        )
