"""resihmr_dr: 3D body meshes of people with limb loss from a single image.

Pipeline (ResiHMR, arXiv 2604.28025, plus a differentiable soft-silhouette refinement):
intact-body fit -> RAFO residual endpoints -> cut and cap -> silhouette refinement.
"""

__version__ = "0.2.0"
