"""A tiny, body-shaped model in the SMPL-X file format, generated for tests.

The real SMPL-X files cannot be shipped or downloaded, so tests load this file through the real
``smplx`` code path instead. The body is a set of closed, watertight tubes (capsules along
poly-lines) around SMPL-X's bones, in a T-pose at plausible SMPL-X joint positions (~1.77 m tall,
Y up, facing +Z, the person's left at +X):

- torso (pelvis -> spine1 -> spine2 -> spine3 -> neck), neck, head, collars, upper arms,
  forearms, hands (a paddle with rings at the middle-finger joints), thighs, shanks, feet;
- skinning: each vertex is bound rigidly to the nearest bone among its tube's bones (a bone
  runs from a joint to its child), so limbs move with their joints;
- J_regressor: a joint is the mean of a ring of vertices centred on it, or, for joints off the
  tube axes (jaw, eyes, fingers other than the middle one), the minimum-norm affine
  combination of nearby vertices; both reproduce the joint positions exactly;
- shapedirs (300 shape + 100 expression directions, as SMPL-X v1.1 stores them): beta0 scales
  the body about the pelvis (height), beta1 thickens every tube about its axis (girth), higher
  betas are smooth local girth changes; expressions move head vertices only;
- posedirs are zero; hand PCA components are the identity; hand means a slight finger curl.

``vertex_ids`` (nose, eyes, ears, toes, heels, fingertips) for ``smplx``'s extra joints are
returned with the file: the official ids need the full 10,475-vertex topology.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NUM_JOINTS = 55
NUM_SHAPE = 300
NUM_EXPRESSION = 100

# SMPL-X kinematic tree (parent of each of the 55 joints).
PARENTS: tuple[int, ...] = (
    -1,
    0,
    0,
    0,
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    9,
    9,
    12,
    13,
    14,
    16,
    17,
    18,
    19,
    15,
    15,
    15,
    20,
    25,
    26,
    20,
    28,
    29,
    20,
    31,
    32,
    20,
    34,
    35,
    20,
    37,
    38,
    21,
    40,
    41,
    21,
    43,
    44,
    21,
    46,
    47,
    21,
    49,
    50,
    21,
    52,
    53,
)

# Rest joint positions (metres) of the centre line and the person's left side (x > 0);
# right-side joints are mirrored (x -> -x). Left finger joints are 25..39.
_CENTRE_JOINTS: dict[int, tuple[float, float, float]] = {
    0: (0.0, -0.35, 0.01),  # pelvis
    3: (0.0, -0.24, -0.01),  # spine1
    6: (0.0, -0.11, 0.0),  # spine2
    9: (0.0, -0.05, 0.02),  # spine3
    12: (0.0, 0.16, -0.01),  # neck
    15: (0.0, 0.27, 0.02),  # head
    22: (0.0, 0.23, 0.06),  # jaw
}
_LEFT_JOINTS: dict[int, tuple[float, float, float]] = {
    1: (0.06, -0.45, 0.0),  # hip
    4: (0.11, -0.83, 0.0),  # knee
    7: (0.08, -1.22, -0.04),  # ankle
    10: (0.12, -1.28, 0.08),  # foot (ball)
    13: (0.07, 0.08, -0.01),  # collar
    16: (0.17, 0.11, -0.02),  # shoulder
    18: (0.43, 0.09, -0.04),  # elbow
    20: (0.68, 0.09, -0.04),  # wrist
    23: (0.03, 0.32, 0.09),  # eye
    25: (0.775, 0.09, -0.015),
    26: (0.81, 0.09, -0.015),
    27: (0.835, 0.09, -0.015),  # index
    28: (0.78, 0.09, -0.04),
    29: (0.815, 0.09, -0.04),
    30: (0.843, 0.09, -0.04),  # middle
    31: (0.76, 0.09, -0.075),
    32: (0.785, 0.09, -0.075),
    33: (0.805, 0.09, -0.075),  # pinky
    34: (0.772, 0.09, -0.058),
    35: (0.80, 0.09, -0.058),
    36: (0.825, 0.09, -0.058),  # ring
    37: (0.715, 0.08, 0.0),
    38: (0.74, 0.08, 0.005),
    39: (0.765, 0.08, 0.005),  # thumb
}
_LEFT_TO_RIGHT: dict[int, int] = {1: 2, 4: 5, 7: 8, 10: 11, 13: 14, 16: 17, 18: 19, 20: 21, 23: 24} | {
    j: j + 15 for j in range(25, 40)
}


def rest_joints() -> np.ndarray:
    """(55, 3) rest (T-pose) joint positions, model frame."""
    joints = np.zeros((NUM_JOINTS, 3))
    for j, p in _CENTRE_JOINTS.items():
        joints[j] = p
    for j, p in _LEFT_JOINTS.items():
        joints[j] = p
        joints[_LEFT_TO_RIGHT[j]] = (-p[0], p[1], p[2])
    return joints


@dataclass(frozen=True)
class TubeSpec:
    """A closed tube along a poly-line.

    nodes: (N, 3) centre line; radii: (N, 2) semi-axes along ``width_dir`` and across it;
    caps: axial length of the two end caps; joints_at_nodes: SMPL-X joint centred at each node
    (or -1); bones: joints whose bones may skin this tube's vertices; around: vertices per ring.
    """

    nodes: np.ndarray
    radii: np.ndarray
    width_dir: tuple[float, float, float]
    caps: tuple[float, float]
    joints_at_nodes: tuple[int, ...]
    bones: tuple[int, ...]
    around: int = 12


@dataclass(frozen=True)
class Tube:
    """A generated tube: verts (n, 3), faces (m, 3) local indices, ring_of_vertex (n,) ring id
    (-1 for poles), ring_centres (R, 3), node_ring (N,) ring id of each node."""

    verts: np.ndarray
    faces: np.ndarray
    ring_of_vertex: np.ndarray
    ring_centres: np.ndarray
    node_ring: np.ndarray


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _frame(tangent: np.ndarray, width_dir: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Right-handed (u, v) across ``tangent`` with u as close to ``width_dir`` as possible."""
    u = width_dir - np.dot(width_dir, tangent) * tangent
    if np.linalg.norm(u) < 1e-6:
        u = np.cross(tangent, (0.0, 0.0, 1.0))
    u = _unit(u)
    return u, np.cross(tangent, u)


