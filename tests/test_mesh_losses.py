"""Mesh regularisers on a mesh part (resihmr_dr.fit.mesh_losses) against PyTorch3D and loop references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import trimesh

from resihmr_dr.fit.mesh_losses import (
    PartTopology,
    edge_length_loss,
    normal_consistency,
    part_faces,
    part_topology,
    uniform_laplacian,
)

ATOL64 = 1e-6
pytestmark = pytest.mark.filterwarnings("ignore:Sparse invariant checks:UserWarning")  # PyTorch3D's laplacian


# ---------------------------------------------------------------------------------------------
# Meshes


def _icosphere(subdivisions: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    mesh = trimesh.creation.icosphere(subdivisions=subdivisions)
    return torch.tensor(mesh.vertices, dtype=torch.float64), torch.tensor(mesh.faces, dtype=torch.int64)


def _noisy_sphere(seed: int = 0, subdivisions: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    verts, faces = _icosphere(subdivisions)
    gen = torch.Generator().manual_seed(seed)
    return verts + 0.05 * torch.randn(verts.shape, generator=gen, dtype=torch.float64), faces


def _half_sphere() -> tuple[torch.Tensor, torch.Tensor]:
    """Upper half of a noisy icosphere: an open mesh with a boundary loop (re-indexed, no unused vertices)."""
    verts, faces = _noisy_sphere(seed=1)
    keep = (verts[faces][..., 2] > -0.05).all(1)
    sub = trimesh.Trimesh(verts.numpy(), faces[keep].numpy(), process=False)
    sub.remove_unreferenced_vertices()
    assert len(sub.outline().entities) >= 1  # has a boundary
    return torch.tensor(sub.vertices, dtype=torch.float64), torch.tensor(sub.faces, dtype=torch.int64)


def _grid(n: int = 6, *, z: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(n x n) planar grid of unit squares split into triangles, in the plane z."""
    ys, xs = torch.meshgrid(torch.arange(n, dtype=torch.float64), torch.arange(n, dtype=torch.float64), indexing="ij")
    verts = torch.stack([xs, ys, torch.full_like(xs, z)], -1).reshape(-1, 3)
    faces = []
    for i, j in itertools.product(range(n - 1), range(n - 1)):
        a, b, c, d = i * n + j, i * n + j + 1, (i + 1) * n + j, (i + 1) * n + j + 1
        faces += [[a, b, d], [a, d, c]]
    return verts, torch.tensor(faces, dtype=torch.int64)


def _two_components() -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """A noisy sphere and a shifted half sphere in one mesh; returns verts, faces, #verts and #faces of the first."""
    va, fa = _noisy_sphere(seed=2)
    vb, fb = _half_sphere()
    verts = torch.cat([va, vb + torch.tensor([3.0, 0.0, 0.0], dtype=torch.float64)])
    return verts, torch.cat([fa, fb + va.shape[0]]), va.shape[0], fa.shape[0]


MESHES = {"icosphere": _icosphere, "noisy_sphere": _noisy_sphere, "half_sphere": _half_sphere}


# ---------------------------------------------------------------------------------------------
# References


def _p3d():
    pytest.importorskip("pytorch3d")
    from pytorch3d.loss import mesh_edge_loss, mesh_laplacian_smoothing, mesh_normal_consistency
    from pytorch3d.structures import Meshes

    return Meshes, mesh_laplacian_smoothing, mesh_normal_consistency, mesh_edge_loss


