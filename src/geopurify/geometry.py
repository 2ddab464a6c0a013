"""Geometry utilities: nearest neighbours, normals, and the voxel grid.

All functions are pure and vectorised. Points are ``(N, 3)`` float tensors in metres.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

MORTON_BITS = 21  # per axis: 3 * 21 = 63 bits fit in a non-negative int64


def knn(query: torch.Tensor, points: torch.Tensor, k: int, *, exclude_self: bool = False,
        workers: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest neighbours with a KD-tree, ``O(N log N)``.

    Args:
        query: ``(M, 3)`` query points.
        points: ``(N, 3)`` reference points.
        k: neighbours per query (must be <= N, or <= N - 1 with ``exclude_self``).
        exclude_self: ``query`` is ``points``; drop each point itself from its own list (it is
            identified by index, so duplicate coordinates are still returned as neighbours).
    Returns:
        dists: ``(M, k) float32`` Euclidean distances, ascending.
        idx: ``(M, k) int64`` indices into ``points``.
    """
    n = points.shape[0]
    if k < 1 or k > n - int(exclude_self):
        raise ValueError(f"k={k} neighbours requested from {n} points (exclude_self={exclude_self})")
    ref = points.detach().cpu().to(torch.float64)
    qry = query.detach().cpu().to(torch.float64)
    # Spatially sorted (Morton order) trees and queries: cache-friendly traversal.
    ref_order = _spatial_order(ref)
    qry_order = ref_order if exclude_self else _spatial_order(qry)
    tree = cKDTree(ref[ref_order].numpy())
    kk = k + int(exclude_self)
    d_s, i_s = tree.query(qry[qry_order].numpy(), k=kk, workers=workers)
    d_s, i_s = d_s.reshape(len(d_s), kk), ref_order.numpy()[i_s.reshape(len(i_s), kk)]
    d, i = np.empty_like(d_s), np.empty_like(i_s)
    d[qry_order.numpy()], i[qry_order.numpy()] = d_s, i_s
    if exclude_self:
        own = np.arange(len(i))[:, None]
        is_self = i == own
        # drop the self column if present, otherwise the farthest neighbour
        drop = np.where(is_self.any(1), is_self.argmax(1), kk - 1)
        keep = np.ones_like(i, dtype=bool)
        keep[np.arange(len(i)), drop] = False
        d, i = d[keep].reshape(len(i), k), i[keep].reshape(len(i), k)
    dev = query.device
    return torch.from_numpy(d.astype(np.float32)).to(dev), torch.from_numpy(i.astype(np.int64)).to(dev)


def _spatial_order(points: torch.Tensor, bits: int = 10) -> torch.Tensor:
    """Permutation sorting ``(N, 3)`` points by the Morton code of a ``2^bits``-cell grid over their box."""
    lo, hi = points.min(0).values, points.max(0).values
    cells = ((points - lo) / (hi - lo).clamp_min(1e-9) * ((1 << bits) - 1)).to(torch.int64)
    return torch.argsort(morton_code(cells))


def estimate_normals(points: torch.Tensor, k: int = 16, viewpoint: torch.Tensor | None = None) -> torch.Tensor:
    """Unit normals by PCA over each point's ``k`` nearest neighbours, consistently oriented.

    The normal is the eigenvector of the neighbourhood covariance with the smallest eigenvalue.
    Orientation: every normal is flipped to face ``viewpoint`` (default: the centre of the bounding
    box, which for an indoor scan lies inside the room, so walls face inward and floors up). Pass the
    sensor position(s) when known: with an ``(V, 3)`` viewpoint each normal faces its nearest one.

    Args:
        points: ``(N, 3)`` float tensor, N >= 3.
        k: neighbourhood size (clamped to N).
        viewpoint: ``(3,)`` or ``(V, 3)`` positions to orient towards.
    Returns:
        ``(N, 3) float32`` unit normals.
    """
    n = points.shape[0]
    if n < 3:
        raise ValueError(f"normal estimation needs at least 3 points, got {n}")
    k = min(k, n)
    _, idx = knn(points, points, k)
    pts = points.detach().cpu().to(torch.float64)
    nbrs = pts[idx.cpu()]                                   # (N, k, 3)
    centred = nbrs - nbrs.mean(1, keepdim=True)
    cov = centred.transpose(1, 2) @ centred / k             # (N, 3, 3)
    _, vecs = torch.linalg.eigh(cov)                        # ascending eigenvalues
    normals = vecs[:, :, 0]
    normals = normals / normals.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return orient_normals(normals.to(torch.float32), points.cpu(), viewpoint).to(points.device)


