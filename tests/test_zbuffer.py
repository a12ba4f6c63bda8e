"""The z-buffer rasteriser against PyTorch3D's hard rasteriser and hand-made cases."""

from __future__ import annotations

import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.render.zbuffer import rasterize, shade


def test_single_triangle_covers_expected_pixels():
    camera = PinholeCamera(100.0, 100.0, 10.0, 10.0, 20, 20)
    # A right triangle in the plane z = 1 m covering pixels x in [10, 15], y in [10, 15], x + y <= 25.
    verts = torch.tensor([[0.0, 0.0, 1.0], [0.05, 0.0, 1.0], [0.0, 0.05, 1.0]])
    frags = rasterize(verts_cam=verts, faces=torch.tensor([[0, 1, 2]]), camera=camera)
    ys, xs = torch.nonzero(frags.mask, as_tuple=True)
    assert set(zip(xs.tolist(), ys.tolist())) == {(x, y) for x in range(10, 16) for y in range(10, 16) if x + y <= 25}
    assert torch.allclose(frags.depth[frags.mask], torch.tensor(1.0))


def test_nearest_face_wins_and_behind_camera_is_skipped():
    camera = PinholeCamera(100.0, 100.0, 10.0, 10.0, 20, 20)
    quad = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]])
    near = torch.cat([quad * 0.5, torch.full((4, 1), 2.0)], dim=1)
    far = torch.cat([quad * 0.5, torch.full((4, 1), 3.0)], dim=1)
    behind = torch.cat([quad, torch.full((4, 1), -1.0)], dim=1)
    verts = torch.cat([far, near, behind])
    faces = torch.tensor([[0, 1, 2], [0, 2, 3], [4, 5, 6], [4, 6, 7], [8, 9, 10], [8, 10, 11]])
    frags = rasterize(verts_cam=verts, faces=faces, camera=camera)
    covered = frags.face_index[frags.mask]
    assert covered.numel() > 0 and ((covered == 2) | (covered == 3)).all()
    assert torch.allclose(frags.depth[frags.mask], torch.tensor(2.0))


def test_matches_pytorch3d_hard_rasteriser(anny_body):
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection

    camera = PinholeCamera(160.0, 160.0, 31.5, 47.5, 64, 96)
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts[0]
    ours = rasterize(verts_cam=verts, faces=anny_body.faces, camera=camera)
    # PyTorch3D puts pixel centres at half-integers (corner origin); ours are at integers.
    k_p3d = camera.K() + torch.tensor([[0.0, 0.0, 0.5], [0.0, 0.0, 0.5], [0.0, 0.0, 0.0]])
    cams = cameras_from_opencv_projection(
        R=torch.eye(3)[None],
        tvec=torch.zeros(1, 3),
        camera_matrix=k_p3d[None],
        image_size=torch.tensor([[camera.height, camera.width]]),
    )
    settings = RasterizationSettings(image_size=(camera.height, camera.width), faces_per_pixel=1, bin_size=0)
    theirs = MeshRasterizer(cameras=cams, raster_settings=settings)(Meshes([verts], [anny_body.faces]))
    ref_face = theirs.pix_to_face[0, ..., 0]
    agree_mask = (ours.mask == (ref_face >= 0)).float().mean()
    assert ours.mask.sum() > 500
    assert agree_mask > 0.99
    both = ours.mask & (ref_face >= 0)
    depth_err = (ours.depth[both] - theirs.zbuf[0, ..., 0][both]).abs()
    assert depth_err.median() < 1e-3


def test_shade_colours_covered_pixels_only(anny_body):
    camera = PinholeCamera(120.0, 120.0, 32.0, 48.0, 64, 96)
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts[0]
    frags = rasterize(verts_cam=verts, faces=anny_body.faces, camera=camera)
    image = shade(verts_cam=verts, faces=anny_body.faces, fragments=frags)
    assert image.shape == (96, 64, 3)
    assert (image[~frags.mask.numpy()] == 1.0).all()
    assert (image[frags.mask.numpy()] < 1.0).any(axis=-1).all()


def test_numba_kernel_equals_the_pytorch_path(anny_body):
    """The compiled z-buffer and the vectorised PyTorch one give the same coverage, faces, depths
    and barycentrics on the body (a 480 x 360 image)."""
    camera = PinholeCamera(700.0, 700.0, 179.5, 239.5, 360, 480)
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts[0]
    fast = rasterize(verts_cam=verts, faces=anny_body.faces, camera=camera, use_numba=True)
    ref = rasterize(verts_cam=verts, faces=anny_body.faces, camera=camera, use_numba=False)
    assert fast.mask.sum() > 20_000 and torch.equal(fast.mask, ref.mask)
    same = fast.face_index == ref.face_index
    assert same.float().mean() > 0.999  # equally near faces may differ (shared edges)
    torch.testing.assert_close(fast.depth, ref.depth, rtol=0, atol=1e-6)
    torch.testing.assert_close(fast.bary[same], ref.bary[same], rtol=0, atol=1e-6)


def test_nearest_faces_are_rasterize_face_index(anny_body):
    """``nearest_faces`` (the kernel without barycentrics) picks exactly ``rasterize``'s faces,
    with a face behind the camera skipped too."""
    from resihmr_dr.render.zbuffer import nearest_faces

    camera = PinholeCamera(700.0, 700.0, 179.5, 239.5, 360, 480)
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts[0].clone()
    verts[:50, 2] = -1.0  # some faces reach behind the camera
    expected = rasterize(verts_cam=verts, faces=anny_body.faces, camera=camera).face_index
    got = nearest_faces(verts_cam=verts, faces=anny_body.faces, camera=camera)
    assert got.shape == (480, 360) and got.dtype == torch.long and torch.equal(got, expected)


def test_silhouette_edge_vertices_compiled_equals_pytorch(anny_body, monkeypatch):
    """The compiled edge pass returns exactly the PyTorch path's sorted vertex ids."""
    from resihmr_dr.render import zbuffer
    from resihmr_dr.render.zbuffer import nearest_faces, silhouette_edge_vertices

    camera = PinholeCamera(700.0, 700.0, 179.5, 239.5, 360, 480)
    with torch.no_grad():
        verts = anny_body(anny_body.default_params(1, depth_m=3.0)).verts[0]
    face_index = nearest_faces(verts_cam=verts, faces=anny_body.faces, camera=camera)
    compiled = silhouette_edge_vertices(face_index, anny_body.faces)
    monkeypatch.setattr(zbuffer, "_numba_zbuffer", lambda: None)
    reference = silhouette_edge_vertices(face_index, anny_body.faces)
    assert len(reference) > 500 and torch.equal(compiled, reference)
    # An image edge counts as the silhouette's edge; an empty image has none.
    assert len(silhouette_edge_vertices(torch.full((4, 4), -1), anny_body.faces)) == 0