def _p3d_laplacian64(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """PyTorch3D's uniform Laplacian term in float64: its own L matrix (float32 only) applied as it does."""
    Meshes, *_ = _p3d()
    lap = Meshes([verts.float()], [faces]).laplacian_packed().to_dense().double()
    return (lap @ verts).norm(dim=1).mean()


def _edge_faces(faces: np.ndarray) -> dict[tuple[int, int], list[int]]:
    by_edge: dict[tuple[int, int], list[int]] = {}
    for f, face in enumerate(faces.tolist()):
        for k in range(3):
            edge = tuple(sorted((face[k], face[(k + 1) % 3])))
            by_edge.setdefault(edge, []).append(f)
    return by_edge


def _loop_normal_consistency(verts: torch.Tensor, faces: torch.Tensor, face_ids) -> torch.Tensor:
    """Per face pair sharing an edge, at least one in face_ids: 1 - cos of the two faces' normals, averaged."""
    subset = set(face_ids.tolist())
    terms = []
    for (v0, v1), fs in _edge_faces(faces.numpy()).items():
        for f0, f1 in itertools.combinations(fs, 2):
            if f0 not in subset and f1 not in subset:
                continue
            (a,) = set(faces[f0].tolist()) - {v0, v1}
            (b,) = set(faces[f1].tolist()) - {v0, v1}
            e = verts[v1] - verts[v0]
            n0 = torch.linalg.cross(e, verts[a] - verts[v0])
            n1 = torch.linalg.cross(verts[b] - verts[v0], e)
            terms.append(1 - torch.dot(n0, n1) / (n0.norm() * n1.norm()))
    return torch.stack(terms).mean()


def _loop_laplacian(verts: torch.Tensor, faces: torch.Tensor, vertex_ids) -> torch.Tensor:
    neighbours: dict[int, set[int]] = {}
    for v0, v1 in _edge_faces(faces.numpy()):
        neighbours.setdefault(v0, set()).add(v1)
        neighbours.setdefault(v1, set()).add(v0)
    terms = []
    for i in vertex_ids.tolist():
        nbr = sorted(neighbours.get(i, ()))
        mean = verts[nbr].mean(0) if nbr else torch.zeros(3, dtype=verts.dtype)
        terms.append((mean - verts[i]).norm())
    return torch.stack(terms).mean()


def _random_subset(n: int, k: int, seed: int) -> torch.Tensor:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:k]


# ---------------------------------------------------------------------------------------------
# Whole-mesh parity with PyTorch3D


@pytest.mark.parametrize("name", sorted(MESHES))
def test_whole_mesh_matches_pytorch3d_float64(name):
    Meshes, _, mesh_normal_consistency, mesh_edge_loss = _p3d()
    verts, faces = MESHES[name]()
    meshes = Meshes([verts], [faces])
    torch.testing.assert_close(uniform_laplacian(verts, faces), _p3d_laplacian64(verts, faces), atol=ATOL64, rtol=0)
    torch.testing.assert_close(normal_consistency(verts, faces), mesh_normal_consistency(meshes), atol=ATOL64, rtol=0)
    for target in (0.0, 0.3):
        torch.testing.assert_close(
            edge_length_loss(verts, faces, target_length=target),
            mesh_edge_loss(meshes, target_length=target),
            atol=ATOL64,
            rtol=0,
        )


@pytest.mark.parametrize("name", sorted(MESHES))
def test_whole_mesh_matches_pytorch3d_float32(name):
    Meshes, mesh_laplacian_smoothing, mesh_normal_consistency, mesh_edge_loss = _p3d()
    verts, faces = MESHES[name]()
    verts = verts.float()
    meshes = Meshes([verts], [faces])
    for ours, theirs in [
        (uniform_laplacian(verts, faces), mesh_laplacian_smoothing(meshes, method="uniform")),
        (normal_consistency(verts, faces), mesh_normal_consistency(meshes)),
        (edge_length_loss(verts, faces, target_length=0.2), mesh_edge_loss(meshes, target_length=0.2)),
    ]:
        assert ours.dtype == torch.float32 and ours.shape == ()
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_unreferenced_vertex_and_non_manifold_edge_match_pytorch3d():
    """An unused vertex counts |v| in the Laplacian; an edge of 3 faces gives its 3 pairs (PyTorch3D's rules)."""
    Meshes, _, mesh_normal_consistency, mesh_edge_loss = _p3d()
    verts, faces = _noisy_sphere(seed=3, subdivisions=1)
    v0, v1 = faces[0, 0].item(), faces[0, 1].item()
    fin = torch.tensor([[0.3, 0.2, 0.1]], dtype=torch.float64)  # a third face on edge (v0, v1), and an unused vertex
    spare = torch.tensor([[2.0, -1.0, 0.5]], dtype=torch.float64)
    verts = torch.cat([verts, fin, spare])
    faces = torch.cat([faces, torch.tensor([[v0, v1, verts.shape[0] - 2]])])
    meshes = Meshes([verts], [faces])
    torch.testing.assert_close(uniform_laplacian(verts, faces), _p3d_laplacian64(verts, faces), atol=ATOL64, rtol=0)
    torch.testing.assert_close(normal_consistency(verts, faces), mesh_normal_consistency(meshes), atol=ATOL64, rtol=0)
    torch.testing.assert_close(edge_length_loss(verts, faces), mesh_edge_loss(meshes), atol=ATOL64, rtol=0)
    topo = part_topology(faces, num_verts=verts.shape[0])
    assert topo.pair_verts.shape[0] == 80 * 3 // 2 - 1 + 3  # the sphere's 120 pairs, less (v0, v1)'s one, plus 3


