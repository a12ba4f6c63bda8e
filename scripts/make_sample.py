"""Regenerate the built-in sample person (src/resihmr_dr/assets/sample/).

An Anny body in a natural standing pose with a left transtibial residual limb, rendered with
the project's z-buffer renderer: image.png, mask.png and annotations.json (LDpose format, 25 keypoints).
The residual limb is made by hiding the faces distal to the endpoint (the sample needs only a
plausible image, mask and keypoints); the synthetic benchmark makes real capped stumps.
The annotation file's ``categories`` carry the 25 keypoint names and the LDpose skeleton
(:func:`resihmr_dr.data.ldpose.coco_category`).

    python scripts/make_sample.py [--out DIR]

:func:`sample_document` builds the annotation document from the rendered numbers (tests check that
it reproduces the committed file).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from resihmr_dr.data.ldpose import KEYPOINT_INDEX, NUM_KEYPOINTS, coco_category

OUT = Path(__file__).resolve().parents[1] / "src" / "resihmr_dr" / "assets" / "sample"
LAMBDA = 0.45  # residual endpoint along the left shank (knee -> ankle)


def sample_document(
    *,
    width: int,
    height: int,
    intrinsics: dict[str, float],
    keypoints: list[float],
    bbox: list[float],
    area: float,
) -> dict[str, Any]:
    """The sample's LDpose annotation document: one image (``image.png`` with its camera), one
    person (75 keypoint numbers, bbox, area, ``mask.png``), the LDpose person category."""
    return {
        "info": {"description": "resihmr_dr built-in sample: left transtibial residual limb (Anny render)"},
        "images": [{"id": 1, "file_name": "image.png", "width": width, "height": height, "camera": intrinsics}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "iscrowd": 0,
                "keypoints": keypoints,
                "num_keypoints": sum(1 for v in keypoints[2::3] if v > 0),
                "bbox": bbox,
                "area": area,
                "mask_path": "mask.png",
            }
        ],
        "categories": [coco_category(1)],
    }


def document_text(doc: dict[str, Any]) -> str:
    """The annotation file's text (``indent=1``, as committed)."""
    return json.dumps(doc, indent=1)


def main(out_dir: Path = OUT) -> None:
    """Render the sample and write image.png, mask.png and annotations.json to ``out_dir``."""
    import torch
    from PIL import Image

    from resihmr_dr.body.anny_model import AnnyBody
    from resihmr_dr.body.base import SEGMENT_INDEX, BodyParams
    from resihmr_dr.camera import PinholeCamera
    from resihmr_dr.render.zbuffer import rasterize, shade

    body = AnnyBody()
    camera = PinholeCamera(fx=1000.0, fy=1000.0, cx=240.0, cy=320.0, width=480, height=640)
    params = body.default_params(1, depth_m=3.3)
    pose = torch.zeros_like(params.body_pose)
    names = body.pose_joint_names
    pose[0, names.index("upperarm01.R")] = torch.tensor([0.0, 0.0, -0.5])  # right arm out
    pose[0, names.index("lowerarm01.R")] = torch.tensor([-0.4, 0.0, 0.0])
    pose[0, names.index("upperarm01.L")] = torch.tensor([0.15, 0.0, 0.15])
    pose[0, names.index("upperleg01.L")] = torch.tensor([-0.2, 0.0, 0.05])
    pose[0, names.index("lowerleg01.L")] = torch.tensor([0.3, 0.0, 0.0])
    yaw = math.radians(20.0)
    orient = torch.tensor([[math.pi, 0.0, 0.0]])
    import roma

    orient = roma.rotmat_to_rotvec(
        roma.rotvec_to_rotmat(orient) @ roma.rotvec_to_rotmat(torch.tensor([[0.0, yaw, 0.0]]))
    )
    params = BodyParams(
        global_orient=orient,
        body_pose=pose,
        shape=torch.tensor([[0.7, 0.45, 0.6, 0.5, 0.55, 0.5]]),
        transl=torch.tensor([[0.0, 0.05, 3.3]]),
    )
    with torch.no_grad():
        out = body(params)
    verts = out.verts[0]
    knee, ankle = out.joint("left_knee")[0], out.joint("left_ankle")[0]
    endpoint = knee + LAMBDA * (ankle - knee)
    axis = torch.nn.functional.normalize(ankle - knee, dim=0)
    seg = body.vertex_segment
    distal = (seg == SEGMENT_INDEX["left_foot"]) | (
        (seg == SEGMENT_INDEX["left_shank"]) & (((verts - endpoint) @ axis) > 0)
    )
    keep_faces = body.faces[~distal[body.faces].any(dim=1)]
    fragments = rasterize(verts_cam=verts, faces=keep_faces, camera=camera)
    yy = np.linspace(0.0, 1.0, camera.height)[:, None, None]
    background = (0.93 - 0.25 * yy) * np.array([0.85, 0.9, 1.0]) * np.ones((1, camera.width, 1))
    rgb = shade(verts_cam=verts, faces=keep_faces, fragments=fragments, background=background)
    mask = fragments.mask.numpy()
    out_dir.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(out_dir / "image.png", optimize=True)
    Image.fromarray(mask.astype(np.uint8) * 255).save(out_dir / "mask.png", optimize=True)

    kp = np.zeros((NUM_KEYPOINTS, 3))
    coco_px = camera.project(out.coco_kp[0]).numpy()
    kp[:17, :2] = coco_px
    kp[:17, 2] = 2
    kp[KEYPOINT_INDEX["left_ankle"]] = 0
    kp[KEYPOINT_INDEX["below_left_knee_end"]] = [*camera.project(endpoint).numpy(), 2]
    ys, xs = np.nonzero(mask)
    bbox = [float(xs.min()), float(ys.min()), float(xs.max() - xs.min() + 1), float(ys.max() - ys.min() + 1)]
    doc = sample_document(
        width=camera.width,
        height=camera.height,
        intrinsics={"fx": camera.fx, "fy": camera.fy, "cx": camera.cx, "cy": camera.cy},
        keypoints=[round(float(v), 2) for v in kp.flatten()],
        bbox=bbox,
        area=float(mask.sum()),
    )
    (out_dir / "annotations.json").write_text(document_text(doc))
    print("wrote", out_dir, "endpoint_cam", endpoint.tolist())


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"output folder (default: {OUT})")
    main(parser.parse_args().out)
