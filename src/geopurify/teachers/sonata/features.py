"""Sonata's input preparation and the upcast of its hierarchical output to per-point features.

:func:`prepare` is the official ``sonata.transform.default()`` without its randomness:

1. ``CenterShift(apply_z=True)``: subtract ``((x_min + x_max) / 2, (y_min + y_max) / 2, z_min)``;
2. ``GridSample(0.02)``: voxel ``floor(coord / 0.02)``, shifted so the minimum is 0; one point per
   voxel (the official ``mode="train"`` keeps a *random* one; here the first one, by point index,
   so features are deterministic), with the point-to-voxel ``inverse``;
3. ``NormalizeColor``: colour / 255. The model was trained on 0..255 colours divided by 255, i.e.
   colours in ``[0, 1]``: a :class:`~geopurify.io.Scene` already holds them on that scale, so they
   are fed as they are (the official GeoPurify passes [0, 1] colours *and* divides by 255: spec §3);
4. the 9 input channels ``(centred xyz, rgb in [0, 1], normal)`` of the kept points.

:func:`upcast` is the official GeoPurify / Sonata-demo upcast: going up from the coarsest stage,
the first ``levels`` steps concatenate the parent stage's features with the child's (gathered
through the pooling index), the remaining steps only copy; the stage-0 features are then read per
point. With the released config and ``levels=2`` that is ``192 + 384 + 512 = 1088`` channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .model import Stage


@dataclass(frozen=True, eq=False)
class SonataInput:
    """Voxelised model input.

    Attributes:
        grid: ``(M, 3) int64`` voxel coordinates (minimum 0).
        feat: ``(M, 9) float32`` centred xyz (metres), colour in [0, 1], normal of each kept point.
        inverse: ``(N,) int64`` voxel of each input point.
        index: ``(M,) int64`` the input point kept for each voxel.
    """

    grid: torch.Tensor
    feat: torch.Tensor
    inverse: torch.Tensor
    index: torch.Tensor


def center_shift(coords: torch.Tensor) -> torch.Tensor:
    """``CenterShift(apply_z=True)`` of ``(N, 3) float32`` metres."""
    lo, hi = coords.min(0).values, coords.max(0).values
    shift = torch.stack([(lo[0] + hi[0]) / 2, (lo[1] + hi[1]) / 2, lo[2]])
    return coords - shift


def prepare(coords: torch.Tensor, colors: torch.Tensor, normals: torch.Tensor, grid_size: float = 0.02) -> SonataInput:
    """Steps 1-4 of the module docstring.

    Args:
        coords: ``(N, 3) float32`` metres.
        colors: ``(N, 3) float32`` in [0, 1].
        normals: ``(N, 3) float32`` unit normals.
        grid_size: voxel edge in metres (Sonata: 0.02).
    """
    centred = center_shift(coords.float())
    grid = torch.floor(centred.double() / grid_size).long()
    grid = grid - grid.min(0).values
    uniq, inverse = torch.unique(grid, dim=0, sorted=True, return_inverse=True)
    n = coords.shape[0]
    index = torch.full((uniq.shape[0],), n, dtype=torch.int64, device=coords.device)
    index.scatter_reduce_(0, inverse, torch.arange(n, device=coords.device), reduce="amin")
    feat = torch.cat([centred, colors.float(), normals.float()], dim=1)[index]
    return SonataInput(uniq, feat.contiguous(), inverse, index)


def upcast(stages: list[Stage], levels: int = 2) -> torch.Tensor:
    """Stage-0 voxel features ``(M_0, D)`` from a stage list (finest first; module docstring).

    ``levels`` concatenations from the coarsest stage up (``min(levels, len(stages) - 1)``), then copies.
    """
    feat = stages[-1].feat
    for depth, s in enumerate(range(len(stages) - 1, 0, -1)):
        child = feat[stages[s].parent]
        feat = torch.cat([stages[s - 1].feat, child], dim=1) if depth < levels else child
    return feat


__all__ = ["SonataInput", "center_shift", "prepare", "upcast"]
