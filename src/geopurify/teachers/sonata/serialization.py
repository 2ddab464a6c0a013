"""Space-filling-curve orders of voxels, as Point Transformer V3 serializes a point cloud.

A voxel's *code* under an order is an int64; sorting the codes gives the sequence that PTv3 cuts into
attention patches. Four orders (PTv3 / Sonata):

=================  ===========================================================================
``z``              Morton code: bits interleaved ``x y z`` from the most significant bit down
``z-trans``        Morton code of ``(y, x, z)``
``hilbert``        3D Hilbert index (Skilling's transpose algorithm, axis 0 = x most significant)
``hilbert-trans``  Hilbert index of ``(y, x, z)``
=================  ===========================================================================

``depth`` is the number of bits per axis: ``int(grid.max() + 1).bit_length()`` (PTv3's adaptive
depth, at most 16). Checked bit for bit against the official ``sonata.serialization`` through the
golden outputs in ``tests/test_sonata.py``, and against naive per-point oracles.
"""

from __future__ import annotations

import torch

ORDERS = ("z", "z-trans", "hilbert", "hilbert-trans")


def serialization_depth(grid: torch.Tensor) -> int:
    """Bits per axis that cover ``grid (M, 3) int64`` (non-negative voxel coordinates)."""
    depth = int(grid.max().item() + 1).bit_length()
    if depth > 16:
        raise ValueError(f"voxel grid too large to serialize: {depth} bits per axis (at most 16)")
    return depth


def z_order(grid: torch.Tensor, depth: int) -> torch.Tensor:
    """Morton codes ``(M,) int64``: bit ``i`` of x, y, z goes to bit ``3i+2``, ``3i+1``, ``3i``."""
    g = grid.long()
    code = torch.zeros(g.shape[0], dtype=torch.int64, device=g.device)
    for i in range(depth):
        for axis, shift in ((0, 2), (1, 1), (2, 0)):
            code |= ((g[:, axis] >> i) & 1) << (3 * i + shift)
    return code


def hilbert_order(grid: torch.Tensor, depth: int) -> torch.Tensor:
    """3D Hilbert indices ``(M,) int64`` of ``grid (M, 3)`` in a ``2**depth`` cube.

    Skilling (2004) "Programming the Hilbert curve": from the most significant bit down, for each
    axis, where the axis bit is set invert the lower bits of axis 0, otherwise swap the lower bits of
    axis 0 and that axis; the resulting "transpose" read bit-plane by bit-plane (axis 0 first) is the
    Gray code of the index.
    """
    g = grid.long()
    shifts = torch.arange(depth - 1, -1, -1, device=g.device)
    bits = ((g.unsqueeze(-1) >> shifts) & 1).bool()           # (M, 3, depth), MSB first
    for b in range(depth):
        for d in range(3):
            on = bits[:, d, b].unsqueeze(1)
            low0 = bits[:, 0, b + 1:] ^ on                    # invert axis 0 where the bit is set
            if d == 0:
                bits[:, 0, b + 1:] = low0
                continue
            lowd = bits[:, d, b + 1:]
            swap = ~on & (low0 ^ lowd)                         # exchange axis 0 and d where it is not
            bits[:, d, b + 1:] = lowd ^ swap
            bits[:, 0, b + 1:] = low0 ^ swap
    gray = bits.transpose(1, 2).reshape(g.shape[0], 3 * depth).long()   # bit-plane major, MSB first
    binary = torch.cumsum(gray, dim=1) % 2                   # Gray -> binary: prefix XOR
    weights = 1 << torch.arange(3 * depth - 1, -1, -1, device=g.device)
    return (binary * weights).sum(1)


def encode(grid: torch.Tensor, depth: int, order: str) -> torch.Tensor:
    """Codes ``(M,) int64`` of voxels ``grid (M, 3)`` under one of :data:`ORDERS`."""
    if order not in ORDERS:
        raise ValueError(f"unknown serialization order {order!r}; expected one of {ORDERS}")
    if order.endswith("-trans"):
        grid = grid[:, [1, 0, 2]]
    return z_order(grid, depth) if order.startswith("z") else hilbert_order(grid, depth)


__all__ = ["ORDERS", "encode", "hilbert_order", "serialization_depth", "z_order"]
