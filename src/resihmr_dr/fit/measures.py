"""The 2D measures of the paper's Table 1, for the fit's own metrics and for the evaluator: the
predicted LDpose keypoints of a fit, keypoint MPJPE (Body / Res-Limb / Intact) and mask IoU.

A stage-level module: the pipeline records them in ``metrics.json``, and ``resihmr_dr.eval``
scores every method with the same functions. Pixels ``_px``; camera frame (metres) ``_cam``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import NUM_COCO_KEYPOINTS, NUM_KEYPOINTS

__all__ = ["keypoint_mpjpe_px", "mask_iou", "predicted_keypoints_px"]


def predicted_keypoints_px(
    *, camera: PinholeCamera, coco_cam: np.ndarray, endpoints_cam: Mapping[int, np.ndarray]
) -> np.ndarray:
    """(25, 2) px: the 17 COCO keypoints (17, 3) and residual endpoints (keypoint index -> (3,))
    projected; 0 for the endpoints of limbs without one."""
    pred = np.zeros((NUM_KEYPOINTS, 2))
    pred[:NUM_COCO_KEYPOINTS] = camera.project(torch.as_tensor(coco_cam, dtype=torch.float64)).numpy()
    for index, point in endpoints_cam.items():
        pred[index] = camera.project(torch.as_tensor(np.asarray(point), dtype=torch.float64)).numpy()
    return pred


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