# ---------------------------------------------------------------------------------------------
# Subsets


def test_subset_of_a_separate_component_matches_pytorch3d_on_it():
    """On a mesh of two components, a subset that is one whole component is PyTorch3D's value of that component."""
    Meshes, _, mesh_normal_consistency, mesh_edge_loss = _p3d()
    verts, faces, nva, nfa = _two_components()
    parts = {
        "a": (torch.arange(nva), torch.arange(nfa), verts[:nva], faces[:nfa]),
        "b": (torch.arange(nva, verts.shape[0]), torch.arange(nfa, faces.shape[0]), verts[nva:], faces[nfa:] - nva),
    }
    for vertex_ids, face_ids, sub_verts, sub_faces in parts.values():
        topo = part_topology(faces, num_verts=verts.shape[0], vertex_ids=vertex_ids, face_ids=face_ids)
        meshes = Meshes([sub_verts], [sub_faces])
        torch.testing.assert_close(topo.laplacian(verts), _p3d_laplacian64(sub_verts, sub_faces), atol=ATOL64, rtol=0)
        torch.testing.assert_close(topo.normal_consistency(verts), mesh_normal_consistency(meshes), atol=ATOL64, rtol=0)
        torch.testing.assert_close(
            topo.edge_length(verts, target_length=0.1), mesh_edge_loss(meshes, 0.1), atol=ATOL64, rtol=0
        )


@pytest.mark.parametrize("name", ["noisy_sphere", "half_sphere"])
def test_edge_loss_of_face_subset_is_pytorch3d_of_the_submesh(name):
    Meshes, _, _, mesh_edge_loss = _p3d()
    verts, faces = MESHES[name]()
    face_ids = _random_subset(faces.shape[0], 40, seed=4)
    ours = edge_length_loss(verts, faces, face_ids=face_ids, target_length=0.15)
    theirs = mesh_edge_loss(Meshes([verts], [faces[face_ids]]), target_length=0.15)
    torch.testing.assert_close(ours, theirs, atol=ATOL64, rtol=0)


@pytest.mark.parametrize("name", ["noisy_sphere", "half_sphere"])
def test_normal_consistency_of_a_fan_is_pytorch3d_of_the_fan_and_its_ring(name):
    """The pairs touching the fan of faces around a vertex are those of the fan plus the faces across its rim:
    on that patch (whose ring faces share no edge with each other) PyTorch3D sees the same pairs."""
    Meshes, _, mesh_normal_consistency, _ = _p3d()
    verts, faces = MESHES[name]()
    top = int(verts[:, 2].argmax())
    fan = torch.tensor(part_faces(faces, vertex_ids=torch.tensor([top]), all_corners=False))
    by_edge = _edge_faces(faces.numpy())
    core = set(fan.tolist())
    patch = sorted(core | {g for fs in by_edge.values() if core & set(fs) for g in fs})
    ring = set(patch) - core
    assert len(ring) == len(core)
    assert not any(len(ring & set(fs)) > 1 for fs in by_edge.values())  # ring faces share no edge
    ours = normal_consistency(verts, faces, face_ids=fan)
    theirs = mesh_normal_consistency(Meshes([verts], [faces[torch.tensor(patch)]]))
    torch.testing.assert_close(ours, theirs, atol=ATOL64, rtol=0)


@pytest.mark.parametrize("name", ["noisy_sphere", "half_sphere"])
def test_subsets_match_loop_references(name):
    verts, faces = MESHES[name]()
    vertex_ids = _random_subset(verts.shape[0], 25, seed=5)
    face_ids = _random_subset(faces.shape[0], 30, seed=6)
    topo = part_topology(faces, num_verts=verts.shape[0], vertex_ids=vertex_ids, face_ids=face_ids)
    torch.testing.assert_close(topo.laplacian(verts), _loop_laplacian(verts, faces, vertex_ids), atol=1e-12, rtol=0)
    torch.testing.assert_close(
        topo.normal_consistency(verts), _loop_normal_consistency(verts, faces, face_ids), atol=1e-12, rtol=0
    )
    torch.testing.assert_close(uniform_laplacian(verts, faces, vertex_ids=vertex_ids), topo.laplacian(verts))
    torch.testing.assert_close(normal_consistency(verts, faces, face_ids=face_ids), topo.normal_consistency(verts))
    torch.testing.assert_close(edge_length_loss(verts, faces, face_ids=face_ids), topo.edge_length(verts))


