"""Anny body model adapter (the embedded default: Apache-2.0, ships all its data, offline).

Anny's native frame is Z up, the person faces -Y, the person's left is +X. This adapter
rotates its output into the model frame of ``base.py`` (Y up, facing +Z, left +X).
Pose parameters use Anny's "local-ref" parameterisation: each posed bone's rotation is an
axis-angle in Anny's (Z-up) axes, applied in the bone's reference frame as posed by its parents.
"""

from __future__ import annotations

import functools
import warnings

import roma
import torch

from resihmr_dr.body.base import JOINT_NAMES, BodyModel, BodyOutput
from resihmr_dr.body.segments import segment_labels_from_skinning
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

# Posable bones (P = 19). Twist bones (upperarm02, lowerarm02, upperleg02, lowerleg02), hands,
# toes and the face stay at rest.
POSE_BONES: tuple[str, ...] = (
    "spine05", "spine03", "spine01", "neck01", "head",
    "clavicle.L", "upperarm01.L", "lowerarm01.L", "wrist.L",
    "clavicle.R", "upperarm01.R", "lowerarm01.R", "wrist.R",
    "upperleg01.L", "lowerleg01.L", "foot.L",
    "upperleg01.R", "lowerleg01.R", "foot.R",
)  # fmt: skip

# Named joint -> the bone whose head is that joint.
JOINT_BONES: dict[str, str] = {
    "pelvis": "root",
    "neck": "neck01",
    "head": "head",
    "left_shoulder": "upperarm01.L",
    "right_shoulder": "upperarm01.R",
    "left_elbow": "lowerarm01.L",
    "right_elbow": "lowerarm01.R",
    "left_wrist": "wrist.L",
    "right_wrist": "wrist.R",
    "left_hip": "upperleg01.L",
    "right_hip": "upperleg01.R",
    "left_knee": "lowerleg01.L",
    "right_knee": "lowerleg01.R",
    "left_ankle": "foot.L",
    "right_ankle": "foot.R",
}

SHAPE_NAMES: tuple[str, ...] = ("gender", "age", "muscle", "weight", "height", "proportions")

# Anny (Z up, facing -Y) -> model frame (Y up, facing +Z): x' = x, y' = z, z' = -y.
ANNY_TO_MODEL = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def _bone_segment(bone: str) -> str:
    """Limb segment carried by an Anny bone ("other" for torso, head, clavicles)."""
    base, _, side = bone.partition(".")
    prefix = {"L": "left_", "R": "right_"}.get(side)
    if prefix is None:
        return "other"
    if base.startswith("upperarm"):
        return prefix + "upper_arm"
    if base.startswith("lowerarm"):
        return prefix + "forearm"
    if base.startswith(("wrist", "finger", "metacarpal")):
        return prefix + "hand"
    if base.startswith("upperleg"):
        return prefix + "thigh"
    if base.startswith("lowerleg"):
        return prefix + "shank"
    if base.startswith(("foot", "toe")):
        return prefix + "foot"
    return "other"


