"""The pinhole camera: projection, its depth floor, and the camera of a resampled crop."""

from __future__ import annotations

import pytest
import torch

from resihmr_dr.camera import IN_FRONT_DEPTH_M, MIN_DEPTH_M, PinholeCamera, project_points
from resihmr_dr.render.silhouette_config import ndc_scale_px

CAMERA = PinholeCamera(fx=300.0, fy=310.0, cx=40.2, cy=29.7, width=80, height=60)


def test_projection_clamps_depths_to_min_depth():
    points = torch.tensor([[0.1, -0.2, 2.0], [0.1, -0.2, 0.0], [0.1, -0.2, -1.0]], dtype=torch.float64)
    uv = CAMERA.project(points)
    torch.testing.assert_close(uv[0], torch.tensor([40.2 + 300.0 * 0.05, 29.7 - 310.0 * 0.1], dtype=torch.float64))
    clamped = torch.tensor([40.2 + 300.0 * 0.1 / MIN_DEPTH_M, 29.7 - 310.0 * 0.2 / MIN_DEPTH_M], dtype=torch.float64)
    torch.testing.assert_close(uv[1], clamped)
    torch.testing.assert_close(uv[2], clamped)
    assert torch.equal(uv, project_points(points, fx=300.0, fy=310.0, cx=40.2, cy=29.7))
    assert MIN_DEPTH_M < IN_FRONT_DEPTH_M


@pytest.mark.parametrize(
    "image_size, crop", [((60, 80), None), ((120, 160), None), ((50, 50), (40.0, 10.0, 65.0, 35.0)), ((7, 9), None)]
)
def test_resampled_camera_maps_edge_coordinates(image_size, crop):
    """``u_out + 0.5 = (u + 0.5 - x0) * W / (x1 - x0)``: a point's pixel in the resampled camera is
    its pixel in the full image mapped through the window."""
    x0, y0, x1, y1 = crop or (0.0, 0.0, CAMERA.width, CAMERA.height)
    height, width = image_size
    out = CAMERA.resampled(image_size=image_size, crop=crop)
    assert (out.height, out.width) == image_size
    assert CAMERA.resample_scale(image_size=image_size, crop=crop) == (width / (x1 - x0), height / (y1 - y0))
    point = torch.tensor([0.11, -0.07, 2.0], dtype=torch.float64)
    u, v = CAMERA.project(point).tolist()
    expected = torch.tensor(
        [(u + 0.5 - x0) * width / (x1 - x0) - 0.5, (v + 0.5 - y0) * height / (y1 - y0) - 0.5], dtype=torch.float64
    )
    torch.testing.assert_close(out.project(point), expected)


def test_ndc_scale_is_half_the_smaller_side_of_the_whole_image_at_output_scale():
    assert ndc_scale_px(CAMERA, image_size=(60, 80)) == 30.0
    assert ndc_scale_px(CAMERA, image_size=(120, 160)) == 60.0
    # A 25 x 25 window at 50 x 50: 2 output pixels per image pixel, the whole image 160 x 120.
    assert ndc_scale_px(CAMERA, image_size=(50, 50), crop=(40.0, 10.0, 65.0, 35.0)) == 60.0


def test_resampled_rejects_bad_sizes_and_windows():
    with pytest.raises(ValueError, match="image_size"):
        CAMERA.resampled(image_size=(0, 16))
    with pytest.raises(ValueError, match="image_size"):
        CAMERA.resampled(image_size=(16,))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="crop"):
        CAMERA.resampled(image_size=(16, 16), crop=(5, 5, 5, 9))
    with pytest.raises(ValueError, match="crop"):
        CAMERA.resampled(image_size=(16, 16), crop=(0, 0, 4))  # type: ignore[arg-type]
