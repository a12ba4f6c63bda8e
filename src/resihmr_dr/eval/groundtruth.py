"""Ground truth of a synthetic benchmark folder (written by ``resihmr-dr synth``).

Layout (see :mod:`resihmr_dr.eval.synth.dataset`): ``gt/index.json`` lists the samples; each sample's
folder holds ``gt.json`` (camera, keypoints, residual limbs with their measurements),
``mesh.ply`` (the true mesh in the camera frame, stumps included) and ``labels.npz``
(per-vertex segment labels and the intact body vertex each vertex comes from).

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from resihmr_dr.body.base import SEGMENT_INDEX
from resihmr_dr.camera import PinholeCamera
from resihmr_dr.data.errors import DataError
from resihmr_dr.data.jsonio import read_json_object
from resihmr_dr.data.records import Extrinsics
from resihmr_dr.eval.limb_truth import LimbTruth

__all__ = ["GroundTruth", "GroundTruthError", "load_ground_truth"]


class GroundTruthError(DataError):
    """A ground-truth folder or file is missing or malformed (the message names the file)."""


@dataclass(frozen=True)
class GroundTruth:
    """One person's truth.

    verts: (V, 3) true mesh, camera frame; faces: (F, 3); vertex_segment: (V,) segment ids
    (``SEGMENT_NAMES``; stump vertices carry their residual segment); source_vertex: (V,) index
    of the intact body-model vertex each vertex is (-1 for stump vertices); keypoints_px: (25, 3)
    the clean LDpose keypoints ``[x, y, v]``; limbs: the residual limbs' truth (``gt.json``'s
    ``residual_limbs``: limb, status, type, shape, lambda, anchor_cam, endpoint_cam, measurements, ...);
    body_model: the body model that made it; noise_px: the keypoint noise written for this
    person; info: the rest of ``gt.json`` (pose, view, ...); person_id, view, view_name,
    extrinsics: a multi-view person's id, this view's index and name (``yaw090``) and its
    camera's extrinsics (world: view 0's camera frame); a single-view sample's are None, 0,
    None, None.
    """

    ann_id: int
    image_id: int
    verts: np.ndarray
    faces: np.ndarray
    vertex_segment: np.ndarray
    source_vertex: np.ndarray
    keypoints_px: np.ndarray
    limbs: tuple[LimbTruth, ...]
    body_model: str
    noise_px: float
    info: dict
    person_id: str | None = None
    view: int = 0
    view_name: str | None = None
    extrinsics: Extrinsics | None = None

    def limb_region(self, limb: LimbTruth) -> np.ndarray:
        """(V,) bool: the vertices of ``limb``'s residual segment (stump included)."""
        return self.vertex_segment == SEGMENT_INDEX[limb.residual_segment]

    @property
    def camera(self) -> PinholeCamera:
        """The camera the sample was rendered with."""
        return PinholeCamera(**self.info["camera"])

    @property
    def intact_vertices(self) -> np.ndarray:
        """(V,) bool: vertices of the intact body model outside every residual segment."""
        keep = self.source_vertex >= 0
        for limb in self.limbs:
            keep &= ~self.limb_region(limb)
        return keep


