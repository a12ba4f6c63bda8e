"""Build a body model by name: "anny" (default, offline) or "smplx" (the user's model files)."""

from __future__ import annotations

from pathlib import Path

import torch

from resihmr_dr.body.base import BodyModel
from resihmr_dr.body.errors import BodyModelError

BODY_MODELS = ("anny", "smplx")


def build_body_model(
    name: str = "anny",
    *,
    smplx_dir: str | Path | None = None,
    device: str | torch.device = "cpu",
) -> BodyModel:
    """The body model ``name``. For SMPL-X, ``smplx_dir`` (else $RESIHMR_SMPLX_DIR) holds the files."""
    if name == "anny":
        from resihmr_dr.body.anny_model import AnnyBody

        return AnnyBody(device=device)
    if name == "smplx":
        from resihmr_dr.body.smplx_model import SmplxBody

        return SmplxBody(smplx_dir).to(device)
    raise BodyModelError(f"unknown body model {name!r}; choose one of {', '.join(BODY_MODELS)}")
