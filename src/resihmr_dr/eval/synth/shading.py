"""The synthetic sample's picture: the stumped mesh shaded over a random background.

:func:`render_person` rasterizes the true mesh once (the z-buffer of
:mod:`resihmr_dr.render.zbuffer`) for the image, the person mask and the depth map that decides
which keypoints are occluded. Clothing (shirt, sleeves, shorts or trousers) is per-face colour
with geometric borders.

Frames: camera frame (OpenCV x right, y down, z forward, metres); images (H, W) in pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from resihmr_dr.body.base import JOINT_INDEX, SEGMENT_INDEX
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.eval.synth.stumped import StumpedMesh
from resihmr_dr.render.zbuffer import rasterize, shade

__all__ = ["Clothing", "PersonRender", "draw_clothing", "render_person"]


@dataclass(frozen=True)
class PersonRender:
    """image: (H, W, 3) uint8; mask: (H, W) bool person mask; depth_m: (H, W) float64 depth of
    the nearest surface (inf = background); background: its kind ("plain", "gradient",
    "texture"); clothing: the person's look as rendered."""

    image: np.ndarray
    mask: np.ndarray
    depth_m: np.ndarray
    background: str
    clothing: Clothing


def render_person(
    rng: np.random.Generator,
    *,
    mesh: StumpedMesh,
    joints_cam: np.ndarray,
    camera: PinholeCamera,
    image_size: int,
    image_noise: float,
    clothing: Clothing | None = None,
) -> PersonRender:
    """Shade ``mesh`` (skin and random clothing, over a random background) as ``camera`` sees it.

    joints_cam: (15, 3) ``JOINT_NAMES`` joints (the clothing's borders); image_size: the
    background's side (px, the camera's image); image_noise: std of Gaussian noise added to the
    image's [0, 1] intensities (0: none); clothing: the person's look (drawn from ``rng`` after
    the background where None; :attr:`PersonRender.clothing` returns it for the other views).
    """
    verts_t = torch.from_numpy(mesh.verts)
    faces_t = torch.from_numpy(mesh.faces)
    frags = rasterize(verts_cam=verts_t, faces=faces_t, camera=camera)
    background, bg_kind = _background(rng, image_size)
    if clothing is None:
        clothing = draw_clothing(rng)
    colours = _face_colours(
        clothing,
        verts_cam=mesh.verts,
        faces=mesh.faces,
        vertex_segment=mesh.vertex_segment,
        joints_cam=joints_cam,
    )
    rgb = shade(
        verts_cam=verts_t,
        faces=faces_t,
        fragments=frags,
        face_rgb=colours,
        background=background,
    )
    if image_noise > 0:
        rgb = rgb + rng.normal(0.0, image_noise, size=rgb.shape)
    image = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
    return PersonRender(
        image=image,
        mask=frags.mask.numpy(),
        depth_m=frags.depth.double().numpy(),
        background=bg_kind,
        clothing=clothing,
    )


def _background(rng: np.random.Generator, size: int) -> tuple[np.ndarray, str]:
    """(H, W, 3) background in [0, 1]: plain, vertical gradient or a smooth random texture."""
    kind = ("plain", "gradient", "texture")[int(rng.integers(3))]
    base = rng.uniform(0.35, 0.95, size=3)
    if kind == "plain":
        return np.broadcast_to(base, (size, size, 3)).copy(), kind
    yy = np.linspace(0.0, 1.0, size)[:, None, None]
    if kind == "gradient":
        other = rng.uniform(0.2, 0.9, size=3)
        return ((1 - yy) * base + yy * other) * np.ones((1, size, 1)), kind
    coarse = rng.uniform(-1, 1, size=(9, 9, 3))
    img = (
        np.asarray(
            Image.fromarray(((coarse + 1) * 127.5).astype(np.uint8)).resize((size, size), Image.BICUBIC),
            dtype=np.float64,
        )
        / 127.5
        - 1.0
    )
    stripes = 0.05 * np.sin(np.arange(size)[:, None] * rng.uniform(0.05, 0.3) + rng.uniform(0, 6))[..., None]
    return np.clip(base + 0.15 * img + stripes, 0.0, 1.0), kind


