"""Writing the synthetic benchmark (``resihmr-dr synth``): images, masks, annotations, ground truth.

Output layout (``out_dir``)::

    annotations.json            LDpose-format (25 keypoints, camera intrinsics, mask_path)
    images/000001.png           shaded render on a plain / gradient / textured background
    masks/000001.png            person mask (0/255)
    gt/index.json               one entry per sample: image, ann_id, gt folder, residual types
    gt/000001_1/gt.json         ground truth (camera frame, metres): see ``sample_ground_truth``
    gt/000001_1/mesh.ply        the true mesh (with its stumps) in the camera frame, float64
    gt/000001_1/labels.npz      per-vertex segment labels and source vertex of the intact Anny mesh

With ``views`` N > 1 (``synth --views N``) every person is N images of one body: person ``i``
(from 0) view ``k`` is image and annotation ``i * N + k + 1`` (``images/``, ``masks/``,
``gt/<image>_<ann>/`` as above, one folder per view, its mesh in that view's camera frame); every
annotation carries ``person_id`` (``p0001``, ...), every image's camera the extrinsics ``R``,
``t`` (world: view 0's camera frame); each ``gt.json`` and ``gt/index.json`` sample records
``person_id``, ``view`` and ``view_name`` (``yaw090``), ``gt.json`` also ``extrinsics``;
``gt/index.json`` lists the ``subjects`` (person id and its annotation ids, view order) and the
generator's ``views``, ``view_yaw_step_deg`` and ``view_pose``.

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
Deterministic: sample ``i`` depends only on ``(seed, i)`` and the options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from resihmr_dr.atomic import atomic_write_json, json_value
from resihmr_dr.body.base import JOINT_INDEX, BodyModel
from resihmr_dr.data.ldpose import KEYPOINT_NAMES
from resihmr_dr.eval.synth.sample import SynthSample, generate_sample, generate_views
from resihmr_dr.eval.synth.scene import parse_types
from resihmr_dr.eval.synth.views import VIEW_POSES, view_yaws

__all__ = ["generate_dataset", "sample_ground_truth", "write_ply"]


def write_ply(path: Path, verts: np.ndarray, faces: np.ndarray) -> None:
    """Binary little-endian PLY: (V, 3) float64 vertices, (F, 3) int32 triangles.

    Its own writer: trimesh's PLY export stores float32 vertices, and the ground truth keeps
    float64 (``trimesh.load`` reads these back exactly).
    """
    verts = np.ascontiguousarray(verts, dtype="<f8")
    faces = np.asarray(faces, dtype="<i4")
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(verts)}\nproperty double x\nproperty double y\nproperty double z\n"
        f"element face {len(faces)}\nproperty list uchar int vertex_indices\nend_header\n"
    ).encode("ascii")
    rows = np.empty(len(faces), dtype=[("n", "u1"), ("idx", "<i4", (3,))])
    rows["n"] = 3
    rows["idx"] = faces
    path.write_bytes(header + verts.tobytes() + rows.tobytes())


def sample_ground_truth(sample: SynthSample, *, body: BodyModel) -> dict:
    """The ``gt.json`` content: camera, body params (Anny), joints_cam (15, JOINT_NAMES),
    keypoints (clean and as written), and per residual limb its
    :meth:`~resihmr_dr.eval.limb_truth.LimbTruth.to_dict` (type, shape, lambda, endpoint_cam, ...,
    the measurements: residual length, stump volume, cross-sections).

    A view of a multi-view person (``sample.view`` set) also records ``view`` (its index),
    ``view_name`` (``yaw090``), ``view_kind`` (the scene's drawn view of view 0: front,
    three_quarter or side; a single view's ``view``) and ``extrinsics`` (``R``, ``t``: view 0's
    camera frame to this one's); ``yaw_deg`` is the body's yaw as this view's camera sees it."""
    info = dict(sample.info)
    if sample.view is not None:
        info["view_kind"] = info.pop("view")
        info.update(view=sample.view.index, view_name=sample.view.name, extrinsics=sample.view.extrinsics_dict())
    return json_value(
        {
            "body_model": body.name,
            "shape_names": list(body.shape_names),
            "pose_joint_names": list(body.pose_joint_names),
            "body_params": sample.params.to_dict(),
            "camera": sample.camera.to_dict(),
            "joint_names": list(JOINT_INDEX),
            "joints_cam": sample.joints_cam,
            "keypoint_names": list(KEYPOINT_NAMES),
            "keypoints_clean_px": sample.keypoints_clean_px,
            "keypoints_px": sample.keypoints_px,
            "residual_limbs": [limb.to_dict() for limb in sample.mesh.limbs],
            "mesh": "mesh.ply",
            "labels": "labels.npz",
            "num_verts": len(sample.mesh.verts),
            "num_faces": len(sample.mesh.faces),
            **info,
        },
        digits=7,
    )


@dataclass(frozen=True)
class _Written:
    """One written image's entries: its ``images`` and ``annotations`` entries and its
    ``gt/index.json`` sample."""

    image: dict
    annotation: dict
    index: dict


def _write_sample(
    out: Path, sample: SynthSample, *, body: BodyModel, image_id: int, ann_id: int, person_id: str | None
) -> _Written:
    """Write one image, its mask and its ground truth folder; returns its entries (a multi-view
    person's carry ``person_id``, the camera's extrinsics and the view)."""
    stem = f"{image_id:06d}"
    Image.fromarray(sample.image).save(out / "images" / f"{stem}.png")
    Image.fromarray(np.where(sample.mask, 255, 0).astype(np.uint8)).save(out / "masks" / f"{stem}.png")
    ys, xs = np.nonzero(sample.mask)
    cam = sample.camera
    camera = {"fx": cam.fx, "fy": cam.fy, "cx": cam.cx, "cy": cam.cy}
    if sample.view is not None:
        camera.update(sample.view.extrinsics_dict())
    image = {
        "id": image_id,
        "file_name": f"images/{stem}.png",
        "width": cam.width,
        "height": cam.height,
        "camera": camera,
    }
    kp = sample.keypoints_px
    annotation = {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "iscrowd": 0,
        "keypoints": [round(float(v), 3) for v in kp.flatten()],
        "num_keypoints": int((kp[:, 2] > 0).sum()),
        "bbox": [
            float(xs.min()),
            float(ys.min()),
            float(xs.max() - xs.min() + 1),
            float(ys.max() - ys.min() + 1),
        ],
        "area": float(sample.mask.sum()),
        "mask_path": f"masks/{stem}.png",
    }
    if person_id is not None:
        annotation["person_id"] = person_id
    gt_dir = out / "gt" / f"{stem}_{ann_id}"
    gt_dir.mkdir(parents=True, exist_ok=True)
    write_ply(gt_dir / "mesh.ply", sample.mesh.verts, sample.mesh.faces)
    with open(gt_dir / "labels.npz", "wb") as fh:
        np.savez_compressed(
            fh,
            vertex_segment=sample.mesh.vertex_segment,
            source_vertex=sample.mesh.source_vertex,
        )
    gt = sample_ground_truth(sample, body=body)
    gt.update({"image_id": image_id, "ann_id": ann_id, "file_name": f"images/{stem}.png"})
    if person_id is not None:
        gt["person_id"] = person_id
    atomic_write_json(gt_dir / "gt.json", gt, indent=1)
    index = {
        "image_id": image_id,
        "ann_id": ann_id,
        "file_name": f"images/{stem}.png",
        "gt_dir": f"{stem}_{ann_id}",
        "residual_types": sample.info["residual_types"],
        "stump_shapes": [limb.shape.name for limb in sample.mesh.limbs],
    }
    if sample.view is not None:
        index.update(person_id=person_id, view=sample.view.index, view_name=sample.view.name)
    return _Written(image, annotation, index)


def generate_dataset(
    out_dir: str | Path,
    *,
    count: int,
    seed: int = 0,
    types: str | Sequence[str] | None = None,
    noise_px: float | Sequence[float] = 0.0,
    drop_prob: float = 0.0,
    image_size: int = 512,
    image_noise: float = 0.0,
    views: int = 1,
    view_yaw_step_deg: float = 90.0,
    view_pose: str = "same",
    body: BodyModel | None = None,
    progress: bool = True,
) -> Path:
    """Write ``count`` people to ``out_dir`` (layout in the module docstring); returns the path
    of ``annotations.json``. See :func:`~resihmr_dr.eval.synth.sample.generate_sample` for the options.

    noise_px: one keypoint noise level (px), or several: each round of residual types (the
    primary type cycles through ``types``) gets the next level, so every type and stump shape
    is seen at every level once the count allows; a sample's level is in its ``gt.json``.
    views: images per person (:func:`~resihmr_dr.eval.synth.sample.generate_views`, the camera
    ring ``view_yaw_step_deg`` apart, pose ``view_pose``); 1 writes exactly the single-view
    benchmark. With more, person ``i`` (from 0) view ``k`` is image and annotation
    ``i * views + k + 1``, every annotation carries ``person_id`` ``p%04d`` of ``i + 1`` and
    every camera its extrinsics (world: view 0's camera frame).
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    view_yaws(views, view_yaw_step_deg)
    if view_pose not in VIEW_POSES:
        raise ValueError(f"unknown view_pose {view_pose!r}; expected one of {', '.join(VIEW_POSES)}")
    allowed = parse_types(types)
    levels = (float(noise_px),) if np.isscalar(noise_px) else tuple(float(v) for v in noise_px)
    if not levels:
        raise ValueError("noise_px needs at least one level")
    if body is None:
        from resihmr_dr.body.anny_model import AnnyBody

        body = AnnyBody()
    out = Path(out_dir)
    for sub in ("images", "masks", "gt"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    written: list[_Written] = []
    subjects: list[dict] = []
    iterator = range(count)
    if progress:
        from tqdm import tqdm

        iterator = tqdm(iterator, desc="synth", unit="person")
    for i in iterator:
        options = dict(
            index=i,
            seed=seed,
            types=allowed,
            noise_px=levels[(i // len(allowed)) % len(levels)],
            drop_prob=drop_prob,
            image_size=image_size,
            image_noise=image_noise,
        )
        if views == 1:
            sample = generate_sample(body, **options)
            written.append(_write_sample(out, sample, body=body, image_id=i + 1, ann_id=i + 1, person_id=None))
            continue
        samples = generate_views(body, views=views, yaw_step_deg=view_yaw_step_deg, view_pose=view_pose, **options)
        person_id = f"p{i + 1:04d}"
        for k, sample in enumerate(samples):
            ids = i * views + k + 1
            written.append(_write_sample(out, sample, body=body, image_id=ids, ann_id=ids, person_id=person_id))
        subjects.append({"person_id": person_id, "ann_ids": [w.annotation["id"] for w in written[-views:]]})
    generator = {
        "count": count,
        "seed": seed,
        "types": list(allowed),
        "noise_px": levels[0] if len(levels) == 1 else list(levels),
        "drop_prob": drop_prob,
        "image_size": image_size,
        "image_noise": image_noise,
    }
    if views > 1:
        generator.update(views=views, view_yaw_step_deg=view_yaw_step_deg, view_pose=view_pose)
    doc = {
        "info": {
            "description": "resihmr_dr synthetic amputee benchmark (Anny renders with true stumps)",
            "generator": generator,
        },
        "images": [w.image for w in written],
        "annotations": [w.annotation for w in written],
        "categories": [{"id": 1, "name": "person"}],
    }
    path = out / "annotations.json"
    atomic_write_json(path, doc, indent=1)
    index = {"samples": [w.index for w in written], **doc["info"]}
    if views > 1:
        index["subjects"] = subjects
    atomic_write_json(out / "gt" / "index.json", index, indent=1)
    return path
