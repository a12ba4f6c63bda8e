"""Initial body fits from .npz / .json / SMPLify-X .pkl, and the restricted unpickler."""

from __future__ import annotations

import json
import pickle
import sys
import types

import numpy as np
import pytest

from resihmr_dr.data.errors import DataError
from resihmr_dr.data.init_fit import InitialFit, load_initial_fit

RNG = np.random.default_rng(0)
BETAS = RNG.normal(size=10)
ORIENT = RNG.normal(size=3)
POSE = RNG.normal(size=(21, 3))
TRANSL = np.array([0.1, -0.2, 4.5])


def smplifyx_result(dtype=np.float32) -> dict:
    """A SMPLify-X-like dict of (1, ...) arrays that carries its own ``transl`` (our format plus extras).

    The exact files SMPLify-X writes (no ``transl``; ``camera_translation``) are in test_init_fit_tools.py.
    """
    return {
        "betas": BETAS[None].astype(dtype),
        "global_orient": ORIENT[None].astype(dtype),
        "body_pose": POSE.reshape(1, 63).astype(dtype),
        "transl": TRANSL[None].astype(dtype),
        "expression": np.zeros((1, 10), dtype),
        "camera_rotation": np.eye(3, dtype=dtype)[None],
        "jaw_pose": np.zeros((1, 3), dtype),
    }


def check(fit: InitialFit, *, atol: float = 1e-6) -> None:
    assert fit.betas.shape == (10,) and fit.global_orient.shape == (3,)
    assert fit.body_pose.shape == (21, 3) and fit.transl.shape == (3,)
    for arr in (fit.betas, fit.global_orient, fit.body_pose, fit.transl):
        assert arr.dtype == np.float64
    np.testing.assert_allclose(fit.betas, BETAS, atol=atol)
    np.testing.assert_allclose(fit.global_orient, ORIENT, atol=atol)
    np.testing.assert_allclose(fit.body_pose, POSE, atol=atol)
    np.testing.assert_allclose(fit.transl, TRANSL, atol=atol)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_smplifyx_pickle(tmp_path, protocol):
    path = tmp_path / "000.pkl"
    with path.open("wb") as f:
        pickle.dump(smplifyx_result(), f, protocol=protocol)
    fit = load_initial_fit(path)
    check(fit)
    assert fit.path == path
    assert fit.extras["expression"].shape == (10,)
    assert fit.extras["camera_rotation"].shape == (3, 3)  # batch dim dropped
    assert set(fit.extras) == {"expression", "camera_rotation", "jaw_pose"}


def test_npz_flat_and_unbatched(tmp_path):
    path = tmp_path / "fit.npz"
    np.savez(path, betas=BETAS, global_orient=ORIENT, body_pose=POSE.reshape(-1), transl=TRANSL)
    check(load_initial_fit(path), atol=0)


def test_npz_batched_p3(tmp_path):
    path = tmp_path / "fit.npz"
    np.savez(path, betas=BETAS[None], global_orient=ORIENT[None], body_pose=POSE[None], transl=TRANSL[None])
    check(load_initial_fit(path), atol=0)


def test_json(tmp_path):
    path = tmp_path / "fit.json"
    doc = {
        "betas": [BETAS.tolist()],
        "global_orient": ORIENT.tolist(),
        "body_pose": POSE.tolist(),
        "transl": TRANSL.tolist(),
        "note": "from a demo",
        "scale": 1.5,
    }
    path.write_text(json.dumps(doc))
    fit = load_initial_fit(path)
    check(fit, atol=0)
    assert "note" not in fit.extras and fit.extras["scale"] == 1.5


def _chumpy_pickle() -> bytes:
    """A pickle referencing chumpy.ch.Ch, made without chumpy installed."""
    pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    mod.Ch = Ch
    pkg.ch = mod
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules.update({"chumpy": pkg, "chumpy.ch": mod})
    try:
        data = smplifyx_result()
        data["betas"] = Ch(np.zeros(10))
        return pickle.dumps(data, protocol=2)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def test_chumpy_pickle_is_refused_with_hint(tmp_path):
    path = tmp_path / "smpl_fit.pkl"
    path.write_bytes(_chumpy_pickle())
    with pytest.raises(DataError) as info:
        load_initial_fit(path)
    msg = str(info.value)
    assert "smpl_fit.pkl" in msg and "chumpy" in msg and ".npz" in msg


