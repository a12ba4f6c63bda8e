"""Read a person folder written by ``resihmr-dr fit`` / ``demo`` back, and hand meshes to other tools.

:func:`read_person` reads one folder (``params.json``, ``metrics.json``, ``stump.json``,
``mesh.ply``, ``mesh_tpose.ply``, ``residual_mask.npy``) into a frozen :class:`FittedPerson`;
every problem is a :class:`ResultsError` naming the file and the field. The mesh helpers
(:func:`colored_trimesh`, :func:`pytorch3d_meshes`, :func:`export_vertices`, ...) live in
:mod:`resihmr_dr.mesh_export` and are re-exported here.

Frames: the posed mesh is in the camera frame (OpenCV: x right, y down, z forward), the T-pose
mesh in the model frame (Y up, the person faces +Z, their left is +X); metres.
``verts_cam = R(global_orient) (verts_model - root_model) + root_model + transl``, so
:func:`camera_to_model` undoes it exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from resihmr_dr.body.base import BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.jsonio import read_json_object
from resihmr_dr.data.ldpose import LIMB_BY_NAME, NUM_KEYPOINTS, Limb, LimbStatus
from resihmr_dr.mesh_export import (
    camera_to_model,
    colored_trimesh,
    export_vertices,
    pytorch3d_meshes,
    vertex_colours,
)
from resihmr_dr.stump.geometry import StumpGeometry

if TYPE_CHECKING:
    import trimesh

__all__ = [
    "FittedLimb",
    "FittedPerson",
    "ResultsError",
    "camera_to_model",
    "coco_keypoint_result",
    "colored_trimesh",
    "export_vertices",
    "pytorch3d_meshes",
    "read_person",
    "vertex_colours",
]


class ResultsError(DataError):
    """A written person folder or one of its files is missing or malformed (the message names
    the file and the field)."""


# --------------------------------------------------------------------------- the record
@dataclass(frozen=True)
class FittedLimb:
    """One residual limb as ``params.json`` has it (camera frame, metres; all on the written mesh).

    lam: the tip's fraction along J_a -> J_t; lambda_intact: RAFO's λ on the intact fit's
    segment (where the first cut was made); anchor_cam / target_cam: the fitted body's J_a / J_t;
    endpoint_cam: the cap's tip (a vertex of mesh.ply); endpoint_reprojection_px: the tip's
    projection's distance from its keypoint (None if unlabelled); rafo_accepted: RAFO's answer was
    accepted (else its fallback).
    """

    limb: Limb
    status: LimbStatus
    lam: float
    lambda_intact: float
    anchor_cam: np.ndarray
    target_cam: np.ndarray
    endpoint_cam: np.ndarray
    endpoint_reprojection_px: float | None
    rafo_accepted: bool


@dataclass(frozen=True)
class FittedPerson:
    """What ``resihmr-dr fit`` wrote for one person, read back by :func:`read_person`.

    params: the final body parameters (B = 1, float64); intact_params: the intact-body fit it
    started from; root_model: (3,) the root joint in the model frame (None in folders written
    before it was recorded); limbs: the residual limbs; pred_keypoints_px: (25, 3) the fitted
    LDpose keypoints ``[x, y, v]`` (v = 0: no prediction, the endpoints of intact limbs; None in
    older folders); stump / stump_tpose: per residual limb, the measurements of the posed and the
    T-pose mesh (``stump.json``); metrics: ``metrics.json``; verts_cam (V, 3), faces (F, 3),
    residual_mask (V,) bool: ``mesh.ply`` and m_r; verts_tpose (V, 3): ``mesh_tpose.ply`` (same
    faces and mask); seconds: the whole fit; intact_seconds: the intact-body fit alone;
    body_gender: the body model's gender ("neutral", "male", "female" for SMPL-X; None for Anny
    and in folders written before it was recorded).
    """

    folder: Path
    ann_id: int
    image_id: int
    body_name: str
    camera: PinholeCamera
    params: BodyParams
    intact_params: BodyParams
    root_model: np.ndarray | None
    limbs: tuple[FittedLimb, ...]
    pred_keypoints_px: np.ndarray | None
    stump: tuple[StumpGeometry, ...]
    stump_tpose: tuple[StumpGeometry, ...]
    metrics: dict
    verts_cam: np.ndarray
    faces: np.ndarray
    residual_mask: np.ndarray
    verts_tpose: np.ndarray
    seconds: float
    intact_seconds: float
    body_gender: str | None = None

    @property
    def quality_ok(self) -> bool:
        """The fit's convergence checks passed (``metrics.json``'s ``quality.ok``)."""
        quality = self.metrics.get("quality")
        return bool(quality.get("ok", True)) if isinstance(quality, dict) else True

    def params_for(self, body: BodyModel, *, intact: bool = False) -> BodyParams:
        """The fitted (or, ``intact``, the intact-body fit's) parameters on ``body``'s device and
        in its dtype."""
        params = self.intact_params if intact else self.params
        return BodyParams(*(t.to(body.device, body.dtype) for t in params.as_tuple()))

    def mesh_vertices(self, *, tpose: bool = False, frame: str | None = None, units: str = "m") -> np.ndarray:
        """(V, 3) vertices of the posed (or T-pose) mesh in ``frame`` and ``units``
        (:func:`export_vertices`); the posed mesh in "y-up" needs ``root_model``."""
        if not tpose and frame == "y-up" and self.root_model is None:
            raise ResultsError(
                "no root_model (written by an older version): cannot convert to the model frame",
                path=self.folder / "params.json",
                field="root_model",
            )
        return export_vertices(
            self.verts_tpose if tpose else self.verts_cam,
            tpose=tpose,
            frame=frame,
            units=units,
            global_orient=self.params.global_orient[0].numpy(),
            transl=self.params.transl[0].numpy(),
            root_model=np.zeros(3) if self.root_model is None else self.root_model,
        )

    def to_trimesh(self, *, tpose: bool = False, frame: str | None = None, units: str = "m") -> trimesh.Trimesh:
        """The posed (camera frame) or T-pose (model frame) mesh as a coloured ``trimesh.Trimesh``;
        ``frame`` / ``units`` convert it as :func:`export_vertices` does."""
        return colored_trimesh(
            self.mesh_vertices(tpose=tpose, frame=frame, units=units), self.faces, self.residual_mask
        )

    def to_pytorch3d(self, *, tpose: bool = False, device: str | torch.device = "cpu"):
        """The posed (camera frame) or T-pose mesh as a ``pytorch3d.structures.Meshes`` (metres);
        ImportError without PyTorch3D."""
        return pytorch3d_meshes(
            self.verts_tpose if tpose else self.verts_cam, self.faces, self.residual_mask, device=device
        )


# --------------------------------------------------------------------------- reading
def read_person(folder: str | Path) -> FittedPerson:
    """Read one person folder written by ``resihmr-dr fit`` / ``demo`` (see ``docs/outputs.md``).

    Raises :class:`ResultsError` (a ``DataError``) naming the file and field for a missing or
    malformed file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError("not a person folder (missing, or not a directory)", path=folder)
    params_path, metrics_path = folder / "params.json", folder / "metrics.json"
    data, metrics = _read_object(params_path), _read_object(metrics_path)
    verts, faces = _read_mesh(folder / "mesh.ply")
    verts_tpose, faces_tpose = _read_mesh(folder / "mesh_tpose.ply")
    if verts_tpose.shape != verts.shape or not np.array_equal(faces_tpose, faces):
        raise ResultsError(
            f"expected mesh.ply's mesh re-posed ({len(verts)} vertices, {len(faces)} faces), got "
            f"{len(verts_tpose)} vertices, {len(faces_tpose)} faces, or different faces",
            path=folder / "mesh_tpose.ply",
        )
    residual_mask = _read_residual_mask(folder / "residual_mask.npy", num_verts=len(verts))
    stump, stump_tpose = _read_stump(folder / "stump.json")
    return FittedPerson(
        folder=folder,
        ann_id=_field(data, "ann_id", int, params_path),
        image_id=_field(data, "image_id", int, params_path),
        body_name=_field(data, "body_model", str, params_path),
        camera=_camera(data, params_path),
        params=_params(data, "params", params_path),
        intact_params=_params(data, "intact_params", params_path),
        root_model=_optional_array(data, "root_model", (3,), params_path),
        limbs=_limbs(data, params_path),
        pred_keypoints_px=_optional_array(data, "pred_keypoints_px", (NUM_KEYPOINTS, 3), params_path),
        stump=stump,
        stump_tpose=stump_tpose,
        metrics=metrics,
        verts_cam=verts,
        faces=faces,
        residual_mask=residual_mask,
        verts_tpose=verts_tpose,
        seconds=_field(metrics, "seconds", float, metrics_path),
        intact_seconds=_intact_seconds(data, params_path),
        body_gender=_optional_str(data, "body_gender", params_path),
    )


def coco_keypoint_result(folder: str | Path, *, category_id: int = 1) -> dict:
    """One person's entry of a COCO keypoint results file, from its folder's ``params.json``
    (``image_id``, ``ann_id``, ``pred_keypoints_px``) and ``metrics.json`` (``quality.ok``):
    ``{"image_id", "category_id", "keypoints": [x, y, v] * 25, "score", "ann_id"}``. v = 1 for a
    predicted keypoint, 0 (at 0, 0) for the endpoints of intact limbs; score 1.0, or 0.0 for a fit
    flagged as not converged. Reads only the two JSON files (no mesh)."""
    folder = Path(folder)
    params_path, metrics_path = folder / "params.json", folder / "metrics.json"
    data, metrics = _read_object(params_path), _read_object(metrics_path)
    if data.get("pred_keypoints_px") is None:
        raise ResultsError(
            "missing (a folder written before the keypoints were recorded: refit it with --overwrite)",
            path=params_path,
            field="pred_keypoints_px",
        )
    keypoints = _vector(data["pred_keypoints_px"], (NUM_KEYPOINTS, 3), params_path, "pred_keypoints_px")
    if not np.isfinite(keypoints).all():
        raise ResultsError("non-finite keypoints", path=params_path, field="pred_keypoints_px")
    quality = metrics.get("quality")
    ok = bool(quality.get("ok", True)) if isinstance(quality, dict) else True
    return {
        "image_id": _field(data, "image_id", int, params_path),
        "category_id": int(category_id),
        "keypoints": [value for x, y, v in keypoints for value in (float(x), float(y), int(np.rint(v)))],
        "score": 1.0 if ok else 0.0,
        "ann_id": _field(data, "ann_id", int, params_path),
    }


def _read_object(path: Path) -> dict:
    try:
        return read_json_object(path)
    except ResultsError:
        raise
    except DataError as err:
        raise ResultsError(err.reason, path=path) from None


_MALFORMED = (KeyError, TypeError, ValueError, AttributeError, IndexError)


def _field(data: dict, key: str, kind: type, path: Path) -> Any:
    """``kind(data[key])``; ResultsError naming ``path`` and ``key`` when absent or not a ``kind``."""
    if key not in data:
        raise ResultsError("missing", path=path, field=key)
    value = data[key]
    if value is None or isinstance(value, (dict, list)) or (kind is not str and isinstance(value, (str, bool))):
        raise ResultsError(f"expected {kind.__name__}, got {value!r}", path=path, field=key)
    try:
        return kind(value)
    except _MALFORMED as err:
        raise ResultsError(f"expected {kind.__name__}, got {value!r} ({err})", path=path, field=key) from None


def _optional_str(data: dict, key: str, path: Path) -> str | None:
    """``data[key]``: a string, or None when absent or null; ResultsError naming ``path`` and ``key`` otherwise."""
    value = data.get(key)
    if value is not None and not isinstance(value, str):
        raise ResultsError(f"expected a string or null, got {value!r}", path=path, field=key)
    return value


_PARAM_NAMES = ("global_orient", "body_pose", "shape", "transl")  # BodyParams' fields, in order
_PARAM_SHAPES = {"global_orient": "[3]", "body_pose": "[P, 3]", "shape": "[S]", "transl": "[3]"}


def _params(data: dict, key: str, path: Path) -> BodyParams:
    values = data.get(key)
    if not isinstance(values, dict):
        raise ResultsError(f"expected an object of body parameters, got {type(values).__name__}", path=path, field=key)
    try:
        params = BodyParams.from_dict({k: [values[k]] for k in _PARAM_NAMES}, dtype=torch.float64)
    except _MALFORMED as err:
        raise ResultsError(f"malformed ({type(err).__name__}: {err})", path=path, field=key) from None
    for name, tensor in zip(_PARAM_NAMES, params.as_tuple()):
        ndim = 3 if name == "body_pose" else 2
        ok = tensor.ndim == ndim and tensor.shape[-1] > 0 and (name == "shape" or tensor.shape[-1] == 3)
        if not ok or not bool(torch.isfinite(tensor).all()):
            raise ResultsError(
                f"expected finite numbers of shape {_PARAM_SHAPES[name]}, got {list(tensor.shape[1:])}",
                path=path,
                field=f"{key}.{name}",
            )
    return params


def _camera(data: dict, path: Path) -> PinholeCamera:
    values = data.get("camera")
    try:
        return PinholeCamera(**values)
    except _MALFORMED as err:
        raise ResultsError(f"malformed ({type(err).__name__}: {err})", path=path, field="camera") from None


def _vector(value: Any, shape: tuple[int, ...], path: Path, field: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=np.float64)
    except _MALFORMED as err:
        raise ResultsError(f"expected numbers of shape {list(shape)} ({err})", path=path, field=field) from None
    if array.shape != shape:
        raise ResultsError(f"expected shape {list(shape)}, got {list(array.shape)}", path=path, field=field)
    return array


def _optional_array(data: dict, key: str, shape: tuple[int, ...], path: Path) -> np.ndarray | None:
    """``data[key]`` as a float64 array of ``shape``; None when the key is absent (older folders)."""
    return None if data.get(key) is None else _vector(data[key], shape, path, key)


def _limbs(data: dict, path: Path) -> tuple[FittedLimb, ...]:
    records = data.get("residual_limbs")
    if not isinstance(records, list):
        raise ResultsError(f"expected a list, got {type(records).__name__}", path=path, field="residual_limbs")
    limbs = []
    for i, r in enumerate(records):
        where = f"residual_limbs[{i}]"
        try:
            limb, status = LIMB_BY_NAME[r["limb"]], LimbStatus(r["type"])
            reproj = r.get("endpoint_reprojection_px")
            limbs.append(
                FittedLimb(
                    limb=limb,
                    status=status,
                    lam=_nan_float(r["lambda"]),
                    lambda_intact=_nan_float(r["lambda_intact"]),
                    anchor_cam=_vector(r["anchor_cam"], (3,), path, f"{where}.anchor_cam"),
                    target_cam=_vector(r["target_cam"], (3,), path, f"{where}.target_cam"),
                    endpoint_cam=_vector(r["endpoint_cam"], (3,), path, f"{where}.endpoint_cam"),
                    endpoint_reprojection_px=None if reproj is None else float(reproj),
                    rafo_accepted=bool(r["rafo"]["accepted"]),
                )
            )
        except ResultsError:
            raise
        except _MALFORMED as err:
            raise ResultsError(f"malformed ({type(err).__name__}: {err})", path=path, field=where) from None
    return tuple(limbs)


def _intact_seconds(data: dict, path: Path) -> float:
    try:
        return float(data["intact_fit"]["seconds"]["total"])
    except _MALFORMED as err:
        raise ResultsError(
            f"missing or malformed ({type(err).__name__}: {err})", path=path, field="intact_fit.seconds.total"
        ) from None


def _nan_float(value: Any) -> float:
    """A JSON number, or NaN where the writer stored a non-finite value as null."""
    if isinstance(value, (bool, str)):
        raise TypeError(f"expected a number, got {value!r}")
    return math.nan if value is None else float(value)


def _read_stump(path: Path) -> tuple[tuple[StumpGeometry, ...], tuple[StumpGeometry, ...]]:
    data = _read_object(path)
    out = []
    for key in ("posed", "tpose"):
        records = data.get(key)
        if not isinstance(records, list):
            raise ResultsError(f"expected a list, got {type(records).__name__}", path=path, field=key)
        try:
            out.append(tuple(_stump_geometry(r) for r in records))
        except _MALFORMED as err:
            raise ResultsError(f"malformed ({type(err).__name__}: {err})", path=path, field=key) from None
    return out[0], out[1]


def _stump_geometry(record: dict) -> StumpGeometry:
    """A :class:`StumpGeometry` from its ``to_dict`` (JSON nulls, the writer's non-finite values, as NaN)."""
    values = {}
    for f in dataclasses.fields(StumpGeometry):
        value = record[f.name]
        if f.name in ("limb_name", "status"):
            values[f.name] = str(value)
        elif f.name == "section_closed":
            values[f.name] = tuple(bool(v) for v in value)
        elif isinstance(value, list):
            values[f.name] = tuple(_nan_float(v) for v in value)
        else:
            values[f.name] = _nan_float(value)
    return StumpGeometry(**values)


def _read_mesh(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import trimesh

    if not path.is_file():
        raise ResultsError("file not found", path=path)
    try:
        mesh = trimesh.load(path, process=False, force="mesh")
    except Exception as err:  # noqa: BLE001 - trimesh raises many kinds on a corrupt file
        raise ResultsError(f"cannot read the mesh ({type(err).__name__}: {err})", path=path) from None
    verts = np.asarray(getattr(mesh, "vertices", np.zeros((0, 3))), dtype=np.float64)
    faces = np.asarray(getattr(mesh, "faces", np.zeros((0, 3))), dtype=np.int64)
    if verts.ndim != 2 or verts.shape[1] != 3 or not len(verts) or faces.ndim != 2 or faces.shape[1] != 3:
        raise ResultsError(
            f"expected a triangle mesh, got vertices {list(verts.shape)}, faces {list(faces.shape)}", path=path
        )
    return verts, faces


def _read_residual_mask(path: Path, *, num_verts: int) -> np.ndarray:
    try:
        mask = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise ResultsError("file not found", path=path) from None
    except (OSError, ValueError, EOFError) as err:
        raise ResultsError(f"cannot read ({err})", path=path) from None
    if not isinstance(mask, np.ndarray) or mask.shape != (num_verts,) or mask.dtype != bool:
        raise ResultsError(
            f"expected ({num_verts},) bool for mesh.ply's vertices, got "
            f"{getattr(mask, 'shape', None)} {getattr(mask, 'dtype', None)}",
            path=path,
        )
    return mask
