"""A residual segment's radius profile: a smooth change of the limb's girth along its axis.

The cap's offsets shape the stump's end; the part of the residual segment proximal of the cut
(its girth, an atrophied or tapering shank) is the body model's. A radius profile scales the
distance of every residual-segment vertex from the segment's axis J_a -> J_t by ``1 + f(u)``:
``u`` is the vertex's axial position from J_a (0) to the cut (1), clamped to [0, 1] (the cut
ring and everything distal of it get ``f(1)``), and ``f`` is piecewise linear in ``u`` with
knots at ``k / K`` (k = 0..K), 0 at the anchor joint (so the limb blends into the joint) and the
``K`` coefficients at the others. The vertices move radially only, so a cut replayed on the
moved body (:meth:`~resihmr_dr.stump.cap.ResidualBody.replay`) rebuilds its ring and cap on
the new girth and stays watertight. The same profile applied to the T-pose body with its own
joints gives the same limb shape there (the frame is the limb's own).

One view sees the limb's width, not its depth; the profile is isotropic about the axis.
Frames: any (the body's vertices and joints in the same frame); metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from resihmr_dr.body.base import limb_segment_joints
from resihmr_dr.data.ldpose import Limb, LimbStatus

__all__ = ["RadialProfile", "apply_radial_profiles", "radial_displacement", "radial_knot_weights"]


@dataclass(frozen=True, eq=False)
class RadialProfile:
    """One residual segment's radius profile.

    vertex_ids: (N,) ids of the residual segment's vertices in the uncut body; limb, status:
    the residual limb (its segment's joints J_a, J_t carry the axis); cut_fraction: the cut's level
    along J_a -> J_t when the profile was set up (the knots' scale: ``u = s / (cut_fraction L)``);
    coefficients: (K,) the relative radius change at the knots ``k / K``, k = 1..K.
    """

    vertex_ids: np.ndarray
    limb: Limb
    status: LimbStatus
    cut_fraction: float
    coefficients: torch.Tensor

    @property
    def joints(self) -> tuple[str, str]:
        """(anchor, target) joint names of the profile's axis."""
        return self.limb.segment_joint_names(self.status)

    def to_dict(self) -> dict:
        """JSON-friendly summary (the vertex ids left out: they are the segment's)."""
        k = len(self.coefficients)
        return {
            "joints": list(self.joints),
            "cut_fraction": float(self.cut_fraction),
            "knots_u": [i / k for i in range(1, k + 1)],
            "radius_change": [float(c) for c in self.coefficients.detach().cpu()],
        }


def radial_knot_weights(u: torch.Tensor, num_knots: int) -> torch.Tensor:
    """(N, K) piecewise-linear ("hat") weights of the knots ``k / K``, k = 1..K, at positions
    ``u`` (N,), clamped to [0, 1]; the knot at 0 (weight 1 - sum) carries no coefficient."""
    if num_knots < 1:
        raise ValueError(f"num_knots must be >= 1, got {num_knots}")
    knots = torch.arange(1, num_knots + 1, dtype=u.dtype, device=u.device) / num_knots
    return (1.0 - (u.clamp(0.0, 1.0)[:, None] - knots[None, :]).abs() * num_knots).clamp_min(0.0)


def radial_displacement(
    points: torch.Tensor,
    *,
    anchor: torch.Tensor,
    target: torch.Tensor,
    cut_fraction: float,
    coefficients: torch.Tensor,
) -> torch.Tensor:
    """(N, 3) displacement of ``points`` (N, 3) by a radius profile along anchor -> target (3,)."""
    seg = target - anchor
    length = seg.norm().clamp_min(1e-9)
    axis = seg / length
    rel = points - anchor
    s = rel @ axis
    radial = rel - s[:, None] * axis
    u = s / (cut_fraction * length)
    f = radial_knot_weights(u, len(coefficients)) @ coefficients.to(points)
    return f[:, None] * radial


def apply_radial_profiles(
    verts: torch.Tensor,
    joints: torch.Tensor,
    profiles: list[RadialProfile] | tuple[RadialProfile, ...],
    *,
    coefficients: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """(V, 3) body vertices with each profile applied (differentiable w.r.t. ``verts``, ``joints``
    and the coefficients). joints: (len(JOINT_NAMES), 3) in the vertices' frame; coefficients:
    per profile, (K,) values replacing its stored ones (e.g. variables)."""
    out = verts
    for i, profile in enumerate(profiles):
        coeffs = profile.coefficients if coefficients is None else coefficients[i]
        if len(profile.vertex_ids) == 0 or len(coeffs) == 0:
            continue
        a, b = limb_segment_joints(joints, profile.limb, profile.status)
        ids = torch.as_tensor(profile.vertex_ids, device=verts.device)
        shift = radial_displacement(
            out[ids], anchor=a, target=b, cut_fraction=profile.cut_fraction, coefficients=coeffs
        )
        out = out.index_add(0, ids, shift)
    return out