class _Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_pickle_with_other_globals_is_refused_without_running_them(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"betas": _Evil()}))
    with pytest.raises(DataError, match=r"builtins\.print"):
        load_initial_fit(path)
    assert "owned" not in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "field", "fragment"),
    [
        pytest.param({"global_orient": ORIENT, "body_pose": POSE, "transl": TRANSL}, "betas", "missing", id="no-betas"),
        pytest.param({"betas": BETAS, "global_orient": ORIENT, "body_pose": POSE}, "transl", "missing", id="no-transl"),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT[:2], "body_pose": POSE, "transl": TRANSL},
            "global_orient",
            "(3,)",
            id="orient-2",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": np.eye(3), "body_pose": POSE, "transl": TRANSL},
            "global_orient",
            "(3,)",
            id="orient-matrix",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT, "body_pose": np.zeros(62), "transl": TRANSL},
            "body_pose",
            "(P*3,)",
            id="pose-62",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT, "body_pose": np.zeros((1, 32)), "transl": TRANSL},
            "body_pose",
            "VPoser",
            id="vposer-latent",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT, "body_pose": np.zeros((21, 4)), "transl": TRANSL},
            "body_pose",
            "(P, 3)",
            id="pose-21x4",
        ),
        pytest.param(
            {"betas": np.zeros((2, 10)), "global_orient": ORIENT, "body_pose": POSE, "transl": TRANSL},
            "betas",
            "(S,)",
            id="betas-batch-2",
        ),
        pytest.param(
            {"betas": np.float64(1.0), "global_orient": ORIENT, "body_pose": POSE, "transl": TRANSL},
            "betas",
            "(S,)",
            id="betas-scalar",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT, "body_pose": POSE, "transl": np.array([0, np.nan, 1])},
            "transl",
            "NaN",
            id="transl-nan",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": ORIENT, "body_pose": POSE, "transl": "far"},
            "transl",
            "numbers",
            id="transl-str",
        ),
        pytest.param(
            {"betas": ["1", "2"], "global_orient": ORIENT, "body_pose": POSE, "transl": TRANSL},
            "betas",
            "numbers",
            id="betas-strings",
        ),
        pytest.param(
            {"betas": BETAS, "global_orient": [True, False, True], "body_pose": POSE, "transl": TRANSL},
            "global_orient",
            "numbers",
            id="orient-bools",
        ),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".pkl", ".json"])
def test_bad_content(tmp_path, content, field, fragment, suffix):
    path = tmp_path / f"fit{suffix}"
    if suffix == ".npz":
        np.savez(path, **{k: np.asarray(v) for k, v in content.items()})
    elif suffix == ".pkl":
        path.write_bytes(pickle.dumps(content))
    else:
        as_json = {
            k: (v.tolist() if isinstance(v, np.ndarray) else float(v) if isinstance(v, np.floating) else v)
            for k, v in content.items()
        }
        path.write_text(json.dumps(as_json))
    with pytest.raises(DataError) as info:
        load_initial_fit(path)
    err = info.value
    assert err.path == path and err.field == field
    assert f"fit{suffix}" in str(err) and f"field {field!r}" in str(err) and fragment in str(err)


@pytest.mark.parametrize(
    ("name", "data", "fragment"),
    [
        ("fit.npz", b"not a zip", "cannot read .npz"),
        ("fit.pkl", b"\x80\x04garbage", "cannot unpickle"),
        ("fit.pkl", pickle.dumps([1, 2, 3]), "mapping"),
        ("fit.json", b'{"betas": [1, 2', "line 1, column"),
        ("fit.json", b"[1, 2]", "mapping"),
        ("fit.npy", b"", "unsupported"),
        ("fit", b"", "unsupported"),
    ],
)
def test_unreadable_files(tmp_path, name, data, fragment):
    path = tmp_path / name
    path.write_bytes(data)
    with pytest.raises(DataError, match=fragment) as info:
        load_initial_fit(path)
    assert name in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found") as info:
        load_initial_fit(tmp_path / "gone.npz")
    assert info.value.path.name == "gone.npz"


def test_npz_with_object_array_is_refused(tmp_path):
    path = tmp_path / "fit.npz"
    np.savez(path, betas=np.array([{"a": 1}], dtype=object), global_orient=ORIENT, body_pose=POSE, transl=TRANSL)
    with pytest.raises(DataError, match="fit.npz"):
        load_initial_fit(path)
