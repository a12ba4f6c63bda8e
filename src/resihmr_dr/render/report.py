"""Report figures: the per-person overview (as the supplement's Fig. 7) and cross-sections."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure  # no pyplot: writing a figure never switches the caller's backend

from resihmr_dr.data.ldpose import COCO_SKELETON, KEYPOINT_NAMES, LIMBS, NUM_COCO_KEYPOINTS
from resihmr_dr.mesh_export import RESIDUAL_RGB, camera_to_model
from resihmr_dr.render.views import face_colours, render_view
from resihmr_dr.render.zbuffer import rasterize, shade

# PNG encoding: zlib level 1 writes the report ~3x faster than the default 6, ~15 % larger files.
PNG_OPTIONS = {"compress_level": 1}


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
        ax.annotate(
            KEYPOINT_NAMES[NUM_COCO_KEYPOINTS + i],
            ends[i, :2],
            color="white",
            fontsize=7,
            xytext=(6, -6),
            textcoords="offset points",
        )


def overlay(
    *, image_rgb: np.ndarray, verts_cam: np.ndarray, faces: np.ndarray, face_rgb: np.ndarray, camera, alpha: float = 0.7
) -> np.ndarray:
    """(H, W, 3) float image: the shaded mesh blended over the input image."""
    verts = torch.as_tensor(verts_cam)
    faces_t = torch.as_tensor(faces)
    fragments = rasterize(verts_cam=verts, faces=faces_t, camera=camera)
    base = image_rgb.astype(np.float64) / 255.0
    rendered = shade(verts_cam=verts, faces=faces_t, fragments=fragments, face_rgb=face_rgb, background=base)
    covered = fragments.mask.numpy()[..., None]
    return np.where(covered, alpha * rendered + (1 - alpha) * base, base)


def tpose_image(fit, *, face_rgb: np.ndarray) -> np.ndarray:
    """(480, 480, 3) the fit's T-pose mesh seen from the front (``face_rgb``: (F, 3) per face)."""
    return render_view(
        verts_model=torch.as_tensor(fit.verts_tpose),
        faces=torch.as_tensor(fit.faces_tpose),
        face_rgb=face_rgb,
        yaw_deg=0.0,
        size=(480, 480),
    )


def save_report(path: str | Path, *, fit, image_rgb: np.ndarray | None, mask: np.ndarray | None) -> None:
    """Input, overlay, front, back, side and T-pose views, the residual limb in red."""
    rgb_posed = face_colours(len(fit.faces), fit.faces, fit.residual_mask)
    rgb_tpose = face_colours(len(fit.faces_tpose), fit.faces_tpose, fit.residual_mask_tpose)
    verts_model = torch.as_tensor(
        camera_to_model(
            fit.verts_cam,
            global_orient=fit.params.global_orient[0].double().cpu().numpy(),
            transl=fit.params.transl[0].double().cpu().numpy(),
            root_model=fit.root_model,
        )
    )
    faces = torch.as_tensor(fit.faces)
    panels = []
    if image_rgb is not None:
        panels.append(("input", image_rgb.astype(np.float64) / 255.0, True))
        panels.append(
            (
                "overlay",
                overlay(
                    image_rgb=image_rgb, verts_cam=fit.verts_cam, faces=fit.faces, face_rgb=rgb_posed, camera=fit.camera
                ),
                False,
            )
        )
    for title, yaw in (("front", 0.0), ("back", 180.0), ("side", 90.0)):
        panels.append(
            (title, render_view(verts_model=verts_model, faces=faces, face_rgb=rgb_posed, yaw_deg=yaw), False)
        )
    panels.append(("T-pose", tpose_image(fit, face_rgb=rgb_tpose), False))
    fig = Figure(figsize=(2.6 * len(panels), 4.2), dpi=110)
    axes = fig.subplots(1, len(panels))
    for ax, (title, img, with_kp) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1))
        if with_kp:
            draw_keypoints(ax, fit.keypoints_px)
        ax.set_title(title, fontsize=9)
        ax.set_axis_off()
    residual = ", ".join(
        f"{r.limb_name} {r.status.value} λ={r.lam:.2f}{'' if r.accepted else ' (fallback)'}" for r in fit.rafo
    )
    iou = fit.metrics.mask_iou
    fig.suptitle(
        f"image {fit.image_id} / annotation {fit.ann_id} — {residual or 'no residual limb'} — "
        f"keypoint error {fit.metrics.body_px:.1f} px" + (f", mask IoU {iou:.3f}" if iou is not None else ""),
        fontsize=9,
    )
    # Fixed margins (the panels have no axes to lay out; tight_layout costs ~0.5 s a figure).
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.86, wspace=0.03)
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)