def _ring(centre, tangent, width_dir, radii, around: int) -> np.ndarray:
    u, v = _frame(tangent, width_dir)
    theta = 2.0 * np.pi * np.arange(around) / around
    return centre + radii[0] * np.cos(theta)[:, None] * u + radii[1] * np.sin(theta)[:, None] * v


def _centre_line(spec: TubeSpec, spacing: float) -> tuple[list, list, list, list]:
    """Ring centres, tangents, radii and node flags along the poly-line, ~``spacing`` apart."""
    nodes, radii = np.asarray(spec.nodes, float), np.asarray(spec.radii, float)
    seg_dirs = [_unit(nodes[i + 1] - nodes[i]) for i in range(len(nodes) - 1)]
    node_tangent = [seg_dirs[0]] + [_unit(seg_dirs[i - 1] + seg_dirs[i]) for i in range(1, len(nodes) - 1)]
    node_tangent.append(seg_dirs[-1])
    centres, tangents, rads, node_ids = [], [], [], []
    for i in range(len(nodes) - 1):
        steps = max(1, int(np.ceil(np.linalg.norm(nodes[i + 1] - nodes[i]) / spacing)))
        for s in range(steps):
            t = s / steps
            centres.append(nodes[i] * (1 - t) + nodes[i + 1] * t)
            tangents.append(node_tangent[i] if s == 0 else seg_dirs[i])
            rads.append(radii[i] * (1 - t) + radii[i + 1] * t)
            node_ids.append(i if s == 0 else -1)
    centres.append(nodes[-1])
    tangents.append(node_tangent[-1])
    rads.append(radii[-1])
    node_ids.append(len(nodes) - 1)
    return centres, tangents, rads, node_ids


