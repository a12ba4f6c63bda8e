"""Figures researchers put in papers (matplotlib, no screen needed)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from resihmr_dr.data.ldpose import COCO_SKELETON, KEYPOINT_NAMES, LIMBS, NUM_COCO_KEYPOINTS  # noqa: E402

RESIDUAL_RGB = (0.85, 0.1, 0.1)


def draw_keypoints(ax, keypoints_px: np.ndarray) -> None:
    """LDpose keypoints (25, 3) on an image axis: COCO skeleton in white, residual endpoints red."""
    kp = keypoints_px
    for a, b in COCO_SKELETON:
        if kp[a, 2] > 0 and kp[b, 2] > 0:
            ax.plot(kp[[a, b], 0], kp[[a, b], 1], "-", color="white", lw=1.5, alpha=0.8)
    # Connect each residual endpoint to its anchor joint.
    for limb in LIMBS:
        for end, anchor in ((limb.above_end, limb.root), (limb.below_end, limb.middle)):
            if kp[end, 2] > 0 and kp[anchor, 2] > 0:
                ax.plot(kp[[anchor, end], 0], kp[[anchor, end], 1], "-", color=RESIDUAL_RGB, lw=2.5)
    coco = kp[:NUM_COCO_KEYPOINTS]
    vis = coco[:, 2] > 0
    ax.scatter(coco[vis, 0], coco[vis, 1], s=14, c="tab:blue", edgecolors="white", linewidths=0.5, zorder=3)
    ends = kp[NUM_COCO_KEYPOINTS:]
    for i in np.flatnonzero(ends[:, 2] > 0):
        ax.scatter(ends[i, 0], ends[i, 1], s=40, c=[RESIDUAL_RGB], marker="X", edgecolors="white", zorder=4)
        ax.annotate(KEYPOINT_NAMES[NUM_COCO_KEYPOINTS + i], ends[i, :2], color="white", fontsize=7,
                    xytext=(6, -6), textcoords="offset points")  # fmt: skip


def save_annotation_overview(
    path: str | Path,
    *,
    image_rgb: np.ndarray,
    keypoints_px: np.ndarray,
    mask: np.ndarray | None,
    title: str,
) -> None:
    """Two panels: the image with the LDpose keypoints, and the person mask. Written as PNG."""
    fig, axes = plt.subplots(1, 2, figsize=(8, 5.4), dpi=120)
    axes[0].imshow(image_rgb)
    draw_keypoints(axes[0], keypoints_px)
    axes[0].set_title("image and LDpose keypoints", fontsize=9)
    if mask is not None:
        axes[1].imshow(image_rgb)
        axes[1].imshow(np.ma.masked_where(~mask, mask), cmap="autumn", alpha=0.45)
        axes[1].set_title("person mask", fontsize=9)
    else:
        axes[1].text(0.5, 0.5, "no mask", ha="center", va="center")
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
