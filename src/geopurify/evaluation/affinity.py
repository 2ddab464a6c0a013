"""How well affinities follow objects: affinity purity, and the per-voxel majority of point values.

Instance ids are for evaluation only: nothing in training or inference reads them.
"""

from __future__ import annotations

import torch

from ..segment.pooling import affinity_weights, knn_graph


def voxel_mode(values: torch.Tensor, inverse: torch.Tensor, num_voxels: int) -> torch.Tensor:
    """Most frequent non-negative value per voxel (``-1`` where a voxel has none); ties -> smallest."""
    v = values.long()
    keep = v >= 0
    out = torch.full((num_voxels,), -1, dtype=torch.int64)
    if not bool(keep.any()):
        return out
    vi, vv = inverse[keep].cpu(), v[keep].cpu()
    width = int(vv.max()) + 1
    pair, cnt = torch.unique(vi * width + vv, return_counts=True)
    vox, val = pair // width, pair % width
    # sort by (voxel, count desc, value asc) and take the first of each voxel
    order = torch.argsort(vox * (cnt.max() + 1) * width + (cnt.max() - cnt) * width + val)
    vox, val = vox[order], val[order]
    first = torch.ones_like(vox, dtype=torch.bool)
    first[1:] = vox[1:] != vox[:-1]
    out[vox[first]] = val[first]
    return out


def affinity_purity(embeddings: torch.Tensor | None, centers: torch.Tensor, instances: torch.Tensor, k: int = 96,
                    sharpen: float = 20.0, neighbors: torch.Tensor | None = None) -> float:
    """Mean share of each voxel's pooling weight that stays inside its own instance.

    With ``A = softmax(sharpen * cos)`` over the K nearest voxels (:mod:`geopurify.segment.pooling`):
    ``mean_i sum_{j in N(i), inst_j = inst_i} A_ij`` over voxels with an instance (``>= 0``).
    ``embeddings=None`` gives uniform weights (plain spatial kNN). Instance ids are for evaluation only.
    """
    nb = knn_graph(centers, k) if neighbors is None else neighbors
    if embeddings is None:
        w = torch.full(nb.shape, 1.0 / nb.shape[1])
    else:
        w = affinity_weights(embeddings, nb, sharpen).cpu()
    inst = instances.cpu()
    nb = nb.cpu()
    same = (inst[nb] == inst[:, None]).float()
    keep = inst >= 0
    return float((w * same).sum(1)[keep].mean())
