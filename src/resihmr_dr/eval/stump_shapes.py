"""Individual residual-limb (stump) shapes for the synthetic benchmark (pure numpy).

Independent of :mod:`resihmr_dr.stump.cap` on purpose, so that the benchmark's true stumps do
not favour the fitter's own convex dome. A stump closes the open cut loop of a limb with rings
swept along the limb axis: ring ``k`` of loop vertex ``i`` lies at

    p_ik = c + z(u_k) a + s(u_k) (1 + tissue_i(u_k)) d_i + shear_i(u_k) a + sag(u_k),

where ``c`` is the loop centroid, ``a`` the unit limb axis (proximal -> distal), ``d_i`` the loop
vertex's offset from ``c`` (in the cut plane), ``(z(u), s(u))`` the shape's meridian (axial
distance in metres, radius scale; ``s(0) = 1``, ``s(1) = 0``), ``tissue`` a smooth angular
soft-tissue modulation, ``shear`` an oblique end and ``sag`` a sideways drift of the soft end.
The last ring is fanned to one apex vertex, the stump tip, which lies on the swept centre line.

Shapes (radius-relative sizes, ``r0`` = mean loop radius):

- ``rounded``: a half ellipsoid, height 0.7-1.1 r0;
- ``tapered``: a long bullet, 1.4-2.2 r0, whose radius falls to ``taper`` (0.35-0.55) of the
  cut radius along its length before a small round end (a conical residual limb; the segment
  above the cut also atrophies);
- ``bulbous``: widens to ~1.15-1.3 times the cut radius before closing (soft-tissue excess);
- ``flattened``: a short superellipse (exponent 4-6) with a flat end, height 0.3-0.5 r0;
- ``oblique``: a rounded or flattened end whose end face is tilted 10-20 degrees.

Frames: any (the loop, centre and axis must share one), metres.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

__all__ = [
    "STUMP_SHAPES",
    "StumpShape",
    "StumpSurface",
    "atrophy_scale",
    "build_stump",
    "meridian",
    "sample_stump_shape",
]

STUMP_SHAPES: tuple[str, ...] = (
    "rounded",
    "tapered",
    "bulbous",
    "flattened",
    "oblique",
)


@dataclass(frozen=True)
class StumpShape:
    """Parameters of one stump (see the module docstring).

    name: one of ``STUMP_SHAPES``; height_ratio: cap length / r0; taper: radius fraction reached near the
    tapered end (tapered only); bulge: bulge amplitude (bulbous only); end_power:
    superellipse exponent of the end (2 = round, larger = flatter); oblique_deg: tilt of the end
    face, oblique_dir_rad: its direction in the cut plane; tissue_amp: (2,) amplitudes of the
    1st/2nd angular harmonics of the soft-tissue radius modulation, tissue_phase_rad: (2,) phases;
    sag_ratio: sideways drift of the apex / r0, sag_dir_rad: its direction; atrophy: fractional
    radius loss of the residual segment just above the cut, atrophy_len_ratio: over how many r0.
    """

    name: str
    height_ratio: float
    taper: float = 1.0
    bulge: float = 0.0
    end_power: float = 2.0
    oblique_deg: float = 0.0
    oblique_dir_rad: float = 0.0
    tissue_amp: tuple[float, float] = (0.0, 0.0)
    tissue_phase_rad: tuple[float, float] = (0.0, 0.0)
    sag_ratio: float = 0.0
    sag_dir_rad: float = 0.0
    atrophy: float = 0.0
    atrophy_len_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.name not in STUMP_SHAPES:
            raise ValueError(f"unknown stump shape {self.name!r}; expected one of {STUMP_SHAPES}")
        if not self.height_ratio > 0:
            raise ValueError(f"height_ratio must be positive, got {self.height_ratio}")
        if not 0 < self.taper <= 1:
            raise ValueError(f"taper must lie in (0, 1], got {self.taper}")
        if not 0 <= self.atrophy < 0.5:
            raise ValueError(f"atrophy must lie in [0, 0.5), got {self.atrophy}")

    def to_dict(self) -> dict:
        """JSON-friendly dict (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict) -> StumpShape:
        """The inverse of :meth:`to_dict` (lists back to tuples)."""
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    def with_height_ratio(self, height_ratio: float) -> StumpShape:
        """The same shape with a different cap length (e.g. shortened to fit the segment)."""
        d = asdict(self)
        d["height_ratio"] = float(height_ratio)
        return StumpShape(**d)


