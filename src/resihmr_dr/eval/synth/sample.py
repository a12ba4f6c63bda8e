"""One synthetic sample: an Anny person with true stumps, rendered and labelled.

:func:`generate_sample` draws the scene (:mod:`.scene`), poses the body, cuts and closes its
residual limbs (:mod:`.stumped`), renders it (:mod:`.shading`) and labels its keypoints
(:mod:`.keypoints`), in that order from one random generator seeded by ``(seed, index)``.

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from resihmr_dr.body.base import BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.eval.synth.keypoints import keypoints_25, written_keypoints
from resihmr_dr.eval.synth.scene import RESIDUAL_TYPES, frame_camera, parse_types, sample_scene
from resihmr_dr.eval.synth.shading import render_person
from resihmr_dr.eval.synth.stumped import StumpedMesh, make_stumped_mesh
from resihmr_dr.stump.cut import CutError

__all__ = ["SynthSample", "generate_sample"]


@dataclass(frozen=True)
class SynthSample:
    """One generated sample: image (H, W, 3) uint8, mask (H, W) bool, keypoints_px (25, 3) as
    written (noise, drops), keypoints_clean_px (25, 3), camera, body params, the stumped mesh,
    joints_cam (15, 3) ``JOINT_NAMES`` of the intact posed body, and ``info`` (pose, view, yaw,
    pitch, background, focal length, residual types, keypoint noise)."""

    image: np.ndarray
    mask: np.ndarray
    keypoints_px: np.ndarray
    keypoints_clean_px: np.ndarray
    camera: PinholeCamera
    params: BodyParams
    mesh: StumpedMesh
    joints_cam: np.ndarray
    info: dict = field(default_factory=dict)


def generate_sample(
    body: BodyModel,
    *,
    index: int,
    seed: int,
    types: str | Sequence[str] | None = RESIDUAL_TYPES,
    noise_px: float = 0.0,
    drop_prob: float = 0.0,
    image_size: int = 512,
    image_noise: float = 0.0,
    max_tries: int = 8,
) -> SynthSample:
    """Sample ``index`` of the dataset with ``seed`` (deterministic in both).

    noise_px: std (px) of Gaussian noise added to the written keypoints; drop_prob: chance that
    each non-torso keypoint of an intact limb or the face is dropped (v = 0); image_noise: std of
    Gaussian noise added to the image's [0, 1] intensities.
    """
    if body.name != "anny":
        raise ValueError(f"the generator needs the Anny body, got {body.name!r}")
    types = parse_types(types)
    if noise_px < 0 or image_noise < 0 or not 0 <= drop_prob <= 1:
        raise ValueError("noise_px and image_noise must be >= 0 and drop_prob in [0, 1]")
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64 px, got {image_size}")
    rng = np.random.default_rng([int(seed), int(index)])
    last_error: Exception | None = None
    for _ in range(max_tries):
        try:
            return _try_sample(
                body,
                rng=rng,
                index=index,
                types=types,
                noise_px=noise_px,
                drop_prob=drop_prob,
                image_size=image_size,
                image_noise=image_noise,
            )
        except CutError as err:  # an unlucky cut: draw again (still deterministic)
            last_error = err
    raise RuntimeError(f"sample {index}: no valid person after {max_tries} tries ({last_error})")


def _try_sample(
    body: BodyModel,
    *,
    rng: np.random.Generator,
    index: int,
    types: tuple[str, ...],
    noise_px: float,
    drop_prob: float,
    image_size: int,
    image_noise: float,
) -> SynthSample:
    """One attempt at sample ``index`` (:func:`generate_sample`); CutError where a cut fails."""
    scene = sample_scene(rng, index=index, types=types, pose_joint_names=body.pose_joint_names, image_size=image_size)
    dtype = body.dtype
    params = BodyParams(
        global_orient=torch.tensor(scene.global_orient[None], dtype=dtype),
        body_pose=torch.tensor(scene.body_pose[None], dtype=dtype),
        shape=torch.tensor(scene.phenotype[None], dtype=dtype),
        transl=torch.zeros(1, 3, dtype=dtype),
    )
    with torch.no_grad():
        out0 = body(params)
    verts0 = out0.verts[0].double().numpy()
    camera, transl = frame_camera(
        verts0, image_size=image_size, focal_px=scene.focal_px, fill=scene.fill, shift_px=scene.shift_px
    )
    params = params.replace(transl=torch.tensor(transl[None], dtype=dtype))
    # The translation is added last in the camera frame (base.apply_global_transform).
    shift_cam = params.transl[0].double().numpy()
    verts_cam = verts0 + shift_cam
    joints_cam = out0.joints[0].double().numpy() + shift_cam
    coco_cam = out0.coco_kp[0].double().numpy() + shift_cam

    mesh = make_stumped_mesh(
        verts_cam=verts_cam,
        faces=body.faces.cpu().numpy(),
        vertex_segment=body.vertex_segment.cpu().numpy(),
        joints_cam=joints_cam,
        residuals=scene.residuals,
    )
    render = render_person(
        rng, mesh=mesh, joints_cam=joints_cam, camera=camera, image_size=image_size, image_noise=image_noise
    )
    kp_clean = keypoints_25(coco_cam=coco_cam, limbs=mesh.limbs, camera=camera, depth_map=render.depth_m)
    kp = written_keypoints(kp_clean, rng, limbs=mesh.limbs, noise_px=noise_px, drop_prob=drop_prob)
    info = {
        "pose": scene.pose_name,
        "view": scene.view,
        "yaw_deg": scene.yaw_deg,
        "pitch_deg": scene.pitch_deg,
        "background": render.background,
        "focal_px": scene.focal_px,
        "residual_types": [spec.type_name for spec in scene.residuals],
        "noise_px": noise_px,
    }
    return SynthSample(
        image=render.image,
        mask=render.mask,
        keypoints_px=kp,
        keypoints_clean_px=kp_clean,
        camera=camera,
        params=params,
        mesh=mesh,
        joints_cam=joints_cam,
        info=info,
    )
