"""2D metrics of the paper's Table 1: keypoint MPJPE (Body / Res-Limb / Intact) and mask IoU."""

from __future__ import annotations

import math

import numpy as np

from resihmr_dr.data.ldpose import NUM_COCO_KEYPOINTS, NUM_KEYPOINTS


def keypoint_mpjpe_px(*, pred_px: np.ndarray, gt_px: np.ndarray) -> dict[str, float]:
    """Mean 2D keypoint error in pixels over the labelled ground-truth keypoints.

    pred_px: (25, 2) predicted LDpose keypoints (pixels); gt_px: (25, 3) ``[x, y, v]``.
    Returns ``body`` (all labelled keypoints), ``res_limb`` (residual endpoints 17-24) and
    ``intact`` (labelled COCO keypoints 0-16); NaN where a group has no labelled keypoint.
    """
    pred_px = np.asarray(pred_px, dtype=np.float64)
    gt_px = np.asarray(gt_px, dtype=np.float64)
    if pred_px.shape != (NUM_KEYPOINTS, 2) or gt_px.shape != (NUM_KEYPOINTS, 3):
        raise ValueError(f"expected pred (25, 2) and gt (25, 3), got {pred_px.shape} and {gt_px.shape}")
    labelled = gt_px[:, 2] > 0
    err = np.linalg.norm(pred_px - gt_px[:, :2], axis=1)
    is_residual = np.arange(NUM_KEYPOINTS) >= NUM_COCO_KEYPOINTS

    def mean(sel: np.ndarray) -> float:
        values = err[sel & labelled]
        return float(values.mean()) if values.size else math.nan

    return {"body": mean(np.ones(NUM_KEYPOINTS, bool)), "res_limb": mean(is_residual), "intact": mean(~is_residual)}


def mask_iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Intersection over union of two (H, W) boolean masks (NaN if both are empty)."""
    pred, gt = np.asarray(pred, dtype=bool), np.asarray(gt, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"mask shapes differ: {pred.shape} vs {gt.shape}")
    union = np.logical_or(pred, gt).sum()
    return float(np.logical_and(pred, gt).sum() / union) if union else math.nan
