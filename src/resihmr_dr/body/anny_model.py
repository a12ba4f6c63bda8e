"""Anny body model adapter (the embedded default: Apache-2.0, ships all its data, offline).

Anny's native frame is Z up, the person faces -Y, the person's left is +X. This adapter
rotates its output into the model frame of ``base.py`` (Y up, facing +Z, left +X).
Pose parameters use Anny's "local-ref" parameterisation: each posed bone's rotation is an
axis-angle in Anny's (Z-up) axes, applied in the bone's reference frame as posed by its parents.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import roma
import torch

from resihmr_dr.body.base import JOINT_NAMES, BodyModel, BodyOutput
from resihmr_dr.body.segments import segment_labels_from_skinning
from resihmr_dr.data.ldpose import KEYPOINT_NAMES, NUM_COCO_KEYPOINTS

# Posable bones (P = 19). Twist bones (upperarm02, lowerarm02, upperleg02, lowerleg02), hands,
# toes and the face stay at rest.
POSE_BONES: tuple[str, ...] = (
    "spine05",
    "spine03",
    "spine01",
    "neck01",
    "head",
    "clavicle.L",
    "upperarm01.L",
    "lowerarm01.L",
    "wrist.L",
    "clavicle.R",
    "upperarm01.R",
    "lowerarm01.R",
    "wrist.R",
    "upperleg01.L",
    "lowerleg01.L",
    "foot.L",
    "upperleg01.R",
    "lowerleg01.R",
    "foot.R",
)

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


def first_build_notice() -> str | None:
    """The message to show before Anny's first construction on this machine (its model cache,
    ``anny.paths.get_anny_cache_path()``, holds no built model of this Anny version yet), or None.
    Reads the file system only; imports neither Anny nor Warp."""
    import importlib.util

    spec = importlib.util.find_spec("anny")
    if spec is None or spec.origin is None:
        return None
    cache = _anny_cache_folder(Path(spec.origin).parent)
    if cache is None or any(cache.glob("*.safetensors")):
        return None
    return (
        f"Anny builds its model cache on first use on this machine (about 2.5 min on 2 cores, ~790 MB "
        f"under {cache.parent}); later runs load it in about a second."
    )


def _anny_cache_folder(package_dir: Path) -> Path | None:
    """Anny's versioned cache folder (``$ANNY_CACHE_DIR`` or ~/.cache/anny, then ``v<data version>``),
    read from its sources without importing it; None when they do not say."""
    import re

    try:
        source = (package_dir / "models" / "model_data.py").read_text()
    except OSError:
        return None
    version = re.search(r"^CURRENT_DATA_VERSION\s*=\s*(\d+)", source, re.M)
    if version is None:
        return None
    root = os.environ.get("ANNY_CACHE_DIR")
    base = Path(root) if root else Path.home() / ".cache" / "anny"
    return base / f"v{version.group(1)}"


# What Warp's C library writes to stderr on a machine without an NVIDIA driver (CPU skinning works).
WARP_NO_DRIVER_NOTE = b"Warp CUDA warning: Could not find or load the NVIDIA CUDA driver"


@contextlib.contextmanager
def _stderr_without(prefix: bytes):
    """Run the block with file descriptor 2 captured, then write back what was written to it
    except the lines starting with ``prefix`` (C libraries print there, past ``sys.stderr``)."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable fd 2 (some embedded interpreters)
        yield
        return
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().splitlines(keepends=True) if not line.startswith(prefix)]
            if kept:
                os.write(2, b"".join(kept))


@contextlib.contextmanager
def _warp_quiet():
    """Warp's log level at least ``warp.LOG_WARNING`` inside (no start-up banner, no kernel load
    times; warnings and errors still print), the application's level restored on the way out.
    Yields the ``warp`` module, or None when Warp is not installed."""
    try:
        import warp
    except ImportError:
        yield None
        return
    level = warp.config.log_level
    warp.config.log_level = max(level, getattr(warp, "LOG_WARNING", 30))
    try:
        yield warp
    finally:
        warp.config.log_level = level


