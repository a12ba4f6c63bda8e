"""Initial body fits (SMPL-X-style parameters) from ``.npz``, ``.json`` or SMPLify-X ``.pkl``.

Parameters follow SMPL-X conventions: axis-angle rotations in radians, ``transl`` in metres in
the camera frame. A leading batch dimension of 1 (as SMPLify-X writes, e.g. ``betas`` (1, 10)) is
dropped.

Frames: the camera frame is OpenCV's (x right, y down, z forward; :mod:`resihmr_dr.camera`), and a
body reaches it as ``R(global_orient) @ (v - J0) + J0 + transl`` with ``J0`` the model's pelvis
(:mod:`resihmr_dr.body.base`), which is SMPL-X's own use of ``global_orient`` and ``transl``.

SMPLify-X pickles (``smplifyx/fit_single_frame.py`` of the official smplify-x repository) are read
as they are: its body model has no ``transl`` (``create_transl=False``); its ``PerspectiveCamera``
maps the model's output ``X`` to ``camera_rotation @ X + camera_translation`` and projects with a
plain pinhole (``u = f x / z + cx``, ``v = f y / z + cy``), i.e. the same OpenCV frame with no axis
flip (the 180-degree flip about x in SMPLify-X applies only to its exported ``.obj`` meshes and
its pyrender views, not to the saved parameters). So:

- ``camera_translation`` (1, 3) becomes ``transl`` when the file has no ``transl`` (a file with
  both, both non-zero, is refused as ambiguous);
- ``camera_rotation`` (1, 3, 3) must be the identity (SMPLify-X creates it so and never optimises
  it); any other rotation is refused: folding it into ``global_orient``/``transl`` needs the
  pelvis ``J0`` of the body model, which this loader does not have (see docs/other_methods.md);
- ``body_pose`` (1, 63) is the 21 SMPL-X body joints; a (1, 32) ``body_pose`` is a VPoser latent
  (``use_vposer: True``) and is refused with how to decode it;
- the other keys (``left_hand_pose``, ``right_hand_pose``, ``jaw_pose``, ``leye_pose``,
  ``reye_pose``, ``expression``) are kept in :attr:`InitialFit.extras` and not used.

Pickles are read with a restricted unpickler that only rebuilds numpy arrays and builtin
containers; pickles holding chumpy objects are refused with a hint to re-save them as ``.npz``.

:func:`from_4dhumans` converts a 4D-Humans (HMR 2.0) SMPL prediction to an :class:`InitialFit`,
and :func:`save_initial_fit` writes one as ``.npz``; see docs/other_methods.md.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.jsonio import read_json

__all__ = [
    "REQUIRED_KEYS",
    "SUPPORTED_SUFFIXES",
    "VPOSER_LATENT_SIZE",
    "InitialFit",
    "from_4dhumans",
    "load_initial_fit",
    "save_initial_fit",
]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".npz", ".json", ".pkl")
# ``transl`` may instead be given as SMPLify-X's ``camera_translation`` (see the module docstring).
REQUIRED_KEYS: tuple[str, ...] = ("betas", "global_orient", "body_pose", "transl")
VPOSER_LATENT_SIZE = 32  # VPoser v1/v2 latent size: what SMPLify-X saves as body_pose with use_vposer
_CAMERA_TRANSLATION = "camera_translation"
_CAMERA_ROTATION = "camera_rotation"
_IDENTITY_ATOL = 1e-5  # float32 round-off of an identity camera rotation
_ZERO_ATOL = 1e-9
_ROTMAT_ATOL = 1e-3  # orthonormality tolerance for rotation matrices (float32 network outputs)
_DOCS = "docs/other_methods.md"
_VPOSER_HINT = (
    f"{VPOSER_LATENT_SIZE} values: a VPoser latent code, not a pose (SMPLify-X with use_vposer: True saves "
    "VPoser's latent as body_pose). Decode it with VPoser's decoder to the 21 body joints' axis-angle and save "
    "that as body_pose (1, 63): with VPoser v1.0 (SMPLify-X's), body_pose = vposer.decode(torch.as_tensor("
    "fit['body_pose']), output_type='aa').reshape(1, 63); with VPoser v2, vposer.decode(latent)['pose_body']"
    f".reshape(1, 63); see {_DOCS}"
)


@dataclass(frozen=True, eq=False)
class InitialFit:
    """An initial body fit; all arrays float64.

    Attributes:
        betas: (S,) shape coefficients.
        global_orient: (3,) root rotation, axis-angle (rad).
        body_pose: (P, 3) per-joint axis-angle (rad), e.g. P = 21 for SMPL-X.
        transl: (3,) translation in the camera frame (m).
        extras: other numeric entries of the file (batch dim of 1 dropped), e.g. ``expression``,
            ``jaw_pose``, ``camera_rotation``. Non-numeric entries are not kept.
        path: the file it was read from.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    extras: Mapping[str, np.ndarray] = field(default_factory=dict)
    path: Path | None = None


