"""Turntable views of a mesh in the model frame (front, back, side), for reports."""

from __future__ import annotations

import math

import numpy as np
import roma
import torch

from resihmr_dr.body.base import FACING_CAMERA_ORIENT
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.mesh_export import RESIDUAL_RGB, SKIN_RGB
from resihmr_dr.render.zbuffer import rasterize, shade


def face_colours(num_faces: int, faces: np.ndarray, residual_mask: np.ndarray | None) -> np.ndarray:
    """(F, 3) colours: skin, with faces of the residual limb (all vertices in m_r) in red."""
    rgb = np.tile(np.array(SKIN_RGB), (num_faces, 1))
    if residual_mask is not None:
        rgb[np.asarray(residual_mask, bool)[faces].all(axis=1)] = RESIDUAL_RGB
    return rgb


def render_view(
    *,
    verts_model: torch.Tensor,
    faces: torch.Tensor,
    face_rgb: np.ndarray,
    yaw_deg: float,
    size: tuple[int, int] = (480, 320),
    margin: float = 0.08,
) -> np.ndarray:
    """(H, W, 3) view of a model-frame mesh turned by ``yaw_deg`` about the vertical axis.

    yaw 0 shows the front, 180 the back, 90 the person's left side. The mesh is framed to fill
    the image with ``margin`` (fraction) on each side.
    """
    height, width = size
    yaw = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(yaw_deg), 0.0], dtype=torch.float64))
    facing = roma.rotvec_to_rotmat(torch.tensor(FACING_CAMERA_ORIENT, dtype=torch.float64))
    v = verts_model.detach().double().cpu()
    v = (v - v.mean(dim=0)) @ yaw.T @ facing.T  # camera-aligned, centred at the origin
    extent_x = float(v[:, 0].max() - v[:, 0].min())
    extent_y = float(v[:, 1].max() - v[:, 1].min())
    distance = 10.0  # far away: nearly orthographic, so views are comparable
    # Pixels per metre at the nearest depth, so that the whole mesh fits inside the margins.
    nearest = distance - float(v[:, 2].abs().max())
    focal = nearest * min(
        width * (1 - 2 * margin) / max(extent_x, 1e-6), height * (1 - 2 * margin) / max(extent_y, 1e-6)
    )
    centre = (v.amax(dim=0) + v.amin(dim=0)) / 2
    v = (
        v
        - torch.tensor([float(centre[0]), float(centre[1]), 0.0], dtype=torch.float64)
        + torch.tensor([0.0, 0.0, distance], dtype=torch.float64)
    )
    camera = PinholeCamera(focal, focal, (width - 1) / 2, (height - 1) / 2, width, height)
    fragments = rasterize(verts_cam=v, faces=faces, camera=camera)
    return shade(verts_cam=v, faces=faces, fragments=fragments, face_rgb=face_rgb)
