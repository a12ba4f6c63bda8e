"""Mesh regularisers on a part of one mesh (uniform Laplacian, normal consistency, edge length).

The three terms follow PyTorch3D's ``pytorch3d.loss`` definitions exactly (``mesh_laplacian_smoothing``
with ``method="uniform"``, ``mesh_normal_consistency``, ``mesh_edge_loss``), for a single mesh given
as ``verts (..., V, 3)`` / ``faces (F, 3)`` and optionally restricted to a subset of it, e.g. the
vertices and faces of a stump cap on a whole closed body:

- *uniform Laplacian*: mean over the selected vertices of ``|mean(neighbours(i)) - v_i|``, the
  neighbours being those of the whole mesh (unique edges, as PyTorch3D's ``laplacian``; a vertex
  without edges contributes ``|v_i|``, as in PyTorch3D).
- *normal consistency*: mean over face pairs sharing an edge of ``1 - cos(n0, n1)``, with
  ``n0 = (v1 - v0) x (a - v0)``, ``n1 = -(v1 - v0) x (b - v0)`` (``v0 < v1`` the edge, ``a``, ``b``
  the faces' opposite corners). An edge shared by ``k`` faces gives all ``k (k - 1) / 2`` pairs
  (none at a boundary edge), as PyTorch3D does. Restricted to ``face_ids``: the pairs with at least
  one face in the subset (so the seam between the subset and the rest is included).
- *edge length*: mean over the unique edges of ``(|e| - target_length)^2``; restricted to
  ``face_ids``: the unique edges of those faces.

This module owns the topology bookkeeping: :func:`part_topology` builds a frozen
:class:`PartTopology` once (numpy, ``O(F log F)``) holding only the index tensors the subset needs,
and its methods gather just those vertices per call (``O(subset)`` forward; the backward writes a
dense ``(..., V, 3)`` gradient, as any gather does). The plain functions :func:`uniform_laplacian`,
:func:`normal_consistency` and :func:`edge_length_loss` build a topology and call it, for one-off use.

All values are differentiable w.r.t. ``verts``, in the dtype and on the device of ``verts``
(float32 or float64, CPU or CUDA); a batch ``(..., V, 3)`` gives one value per mesh ``(...)``.
An empty selection (no vertices, pairs or edges) gives 0. Units: those of ``verts`` (the
Laplacian and edge lengths), squared for the edge term; the normal term is unitless.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "PartTopology",
    "edge_length_loss",
    "normal_consistency",
    "part_faces",
    "part_topology",
    "uniform_laplacian",
]

# Face corners (i, j) of each face edge and the opposite corner k.
_EDGE_CORNERS = np.array([[0, 1], [1, 2], [2, 0]])
_OPPOSITE_CORNER = np.array([2, 0, 1])


@dataclass(frozen=True, eq=False)
class PartTopology:
    """Index tensors of one mesh's part, for :meth:`laplacian`, :meth:`normal_consistency`, :meth:`edge_length`.

    Build with :func:`part_topology`. All indices are global vertex indices into ``verts (..., V, 3)``.

    num_verts: V, the vertex count the verts passed to the methods must have.
    vertex_ids: (S,) int64, sorted unique: the vertices the Laplacian averages over.
    neighbour_rows, neighbour_ids: (N,) int64: the selected vertices' neighbours over the whole
        mesh as (row into vertex_ids, neighbour vertex) pairs, rows ascending (CSR order).
    neighbour_weights: (N,) float64: ``1 / degree`` of the row's vertex.
    pair_verts: (P, 4) int64: ``(v0, v1, a, b)`` per face pair of the normal-consistency term,
        ``v0 < v1`` the shared edge and ``a``, ``b`` the opposite corners of the two faces.
    edges: (E, 2) int64, ``v0 < v1``: the unique edges of the edge-length term.
    """

    num_verts: int
    vertex_ids: torch.Tensor
    neighbour_rows: torch.Tensor
    neighbour_ids: torch.Tensor
    neighbour_weights: torch.Tensor
    pair_verts: torch.Tensor
    edges: torch.Tensor

    @property
    def device(self) -> torch.device:
        """Device of the index tensors."""
        return self.vertex_ids.device

    def to(self, device: torch.device | str) -> PartTopology:
        """A copy with every index tensor on ``device`` (self if already there)."""
        device = torch.device(device)
        if _same_device(self.device, device):
            return self
        return PartTopology(
            num_verts=self.num_verts,
            vertex_ids=self.vertex_ids.to(device),
            neighbour_rows=self.neighbour_rows.to(device),
            neighbour_ids=self.neighbour_ids.to(device),
            neighbour_weights=self.neighbour_weights.to(device),
            pair_verts=self.pair_verts.to(device),
            edges=self.edges.to(device),
        )

    def laplacian(self, verts: torch.Tensor) -> torch.Tensor:
        """Uniform Laplacian term over :attr:`vertex_ids`. verts: (..., V, 3). Returns (...)."""
        topo = self._on(verts, "verts")
        if topo.vertex_ids.numel() == 0:
            return _zero(verts)
        v_self = verts.index_select(-2, topo.vertex_ids)  # (..., S, 3)
        weighted = verts.index_select(-2, topo.neighbour_ids) * topo.neighbour_weights.to(verts.dtype)[:, None]
        lap = torch.zeros_like(v_self).index_add(-2, topo.neighbour_rows, weighted) - v_self  # (..., S, 3)
        return lap.norm(dim=-1).mean(-1)

    def normal_consistency(self, verts: torch.Tensor) -> torch.Tensor:
        """Normal-consistency term over :attr:`pair_verts`. verts: (..., V, 3). Returns (...)."""
        if self.pair_verts.shape[0] == 0:
            return _zero(self._checked(verts))
        return (1 - self.pair_cosines(verts)).mean(-1)

    def pair_cosines(self, verts: torch.Tensor) -> torch.Tensor:
        """(..., P) cosine between the normals of each face pair of :attr:`pair_verts` (the
        per-pair quantity of :meth:`normal_consistency`). verts: (..., V, 3)."""
        topo = self._on(verts, "verts")
        batch = verts.shape[:-2]
        corners = verts.index_select(-2, topo.pair_verts.reshape(-1)).reshape(*batch, -1, 4, 3)
        v0, v1, a, b = corners.unbind(-2)  # (..., P, 3) each
        edge = v1 - v0
        n0 = torch.linalg.cross(edge, a - v0, dim=-1)
        n1 = -torch.linalg.cross(edge, b - v0, dim=-1)
        return torch.cosine_similarity(n0, n1, dim=-1)

    def edge_length(self, verts: torch.Tensor, *, target_length: float | torch.Tensor = 0.0) -> torch.Tensor:
        """Edge-length term ``mean (|e| - target_length)^2`` over :attr:`edges`. verts: (..., V, 3). Returns (...)."""
        if self.edges.shape[0] == 0:
            return _zero(self._checked(verts))
        length = self.edge_lengths(verts)  # (..., E)
        if isinstance(target_length, torch.Tensor):
            target_length = target_length.to(verts)[..., None]
        return (length - target_length).square().mean(-1)

    def edge_lengths(self, verts: torch.Tensor) -> torch.Tensor:
        """(..., E) length of each edge of :attr:`edges`. verts: (..., V, 3)."""
        topo = self._on(verts, "verts")
        batch = verts.shape[:-2]
        ends = verts.index_select(-2, topo.edges.reshape(-1)).reshape(*batch, -1, 2, 3)
        return (ends[..., 0, :] - ends[..., 1, :]).norm(dim=-1)

    def _checked(self, verts: torch.Tensor) -> torch.Tensor:
        self._on(verts, "verts")
        return verts

    def _on(self, verts: torch.Tensor, name: str) -> PartTopology:
        if not isinstance(verts, torch.Tensor) or not verts.is_floating_point():
            raise ValueError(f"{name} must be a floating-point torch.Tensor (..., V, 3), got {_describe(verts)}")
        if verts.ndim < 2 or verts.shape[-1] != 3 or verts.shape[-2] != self.num_verts:
            raise ValueError(f"{name} must have shape (..., {self.num_verts}, 3), got {tuple(verts.shape)}")
        return self.to(verts.device)


def part_topology(
    faces: torch.Tensor | np.ndarray,
    *,
    num_verts: int | None = None,
    vertex_ids: torch.Tensor | np.ndarray | None = None,
    face_ids: torch.Tensor | np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> PartTopology:
    """Precompute the index tensors for the regularisers of one mesh's part.

    faces: (F, 3) integer vertex indices of the whole mesh (neighbours, edge sharing are taken from it).
    num_verts: V (default ``faces.max() + 1``); vertices need not all be referenced by faces.
    vertex_ids: (S,) indices in [0, V), or a (V,) bool mask: the vertices of the Laplacian term
        (default all V, as PyTorch3D). Duplicates are ignored.
    face_ids: (G,) indices in [0, F), or an (F,) bool mask: the faces of the normal-consistency
        term (pairs with at least one face in it) and of the edge term (their edges); default all F.
    device: where the index tensors live (default: ``faces``' device if a tensor, else CPU); the
        methods move them to the verts' device when that differs (better build on that device).

    Raises ValueError naming the argument for wrong shapes, dtypes or out-of-range indices.
    """
    faces_np = _faces_array(faces)
    num_faces = faces_np.shape[0]
    if num_verts is None:
        num_verts = int(faces_np.max()) + 1
    elif isinstance(num_verts, bool) or not isinstance(num_verts, (int, np.integer)) or num_verts <= 0:
        raise ValueError(f"num_verts must be a positive int, got {num_verts!r}")
    num_verts = int(num_verts)
    if faces_np.max() >= num_verts:
        raise ValueError(f"faces index vertex {int(faces_np.max())}, out of range for num_verts={num_verts}")
    vids = _ids(vertex_ids, "vertex_ids", num_verts)
    fids = _ids(face_ids, "face_ids", num_faces)
    if device is None:
        device = faces.device if isinstance(faces, torch.Tensor) else torch.device("cpu")

    # Unique undirected edges (v0 < v1) of the whole mesh, and each face corner-edge's edge id.
    corner_edges = np.sort(faces_np[:, _EDGE_CORNERS], axis=-1).reshape(-1, 2)  # (3F, 2), row 3f + k
    keys, edge_of_row = np.unique(corner_edges[:, 0] * num_verts + corner_edges[:, 1], return_inverse=True)
    edges_all = np.stack([keys // num_verts, keys % num_verts], axis=1)  # sorted, as np.unique(axis=0)
    edge_of_row = edge_of_row.reshape(-1)

    neighbour_rows, neighbour_ids, neighbour_weights = _neighbours(edges_all, vids, num_verts)
    pair_verts = _face_pairs(faces_np, edges_all, edge_of_row, fids, num_faces)
    in_part = np.zeros(num_faces, bool)
    in_part[fids] = True
    part_edges = edges_all[np.unique(edge_of_row.reshape(num_faces, 3)[in_part])] if fids.size else edges_all[:0]

    def tensor(array: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=dtype, device=device)

    return PartTopology(
        num_verts=num_verts,
        vertex_ids=tensor(vids, torch.int64),
        neighbour_rows=tensor(neighbour_rows, torch.int64),
        neighbour_ids=tensor(neighbour_ids, torch.int64),
        neighbour_weights=tensor(neighbour_weights, torch.float64),
        pair_verts=tensor(pair_verts, torch.int64),
        edges=tensor(part_edges.reshape(-1, 2), torch.int64),
    )


def part_faces(
    faces: torch.Tensor | np.ndarray,
    *,
    vertex_ids: torch.Tensor | np.ndarray,
    num_verts: int | None = None,
    all_corners: bool = True,
) -> np.ndarray:
    """Indices (G,) int64 of the faces whose three (``all_corners``) or any corner is in ``vertex_ids``.

    faces: (F, 3); vertex_ids: (S,) vertex indices in [0, V), or a (V,) bool mask; num_verts: V
    (default ``faces.max() + 1``, or the mask's length). Use it to get the ``face_ids`` of a part
    known by its vertices, e.g. a stump cap.
    """
    faces_np = _faces_array(faces)
    if num_verts is None:
        ids = _as_numpy(vertex_ids) if isinstance(vertex_ids, (torch.Tensor, np.ndarray)) else np.asarray(vertex_ids)
        is_mask = ids.dtype == bool and ids.ndim == 1
        num_verts = ids.shape[0] if is_mask else int(faces_np.max()) + 1
    if faces_np.max() >= num_verts:
        raise ValueError(f"faces index vertex {int(faces_np.max())}, out of range for num_verts={num_verts}")
    vids = _ids(vertex_ids, "vertex_ids", int(num_verts))
    member = np.zeros(int(num_verts), bool)
    member[vids] = True
    hit = member[faces_np]
    return np.flatnonzero(hit.all(1) if all_corners else hit.any(1)).astype(np.int64)


def uniform_laplacian(
    verts: torch.Tensor,
    faces: torch.Tensor | np.ndarray,
    *,
    vertex_ids: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """PyTorch3D's ``mesh_laplacian_smoothing(method="uniform")`` of one mesh, optionally averaged over ``vertex_ids``.

    verts: (..., V, 3); faces: (F, 3). Returns (...). Builds the topology each call: for repeated
    use build a :class:`PartTopology` once with :func:`part_topology` and call its ``laplacian``.
    """
    topo = part_topology(faces, num_verts=_num_verts(verts), vertex_ids=vertex_ids, face_ids=np.zeros(0, np.int64))
    return topo.laplacian(verts)


def normal_consistency(
    verts: torch.Tensor,
    faces: torch.Tensor | np.ndarray,
    *,
    face_ids: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """PyTorch3D's ``mesh_normal_consistency`` of one mesh, optionally over the pairs touching ``face_ids``.

    verts: (..., V, 3); faces: (F, 3). Returns (...). See :func:`uniform_laplacian` on reuse.
    """
    topo = part_topology(faces, num_verts=_num_verts(verts), vertex_ids=np.zeros(0, np.int64), face_ids=face_ids)
    return topo.normal_consistency(verts)


def edge_length_loss(
    verts: torch.Tensor,
    faces: torch.Tensor | np.ndarray,
    *,
    target_length: float | torch.Tensor = 0.0,
    face_ids: torch.Tensor | np.ndarray | None = None,
) -> torch.Tensor:
    """PyTorch3D's ``mesh_edge_loss`` of one mesh, optionally over the edges of ``face_ids``.

    verts: (..., V, 3); faces: (F, 3). Returns (...). See :func:`uniform_laplacian` on reuse.
    """
    topo = part_topology(faces, num_verts=_num_verts(verts), vertex_ids=np.zeros(0, np.int64), face_ids=face_ids)
    return topo.edge_length(verts, target_length=target_length)


# ---------------------------------------------------------------------------------------------
# Topology helpers (numpy)


def _neighbours(edges: np.ndarray, vids: np.ndarray, num_verts: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR neighbour lists of ``vids`` over the unique ``edges`` (E, 2): rows, neighbours, 1/degree weights.

    Directed edges both ways, as PyTorch3D's ``laplacian`` (a self-loop of a degenerate face counts twice).
    """
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    degree = np.bincount(src, minlength=num_verts)
    row_of_vertex = np.full(num_verts, -1, np.int64)
    row_of_vertex[vids] = np.arange(vids.size)
    keep = row_of_vertex[src] >= 0
    rows, nbr = row_of_vertex[src[keep]], dst[keep]
    order = np.argsort(rows, kind="stable")
    rows, nbr = rows[order], nbr[order]
    return rows, nbr, 1.0 / degree[vids[rows]]


def _face_pairs(
    faces: np.ndarray, edges: np.ndarray, edge_of_row: np.ndarray, fids: np.ndarray, num_faces: int
) -> np.ndarray:
    """(P, 4) ``(v0, v1, a, b)`` for every pair of faces sharing an edge, at least one face in ``fids``."""
    if fids.size == 0:
        return np.zeros((0, 4), np.int64)
    face_of_row = np.repeat(np.arange(num_faces), 3)
    opposite_of_row = faces[:, _OPPOSITE_CORNER].reshape(-1)
    in_part = np.zeros(num_faces, bool)
    in_part[fids] = True
    # Only edges of the part's faces can carry a kept pair.
    wanted = np.zeros(edges.shape[0], bool)
    wanted[edge_of_row[np.repeat(in_part, 3)]] = True
    rows = np.flatnonzero(wanted[edge_of_row])
    rows = rows[np.argsort(edge_of_row[rows], kind="stable")]
    row_edges = edge_of_row[rows]
    _, starts, counts = np.unique(row_edges, return_index=True, return_counts=True)
    blocks = []
    for k in np.unique(counts):
        if k < 2:
            continue
        first = starts[counts == k]  # (G,) start of each k-face edge's rows
        combos = np.array(list(itertools.combinations(range(int(k)), 2)))  # (C, 2)
        pair_rows = rows[first[:, None, None] + combos[None]].reshape(-1, 2)  # (G*C, 2) rows into 3F
        blocks.append(pair_rows)
    if not blocks:
        return np.zeros((0, 4), np.int64)
    pair_rows = np.concatenate(blocks)
    keep = in_part[face_of_row[pair_rows]].any(1)
    pair_rows = pair_rows[keep]
    ends = edges[edge_of_row[pair_rows[:, 0]]]  # (P, 2)
    return np.concatenate([ends, opposite_of_row[pair_rows]], axis=1).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Validation helpers


def _as_numpy(values: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        return values.detach().cpu().numpy()
    return np.asarray(values)


def _describe(value: object) -> str:
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return f"{type(value).__name__} of shape {tuple(value.shape)} and dtype {value.dtype}"
    return type(value).__name__


def _faces_array(faces: torch.Tensor | np.ndarray) -> np.ndarray:
    if not isinstance(faces, (torch.Tensor, np.ndarray)):
        raise ValueError(f"faces must be an (F, 3) integer tensor or array, got {_describe(faces)}")  # noqa: TRY004
    array = _as_numpy(faces)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] == 0:
        raise ValueError(f"faces must have shape (F, 3) with F >= 1, got {tuple(array.shape)}")
    if array.dtype == bool or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"faces must hold integer vertex indices, got dtype {array.dtype}")
    if array.min() < 0:
        raise ValueError(f"faces hold a negative vertex index ({int(array.min())})")
    return array.astype(np.int64, copy=False)


def _ids(ids: torch.Tensor | np.ndarray | None, name: str, size: int) -> np.ndarray:
    """Sorted unique int64 indices in [0, size) from an index list or a (size,) bool mask (None: all)."""
    if ids is None:
        return np.arange(size, dtype=np.int64)
    if not isinstance(ids, (torch.Tensor, np.ndarray, list, tuple)):
        raise ValueError(f"{name} must be a 1-D index tensor/array or bool mask, got {_describe(ids)}")  # noqa: TRY004
    array = _as_numpy(ids) if isinstance(ids, (torch.Tensor, np.ndarray)) else np.asarray(ids, dtype=np.int64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {tuple(array.shape)}")
    if array.dtype == bool:
        if array.shape[0] != size:
            raise ValueError(f"{name} as a bool mask must have length {size}, got {array.shape[0]}")
        return np.flatnonzero(array).astype(np.int64)
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer indices, got dtype {array.dtype}")
    array = array.astype(np.int64, copy=False)
    if array.size and (array.min() < 0 or array.max() >= size):
        bad = int(array.min()) if array.min() < 0 else int(array.max())
        raise ValueError(f"{name} holds index {bad}, out of range [0, {size})")
    return np.unique(array)


def _num_verts(verts: torch.Tensor) -> int:
    if not isinstance(verts, torch.Tensor) or not verts.is_floating_point():
        raise ValueError(f"verts must be a floating-point torch.Tensor (..., V, 3), got {_describe(verts)}")
    if verts.ndim < 2 or verts.shape[-1] != 3 or verts.shape[-2] == 0:
        raise ValueError(f"verts must have shape (..., V, 3) with V >= 1, got {tuple(verts.shape)}")
    return int(verts.shape[-2])


def _same_device(a: torch.device, b: torch.device) -> bool:
    if a.type != b.type:
        return False
    if a.type == "cuda":
        current = torch.cuda.current_device() if torch.cuda.is_available() else 0
        return (a.index if a.index is not None else current) == (b.index if b.index is not None else current)
    return a.index == b.index or a.index is None or b.index is None


def _zero(verts: torch.Tensor) -> torch.Tensor:
    """Zeros (...) connected to ``verts``' graph (an empty term)."""
    return verts[..., :0, :].sum(dim=(-2, -1))
