"""Interactive 3D views of meshes with plotly (for notebooks).

plotly is an optional dependency (``pip install 'resihmr-dr[notebooks]'``); it is imported only
when a trace or figure is built, so importing this module never needs it.

- :func:`submesh` keeps the faces on a vertex subset (e.g. the residual limb ``m_r``), so a
  figure carries hundreds of vertices instead of the whole body;
- :func:`mesh_trace` is one ``plotly.graph_objects.Mesh3d``: a plain colour, per-vertex RGB
  colours, or a per-vertex scalar (``intensity``, e.g. a surface distance) on a colour scale;
- :func:`mesh_figure` puts one or more traces in a figure with equal axis scales, viewed like
  the image (camera frame: OpenCV x right, y down, z forward) or from the front (model frame:
  Y up, facing +Z).

Frames and units: whatever the vertices are in (the project's meshes: metres).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["FRAMES", "mesh_figure", "mesh_trace", "submesh"]

# How each frame is looked at: the scene's up vector and the eye's direction from the centre.
FRAMES: dict[str, dict[str, tuple[float, float, float]]] = {
    "camera": {"up": (0.0, -1.0, 0.0), "eye": (0.0, 0.0, -1.0)},  # from the camera: x right, y down
    "model": {"up": (0.0, 1.0, 0.0), "eye": (0.0, 0.0, 1.0)},  # from the front: Y up, facing +Z
}
_EYE_DISTANCE = 1.8  # plotly's eye position, in units of the scene's half-extent


def _plotly_go():
    try:
        import plotly.graph_objects as go
    except ImportError as err:
        raise ImportError(
            "plotly is needed for the interactive 3D views; install it with "
            "pip install 'resihmr-dr[notebooks]' (or pip install plotly)"
        ) from err
    return go


def _mesh_arrays(verts, faces) -> tuple[np.ndarray, np.ndarray]:
    verts = np.asarray(verts, dtype=np.float64)
    faces = np.asarray(faces)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise ValueError(f"verts must be (V, 3), got {verts.shape}")
    if faces.ndim != 2 or faces.shape[1] != 3 or not np.issubdtype(faces.dtype, np.integer):
        raise ValueError(f"faces must be (F, 3) integer indices, got {faces.shape} {faces.dtype}")
    if faces.size and (faces.min() < 0 or faces.max() >= len(verts)):
        raise ValueError(f"faces index vertices outside [0, {len(verts)})")
    if not np.isfinite(verts).all():
        raise ValueError("verts must be finite")
    return verts, faces.astype(np.int64)


def submesh(verts, faces, vertex_mask) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The part of a mesh on a vertex subset.

    verts: (V, 3); faces: (F, 3); vertex_mask: (V,) bool. Keeps the faces whose three vertices
    are in the mask and the vertices they use. Returns ``(verts (K, 3), faces (G, 3) indexing
    them, index (K,))`` where ``index`` maps each kept vertex to its row in ``verts`` (so
    per-vertex values of the whole mesh are ``values[index]``).
    """
    verts, faces = _mesh_arrays(verts, faces)
    vertex_mask = np.asarray(vertex_mask)
    if vertex_mask.shape != (len(verts),) or vertex_mask.dtype != bool:
        raise ValueError(f"vertex_mask must be ({len(verts)},) bool, got {vertex_mask.shape} {vertex_mask.dtype}")
    kept_faces = faces[vertex_mask[faces].all(axis=1)]
    index = np.unique(kept_faces)
    remap = np.full(len(verts), -1, dtype=np.int64)
    remap[index] = np.arange(len(index))
    return verts[index], remap[kept_faces], index


