"""One synthetic sample: an Anny person with true stumps, rendered and labelled.

:func:`generate_sample` draws the scene (:mod:`.scene`), poses the body, cuts and closes its
residual limbs (:mod:`.stumped`), renders it (:mod:`.shading`) and labels its keypoints
(:mod:`.keypoints`), in that order from one random generator seeded by ``(seed, index)``.
:func:`generate_views` adds the further views of one person (the camera ring of :mod:`.views`).

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from resihmr_dr.body.base import JOINT_INDEX, BodyModel, BodyParams
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.eval.synth.keypoints import keypoints_25, written_keypoints
from resihmr_dr.eval.synth.scene import RESIDUAL_TYPES, Scene, frame_camera, parse_types, sample_scene
from resihmr_dr.eval.synth.shading import Clothing, render_person
from resihmr_dr.eval.synth.stumped import StumpedMesh, make_stumped_mesh
from resihmr_dr.eval.synth.views import (
    VIEW_POSES,
    ViewCamera,
    camera_ring,
    move_stumped_mesh,
    perturb_pose,
    view_global_orient,
)
from resihmr_dr.stump.cut import CutError

__all__ = ["SynthSample", "generate_sample", "generate_views"]


@dataclass(frozen=True)
class SynthSample:
    """One generated sample: image (H, W, 3) uint8, mask (H, W) bool, keypoints_px (25, 3) as
    written (noise, drops), keypoints_clean_px (25, 3), camera, body params, the stumped mesh,
    joints_cam (15, 3) ``JOINT_NAMES`` of the intact posed body, and ``info`` (pose, view, yaw,
    pitch, background, focal length, residual types, keypoint noise); view: its camera in the
    ring of a multi-view person (:func:`generate_views`; None for a single view)."""

    image: np.ndarray
    mask: np.ndarray
    keypoints_px: np.ndarray
    keypoints_clean_px: np.ndarray
    camera: PinholeCamera
    params: BodyParams
    mesh: StumpedMesh
    joints_cam: np.ndarray
    info: dict = field(default_factory=dict)
    view: ViewCamera | None = None


def _check_options(body: BodyModel, *, noise_px: float, drop_prob: float, image_size: int, image_noise: float) -> None:
    """ValueError naming the first bad option of :func:`generate_sample`."""
    if body.name != "anny":
        raise ValueError(f"the generator needs the Anny body, got {body.name!r}")
    if noise_px < 0 or image_noise < 0 or not 0 <= drop_prob <= 1:
        raise ValueError("noise_px and image_noise must be >= 0 and drop_prob in [0, 1]")
    if image_size < 64:
        raise ValueError(f"image_size must be >= 64 px, got {image_size}")


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
    return _first_view(
        body,
        index=index,
        seed=seed,
        types=types,
        noise_px=noise_px,
        drop_prob=drop_prob,
        image_size=image_size,
        image_noise=image_noise,
        max_tries=max_tries,
    )[0]


def _first_view(
    body: BodyModel,
    *,
    index: int,
    seed: int,
    types: str | Sequence[str] | None,
    noise_px: float,
    drop_prob: float,
    image_size: int,
    image_noise: float,
    max_tries: int,
) -> tuple[SynthSample, _Posed, Clothing]:
    """:func:`generate_sample` with its posed person and clothing."""
    _check_options(body, noise_px=noise_px, drop_prob=drop_prob, image_size=image_size, image_noise=image_noise)
    types = parse_types(types)
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


def generate_views(
    body: BodyModel,
    *,
    index: int,
    seed: int,
    views: int,
    yaw_step_deg: float = 90.0,
    view_pose: str = "same",
    types: str | Sequence[str] | None = RESIDUAL_TYPES,
    noise_px: float = 0.0,
    drop_prob: float = 0.0,
    image_size: int = 512,
    image_noise: float = 0.0,
    max_tries: int = 8,
) -> tuple[SynthSample, ...]:
    """``views`` samples of person ``index``: one body, shape, stumps and clothing seen by the
    camera ring of :mod:`.views` (view ``k`` turned ``k * yaw_step_deg`` about the body's
    vertical axis through the pelvis); each sample's ``view`` holds its camera and extrinsics.

    View 0 is :func:`generate_sample` (the same draws). Each further view draws its background,
    image noise and keypoint noise and drops from its own generator seeded by ``(seed, index, k)``.
    view_pose: ``same``: every view shows view 0's stumped mesh moved rigidly (its camera-frame
    mesh is ``R_k`` times view 0's plus ``t_k``); ``vary``: each further view perturbs the pose
    (:func:`~.views.perturb_pose`; shape, stump specs and translation kept) and cuts it again.
    The other options are :func:`generate_sample`'s.
    """
    if view_pose not in VIEW_POSES:
        raise ValueError(f"unknown view_pose {view_pose!r}; expected one of {', '.join(VIEW_POSES)}")
    first, posed, clothing = _first_view(
        body,
        index=index,
        seed=seed,
        types=types,
        noise_px=noise_px,
        drop_prob=drop_prob,
        image_size=image_size,
        image_noise=image_noise,
        max_tries=max_tries,
    )
    scene = posed.scene
    pelvis = posed.joints_cam[JOINT_INDEX["pelvis"]]
    ring = camera_ring(global_orient=scene.global_orient, centre_cam=pelvis, views=views, yaw_step_deg=yaw_step_deg)
    out = [dataclasses.replace(first, view=ring[0])]
    for view in ring[1:]:
        rng = np.random.default_rng([int(seed), int(index), view.index])
        world = posed if view_pose == "same" else _perturbed(body, posed, rng, max_tries=max_tries, view=view)
        sample, _ = _render_and_label(
            rng,
            _moved(world, view),
            noise_px=noise_px,
            drop_prob=drop_prob,
            image_size=image_size,
            image_noise=image_noise,
            clothing=clothing,
        )
        out.append(dataclasses.replace(sample, view=view))
    return tuple(out)


def _perturbed(body: BodyModel, posed: _Posed, rng: np.random.Generator, *, max_tries: int, view: ViewCamera) -> _Posed:
    """View 0's person with a perturbed pose (``--view-pose vary``), posed and cut in view 0's
    camera frame (its translation kept); redrawn where a cut fails."""
    transl = posed.params.transl[0].double().numpy()
    last_error: Exception | None = None
    for _ in range(max_tries):
        pose = perturb_pose(posed.scene.body_pose, rng, pose_joint_names=body.pose_joint_names)
        try:
            return _pose_and_cut(body, scene=posed.scene, body_pose=pose, transl=transl, image_size=posed.camera.width)
        except CutError as err:
            last_error = err
    raise RuntimeError(f"view {view.name}: no valid perturbed pose after {max_tries} tries ({last_error})")


def _moved(posed: _Posed, view: ViewCamera) -> _Posed:
    """A posed person (view 0's camera frame) as ``view`` sees it: the mesh, joints and keypoints
    moved rigidly, the body's global orientation and the scene's yaw turned with them."""
    orient = view_global_orient(posed.scene.global_orient, view)
    params = posed.params
    return _Posed(
        scene=dataclasses.replace(posed.scene, yaw_deg=posed.scene.yaw_deg + view.yaw_deg, global_orient=orient),
        camera=posed.camera,
        params=params.replace(global_orient=torch.tensor(orient[None], dtype=params.global_orient.dtype)),
        mesh=move_stumped_mesh(posed.mesh, view),
        joints_cam=view.to_camera(posed.joints_cam),
        coco_cam=view.to_camera(posed.coco_cam),
    )


@dataclass(frozen=True, eq=False)
class _Posed:
    """A drawn scene posed and cut, before rendering: the scene, the camera, the body
    parameters (camera frame), the stumped mesh, joints_cam (15, 3) and coco_cam (17, 3) of the
    intact posed body."""

    scene: Scene
    camera: PinholeCamera
    params: BodyParams
    mesh: StumpedMesh
    joints_cam: np.ndarray
    coco_cam: np.ndarray


def _pose_and_cut(
    body: BodyModel, *, scene: Scene, body_pose: np.ndarray, transl: np.ndarray | None, image_size: int
) -> _Posed:
    """Pose the body of ``scene`` (with ``body_pose``, P x 3) and cut its residual limbs; the
    camera frames it (:func:`frame_camera`) unless ``transl`` (3,) is given. CutError where a
    cut fails."""
    dtype = body.dtype
    params = BodyParams(
        global_orient=torch.tensor(scene.global_orient[None], dtype=dtype),
        body_pose=torch.tensor(body_pose[None], dtype=dtype),
        shape=torch.tensor(scene.phenotype[None], dtype=dtype),
        transl=torch.zeros(1, 3, dtype=dtype),
    )
    with torch.no_grad():
        out0 = body(params)
    verts0 = out0.verts[0].double().numpy()
    camera, framed = frame_camera(
        verts0, image_size=image_size, focal_px=scene.focal_px, fill=scene.fill, shift_px=scene.shift_px
    )
    params = params.replace(transl=torch.tensor((framed if transl is None else transl)[None], dtype=dtype))
    # The translation is added last in the camera frame (base.apply_global_transform).
    shift_cam = params.transl[0].double().numpy()
    joints_cam = out0.joints[0].double().numpy() + shift_cam
    mesh = make_stumped_mesh(
        verts_cam=verts0 + shift_cam,
        faces=body.faces.cpu().numpy(),
        vertex_segment=body.vertex_segment.cpu().numpy(),
        joints_cam=joints_cam,
        residuals=scene.residuals,
    )
    return _Posed(scene, camera, params, mesh, joints_cam, out0.coco_kp[0].double().numpy() + shift_cam)


def _render_and_label(
    rng: np.random.Generator,
    posed: _Posed,
    *,
    noise_px: float,
    drop_prob: float,
    image_size: int,
    image_noise: float,
    clothing: Clothing | None = None,
) -> tuple[SynthSample, Clothing]:
    """Render a posed person and label its keypoints (draws from ``rng``: the background, the
    clothing unless given, the image noise, the keypoint noise and drops)."""
    scene, camera, mesh = posed.scene, posed.camera, posed.mesh
    render = render_person(
        rng,
        mesh=mesh,
        joints_cam=posed.joints_cam,
        camera=camera,
        image_size=image_size,
        image_noise=image_noise,
        clothing=clothing,
    )
    kp_clean = keypoints_25(coco_cam=posed.coco_cam, limbs=mesh.limbs, camera=camera, depth_map=render.depth_m)
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
    sample = SynthSample(
        image=render.image,
        mask=render.mask,
        keypoints_px=kp,
        keypoints_clean_px=kp_clean,
        camera=camera,
        params=posed.params,
        mesh=mesh,
        joints_cam=posed.joints_cam,
        info=info,
    )
    return sample, render.clothing


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
) -> tuple[SynthSample, _Posed, Clothing]:
    """One attempt at sample ``index`` (:func:`generate_sample`), with its posed person and
    clothing (the other views' start); CutError where a cut fails."""
    scene = sample_scene(rng, index=index, types=types, pose_joint_names=body.pose_joint_names, image_size=image_size)
    posed = _pose_and_cut(body, scene=scene, body_pose=scene.body_pose, transl=None, image_size=image_size)
    sample, clothing = _render_and_label(
        rng, posed, noise_px=noise_px, drop_prob=drop_prob, image_size=image_size, image_noise=image_noise
    )
    return sample, posed, clothing