# --------------------------------------------------------------------------- readers
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
        ("collections", "OrderedDict"),
    }
    | {
        ("builtins", name)
        for name in (
            "dict",
            "list",
            "tuple",
            "set",
            "frozenset",
            "int",
            "float",
            "complex",
            "bool",
            "str",
            "bytes",
            "bytearray",
            "slice",
        )
    }
    | {("__builtin__", name) for name in ("dict", "list", "tuple", "set", "int", "float", "bool")}
)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds numpy arrays and builtin containers only."""

    def __init__(self, file: io.BufferedIOBase, *, path: Path) -> None:
        super().__init__(file, encoding="latin1")  # latin1: Python 2 numpy pickles
        self._path = path

    def find_class(self, module: str, name: str) -> Any:
        if module.split(".")[0] == "chumpy":
            raise DataError(
                f"the pickle holds chumpy objects ({module}.{name}); chumpy is not supported. "
                "Re-save the fit as .npz with plain numpy arrays (e.g. "
                "np.savez(out, **{k: np.asarray(v) for k, v in fit.items()}) where chumpy is "
                "installed)",
                path=self._path,
            )
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise DataError(
            f"the pickle references {module}.{name}; only numpy arrays and builtin containers "
            "are allowed (re-save the fit as .npz)",
            path=self._path,
        )


def _read_pickle(path: Path) -> Any:
    with path.open("rb") as f:
        try:
            return _RestrictedUnpickler(f, path=path).load()
        except DataError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of an untrusted pickle is bad data
            raise DataError(f"cannot unpickle: {type(err).__name__}: {err}", path=path) from None


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise DataError("expected an .npz archive of named arrays", path=path)
            return {key: data[key] for key in data.files}
    except DataError:
        raise
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, KeyError) as err:
        raise DataError(f"cannot read .npz: {type(err).__name__}: {err}", path=path) from None


def _drop_batch(arr: np.ndarray) -> np.ndarray:
    """Drop one leading batch dimension of size 1 from an array with ndim >= 2."""
    return arr[0] if arr.ndim >= 2 and arr.shape[0] == 1 else arr


def _numeric(value: Any) -> np.ndarray | None:
    """``value`` as a float64 array if it holds only (non-bool) numbers, else ``None``."""
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError):  # ragged nesting
        return None
    if arr.dtype.kind not in "iuf":  # strings, bools, objects (None, huge ints, dicts)
        return None
    return arr.astype(np.float64)


def _as_float(value: Any, *, key: str, path: Path) -> np.ndarray:
    arr = _numeric(value)
    if arr is None:
        raise DataError(f"expected an array of numbers, got {type(value).__name__}", path=path, field=key)
    if not np.all(np.isfinite(arr)):
        raise DataError("contains NaN or infinite values", path=path, field=key)
    return _drop_batch(arr)


def _vector3(value: Any, *, key: str, path: Path) -> np.ndarray:
    arr = _as_float(value, key=key, path=path)
    if arr.shape not in ((3,), (1, 3)):
        raise DataError(f"expected shape (3,) (or (1, 3)), got {arr.shape}", path=path, field=key)
    return arr.reshape(3)


def _body_pose(value: Any, *, path: Path) -> np.ndarray:
    """``body_pose`` as (P, 3) axis-angle; a VPoser latent or rotation matrices get a hint."""
    pose = _as_float(value, key="body_pose", path=path)
    if pose.ndim == 1 and pose.size % 3 == 0 and pose.size > 0:
        return pose.reshape(-1, 3)
    if pose.ndim == 2 and pose.shape[1] == 3 and pose.shape[0] > 0:
        return pose
    if pose.size == VPOSER_LATENT_SIZE and pose.ndim == 1:
        raise DataError(f"has {_VPOSER_HINT}", path=path, field="body_pose")
    hint = ""
    if pose.ndim == 3 and pose.shape[1:] == (3, 3):
        hint = f" (rotation matrices? convert them to axis-angle first, e.g. with from_4dhumans; see {_DOCS})"
    raise DataError(f"expected shape (P*3,) or (P, 3), got {pose.shape}{hint}", path=path, field="body_pose")


def _global_orient(value: Any, *, path: Path) -> np.ndarray:
    """``global_orient`` as (3,) axis-angle; a rotation matrix gets a hint."""
    arr = _as_float(value, key="global_orient", path=path)
    if arr.shape == (3, 3):
        raise DataError(
            f"expected shape (3,) (or (1, 3)) axis-angle, got a (3, 3) rotation matrix; convert it to "
            f"axis-angle first (see {_DOCS})",
            path=path,
            field="global_orient",
        )
    return _vector3(arr, key="global_orient", path=path)


def _check_camera_rotation(data: Mapping[str, Any], *, path: Path) -> None:
    """Refuse a SMPLify-X ``camera_rotation`` that is not the identity (or is malformed)."""
    if _CAMERA_ROTATION not in data:
        return
    rot = _as_float(data[_CAMERA_ROTATION], key=_CAMERA_ROTATION, path=path)
    if rot.shape != (3, 3):
        raise DataError(f"expected shape (3, 3) (or (1, 3, 3)), got {rot.shape}", path=path, field=_CAMERA_ROTATION)
    deviation = float(np.max(np.abs(rot - np.eye(3))))
    if deviation > _IDENTITY_ATOL:
        raise DataError(
            f"is not the identity (largest deviation {deviation:.3g}); a rotated SMPLify-X camera is not "
            "supported: fold it into the body (global_orient' = axis-angle of R_cam @ R(global_orient), "
            "transl' = R_cam @ J0 + camera_translation - J0, with J0 the body model's pelvis for these betas), "
            f"save those as global_orient and transl and drop camera_rotation; see {_DOCS}",
            path=path,
            field=_CAMERA_ROTATION,
        )


def _translation(data: Mapping[str, Any], *, path: Path) -> np.ndarray:
    """The camera-frame translation: ``transl``, else SMPLify-X's ``camera_translation``."""
    has_transl, has_camera = "transl" in data, _CAMERA_TRANSLATION in data
    if not (has_transl or has_camera):
        raise DataError(
            "missing required key 'transl' (the body's translation in the camera frame, metres; "
            f"SMPLify-X pickles give it as {_CAMERA_TRANSLATION!r})",
            path=path,
            field="transl",
        )
    transl = _vector3(data["transl"], key="transl", path=path) if has_transl else np.zeros(3)
    camera = _vector3(data[_CAMERA_TRANSLATION], key=_CAMERA_TRANSLATION, path=path) if has_camera else np.zeros(3)
    if not (np.allclose(transl, 0.0, atol=_ZERO_ATOL) or np.allclose(camera, 0.0, atol=_ZERO_ATOL)):
        raise DataError(
            f"both 'transl' and {_CAMERA_TRANSLATION!r} are non-zero, so it is ambiguous whether transl already "
            "includes the camera's translation; keep one: save the body's camera-frame translation "
            f"(SMPLify-X: transl + {_CAMERA_TRANSLATION}) as 'transl' and drop {_CAMERA_TRANSLATION!r}",
            path=path,
            field=_CAMERA_TRANSLATION,
        )
    return transl + camera


