"""Synthetic amputee benchmark generator (``resihmr-dr synth``): Anny people with true stumps.

Each sample is an Anny body (random phenotype, a natural pose, a front / three-quarter / side
view, random focal length and distance) with one or more residual limbs cut at a random
``lambda_cut`` along the segment and closed by an individual stump shape of
:mod:`resihmr_dr.eval.stump_shapes` (independent of the fitter's cap). The stump's tip (the
apex of the swept surface, on its centre line) is the residual endpoint; its position along the
segment axis is the true ``lambda``.

One module per step:

- :mod:`.scene`: the random draws (residual types, λ and stump shapes, body, pose, view, camera);
- :mod:`.stumped`: the true stumped mesh and each limb's :class:`~resihmr_dr.eval.limb_truth.LimbTruth`;
- :mod:`.shading`: the image, the person mask and the depth map;
- :mod:`.keypoints`: the clean LDpose keypoints and the written (noisy, dropped) ones;
- :mod:`.sample`: one sample from these (:func:`generate_sample`), or the views of one person
  (:func:`generate_views`);
- :mod:`.views`: the camera ring of a multi-view person (``synth --views N``) and the rigid motion
  into each view;
- :mod:`.dataset`: the benchmark folder (:func:`generate_dataset`; its layout is there).

Frames: camera frame (OpenCV x right, y down, z forward, metres); pixels ``_px``.
Deterministic: sample ``i`` depends only on ``(seed, i)`` and the options.
"""

from resihmr_dr.eval.synth.dataset import generate_dataset, sample_ground_truth, write_ply
from resihmr_dr.eval.synth.keypoints import keypoints_25
from resihmr_dr.eval.synth.sample import SynthSample, generate_sample, generate_views
from resihmr_dr.eval.synth.scene import (
    POSES,
    RESIDUAL_TYPES,
    VIEWS,
    ResidualSpec,
    parse_types,
    sample_phenotype,
    sample_pose,
    view_orient,
)
from resihmr_dr.eval.synth.stumped import StumpedMesh, make_stumped_mesh, stump_measurements
from resihmr_dr.eval.synth.views import VIEW_POSES, ViewCamera, camera_ring, view_yaws

__all__ = [
    "POSES",
    "RESIDUAL_TYPES",
    "VIEWS",
    "VIEW_POSES",
    "ResidualSpec",
    "StumpedMesh",
    "SynthSample",
    "ViewCamera",
    "camera_ring",
    "generate_dataset",
    "generate_sample",
    "generate_views",
    "keypoints_25",
    "make_stumped_mesh",
    "parse_types",
    "sample_ground_truth",
    "sample_phenotype",
    "sample_pose",
    "stump_measurements",
    "view_orient",
    "view_yaws",
    "write_ply",
]
