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
    """The body model ``name``. For SMPL-X, ``smplx_dir`` (else $RESIHMR_SMPLX_DIR) holds the files.

    Raises BodyModelError for an unknown name or a device this machine does not have.
    """
    device = check_device(device)
    if name == "anny":
        from resihmr_dr.body.anny_model import AnnyBody

        return AnnyBody(device=device)
    if name == "smplx":
        from resihmr_dr.body.smplx_model import SmplxBody

        return SmplxBody(smplx_dir).to(device)
    raise BodyModelError(f"unknown body model {name!r}; choose one of {', '.join(BODY_MODELS)}")


def check_device(device: str | torch.device) -> torch.device:
    """``device`` as a torch.device, or BodyModelError (one line) when it is malformed or absent."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise BodyModelError(f"invalid device {str(device)!r}: {err}") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise BodyModelError(
                f"device {str(device)!r} requested but no CUDA GPU is usable here (torch.cuda.is_available() is "
                "False: no NVIDIA driver or GPU, or a CPU-only torch); use --device cpu"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise BodyModelError(f"device {str(device)!r} requested but only {torch.cuda.device_count()} GPU(s) exist")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise BodyModelError(f"device {str(device)!r} requested but MPS is not available here; use --device cpu")
    return dev