def mesh_trace(
    verts,
    faces,
    *,
    intensity=None,
    vertex_rgb=None,
    color: str = "rgb(219,178,153)",
    opacity: float = 1.0,
    name: str | None = None,
    colorscale: str | Sequence = "Viridis",
    cmin: float | None = None,
    cmax: float | None = None,
    colorbar_title: str | None = None,
    hover_unit: str = "",
) -> Any:
    """A ``plotly.graph_objects.Mesh3d`` of the mesh.

    verts: (V, 3); faces: (F, 3). Colouring, first that applies: ``intensity`` (V,) per-vertex
    scalar on ``colorscale`` between ``cmin`` and ``cmax`` (default: its range) with a colour bar
    titled ``colorbar_title``; ``vertex_rgb`` (V, 3) colours in [0, 1] or uint8 0-255; else the
    single ``color``. ``hover_unit`` is appended to the intensity in the hover text.
    """
    go = _plotly_go()
    verts, faces = _mesh_arrays(verts, faces)
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must lie in [0, 1], got {opacity}")
    kwargs: dict[str, Any] = {
        "x": verts[:, 0],
        "y": verts[:, 1],
        "z": verts[:, 2],
        "i": faces[:, 0],
        "j": faces[:, 1],
        "k": faces[:, 2],
        "opacity": opacity,
        "name": name,
        "showlegend": name is not None,
        "flatshading": False,
        "lighting": {"ambient": 0.55, "diffuse": 0.7, "specular": 0.1},
    }
    if intensity is not None:
        intensity = np.asarray(intensity, dtype=np.float64)
        if intensity.shape != (len(verts),):
            raise ValueError(f"intensity must be ({len(verts)},), one value per vertex, got {intensity.shape}")
        finite = intensity[np.isfinite(intensity)]
        kwargs.update(
            intensity=intensity,
            intensitymode="vertex",
            colorscale=colorscale,
            showscale=True,
            cmin=float(finite.min()) if cmin is None and finite.size else cmin,
            cmax=float(finite.max()) if cmax is None and finite.size else cmax,
            colorbar={"title": {"text": colorbar_title or ""}},
            hovertemplate=f"%{{intensity:.3g}}{hover_unit}<extra>{name or ''}</extra>",
        )
    elif vertex_rgb is not None:
        rgb = np.asarray(vertex_rgb)
        if rgb.shape != (len(verts), 3):
            raise ValueError(f"vertex_rgb must be ({len(verts)}, 3), got {rgb.shape}")
        if not np.issubdtype(rgb.dtype, np.integer):
            rgb = np.clip(np.round(rgb * 255.0), 0, 255)
        kwargs["vertexcolor"] = [f"rgb({r},{g},{b})" for r, g, b in rgb.astype(np.int64)]
    else:
        kwargs["color"] = color
    return go.Mesh3d(**kwargs)


def mesh_figure(
    verts=None,
    faces=None,
    *,
    traces: Sequence[Any] = (),
    title: str | None = None,
    frame: str = "camera",
    axis_unit: str = "m",
    width: int = 700,
    height: int = 600,
    **trace_kwargs: Any,
) -> Any:
    """A plotly Figure of a mesh (``mesh_trace(verts, faces, **trace_kwargs)``, if given) and
    any further ``traces``, with equal axis scales.

    frame: "camera" (OpenCV, x right, y down, z forward: seen as in the image) or "model"
    (Y up, facing +Z: seen from the front); see ``FRAMES``. axis_unit labels the axes.
    """
    go = _plotly_go()
    if frame not in FRAMES:
        raise ValueError(f"frame must be one of {sorted(FRAMES)}, got {frame!r}")
    if (verts is None) != (faces is None):
        raise ValueError("give both verts and faces, or neither")
    data = list(traces)
    if verts is not None:
        data.insert(0, mesh_trace(verts, faces, **trace_kwargs))
    if not data:
        raise ValueError("nothing to show: give verts and faces, or traces")
    view = FRAMES[frame]
    eye = {axis: _EYE_DISTANCE * v for axis, v in zip("xyz", view["eye"])}
    up = dict(zip("xyz", view["up"]))
    fig = go.Figure(data=data)
    fig.update_layout(
        title=title,
        width=width,
        height=height,
        margin={"l": 0, "r": 0, "t": 40 if title else 10, "b": 0},
        legend={"x": 0.0, "y": 1.0},
        scene={
            "aspectmode": "data",
            "camera": {"eye": eye, "up": up},
            **{f"{axis}axis": {"title": {"text": f"{axis} ({axis_unit})"}} for axis in "xyz"},
        },
    )
    return fig