def _view_fields(gt: dict, *, path: Path) -> dict:
    """``person_id``, ``view``, ``view_name`` and ``extrinsics`` of a multi-view sample's
    ``gt.json`` (one with a ``person_id``), else the single view's defaults; GroundTruthError
    naming the field where one is malformed."""
    person_id = gt.get("person_id")
    if person_id is None:
        return {}
    if not isinstance(person_id, str) or not person_id:
        raise GroundTruthError(f"expected a non-empty string, got {person_id!r:.40}", path=path, field="person_id")
    view = gt.get("view")
    if isinstance(view, bool) or not isinstance(view, int) or view < 0:
        raise GroundTruthError(
            f"expected the view's index (an integer >= 0), got {view!r:.40}", path=path, field="view"
        )
    name = gt.get("view_name")
    if not isinstance(name, str):
        raise GroundTruthError(f"expected a string, got {name!r:.40}", path=path, field="view_name")
    extrinsics = gt.get("extrinsics")
    if not isinstance(extrinsics, dict) or set(extrinsics) != {"R", "t"}:
        raise GroundTruthError("expected {'R': 3x3, 't': 3}", path=path, field="extrinsics")
    try:
        camera = Extrinsics(R=extrinsics["R"], t=extrinsics["t"])
    except DataError as err:
        raise GroundTruthError(err.reason, path=path, field="extrinsics") from None
    return {"person_id": person_id, "view": view, "view_name": name, "extrinsics": camera}


def load_ground_truth(data_dir: str | Path) -> dict[int, GroundTruth]:
    """ann_id -> :class:`GroundTruth` for every sample of a ``resihmr-dr synth`` folder.

    Raises GroundTruthError naming the file and field when something is missing or malformed.
    """
    import trimesh

    data_dir = Path(data_dir)
    index_path = data_dir / "gt" / "index.json"
    if not index_path.is_file():
        raise GroundTruthError(
            "not found: the ground truth must be a folder written by `resihmr-dr synth`", path=index_path
        )
    index = read_json_object(index_path)
    # Folders from before per-sample levels were recorded had one level for all.
    generator_noise = index.get("generator", {}).get("noise_px", 0.0)
    default_noise = float(generator_noise) if isinstance(generator_noise, (int, float)) else math.nan
    out: dict[int, GroundTruth] = {}
    for i, entry in enumerate(index.get("samples", [])):
        try:
            folder = data_dir / "gt" / entry["gt_dir"]
            ann_id = int(entry["ann_id"])
        except (KeyError, TypeError, ValueError) as err:
            raise GroundTruthError(
                f"no valid 'gt_dir' / 'ann_id' ({err})", path=index_path, item=f"samples[{i}]"
            ) from None
        gt_path = folder / "gt.json"
        gt = read_json_object(gt_path)
        try:
            mesh = trimesh.load(folder / gt["mesh"], process=False, force="mesh")
            labels = np.load(folder / gt["labels"])
            keypoints = np.asarray(gt["keypoints_clean_px"], dtype=np.float64).reshape(25, 3)
            limbs = tuple(LimbTruth.from_dict(limb) for limb in gt["residual_limbs"])
            PinholeCamera(**gt["camera"])
        except (KeyError, ValueError, TypeError, AttributeError, OSError) as err:
            raise GroundTruthError(f"unreadable ground truth ({type(err).__name__}: {err})", path=gt_path) from None
        views = _view_fields(gt, path=gt_path)
        verts = np.asarray(mesh.vertices, dtype=np.float64)
        noise = gt.get("noise_px", default_noise)
        out[ann_id] = GroundTruth(
            ann_id=ann_id,
            image_id=int(gt.get("image_id", entry.get("image_id", ann_id))),
            verts=verts,
            faces=np.asarray(mesh.faces, dtype=np.int64),
            vertex_segment=np.asarray(labels["vertex_segment"]),
            source_vertex=np.asarray(labels["source_vertex"]),
            keypoints_px=keypoints,
            limbs=limbs,
            body_model=str(gt.get("body_model", "anny")),
            noise_px=float(noise) if noise is not None else math.nan,
            info={
                k: v
                for k, v in gt.items()
                if k not in ("residual_limbs", "joints_cam", "keypoints_px", "keypoints_clean_px")
            },
            **views,
        )
        if len(out[ann_id].vertex_segment) != len(verts):
            raise GroundTruthError(
                f"{len(out[ann_id].vertex_segment)} labels for {len(verts)} vertices", path=folder / gt["labels"]
            )
    if not out:
        raise GroundTruthError("no samples", path=index_path)
    return out
