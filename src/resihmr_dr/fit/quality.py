"""Quality checks of a finished fit: is it a fit the user can trust, or a non-converged one?

A fit is flagged (never silently written as good) when:

* a loss, a parameter or a mesh vertex is NaN/Inf (the optimisation diverged);
* the mean 2D error of the labelled COCO keypoints is above a threshold that scales with the
  person's size in the image (see :class:`QualityConfig`);
* the cut-and-capped mesh (posed or T-pose) is not watertight, not winding-consistent, or has
  no positive volume (the stump measurements would be meaningless).

Pure functions on arrays; ``resihmr_dr.fit.pipeline`` calls :func:`check_quality`, whose
:class:`Quality` is ``metrics.json``'s ``quality`` entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import trimesh

from resihmr_dr.data.ldpose import NUM_COCO_KEYPOINTS


@dataclass(frozen=True)
class QualityConfig:
    """Thresholds of the non-convergence checks (``configs/default.yaml``: ``fit.quality``).

    The keypoint threshold is ``max(min_keypoint_error_px, max_keypoint_error_frac * size_px)``
    where ``size_px`` is the diagonal of the box around the person's labelled keypoints. With the
    default 0.05, a person 500 px tall (diagonal ~520 px) gets ~26 px, the "25 px" rule of thumb
    for full-HD person crops; a 60 px tall person gets the 3 px floor instead of an error larger
    than their head, and a 3000 px person gets ~150 px instead of rejecting fits that are
    sub-percent accurate. A converged fit on clean keypoints is at 1-3 px; a fit stuck in the
    wrong orientation or a collapsed pose is at 10-30 % of the person's size.
    """

    max_keypoint_error_frac: float = 0.05
    min_keypoint_error_px: float = 3.0
    check_mesh: bool = True

    def __post_init__(self) -> None:
        if not (math.isfinite(self.max_keypoint_error_frac) and self.max_keypoint_error_frac > 0):
            raise ValueError(f"max_keypoint_error_frac must be > 0, got {self.max_keypoint_error_frac}")
        if not (math.isfinite(self.min_keypoint_error_px) and self.min_keypoint_error_px >= 0):
            raise ValueError(f"min_keypoint_error_px must be >= 0, got {self.min_keypoint_error_px}")


@dataclass(frozen=True)
class Quality:
    """The verdict of the non-convergence checks: ``ok`` (no problem found), the problems (one
    sentence each), the mean error (px) of the labelled COCO keypoints (NaN when none is labelled)
    and the threshold (px) it was held to."""

    ok: bool
    problems: tuple[str, ...]
    keypoint_error_px: float
    keypoint_threshold_px: float

    def to_dict(self) -> dict:
        """``metrics.json``'s ``quality`` entry: ``{"ok", "problems", "keypoint_error_px",
        "keypoint_threshold_px"}``."""
        return {
            "ok": self.ok,
            "problems": list(self.problems),
            "keypoint_error_px": self.keypoint_error_px,
            "keypoint_threshold_px": self.keypoint_threshold_px,
        }


def person_size_px(keypoints_px: np.ndarray) -> float:
    """Diagonal (px) of the box around the labelled keypoints of a (25, 3) ``[x, y, v]`` array
    (0 if fewer than two are labelled)."""
    kp = np.asarray(keypoints_px, dtype=np.float64)
    labelled = kp[kp[:, 2] > 0, :2]
    if len(labelled) < 2:
        return 0.0
    return float(np.linalg.norm(labelled.max(axis=0) - labelled.min(axis=0)))


def keypoint_threshold_px(keypoints_px: np.ndarray, config: QualityConfig) -> float:
    """The intact keypoint error (px) above which a fit counts as not converged."""
    return max(config.min_keypoint_error_px, config.max_keypoint_error_frac * person_size_px(keypoints_px))


def mesh_problems(verts: np.ndarray, faces: np.ndarray, *, name: str) -> list[str]:
    """Why a (V, 3) / (F, 3) triangle mesh is not a closed, consistently oriented solid ([] if it is)."""
    verts = np.asarray(verts, dtype=np.float64)
    if not np.all(np.isfinite(verts)):
        return [f"{name} has NaN/Inf vertices"]
    mesh = trimesh.Trimesh(verts, np.asarray(faces, dtype=np.int64), process=False)
    problems = []
    if not mesh.is_watertight:
        problems.append(f"{name} is not watertight")
    if not mesh.is_winding_consistent:
        problems.append(f"{name} has inconsistent face winding")
    if not problems and not mesh.volume > 0:
        problems.append(f"{name} has non-positive volume {mesh.volume:.3g} m^3")
    return problems


def check_quality(
    *,
    keypoints_px: np.ndarray,
    pred_keypoints_px: np.ndarray,
    losses: dict[str, tuple[float, ...]],
    params: dict[str, np.ndarray],
    meshes: dict[str, tuple[np.ndarray, np.ndarray]],
    config: QualityConfig = QualityConfig(),
) -> Quality:
    """Run every check on a finished fit.

    keypoints_px: (25, 3) annotation ``[x, y, v]``; pred_keypoints_px: (25, 2) the fit's
    keypoints (pixels); losses: stage name -> per-iteration losses; params: name -> array of the
    fitted body parameters; meshes: name -> (verts (V, 3), faces (F, 3)).
    """
    problems: list[str] = []
    for stage, values in losses.items():
        if not all(math.isfinite(v) for v in values):
            problems.append(f"loss of stage {stage!r} is not finite")
    for key, value in params.items():
        if not np.all(np.isfinite(np.asarray(value, dtype=np.float64))):
            problems.append(f"parameter {key!r} is not finite")
    kp = np.asarray(keypoints_px, dtype=np.float64)
    pred = np.asarray(pred_keypoints_px, dtype=np.float64)
    coco = np.zeros(len(kp), dtype=bool)
    coco[:NUM_COCO_KEYPOINTS] = True
    used = coco & (kp[:, 2] > 0)
    error = float(np.linalg.norm(pred[used] - kp[used, :2], axis=1).mean()) if used.any() else math.nan
    threshold = keypoint_threshold_px(kp, config)
    if not math.isfinite(error):
        problems.append("intact keypoint error is not finite")
    elif error > threshold:
        problems.append(
            f"intact keypoint error {error:.1f} px is above the threshold {threshold:.1f} px "
            f"({config.max_keypoint_error_frac:g} of the person's {person_size_px(kp):.0f} px size)"
        )
    if config.check_mesh:
        for name, (verts, faces) in meshes.items():
            problems.extend(mesh_problems(verts, faces, name=name))
    return Quality(ok=not problems, problems=tuple(problems), keypoint_error_px=error, keypoint_threshold_px=threshold)