@functools.lru_cache(maxsize=4)
def load_anny(device: str = "cpu", dtype: torch.dtype = torch.float32):
    """The raw ``anny.Anny`` model, built once per process and device.

    The first construction on a machine builds Anny's cache (~790 MB under ~/.cache/anny, about
    2.5 min on 2 cores; :func:`first_build_notice` is logged as a warning first); later ones take
    about a second.

    Anny skins with NVIDIA Warp, which at its default log level prints a start-up banner (on CPU
    machines: "CUDA driver not available") and each kernel module's load time, in every script
    and notebook. Both happen here (its start-up, then one forward pass that loads the skinning
    kernels), while Warp's log level is raised to warnings and then set back to the application's
    (nothing process-wide changes), so a script sees none of it. The note Warp's C library writes
    to stderr at initialisation on machines without an NVIDIA driver (``WARP_NO_DRIVER_NOTE``) is
    dropped, and so are the deprecation notices Warp and Anny raise from their own modules while
    Anny loads.
    """
    notice = first_build_notice()
    if notice is not None:
        logging.getLogger(__name__).warning(notice)
    with warnings.catch_warnings(), _warp_quiet() as warp:
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", category=category, module=r"(warp|anny)(\.|$)")
        if warp is not None:
            with _stderr_without(WARP_NO_DRIVER_NOTE):  # its C library prints the note at init
                warp.init()
        import anny

        model = anny.Anny().to(device=torch.device(device), dtype=dtype).eval()  # "local-ref" poses
        if warp is not None:
            _load_skinning_kernels(model)
    return model


def _load_skinning_kernels(model) -> None:
    """One forward pass of the raw model (rest pose, template shape), so that Warp loads Anny's
    skinning kernels now, inside :func:`load_anny`'s quiet section, rather than printing their
    load time at the first fit."""
    from anny.models.rigged_model import RiggedModelWithLinearBlendShapes

    kw = {"device": model.template_vertices.device, "dtype": model.template_vertices.dtype}
    rest = torch.eye(4, **kw).expand(1, len(model.bone_labels), 4, 4).contiguous()
    with torch.no_grad():
        RiggedModelWithLinearBlendShapes.forward(model, rest, torch.zeros(1, model.blendshapes.shape[0], **kw))


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
        self._n_coefficients = int(self._anny.blendshapes.shape[0])
        self._kp_points: _KeypointBonePoints | None = None

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

    def blendshape_coefficients(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, 6) phenotypes -> (B, N) Anny blend-shape coefficients, clamped to [0, 1] first.

        Anny's own routine with its local changes and facial actions at zero (this adapter never
        sets them): their coefficients are zeros after the phenotype ones, written directly
        instead of Anny's per-label loop (a third of a forward pass).
        """
        from anny.models.phenotype import phenotype_blendshape_weights

        a = self._anny
        weights = phenotype_blendshape_weights(
            shape.clamp(0.0, 1.0),
            a.phenotype_labels,
            a.anchors,
            a.stacked_phenotype_blend_shapes_mask,
            extrapolate=a.extrapolate_phenotypes,
        )
        if a.phenotype_blendshape_projection is not None:
            weights = weights @ a.phenotype_blendshape_projection
        return torch.nn.functional.pad(weights, (0, self._n_coefficients - weights.shape[1]))

    def _raw(self, body_pose: torch.Tensor, shape: torch.Tensor) -> dict[str, torch.Tensor]:
        from anny.models.rigged_model import RiggedModelWithLinearBlendShapes

        return RiggedModelWithLinearBlendShapes.forward(
            self._anny, self.pose_matrices(body_pose), self.blendshape_coefficients(shape)
        )

    def forward_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        raw = self._raw(body_pose, shape)
        to_model = self._to_model.T  # row vectors: p' = p @ C^T
        verts = raw["vertices"] @ to_model
        joints = raw["bone_poses"][:, self._joint_bone_ids, :3, 3] @ to_model
        coco = self._coco(raw) @ to_model
        return BodyOutput(verts=verts, joints=joints, coco_kp=coco)

    def keypoints_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Joints and COCO keypoints without skinning the mesh.

        Linear blend skinning is linear in the rest vertices, and the COCO regressor is linear in
        the skinned vertices, so each keypoint is ``sum_j T_j [P_kj; M_kj]`` over the bones j:
        ``M_kj`` the regressor weight reaching bone j through the skinning weights and ``P_kj`` the
        same weighted sum of rest vertices, itself linear in the blend-shape coefficients
        (precomputed for the pairs with M_kj > 0 in ``_keypoint_bone_points``). Only the bones'
        rest poses are built.
        """
        a = self._anny
        coefficients = self.blendshape_coefficients(shape)
        if a.bone_orientation == "cached":
            rest_bone_poses = _cached_rest_bone_poses(a, coefficients)
        else:
            rest_bone_poses = a.get_rest_model(coefficients)["rest_bone_poses"]
        transforms, bone_poses = a.get_bone_transforms(self.pose_matrices(body_pose), rest_bone_poses)
        pairs = self._keypoint_bone_points()
        points = pairs.points0 + torch.einsum("ba,apd->bpd", coefficients, pairs.points1)  # (B, pairs, 3)
        t = transforms[:, pairs.bone]  # (B, pairs, 4, 4)
        moved = (t[..., :3, :3] @ points.unsqueeze(-1)).squeeze(-1) + t[..., :3, 3] * pairs.mass[:, None]
        coco = moved.new_zeros(moved.shape[0], len(self._coco.labels), 3).index_add(1, pairs.keypoint, moved)
        to_model = self._to_model.T
        joints = bone_poses[:, self._joint_bone_ids, :3, 3] @ to_model
        return joints, coco @ to_model

    def _keypoint_bone_points(self) -> "_KeypointBonePoints":
        """P_kj and M_kj of :meth:`keypoints_model` for the (keypoint, bone) pairs with M_kj > 0
        (built on first use)."""
        if self._kp_points is None:
            a = self._anny
            reg = self._coco.regression_weights.to(torch.float64)  # (K, V) dense
            skin = torch.zeros(a.template_vertices.shape[0], self._bone_count, dtype=torch.float64)
            skin.scatter_add_(1, a.vertex_bone_indices.long(), a.vertex_bone_weights.to(torch.float64))  # (V, bones)
            mass = reg @ skin  # (K, bones): M_kj = sum_v reg[k, v] skin[v, j]
            keypoint, bone = torch.nonzero(mass > 0, as_tuple=True)
            m = reg[keypoint] * skin.T[bone]  # (pairs, V)
            kw = {"device": self.device, "dtype": self.dtype}
            self._kp_points = _KeypointBonePoints(
                keypoint=keypoint.to(self.device),
                bone=bone.to(self.device),
                mass=mass[keypoint, bone].to(**kw),
                points0=(m @ a.template_vertices.to(torch.float64)).to(**kw),
                points1=torch.einsum("pv,avd->apd", m, a.blendshapes.to(torch.float64)).to(**kw),
            )
        return self._kp_points

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