def make_tube(spec: TubeSpec, *, spacing: float = 0.045, cap_rings: int = 3) -> Tube:
    """A closed, watertight, outward-oriented tube with ellipsoidal end caps."""
    width = np.asarray(spec.width_dir, float)
    centres, tangents, rads, node_ids = _centre_line(spec, spacing)
    first_t, last_t = tangents[0], tangents[-1]
    # End caps: quarter-ellipse profiles, outermost ring first for the start cap.
    phis = np.pi / 2 * np.arange(1, cap_rings + 1) / (cap_rings + 1)
    start = [(centres[0] - first_t * spec.caps[0] * np.sin(p), first_t, rads[0] * np.cos(p), -1) for p in phis[::-1]]
    end = [(centres[-1] + last_t * spec.caps[1] * np.sin(p), last_t, rads[-1] * np.cos(p), -1) for p in phis]
    rings = start + list(zip(centres, tangents, rads, node_ids)) + end
    n = spec.around
    ring_verts = [_ring(c, t, width, r, n) for c, t, r, _ in rings]
    south = centres[0] - first_t * spec.caps[0]
    north = centres[-1] + last_t * spec.caps[1]
    verts = np.concatenate([south[None], *ring_verts, north[None]])
    num_rings = len(rings)
    ring_of_vertex = np.concatenate([[-1], np.repeat(np.arange(num_rings), n), [-1]])
    idx = lambda r, k: 1 + r * n + (k % n)  # noqa: E731
    faces = []
    for k in range(n):
        faces.append((0, idx(0, k + 1), idx(0, k)))
        for r in range(num_rings - 1):
            faces.append((idx(r, k), idx(r, k + 1), idx(r + 1, k + 1)))
            faces.append((idx(r, k), idx(r + 1, k + 1), idx(r + 1, k)))
        last = len(verts) - 1
        faces.append((idx(num_rings - 1, k), idx(num_rings - 1, k + 1), last))
    faces = np.asarray(faces, dtype=np.int64)
    if signed_volume(verts, faces) < 0:
        faces = faces[:, ::-1].copy()
    node_ring = np.array([r for r, ring in enumerate(rings) if ring[3] >= 0])
    return Tube(verts, faces, ring_of_vertex, np.array([ring[0] for ring in rings]), node_ring)


