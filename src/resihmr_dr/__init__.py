"""resihmr_dr: 3D body meshes of people with limb loss from a single image.

Pipeline (ResiHMR, arXiv 2604.28025, plus a differentiable soft-silhouette refinement):
intact-body fit -> RAFO residual endpoints -> cut and cap -> silhouette refinement.

``read_person(folder)`` reads a person folder written by ``resihmr-dr fit`` / ``demo`` back
(``resihmr_dr.results``; imported on first use, so ``import resihmr_dr`` stays light).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from resihmr_dr.results import FittedPerson, read_person

__version__ = "0.2.0"
__all__ = ["FittedPerson", "read_person"]
_LAZY = {"FittedPerson": "resihmr_dr.results", "read_person": "resihmr_dr.results"}


def __getattr__(name: str) -> Any:
    """The public names of ``__all__``, imported on first access (they pull in torch)."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'resihmr_dr' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
