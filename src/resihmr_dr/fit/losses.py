"""Pure loss terms of the intact-body fit (SMPLify-X style).

Every function takes batched tensors and returns a (B,) tensor (one value per person); none holds
state. Pixel quantities are in the image's pixel frame (x right, y down), angles in radians.
"""

from __future__ import annotations

import torch


def gmof(sq_dist: torch.Tensor, *, rho: float) -> torch.Tensor:
    """Geman-McClure robust penalty of squared distances: ``rho^2 d / (d + rho^2)``.

    sq_dist: (...) squared residual norms (>= 0), same units as ``rho^2``. Returns (...).
    Quadratic (~ d) for ``d << rho^2``, saturating at ``rho^2`` for outliers.
    """
    if rho <= 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    rho_sq = rho * rho
    return rho_sq * sq_dist / (sq_dist + rho_sq)


def keypoint_data_term(
    kp2d_px: torch.Tensor,
    target_px: torch.Tensor,
    weights: torch.Tensor,
    *,
    rho: float | None,
) -> torch.Tensor:
    """Weighted (robust) 2D keypoint reprojection term.

    kp2d_px: (B, J, 2) projected model keypoints; target_px: (B, J, 2) or (J, 2) observed
    keypoints; weights: (B, J) or (J,) per-keypoint confidences (0 = unused). ``rho=None`` gives
    the plain squared error, else Geman-McClure with scale ``rho`` px.
    Returns (B,) ``sum_j w_j rho(|kp_j - target_j|^2)`` in px^2.
    """
    sq = (kp2d_px - target_px).square().sum(-1)  # (B, J)
    per_kp = sq if rho is None else gmof(sq, rho=rho)
    return (weights * per_kp).sum(-1)


def l2_prior(
    values: torch.Tensor,
    *,
    mean: torch.Tensor | float = 0.0,
    scale: torch.Tensor | float = 1.0,
) -> torch.Tensor:
    """Sum of squared standardised deviations, ``sum ((x - mean) / scale)^2`` over all but dim 0.

    values: (B, ...). Returns (B,).
    """
    z = (values - mean) / scale
    return z.square().reshape(z.shape[0], -1).sum(-1)


def hyperextension_penalty(flexion: torch.Tensor, *, margin: float = 0.0) -> torch.Tensor:
    """Hinge penalty on hyper-extension: ``sum relu(-(flexion + margin))^2`` over hinges.

    flexion: (B, H) radians (see ``body.hinges.flexion_angles``). Zero for any flexed joint; quadratic in
    the hyper-extension angle (continuously differentiable, suits L-BFGS). Returns (B,).
    """
    return torch.relu(-(flexion + margin)).square().sum(-1)


def depth_prior(transl_cam: torch.Tensor, *, depth_m: torch.Tensor | float) -> torch.Tensor:
    """``(t_z - depth)^2`` keeping the camera-frame depth near its initial estimate. transl_cam: (B, 3)."""
    return (transl_cam[:, 2] - depth_m).square()
