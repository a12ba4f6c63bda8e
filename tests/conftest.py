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
