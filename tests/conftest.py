"""Shared fixtures. Anny's first construction on a machine builds a ~1 GB cache (1-3 min);
one model instance is shared by the whole session."""

from __future__ import annotations

import pytest
import torch


@pytest.fixture(scope="session")
def anny_body():
    from resihmr_dr.body.anny_model import AnnyBody

    torch.manual_seed(0)
    return AnnyBody()


@pytest.fixture(scope="session")
def tiny_smplx(tmp_path_factory):
    """The tiny SMPL-X-format model of ``tests/smplx_tiny.py``, written once per session (read-only:
    tests that need another gender or layout write their own copy)."""
    from smplx_tiny import write_tiny_smplx

    return write_tiny_smplx(tmp_path_factory.mktemp("smplx_models"))


@pytest.fixture(scope="session")
def tiny_smplx_body(tiny_smplx):
    """The tiny model through the SMPL-X adapter (float32), shared by the session."""
    from resihmr_dr.body.smplx_model import SmplxBody

    return SmplxBody(tiny_smplx.root, vertex_ids=tiny_smplx.vertex_ids)