def test_subset_holds_only_what_it_needs():
    verts, faces = _noisy_sphere(subdivisions=3)
    vertex_ids = torch.arange(10)
    face_ids = torch.tensor(part_faces(faces, vertex_ids=vertex_ids, all_corners=False))
    topo = part_topology(faces, num_verts=verts.shape[0], vertex_ids=vertex_ids, face_ids=face_ids)
    assert topo.vertex_ids.tolist() == list(range(10))
    valence = torch.bincount(topo.neighbour_rows)
    assert valence.shape == (10,) and 5 <= valence.min() and valence.max() <= 6  # icosphere valences
    n_face_edges = len({tuple(sorted(e)) for f in faces[face_ids].tolist() for e in itertools.pairwise([*f, f[0]])})
    assert topo.edges.shape[0] == n_face_edges
    assert topo.pair_verts.shape[0] < 3 * len(face_ids)  # pairs touching the subset only, not the mesh's 3F/2
    # Bool masks select the same part; duplicates are ignored.
    mask = torch.zeros(verts.shape[0], dtype=torch.bool)
    mask[:10] = True
    again = part_topology(faces, num_verts=verts.shape[0], vertex_ids=mask, face_ids=torch.cat([face_ids, face_ids]))
    torch.testing.assert_close(again.laplacian(verts), topo.laplacian(verts))
    torch.testing.assert_close(again.normal_consistency(verts), topo.normal_consistency(verts))


def test_empty_subsets_give_zero_with_a_graph():
    verts, faces = _noisy_sphere()
    verts = verts.requires_grad_()
    none = np.zeros(0, np.int64)
    topo = part_topology(faces, num_verts=verts.shape[0], vertex_ids=none, face_ids=none)
    total = topo.laplacian(verts) + topo.normal_consistency(verts) + topo.edge_length(verts)
    assert total.item() == 0.0
    total.backward()
    assert torch.count_nonzero(verts.grad) == 0


# ---------------------------------------------------------------------------------------------
# Known values, gradients, batches, dtypes and devices


def test_planar_grid_is_zero_for_normal_consistency_and_interior_laplacian():
    verts, faces = _grid(6, z=0.7)
    assert normal_consistency(verts, faces).item() == pytest.approx(0.0, abs=1e-12)
    interior = [i * 6 + j for i in range(1, 5) for j in range(1, 5)]
    # Interior grid vertices of this triangulation have 6 neighbours placed symmetrically.
    assert uniform_laplacian(verts, faces, vertex_ids=torch.tensor(interior)).item() == pytest.approx(0.0, abs=1e-12)
    # A fold along the grid line x = 2 gives positive normal consistency, on the pairs across it only.
    folded = verts.clone()
    folded[:, 2] += (verts[:, 0] - 2.0).clamp(min=0.0)
    fold_pairs = part_topology(faces).pair_verts
    on_fold = (verts[fold_pairs[:, 0], 0] == 2) & (verts[fold_pairs[:, 1], 0] == 2)
    assert normal_consistency(folded, faces).item() == pytest.approx(
        (1 - 0.5**0.5) * on_fold.sum().item() / fold_pairs.shape[0]
    )


def test_regular_tetrahedron_edge_loss_zero_at_its_edge_length():
    verts = torch.tensor([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=torch.float64)
    faces = torch.tensor([[0, 1, 2], [0, 3, 1], [0, 2, 3], [1, 3, 2]])
    side = 8.0**0.5
    assert edge_length_loss(verts, faces, target_length=side).item() == pytest.approx(0.0, abs=1e-24)
    assert edge_length_loss(verts, faces).item() == pytest.approx(8.0)
    # Every vertex's neighbour mean is the opposite face centroid: |c - v| = 4/3 |v|.
    assert uniform_laplacian(verts, faces).item() == pytest.approx(4 / 3 * 3**0.5)
    # Closed convex and consistently oriented: cos between adjacent normals is -1/3 -> 1 - cos = 4/3.
    assert normal_consistency(verts, faces).item() == pytest.approx(4 / 3)


def test_gradients_match_finite_differences():
    verts, faces = _noisy_sphere(seed=7, subdivisions=1)
    topo = part_topology(
        faces, num_verts=verts.shape[0], vertex_ids=torch.arange(0, 42, 3), face_ids=torch.arange(0, 80, 4)
    )
    x = verts.clone().requires_grad_()
    assert torch.autograd.gradcheck(topo.laplacian, (x,))
    assert torch.autograd.gradcheck(topo.normal_consistency, (x,))
    assert torch.autograd.gradcheck(lambda v: topo.edge_length(v, target_length=0.2), (x,))
    whole = part_topology(faces)
    assert torch.autograd.gradcheck(
        lambda v: whole.laplacian(v) + whole.normal_consistency(v) + whole.edge_length(v), (x,)
    )


def test_batched_verts_give_one_value_per_mesh():
    verts, faces = _noisy_sphere(seed=8)
    batch = torch.stack([verts, verts * 1.5, verts.flip(-1)])
    topo = part_topology(faces, vertex_ids=torch.arange(30), face_ids=torch.arange(50))
    for method in (topo.laplacian, topo.normal_consistency, topo.edge_length):
        values = method(batch)
        assert values.shape == (3,)
        torch.testing.assert_close(values, torch.stack([method(v) for v in batch]))
    targets = torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64)
    torch.testing.assert_close(
        topo.edge_length(batch, target_length=targets),
        torch.stack([topo.edge_length(v, target_length=t.item()) for v, t in zip(batch, targets, strict=True)]),
    )


