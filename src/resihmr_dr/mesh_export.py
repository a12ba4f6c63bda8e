"""Meshes for other tools: the fitted mesh's vertices in another frame or unit, vertex colours
that mark the residual limbs, and ``trimesh`` / PyTorch3D objects. Shared by
``resihmr_dr.fit.pipeline.PersonFit``, ``resihmr_dr.results.FittedPerson`` and ``resihmr_dr.outputs``.

Frames: the posed mesh is in the camera frame (OpenCV: x right, y down, z forward), the T-pose
mesh in the model frame (Y up, the person faces +Z, their left is +X); metres.
``verts_cam = R(global_orient) (verts_model - root_model) + root_model + transl``, so
:func:`camera_to_model` undoes it exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch
    import trimesh

__all__ = [
    "MESH_FRAMES",
    "MESH_UNITS",
    "RESIDUAL_RGB",
    "SKIN_RGB",
    "camera_to_model",
    "colored_trimesh",
    "export_vertices",
    "pytorch3d_meshes",
    "vertex_colours",
]

MESH_FRAMES: tuple[str, ...] = ("camera", "y-up")  # OpenCV camera frame; the body model's frame (Y up, facing +Z)
MESH_UNITS: dict[str, float] = {"m": 1.0, "mm": 1000.0}  # unit -> scale from metres
SKIN_RGB = (0.86, 0.70, 0.60)  # the body's colour in meshes, reports and views (RGB in [0, 1])
RESIDUAL_RGB = (0.85, 0.12, 0.12)  # the residual limbs' (m_r) colour

PYTORCH3D_HINT = (
    "to_pytorch3d() needs PyTorch3D, which is not installed or does not load with this torch "
    "(pip install 'resihmr-dr[pytorch3d]': its Linux wheel loads only with torch 2.11.0); "
    "to_trimesh() needs nothing extra"
)


def camera_to_model(
    points_cam: np.ndarray, *, global_orient: np.ndarray, transl: np.ndarray, root_model: np.ndarray
) -> np.ndarray:
    """(N, 3) camera-frame points -> the model frame: ``R^T (p - root_model - transl) + root_model``.

    global_orient: (3,) axis-angle; transl, root_model: (3,) metres (``params.json``'s
    ``params.global_orient``, ``params.transl`` and ``root_model``).
    """
    from scipy.spatial.transform import Rotation

    rot = Rotation.from_rotvec(np.asarray(global_orient, dtype=np.float64).reshape(3)).as_matrix()
    root = np.asarray(root_model, dtype=np.float64).reshape(3)
    shift = root + np.asarray(transl, dtype=np.float64).reshape(3)
    return (np.asarray(points_cam, dtype=np.float64) - shift) @ rot + root


def export_vertices(
    verts: np.ndarray,
    *,
    tpose: bool,
    frame: str | None,
    units: str,
    global_orient: np.ndarray,
    transl: np.ndarray,
    root_model: np.ndarray,
) -> np.ndarray:
    """A mesh's (V, 3) vertices in ``frame`` and ``units``.

    ``verts``: the posed mesh in the camera frame (``tpose`` False) or the T-pose mesh in the model
    frame (``tpose`` True). frame: "camera", "y-up" (the model frame) or None (the mesh's own
    frame); the T-pose has no camera frame (ValueError). units: "m" or "mm".
    """
    if frame is not None and frame not in MESH_FRAMES:
        raise ValueError(f"frame must be one of {', '.join(MESH_FRAMES)} or None, got {frame!r}")
    if units not in MESH_UNITS:
        raise ValueError(f"units must be one of {', '.join(MESH_UNITS)}, got {units!r}")
    if tpose and frame == "camera":
        raise ValueError("the T-pose mesh is in the model frame only (frame 'y-up' or None)")
    out = np.asarray(verts, dtype=np.float64)
    if not tpose and frame == "y-up":
        out = camera_to_model(out, global_orient=global_orient, transl=transl, root_model=root_model)
    return out * MESH_UNITS[units]


def vertex_colours(residual_mask: np.ndarray) -> np.ndarray:
    """(V, 4) uint8 RGBA: skin, and the residual limbs' vertices (m_r) in red, as the report draws them."""
    mask = np.asarray(residual_mask, dtype=bool)
    colours = np.tile(np.array([*SKIN_RGB, 1.0]) * 255, (len(mask), 1))
    colours[mask] = np.array([*RESIDUAL_RGB, 1.0]) * 255
    return np.round(colours).astype(np.uint8)


def colored_trimesh(verts: np.ndarray, faces: np.ndarray, residual_mask: np.ndarray) -> trimesh.Trimesh:
    """A ``trimesh.Trimesh`` of (V, 3) vertices and (F, 3) faces, kept as they are (no merging or
    reordering), coloured by :func:`vertex_colours`."""
    import trimesh

    return trimesh.Trimesh(
        vertices=np.asarray(verts, dtype=np.float64),
        faces=np.asarray(faces, dtype=np.int64),
        vertex_colors=vertex_colours(residual_mask),
        process=False,
    )


def pytorch3d_meshes(
    verts: np.ndarray, faces: np.ndarray, residual_mask: np.ndarray, *, device: str | torch.device = "cpu"
):
    """A one-mesh ``pytorch3d.structures.Meshes`` (float32 vertices, vertex colours in [0, 1] as
    ``TexturesVertex``). Raises ImportError (saying how to install it) without PyTorch3D."""
    import torch

    try:
        from pytorch3d.renderer.mesh.textures import TexturesVertex
        from pytorch3d.structures import Meshes
    except (ImportError, OSError) as err:  # OSError: a wheel built for another torch
        raise ImportError(f"{PYTORCH3D_HINT} ({type(err).__name__}: {err})") from err
    v = torch.as_tensor(np.asarray(verts), dtype=torch.float32, device=device)
    f = torch.as_tensor(np.asarray(faces), dtype=torch.int64, device=device)
    rgb = torch.as_tensor(vertex_colours(residual_mask)[:, :3] / 255.0, dtype=torch.float32, device=device)
    return Meshes(verts=[v], faces=[f], textures=TexturesVertex(verts_features=[rgb]))
