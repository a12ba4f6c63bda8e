"""Metrics on hand-made cases where the answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from resihmr_dr.fit.measures import keypoint_mpjpe_px, mask_iou


def test_mpjpe_groups():
    gt = np.zeros((25, 3))
    gt[[5, 6], 2] = 2  # two intact keypoints
    gt[23] = [10.0, 10.0, 2]  # one residual endpoint
    pred = np.zeros((25, 2))
    pred[5] = [3.0, 4.0]  # 5 px off
    pred[23] = [10.0, 20.0]  # 10 px off
    pred[0] = [100.0, 100.0]  # unlabelled: ignored
    m = keypoint_mpjpe_px(pred_px=pred, gt_px=gt)
    assert m["intact"] == pytest.approx(2.5)
    assert m["res_limb"] == pytest.approx(10.0)
    assert m["body"] == pytest.approx(5.0)


def test_mpjpe_without_residual_keypoints_is_nan():
    gt = np.zeros((25, 3))
    gt[:17, 2] = 2
    m = keypoint_mpjpe_px(pred_px=np.zeros((25, 2)), gt_px=gt)
    assert math.isnan(m["res_limb"]) and m["intact"] == 0.0


def test_mpjpe_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        keypoint_mpjpe_px(pred_px=np.zeros((17, 2)), gt_px=np.zeros((25, 3)))


def test_mask_iou_known_cases():
    a = np.zeros((10, 10), bool)
    a[:5] = True
    b = np.zeros((10, 10), bool)
    b[:, :5] = True
    assert mask_iou(a, a) == 1.0
    assert mask_iou(a, ~a) == 0.0
    assert mask_iou(a, b) == pytest.approx(25 / 75)
    assert math.isnan(mask_iou(np.zeros((2, 2), bool), np.zeros((2, 2), bool)))
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((5, 5), bool))