def _fit_from_mapping(data: Any, *, path: Path) -> InitialFit:
    if not isinstance(data, Mapping):
        raise DataError(
            f"expected a mapping of parameter names to arrays, got {type(data).__name__}",
            path=path,
        )
    for key in ("betas", "global_orient", "body_pose"):
        if key not in data:
            raise DataError(f"missing required key {key!r}", path=path, field=key)

    betas = _as_float(data["betas"], key="betas", path=path)
    if betas.ndim != 1 or betas.size == 0:
        raise DataError(f"expected shape (S,) with S >= 1, got {betas.shape}", path=path, field="betas")
    body_pose = _body_pose(data["body_pose"], path=path)
    global_orient = _global_orient(data["global_orient"], path=path)
    _check_camera_rotation(data, path=path)
    transl = _translation(data, path=path)

    extras: dict[str, np.ndarray] = {}
    for key, value in data.items():
        if key in REQUIRED_KEYS or not isinstance(key, str):
            continue
        arr = _numeric(value)
        if arr is not None:  # non-numeric metadata is not kept
            extras[key] = _drop_batch(arr)

    return InitialFit(
        betas=betas,
        global_orient=global_orient,
        body_pose=body_pose,
        transl=transl,
        extras=extras,
        path=path,
    )


def load_initial_fit(path: str | os.PathLike[str]) -> InitialFit:
    """Read an initial body fit from ``.npz``, ``.json`` (an object of name -> nested lists) or
    SMPLify-X ``.pkl``.

    Keys: ``betas`` (S,), ``global_orient`` (3,), ``body_pose`` (P*3,) or (P, 3) and ``transl`` (3,),
    each optionally with a leading batch dimension of 1; a SMPLify-X pickle's ``camera_translation``
    stands in for a missing ``transl`` (see the module docstring for the frames).

    Raises:
        DataError: naming the file (and the key) on a missing file, an unsupported suffix,
            unreadable content, a missing required key, non-finite values, a wrong shape, a VPoser
            latent as ``body_pose``, a ``camera_rotation`` that is not the identity, or both
            ``transl`` and ``camera_translation`` non-zero.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise DataError(
            f"unsupported initial-fit format {suffix or '(no suffix)'!r}; "
            f"expected one of {', '.join(SUPPORTED_SUFFIXES)}",
            path=path,
        )
    if not path.is_file():
        raise DataError("initial-fit file not found", path=path)
    try:
        if suffix == ".npz":
            data = _read_npz(path)
        elif suffix == ".json":
            data = read_json(path)
        else:
            data = _read_pickle(path)
    except OSError as err:
        raise DataError(f"cannot read file: {err}", path=path) from None
    return _fit_from_mapping(data, path=path)


# --------------------------------------------------------------------------- other methods' outputs
SMPL_TO_SMPLX_BODY_JOINTS = 21  # SMPL joints 1..21 are SMPL-X's body joints; SMPL's 22, 23 (hands) are dropped


def _to_numpy(value: Any, *, key: str) -> np.ndarray:
    """``value`` (numpy array, nested lists or a torch tensor) as a finite float64 array."""
    if hasattr(value, "detach"):  # a torch tensor, without importing torch
        value = value.detach().cpu().numpy()
    arr = _numeric(value)
    if arr is None:
        raise DataError(f"expected an array of numbers, got {type(value).__name__}", field=key)
    if not np.all(np.isfinite(arr)):
        raise DataError("contains NaN or infinite values", field=key)
    return arr


def _pick(arr: np.ndarray, shape: tuple[int, ...], *, index: int, key: str) -> np.ndarray:
    """Person ``index`` of a batched (B, *shape) array, or the array itself if unbatched ``shape``."""
    if arr.shape == shape:
        return arr
    if arr.ndim != len(shape) + 1 or arr.shape[1:] != shape:
        want = ", ".join(str(n) for n in shape)
        raise DataError(f"expected shape (B, {want}) or ({want}), got {arr.shape}", field=key)
    if not -arr.shape[0] <= index < arr.shape[0]:
        raise DataError(f"index {index} is out of range for a batch of {arr.shape[0]}", field=key)
    return arr[index]


def _rotmat_to_axis_angle(mats: np.ndarray, *, key: str) -> np.ndarray:
    """(N, 3, 3) rotation matrices -> (N, 3) axis-angle (rad); refuses non-rotations."""
    from scipy.spatial.transform import Rotation  # deferred: keeps the loader's import light

    gram_error = np.abs(np.einsum("nji,njk->nik", mats, mats) - np.eye(3)).max(initial=0.0)
    dets = np.linalg.det(mats)
    if gram_error > _ROTMAT_ATOL or np.any(dets <= 0):
        raise DataError(
            f"expected rotation matrices (orthonormal, determinant +1), got R^T R off the identity by "
            f"{gram_error:.3g} and determinants in [{dets.min():.3g}, {dets.max():.3g}]",
            field=key,
        )
    return Rotation.from_matrix(mats).as_rotvec()


def from_4dhumans(
    pred_smpl_params: Mapping[str, Any],
    cam_t: Any,
    *,
    index: int = 0,
    keep_betas: bool = True,
    transl_offset: Any = None,
) -> InitialFit:
    """An SMPL-X :class:`InitialFit` from a 4D-Humans (HMR 2.0) SMPL prediction.

    Args:
        pred_smpl_params: ``out['pred_smpl_params']`` of HMR 2.0: ``global_orient`` (B, 1, 3, 3) and
            ``body_pose`` (B, 23, 3, 3) rotation matrices, ``betas`` (B, 10); unbatched (1, 3, 3),
            (23, 3, 3), (10,) also work. numpy arrays, nested lists or torch tensors.
        cam_t: the body's translation in the image's camera, (B, 3) or (3,), metres. Use 4D-Humans'
            full-image ``pred_cam_t_full`` (``cam_crop_to_full`` in its demo), whose camera has focal
            length ``5000 / 256 * max(width, height)`` px and the principal point at the image centre:
            put those intrinsics in the annotation's image ``camera``. ``out['pred_cam_t']`` is for the
            256-px crop and does not place the body in the full image.
        index: the person in the batch.
        keep_betas: copy SMPL's betas into SMPL-X's (an approximation: the shape spaces differ), or,
            if False, start from SMPL-X's mean shape (zeros).
        transl_offset: (3,) metres added to ``cam_t``, e.g. ``J0_smpl - J0_smplx`` (the two models'
            pelvis positions in the model frame for these betas) to keep the pelvis in place; the
            default 0 leaves the SMPL-X pelvis a few cm off SMPL's.

    Returns:
        body_pose (21, 3): SMPL joints 1..21 (hips to wrists), which are SMPL-X's 21 body joints in the
        same order; SMPL's two hand joints (22, 23) are dropped. Same camera frame (OpenCV: 4D-Humans
        projects ``X + cam_t`` with a plain pinhole), so ``global_orient`` carries over unchanged.

    Raises:
        DataError: naming the field on a missing key, a wrong shape, non-finite values or a matrix that
            is not a rotation.
    """
    for key in ("global_orient", "body_pose", "betas"):
        if key not in pred_smpl_params:
            raise DataError(f"missing key {key!r} in pred_smpl_params", field=key)
    orient = _pick(
        _to_numpy(pred_smpl_params["global_orient"], key="global_orient"), (1, 3, 3), index=index, key="global_orient"
    )
    pose = _pick(_to_numpy(pred_smpl_params["body_pose"], key="body_pose"), (23, 3, 3), index=index, key="body_pose")
    betas = _to_numpy(pred_smpl_params["betas"], key="betas")
    if betas.ndim == 2:
        betas = _pick(betas, betas.shape[1:], index=index, key="betas")
    if betas.ndim != 1 or betas.size == 0:
        raise DataError(f"expected shape (B, S) or (S,), got {betas.shape}", field="betas")
    transl = _pick(_to_numpy(cam_t, key="cam_t"), (3,), index=index, key="cam_t")
    if transl_offset is not None:
        transl = transl + _pick(_to_numpy(transl_offset, key="transl_offset"), (3,), index=0, key="transl_offset")
    return InitialFit(
        betas=betas.copy() if keep_betas else np.zeros_like(betas),
        global_orient=_rotmat_to_axis_angle(orient, key="global_orient").reshape(3),
        body_pose=_rotmat_to_axis_angle(pose[:SMPL_TO_SMPLX_BODY_JOINTS], key="body_pose"),
        transl=transl.astype(np.float64),
    )


def save_initial_fit(fit: InitialFit, path: str | os.PathLike[str]) -> Path:
    """Write ``fit`` as an ``.npz`` that :func:`load_initial_fit` reads back (extras included, less
    ``camera_translation``, which ``transl`` already holds).

    Returns the path written. Raises DataError (naming the file) on another suffix.
    """
    path = Path(path)
    if path.suffix.lower() != ".npz":
        raise DataError(f"initial fits are written as .npz, got {path.suffix or '(no suffix)'!r}", path=path)
    # camera_translation is already in transl (kept in extras only as a record of the source file)
    arrays = {key: value for key, value in fit.extras.items() if key != _CAMERA_TRANSLATION}
    arrays.update(betas=fit.betas, global_orient=fit.global_orient, body_pose=fit.body_pose, transl=fit.transl)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as f:  # a file object: np.savez would otherwise append .npz to odd names
        np.savez(f, **{key: np.asarray(value, dtype=np.float64) for key, value in arrays.items()})
    return path
