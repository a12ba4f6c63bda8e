"""resihmr_dr.render.plotly_view: submeshes, traces and figures (plotly comes with the test extra)."""

from __future__ import annotations

import builtins

import numpy as np
import pytest

from resihmr_dr.render import plotly_view
from resihmr_dr.render.plotly_view import mesh_figure, mesh_trace, submesh

# A unit tetrahedron plus one loose vertex (index 4).
VERTS = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1], [5, 5, 5]], dtype=float)
FACES = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]])


def test_submesh_keeps_faces_inside_the_mask_and_reindexes():
    mask = np.array([True, True, False, True, True])
    verts, faces, index = submesh(VERTS, FACES, mask)
    assert index.tolist() == [0, 1, 3]  # vertex 4 is in the mask but on no kept face
    assert faces.tolist() == [[0, 1, 2]]  # the one face on vertices 0, 1, 3
    np.testing.assert_array_equal(verts, VERTS[[0, 1, 3]])
    np.testing.assert_array_equal(verts[faces], VERTS[FACES[[1]]])  # same triangle, same corners


def test_submesh_of_everything_and_of_nothing():
    verts, faces, index = submesh(VERTS, FACES, np.ones(5, dtype=bool))
    assert index.tolist() == [0, 1, 2, 3] and faces.tolist() == FACES.tolist()
    verts, faces, index = submesh(VERTS, FACES, np.zeros(5, dtype=bool))
    assert verts.shape == (0, 3) and faces.shape == (0, 3) and index.shape == (0,)


@pytest.mark.parametrize(
    "verts, faces, mask, message",
    [
        (VERTS[:, :2], FACES, np.ones(5, bool), "verts must be"),
        (VERTS, FACES.astype(float), np.ones(5, bool), "faces must be"),
        (VERTS, FACES + 2, np.ones(5, bool), "outside"),
        (VERTS, FACES, np.ones(4, bool), "vertex_mask"),
        (VERTS, FACES, np.ones(5, int), "vertex_mask"),
    ],
)
def test_submesh_rejects_bad_input(verts, faces, mask, message):
    with pytest.raises(ValueError, match=message):
        submesh(verts, faces, mask)


def test_mesh_trace_carries_the_mesh_and_the_intensity():
    pytest.importorskip("plotly")
    distance = np.array([0.0, 1.0, 2.0, 3.0, 4.0])
    trace = mesh_trace(VERTS, FACES, intensity=distance, colorbar_title="mm", name="limb", hover_unit=" mm")
    assert trace.type == "mesh3d"
    np.testing.assert_array_equal(np.asarray(trace.x), VERTS[:, 0])
    np.testing.assert_array_equal(np.asarray(trace.z), VERTS[:, 2])
    assert np.asarray(trace.i).tolist() == FACES[:, 0].tolist()
    assert np.asarray(trace.k).tolist() == FACES[:, 2].tolist()
    np.testing.assert_array_equal(np.asarray(trace.intensity), distance)
    assert trace.intensitymode == "vertex"
    assert (trace.cmin, trace.cmax) == (0.0, 4.0)  # the data's range by default
    assert trace.colorbar.title.text == "mm"
    assert "mm" in trace.hovertemplate


def test_mesh_trace_colours():
    pytest.importorskip("plotly")
    rgb = np.zeros((5, 3))
    rgb[1] = [1.0, 0.5, 0.0]
    trace = mesh_trace(VERTS, FACES, vertex_rgb=rgb)
    assert trace.vertexcolor[1] == "rgb(255,128,0)" and trace.vertexcolor[0] == "rgb(0,0,0)"
    trace = mesh_trace(VERTS, FACES, vertex_rgb=(rgb * 255).astype(np.uint8))
    assert trace.vertexcolor[1] == "rgb(255,127,0)"  # uint8 colours are used as they are
    trace = mesh_trace(VERTS, FACES, color="grey", opacity=0.3)
    assert trace.color == "grey" and trace.opacity == 0.3 and trace.intensity is None
    with pytest.raises(ValueError, match="intensity"):
        mesh_trace(VERTS, FACES, intensity=np.zeros(4))
    with pytest.raises(ValueError, match="vertex_rgb"):
        mesh_trace(VERTS, FACES, vertex_rgb=np.zeros((5, 4)))
    with pytest.raises(ValueError, match="opacity"):
        mesh_trace(VERTS, FACES, opacity=2.0)


@pytest.mark.parametrize("frame, up", [("camera", (0, -1, 0)), ("model", (0, 1, 0))])
def test_mesh_figure_views_each_frame_upright(frame, up):
    pytest.importorskip("plotly")
    extra = mesh_trace(VERTS + 1, FACES, opacity=0.2, name="truth")
    fig = mesh_figure(VERTS, FACES, traces=[extra], frame=frame, title="t", intensity=np.arange(5.0))
    assert [t.name for t in fig.data] == [None, "truth"]  # the main mesh first
    camera = fig.layout.scene.camera
    assert (camera.up.x, camera.up.y, camera.up.z) == up
    assert fig.layout.scene.aspectmode == "data"  # metres on every axis alike
    assert fig.layout.scene.xaxis.title.text == "x (m)"
    assert fig.layout.title.text == "t"


def test_mesh_figure_rejects_bad_arguments():
    pytest.importorskip("plotly")
    with pytest.raises(ValueError, match="frame"):
        mesh_figure(VERTS, FACES, frame="world")
    with pytest.raises(ValueError, match="both"):
        mesh_figure(VERTS)
    with pytest.raises(ValueError, match="nothing to show"):
        mesh_figure()


def test_missing_plotly_names_the_extra(monkeypatch):
    real_import = builtins.__import__

    def no_plotly(name, *args, **kwargs):
        if name == "plotly" or name.startswith("plotly."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_plotly)
    with pytest.raises(ImportError, match=r"pip install 'resihmr-dr\[notebooks\]'"):
        plotly_view.mesh_trace(VERTS, FACES)
    # The geometry helper needs no plotly.
    assert submesh(VERTS, FACES, np.ones(5, dtype=bool))[1].shape == (4, 3)