def sample_stump_shape(name: str, rng: np.random.Generator) -> StumpShape:
    """Random parameters for the named shape, with soft-tissue variation."""
    if name not in STUMP_SHAPES:
        raise ValueError(f"unknown stump shape {name!r}; expected one of {STUMP_SHAPES}")
    common = {
        "tissue_amp": (float(rng.uniform(0.0, 0.06)), float(rng.uniform(0.0, 0.05))),
        "tissue_phase_rad": (
            float(rng.uniform(0, 2 * np.pi)),
            float(rng.uniform(0, 2 * np.pi)),
        ),
        "sag_ratio": float(rng.uniform(0.0, 0.12)),
        "sag_dir_rad": float(rng.uniform(0, 2 * np.pi)),
        "atrophy": float(rng.uniform(0.0, 0.05)),
        "atrophy_len_ratio": float(rng.uniform(1.5, 3.0)),
    }
    if name == "rounded":
        return StumpShape(name, height_ratio=float(rng.uniform(0.7, 1.1)), **common)
    if name == "tapered":
        common["atrophy"] = float(rng.uniform(0.06, 0.15))
        return StumpShape(
            name,
            height_ratio=float(rng.uniform(1.4, 2.2)),
            taper=float(rng.uniform(0.35, 0.55)),
            **common,
        )
    if name == "bulbous":
        return StumpShape(
            name,
            height_ratio=float(rng.uniform(1.0, 1.4)),
            bulge=float(rng.uniform(0.35, 0.55)),
            **common,
        )
    if name == "flattened":
        return StumpShape(
            name,
            height_ratio=float(rng.uniform(0.3, 0.5)),
            end_power=float(rng.uniform(4.0, 6.0)),
            **common,
        )
    flat = bool(rng.uniform() < 0.5)
    return StumpShape(
        name,
        height_ratio=float(rng.uniform(0.35, 0.5) if flat else rng.uniform(0.7, 1.0)),
        end_power=float(rng.uniform(4.0, 5.0)) if flat else 2.0,
        oblique_deg=float(rng.uniform(10.0, 20.0)),
        oblique_dir_rad=float(rng.uniform(0, 2 * np.pi)),
        **common,
    )