@pytest.mark.parametrize(
    "device",
    ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA"))],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_and_device_follow_verts(device, dtype):
    verts, faces = _noisy_sphere(seed=9)
    topo = part_topology(faces, vertex_ids=torch.arange(40), face_ids=torch.arange(60))  # built on the CPU
    ref = [topo.laplacian(verts), topo.normal_consistency(verts), topo.edge_length(verts, target_length=0.1)]
    x = verts.to(device=device, dtype=dtype).requires_grad_()
    moved = topo.to(device)
    assert moved.device.type == device and topo.to("cpu") is topo
    for method, expected in zip(
        [moved.laplacian, moved.normal_consistency, lambda v: moved.edge_length(v, target_length=0.1)], ref, strict=True
    ):
        value = method(x)
        assert value.dtype == dtype and value.device.type == device
        torch.testing.assert_close(value.double().cpu(), expected, atol=1e-5, rtol=1e-5)
        (grad,) = torch.autograd.grad(value, x)
        assert grad.shape == x.shape and grad.device.type == device and torch.isfinite(grad).all()
    # The CPU-built topology still works on another device (moved per call).
    torch.testing.assert_close(topo.laplacian(x).double().cpu(), ref[0], atol=1e-5, rtol=1e-5)


def test_part_topology_is_frozen():
    topo = part_topology(_icosphere(1)[1])
    assert isinstance(topo, PartTopology) and topo.num_verts == 42
    with pytest.raises(AttributeError):
        topo.num_verts = 3


# ---------------------------------------------------------------------------------------------
# Bad inputs


def test_bad_inputs_raise_value_error_naming_the_argument():
    verts, faces = _icosphere(1)
    V, F = verts.shape[0], faces.shape[0]
    cases = [
        (lambda: part_topology(faces[:, :2]), "faces"),
        (lambda: part_topology(faces.float()), "faces"),
        (lambda: part_topology(faces[:0]), "faces"),
        (lambda: part_topology(faces - 1), "faces"),
        (lambda: part_topology(faces, num_verts=10), "faces"),
        (lambda: part_topology(faces, num_verts=0), "num_verts"),
        (lambda: part_topology(faces, vertex_ids=torch.tensor([0, V])), "vertex_ids"),
        (lambda: part_topology(faces, vertex_ids=torch.tensor([-1])), "vertex_ids"),
        (lambda: part_topology(faces, vertex_ids=torch.zeros(V + 1, dtype=torch.bool)), "vertex_ids"),
        (lambda: part_topology(faces, vertex_ids=torch.zeros(2, 2, dtype=torch.long)), "vertex_ids"),
        (lambda: part_topology(faces, face_ids=torch.tensor([F])), "face_ids"),
        (lambda: part_topology(faces, face_ids=torch.tensor([0.5])), "face_ids"),
        (lambda: uniform_laplacian(verts[:, :2], faces), "verts"),
        (lambda: normal_consistency(verts.long(), faces), "verts"),
        (lambda: edge_length_loss(verts.numpy(), faces), "verts"),
        (lambda: uniform_laplacian(verts[:10], faces), "faces"),
        (lambda: part_topology(faces).laplacian(verts[:-1]), "verts"),
        (lambda: part_topology(faces).edge_length(verts[None, :, :2]), "verts"),
        (lambda: part_faces(faces, vertex_ids=torch.tensor([V + 5]), num_verts=V), "vertex_ids"),
    ]
    for call, name in cases:
        with pytest.raises(ValueError, match=name):
            call()