def orient_normals(normals: torch.Tensor, points: torch.Tensor, viewpoint: torch.Tensor | None = None) -> torch.Tensor:
    """Flip normals so that each faces ``viewpoint`` (see :func:`estimate_normals`)."""
    if viewpoint is None:
        viewpoint = (points.min(0).values + points.max(0).values) / 2
    viewpoint = torch.as_tensor(viewpoint, dtype=points.dtype, device=points.device)
    if viewpoint.dim() == 2:
        _, nearest = knn(points, viewpoint, 1)
        target = viewpoint[nearest[:, 0]]
    else:
        target = viewpoint.expand_as(points)
    flip = ((target - points) * normals).sum(1) < 0
    return torch.where(flip[:, None], -normals, normals)


def mesh_vertex_normals(vertices: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted vertex normals of a triangle mesh (orientation from the face winding).

    Args:
        vertices: ``(N, 3)`` float.
        faces: ``(F, 3)`` int64 vertex indices, counter-clockwise seen from the front.
    Returns:
        ``(N, 3) float32`` unit normals; vertices on no face (or on degenerate faces only) get
        ``(0, 0, 1)``.
    """
    v = vertices.to(torch.float64)
    f = faces.to(torch.int64)
    face_n = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)  # |.| = 2 * area
    acc = torch.zeros_like(v)
    for corner in range(3):
        acc.index_add_(0, f[:, corner], face_n)
    norm = acc.norm(dim=1, keepdim=True)
    up = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    out = torch.where(norm > 1e-20, acc / norm.clamp_min(1e-20), up)
    return out.to(torch.float32)


def morton_code(grid: torch.Tensor) -> torch.Tensor:
    """Interleave the bits of non-negative integer ``(N, 3)`` coordinates into ``(N,)`` int64 codes.

    Sorting by this code puts spatially close voxels close in memory (Z-order), which makes sparse
    neighbourhood products cache-friendly.
    """
    if grid.numel() and (int(grid.min()) < 0 or int(grid.max()) >= 1 << MORTON_BITS):
        raise ValueError(f"voxel coordinates must lie in [0, 2^{MORTON_BITS}) for Morton codes")
    g = grid.to(torch.int64)
    return _spread_bits(g[:, 0]) | (_spread_bits(g[:, 1]) << 1) | (_spread_bits(g[:, 2]) << 2)


def _spread_bits(x: torch.Tensor) -> torch.Tensor:
    """Insert two zero bits between each of the low 21 bits of ``x`` (magic-number bit spreading)."""
    x = x & 0x1FFFFF
    x = (x | (x << 32)) & 0x1F00000000FFFF
    x = (x | (x << 16)) & 0x1F0000FF0000FF
    x = (x | (x << 8)) & 0x100F00F00F00F00F
    x = (x | (x << 4)) & 0x10C30C30C30C30C3
    x = (x | (x << 2)) & 0x1249249249249249
    return x


@dataclass(frozen=True, eq=False)
class VoxelGrid:
    """Points grouped into cubic voxels.

    Attributes:
        coords: ``(M, 3) int64`` integer voxel coordinates, ``floor((x - origin) / voxel_size)``,
            ordered by Morton code (spatially coherent, deterministic).
        inverse: ``(N,) int64`` voxel index of each point: point ``i`` lies in voxel ``inverse[i]``.
        counts: ``(M,) int64`` points per voxel.
        voxel_size: edge length in metres.
        origin: ``(3,) float64`` world position of voxel (0, 0, 0)'s minimum corner.
    """

    coords: torch.Tensor
    inverse: torch.Tensor
    counts: torch.Tensor
    voxel_size: float
    origin: torch.Tensor

    @property
    def num_voxels(self) -> int:
        return int(self.coords.shape[0])

    @property
    def centers(self) -> torch.Tensor:
        """``(M, 3) float32`` voxel centres in world metres."""
        return ((self.coords.to(torch.float64) + 0.5) * self.voxel_size + self.origin.to(self.coords.device)) \
            .to(torch.float32)

    def to_voxels(self, point_values: torch.Tensor) -> torch.Tensor:
        """Mean of ``(N, C)`` (or ``(N,)``) per-point values in each voxel: ``(M, C)``."""
        return scatter_mean(point_values, self.inverse, self.num_voxels)

    def to_points(self, voxel_values: torch.Tensor) -> torch.Tensor:
        """Broadcast ``(M, ...)`` per-voxel values back to the points: ``(N, ...)``."""
        return voxel_values[self.inverse]


def voxelize(coords: torch.Tensor, voxel_size: float = 0.02, origin: torch.Tensor | None = None) -> VoxelGrid:
    """Group points into a voxel grid (deterministic; no augmentation).

    Args:
        coords: ``(N, 3)`` float points in metres.
        voxel_size: voxel edge in metres (GeoPurify: 0.02).
        origin: ``(3,)`` grid origin; default: the points' minimum, so coordinates start at 0.
    Returns:
        A :class:`VoxelGrid` whose voxels are sorted by Morton code.
    """
    if voxel_size <= 0:
        raise ValueError(f"voxel_size must be positive, got {voxel_size}")
    if coords.dim() != 2 or coords.shape[1] != 3 or coords.shape[0] == 0:
        raise ValueError(f"coords must be a non-empty (N, 3) tensor, got {tuple(coords.shape)}")
    c64 = coords.to(torch.float64)
    origin_t = c64.min(0).values if origin is None else torch.as_tensor(origin, dtype=torch.float64,
                                                                        device=coords.device)
    grid = torch.floor((c64 - origin_t) / voxel_size).to(torch.int64)
    shift = grid.min(0).values.clamp_max(0)      # points below a user origin: shift into range
    codes = morton_code(grid - shift)
    uniq, inverse, counts = torch.unique(codes, sorted=True, return_inverse=True, return_counts=True)
    first = torch.full((uniq.numel(),), coords.shape[0], dtype=torch.int64, device=coords.device)
    first.scatter_reduce_(0, inverse, torch.arange(coords.shape[0], device=coords.device), reduce="amin")
    return VoxelGrid(coords=grid[first], inverse=inverse, counts=counts, voxel_size=float(voxel_size),
                     origin=origin_t.cpu())


def scatter_mean(values: torch.Tensor, index: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Mean of ``values`` rows per segment: ``out[j] = mean(values[index == j])`` (0 if empty).

    Args:
        values: ``(N, ...)`` float tensor.
        index: ``(N,)`` int64 segment of each row, in ``[0, num_segments)``.
    Returns:
        ``(num_segments, ...)`` tensor in the dtype of ``values``.
    """
    acc_dtype = torch.float64 if values.dtype == torch.float64 else torch.float32
    out = torch.zeros((num_segments, *values.shape[1:]), dtype=acc_dtype, device=values.device)
    out.index_add_(0, index, values.to(acc_dtype))
    cnt = torch.zeros(num_segments, dtype=acc_dtype, device=values.device)
    cnt.index_add_(0, index, torch.ones_like(index, dtype=acc_dtype))
    cnt = cnt.clamp_min(1).view(-1, *([1] * (values.dim() - 1)))
    return (out / cnt).to(values.dtype)