def meridian(shape: StumpShape, u: np.ndarray, *, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """(z_m, s) of the shape's meridian at parameters ``u`` (K,) in [0, 1].

    z_m: (K,) axial distance from the cut plane (metres), increasing, ``z(1)`` = the cap length;
    s: (K,) radius scale, ``s(0) = 1``, ``s(1) = 0``.
    """
    u = np.clip(np.asarray(u, dtype=np.float64), 0.0, 1.0)
    h = shape.height_ratio * radius_m
    if shape.name == "tapered":
        # A long bullet: the radius falls by (1 - taper) along the length, and the end rounds off
        # over the last ~20 % with a tip curvature radius of about 0.8 taper r0.
        zeta = np.sin(u * np.pi / 2)  # axial fraction, rings dense towards the end
        k = 1.6 * shape.height_ratio / shape.taper
        s = (1.0 - (1.0 - shape.taper) * zeta**1.2) * np.sqrt(np.clip(1.0 - zeta**k, 0.0, 1.0))
        return h * zeta, s
    theta = u * np.pi / 2
    if shape.name == "bulbous":
        return h * np.sin(theta), np.cos(theta) + shape.bulge * np.sin(2 * theta)
    e = 2.0 / shape.end_power  # superellipse |z/h|^p + |s|^p = 1
    return h * np.sin(theta) ** e, np.cos(theta) ** e


@dataclass(frozen=True)
class StumpSurface:
    """The stump's new vertices and faces, to append to a mesh whose open loop they close.

    verts: (K * L + 1, 3) ring vertices (ring-major) then the apex; faces: (F, 3) indices into the
    *combined* mesh (loop vertices keep their mesh indices, new vertices start at ``first_new``);
    apex: index of the tip vertex in the combined mesh; length_m: axial length of the cap.
    """

    verts: np.ndarray
    faces: np.ndarray
    apex: int
    length_m: float


def _perp_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(axis, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(axis, e1)


def build_stump(
    *,
    loop_verts: np.ndarray,
    loop_index: np.ndarray,
    first_new: int,
    axis: np.ndarray,
    shape: StumpShape,
    num_rings: int = 14,
) -> StumpSurface:
    """Close an open cut loop with the shape's swept surface (watertight, outward winding).

    loop_verts: (L, 3) the loop's positions, ordered along the mesh faces' edge direction;
    loop_index: (L,) their vertex indices in the mesh; first_new: the index the first new vertex
    gets (the mesh's vertex count); axis: (3,) unit limb axis pointing distally (out of the cut).
    """
    loop_verts = np.asarray(loop_verts, dtype=np.float64)
    loop_index = np.asarray(loop_index, dtype=np.int64)
    if loop_verts.ndim != 2 or loop_verts.shape[1] != 3 or len(loop_verts) < 3:
        raise ValueError(f"loop_verts must be (L >= 3, 3), got {loop_verts.shape}")
    if loop_index.shape != (len(loop_verts),):
        raise ValueError("loop_index must have one index per loop vertex")
    if num_rings < 2:
        raise ValueError(f"num_rings must be >= 2, got {num_rings}")
    axis = np.asarray(axis, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    centre = loop_verts.mean(axis=0)
    offset = loop_verts - centre
    offset -= np.outer(offset @ axis, axis)  # in the cut plane
    radius = float(np.linalg.norm(offset, axis=1).mean())
    e1, e2 = _perp_basis(axis)
    angle = np.arctan2(offset @ e2, offset @ e1)  # (L,)

    # Rings denser towards the end, where the meridian turns.
    u = np.sin(np.linspace(0.0, 1.0, num_rings + 2)[1:-1] * np.pi / 2)  # (K,) in (0, 1)
    z, s = meridian(shape, u, radius_m=radius)
    length = float(meridian(shape, np.array([1.0]), radius_m=radius)[0][0])
    ramp = np.sin(u * np.pi / 2)  # 0 at the cut, 1 at the end: keeps the seam continuous
    a1, a2 = shape.tissue_amp
    p1, p2 = shape.tissue_phase_rad
    tissue = ramp[:, None] * (a1 * np.cos(angle - p1) + a2 * np.cos(2 * (angle - p2)))[None, :]  # (K, L)
    tilt_dir = np.cos(shape.oblique_dir_rad) * e1 + np.sin(shape.oblique_dir_rad) * e2
    shear = np.tan(np.radians(shape.oblique_deg)) * ramp[:, None] * (offset @ tilt_dir)[None, :] * s[:, None]
    sag_dir = np.cos(shape.sag_dir_rad) * e1 + np.sin(shape.sag_dir_rad) * e2
    sag = shape.sag_ratio * radius * u**2  # (K,)

    rings = (
        centre
        + (z[:, None, None] + shear[..., None]) * axis
        + (s[:, None] * (1.0 + tissue))[..., None] * offset[None]
        + sag[:, None, None] * sag_dir
    )  # (K, L, 3)
    apex = centre + length * axis + shape.sag_ratio * radius * sag_dir
    verts = np.concatenate([rings.reshape(-1, 3), apex[None]], axis=0)

    num_loop = len(loop_index)
    ring_ids = [loop_index] + [first_new + k * num_loop + np.arange(num_loop) for k in range(num_rings)]
    apex_id = first_new + num_rings * num_loop
    faces = []
    for a, b in itertools.pairwise(ring_ids):
        a_next, b_next = np.roll(a, -1), np.roll(b, -1)
        # The mesh has edge a_i -> a_{i+1}; the new faces use it reversed.
        faces.append(np.stack([a_next, a, b], axis=1))
        faces.append(np.stack([a_next, b, b_next], axis=1))
    last = ring_ids[-1]
    faces.append(np.stack([np.roll(last, -1), last, np.full(num_loop, apex_id)], axis=1))
    return StumpSurface(
        verts=verts,
        faces=np.concatenate(faces).astype(np.int64),
        apex=apex_id,
        length_m=length,
    )


def atrophy_scale(signed_dist_m: np.ndarray, *, amount: float, length_m: float) -> np.ndarray:
    """Radius scale of residual-segment vertices at signed axial distance ``signed_dist_m`` (N,)
    from the cut plane (negative = proximal): 1 beyond ``length_m`` above the cut, falling
    smoothly (quadratically) to ``1 - amount`` at the cut."""
    x = np.clip(
        1.0 + np.asarray(signed_dist_m, dtype=np.float64) / max(length_m, 1e-9),
        0.0,
        1.0,
    )
    return 1.0 - amount * x * x
