"""The synthetic sample's LDpose keypoints: the clean labels of a stumped body, then the written
ones (Gaussian noise, dropped keypoints).

Frames: camera frame (OpenCV x right, y down, z forward, metres) in; pixels ``_px`` out, as
``[x, y, v]`` rows (v = 0 unlabelled, 1 occluded, 2 visible).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.ldpose import KEYPOINT_INDEX, LIMB_BY_NAME, NUM_KEYPOINTS
from resihmr_dr.eval.limb_truth import LimbTruth

__all__ = ["VISIBLE_DEPTH_TOL_M", "keypoints_25", "written_keypoints"]

VISIBLE_DEPTH_TOL_M = 0.12  # a keypoint is occluded (v = 1) when the surface is this much nearer


def keypoints_25(
    *,
    coco_cam: np.ndarray,
    limbs: Sequence[LimbTruth],
    camera: PinholeCamera,
    depth_map: np.ndarray,
) -> np.ndarray:
    """(25, 3) LDpose keypoints ``[x_px, y_px, v]`` of a stumped body.

    coco_cam: (17, 3) COCO keypoints of the intact body (camera frame); limbs: the residual
    limbs' truth (``make_stumped_mesh``); depth_map: (H, W) rendered depth (inf = background).
    Joints replaced by a residual endpoint and everything distal get v = 0; the endpoint gets the
    tip's projection. v = 1 where the rendered surface lies more than ``VISIBLE_DEPTH_TOL_M`` in
    front of the point, else 2.
    """
    points = np.zeros((NUM_KEYPOINTS, 3))
    labelled = np.zeros(NUM_KEYPOINTS, dtype=bool)
    points[:17] = coco_cam
    labelled[:17] = True
    for entry in limbs:
        limb, status = entry.limb, entry.status
        absent = (limb.middle, limb.distal) if status is limb.above_status else (limb.distal,)
        labelled[list(absent)] = False
        idx = limb.endpoint_index(status)
        points[idx] = entry.endpoint_cam
        labelled[idx] = True
    xy = camera.project(torch.as_tensor(points)).numpy()
    kp = np.zeros((NUM_KEYPOINTS, 3))
    h, w = depth_map.shape
    for i in np.flatnonzero(labelled):
        col, row = int(np.rint(xy[i, 0])), int(np.rint(xy[i, 1]))
        surface = depth_map[min(max(row, 0), h - 1), min(max(col, 0), w - 1)]
        occluded = np.isfinite(surface) and surface < points[i, 2] - VISIBLE_DEPTH_TOL_M
        kp[i] = (xy[i, 0], xy[i, 1], 1.0 if occluded else 2.0)
    return kp


def written_keypoints(
    keypoints_clean_px: np.ndarray,
    rng: np.random.Generator,
    *,
    limbs: Sequence[LimbTruth],
    noise_px: float,
    drop_prob: float,
) -> np.ndarray:
    """(25, 3) the keypoints as written: the clean ones (25, 3) with Gaussian noise of std
    ``noise_px`` on every labelled keypoint, then each droppable one (the face, and the
    elbows/wrists/knees/ankles of intact limbs; never the torso, a residual limb's joints or
    endpoint) dropped (v = 0) with probability ``drop_prob``."""
    kp = keypoints_clean_px.copy()
    labelled = kp[:, 2] > 0
    if noise_px > 0:
        kp[labelled, :2] += rng.normal(0.0, noise_px, size=(int(labelled.sum()), 2))
    if drop_prob > 0:
        for i in _droppable(limbs):
            if kp[i, 2] > 0 and rng.uniform() < drop_prob:
                kp[i] = 0.0
    return kp


def _droppable(limbs: Sequence[LimbTruth]) -> list[int]:
    """Keypoints that may be dropped: the face, and the elbows/wrists/knees/ankles of intact limbs
    (never the torso, a residual limb's joints or endpoint)."""
    residual = {entry.limb_name for entry in limbs}
    out = [KEYPOINT_INDEX[n] for n in ("nose", "left_eye", "right_eye", "left_ear", "right_ear")]
    for name, limb in LIMB_BY_NAME.items():
        if name not in residual:
            out += [limb.middle, limb.distal]
    return sorted(out)
