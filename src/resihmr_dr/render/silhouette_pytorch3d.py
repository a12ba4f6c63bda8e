"""PyTorch3D soft-silhouette backend: ``MeshRasterizer`` + ``SoftSilhouetteShader``.

The pinhole camera is converted with ``pytorch3d.utils.cameras_from_opencv_projection``. That
conversion puts the centre of pixel ``j`` at pixel coordinate ``j + 0.5`` (pixel *edges* at
integers), while :class:`~resihmr_dr.camera.PinholeCamera` puts it at ``j``; the principal point is
therefore shifted by +0.5 px so that a vertex projected with ``PinholeCamera.project`` lands on the
pixel where PyTorch3D draws it. Only the K = ``faces_per_pixel`` faces nearest in depth are blended
per pixel (see DESIGN.md section 7 for the holes this leaves on dense parts of a body).
"""

from __future__ import annotations

import dataclasses

import torch

from resihmr_dr.camera import MIN_DEPTH_M, PinholeCamera
from resihmr_dr.render.silhouette_config import SilhouetteConfig


def opencv_cameras(camera: PinholeCamera, *, batch_size: int, device: torch.device, dtype: torch.dtype):
    """PyTorch3D ``PerspectiveCameras`` (identity extrinsics) equal to the render's ``camera`` on its
    output grid (``camera``'s image is the output)."""
    from pytorch3d.utils import cameras_from_opencv_projection

    K = torch.tensor(
        [
            [camera.fx, 0.0, camera.cx + 0.5],
            [0.0, camera.fy, camera.cy + 0.5],
            [0.0, 0.0, 1.0],
        ],
        device=device,
        dtype=dtype,
    )
    return cameras_from_opencv_projection(
        R=torch.eye(3, device=device, dtype=dtype).expand(batch_size, 3, 3),
        tvec=torch.zeros(batch_size, 3, device=device, dtype=dtype),
        camera_matrix=K.expand(batch_size, 3, 3),
        image_size=torch.tensor([[camera.height, camera.width]], device=device).expand(batch_size, 2),
    )


def config_in_output_ndc(config: SilhouetteConfig, camera: PinholeCamera, ndc_scale_px: float) -> SilhouetteConfig:
    """``config`` with sigma and blur radius converted from the camera image's NDC (our unit,
    ``ndc_scale_px`` output pixels) to PyTorch3D's NDC of the output image of the render's
    ``camera`` (``min(H, W) / 2`` pixels); identical without a crop."""
    ratio = (ndc_scale_px / (min(camera.height, camera.width) / 2.0)) ** 2
    if ratio == 1.0:
        return config
    return dataclasses.replace(config, sigma=config.sigma * ratio, blur_radius=config.effective_blur_radius * ratio)


def rasterize_soft(*, verts_cam: torch.Tensor, faces: torch.Tensor, camera: PinholeCamera, config: SilhouetteConfig):
    """PyTorch3D ``Fragments`` of the soft rasterisation (float32), and the mesh batch; ``camera``:
    the render's intrinsics (its image the output).

    ``config`` is used as is (sigma and blur in PyTorch3D's output NDC, see config_in_output_ndc).
    """
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes

    verts = verts_cam.float()
    B = verts.shape[0]
    faces = faces.to(device=verts.device, dtype=torch.long)
    cameras = opencv_cameras(camera, batch_size=B, device=verts.device, dtype=verts.dtype)
    settings = RasterizationSettings(
        image_size=(camera.height, camera.width),
        blur_radius=config.effective_blur_radius,
        faces_per_pixel=config.faces_per_pixel,
        # CPU: bin_size=None falls back to the naive rasteriser anyway (DESIGN.md section 7);
        # GPU: let PyTorch3D pick its coarse-to-fine bins.
        bin_size=0 if verts.device.type == "cpu" else None,
        perspective_correct=False,
    )
    meshes = Meshes(verts=list(verts), faces=[faces] * B)
    rasterizer = MeshRasterizer(cameras=cameras, raster_settings=settings)
    return rasterizer(meshes), meshes


def render_silhouette_pytorch3d(
    *,
    verts_cam: torch.Tensor,
    faces: torch.Tensor,
    camera: PinholeCamera,
    ndc_scale_px: float,
    config: SilhouetteConfig,
) -> torch.Tensor:
    """(B, V, 3) camera-frame vertices, (F, 3) faces -> (B, H, W) soft silhouette alpha (float32).

    camera: the render's intrinsics, its image the output (``PinholeCamera.resampled``);
    ndc_scale_px: output pixels per NDC unit of ``config`` (``silhouette_config.ndc_scale_px``).
    """
    try:
        from pytorch3d.renderer import BlendParams, SoftSilhouetteShader
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the 'pytorch3d' silhouette backend needs PyTorch3D (e.g. easypytorch3d with torch 2.11); "
            "use SilhouetteConfig(backend='native') instead"
        ) from err

    if bool((verts_cam[..., 2] <= MIN_DEPTH_M).any()):
        # Faces behind the camera do not render correctly in PyTorch3D; drop them like the native
        # backend does (per batch element would need per-mesh faces; do it on the union).
        in_front = (verts_cam[..., 2] > MIN_DEPTH_M).all(dim=0)
        faces = faces[in_front[faces].all(dim=1)]
        if faces.shape[0] == 0:
            return torch.zeros(verts_cam.shape[0], camera.height, camera.width, device=verts_cam.device)
    config = config_in_output_ndc(config, camera, ndc_scale_px)
    fragments, meshes = rasterize_soft(verts_cam=verts_cam, faces=faces, camera=camera, config=config)
    shader = SoftSilhouetteShader(blend_params=BlendParams(sigma=config.sigma, gamma=config.gamma))
    return shader(fragments, meshes)[..., 3]
