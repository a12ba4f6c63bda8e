"""SMPL-X adapter: the ``BodyModel`` interface on top of the ``smplx`` package.

The SMPL-X files are licence-restricted: users download them themselves and point this adapter
at them (``--smplx-dir``, config key ``body.smplx_dir`` or the ``RESIHMR_SMPLX_DIR``
environment variable). SMPL-X's own model frame is already this project's model frame
(metres, Y up, facing +Z, the person's left is +X), so no axis conversion is needed.

Parameters: ``body_pose`` holds the 21 SMPL-X body joints (axis-angle), ``shape`` the first
``num_betas`` betas. Hands (flat, no PCA), jaw, eyes and expression are held at zero.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import smplx
import torch
from smplx.joint_names import JOINT_NAMES as SMPLX_ALL_JOINT_NAMES
from smplx.vertex_ids import vertex_ids as SMPLX_DEFAULT_VERTEX_IDS
from smplx.vertex_joint_selector import VertexJointSelector

from resihmr_dr.body.base import JOINT_NAMES, BodyModel, BodyOutput
from resihmr_dr.body.errors import BodyModelError
from resihmr_dr.body.segments import segment_labels_from_skinning

SMPLX_DIR_ENV = "RESIHMR_SMPLX_DIR"
GENDERS: tuple[str, ...] = ("neutral", "male", "female")
SMPLX_DOWNLOAD_HINT = (
    "SMPL-X files are licence-restricted and not shipped with resihmr_dr: register at "
    'https://smpl-x.is.tue.mpg.de, download "SMPL-X v1.1 NPZ", unpack it and pass the folder '
    f"with --smplx-dir, the config key body.smplx_dir, or the {SMPLX_DIR_ENV} environment variable."
)

# The 55 joints of SMPL-X's kinematic tree, in the model's order (``smplx.joint_names``).
SMPLX_JOINT_NAMES: tuple[str, ...] = tuple(SMPLX_ALL_JOINT_NAMES[:55])
NUM_SMPLX_JOINTS = 55
NUM_BODY_POSE_JOINTS = 21  # SMPL-X joints 1..21; 0 is the root (global_orient)
NUM_HAND_POSE = 45  # 15 joints x 3, per hand, full axis-angle (no PCA)

# Index into SMPL-X's joint output for each of ``JOINT_NAMES``.
SMPLX_JOINT_FOR_NAME: dict[str, int] = {
    "pelvis": 0,
    "left_hip": 1,
    "right_hip": 2,
    "left_knee": 4,
    "right_knee": 5,
    "left_ankle": 7,
    "right_ankle": 8,
    "neck": 12,
    "head": 15,
    "left_shoulder": 16,
    "right_shoulder": 17,
    "left_elbow": 18,
    "right_elbow": 19,
    "left_wrist": 20,
    "right_wrist": 21,
}
JOINT_SELECTION: tuple[int, ...] = tuple(SMPLX_JOINT_FOR_NAME[name] for name in JOINT_NAMES)

# The 17 COCO keypoints in SMPL-X's joint output. Face points (55..59) are the extra,
# vertex-based joints that smplx appends after the 55 model joints, in the order
# nose, right_eye, left_eye, right_ear, left_ear (``VertexJointSelector``).
COCO_FROM_SMPLX: tuple[int, ...] = (
    55,  # nose
    57,  # left_eye
    56,  # right_eye
    59,  # left_ear
    58,  # right_ear
    16,
    17,  # shoulders
    18,
    19,  # elbows
    20,
    21,  # wrists
    1,
    2,  # hips
    4,
    5,  # knees
    7,
    8,  # ankles
)

# Keys of the ``vertex_ids`` mapping smplx uses for its extra joints (face, feet, fingertips).
VERTEX_ID_KEYS: tuple[str, ...] = tuple(SMPLX_DEFAULT_VERTEX_IDS["smplx"].keys())


def _finger_joints(side: str) -> tuple[str, ...]:
    fingers = ("index", "middle", "pinky", "ring", "thumb")
    return tuple(f"{side}_{finger}{k}" for finger in fingers for k in (1, 2, 3))


def smplx_bone_to_segment() -> dict[str, str]:
    """SMPL-X joint name -> limb segment name, for the joints whose rotation moves that segment.

    The shoulder joint drives the upper arm, the elbow the forearm, the wrist and fingers the
    hand; the hip drives the thigh, the knee the shank, the ankle and foot joints the foot.
    Unlisted joints (spine, collars, neck, head, jaw, eyes) count as "other".
    """
    table: dict[str, str] = {}
    for side in ("left", "right"):
        table[f"{side}_shoulder"] = f"{side}_upper_arm"
        table[f"{side}_elbow"] = f"{side}_forearm"
        table[f"{side}_wrist"] = f"{side}_hand"
        for name in _finger_joints(side):
            table[name] = f"{side}_hand"
        table[f"{side}_hip"] = f"{side}_thigh"
        table[f"{side}_knee"] = f"{side}_shank"
        table[f"{side}_ankle"] = f"{side}_foot"
        table[f"{side}_foot"] = f"{side}_foot"
    return table


def _model_file_candidates(folder: Path, gender: str) -> list[Path]:
    stem = f"SMPLX_{gender.upper()}"
    return [folder / "smplx" / f"{stem}{ext}" for ext in (".npz", ".pkl")] + [
        folder / f"{stem}{ext}" for ext in (".npz", ".pkl")
    ]


def _check_gender(gender: str) -> None:
    if gender not in GENDERS:
        raise BodyModelError(f"unknown SMPL-X gender {gender!r}; expected one of {', '.join(GENDERS)}")


def model_file_gender(model_file: str | Path, gender: str | None = None) -> str:
    """The gender of the SMPL-X model in ``model_file``: ``gender`` when given, else the one its
    official name says (``SMPLX_FEMALE.npz``: "female"), else "neutral".

    Raises ``BodyModelError`` when ``gender`` is unknown or contradicts the file's official name
    (fitting SMPLX_FEMALE.npz as "neutral" would record the wrong model in params.npz).
    """
    stem = Path(model_file).stem.upper()
    named = next((g for g in GENDERS if stem == f"SMPLX_{g.upper()}"), None)
    if gender is None:
        return named or "neutral"
    _check_gender(gender)
    if named is not None and named != gender:
        raise BodyModelError(
            f"{model_file} is the {named} SMPL-X model, but gender {gender!r} was asked for; "
            f"pass gender={named!r} (or leave it unset to take the file's)"
        )
    return gender


def resolve_smplx_path(path: str | Path | None, *, gender: str = "neutral") -> Path:
    """Find the SMPL-X model file to load.

    Order: ``path`` if given (a model file, or a folder holding ``smplx/SMPLX_<GENDER>.npz`` or
    ``SMPLX_<GENDER>.npz``), else the folder or file named by ``$RESIHMR_SMPLX_DIR``. In a folder
    ``.npz`` is preferred over ``.pkl``. An explicit ``path`` that does not hold a model is an
    error (no silent fall-back to the environment variable).
    Raises ``BodyModelError`` saying what was looked for, where, and how to get the files.
    """
    _check_gender(gender)
    if path is not None and str(path) != "":
        location, origin = Path(path).expanduser(), "the given path"
    elif os.environ.get(SMPLX_DIR_ENV):
        location, origin = Path(os.environ[SMPLX_DIR_ENV]).expanduser(), f"${SMPLX_DIR_ENV}"
    else:
        raise BodyModelError(
            f"no SMPL-X model location given: expected SMPLX_{gender.upper()}.npz in a folder "
            f"passed explicitly or named by ${SMPLX_DIR_ENV} (unset). {SMPLX_DOWNLOAD_HINT}"
        )
    if location.is_file():
        return location
    if location.is_dir():
        for candidate in _model_file_candidates(location, gender):
            if candidate.is_file():
                return candidate
        looked = ", ".join(str(c) for c in _model_file_candidates(location, gender))
        raise BodyModelError(
            f"no SMPL-X model file SMPLX_{gender.upper()}.npz in {location} (from {origin}); "
            f"looked for: {looked}. {SMPLX_DOWNLOAD_HINT}"
        )
    raise BodyModelError(
        f"SMPL-X model location {location} (from {origin}) does not exist; expected a folder "
        f"holding smplx/SMPLX_{gender.upper()}.npz or SMPLX_{gender.upper()}.npz, or the file "
        f"itself. {SMPLX_DOWNLOAD_HINT}"
    )


def _load_smplx_module(model_file: Path, *, gender: str, num_betas: int, dtype: torch.dtype) -> smplx.SMPLX:
    """Build ``smplx.SMPLX`` from one file, without learnable members (all inputs passed per call)."""
    ext = model_file.suffix.lower().lstrip(".")
    if ext not in ("npz", "pkl"):
        raise BodyModelError(
            f"{model_file} is not an SMPL-X model file (.npz expected, got .{ext}). {SMPLX_DOWNLOAD_HINT}"
        )
    try:
        return smplx.SMPLX(
            str(model_file),
            ext=ext,
            gender=gender,
            num_betas=num_betas,
            num_expression_coeffs=10,
            use_pca=False,
            flat_hand_mean=True,
            use_face_contour=False,
            dtype=dtype,
            batch_size=1,
            create_betas=False,
            create_global_orient=False,
            create_body_pose=False,
            create_transl=False,
            create_left_hand_pose=False,
            create_right_hand_pose=False,
            create_expression=False,
            create_jaw_pose=False,
            create_leye_pose=False,
            create_reye_pose=False,
        )
    except ImportError as exc:  # ModuleNotFoundError: chumpy inside an official .pkl
        if "chumpy" in str(exc):
            raise BodyModelError(
                f"{model_file} is a .pkl SMPL-X file that needs chumpy, which does not work with "
                'current Python/numpy; use the .npz files instead ("SMPL-X v1.1 NPZ" from '
                f"https://smpl-x.is.tue.mpg.de). {SMPLX_DOWNLOAD_HINT}"
            ) from exc
        raise BodyModelError(f"could not load SMPL-X model {model_file}: {exc}") from exc
    except (
        OSError,
        EOFError,
        KeyError,
        AttributeError,
        IndexError,
        ValueError,
        TypeError,
        AssertionError,
        zipfile.BadZipFile,
        pickle.UnpicklingError,
    ) as exc:
        raise BodyModelError(
            f"could not load SMPL-X model {model_file} ({type(exc).__name__}: {exc}); expected an "
            f"SMPL-X v1.1 .npz model file. {SMPLX_DOWNLOAD_HINT}"
        ) from exc


def _check_smplx_module(module: smplx.SMPLX, model_file: Path) -> None:
    num_joints = int(module.J_regressor.shape[0])
    if num_joints != NUM_SMPLX_JOINTS:
        raise BodyModelError(
            f"{model_file} has {num_joints} joints, not SMPL-X's {NUM_SMPLX_JOINTS} "
            f"(an SMPL or SMPL+H file?). {SMPLX_DOWNLOAD_HINT}"
        )


def _vertex_joint_selector(
    vertex_ids: Mapping[str, int] | None, *, num_verts: int, model_file: Path
) -> VertexJointSelector:
    """smplx's selector of extra vertex-based joints (face, feet, fingertips), validated.

    ``vertex_ids=None`` uses smplx's ids for the official SMPL-X topology (10,475 vertices).
    """
    ids = dict(SMPLX_DEFAULT_VERTEX_IDS["smplx"] if vertex_ids is None else vertex_ids)
    missing = [key for key in VERTEX_ID_KEYS if key not in ids]
    if missing:
        raise BodyModelError(f"vertex_ids lacks the keys {missing}; needed: {list(VERTEX_ID_KEYS)}")
    bad = {key: int(ids[key]) for key in VERTEX_ID_KEYS if not 0 <= int(ids[key]) < num_verts}
    if bad:
        raise BodyModelError(
            f"{model_file} has {num_verts} vertices but the extra-joint vertex ids {bad} are out of "
            "range: a non-standard SMPL-X topology needs its own vertex_ids (nose, eyes, ears, "
            "toes, heels, fingertips)"
        )
    return VertexJointSelector(vertex_ids={key: int(ids[key]) for key in VERTEX_ID_KEYS})


class SmplxBody(BodyModel):
    """SMPL-X through ``smplx``: ``body_pose`` (B, 21, 3) axis-angle, ``shape`` (B, num_betas) betas.

    Args:
        model_path: folder holding ``smplx/SMPLX_<GENDER>.npz`` or ``SMPLX_<GENDER>.npz``, or the
            model file; ``None`` reads ``$RESIHMR_SMPLX_DIR`` (see ``resolve_smplx_path``).
        gender: "neutral", "male" or "female" (``BodyModel.gender``, recorded in params.npz);
            None: the gender of a model file given directly (by its name, ``model_file_gender``),
            else "neutral" (a folder's ``SMPLX_NEUTRAL.npz``).
        num_betas: number of shape coefficients (at most what the file holds).
        vertex_ids: indices of the vertices smplx reads its extra joints from (nose, eyes, ears,
            toes, heels, fingertips); ``None`` for the official topology.
        dtype: floating dtype of the model's buffers and outputs.
    """

    name = "smplx"
    pose_joint_names: tuple[str, ...] = SMPLX_JOINT_NAMES[1 : 1 + NUM_BODY_POSE_JOINTS]

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        gender: str | None = None,
        num_betas: int = 10,
        vertex_ids: Mapping[str, int] | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if num_betas < 1:
            raise BodyModelError(f"num_betas must be >= 1, got {num_betas}")
        model_file = resolve_smplx_path(model_path, gender=gender or "neutral")
        gender = model_file_gender(model_file, gender)
        layer = _load_smplx_module(model_file, gender=gender, num_betas=num_betas, dtype=dtype)
        _check_smplx_module(layer, model_file)
        if layer.num_betas < num_betas:
            raise BodyModelError(f"{model_file} has only {layer.num_betas} shape components; asked for {num_betas}")
        layer.vertex_joint_selector = _vertex_joint_selector(
            vertex_ids, num_verts=int(layer.v_template.shape[0]), model_file=model_file
        )
        self.model_file = model_file
        self.gender = gender
        self.smplx_layer = layer
        self.shape_names = tuple(f"beta{i}" for i in range(num_betas))
        self.register_buffer("faces", layer.faces_tensor.clone())
        self.register_buffer("vertex_segment", self._segments_from_weights(layer.lbs_weights))
        self.register_buffer("joint_selection", torch.tensor(JOINT_SELECTION, dtype=torch.long))
        self.register_buffer("coco_selection", torch.tensor(COCO_FROM_SMPLX, dtype=torch.long))

    @staticmethod
    def _segments_from_weights(lbs_weights: torch.Tensor) -> torch.Tensor:
        """(V,) segment labels from the dense (V, 55) LBS weights."""
        num_verts, num_joints = lbs_weights.shape
        return segment_labels_from_skinning(
            bone_indices=torch.arange(num_joints).expand(num_verts, num_joints),
            bone_weights=lbs_weights.detach().float(),
            bone_names=SMPLX_JOINT_NAMES,
            bone_to_segment=smplx_bone_to_segment(),
        )

    @property
    def dtype(self) -> torch.dtype:
        return self.smplx_layer.v_template.dtype

    def default_shape(self) -> torch.Tensor:
        """(S,) zero betas: the model's mean shape."""
        return torch.zeros(self.num_shape, dtype=self.dtype, device=self.device)

    def tpose_body_pose(self, shape: torch.Tensor) -> torch.Tensor:
        """(B, 21, 3) zeros: SMPL-X's rest pose is already a T-pose."""
        return torch.zeros(shape.shape[0], self.num_pose_joints, 3, dtype=shape.dtype, device=shape.device)

    def smplx_output(
        self,
        *,
        body_pose: torch.Tensor,
        shape: torch.Tensor,
        global_orient: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw smplx forward pass.

        body_pose: (B, 21, 3) axis-angle; shape: (B, S) or (1, S) betas; global_orient, transl:
        (B, 3) or None for zero. Returns verts (B, V, 3) and all smplx joints (B, 55 + extra, 3),
        in the model frame moved by ``global_orient`` (about the pelvis) and ``transl``.
        """
        body_pose, shape = self._check_inputs(body_pose, shape)
        batch = body_pose.shape[0]
        zeros = lambda n: body_pose.new_zeros(batch, n)  # noqa: E731
        out = self.smplx_layer(
            betas=shape,
            global_orient=zeros(3) if global_orient is None else global_orient,
            body_pose=body_pose.reshape(batch, 3 * NUM_BODY_POSE_JOINTS),
            transl=zeros(3) if transl is None else transl,
            left_hand_pose=zeros(NUM_HAND_POSE),
            right_hand_pose=zeros(NUM_HAND_POSE),
            expression=zeros(self.smplx_layer.num_expression_coeffs),
            jaw_pose=zeros(3),
            leye_pose=zeros(3),
            reye_pose=zeros(3),
            return_verts=True,
            return_shaped=False,
        )
        return out.vertices, out.joints

    def _check_inputs(self, body_pose: torch.Tensor, shape: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if body_pose.ndim != 3 or tuple(body_pose.shape[1:]) != (self.num_pose_joints, 3):
            raise ValueError(f"body_pose must be (B, {self.num_pose_joints}, 3), got {tuple(body_pose.shape)}")
        if shape.ndim != 2 or shape.shape[1] != self.num_shape:
            raise ValueError(f"shape must be (B, {self.num_shape}), got {tuple(shape.shape)}")
        batch = body_pose.shape[0]
        if shape.shape[0] == 1 and batch != 1:
            shape = shape.expand(batch, -1)
        if shape.shape[0] != batch:
            raise ValueError(f"batch sizes differ: body_pose {batch}, shape {shape.shape[0]}")
        return body_pose, shape

    def forward_model(self, body_pose: torch.Tensor, shape: torch.Tensor) -> BodyOutput:
        """Posed body in the model frame (Y up, facing +Z, left +X), metres.

        body_pose: (B, 21, 3) axis-angle of SMPL-X joints 1..21; shape: (B, S) betas.
        Returns verts (B, V, 3), joints (B, 15, 3) in ``JOINT_NAMES`` order, coco_kp (B, 17, 3).
        """
        verts, smplx_joints = self.smplx_output(body_pose=body_pose, shape=shape)
        return BodyOutput(
            verts=verts,
            joints=smplx_joints.index_select(1, self.joint_selection),
            coco_kp=smplx_joints.index_select(1, self.coco_selection),
        )
