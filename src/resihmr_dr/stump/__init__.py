"""Residual-limb reconstruction (ResiHMR stage 3): cut at the endpoint, cap with a dome, measure.

- :mod:`.cut`: :func:`cut_limb` removes the limb distal to the endpoint (labels + plane).
- :mod:`.cap`: :func:`cap_cut` seals the hole with concentric rings; :func:`cap_vertices` is the
  differentiable ring-vertex function; :func:`cut_and_cap` handles several limbs in turn,
  :func:`cut_and_cap_to_tips` so that each cap ends at its residual endpoint.
- :mod:`.geometry`: :func:`stump_geometry` gives length, volume and the cross-section profile.
"""

from resihmr_dr.stump.cap import (
    CapConfig,
    CappedLimb,
    CutSpec,
    ResidualBody,
    cap_cut,
    cap_faces,
    cap_vertices,
    cut_and_cap,
    cut_and_cap_to_tips,
    cut_spec,
    dome_profile,
)
from resihmr_dr.stump.cut import (
    CutError,
    LimbCut,
    cut_limb,
    endpoint_from_lambda,
    limb_axis,
)
from resihmr_dr.stump.geometry import (
    StumpGeometry,
    residual_body_geometry,
    residual_length,
    stump_geometry,
)

__all__ = [
    "CapConfig",
    "CappedLimb",
    "CutError",
    "CutSpec",
    "LimbCut",
    "ResidualBody",
    "StumpGeometry",
    "cap_cut",
    "cap_faces",
    "cap_vertices",
    "cut_and_cap",
    "cut_and_cap_to_tips",
    "cut_limb",
    "cut_spec",
    "dome_profile",
    "endpoint_from_lambda",
    "limb_axis",
    "residual_body_geometry",
    "residual_length",
    "stump_geometry",
]
