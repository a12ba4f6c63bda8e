"""Mask distance maps and lookups (resihmr_dr.render.distance) against brute force, scipy and finite differences."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch

from resihmr_dr.render.distance import (
    MaskDistance,
    chamfer_to_points,
    mask_contour_px,
    mask_distance_maps,
    sample_map,
)

# The maps are exact Euclidean transforms stored in float32: tolerance is float32 rounding of <= ~100 px.
TOL_PX = 1e-4


def _disc(h: int = 48, w: int = 64, *, cx: float = 30.0, cy: float = 22.0, r: float = 12.0) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r**2


def _rectangle(h: int = 40, w: int = 50, *, x0: int = 10, y0: int = 5, x1: int = 31, y1: int = 22) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def _l_shape(h: int = 45, w: int = 55) -> np.ndarray:
    mask = np.zeros((h, w), bool)
    mask[5:40, 8:18] = True
    mask[30:40, 8:45] = True
    return mask


MASKS = {"disc": _disc, "rectangle": _rectangle, "l_shape": _l_shape}


def _brute_force_distance(sources: np.ndarray) -> np.ndarray:
    """Distance from every pixel centre to the nearest ``sources`` pixel centre (all pairs)."""
    h, w = sources.shape
    grid = np.stack(np.mgrid[:h, :w], -1).reshape(-1, 2).astype(float)
    dist = np.linalg.norm(grid[:, None] - grid[sources.reshape(-1)][None], axis=-1).min(1)
    return dist.reshape(h, w)


# ---------------------------------------------------------------------------------------------
# Distance maps


@pytest.mark.parametrize("name", sorted(MASKS))
def test_distance_maps_match_brute_force_and_scipy(name):
    mask = MASKS[name]()
    maps = mask_distance_maps(torch.from_numpy(mask))
    assert isinstance(maps, MaskDistance) and maps.shape == mask.shape
    assert maps.outside_px.dtype == torch.float32 and maps.mask.dtype == torch.bool
    outside, inside = maps.outside_px.numpy(), maps.inside_px.numpy()
    np.testing.assert_allclose(outside, _brute_force_distance(mask), atol=TOL_PX, rtol=0)
    np.testing.assert_allclose(inside, _brute_force_distance(~mask) * mask, atol=TOL_PX, rtol=0)
    np.testing.assert_allclose(outside, scipy.ndimage.distance_transform_edt(~mask), atol=TOL_PX, rtol=0)
    np.testing.assert_allclose(inside, scipy.ndimage.distance_transform_edt(mask), atol=TOL_PX, rtol=0)
    assert (outside[mask] == 0).all() and (inside[~mask] == 0).all()
    assert (np.abs(maps.signed_px.numpy()) >= 1).all()


def test_distance_maps_conventions_on_a_rectangle():
    mask = _rectangle(x0=10, y0=5, x1=31, y1=22)  # pixels x in [10, 30], y in [5, 21]
    maps = mask_distance_maps(mask.astype(np.uint8), dtype=torch.float64)
    assert maps.outside_px.dtype == torch.float64 and maps.outside_px.device.type == "cpu"
    assert maps.outside_px[5, 9].item() == 1.0 and maps.outside_px[5, 0].item() == 10.0  # left of the box
    assert maps.outside_px[0, 0].item() == pytest.approx(np.hypot(10, 5))  # to the corner pixel (10, 5)
    assert maps.inside_px[5, 10].item() == 1.0  # on the border
    assert maps.inside_px[13, 20].item() == 9.0  # the centre row, 9 rows from the nearest outside row


def test_distance_maps_device_and_float_zero_one_masks():
    mask = _disc().astype(np.float32)
    maps = mask_distance_maps(torch.from_numpy(mask), device="cpu", dtype=torch.float64)
    ref = mask_distance_maps(mask > 0.5)
    torch.testing.assert_close(maps.outside_px.float(), ref.outside_px)
    torch.testing.assert_close(maps.inside_px.float(), ref.inside_px)


# ---------------------------------------------------------------------------------------------
# sample_map


def _ramp_map(h: int = 6, w: int = 8) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    return torch.rand(h, w, generator=gen, dtype=torch.float64) * 10


def test_sample_map_exact_at_pixel_centres_and_bilinear_between():
    values = _ramp_map()
    h, w = values.shape
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij")
    centres = torch.stack([xs, ys], -1)  # (H, W, 2): pixel (i, j) at x=j, y=i
    torch.testing.assert_close(sample_map(values, centres), values, atol=1e-12, rtol=0)
    # Between centres: linear along x and y, bilinear inside a cell.
    assert sample_map(values, torch.tensor([2.25, 3.0], dtype=torch.float64)).item() == pytest.approx(
        0.75 * values[3, 2].item() + 0.25 * values[3, 3].item()
    )
    assert sample_map(values, torch.tensor([4.0, 1.5], dtype=torch.float64)).item() == pytest.approx(
        0.5 * (values[1, 4] + values[2, 4]).item()
    )
    fx, fy = 0.3, 0.8
    expected = (
        (1 - fx) * (1 - fy) * values[2, 5]
        + fx * (1 - fy) * values[2, 6]
        + (1 - fx) * fy * values[3, 5]
        + fx * fy * values[3, 6]
    )
    assert sample_map(values, torch.tensor([5 + fx, 2 + fy], dtype=torch.float64)).item() == pytest.approx(
        expected.item()
    )
    # Any leading shape; dtype follows the points.
    points = torch.rand(2, 3, 5, 2) * torch.tensor([w - 1, h - 1])
    out = sample_map(values, points)
    assert out.shape == (2, 3, 5) and out.dtype == torch.float32


def test_sample_map_gradient_matches_finite_differences():
    values = _ramp_map()
    gen = torch.Generator().manual_seed(1)
    # Off the pixel lines (where bilinear interpolation is not differentiable), inside and outside the image.
    inside = torch.rand(10, 2, generator=gen, dtype=torch.float64) * torch.tensor([6.0, 4.0]) + 0.5
    inside = inside.floor() + 0.1 + 0.8 * (inside - inside.floor())
    outside = torch.tensor([[-3.3, 2.4], [10.2, 3.6], [4.4, -2.7], [9.1, 7.3], [-2.2, -1.6]], dtype=torch.float64)
    for points in (inside, outside):
        assert torch.autograd.gradcheck(lambda p: sample_map(values, p), (points.clone().requires_grad_(),))


def test_sample_map_beyond_the_image_adds_the_distance_and_points_back():
    values = _ramp_map()
    h, w = values.shape
    points = torch.tensor([[-10.0, 2.0], [w + 4.0, h + 2.0], [3.0, -0.5], [-3.0, -4.0]], dtype=torch.float64)
    nearest = torch.stack([points[:, 0].clamp(0, w - 1), points[:, 1].clamp(0, h - 1)], -1)
    gap = (points - nearest).norm(dim=-1)
    torch.testing.assert_close(sample_map(values, points), sample_map(values, nearest) + gap)
    points.requires_grad_()
    (grad,) = torch.autograd.grad(sample_map(values, points).sum(), points)
    towards_image = (nearest - points.detach()) / gap[:, None]
    assert ((-grad * towards_image).sum(-1) > 0.9).all()  # descent moves each point back towards the image
    # On a distance map, far-outside points keep following the distance out to the mask.
    maps = mask_distance_maps(_rectangle())
    far = torch.tensor([[-200.0, -150.0]], requires_grad=True)
    value = sample_map(maps.outside_px, far)
    (grad,) = torch.autograd.grad(value.sum(), far)
    assert value.item() > 200 and (grad < 0).all()


# ---------------------------------------------------------------------------------------------
# Contour and chamfer


def test_contour_of_a_rectangle_is_its_border_pixels():
    mask = _rectangle(x0=10, y0=5, x1=31, y1=22)
    contour = mask_contour_px(mask)
    assert contour.shape[1] == 2 and contour.dtype == torch.float32
    got = {tuple(p) for p in contour.int().tolist()}
    border = {(x, y) for x in range(10, 31) for y in range(5, 22) if x in (10, 30) or y in (5, 21)}
    assert got == border and len(got) == contour.shape[0]
    assert contour[:, 1].diff().min() >= 0  # row-major order
    # A window keeps the border pixels inside it, numpy-slice style, clipped to the image.
    window = mask_contour_px(torch.from_numpy(mask), window=(0, 0, 11, 100))
    assert {tuple(p) for p in window.int().tolist()} == {(x, y) for x, y in border if x <= 10}
    assert mask_contour_px(mask, window=(40, 0, 50, 40)).shape == (0, 2)


def test_contour_at_the_image_edge_and_of_thin_parts():
    mask = np.zeros((10, 12), bool)
    mask[4:, 3:8] = True  # cut by the image's bottom edge
    default = {tuple(p) for p in mask_contour_px(mask).int().tolist()}
    with_edge = {tuple(p) for p in mask_contour_px(mask, include_image_edge=True).int().tolist()}
    assert not any(y == 9 and 3 < x < 7 for x, y in default)
    assert with_edge - default == {(x, 9) for x in range(4, 7)}
    line = np.zeros((5, 5), bool)
    line[2, 1:4] = True  # one pixel thick: every pixel is on the contour
    assert mask_contour_px(line).shape == (3, 2)


def test_chamfer_matches_brute_force_and_chunking():
    gen = torch.Generator().manual_seed(2)
    contour = mask_contour_px(_disc())
    points = torch.rand(300, 2, generator=gen) * torch.tensor([64.0, 48.0])
    brute = torch.cdist(contour.double(), points.double()).min(1).values.mean()
    for chunk in (1 << 22, 1000, 1):
        value = chamfer_to_points(contour, points, chunk_elements=chunk)
        assert value.dtype == torch.float32
        torch.testing.assert_close(value.double(), brute, atol=1e-5, rtol=0)


def test_chamfer_gradient_pulls_the_nearest_point_towards_the_contour():
    contour = mask_contour_px(_rectangle(x0=10, y0=5, x1=31, y1=22))
    points = torch.tensor([[20.0, 13.0], [29.0, 13.5]], dtype=torch.float64, requires_grad=True)
    value = chamfer_to_points(contour, points)
    (grad,) = torch.autograd.grad(value, points)
    # The point nearer the right border (x = 30) is the nearest one for the right half of the contour:
    # descent pulls it right/outwards towards that border, and both points move.
    assert -grad[1, 0] > 0 and torch.isfinite(grad).all()
    moved = (points - 2.0 * grad).detach()
    assert chamfer_to_points(contour, moved) < value
    assert torch.autograd.gradcheck(
        lambda p: chamfer_to_points(contour.double(), p), (points.detach().clone().requires_grad_(),)
    )
    # A point exactly on a contour point: zero, finite gradient for that pair.
    on = contour[:1].double().clone().requires_grad_()
    (grad_on,) = torch.autograd.grad(chamfer_to_points(contour[:1], on), on)
    assert torch.equal(grad_on, torch.zeros_like(grad_on))


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_bad_inputs_raise_value_error_with_a_clear_message():
    mask = _rectangle()
    values = torch.zeros(4, 5)
    contour = torch.zeros(3, 2)
    cases = [
        (lambda: mask_distance_maps(np.zeros((4, 5), bool)), "mask is empty"),
        (lambda: mask_distance_maps(np.ones((4, 5), bool)), "whole image"),
        (lambda: mask_distance_maps(mask[None]), r"mask must have shape \(H, W\)"),
        (lambda: mask_distance_maps(mask.astype(float) * 0.5), "only 0 and 1"),
        (lambda: mask_distance_maps([[0, 1]]), "mask must be"),
        (lambda: mask_contour_px(np.zeros((4, 5), bool)), "mask is empty"),
        (lambda: mask_contour_px(mask, window=(5, 0, 5, 10)), "window"),
        (lambda: mask_contour_px(mask, window=(-1, 0, 5, 10)), "window"),
        (lambda: mask_contour_px(mask, window=(0, 0, 5.5, 10)), "window"),
        (lambda: mask_contour_px(mask, window=(0, 0, 5)), "window"),
        (lambda: sample_map(torch.zeros(5), torch.zeros(3, 2)), r"values must be a floating-point \(H, W\)"),
        (lambda: sample_map(torch.zeros(1, 5), torch.zeros(3, 2)), "at least 2x2"),
        (lambda: sample_map(values.long(), torch.zeros(3, 2)), "values"),
        (lambda: sample_map(values, torch.zeros(3, 3)), r"points_px must have shape \(\.\.\., 2\)"),
        (lambda: sample_map(values, torch.zeros(3, 2, dtype=torch.long)), "points_px must be a floating-point"),
        (lambda: chamfer_to_points(torch.zeros(0, 2), torch.zeros(3, 2)), "contour_px is empty"),
        (lambda: chamfer_to_points(contour, torch.zeros(0, 2)), "points_px is empty"),
        (lambda: chamfer_to_points(contour[None], torch.zeros(3, 2)), r"contour_px must have shape \(N, 2\)"),
        (lambda: chamfer_to_points(contour, torch.zeros(3, 2, 2)), r"points_px must have shape \(N, 2\)"),
        (lambda: chamfer_to_points(contour, torch.zeros(3, 2), chunk_elements=0), "chunk_elements"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
