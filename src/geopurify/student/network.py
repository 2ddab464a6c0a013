"""The Student Affinity Network: a sparse 3D CNN on the 2 cm voxel grid that embeds each voxel.

Input per voxel (:func:`student_inputs`), the same in training and inference::

    x_v = [ normalize(mean lifted feature of v's points)  (D) | mean colour in [0, 1] (3) | mean normal (3) ]

(the official training path drops the last 6 channels; that is a bug, not copied). The semantic part
is L2-normalised so that encoders with differently scaled features give inputs of the same scale.

Network: stem (sparse conv, ``stem_kernel``) -> norm -> ReLU, ``blocks`` residual blocks
[conv3, norm, ReLU, conv3, norm, + identity, ReLU], and a 1x1 head to ``embed_dim``; no conv biases.
With ``levels = L > 0`` (not upstream's) the network is a small U-Net: after the blocks, the features
are mean-pooled to voxels twice as large, ``L`` times, with one residual block at each coarse level,
then brought back level by level (copied to the children, concatenated with that level's features,
1x1 conv, norm, ReLU) before the head (:class:`~geopurify.student.sparse.SparsePyramid`). Why: the plain
network's receptive field has a radius of ``2 * blocks`` voxels (+1 with a k=3 stem): 8 cm for the
``cpu`` preset, 18 cm for ``upstream``, while the geometric teacher describes 10-60 cm neighbourhoods;
a block at level ``l`` adds ``2**(l+1)`` voxels, so three levels add 56 cm.
Presets: ``upstream`` (hidden 512, 4 blocks, 128-d, k=3 stem, BatchNorm: 63.9 M parameters at D=512,
as the official model) for GPUs, and ``cpu`` (hidden 64, 2 blocks, 64-d, 1x1 stem, LayerNorm, a U-Net
with 3 coarse levels: 1.2 M parameters) for CPUs. The levels are in the ``cpu`` preset because its
affinities then beat the geometric teacher's on unseen scans, which the plain network's did not
(``benchmarks/README.md`` has the figures of ``bench_training.py`` and ``bench_affinity.py``).
LayerNorm in the small preset: with one scene per batch and a few dozen iterations, BatchNorm's
running statistics lag behind the weights, so eval-mode outputs drift from training-mode ones (the
label-free validation loss rose while the training loss fell); per-voxel LayerNorm has no such gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..errors import UnknownNameError
from ..geometry import VoxelGrid, scatter_mean
from ..lifting.lifted import FeatureSource
from .sparse import KernelMap, SparseConv3d, SparsePyramid, build_pyramid, pool, unpool

GEOMETRIC_DIM = 6
"""Geometric input channels per voxel: mean colour (3) and mean normal (3)."""


@dataclass(frozen=True)
class StudentConfig:
    """Architecture of the student. ``semantic_dim``: D of the lifted features it reads; the input is
    ``semantic_dim + 6`` channels (:func:`student_inputs`)."""

    semantic_dim: int
    hidden: int = 512
    blocks: int = 4
    embed_dim: int = 128
    stem_kernel: int = 3
    kernel_size: int = 3
    norm: str = "batch"
    levels: int = 0

    def __post_init__(self) -> None:
        for name in ("semantic_dim", "hidden", "embed_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.blocks < 0 or self.levels < 0:
            raise ValueError("blocks and levels must be >= 0")
        if self.norm not in ("batch", "layer"):
            raise ValueError(f"norm must be 'batch' or 'layer', got {self.norm!r}")
        for name in ("stem_kernel", "kernel_size"):
            if getattr(self, name) % 2 == 0 or getattr(self, name) < 1:
                raise ValueError(f"{name} must be odd and positive")

    @property
    def input_dim(self) -> int:
        return self.semantic_dim + GEOMETRIC_DIM


PRESETS: dict[str, dict[str, Any]] = {
    "upstream": {"hidden": 512, "blocks": 4, "embed_dim": 128, "stem_kernel": 3},
    "cpu": {"hidden": 64, "blocks": 2, "embed_dim": 64, "stem_kernel": 1, "norm": "layer", "levels": 3},
}


def student_config(preset: str, semantic_dim: int, **overrides: Any) -> StudentConfig:
    """A :class:`StudentConfig` from a preset name (``upstream`` or ``cpu``) and overrides."""
    if preset not in PRESETS:
        raise UnknownNameError(f"unknown student preset {preset!r}; available: {', '.join(PRESETS)}")
    return StudentConfig(semantic_dim=semantic_dim, **{**PRESETS[preset], **overrides})


def student_inputs(grid: VoxelGrid, semantic: torch.Tensor, colors: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
    """Per-voxel input ``(M, D + 6) float32`` (module docstring) from per-point ``(N, D)`` lifted
    features, ``(N, 3)`` colours in [0, 1] and ``(N, 3)`` unit normals, on the device of ``semantic``."""
    d = semantic.shape[1]
    inverse = grid.inverse.to(semantic.device)
    out = torch.empty(grid.num_voxels, d + GEOMETRIC_DIM, dtype=torch.float32, device=semantic.device)
    sem = out[:, :d]
    sem.copy_(scatter_mean(semantic.float(), inverse, grid.num_voxels))
    sem.div_(sem.norm(dim=1, keepdim=True).clamp_min(1e-12))
    out[:, d:] = scatter_mean(torch.cat([colors, normals], 1).float(), inverse, grid.num_voxels)
    return out


def _norm(kind: str, channels: int) -> nn.Module:
    return nn.BatchNorm1d(channels) if kind == "batch" else nn.LayerNorm(channels)


class _ResBlock(nn.Module):
    def __init__(self, channels: int, kernel_size: int, norm: str) -> None:
        super().__init__()
        self.conv1 = SparseConv3d(channels, channels, kernel_size)
        self.norm1 = _norm(norm, channels)
        self.conv2 = SparseConv3d(channels, channels, kernel_size)
        self.norm2 = _norm(norm, channels)

    def forward(self, x: torch.Tensor, kmap: KernelMap) -> torch.Tensor:
        y = torch.relu(self.norm1(self.conv1(x, kmap)))
        y = self.norm2(self.conv2(y, kmap))
        return torch.relu(y + x)


class _Fuse(nn.Module):
    """Decoder step: ``relu(norm(W [upsampled coarse | skip]))``, a 1x1 conv from 2C to C channels."""

    def __init__(self, channels: int, norm: str) -> None:
        super().__init__()
        self.linear = nn.Linear(2 * channels, channels, bias=False)
        self.norm = _norm(norm, channels)

    def forward(self, coarse: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.norm(self.linear(torch.cat([coarse, skip], 1))))


class StudentAffinityNet(nn.Module):
    """``net(features (M, D+6), net.pyramid(coords)) -> (M, embed_dim)`` L2-normalised voxel embeddings.

    Parameter groups for the optimiser: ``stem`` (input conv + norm), ``blocks`` (every block, and the
    coarse levels' blocks and decoder steps), ``head``.

    Args:
        config: the architecture.
        voxel_size: edge of the voxels it was trained on (metres); inference uses the same grid.
        features: what the lifted features it reads were made with, when known.
    """

    def __init__(self, config: StudentConfig, *, voxel_size: float = 0.02, features: FeatureSource | None = None) -> None:
        super().__init__()
        if voxel_size <= 0:
            raise ValueError(f"voxel_size must be positive, got {voxel_size}")
        if features is not None and features.dim != config.semantic_dim:
            raise ValueError(f"features are {features.dim}-d but the student reads {config.semantic_dim}-d")
        self.config, self.voxel_size = config, float(voxel_size)
        self.features = features if features is not None else FeatureSource("unknown", config.semantic_dim)
        self.stem = SparseConv3d(config.input_dim, config.hidden, config.stem_kernel)
        self.stem_norm = _norm(config.norm, config.hidden)
        self.blocks = nn.ModuleList(_ResBlock(config.hidden, config.kernel_size, config.norm)
                                    for _ in range(config.blocks))
        self.down = nn.ModuleList(_ResBlock(config.hidden, config.kernel_size, config.norm)
                                  for _ in range(config.levels))
        self.up = nn.ModuleList(_Fuse(config.hidden, config.norm) for _ in range(config.levels))
        self.head = SparseConv3d(config.hidden, config.embed_dim, 1)

    def forward(self, features: torch.Tensor, pyramid: SparsePyramid) -> torch.Tensor:
        if features.shape[1] != self.config.input_dim:
            raise ValueError(f"student expects {self.config.input_dim} input channels "
                             f"({self.config.semantic_dim} semantic + {GEOMETRIC_DIM}), "
                             f"got {features.shape[1]}")
        if pyramid.levels != self.config.levels:
            raise ValueError(f"student has {self.config.levels} coarse levels, pyramid has {pyramid.levels}")
        kmap = pyramid.maps[0]
        x = torch.relu(self.stem_norm(self.stem(features, kmap)))
        for block in self.blocks:
            x = block(x, kmap)
        skips = []
        for level, block in enumerate(self.down):
            skips.append(x)
            x = block(pool(x, pyramid, level), pyramid.maps[level + 1])
        for level in reversed(range(self.config.levels)):
            x = self.up[level](unpool(x, pyramid, level), skips[level])
        return torch.nn.functional.normalize(self.head(x, kmap), dim=1)

    def param_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"stem": [*self.stem.parameters(), *self.stem_norm.parameters()],
                "blocks": [*self.blocks.parameters(), *self.down.parameters(), *self.up.parameters()],
                "head": list(self.head.parameters())}

    def pyramid(self, coords: torch.Tensor) -> SparsePyramid:
        """The kernel maps (and coarse levels) this network needs for the voxels ``coords (M, 3) int64``."""
        uses_maps = self.config.blocks or self.config.levels
        kernel = max(self.config.kernel_size, self.config.stem_kernel) if uses_maps else self.config.stem_kernel
        return build_pyramid(coords, kernel, self.config.levels)

    @torch.no_grad()
    def embed(self, grid: VoxelGrid, semantic: torch.Tensor, colors: torch.Tensor, normals: torch.Tensor) -> torch.Tensor:
        """Inference on a whole scene (eval mode, no augmentation): ``(M, embed_dim)`` voxel embeddings,
        computed on the model's device and returned on the device of ``semantic``."""
        was_training = self.training
        self.eval()
        try:
            dev = next(self.parameters()).device
            x = student_inputs(grid, semantic, colors, normals).to(dev)
            out = self(x, self.pyramid(grid.coords.to(dev)))
        finally:
            self.train(was_training)
        return out.to(semantic.device)


def build_student(config: StudentConfig, seed: int | None = None, *, voxel_size: float = 0.02,
                  features: FeatureSource | None = None) -> StudentAffinityNet:
    """A freshly initialised student (deterministic when ``seed`` is given)."""
    if seed is None:
        return StudentAffinityNet(config, voxel_size=voxel_size, features=features)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return StudentAffinityNet(config, voxel_size=voxel_size, features=features)