def signed_volume(verts: np.ndarray, faces: np.ndarray) -> float:
    """Volume enclosed by a closed triangle mesh; positive when faces are counter-clockwise from outside."""
    a, b, c = (verts[faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def _mirror(p) -> np.ndarray:
    p = np.array(p, float)
    return p * np.array([-1.0, 1.0, 1.0])


def tube_specs(joints: np.ndarray) -> list[TubeSpec]:
    """The tubes of the tiny body, left side then mirrored right side."""
    J = joints
    x, z = (1.0, 0.0, 0.0), (0.0, 0.0, 1.0)
    specs = [
        TubeSpec(  # torso
            nodes=np.stack([(0.0, -0.46, 0.0), J[0], J[3], J[6], J[9], J[12]]),
            radii=np.array([(0.15, 0.10), (0.16, 0.11), (0.14, 0.10), (0.15, 0.11), (0.16, 0.11), (0.12, 0.08)]),
            width_dir=x,
            caps=(0.07, 0.05),
            joints_at_nodes=(-1, 0, 3, 6, 9, 12),
            bones=(0, 3, 6, 9),
            around=16,
        ),
        TubeSpec(
            nodes=np.stack([J[12], J[15]]),
            radii=np.array([(0.055, 0.055), (0.055, 0.055)]),
            width_dir=x,
            caps=(0.04, 0.04),
            joints_at_nodes=(-1, 15),
            bones=(12,),
        ),
        TubeSpec(
            nodes=np.stack([J[15], J[15] + (0.0, 0.08, 0.01)]),
            radii=np.array([(0.08, 0.095), (0.08, 0.095)]),
            width_dir=x,
            caps=(0.085, 0.09),
            joints_at_nodes=(-1, -1),
            bones=(15,),
            around=16,
        ),
    ]
    left = [
        TubeSpec(
            nodes=np.stack([J[13], J[16]]),
            radii=np.array([(0.05, 0.05), (0.055, 0.055)]),
            width_dir=z,
            caps=(0.04, 0.04),
            joints_at_nodes=(13, -1),
            bones=(13,),
        ),
        TubeSpec(
            nodes=np.stack([J[16], J[18]]),
            radii=np.array([(0.05, 0.05), (0.04, 0.04)]),
            width_dir=z,
            caps=(0.05, 0.04),
            joints_at_nodes=(16, -1),
            bones=(16,),
        ),
        TubeSpec(
            nodes=np.stack([J[18], J[20]]),
            radii=np.array([(0.04, 0.04), (0.03, 0.028)]),
            width_dir=z,
            caps=(0.04, 0.03),
            joints_at_nodes=(18, -1),
            bones=(18,),
        ),
        TubeSpec(  # hand: a paddle along the middle finger, wide along z, thin along y
            nodes=np.stack([J[20], J[28], J[29], J[30], J[30] + (0.02, 0.0, 0.0)]),
            radii=np.array([(0.035, 0.022), (0.045, 0.017), (0.042, 0.013), (0.038, 0.011), (0.034, 0.01)]),
            width_dir=z,
            caps=(0.025, 0.012),
            joints_at_nodes=(20, 28, 29, 30, -1),
            bones=(20,) + tuple(range(25, 40)),
        ),
        TubeSpec(
            nodes=np.stack([J[1], J[4]]),
            radii=np.array([(0.08, 0.08), (0.055, 0.055)]),
            width_dir=z,
            caps=(0.07, 0.05),
            joints_at_nodes=(1, -1),
            bones=(1,),
        ),
        TubeSpec(
            nodes=np.stack([J[4], J[7]]),
            radii=np.array([(0.055, 0.055), (0.04, 0.04)]),
            width_dir=z,
            caps=(0.05, 0.04),
            joints_at_nodes=(4, 7),
            bones=(4,),
        ),
        TubeSpec(  # foot: heel (below and behind the ankle) -> ball -> toe tip, wide along x
            nodes=np.stack([J[7] + (0.0, -0.045, -0.03), J[10], J[10] + (0.0, -0.005, 0.07)]),
            radii=np.array([(0.035, 0.035), (0.045, 0.03), (0.04, 0.02)]),
            width_dir=x,
            caps=(0.03, 0.02),
            joints_at_nodes=(-1, 10, -1),
            bones=(7, 10),
        ),
    ]
    specs += left
    for spec in left:
        specs.append(
            TubeSpec(
                nodes=np.stack([_mirror(p) for p in spec.nodes]),
                radii=spec.radii,
                width_dir=tuple(_mirror(spec.width_dir)),
                caps=spec.caps,
                joints_at_nodes=tuple(_LEFT_TO_RIGHT.get(j, j) for j in spec.joints_at_nodes),
                bones=tuple(_LEFT_TO_RIGHT.get(j, j) for j in spec.bones),
                around=spec.around,
            )
        )
    return specs


def bone_segments(joints: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Bone of each joint: from the joint to its child (first child; leaves get a short stub)."""
    children: dict[int, list[int]] = {}
    for j, p in enumerate(PARENTS):
        children.setdefault(p, []).append(j)
    bones = {}
    for j in range(NUM_JOINTS):
        if j in children:
            # Pelvis, spine3 and wrists have several children; the spine/middle finger is the axis.
            child = {0: 3, 9: 12, 20: 28, 21: 43}.get(j, children[j][0])
            end = joints[child]
        else:
            parent = joints[PARENTS[j]]
            end = joints[j] + 0.5 * (joints[j] - parent)
        bones[j] = (joints[j], end)
    return bones


def _point_segment_distance(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((p - a) @ ab) / max(float(ab @ ab), 1e-12), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def _skin_to_nearest_bone(verts: np.ndarray, bones: tuple[int, ...], segments) -> np.ndarray:
    """(n,) joint index of the nearest of ``bones`` for each vertex."""
    dist = np.stack([_point_segment_distance(verts, *segments[j]) for j in bones], axis=1)
    return np.asarray(bones)[dist.argmin(axis=1)]


def _affine_weights(points: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Minimum-norm weights w (k,) with sum(w) = 1 and w @ points = target."""
    a = np.concatenate([points.T, np.ones((1, len(points)))])  # (4, k)
    b = np.concatenate([target, [1.0]])
    return np.linalg.lstsq(a, b, rcond=None)[0]


@dataclass(frozen=True)
class TinyBody:
    """The generated body before writing: the ``.npz`` arrays (float64), the vertex ids of smplx's
    extra joints, and the (55, 3) rest joints."""

    arrays: dict[str, np.ndarray]
    vertex_ids: dict[str, int]
    joints: np.ndarray


def _nearest_vertex(verts: np.ndarray, target, among: np.ndarray) -> int:
    d = np.linalg.norm(verts[among] - np.asarray(target, float), axis=1)
    return int(among[d.argmin()])


def _vertex_ids(verts: np.ndarray, tube_of_vertex: np.ndarray, tube_index: dict[str, int], joints) -> dict[str, int]:
    """Vertices for smplx's extra joints: face points on the head, toes/heels, fingertips."""
    on = lambda name: np.nonzero(tube_of_vertex == tube_index[name])[0]  # noqa: E731
    head = joints[15]
    ids = {
        "nose": _nearest_vertex(verts, head + (0.0, 0.03, 0.12), on("head")),
        "leye": _nearest_vertex(verts, head + (0.035, 0.055, 0.10), on("head")),
        "reye": _nearest_vertex(verts, head + (-0.035, 0.055, 0.10), on("head")),
        "lear": _nearest_vertex(verts, head + (0.09, 0.03, 0.0), on("head")),
        "rear": _nearest_vertex(verts, head + (-0.09, 0.03, 0.0), on("head")),
    }
    for side, s, foot in (("L", 1.0, 10), ("R", -1.0, 11)):
        ids[f"{side}BigToe"] = _nearest_vertex(verts, joints[foot] + (-s * 0.03, -0.01, 0.1), on(f"{side}foot"))
        ids[f"{side}SmallToe"] = _nearest_vertex(verts, joints[foot] + (s * 0.04, -0.01, 0.06), on(f"{side}foot"))
        ids[f"{side}Heel"] = _nearest_vertex(verts, joints[foot - 3] + (0.0, -0.04, -0.06), on(f"{side}foot"))
        first = 25 if side == "L" else 40
        for name, k in (("index", 0), ("middle", 1), ("pinky", 2), ("ring", 3), ("thumb", 4)):
            tip = joints[first + 3 * k + 2] + (s * 0.02, 0.0, 0.0)
            ids[f"{side.lower()}{name}"] = _nearest_vertex(verts, tip, on(f"{side}hand"))
    return ids


def _j_regressor(tubes, specs, verts, offsets, tube_of_vertex, tube_index, joints) -> np.ndarray:
    """(55, V) regressor: ring means for joints on tube axes, affine combinations otherwise."""
    reg = np.zeros((NUM_JOINTS, len(verts)))
    done = np.zeros(NUM_JOINTS, bool)
    for t, (tube, spec) in enumerate(zip(tubes, specs)):
        for node, j in enumerate(spec.joints_at_nodes):
            if j < 0 or done[j]:
                continue
            ring = np.nonzero(tube.ring_of_vertex == tube.node_ring[node])[0] + offsets[t]
            reg[j, ring] = 1.0 / len(ring)
            done[j] = True
    for j in np.nonzero(~done)[0]:
        host = "head" if j in (22, 23, 24) else ("Lhand" if 25 <= j < 40 else "Rhand")
        among = np.nonzero(tube_of_vertex == tube_index[host])[0]
        nearest = among[np.argsort(np.linalg.norm(verts[among] - joints[j], axis=1))[:10]]
        reg[j, nearest] = _affine_weights(verts[nearest], joints[j])
    return reg


def _shape_dirs(verts, axis_points, tube_of_vertex, head_tube: int, joints, seed: int) -> np.ndarray:
    """(V, 3, 400): 300 shape then 100 expression directions."""
    rng = np.random.default_rng(seed)
    radial = verts - axis_points  # outward from each tube's axis
    dirs = np.zeros((len(verts), 3, NUM_SHAPE + NUM_EXPRESSION))
    dirs[:, :, 0] = 0.05 * (verts - joints[0])  # height: uniform scale about the pelvis
    dirs[:, :, 1] = 0.15 * radial  # girth
    for k in range(2, NUM_SHAPE):
        freq = rng.normal(size=3) * 3.0
        phase = rng.uniform(0, 2 * np.pi)
        dirs[:, :, k] = (0.08 / np.sqrt(k)) * np.cos(verts @ freq + phase)[:, None] * radial
    on_head = (tube_of_vertex == head_tube)[:, None]
    for k in range(NUM_EXPRESSION):
        freq = rng.normal(size=3) * 10.0
        dirs[:, :, NUM_SHAPE + k] = 0.02 * on_head * np.sin(verts @ freq)[:, None] * radial
    return dirs


@functools.lru_cache(maxsize=2)
def tiny_smplx_body(seed: int = 0) -> TinyBody:
    """Generate all arrays of an SMPL-X v1.1 ``.npz`` for the tiny body (deterministic)."""
    joints = rest_joints()
    specs = tube_specs(joints)
    names = ["torso", "neck", "head"] + [
        f"{s}{part}" for s in "LR" for part in ("collar", "upper_arm", "forearm", "hand", "thigh", "shank", "foot")
    ]
    tube_index = {name: i for i, name in enumerate(names)}
    tubes = [make_tube(spec) for spec in specs]
    counts = [len(t.verts) for t in tubes]
    offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
    verts = np.concatenate([t.verts for t in tubes])
    faces = np.concatenate([t.faces + o for t, o in zip(tubes, offsets)])
    tube_of_vertex = np.repeat(np.arange(len(tubes)), counts)
    axis_points = np.concatenate(
        [
            np.where((t.ring_of_vertex >= 0)[:, None], t.ring_centres[np.maximum(t.ring_of_vertex, 0)], t.verts)
            for t in tubes
        ]
    )
    segments = bone_segments(joints)
    owner = np.concatenate([_skin_to_nearest_bone(t.verts, s.bones, segments) for t, s in zip(tubes, specs)])
    weights = np.zeros((len(verts), NUM_JOINTS))
    weights[np.arange(len(verts)), owner] = 1.0
    reg = _j_regressor(tubes, specs, verts, offsets, tube_of_vertex, tube_index, joints)
    vertex_ids = _vertex_ids(verts, tube_of_vertex, tube_index, joints)
    head_faces = np.nonzero(np.isin(faces[:, 0], np.nonzero(tube_of_vertex == tube_index["head"])[0]))[0]
    rng = np.random.default_rng(seed)
    hand_mean = np.zeros((15, 3))
    hand_mean[:, 2] = 0.1  # slight finger curl, so that flat_hand_mean matters
    arrays = {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.uint32),
        "shapedirs": _shape_dirs(verts, axis_points, tube_of_vertex, tube_index["head"], joints, seed),
        "posedirs": np.zeros((len(verts), 3, 9 * (NUM_JOINTS - 1))),
        "J_regressor": reg,
        "weights": weights,
        "kintree_table": np.stack([np.array(PARENTS, np.int64) % (2**32), np.arange(NUM_JOINTS)]),
        "hands_componentsl": np.eye(45),
        "hands_componentsr": np.eye(45),
        "hands_meanl": hand_mean.reshape(-1),
        "hands_meanr": hand_mean.reshape(-1),
        "lmk_faces_idx": rng.choice(head_faces, size=51).astype(np.int64),
        "lmk_bary_coords": np.full((51, 3), 1.0 / 3.0),
        "dynamic_lmk_faces_idx": rng.choice(head_faces, size=(79, 17)).astype(np.int64),
        "dynamic_lmk_bary_coords": np.full((79, 17, 3), 1.0 / 3.0),
    }
    return TinyBody(arrays=arrays, vertex_ids=vertex_ids, joints=joints)


@dataclass(frozen=True)
class TinySmplxFiles:
    """A written tiny model: ``root`` holds ``smplx/SMPLX_<GENDER>.npz`` (= ``model_file``)."""

    root: Path
    model_file: Path
    vertex_ids: dict[str, int]
    joints: np.ndarray


def write_tiny_smplx(root: Path, *, gender: str = "neutral", seed: int = 0) -> TinySmplxFiles:
    """Write the tiny model as ``root/smplx/SMPLX_<GENDER>.npz``, float32 like the official files."""
    body = tiny_smplx_body(seed)
    folder = Path(root) / "smplx"
    folder.mkdir(parents=True, exist_ok=True)
    model_file = folder / f"SMPLX_{gender.upper()}.npz"
    arrays = {k: (v.astype(np.float32) if v.dtype == np.float64 else v) for k, v in body.arrays.items()}
    np.savez(model_file, **arrays)
    return TinySmplxFiles(root=Path(root), model_file=model_file, vertex_ids=dict(body.vertex_ids), joints=body.joints)
