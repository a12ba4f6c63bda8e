"""Per-vertex limb-segment labels derived from skinning weights (pure functions)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from resihmr_dr.body.base import SEGMENT_INDEX


def segment_labels_from_skinning(
    *,
    bone_indices: torch.Tensor,
    bone_weights: torch.Tensor,
    bone_names: Sequence[str],
    bone_to_segment: Mapping[str, str],
) -> torch.Tensor:
    """Label each vertex with the limb segment that carries most of its skinning weight.

    bone_indices, bone_weights: (V, K) sparse skinning (K influences per vertex; a dense
    (V, J) weight matrix is passed with ``bone_indices = arange(J)`` expanded).
    bone_names: name of each bone/joint, indexed by ``bone_indices``.
    bone_to_segment: bone name -> segment name; unlisted bones count as "other".
    Returns (V,) long labels indexing ``SEGMENT_NAMES``.
    """
    bone_segment = torch.tensor(
        [SEGMENT_INDEX[bone_to_segment.get(name, "other")] for name in bone_names],
        dtype=torch.long,
    )
    seg_of_influence = bone_segment.to(bone_indices.device)[bone_indices.long()]  # (V, K)
    num_segments = len(SEGMENT_INDEX)
    votes = torch.zeros(bone_weights.shape[0], num_segments, dtype=bone_weights.dtype, device=bone_weights.device)
    votes.scatter_add_(1, seg_of_influence, bone_weights)
    return votes.argmax(dim=1)
