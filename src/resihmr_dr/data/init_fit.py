"""Initial body fits (SMPL-X-style parameters) from ``.npz``, ``.json`` or SMPLify-X ``.pkl``.

Parameters follow SMPL-X conventions: axis-angle rotations in radians, ``transl`` in metres in
the camera frame (see :mod:`resihmr_dr.body.base`: SMPL-X's ``global_orient``/``transl`` apply
unchanged). A leading batch dimension of 1 (as SMPLify-X writes, e.g. ``betas`` (1, 10)) is
dropped.

Pickles are read with a restricted unpickler that only rebuilds numpy arrays and builtin
containers; pickles holding chumpy objects are refused with a hint to re-save them as ``.npz``.
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

__all__ = ["InitialFit", "load_initial_fit", "SUPPORTED_SUFFIXES", "REQUIRED_KEYS"]

SUPPORTED_SUFFIXES: tuple[str, ...] = (".npz", ".json", ".pkl")
REQUIRED_KEYS: tuple[str, ...] = ("betas", "global_orient", "body_pose", "transl")


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
            "dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "bool",
            "str", "bytes", "bytearray", "slice",
        )  # fmt: skip
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
        raise DataError(
            f"expected an array of numbers, got {type(value).__name__}", path=path, field=key
        )
    if not np.all(np.isfinite(arr)):
        raise DataError("contains NaN or infinite values", path=path, field=key)
    return _drop_batch(arr)


def _vector3(value: Any, *, key: str, path: Path) -> np.ndarray:
    arr = _as_float(value, key=key, path=path)
    if arr.shape not in ((3,), (1, 3)):
        raise DataError(f"expected shape (3,) (or (1, 3)), got {arr.shape}", path=path, field=key)
    return arr.reshape(3)


def _fit_from_mapping(data: Any, *, path: Path) -> InitialFit:
    if not isinstance(data, Mapping):
        raise DataError(
            f"expected a mapping of parameter names to arrays, got {type(data).__name__}",
            path=path,
        )
    for key in REQUIRED_KEYS:
        if key not in data:
            raise DataError(f"missing required key {key!r}", path=path, field=key)

    betas = _as_float(data["betas"], key="betas", path=path)
    if betas.ndim != 1 or betas.size == 0:
        raise DataError(
            f"expected shape (S,) with S >= 1, got {betas.shape}", path=path, field="betas"
        )

    body_pose = _as_float(data["body_pose"], key="body_pose", path=path)
    if body_pose.ndim == 1 and body_pose.size % 3 == 0 and body_pose.size > 0:
        body_pose = body_pose.reshape(-1, 3)
    elif not (body_pose.ndim == 2 and body_pose.shape[1] == 3 and body_pose.shape[0] > 0):
        hint = ""
        if body_pose.ndim == 1 and body_pose.size == 32:
            hint = " (a 32-d VPoser latent? decode it to axis-angle first)"
        raise DataError(
            f"expected shape (P*3,) or (P, 3), got {body_pose.shape}{hint}",
            path=path,
            field="body_pose",
        )

    extras: dict[str, np.ndarray] = {}
    for key, value in data.items():
        if key in REQUIRED_KEYS or not isinstance(key, str):
            continue
        arr = _numeric(value)
        if arr is not None:  # non-numeric metadata is not kept
            extras[key] = _drop_batch(arr)

    return InitialFit(
        betas=betas,
        global_orient=_vector3(data["global_orient"], key="global_orient", path=path),
        body_pose=body_pose,
        transl=_vector3(data["transl"], key="transl", path=path),
        extras=extras,
        path=path,
    )


def load_initial_fit(path: str | os.PathLike[str]) -> InitialFit:
    """Read an initial body fit from ``.npz``, ``.json`` (an object of name -> nested lists) or
    SMPLify-X ``.pkl``.

    Raises:
        DataError: naming the file (and the key) on a missing file, an unsupported suffix,
            unreadable content, a missing required key, non-finite values or a wrong shape.
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