@dataclass(frozen=True, eq=False)
class Clothing:
    """A person's random look: skin (3,) RGB in [0, 1]; shirt (3,) or None, with sleeves
    ``sleeve_m`` from the shoulder; trousers (3,) or None, ``trouser_length_m`` from the hip
    (10 m: full length). The same clothing dresses every view of a multi-view person."""

    skin: np.ndarray
    shirt: np.ndarray | None
    sleeve_m: float
    trousers: np.ndarray | None
    trouser_length_m: float


def draw_clothing(rng: np.random.Generator) -> Clothing:
    """A random skin tone, a shirt (70 %: sleeves of random length) and shorts or trousers (70 %)."""
    skin = np.array([0.92, 0.76, 0.65]) * rng.uniform(0.45, 1.0)
    skin = np.clip(skin + rng.uniform(-0.03, 0.03, size=3), 0.0, 1.0)
    shirt, sleeve = None, 0.0
    if rng.uniform() < 0.7:
        shirt = rng.uniform(0.1, 0.9, size=3)
        sleeve = float(rng.uniform(0.05, 0.6))  # metres from the shoulder
    trousers, length = None, 0.0
    if rng.uniform() < 0.7:
        trousers = rng.uniform(0.1, 0.7, size=3)
        length = float(rng.uniform(0.2, 0.45)) if rng.uniform() < 0.5 else 10.0
    return Clothing(skin=skin, shirt=shirt, sleeve_m=sleeve, trousers=trousers, trouser_length_m=length)


def _face_colours(
    clothing: Clothing,
    *,
    verts_cam: np.ndarray,
    faces: np.ndarray,
    vertex_segment: np.ndarray,
    joints_cam: np.ndarray,
) -> np.ndarray:
    """(F, 3) face colours of ``clothing`` on a mesh. Clothing borders are geometric (planes and
    distances from the joints), not label borders, so they are smooth.

    verts_cam: (V, 3); faces: (F, 3); vertex_segment: (V,); joints_cam: (15, 3) ``JOINT_NAMES``.
    """
    colours = np.tile(clothing.skin, (len(faces), 1))
    seg = vertex_segment[faces[:, 0]]
    centre = verts_cam[faces].mean(axis=1)  # (F, 3)
    joint = {name: joints_cam[i] for name, i in JOINT_INDEX.items()}
    up = joint["neck"] - joint["pelvis"]
    up /= np.linalg.norm(up)
    height = (centre - joint["pelvis"]) @ up
    neck_h = float((joint["neck"] - joint["pelvis"]) @ up)
    waist_h = 0.35 * neck_h
    is_other = seg == SEGMENT_INDEX["other"]
    segs = {
        name: np.isin(seg, [SEGMENT_INDEX[f"{side}_{name}"] for side in ("left", "right")])
        for name in ("upper_arm", "forearm", "hand", "thigh", "shank", "foot")
    }
    if clothing.shirt is not None:
        wear = is_other & (height > waist_h - 0.05) & (height < neck_h - 0.04)
        for side in ("left", "right"):
            near = np.linalg.norm(centre - joint[f"{side}_shoulder"], axis=1) < clothing.sleeve_m
            arm = np.isin(
                seg,
                [SEGMENT_INDEX[f"{side}_upper_arm"], SEGMENT_INDEX[f"{side}_forearm"]],
            )
            wear |= arm & near
        colours[wear] = clothing.shirt
    if clothing.trousers is not None:
        wear = is_other & (height <= waist_h - 0.05)
        for side in ("left", "right"):
            near = np.linalg.norm(centre - joint[f"{side}_hip"], axis=1) < clothing.trouser_length_m
            leg = np.isin(seg, [SEGMENT_INDEX[f"{side}_thigh"], SEGMENT_INDEX[f"{side}_shank"]])
            wear |= leg & near
        colours[wear & ~segs["hand"] & ~segs["forearm"] & ~segs["upper_arm"]] = clothing.trousers
    return colours