@functools.lru_cache(maxsize=4)
def load_anny(device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The raw ``anny.Anny`` model, built once per process and device.

    The first construction on a machine builds Anny's cache (~1 GB under ~/.cache/anny, 1-3 min);
    later ones take well under a second.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:  # Anny skins with NVIDIA Warp, which prints a banner (and a CUDA note on CPU machines).
            import warp

            warp.config.log_level = getattr(warp, "LOG_ERROR", getattr(warp, "LOG_WARNING", 30))
        except ImportError:
            pass
        import anny

        model = anny.Anny()  # default rig/topology, "local-ref" pose parameterisation
    return model.to(device=torch.device(device), dtype=dtype).eval()


class AnnyBody(BodyModel):
    """Anny behind the ``BodyModel`` interface.

    shape: (B, 6) phenotypes in [0, 1] (gender, age, muscle, weight, height, proportions; 0.5 is
    the neutral mean). Values are clamped to [0, 1].
    """

    name = "anny"
    pose_joint_names = POSE_BONES
    shape_names = SHAPE_NAMES

    def __init__(self, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        import anny

        device = torch.device(device)
        # Not registered as a submodule: the shared raw model is owned by ``load_anny``'s cache.
        self._anny = load_anny(str(device), dtype)
        labels = list(self._anny.bone_labels)
        coco_names = list(KEYPOINT_NAMES[:NUM_COCO_KEYPOINTS])
        self._coco = anny.KeypointsRegressor.coco(self._anny, labels=coco_names).to(device=device, dtype=dtype)
        self.register_buffer("faces", self._anny.get_triangular_faces().long().to(device), persistent=False)
        self.register_buffer(
            "vertex_segment",
            segment_labels_from_skinning(
                bone_indices=self._anny.vertex_bone_indices.cpu(),
                bone_weights=self._anny.vertex_bone_weights.cpu(),
                bone_names=labels,
                bone_to_segment={b: _bone_segment(b) for b in labels},
            ).to(device),
            persistent=False,
        )
        self.register_buffer(
            "_pose_bone_ids", torch.tensor([labels.index(b) for b in POSE_BONES], device=device), persistent=False
        )
        self.register_buffer(
            "_joint_bone_ids",
            torch.tensor([labels.index(JOINT_BONES[j]) for j in JOINT_NAMES], device=device),
            persistent=False,
        )
        self.register_buffer("_to_model", ANNY_TO_MODEL.to(device=device, dtype=dtype), persistent=False)
        self._bone_count = len(labels)

    @property
    def dtype(self) -> torch.dtype:
        return self._anny.dtype

    @property
    def bone_labels(self) -> list[str]:
        """Names of Anny's bones, in the order of its bone transforms."""
        return list(self._anny.bone_labels)

    def default_shape(self) -> torch.Tensor:
        return torch.full((len(SHAPE_NAMES),), 0.5, device=self.device, dtype=self.dtype)

    def pose_matrices(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, P, 3) axis-angle -> (B, bones, 4, 4) Anny pose parameters (identity elsewhere)."""
        batch = body_pose.shape[0]
        eye = torch.eye(3, device=body_pose.device, dtype=body_pose.dtype)
        rot = eye.expand(batch, self._bone_count, 3, 3)
        rot = rot.index_copy(1, self._pose_bone_ids, roma.rotvec_to_rotmat(body_pose))
        top = torch.cat((rot, torch.zeros_like(rot[..., :1])), dim=-1)  # (B, bones, 3, 4)
        bottom = torch.zeros_like(top[..., :1, :])
        bottom[..., 0, 3] = 1.0
        return torch.cat((top, bottom), dim=-2)

    def _raw(self, body_pose: torch.Tensor, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        return self._anny(
            pose_parameters=self.pose_matrices(body_pose),
            phenotype_kwargs=shape.clamp(0.0, 1.0),
        )

    def forward_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        raw = self._raw(body_pose, shape)
        to_model = self._to_model.T  # row vectors: p' = p @ C^T
        verts = raw["vertices"] @ to_model
        joints = raw["bone_poses"][:, self._joint_bone_ids, :3, 3] @ to_model
        coco = self._coco(raw) @ to_model
        return BodyOutput(verts=verts, joints=joints, coco_kp=coco)

    @torch.no_grad()
    def tpose_body_pose(self, shape: torch.Tensor) -> torch.Tensor:
        """Rotate each upper arm, then forearm, from Anny's A-pose to horizontal (in Anny's axes)."""
        batch = shape.shape[0]
        pose = torch.zeros(batch, len(POSE_BONES), 3, device=shape.device, dtype=shape.dtype)
        labels = self.bone_labels
        for side, lateral in (("L", 1.0), ("R", -1.0)):
            target = torch.tensor([lateral, 0.0, 0.0], device=shape.device, dtype=shape.dtype).expand(batch, 3)
            parent_rot = torch.eye(3, device=shape.device, dtype=shape.dtype).expand(batch, 3, 3)
            for bone, child in ((f"upperarm01.{side}", f"lowerarm01.{side}"), (f"lowerarm01.{side}", f"wrist.{side}")):
                heads = self._raw(pose, shape)["bone_poses"][:, :, :3, 3]
                direction = heads[:, labels.index(child)] - heads[:, labels.index(bone)]
                world = _rotation_between(direction, target)  # (B, 3, 3) in Anny's world axes
                local = parent_rot.transpose(1, 2) @ world @ parent_rot
                pose[:, POSE_BONES.index(bone)] = roma.rotmat_to_rotvec(local)
                parent_rot = world @ parent_rot
        return pose


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) smallest rotation taking direction a (B, 3) to direction b (B, 3)."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    angle = torch.atan2(sin, (a * b).sum(-1, keepdim=True))
    return roma.rotvec_to_rotmat(axis / sin * angle)