def save_cross_sections(path: str | Path, *, posed, tpose) -> None:
    """Cross-section area and perimeter along each residual limb (posed and T-pose)."""
    fig = Figure(figsize=(8, 3.2), dpi=110)
    axes = fig.subplots(1, 2)
    if not posed:
        for ax in axes:
            ax.text(0.5, 0.5, "no residual limb", ha="center", va="center")
            ax.set_axis_off()
    for geometry, style in ((posed, "-o"), (tpose, "--s")):
        for g in geometry:
            label = f"{g.limb_name} ({'T-pose' if geometry is tpose else 'posed'})"
            station_cm = np.asarray(g.station_m) * 100
            axes[0].plot(station_cm, np.asarray(g.area_m2) * 1e4, style, ms=3, label=label)
            axes[1].plot(station_cm, np.asarray(g.perimeter_m) * 100, style, ms=3, label=label)
    if posed:
        axes[0].set(xlabel="distance from anchor joint (cm)", ylabel="area (cm²)", title="cross-section area")
        axes[1].set(xlabel="distance from anchor joint (cm)", ylabel="perimeter (cm)", title="cross-section perimeter")
        axes[0].legend(fontsize=7)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.16, top=0.9, wspace=0.28)
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)


def save_subject_report(path: str | Path, *, views, images_rgb, title: str) -> None:
    """Every view of one person in one figure: per image its input with the keypoints and the
    fitted mesh over it (residual limb in red), and the shared T-pose. ``views``: the images'
    fits (``PersonFit``); ``images_rgb``: per view (H, W, 3) uint8 or None."""
    panels = []
    for fit, image in zip(views, images_rgb):
        rgb = face_colours(len(fit.faces), fit.faces, fit.residual_mask)
        base = np.zeros((fit.camera.height, fit.camera.width, 3), np.uint8) if image is None else image
        iou = fit.metrics.mask_iou
        label = f"image {fit.image_id}" + (f" IoU {iou:.3f}" if iou is not None else "")
        panels.append((f"{label}: input", base.astype(np.float64) / 255.0, fit))
        panels.append(
            (
                f"image {fit.image_id}: fit",
                overlay(image_rgb=base, verts_cam=fit.verts_cam, faces=fit.faces, face_rgb=rgb, camera=fit.camera),
                None,
            )
        )
    first = views[0]
    rgb = face_colours(len(first.faces_tpose), first.faces_tpose, first.residual_mask_tpose)
    panels.append(("T-pose (shared)", tpose_image(first, face_rgb=rgb), None))
    fig = Figure(figsize=(2.6 * len(panels), 4.2), dpi=110)
    axes = fig.subplots(1, len(panels))
    for ax, (name, img, with_kp) in zip(axes, panels):
        ax.imshow(np.clip(img, 0, 1))
        if with_kp is not None:
            draw_keypoints(ax, with_kp.keypoints_px)
        ax.set_title(name, fontsize=8)
        ax.set_axis_off()
    limbs = ", ".join(f"{s.limb.name} {s.status.value} λ={s.lam:.2f}" for s in first.limbs)
    fig.suptitle(f"{title} — {len(views)} images — {limbs or 'no residual limb'}", fontsize=9)
    fig.subplots_adjust(left=0.005, right=0.995, bottom=0.01, top=0.86, wspace=0.03)
    fig.savefig(path, pil_kwargs=PNG_OPTIONS)
