"""Submanifold sparse 3D convolution in pure PyTorch (CPU and CUDA, autograd for free).

A sparse tensor is a set of occupied voxels with integer coordinates ``(M, 3) int64`` and features
``(M, C)``. A *submanifold* convolution computes outputs only at the occupied voxels:

    out[i] = sum over offsets o in {-r..r}^3 with voxel (coords[i] + o) occupied, at index j:
             features[j] @ W[o]                      (W[o]: (C_in, C_out); r = kernel_size // 2)

which is exactly a dense ``conv3d`` (cross-correlation, zero padding r) evaluated at the occupied
voxels of a grid that is zero elsewhere (tested against ``torch.nn.functional.conv3d``).

Implementation: a :class:`KernelMap` lists, per offset, the (input, output) voxel pairs (found by
binary search in the sorted voxel keys: a voxel hash without a hash table); the convolution is
``gather -> matmul -> index_add_`` per offset. The map depends only on the coordinates, so it is built
once per grid and shared by every layer. Cost is proportional to the number of occupied neighbour
pairs, not to the grid volume (``benchmarks/README.md`` compares it with spconv's CPU kernels).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..geometry import scatter_mean


def _keys(coords: torch.Tensor, lo: torch.Tensor, span: torch.Tensor) -> torch.Tensor:
    c = coords - lo
    return (c[:, 0] * span[1] + c[:, 1]) * span[2] + c[:, 2]


@dataclass(frozen=True, eq=False)
class KernelMap:
    """Neighbour pairs of a submanifold convolution over one voxel set.

    Attributes:
        num_voxels: M.
        kernel_size: odd edge of the cubic kernel (1 or 3, ...).
        offsets: ``(K, 3) int64`` kernel offsets, ``K = kernel_size**3``, in ``(dx, dy, dz)`` row-major
            order (the order of a ``conv3d`` weight's last three dims).
        in_idx, out_idx: per offset, ``(P_k,) int64`` voxel indices with
            ``coords[in_idx] == coords[out_idx] + offsets[k]``. The centre offset pairs every voxel with
            itself and is stored as ``None`` (no gather needed).
    """

    num_voxels: int
    kernel_size: int
    offsets: torch.Tensor
    in_idx: tuple[torch.Tensor | None, ...]
    out_idx: tuple[torch.Tensor | None, ...]

    @property
    def num_pairs(self) -> int:
        return sum(self.num_voxels if i is None else int(i.numel()) for i in self.in_idx)


def build_kernel_map(coords: torch.Tensor, kernel_size: int = 3) -> KernelMap:
    """Find the neighbour pairs of every kernel offset among the voxels ``coords``.

    Args:
        coords: ``(M, 3) int64`` distinct voxel coordinates.
        kernel_size: odd kernel edge.
    """
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be odd and positive, got {kernel_size}")
    if coords.dim() != 2 or coords.shape[1] != 3 or coords.dtype != torch.int64:
        raise ValueError(f"coords must be (M, 3) int64, got {tuple(coords.shape)} {coords.dtype}")
    r = kernel_size // 2
    rng = torch.arange(-r, r + 1, device=coords.device)
    offsets = torch.cartesian_prod(rng, rng, rng).reshape(-1, 3)
    m = coords.shape[0]
    lo = coords.min(0).values - r
    span = coords.max(0).values + r - lo + 1
    if float(span.double().prod()) >= 2 ** 62:
        raise ValueError("voxel grid too large for 64-bit keys")
    keys = _keys(coords, lo, span)
    sorted_keys, order = torch.sort(keys)
    if m > 1 and bool((sorted_keys[1:] == sorted_keys[:-1]).any()):
        raise ValueError("coords contain duplicate voxels")
    ins: list[torch.Tensor | None] = []
    outs: list[torch.Tensor | None] = []
    for off in offsets:
        if not bool(off.any()):
            ins.append(None)
            outs.append(None)
            continue
        q = _keys(coords + off, lo, span)
        pos = torch.searchsorted(sorted_keys, q).clamp_max(m - 1)
        hit = sorted_keys[pos] == q
        outs.append(torch.nonzero(hit).flatten())
        ins.append(order[pos[hit]])
    return KernelMap(m, kernel_size, offsets, tuple(ins), tuple(outs))


def sparse_conv(features: torch.Tensor, kmap: KernelMap, weight: torch.Tensor) -> torch.Tensor:
    """Submanifold convolution (module docstring's equation).

    Args:
        features: ``(M, C_in)``.
        kmap: pairs from :func:`build_kernel_map` for the same voxels.
        weight: ``(K, C_in, C_out)``, ``K = kernel_size**3`` in ``kmap.offsets`` order.
    Returns:
        ``(M, C_out)``.
    """
    k = kmap.offsets.shape[0]
    if weight.shape[0] != k or weight.shape[1] != features.shape[1]:
        raise ValueError(f"weight {tuple(weight.shape)} does not fit {k} offsets and {features.shape[1]} channels")
    centre = k // 2
    out = features @ weight[centre]
    for o in range(k):
        src = kmap.in_idx[o]
        if o == centre or src is None or src.numel() == 0:
            continue
        out.index_add_(0, kmap.out_idx[o], torch.index_select(features, 0, src) @ weight[o])  # type: ignore[arg-type]
    return out


class SparseConv3d(nn.Module):
    """Submanifold sparse convolution layer, ``weight (K, C_in, C_out)``, optional bias."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        k = kernel_size ** 3
        self.weight = nn.Parameter(torch.empty(k, in_channels, out_channels))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # Kaiming-uniform over the fan-in of all offsets, as nn.Conv3d
        bound = 1.0 / math.sqrt(k * in_channels)
        nn.init.uniform_(self.weight, -math.sqrt(3.0) * bound, math.sqrt(3.0) * bound)

    def forward(self, features: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        if self.kernel_size == 1:
            out = features @ self.weight[0]
        else:
            if kmap.kernel_size != self.kernel_size:
                raise ValueError(f"kernel map is for kernel size {kmap.kernel_size}, layer has {self.kernel_size}")
            out = sparse_conv(features, kmap, self.weight)
        return out if self.bias is None else out + self.bias

    def extra_repr(self) -> str:
        k, ci, co = self.weight.shape
        return f"{ci}, {co}, kernel_size={self.kernel_size}, bias={self.bias is not None}"


@dataclass(frozen=True, eq=False)
class SparsePyramid:
    """A voxel set and its coarser copies, for networks that pool (U-Net-like students).

    Level ``l`` holds the voxels ``floor(coords / 2**l)`` (edge ``2**l`` base voxels); each level has its
    own :class:`KernelMap`. ``parents[l]`` maps level-``l`` voxels to their level-``l+1`` voxel, so

        pooled[j] = mean of x[i] over i with parents[l][i] == j       (:func:`pool`)
        unpooled[i] = y[parents[l][i]]                                (:func:`unpool`)

    Attributes:
        maps: ``L + 1`` kernel maps, level 0 (the input voxels, in their order) first.
        parents: ``L`` tensors, ``(M_l,) int64`` indices into level ``l + 1``.
    """

    maps: tuple[KernelMap, ...]
    parents: tuple[torch.Tensor, ...]

    @property
    def levels(self) -> int:
        return len(self.parents)


def build_pyramid(coords: torch.Tensor, kernel_size: int = 3, levels: int = 0) -> SparsePyramid:
    """Kernel maps of ``coords (M, 3) int64`` and of ``levels`` successively halved copies of it
    (coarse voxels sorted lexicographically by coordinate: deterministic)."""
    if levels < 0:
        raise ValueError(f"levels must be >= 0, got {levels}")
    maps, parents = [build_kernel_map(coords, kernel_size)], []
    for _ in range(levels):
        coords, parent = torch.unique(torch.div(coords, 2, rounding_mode="floor"), dim=0, return_inverse=True)
        parents.append(parent)
        maps.append(build_kernel_map(coords, kernel_size))
    return SparsePyramid(tuple(maps), tuple(parents))


def pool(features: torch.Tensor, pyramid: SparsePyramid, level: int) -> torch.Tensor:
    """Mean of level-``level`` voxel features ``(M_l, C)`` over each level-``level + 1`` voxel."""
    return scatter_mean(features, pyramid.parents[level], pyramid.maps[level + 1].num_voxels)


def unpool(features: torch.Tensor, pyramid: SparsePyramid, level: int) -> torch.Tensor:
    """Copy level-``level + 1`` voxel features ``(M_{l+1}, C)`` to their level-``level`` children."""
    return features[pyramid.parents[level]]
