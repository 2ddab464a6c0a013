"""Geometry-Guided Pooling: propagate lifted features over a kNN graph weighted by learned affinities.

On the voxel grid (2 cm) of a scene, with voxel centres ``x_i``, student embeddings ``e_i`` (unit
rows) and initial features ``X0 = voxel mean of the lifted point features``:

    N(i)   = the K nearest voxels of i (self excluded; K = 96)
    A_ij   = exp(s * e_i . e_j) / sum_{l in N(i)} exp(s * e_i . e_l)   for j in N(i), else 0   (s = 20)
    X_t    = (1 - a) * A @ X_{t-1} + a * X0,   t = 1..T                          (T = 19, a = 0)

and each point takes its voxel's ``X_T``. ``A`` is row-stochastic with no self loops. With ``a = 0``
this is the official algorithm (``A^19 X0``). Pooling is linear in ``X0``, so pooling the logits
``X0 @ t_c`` against fixed unit text embeddings gives exactly ``X_T @ t_c``: the same per-point argmax
as pooling the features and classifying them, at C instead of D channels (:func:`pool_logits`).

Voxels are in Morton order (see :func:`~geopurify.geometry.voxelize`), which makes the sparse
products cache-friendly.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .._validate import finite_fields
from ..geometry import knn

MAX_K = 1024
"""The most neighbours per voxel: the graph holds M x K weights (K=1024 on 200k voxels: 1.6 GB)."""


@dataclass(frozen=True)
class PoolingConfig:
    """Geometry-Guided Pooling settings; defaults as upstream.

    Attributes:
        k: neighbours per voxel (K, 1 to 1024; fewer when a scene has fewer voxels).
        sharpen: affinity sharpening ``s``.
        steps: pooling products ``T``.
        alpha: residual weight of the input features ``a``.
    """

    k: int = 96
    sharpen: float = 20.0
    steps: int = 19
    alpha: float = 0.0

    def __post_init__(self) -> None:
        finite_fields(self)
        if not 1 <= self.k <= MAX_K or self.steps < 0 or not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"invalid pooling config {self}")


def knn_graph(centers: torch.Tensor, k: int = 96) -> torch.Tensor:
    """``(M, K) int64`` indices of each voxel's ``k`` nearest other voxels (KD-tree, ``O(M log M)``).
    With fewer than ``k + 1`` voxels, ``k`` is reduced to ``M - 1``."""
    k = min(k, centers.shape[0] - 1)
    if k < 1:
        return torch.zeros(centers.shape[0], 0, dtype=torch.int64, device=centers.device)
    return knn(centers, centers, k, exclude_self=True)[1]


def affinity_weights(embeddings: torch.Tensor, neighbors: torch.Tensor, sharpen: float = 20.0) -> torch.Tensor:
    """Row-softmax of ``sharpen * cos(e_i, e_j)`` over each voxel's neighbours.

    The ``M x K`` cosines are one sampled dense-dense product (``torch.sparse.sampled_addmm``: ``E E^T``
    evaluated only on the graph's edges), much faster than gathering ``(M, K, E)`` neighbour embeddings.

    Args:
        embeddings: ``(M, E)`` voxel embeddings (normalised here).
        neighbors: ``(M, K) int64``.
    Returns:
        ``(M, K) float32`` weights, each row summing to 1.
    """
    e = torch.nn.functional.normalize(embeddings.float(), dim=1)
    m, k = neighbors.shape
    if k == 0:
        return torch.zeros(m, 0, device=e.device)
    pattern = affinity_matrix(neighbors.to(e.device), torch.zeros(m, k, device=e.device), index_dtype=torch.int64)
    cos = torch.sparse.sampled_addmm(pattern, e, e.T, beta=0.0).values().reshape(m, k)
    return torch.softmax(sharpen * cos, dim=1)


def affinity_matrix(neighbors: torch.Tensor, weights: torch.Tensor, index_dtype: torch.dtype | None = None) -> torch.Tensor:
    """Sparse CSR ``(M, M)`` matrix with ``A[i, neighbors[i, k]] = weights[i, k]``.

    Indices are int32 when they fit (faster products), unless ``index_dtype`` says."""
    m, k = neighbors.shape
    if index_dtype is None:
        index_dtype = torch.int32 if m * k < 2 ** 31 else torch.int64
    crow = torch.arange(0, m * k + 1, k, dtype=index_dtype, device=neighbors.device)
    # indices are valid by construction (one row of K columns per voxel); skip the invariant checks
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        return torch.sparse_csr_tensor(crow, neighbors.reshape(-1).to(index_dtype), weights.reshape(-1).float(),
                                       (m, m), check_invariants=False)


def propagate(matrix: torch.Tensor, x0: torch.Tensor, steps: int = 19, alpha: float = 0.0,
              chunk_columns: int = 128) -> torch.Tensor:
    """``X_t = (1 - alpha) A X_{t-1} + alpha X0`` for ``steps`` products (module docstring).

    Columns are processed in blocks of ``chunk_columns`` so that peak memory is two ``(M, block)``
    buffers beyond the input and output.
    """
    x0 = x0.float()
    out = torch.empty_like(x0)
    for c in range(0, x0.shape[1], chunk_columns):
        x = x0[:, c:c + chunk_columns].contiguous()
        base = x
        for _ in range(steps):
            x = torch.sparse.mm(matrix, x)
            if alpha > 0:
                x = x.mul_(1 - alpha).add_(base, alpha=alpha)
        out[:, c:c + chunk_columns] = x
    return out