@dataclass(frozen=True)
class _KeypointBonePoints:
    """(keypoint k, bone j) pairs of :meth:`AnnyBody.keypoints_model`: keypoint, bone (pairs,) long;
    mass (pairs,) M_kj; points0 (pairs, 3) template part and points1 (N, pairs, 3) blend-shape part
    of P_kj (Anny's axes)."""

    keypoint: torch.Tensor
    bone: torch.Tensor
    mass: torch.Tensor
    points0: torch.Tensor
    points1: torch.Tensor


def _cached_rest_bone_poses(anny_model, coefficients: torch.Tensor) -> torch.Tensor:
    """(B, bones, 4, 4) rest bone poses of Anny's "cached" bone orientation, without its rest
    vertices: the bones part of ``RiggedModelWithLinearBlendShapes._get_cached_rest_model``."""
    from anny.skinning.skinning import apply_linear_blendshape

    a = anny_model
    heads = apply_linear_blendshape(a.template_bone_heads, a.bone_heads_blendshapes, coefficients)
    cross = a.bone_template_orientation_matrices[None] + torch.einsum(
        "ba,akij->bkij", coefficients, a.bone_orientation_blendshapes
    )
    orientation = roma.special_procrustes(cross)
    if a.rest_orientation_refiner is not None:
        orientation = a.rest_orientation_refiner(orientation, heads)
    poses = roma.Rigid(linear=orientation, translation=heads).to_homogeneous()
    if a.root_identity_orientation:
        poses[:, 0, :3, :3] = torch.eye(3, device=poses.device, dtype=poses.dtype)
    return poses


def _rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) smallest rotation taking direction a (B, 3) to direction b (B, 3)."""
    a = torch.nn.functional.normalize(a, dim=-1)
    b = torch.nn.functional.normalize(b, dim=-1)
    axis = torch.cross(a, b, dim=-1)
    sin = axis.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    angle = torch.atan2(sin, (a * b).sum(-1, keepdim=True))
    return roma.rotvec_to_rotmat(axis / sin * angle)
