"""Hard (non-differentiable) shaded renders and masks with PyTorch3D, for images and figures."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from resihmr_dr.camera import PinholeCamera


@dataclass(frozen=True)
class ShadedRender:
    """rgb: (H, W, 3) float in [0, 1]; mask: (H, W) bool, True where the mesh covers the pixel."""

    rgb: np.ndarray
    mask: np.ndarray


def render_shaded(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    camera: PinholeCamera,
    vertex_rgb: torch.Tensor | None = None,
) -> ShadedRender:
    """Phong-shaded render of one mesh seen by ``camera``.

    verts_cam: (V, 3) camera frame (OpenCV, metres); faces: (F, 3); vertex_rgb: (V, 3) in [0, 1]
    (default: a light skin tone). Light comes from the camera.
    """
    from pytorch3d.renderer import (
        HardPhongShader,
        MeshRasterizer,
        MeshRenderer,
        PointLights,
        RasterizationSettings,
        TexturesVertex,
    )
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection

    verts = verts_cam.detach().float().cpu()
    faces = faces.detach().long().cpu()
    if vertex_rgb is None:
        vertex_rgb = torch.tensor([0.86, 0.70, 0.60]).expand_as(verts)
    cams = cameras_from_opencv_projection(
        R=torch.eye(3)[None],
        tvec=torch.zeros(1, 3),
        camera_matrix=camera.K()[None],
        image_size=torch.tensor([[camera.height, camera.width]]),
    )
    mesh = Meshes(verts=[verts], faces=[faces], textures=TexturesVertex([vertex_rgb.float().cpu()]))
    settings = RasterizationSettings(
        image_size=(camera.height, camera.width), blur_radius=0.0, faces_per_pixel=1, bin_size=0
    )
    rasterizer = MeshRasterizer(cameras=cams, raster_settings=settings)
    lights = PointLights(location=[[0.0, 0.0, 0.0]], ambient_color=[[0.45] * 3], diffuse_color=[[0.55] * 3],
                         specular_color=[[0.05] * 3])  # fmt: skip
    renderer = MeshRenderer(rasterizer=rasterizer, shader=HardPhongShader(cameras=cams, lights=lights))
    with torch.no_grad():
        fragments = rasterizer(mesh)
        image = renderer(mesh)[0, ..., :3].clamp(0, 1).numpy()
    mask = (fragments.pix_to_face[0, ..., 0] >= 0).numpy()
    return ShadedRender(rgb=image, mask=mask)
